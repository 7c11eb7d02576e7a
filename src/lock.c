/* lock.c - robust process-shared locks (not yet implemented). */
#include "internal.h"

bool shmkit__locks_held_in(const void *p, size_t len)
{
    (void)p;
    (void)len;
    return false;
}
