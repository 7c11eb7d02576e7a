/*
 * listutil.h - what the ShareableList tests share: reading an item that
 * must be there, and checking a str/bytes item. Header-only, like
 * lifeutil.h, so each test file stays one executable.
 */
#ifndef SHMKIT_LISTUTIL_H
#define SHMKIT_LISTUTIL_H

#include <string.h>

#include "testutil.h"

/* Item i of l, asserting that the read succeeds. */
static inline shmkit_item get(const shmkit_list *l, ptrdiff_t i)
{
    shmkit_item it;
    int r = shmkit_list_get(l, i, &it);

    cr_assert_eq(r, 0, "get(%td): %s", i, shmkit_last_error());
    return it;
}

/* Asserts that it is a str/bytes item of type t holding s[0..n). */
static inline void assert_s(shmkit_item it, shmkit_type t, const char *s,
                            size_t n)
{
    cr_assert_eq(it.type, t, "type %s, expected %s", shmkit_type_name(it.type),
                 shmkit_type_name(t));
    cr_assert_eq(it.v.s.len, n, "len %zu, expected %zu", it.v.s.len, n);
    cr_assert_eq(memcmp(it.v.s.ptr, s, n), 0);
}

#endif
