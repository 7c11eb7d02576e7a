/* refcount.c - reference-counted block lifetime (not yet implemented). */
#include <errno.h>

#include "internal.h"

int shmkit__ref_attach(shmkit_block *b)
{
    (void)b;
    return -ENOTSUP;
}

bool shmkit__ref_detach(shmkit_block *b)
{
    (void)b;
    return false;
}

void shmkit__ref_rename(shmkit_block *b, const char *to, bool exchange)
{
    (void)b;
    (void)to;
    (void)exchange;
}
