/* list.c - ShareableList in CPython's layout (not yet implemented). */
#include "internal.h"

bool shmkit__list_probe(const void *data, size_t size)
{
    (void)data;
    (void)size;
    return false;
}
