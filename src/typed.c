/* typed.c - self-describing Value and Array blocks (not yet implemented). */
#include "internal.h"

shmkit_kind shmkit__typed_probe(const void *data, size_t size)
{
    (void)data;
    (void)size;
    return SHMKIT_KIND_RAW;
}
