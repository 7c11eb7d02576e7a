/*
 * test_list.c - ShareableList from C, in one process and across processes:
 * every type round trip, indices, storage limits, type changes, count,
 * index, format, the seed's examples, the trailing-NUL and UTF-8 fixes,
 * create failures that leave nothing behind, and the sidecar lock (owner
 * death, consistency under concurrent writers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "objects/list_internal.h"
#include "core/os.h"
#include "listutil.h"
#include "testutil.h"

TestSuite(list, .init = tu_setup, .fini = tu_cleanup, .timeout = 60);

static shmkit_list *make(const char *tag, const shmkit_item *items, size_t n)
{
    shmkit_list *l;
    int r = shmkit_list_create(&l, tu_name(tag), items, n, 0);

    cr_assert_eq(r, 0, "create: %s", shmkit_last_error());
    return l;
}

static void drop(shmkit_list *l)
{
    cr_assert_eq(shmkit_list_unlink(l), 0);
    cr_assert_eq(shmkit_list_close(l), 0);
}

static void assert_format(const shmkit_list *l, const char *want)
{
    char buf[512];

    cr_assert_eq(shmkit_list_format(l, buf, sizeof buf, NULL), 0);
    cr_assert_str_eq(buf, want);
}

Test(list, every_type_round_trips)
{
    shmkit_item in[] = {
        shmkit_item_none(),           shmkit_item_int(0),
        shmkit_item_int(-1),          shmkit_item_int(INT64_MAX),
        shmkit_item_int(INT64_MIN),   shmkit_item_float(-273.154),
        shmkit_item_float(-0.0),      shmkit_item_float(INFINITY),
        shmkit_item_float(NAN),       shmkit_item_bool(true),
        shmkit_item_bool(false),      shmkit_item_str(""),
        shmkit_item_str("12345678"),  shmkit_item_str("h\xc3\xa9llo"),
        shmkit_item_bytes("a\0b", 3), shmkit_item_bytes("", 0),
    };
    size_t n = sizeof in / sizeof in[0], k;
    shmkit_list *l = make("types", in, n);
    shmkit_item it;

    cr_assert_eq(shmkit_list_len(l), n);
    for (k = 0; k < n; k++) {
        it = get(l, (ptrdiff_t)k);
        cr_assert_eq(it.type, in[k].type, "item %zu", k);
        if (in[k].type == SHMKIT_FLOAT)
            cr_assert_eq(memcmp(&it.v.f, &in[k].v.f, 8), 0, "item %zu", k);
        else if (in[k].type >= SHMKIT_STR)
            assert_s(it, in[k].type, in[k].v.s.ptr, in[k].v.s.len);
        else if (in[k].type == SHMKIT_BOOL)
            cr_assert_eq(it.v.b, in[k].v.b);
        else if (in[k].type == SHMKIT_INT)
            cr_assert_eq(it.v.i, in[k].v.i);
    }
    assert_format(l, "xxxxxx?xqqqqddddxxxxxxx?xxxxxxx?8s16s8s8s8s");
    cr_assert(signbit(get(l, 6).v.f), "-0.0 keeps its sign");
    drop(l);
}

Test(list, empty_list)
{
    shmkit_list *l = make("empty", NULL, 0), *a;
    shmkit_item it;
    size_t c;

    cr_assert_eq(shmkit_list_len(l), 0);
    cr_assert_eq(shmkit_block_size(shmkit_list_block(l)), 16);
    cr_assert_eq(shmkit_list_get(l, 0, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_get(l, -1, &it), SHMKIT_EINDEX);
    it = shmkit_item_none();
    cr_assert_eq(shmkit_list_count(l, &it, &c), 0);
    cr_assert_eq(c, 0);
    cr_assert_eq(shmkit_list_index(l, &it, &c), SHMKIT_ENOTFOUND);
    assert_format(l, "");
    cr_assert_eq(shmkit_list_attach(&a, tu_name("empty"), 0), 0);
    cr_assert_eq(shmkit_list_len(a), 0);
    shmkit_list_close(a);
    drop(l);
}

Test(list, indices_and_range)
{
    shmkit_item in[] = {shmkit_item_int(10), shmkit_item_int(20),
                        shmkit_item_int(30)};
    shmkit_list *l = make("idx", in, 3);
    shmkit_item it = shmkit_item_int(99);

    cr_assert_eq(get(l, -1).v.i, 30);
    cr_assert_eq(get(l, -3).v.i, 10);
    cr_assert_eq(shmkit_list_get(l, 3, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_get(l, -4, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_get(l, PTRDIFF_MIN, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_get(l, PTRDIFF_MAX, &it), SHMKIT_EINDEX);
    cr_assert_eq(it.v.i, 99, "failed get leaves *out alone");
    cr_assert_eq(shmkit_list_set(l, 3, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_set(l, -4, &it), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_list_set(l, -2, &it), 0);
    cr_assert_eq(get(l, 1).v.i, 99);
    drop(l);
}

/* The seed's main example, done from C. */
Test(list, seed_example)
{
    shmkit_item in[] = {shmkit_item_str("howdy"), shmkit_item_bytes("HoWdY", 5),
                        shmkit_item_float(-273.154), shmkit_item_int(100),
                        shmkit_item_none(), shmkit_item_bool(true),
                        shmkit_item_int(42)};
    shmkit_list *l = make("seed", in, 7);
    shmkit_item v;
    size_t k;

    cr_assert_eq(get(l, 2).v.f, -273.154);
    v = shmkit_item_float(-78.5);
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    cr_assert_eq(get(l, 2).v.f, -78.5);
    v = shmkit_item_str("dry ice");
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    assert_s(get(l, 2), SHMKIT_STR, "dry ice", 7);
    v = shmkit_item_str("larger than previously allocated storage space");
    cr_assert_eq(shmkit_list_set(l, 2, &v), SHMKIT_ESTORAGE);
    cr_assert(strstr(shmkit_last_error(), "exceeds available storage"),
              "%s", shmkit_last_error());
    assert_s(get(l, 2), SHMKIT_STR, "dry ice", 7);
    cr_assert_eq(shmkit_list_len(l), 7);
    v = shmkit_item_int(42);
    cr_assert_eq(shmkit_list_index(l, &v, &k), 0);
    cr_assert_eq(k, 6);
    v = shmkit_item_bytes("howdy", 5);
    cr_assert_eq(shmkit_list_count(l, &v, &k), 0);
    cr_assert_eq(k, 0);
    v = shmkit_item_bytes("HoWdY", 5);
    cr_assert_eq(shmkit_list_count(l, &v, &k), 0);
    cr_assert_eq(k, 1);
    drop(l);
}

/* Second example of the seed: two handles, one list. */
Test(list, two_handles_share)
{
    shmkit_item in[5];
    shmkit_list *b, *c;
    shmkit_item v = shmkit_item_int(-999);
    int i;

    for (i = 0; i < 5; i++)
        in[i] = shmkit_item_int(i);
    b = make("share", in, 5);
    cr_assert_eq(shmkit_list_attach(&c, tu_name("share"), 0), 0);
    cr_assert_eq(shmkit_list_set(c, -1, &v), 0);
    cr_assert_eq(get(b, -1).v.i, -999);
    shmkit_list_close(c);
    drop(b);
}

Test(list, type_changes_within_slot)
{
    shmkit_item in[] = {shmkit_item_str("0123456789abcdef")}; /* slot 24 */
    shmkit_item seq[] = {shmkit_item_int(7),      shmkit_item_none(),
                         shmkit_item_float(2.5),  shmkit_item_bool(true),
                         shmkit_item_bytes("xyz", 3),
                         shmkit_item_str("0123456789abcdef0123456")};
    shmkit_list *l = make("chg", in, 1);
    size_t k, cap;

    cr_assert_eq(shmkit_list_capacity(l, 0, &cap), 0);
    cr_assert_eq(cap, 24);
    for (k = 0; k < sizeof seq / sizeof seq[0]; k++) {
        shmkit_item it;
        cr_assert_eq(shmkit_list_set(l, 0, &seq[k]), 0);
        it = get(l, 0);
        cr_assert(shmkit_item_equal(&it, &seq[k]), "step %zu", k);
        cr_assert_eq(it.type, seq[k].type, "step %zu", k);
    }
    assert_format(l, "24s");
    drop(l);
}

/* An int slot is 8 bytes: a str of up to 8 bytes fits, 9 does not. */
Test(list, storage_limits_leave_item_unchanged)
{
    shmkit_item in[] = {shmkit_item_int(5), shmkit_item_bytes("ab", 2)};
    shmkit_list *l = make("lim", in, 2);
    shmkit_item v = shmkit_item_str("123456789");

    cr_assert_eq(shmkit_list_set(l, 0, &v), SHMKIT_ESTORAGE);
    cr_assert_eq(get(l, 0).type, SHMKIT_INT);
    cr_assert_eq(get(l, 0).v.i, 5);
    v = shmkit_item_str("12345678");
    cr_assert_eq(shmkit_list_set(l, 0, &v), 0);
    assert_s(get(l, 0), SHMKIT_STR, "12345678", 8);
    v = shmkit_item_bytes("123456789", 9);
    cr_assert_eq(shmkit_list_set(l, 1, &v), SHMKIT_ESTORAGE);
    assert_s(get(l, 1), SHMKIT_BYTES, "ab", 2);
    drop(l);
}

/* gh-106939: trailing NULs survive a shmkit round trip, and the seed's
 * nul_bug_demo reads back unchanged. */
Test(list, trailing_nuls_kept)
{
    shmkit_item in[] = {shmkit_item_strn("?\0", 2),
                        shmkit_item_bytes("\x03\x02\x01\0\0\0", 6),
                        shmkit_item_bytes("12345678", 8)};
    shmkit_list *l = make("nul", in, 3);
    shmkit_item v;

    assert_s(get(l, 0), SHMKIT_STR, "?\0", 2);
    assert_s(get(l, 1), SHMKIT_BYTES, "\x03\x02\x01\0\0\0", 6);
    assert_format(l, "2sx6sx16s");
    /* fills the slot exactly: "<n>s0x" */
    v = shmkit_item_bytes("1234567\0\0\0\0\0\0\0\0\0", 16);
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    assert_s(get(l, 2), SHMKIT_BYTES, v.v.s.ptr, 16);
    assert_format(l, "2sx6sx16s0x");
    /* back to a value without NULs: CPython's own record again */
    v = shmkit_item_bytes("ab", 2);
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    assert_format(l, "2sx6sx16s");
    /* only NULs */
    v = shmkit_item_bytes("\0\0\0", 3);
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    assert_s(get(l, 2), SHMKIT_BYTES, "\0\0\0", 3);
    drop(l);
}

/* gh-88336: str slots are sized by UTF-8 bytes. */
Test(list, non_ascii_sized_by_bytes)
{
    const char *s = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"; /* 5 x é */
    const char *jp = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"; /* 日本語 */
    shmkit_item in[] = {shmkit_item_str(s), shmkit_item_str(jp)};
    shmkit_list *l = make("utf8", in, 2);

    assert_s(get(l, 0), SHMKIT_STR, s, 10);
    assert_s(get(l, 1), SHMKIT_STR, jp, 9);
    assert_format(l, "16s16s");
    drop(l);
}

Test(list, invalid_utf8_refused)
{
    shmkit_item in[] = {shmkit_item_str("ok")};
    shmkit_item bad[] = {shmkit_item_strn("\xc3", 1),
                         shmkit_item_strn("\xed\xa0\x80", 3), /* surrogate */
                         shmkit_item_strn("\xc0\x80", 2),     /* overlong */
                         shmkit_item_strn("\xf4\x90\x80\x80", 4)};
    shmkit_list *l = make("badutf", in, 1), *x;
    size_t k;

    for (k = 0; k < 4; k++) {
        cr_assert_eq(shmkit_list_set(l, 0, &bad[k]), -EILSEQ, "case %zu", k);
        cr_assert_eq(shmkit_list_create(&x, tu_name("badutf2"), &bad[k], 1, 0),
                     -EILSEQ);
    }
    assert_s(get(l, 0), SHMKIT_STR, "ok", 2);
    cr_assert_eq(tu_count_leftovers(), 1);
    drop(l);
}

Test(list, value_size_limits)
{
    size_t big = SHMKIT_LIST_VALUE_MAX + 1;
    char *buf = calloc(1, big);
    shmkit_item v;
    shmkit_list *l;

    memset(buf, 'a', big);
    v = shmkit_item_bytes(buf, big);
    cr_assert_eq(shmkit_list_create(&l, tu_name("big"), &v, 1, 0),
                 SHMKIT_ESTORAGE);
    v.v.s.len = SHMKIT_LIST_VALUE_MAX;
    l = make("big", &v, 1);
    assert_format(l, "9999992s");
    assert_s(get(l, 0), SHMKIT_BYTES, buf, SHMKIT_LIST_VALUE_MAX);
    drop(l);
    /* exact length (trailing NUL) needs "<n>sx" in 8 characters */
    buf[SHMKIT_LIST_EXACT_MAX] = 0;
    v.v.s.len = SHMKIT_LIST_EXACT_MAX + 1;
    cr_assert_eq(shmkit_list_create(&l, tu_name("big"), &v, 1, 0),
                 SHMKIT_ESTORAGE);
    buf[SHMKIT_LIST_EXACT_MAX - 1] = 0;
    v.v.s.len = SHMKIT_LIST_EXACT_MAX;
    l = make("big", &v, 1);
    assert_format(l, "999999sx");
    assert_s(get(l, 0), SHMKIT_BYTES, buf, SHMKIT_LIST_EXACT_MAX);
    drop(l);
    free(buf);
}

Test(list, equality_is_pythons)
{
    shmkit_item one = shmkit_item_int(1), t = shmkit_item_bool(true),
                f1 = shmkit_item_float(1.0), z = shmkit_item_float(-0.0),
                no = shmkit_item_bool(false), nan = shmkit_item_float(NAN),
                big = shmkit_item_int(INT64_MAX),
                fbig = shmkit_item_float(9223372036854775808.0),
                s = shmkit_item_str("a"), b = shmkit_item_bytes("a", 1),
                none = shmkit_item_none(), zero = shmkit_item_int(0);

    cr_assert(shmkit_item_equal(&one, &t) && shmkit_item_equal(&t, &f1));
    cr_assert(shmkit_item_equal(&z, &no) && shmkit_item_equal(&zero, &z));
    cr_assert(!shmkit_item_equal(&nan, &nan));
    cr_assert(!shmkit_item_equal(&big, &fbig));
    cr_assert(!shmkit_item_equal(&s, &b));
    cr_assert(!shmkit_item_equal(&none, &zero));
    cr_assert(shmkit_item_equal(&none, &none));
}

Test(list, count_and_index)
{
    shmkit_item in[] = {shmkit_item_int(1), shmkit_item_bool(true),
                        shmkit_item_float(1.0), shmkit_item_str("1"),
                        shmkit_item_none(), shmkit_item_float(NAN)};
    shmkit_list *l = make("cnt", in, 6);
    shmkit_item v = shmkit_item_int(1);
    size_t c;

    cr_assert_eq(shmkit_list_count(l, &v, &c), 0);
    cr_assert_eq(c, 3);
    v = shmkit_item_str("1");
    cr_assert_eq(shmkit_list_index(l, &v, &c), 0);
    cr_assert_eq(c, 3);
    v = shmkit_item_none();
    cr_assert_eq(shmkit_list_index(l, &v, &c), 0);
    cr_assert_eq(c, 4);
    v = shmkit_item_float(NAN);
    cr_assert_eq(shmkit_list_count(l, &v, &c), 0);
    cr_assert_eq(c, 0);
    cr_assert_eq(shmkit_list_index(l, &v, &c), SHMKIT_ENOTFOUND);
    drop(l);
}

Test(list, format_buffer_sizes)
{
    shmkit_item in[] = {shmkit_item_int(1), shmkit_item_str("abc")};
    shmkit_list *l = make("fmt", in, 2);
    char buf[5];
    size_t len = 0;

    cr_assert_eq(shmkit_list_format(l, NULL, 0, &len), -ERANGE);
    cr_assert_eq(len, 3);
    cr_assert_eq(shmkit_list_format(l, buf, 3, &len), -ERANGE);
    cr_assert_eq(shmkit_list_format(l, buf, 4, &len), 0);
    cr_assert_str_eq(buf, "q8s");
    drop(l);
}

Test(list, set_from_own_slot)
{
    shmkit_item in[] = {shmkit_item_str("abcdef"), shmkit_item_str("xy")};
    shmkit_list *l = make("alias", in, 2);
    shmkit_item it = get(l, 0);

    cr_assert_eq(shmkit_list_set(l, 0, &it), 0);
    assert_s(get(l, 0), SHMKIT_STR, "abcdef", 6);
    it = get(l, 0);
    it.v.s.ptr += 2;
    it.v.s.len = 3;
    cr_assert_eq(shmkit_list_set(l, 0, &it), 0);
    assert_s(get(l, 0), SHMKIT_STR, "cde", 3);
    drop(l);
}

Test(list, bad_arguments)
{
    shmkit_list *l;
    shmkit_item in[] = {shmkit_item_int(1)}, odd = {.type = 42};

    cr_assert_eq(shmkit_list_create(&l, tu_name("x"), NULL, 1, 0), -EINVAL);
    cr_assert_eq(shmkit_list_create(&l, "a/b", in, 1, 0), -EINVAL);
    cr_assert_eq(shmkit_list_create(&l, tu_name("x"), &odd, 1, 0),
                 SHMKIT_ETYPE);
    cr_assert_eq(shmkit_list_create(NULL, tu_name("x"), in, 1, 0), -EINVAL);
    cr_assert_eq(shmkit_list_attach(&l, tu_name("nope"), 0), -ENOENT);
    l = make("args", in, 1);
    cr_assert_eq(shmkit_list_set(l, 0, &odd), SHMKIT_ETYPE);
    cr_assert_eq(shmkit_list_set(l, 0, NULL), -EINVAL);
    odd = shmkit_item_bytes(NULL, 3);
    cr_assert_eq(shmkit_list_set(l, 0, &odd), -EINVAL);
    cr_assert_eq(get(l, 0).v.i, 1);
    cr_assert_eq(tu_count_leftovers(), 1);
    drop(l);
}

Test(list, rdonly_attach_refuses_set)
{
    shmkit_item in[] = {shmkit_item_int(1)}, v = shmkit_item_int(2);
    shmkit_list *l = make("ro", in, 1), *r;

    cr_assert_eq(shmkit_list_attach(&r, tu_name("ro"), SHMKIT_RDONLY), 0);
    cr_assert_eq(get(r, 0).v.i, 1);
    cr_assert_eq(shmkit_list_set(r, 0, &v), -EBADF);
    shmkit_list_close(r);
    drop(l);
}

Test(list, generated_name)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    shmkit_list *l;

    cr_assert_eq(shmkit_list_create(&l, NULL, in, 1, 0), 0);
    cr_assert_eq(strncmp(shmkit_block_name(shmkit_list_block(l)), "psm_", 4),
                 0);
    drop(l);
}

/* ---- create leaves nothing behind ------------------------------------ */

static char made[16][SHMKIT_NAME_MAX + 1];
static int nmade;
static int (*real_open)(const char *, int, mode_t);

static int record_open(const char *name, int oflag, mode_t mode)
{
    int r = real_open(name, oflag, mode);

    if (r >= 0 && (oflag & O_CREAT) && nmade < 16)
        snprintf(made[nmade++], sizeof made[0], "%s", name);
    return r;
}

static int fail_rename(const char *from, const char *to, unsigned flags)
{
    return -EIO;
}

static int fail_link(int fd, const char *name)
{
    return -EIO;
}

/* As where the system has no nameless objects (O_TMPFILE): lists are
 * built under temporary names then. */
static int no_tmpfile(mode_t mode)
{
    return -EOPNOTSUPP;
}

Test(list, failed_create_leaves_nothing)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    shmkit_list *l = make("dup", in, 1), *x;
    int fds = tu_fd_count(), maps = tu_shm_mapping_count(), i;

    shmkit__os.shm_link = fail_link;
    cr_assert_eq(shmkit_list_create(&x, tu_name("dup2"), in, 1, 0), -EIO);
    shmkit__os_reset();
    real_open = shmkit__os.shm_open;
    shmkit__os.shm_open = record_open;
    shmkit__os.shm_open_anon = no_tmpfile;
    cr_assert_eq(shmkit_list_create(&x, tu_name("dup"), in, 1, 0), -EEXIST);
    shmkit__os.shm_rename = fail_rename;
    cr_assert_eq(shmkit_list_create(&x, tu_name("dup2"), in, 1, 0), -EIO);
    shmkit__os_reset();
    cr_assert_eq(nmade, 2, "one temporary block per attempt");
    for (i = 0; i < nmade; i++) {
        shmkit_block *b;
        cr_assert_eq(shmkit_block_attach(&b, made[i], 0), -ENOENT,
                     "%s left behind", made[i]);
    }
    cr_assert_eq(tu_fd_count(), fds);
    cr_assert_eq(tu_shm_mapping_count(), maps);
    cr_assert_eq(get(l, 0).v.i, 1, "existing list untouched");
    drop(l);
}

static int rename_unsupported(const char *from, const char *to,
                              unsigned flags)
{
    return -ENOTSUP;
}

/* Where rename is not atomic (not Linux), create builds the list under
 * its own name directly, and leaves no temporary block. */
Test(list, create_without_atomic_rename)
{
    shmkit_item in[] = {shmkit_item_int(1), shmkit_item_str("two")};
    shmkit_list *l, *x;
    int i;

    real_open = shmkit__os.shm_open;
    shmkit__os.shm_open = record_open;
    shmkit__os.shm_open_anon = no_tmpfile;
    shmkit__os.shm_rename = rename_unsupported;
    l = make("norename", in, 2);
    cr_assert_eq(shmkit_list_create(&x, tu_name("norename"), in, 2, 0),
                 -EEXIST);
    shmkit__os_reset();
    cr_assert_eq(strcmp(shmkit_block_name(shmkit_list_block(l)),
                        tu_name("norename")), 0);
    cr_assert_eq(get(l, 0).v.i, 1);
    assert_s(get(l, 1), SHMKIT_STR, "two", 3);
    cr_assert_geq(nmade, 3, "temporaries and one real list");
    for (i = 0; i < nmade; i++) {
        shmkit_block *b;
        if (strcmp(made[i], tu_name("norename")) != 0)
            cr_assert_eq(shmkit_block_attach(&b, made[i], 0), -ENOENT,
                         "%s left behind", made[i]);
    }
    drop(l);
    /* a generated name too: built under it, the temporaries removed */
    nmade = 0;
    shmkit__os.shm_open = record_open;
    shmkit__os.shm_open_anon = no_tmpfile;
    shmkit__os.shm_rename = rename_unsupported;
    cr_assert_eq(shmkit_list_create(&l, NULL, in, 2, 0), 0, "%s",
                 shmkit_last_error());
    shmkit__os_reset();
    cr_assert_eq(strncmp(shmkit_block_name(shmkit_list_block(l)), "psm_", 4),
                 0);
    cr_assert_eq(get(l, 0).v.i, 1);
    assert_s(get(l, 1), SHMKIT_STR, "two", 3);
    for (i = 0; i < nmade; i++) {
        shmkit_block *b;
        if (strcmp(made[i], shmkit_block_name(shmkit_list_block(l))) != 0)
            cr_assert_eq(shmkit_block_attach(&b, made[i], 0), -ENOENT,
                         "%s left behind", made[i]);
    }
    drop(l);
}

/* ---- create writes through the descriptor -------------------------------- */

#include "core/os_linux.h"

static int fallocates, pwrites, pwrite_fail_at;
static bool pwrite_zero;

static int counting_fallocate(int fd, off_t off, off_t len)
{
    fallocates++;
    return posix_fallocate(fd, off, len);
}

/* Counts pwrites; the pwrite_fail_at-th (from 1) writes half, the next
 * one fails with ENOSPC, as a filling tmpfs answers (with pwrite_zero, it
 * writes nothing and returns 0). */
static ssize_t counting_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    pwrites++;
    if (pwrite_fail_at && pwrites == pwrite_fail_at)
        return pwrite(fd, buf, len / 2 ? len / 2 : len, off);
    if (pwrite_fail_at && pwrites > pwrite_fail_at)
        return pwrite_zero ? 0 : (errno = ENOSPC, -1);
    return pwrite(fd, buf, len, off);
}

/* Pages of [p, p + len) present in this process's page tables
 * (/proc/self/pagemap, bit 63). */
static size_t pages_present(const void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p / (uintptr_t)pg,
              z = ((uintptr_t)p + len + (uintptr_t)pg - 1) / (uintptr_t)pg;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    size_t present = 0;
    uint64_t e;

    cr_assert_geq(fd, 0, "pagemap: %s", strerror(errno));
    for (; a < z; a++) {
        cr_assert_eq(pread(fd, &e, 8, (off_t)(a * 8)), 8);
        present += (e >> 63) & 1;
    }
    close(fd);
    return present;
}

#define MANY 3000   /* 75 KB: more than one 64 KiB write */

static shmkit_item many[MANY];

static void many_items(void)
{
    size_t k;

    for (k = 0; k < MANY; k++)
        many[k] = k % 7 == 3 ? shmkit_item_str("seven")
                 : k % 5 == 1 ? shmkit_item_float((double)k / 2)
                 : shmkit_item_int((int64_t)k * 1000003);
}

static void check_many(const shmkit_list *l)
{
    size_t k;

    cr_assert_eq(shmkit_list_len(l), MANY);
    for (k = 0; k < MANY; k++) {
        shmkit_item it = get(l, (ptrdiff_t)k);
        cr_assert(shmkit_item_equal(&it, &many[k]) && it.type == many[k].type,
                  "item %zu", k);
    }
}

/* A new list's bytes are written with pwrite, which allocates the memory
 * (no fallocate) and leaves the creator's page tables empty: a create
 * costs no page fault per page. */
Test(list, create_writes_without_faulting)
{
    const char *names[] = {tu_name("pw"), NULL};
    shmkit_list *l;
    size_t i;

    many_items();
    for (i = 0; i < 2; i++) {
        fallocates = pwrites = pwrite_fail_at = 0;
        shmkit__sys.posix_fallocate = counting_fallocate;
        shmkit__sys.pwrite = counting_pwrite;
        cr_assert_eq(shmkit_list_create(&l, names[i], many, MANY, SHMKIT_RESERVE),
                     0, "%s", shmkit_last_error());
        shmkit__os_reset();
        cr_assert_eq(fallocates, 0, "%d fallocate calls", fallocates);
        cr_assert_eq(pwrites, 2, "%d pwrite calls", pwrites);
        cr_assert_eq(pages_present(shmkit_block_data(shmkit_list_block(l)),
                                   shmkit_block_size(shmkit_list_block(l))),
                     0, "%s: the create touched the mapping",
                     names[i] ? "named" : "generated");
        check_many(l);
        drop(l);
    }
}

/* A write that fails part way (a full /dev/shm) is the create's error and
 * leaves nothing: no name (none was ever given, generated names too), no
 * descriptor, no mapping. */
static char linked[8][300];
static int nlinked;

static int recording_linkat(int od, const char *op, int nd, const char *np,
                            int fl)
{
    if (nlinked < 8)
        snprintf(linked[nlinked++], sizeof linked[0], "%s", np);
    return linkat(od, op, nd, np, fl);
}

/* Creates lists (named, generated) whose second write is cut short and
 * whose third fails (zero: writes nothing): the create answers `expect`
 * and leaves nothing. */
static void failed_write(bool zero, int expect)
{
    const char *names[] = {tu_name("pwf"), NULL};
    int fds, maps;
    shmkit_list *l;
    size_t i;

    many_items();
    /* the tracker's descriptors */
    cr_assert_eq(shmkit_list_create(&l, tu_name("pwwarm"), many, 1,
                                    SHMKIT_TRACK), 0);
    drop(l);
    fds = tu_fd_count();
    maps = tu_shm_mapping_count();
    for (i = 0; i < 2; i++) {
        pwrites = nlinked = 0;
        pwrite_fail_at = 2;
        pwrite_zero = zero;
        shmkit__sys.pwrite = counting_pwrite;
        shmkit__sys.linkat = recording_linkat;
        cr_assert_eq(shmkit_list_create(&l, names[i], many, MANY, SHMKIT_TRACK),
                     expect);
        shmkit__os_reset();
        cr_assert_eq(pwrites, 3);
        cr_assert_eq(tu_count_leftovers(), 0);
        /* built nameless, named or generated: no name is ever given */
        cr_assert_eq(nlinked, 0, "%d names given", nlinked);
        cr_assert_eq(tu_fd_count(), fds);
        cr_assert_eq(tu_shm_mapping_count(), maps);
    }
    pwrite_fail_at = 0;
    pwrite_zero = false;
}

Test(list, failed_write_leaves_nothing)
{
    failed_write(false, -ENOSPC);
}

/* A write that writes nothing (pwrite returning 0, which no tmpfs should
 * answer) is -EIO, not a loop: shmkit__block_pwrite. */
Test(list, write_of_nothing_is_eio)
{
    failed_write(true, -EIO);
}

/* ---- the lock ---------------------------------------------------------- */

Test(list, lock_basics)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    shmkit_list *l = make("lk", in, 1), *m;
    char lockname[300];
    shmkit_block *b;

    snprintf(lockname, sizeof lockname, "%s.lock", tu_name("lk"));
    cr_assert_eq(shmkit_list_unlock(l), SHMKIT_ENOTOWNER);
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_lock(l), -EDEADLK);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), SHMKIT_ENOTOWNER);
    cr_assert_eq(shmkit_block_attach(&b, lockname, 0), 0, "sidecar exists");
    cr_assert(shmkit__list_lock_probe(shmkit_block_data(b),
                                      shmkit_block_size(b)));
    cr_assert_neq(shmkit_block_kind(b), SHMKIT_KIND_LIST);
    shmkit_block_close(b);
    /* a second handle shares the same lock */
    cr_assert_eq(shmkit_list_attach(&m, tu_name("lk"), 0), 0);
    cr_assert_eq(shmkit_list_lock(m), 0);
    cr_assert_eq(shmkit_list_close(m), 0, "close releases the lock");
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    drop(l);
    cr_assert_eq(shmkit_block_attach(&b, lockname, 0), -ENOENT,
                 "list_unlink removes the sidecar");
    cr_assert_eq(tu_count_leftovers(), 0);
}

Test(list, lock_refuses_foreign_sidecar)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    shmkit_list *l = make("lkf", in, 1);
    char lockname[300];
    shmkit_block *b;

    snprintf(lockname, sizeof lockname, "%s.lock", tu_name("lkf"));
    cr_assert_eq(shmkit_block_create(&b, lockname, 80, 0), 0);
    cr_assert_eq(shmkit_list_lock(l), SHMKIT_ECORRUPT);
    shmkit_block_close(b);
    drop(l);
    /* the list's unlink leaves a block that is no lock of ours */
    cr_assert_eq(shmkit_block_attach(&b, lockname, 0), 0,
                 "the list's unlink removed a foreign \"<name>.lock\"");
    cr_assert_eq(shmkit_block_unlink(b), 0);
    shmkit_block_close(b);
}

/* "<name>.lock" must itself be a valid name. */
Test(list, lock_name_too_long)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    char tag[SHMKIT_NAME_MAX + 1];
    size_t len = SHMKIT_NAME_MAX - strlen(tu_prefix());
    shmkit_list *l;

    memset(tag, 'n', len);
    tag[len] = 0;
    l = make(tag, in, 1);
    cr_assert_eq(strlen(shmkit_block_name(shmkit_list_block(l))),
                 SHMKIT_NAME_MAX);
    cr_assert_eq(shmkit_list_lock(l), -ENAMETOOLONG);
    cr_assert_eq(get(l, 0).v.i, 1);
    drop(l);
}

static void read_byte(int fd)
{
    char c;
    ssize_t r;

    do
        r = read(fd, &c, 1);
    while (r < 0 && errno == EINTR);
    cr_assert_eq(r, 1);
}

/* Kills a child of this process while it holds the list's lock. */
static void kill_holder(const char *name)
{
    int ready[2], hold[2], st;
    pid_t pid;

    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(hold), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_list *c;
        char ch;
        if (shmkit_list_attach(&c, name, 0) < 0 || shmkit_list_lock(c) < 0)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(2);
        (void)!read(hold[0], &ch, 1); /* until killed */
        _exit(3);
    }
    read_byte(ready[0]);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    st = tu_wait_status(pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
    close(ready[0]), close(ready[1]), close(hold[0]), close(hold[1]);
}

/* A holder killed with the lock held: the next locker is told and holds
 * the lock; repaired and marked consistent, it works normally after. */
Test(list, lock_owner_death)
{
    shmkit_item in[] = {shmkit_item_int(1)};
    shmkit_list *l = make("lkd", in, 1);

    cr_assert_eq(shmkit_list_consistent(l), SHMKIT_ENOTOWNER);
    kill_holder(tu_name("lkd"));
    cr_assert_eq(shmkit_list_lock(l), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_list_consistent(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_consistent(l), -EINVAL, "nothing to repair");
    cr_assert_eq(shmkit_list_unlock(l), 0);
    drop(l);
}

/* Unlocked without repair, the lock is poisoned for everyone, forever;
 * the list itself stays readable. */
Test(list, lock_not_repaired_is_not_recoverable)
{
    shmkit_item in[] = {shmkit_item_int(7)}, out;
    shmkit_list *l = make("lkp", in, 1), *other;
    int i;

    kill_holder(tu_name("lkp"));
    cr_assert_eq(shmkit_list_lock(l), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    cr_assert_eq(shmkit_list_attach(&other, tu_name("lkp"), 0), 0);
    for (i = 0; i < 3; i++) {
        cr_assert_eq(shmkit_list_lock(l), SHMKIT_ENOTRECOVERABLE);
        cr_assert_eq(shmkit_list_lock(other), SHMKIT_ENOTRECOVERABLE);
    }
    cr_assert_eq(shmkit_list_get(other, 0, &out), 0);
    cr_assert_eq(out.v.i, 7);
    shmkit_list_close(other);
    drop(l);
}

#define ROUNDS 20000

/* Writers run until told to stop, so every one of the parent's checks
 * happens while they write: each child sends one byte on `started` once
 * attached, and stops when the parent closes its end of `stop`. */
static bool told_to_stop(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

/* Writer: under the lock, item 0 holds `len` copies of one letter and
 * item 1 holds len, so a reader can check the two agree. */
static int locked_writer(const char *name, char letter, int started, int stop)
{
    char buf[64];
    shmkit_list *l;
    shmkit_item s, n;
    size_t i;

    if (shmkit_list_attach(&l, name, 0) < 0 || write(started, "s", 1) != 1)
        return 1;
    for (i = 0; !told_to_stop(stop); i++) {
        size_t len = 1 + i % 40;
        memset(buf, letter, len);
        s = shmkit_item_strn(buf, len);
        n = shmkit_item_int((int64_t)len);
        if (shmkit_list_lock(l) != 0 || shmkit_list_set(l, 0, &s) != 0 ||
            shmkit_list_set(l, 1, &n) != 0 || shmkit_list_unlock(l) != 0)
            return 2;
    }
    shmkit_list_close(l);
    return 0;
}

static void check_pair(shmkit_list *l)
{
    shmkit_item s, n;
    size_t k;

    cr_assert_eq(shmkit_list_lock(l), 0);
    s = get(l, 0);
    n = get(l, 1);
    cr_assert_eq(s.type, SHMKIT_STR);
    cr_assert_eq((int64_t)s.v.s.len, n.v.i, "torn pair: %zu vs %lld",
                 s.v.s.len, (long long)n.v.i);
    for (k = 1; k < s.v.s.len; k++)
        cr_assert_eq(s.v.s.ptr[k], s.v.s.ptr[0]);
    cr_assert_eq(shmkit_list_unlock(l), 0);
}

Test(list, lock_gives_consistent_items)
{
    char init[41];
    shmkit_item in[2];
    shmkit_list *l;
    pid_t pid[2];
    int started[2], stop[2], i;

    memset(init, 'A', 40);
    in[0] = shmkit_item_strn(init, 40); /* a slot of 48 bytes */
    in[1] = shmkit_item_int(40);
    l = make("lkc", in, 2);
    cr_assert_eq(pipe(started), 0);
    cr_assert_eq(pipe(stop), 0);
    for (i = 0; i < 2; i++) {
        pid[i] = fork();
        cr_assert_geq(pid[i], 0);
        if (pid[i] == 0) {
            close(stop[1]);
            _exit(locked_writer(tu_name("lkc"), i ? 'B' : 'A', started[1],
                                stop[0]));
        }
    }
    read_byte(started[0]);
    read_byte(started[0]);
    for (i = 0; i < ROUNDS; i++)
        check_pair(l);
    close(stop[1]);
    tu_wait_ok(pid[0]);
    tu_wait_ok(pid[1]);
    check_pair(l);
    close(stop[0]), close(started[0]), close(started[1]);
    drop(l);
}

/* Same-type int writes are single aligned stores: an unlocked reader only
 * ever sees one of the values written, never a mix. */
Test(list, unlocked_int_writes_are_whole)
{
    shmkit_item in[] = {shmkit_item_int(0)};
    shmkit_list *l = make("whole", in, 1);
    int started[2], stop[2], i;
    pid_t pid;

    cr_assert_eq(pipe(started), 0);
    cr_assert_eq(pipe(stop), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_list *c;
        uint64_t k;
        close(stop[1]);
        if (shmkit_list_attach(&c, tu_name("whole"), 0) < 0 ||
            write(started[1], "s", 1) != 1)
            _exit(1);
        for (k = 0; (k & 0xff) || !told_to_stop(stop[0]); k++) {
            shmkit_item v = shmkit_item_int(
                (int64_t)(0x0101010101010101ull * (k & 0x7f)));
            shmkit_list_set(c, 0, &v);
        }
        _exit(0);
    }
    read_byte(started[0]);
    for (i = 0; i < 1000000; i++) {
        uint64_t v = (uint64_t)get(l, 0).v.i;
        cr_assert_eq(v, 0x0101010101010101ull * (v & 0xff), "torn %#llx",
                     (unsigned long long)v);
    }
    close(stop[1]);
    tu_wait_ok(pid);
    close(stop[0]), close(started[0]), close(started[1]);
    drop(l);
}
