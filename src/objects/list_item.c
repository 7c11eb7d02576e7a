/* list_item.c - list item helpers: names, constructors, Python equality. */
#include <string.h>

#include "list_internal.h"

shmkit_item shmkit_item_str(const char *s)
{
    return shmkit_item_strn(s, s ? strlen(s) : 0);
}

const char *shmkit_type_name(shmkit_type t)
{
    static const char *const names[] = {"None", "int", "float",
                                        "bool", "str", "bytes"};

    if ((unsigned)t >= sizeof names / sizeof names[0])
        return "?";
    return names[t];
}

/* Python's int == float: true only if the float is exactly that integer
 * (so 2**63 - 1 != 2.0**63, and nothing equals nan or inf). */
static bool int_eq_float(int64_t i, double d)
{
    int64_t t;

    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return false;
    t = (int64_t)d;
    return (double)t == d && t == i;
}

static bool is_number(shmkit_type t)
{
    return t == SHMKIT_INT || t == SHMKIT_FLOAT || t == SHMKIT_BOOL;
}

static int64_t as_int(const shmkit_item *a)
{
    return a->type == SHMKIT_BOOL ? (int64_t)a->v.b : a->v.i;
}

bool shmkit_item_equal(const shmkit_item *a, const shmkit_item *b)
{
    if (is_number(a->type) && is_number(b->type)) {
        if (a->type == SHMKIT_FLOAT && b->type == SHMKIT_FLOAT)
            return a->v.f == b->v.f;
        if (a->type == SHMKIT_FLOAT)
            return int_eq_float(as_int(b), a->v.f);
        if (b->type == SHMKIT_FLOAT)
            return int_eq_float(as_int(a), b->v.f);
        return as_int(a) == as_int(b);
    }
    if (a->type != b->type)
        return false;
    if (a->type == SHMKIT_NONE)
        return true;
    if (a->type != SHMKIT_STR && a->type != SHMKIT_BYTES)
        return false;
    return a->v.s.len == b->v.s.len &&
           (a->v.s.len == 0 || memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0);
}
