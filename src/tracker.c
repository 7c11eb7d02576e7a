/* tracker.c - family tracking of created blocks (not yet implemented). */
#include <errno.h>

#include "internal.h"

int shmkit__track_register(const char *name)
{
    (void)name;
    return -ENOTSUP;
}

void shmkit__track_unregister(const char *name)
{
    (void)name;
}

void shmkit__track_rename(const char *from, const char *to, bool exchange)
{
    (void)from;
    (void)to;
    (void)exchange;
}
