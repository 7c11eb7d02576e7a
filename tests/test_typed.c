/*
 * test_typed.c - self-describing Value and Array blocks: every type code,
 * shapes, the header checks (type, shape, version, corrupt, truncated),
 * publishing whole, atomics across processes, the embedded lock, and
 * `shmkit show` / `ls` on them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "testutil.h"

TestSuite(typed, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

static void drop(shmkit_array *a)
{
    cr_assert_eq(shmkit_array_unlink(a), 0);
    cr_assert_eq(shmkit_array_close(a), 0, "%s", shmkit_last_error());
}

/* Number of temporary objects this process left in /dev/shm. */
static int temp_leftovers(void)
{
    char prefix[64];
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    snprintf(prefix, sizeof prefix, "shmkit-tmp-%ld-", (long)getpid());
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* ---- create and attach ----------------------------------------------- */

Test(typed, every_type_code)
{
    static const struct { char code; size_t size; } t[] = {
        {'c', 1}, {'u', sizeof(wchar_t)}, {'b', 1}, {'B', 1}, {'h', 2},
        {'H', 2}, {'i', 4}, {'I', 4}, {'l', sizeof(long)},
        {'L', sizeof(long)}, {'q', 8}, {'Q', 8}, {'f', 4}, {'d', 8},
        {'?', 1}};
    size_t shape[1] = {5};

    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        shmkit_array *a, *b;
        unsigned char *d;
        cr_assert_eq(shmkit_typecode_size(t[k].code), t[k].size);
        cr_assert_eq(shmkit_array_create(&a, tu_name("types"), t[k].code, 1,
                                         shape, 0), 0, "'%c': %s", t[k].code,
                     shmkit_last_error());
        d = shmkit_array_data(a);
        cr_assert_eq((uintptr_t)d % SHMKIT_ARRAY_ALIGN, 0, "aligned data");
        for (size_t i = 0; i < 5 * t[k].size; i++)
            cr_assert_eq(d[i], 0, "zero-filled");
        memset(d, 0x5a, 5 * t[k].size);
        cr_assert_eq(shmkit_array_attach(&b, tu_name("types"), 0), 0);
        cr_assert_eq(shmkit_array_typecode(b), t[k].code);
        cr_assert_eq(shmkit_array_itemsize(b), t[k].size);
        cr_assert_eq(shmkit_array_ndim(b), 1);
        cr_assert_eq(shmkit_array_shape(b)[0], 5);
        cr_assert_eq(shmkit_array_length(b), 5);
        cr_assert_eq(shmkit_array_nbytes(b), 5 * t[k].size);
        cr_assert_eq(memcmp(shmkit_array_data(b), d, 5 * t[k].size), 0);
        cr_assert_eq(shmkit_block_kind(shmkit_array_block(b)),
                     SHMKIT_KIND_ARRAY);
        cr_assert_eq(shmkit_array_close(b), 0);
        drop(a);
    }
    cr_assert_eq(shmkit_typecode_size('x'), 0);
    cr_assert_str_eq(shmkit_typecode_format('u'), "w");
    cr_assert_str_eq(shmkit_typecode_format('d'), "d");
    cr_assert_null(shmkit_typecode_format('z'));
    cr_assert(shmkit_typecode_is_integer('Q'));
    cr_assert_not(shmkit_typecode_is_integer('d'));
    cr_assert_not(shmkit_typecode_is_integer('?'));
}

Test(typed, value_is_array_with_no_dimensions)
{
    shmkit_array *v, *w;

    cr_assert_eq(shmkit_value_create(&v, tu_name("val"), 'd', 0), 0);
    cr_assert_eq(shmkit_array_ndim(v), 0);
    cr_assert_eq(shmkit_array_length(v), 1);
    *(double *)shmkit_array_data(v) = 2.5;
    cr_assert_eq(shmkit_array_attach(&w, tu_name("val"), 0), 0);
    cr_assert_eq(*(double *)shmkit_array_data(w), 2.5);
    cr_assert_eq(shmkit_block_kind(shmkit_array_block(w)), SHMKIT_KIND_VALUE);
    cr_assert_eq(shmkit_array_close(w), 0);
    drop(v);
}

Test(typed, multi_dimensional_and_empty)
{
    size_t shape[3] = {2, 3, 4}, bad[3] = {2, 3, 5}, empty[2] = {0, 7};
    shmkit_array *a, *b;

    cr_assert_eq(shmkit_array_create(&a, tu_name("md"), 'f', 3, shape, 0), 0);
    cr_assert_eq(shmkit_array_length(a), 24);
    cr_assert_eq(shmkit_block_size(shmkit_array_block(a)),
                 SHMKIT_ARRAY_HEADER + 24 * 4);
    cr_assert_eq(shmkit_array_attach_as(&b, tu_name("md"), 'f', 3, shape, 0), 0);
    cr_assert_eq(shmkit_array_close(b), 0);
    cr_assert_eq(shmkit_array_attach_as(&b, tu_name("md"), 'd', 0, NULL, 0),
                 SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_attach_as(&b, tu_name("md"), 'f', 3, bad, 0),
                 SHMKIT_ESHAPE);
    cr_assert_eq(shmkit_array_attach_as(&b, tu_name("md"), 0, 2, shape, 0),
                 SHMKIT_ESHAPE);
    drop(a);

    cr_assert_eq(shmkit_array_create(&a, tu_name("empty"), 'i', 2, empty, 0),
                 0);
    cr_assert_eq(shmkit_array_length(a), 0);
    cr_assert_eq(shmkit_array_fetch_add(a, 0, 1, NULL), SHMKIT_EINDEX);
    drop(a);
}

Test(typed, create_errors_leave_nothing)
{
    size_t big[2] = {SIZE_MAX / 2, 3}, shape[1] = {4};
    size_t many[SHMKIT_ARRAY_MAXDIM + 1];
    shmkit_array *a, *b;

    for (int i = 0; i <= SHMKIT_ARRAY_MAXDIM; i++)
        many[i] = 1;
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 'x', 1, shape, 0),
                 SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 0, 1, shape, 0),
                 SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 'i', 2, big, 0),
                 SHMKIT_ESHAPE);
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 'i',
                                     SHMKIT_ARRAY_MAXDIM + 1, many, 0),
                 SHMKIT_ESHAPE);
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 'i', 1, NULL, 0),
                 SHMKIT_ESHAPE);
    cr_assert_eq(shmkit_array_create(&a, "bad/name", 'i', 1, shape, 0),
                 -EINVAL);
    cr_assert_eq(shmkit_array_create(&a, tu_name("e"), 'i', 1, shape,
                                     SHMKIT_RDONLY), -EINVAL);
    cr_assert_null(a);
    cr_assert_eq(tu_count_leftovers(), 0);

    cr_assert_eq(shmkit_array_create(&a, tu_name("dup"), 'i', 1, shape, 0), 0);
    ((int *)shmkit_array_data(a))[0] = 42;
    cr_assert_eq(shmkit_array_create(&b, tu_name("dup"), 'q', 1, shape, 0),
                 -EEXIST, "never replaces");
    cr_assert_eq(((int *)shmkit_array_data(a))[0], 42);
    cr_assert_eq(temp_leftovers(), 0, "the temporary object is removed");
    drop(a);

    cr_assert_eq(shmkit_array_create(&a, NULL, 'i', 1, shape, 0), 0);
    cr_assert_eq(strncmp(shmkit_block_name(shmkit_array_block(a)), "psm_", 4),
                 0);
    drop(a);
    cr_assert_eq(temp_leftovers(), 0);
}

/* ---- header validation ------------------------------------------------ */

/* Attaches `name` after applying an edit to a copy of a good header. */
static int attach_code(const char *name)
{
    shmkit_array *a;
    int r = shmkit_array_attach(&a, name, 0);

    if (r == 0)
        shmkit_array_close(a);
    return r;
}

Test(typed, corrupt_headers_get_specific_errors)
{
    size_t shape[2] = {3, 40}; /* 480 bytes: enough to overflow below */
    const char *name = tu_name("corrupt");
    shmkit_array *a;
    unsigned char *h, saved[SHMKIT_ARRAY_HEADER];
    uint64_t v;

    cr_assert_eq(shmkit_array_create(&a, name, 'i', 2, shape, 0), 0);
    h = shmkit_block_data(shmkit_array_block(a));
    memcpy(saved, h, sizeof saved);
#define RESTORE() memcpy(h, saved, sizeof saved)

    h[0] ^= 1;
    cr_assert_eq(attach_code(name), SHMKIT_EKIND, "magic");
    RESTORE();
    h[4] = 2;
    cr_assert_eq(attach_code(name), SHMKIT_EVERSION);
    RESTORE();
    h[8] = 'z';
    cr_assert_eq(attach_code(name), SHMKIT_ETYPE, "unknown code");
    RESTORE();
    h[10] = 8; /* itemsize of 'i' claimed 8 */
    cr_assert_eq(attach_code(name), SHMKIT_ETYPE, "item size mismatch");
    RESTORE();
    h[9] = SHMKIT_ARRAY_MAXDIM + 1;
    cr_assert_eq(attach_code(name), SHMKIT_ESHAPE);
    RESTORE();
    h[128] = 5; /* shape[0] 5: product no longer matches nbytes */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    v = UINT64_MAX / 2;
    memcpy(h + 128, &v, 8); /* product overflows */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    h[128 + 8 * 5] = 1; /* an unused extent */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    v = 100; /* data offset not aligned */
    memcpy(h + 16, &v, 8);
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    v = UINT64_MAX - 63; /* offset + size overflows */
    memcpy(h + 16, &v, 8);
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    v = 4096; /* beyond the block */
    memcpy(h + 16, &v, 8);
    cr_assert_eq(attach_code(name), SHMKIT_ETRUNCATED);
    RESTORE();
    h[64] ^= 0xff; /* the embedded lock's magic */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    h[64 + 4] = 1; /* the embedded lock's layout version (sync.h) */
    cr_assert_eq(attach_code(name), SHMKIT_EVERSION, "lock version");
    RESTORE();
    h[64 + 6] = 0; /* the embedded lock not recursive */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT, "lock not recursive");
    RESTORE();
    h[50] = 1; /* reserved */
    cr_assert_eq(attach_code(name), SHMKIT_ECORRUPT);
    RESTORE();
    cr_assert_eq(attach_code(name), 0);

    /* A peer cut the block short. */
    cr_assert_eq(shmkit_block_shrink(shmkit_array_block(a),
                                     SHMKIT_ARRAY_HEADER + 10), 0);
    cr_assert_eq(attach_code(name), SHMKIT_ETRUNCATED);
    cr_assert_eq(shmkit_block_shrink(shmkit_array_block(a), 100), 0);
    cr_assert_eq(attach_code(name), SHMKIT_ETRUNCATED);
    cr_assert_eq(shmkit_block_shrink(shmkit_array_block(a), 2), 0);
    cr_assert_eq(attach_code(name), SHMKIT_EKIND);
    drop(a);
#undef RESTORE
}

Test(typed, other_kinds_are_not_arrays)
{
    shmkit_block *b;
    shmkit_lock *l;
    shmkit_array *a;
    shmkit_array_info info;

    cr_assert_eq(shmkit_block_create(&b, tu_name("raw"), 4096, 0), 0);
    cr_assert_eq(shmkit_array_attach(&a, tu_name("raw"), 0), SHMKIT_EKIND);
    cr_assert_eq(shmkit_array_view(&a, b), SHMKIT_EKIND);
    cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_RAW);
    cr_assert_eq(shmkit_lock_create(&l, tu_name("lk"), 0, 0), 0);
    cr_assert_eq(shmkit_array_attach(&a, tu_name("lk"), 0), SHMKIT_EKIND);
    cr_assert_eq(shmkit_array_attach(&a, tu_name("none"), 0), -ENOENT);
    cr_assert_eq(shmkit_array_parse(NULL, 0, &info), SHMKIT_EKIND);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
}

/* An attacher racing the creator sees no object or a whole one, never a
 * half-built header. The child attaches in a loop until told to stop;
 * each object lives until the child has been in it. */
struct race_ctl {
    uint32_t stop;     /* atomic */
    uint32_t attached; /* atomic */
};

static void race_child(const char *name, struct race_ctl *ctl)
{
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_SEQ_CST)) {
        shmkit_array *a;
        int r = shmkit_array_attach(&a, name, 0);
        if (r == -ENOENT) {
            sched_yield();
            continue;
        }
        CHILD_CHECK(r == 0, 3);
        CHILD_CHECK(shmkit_array_length(a) == 1000, 4);
        CHILD_CHECK(shmkit_array_fetch_add(a, 0, 1, NULL) == 0, 5);
        CHILD_CHECK(shmkit_array_close(a) == 0, 6);
        __atomic_fetch_add(&ctl->attached, 1, __ATOMIC_SEQ_CST);
    }
    _exit(0);
}

Test(typed, attachers_never_see_half_made_objects)
{
    enum { ROUNDS = 300 };
    const char *name = tu_name("race");
    size_t shape[1] = {1000};
    struct race_ctl *ctl;
    shmkit_block *cb;
    pid_t pid;

    cr_assert_eq(shmkit_block_create(&cb, tu_name("racectl"), sizeof *ctl, 0),
                 0);
    ctl = shmkit_block_data(cb);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        race_child(name, ctl);
    for (int round = 0; round < ROUNDS; round++) {
        shmkit_array *a;
        int64_t v = 0;
        cr_assert_eq(shmkit_array_create(&a, name, 'q', 1, shape, 0), 0, "%s",
                     shmkit_last_error());
        while (v == 0) {
            cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
            if (v == 0)
                sched_yield();
        }
        drop(a);
    }
    __atomic_store_n(&ctl->stop, 1, __ATOMIC_SEQ_CST);
    tu_wait_ok(pid);
    cr_assert_geq(ctl->attached, ROUNDS);
    cr_assert_eq(temp_leftovers(), 0);
    cr_assert_eq(shmkit_block_unlink(cb), 0);
    cr_assert_eq(shmkit_block_close(cb), 0);
}

/* ---- atomics --------------------------------------------------------- */

static void add_child(const char *name, char tc, int n)
{
    shmkit_array *a;

    CHILD_CHECK(shmkit_array_attach_as(&a, name, tc, 0, NULL, 0) == 0, 2);
    for (int i = 0; i < n; i++)
        CHILD_CHECK(shmkit_array_fetch_add(a, 1, 1, NULL) == 0, 3);
    CHILD_CHECK(shmkit_array_close(a) == 0, 4);
    _exit(0);
}

Test(typed, atomic_fetch_add_two_processes_exact)
{
    static const char codes[] = "bBhHiIlLqQ";
    enum { N = 100000 };
    size_t shape[1] = {3};

    for (const char *tc = codes; *tc; tc++) {
        shmkit_array *a;
        pid_t p[2];
        int64_t v, want;
        cr_assert_eq(shmkit_array_create(&a, tu_name("atomic"), *tc, 1, shape,
                                         0), 0);
        for (int i = 0; i < 2; i++) {
            p[i] = fork();
            cr_assert_geq(p[i], 0);
            if (p[i] == 0)
                add_child(tu_name("atomic"), *tc, N);
        }
        tu_wait_ok(p[0]);
        tu_wait_ok(p[1]);
        cr_assert_eq(shmkit_array_load(a, 1, &v), 0);
        /* Narrow types wrap at their width. */
        want = 2 * N;
        if (shmkit_array_itemsize(a) < 8) {
            int bits = (int)shmkit_array_itemsize(a) * 8;
            want &= ((int64_t)1 << bits) - 1;
            if (strchr("bhil", *tc) && want >= (int64_t)1 << (bits - 1))
                want -= (int64_t)1 << bits;
        }
        cr_assert_eq(v, want, "'%c': %lld, want %lld", *tc, (long long)v,
                     (long long)want);
        cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
        cr_assert_eq(v, 0, "neighbours untouched");
        cr_assert_eq(shmkit_array_load(a, 2, &v), 0);
        cr_assert_eq(v, 0, "neighbours untouched");
        drop(a);
    }
}

Test(typed, atomic_widths_and_errors)
{
    size_t shape[1] = {2};
    shmkit_array *a, *d, *ro;
    int64_t v, e;

    cr_assert_eq(shmkit_array_create(&a, tu_name("w"), 'b', 1, shape, 0), 0);
    cr_assert_eq(shmkit_array_store(a, 0, 127), 0);
    cr_assert_eq(shmkit_array_fetch_add(a, 0, 1, &v), 0);
    cr_assert_eq(v, 127);
    cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
    cr_assert_eq(v, -128, "signed char wraps and sign-extends");
    e = 5;
    cr_assert_eq(shmkit_array_compare_exchange(a, 0, &e, 9), 0);
    cr_assert_eq(e, -128, "current value handed back");
    cr_assert_eq(shmkit_array_compare_exchange(a, 0, &e, 9), 1);
    cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
    cr_assert_eq(v, 9);
    cr_assert_eq(shmkit_array_load(a, 2, &v), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_array_load(a, 0, NULL), -EINVAL);
    cr_assert_eq(shmkit_array_compare_exchange(a, 0, NULL, 1), -EINVAL);

    cr_assert_eq(shmkit_array_attach(&ro, tu_name("w"), SHMKIT_RDONLY), 0);
    cr_assert_eq(shmkit_array_load(ro, 0, &v), 0);
    cr_assert_eq(v, 9);
    cr_assert_eq(shmkit_array_store(ro, 0, 1), -EBADF);
    cr_assert_eq(shmkit_array_fetch_add(ro, 0, 1, NULL), -EBADF);
    cr_assert_null(shmkit_array_lock(ro));
    cr_assert_eq(shmkit_array_close(ro), 0);
    drop(a);

    cr_assert_eq(shmkit_array_create(&a, tu_name("Q"), 'Q', 1, shape, 0), 0);
    cr_assert_eq(shmkit_array_store(a, 0, -1), 0);
    cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
    cr_assert_eq((uint64_t)v, UINT64_MAX);
    cr_assert_eq(shmkit_array_fetch_add(a, 0, 1, NULL), 0);
    cr_assert_eq(shmkit_array_load(a, 0, &v), 0);
    cr_assert_eq(v, 0);
    drop(a);

    cr_assert_eq(shmkit_array_create(&a, tu_name("H"), 'H', 1, shape, 0), 0);
    cr_assert_eq(shmkit_array_store(a, 1, 70000), 0);
    cr_assert_eq(shmkit_array_load(a, 1, &v), 0);
    cr_assert_eq(v, 70000 - 65536, "truncated to 16 bits, zero-extended");
    drop(a);

    cr_assert_eq(shmkit_array_create(&d, tu_name("d"), 'd', 1, shape, 0), 0);
    cr_assert_eq(shmkit_array_fetch_add(d, 0, 1, NULL), SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_load(d, 0, &v), SHMKIT_ETYPE);
    drop(d);
}

/* typed.h makes the checked atomics macros over inline forms (the fast
 * path for 8-byte integers); this file must be testing those. */
#ifndef shmkit_array_fetch_add
#error "typed.h's inline atomics are not in effect"
#endif

/* Every call through the inline form (macro) and the called form
 * (parenthesised name) must give the same answer, and that answer must be
 * `want`. Values come back in *v / *e from the inline form's run. */
static int both_load(shmkit_array *a, size_t i, int64_t *out)
{
    int64_t o2 = 0;
    int r1 = shmkit_array_load(a, i, out);
    int r2 = (shmkit_array_load)(a, i, out ? &o2 : NULL);

    cr_assert_eq(r1, r2, "load(%zu): inline %d, called %d", i, r1, r2);
    if (r1 == 0)
        cr_assert_eq(*out, o2);
    return r1;
}

Test(typed, inline_atomics_make_the_calls_checks)
{
    size_t three[1] = {3}, none[1] = {0};
    shmkit_array *q, *ro, *d, *i32, *empty;
    int64_t v = 0, e;

    cr_assert_eq(shmkit_array_create(&q, tu_name("iq"), 'q', 1, three, 0), 0);
    cr_assert_eq(shmkit_array_attach(&ro, tu_name("iq"), SHMKIT_RDONLY), 0);
    cr_assert_eq(shmkit_array_create(&d, tu_name("id"), 'd', 1, three, 0), 0);
    cr_assert_eq(shmkit_array_create(&i32, tu_name("ii"), 'i', 1, three, 0), 0);
    cr_assert_eq(shmkit_array_create(&empty, tu_name("ie"), 'q', 1, none, 0), 0);

    /* The fast path itself: values, wrap-around, old value, CAS. */
    cr_assert_eq(shmkit_array_store(q, 2, INT64_MAX), 0);
    cr_assert_eq(shmkit_array_fetch_add(q, 2, 1, &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(both_load(q, 2, &v), 0);
    cr_assert_eq(v, INT64_MIN, "wraps like the called form");
    cr_assert_eq(shmkit_array_fetch_add(q, 0, -5, NULL), 0);
    e = 1;
    cr_assert_eq(shmkit_array_compare_exchange(q, 0, &e, 7), 0);
    cr_assert_eq(e, -5, "current value handed back");
    cr_assert_eq(shmkit_array_compare_exchange(q, 0, &e, 7), 1);
    cr_assert_eq(both_load(ro, 0, &v), 0, "a read-only handle may load");
    cr_assert_eq(v, 7);

    /* Past the end: SHMKIT_EINDEX from both forms, nothing written. */
    cr_assert_eq(both_load(q, 3, &v), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_array_store(q, 3, 1), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_array_fetch_add(q, 3, 1, NULL), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_array_fetch_add(q, (size_t)-1, 1, NULL), SHMKIT_EINDEX);
    e = 0;
    cr_assert_eq(shmkit_array_compare_exchange(q, 3, &e, 1), SHMKIT_EINDEX);
    cr_assert_eq(shmkit_array_fetch_add(empty, 0, 1, NULL), SHMKIT_EINDEX);
    cr_assert_eq(both_load(empty, 0, &v), SHMKIT_EINDEX);

    /* Read-only handle: -EBADF for every write, EINDEX first past the end. */
    cr_assert_eq(shmkit_array_store(ro, 0, 1), -EBADF);
    cr_assert_eq(shmkit_array_fetch_add(ro, 0, 1, NULL), -EBADF);
    e = 7;
    cr_assert_eq(shmkit_array_compare_exchange(ro, 0, &e, 1), -EBADF);
    cr_assert_eq(shmkit_array_fetch_add(ro, 3, 1, NULL), SHMKIT_EINDEX);
    cr_assert_eq(both_load(q, 0, &v), 0);
    cr_assert_eq(v, 7, "no write went through the read-only handle");

    /* NULL out pointers: -EINVAL. */
    cr_assert_eq(both_load(q, 0, NULL), -EINVAL);
    cr_assert_eq(shmkit_array_compare_exchange(q, 0, NULL, 1), -EINVAL);

    /* 8-byte items that are not integers: SHMKIT_ETYPE, never the fast path. */
    cr_assert_eq(shmkit_array_store(d, 0, 1), SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_fetch_add(d, 0, 1, NULL), SHMKIT_ETYPE);
    e = 0;
    cr_assert_eq(shmkit_array_compare_exchange(d, 0, &e, 1), SHMKIT_ETYPE);
    cr_assert_eq(both_load(d, 0, &v), SHMKIT_ETYPE);
    cr_assert_eq(shmkit_array_fetch_add(d, 3, 1, NULL), SHMKIT_ETYPE,
                 "the type is checked before the index");

    /* Other widths take the called form: 4-byte items still wrap at 32 bits. */
    cr_assert_eq(shmkit_array_store(i32, 1, INT32_MAX), 0);
    cr_assert_eq(shmkit_array_fetch_add(i32, 1, 1, &v), 0);
    cr_assert_eq(v, INT32_MAX);
    cr_assert_eq(both_load(i32, 1, &v), 0);
    cr_assert_eq(v, INT32_MIN);
    cr_assert_eq(shmkit_array_fetch_add(i32, 3, 1, NULL), SHMKIT_EINDEX);

    cr_assert_eq(shmkit_array_close(ro), 0);
    drop(empty);
    drop(i32);
    drop(d);
    drop(q);
}

/* ---- the embedded lock ----------------------------------------------- */

Test(typed, locked_increment_across_processes)
{
    enum { N = 3, M = 10000 };
    shmkit_array *v;
    pid_t p[N];

    cr_assert_eq(shmkit_value_create(&v, tu_name("lv"), 'd', 0), 0);
    cr_assert(shmkit_mutex_is_recursive(shmkit_array_lock(v)));
    for (int i = 0; i < N; i++) {
        p[i] = fork();
        cr_assert_geq(p[i], 0);
        if (p[i] == 0) {
            shmkit_array *w;
            double *x;
            CHILD_CHECK(shmkit_array_attach_as(&w, tu_name("lv"), 'd', 0,
                                               NULL, 0) == 0, 2);
            x = shmkit_array_data(w);
            for (int j = 0; j < M; j++) {
                CHILD_CHECK(shmkit_mutex_lock(shmkit_array_lock(w)) == 0, 3);
                *x += 1;
                CHILD_CHECK(shmkit_mutex_unlock(shmkit_array_lock(w)) == 0, 4);
            }
            CHILD_CHECK(shmkit_array_close(w) == 0, 5);
            _exit(0);
        }
    }
    for (int i = 0; i < N; i++)
        tu_wait_ok(p[i]);
    cr_assert_eq(*(double *)shmkit_array_data(v), (double)N * M);
    drop(v);
}

Test(typed, close_refused_while_holding_the_embedded_lock)
{
    shmkit_array *v, *view;

    cr_assert_eq(shmkit_value_create(&v, tu_name("held"), 'i', 0), 0);
    cr_assert_eq(shmkit_mutex_lock(shmkit_array_lock(v)), 0);
    cr_assert_eq(shmkit_array_close(v), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_array_view(&view, shmkit_array_block(v)), 0);
    cr_assert_eq(shmkit_array_close(view), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_mutex_unlock(shmkit_array_lock(v)), 0);
    cr_assert_eq(shmkit_array_close(view), 0, "borrowed block stays");
    cr_assert_eq(*(int *)shmkit_array_data(v), 0);
    drop(v);
}

Test(typed, foreign_namespace_refused)
{
    shmkit_array *v, *w;
    uint64_t ns;
    unsigned char *h;

    cr_assert_eq(shmkit_value_create(&v, tu_name("ns"), 'i', 0), 0);
    h = shmkit_block_data(shmkit_array_block(v));
    memcpy(&ns, h + 32, 8);
    if (ns == 0)
        cr_skip_test("PID namespace unknown here");
    ns++;
    memcpy(h + 32, &ns, 8);
    cr_assert_eq(shmkit_array_attach(&w, tu_name("ns"), 0), SHMKIT_ENAMESPACE);
    cr_assert_eq(shmkit_array_attach(&w, tu_name("ns"), SHMKIT_RDONLY), 0,
                 "read-only cannot lock: no namespace hazard");
    cr_assert_eq(shmkit_array_close(w), 0);
    drop(v);
}

/* ---- the command ----------------------------------------------------- */

static void show(const char *name, bool json, char *out, size_t len)
{
    char *argv[5] = {(char *)tu_cli(), "show", (char *)name,
                     json ? "--json" : NULL, NULL};
    int st = tu_run(argv, out, len);

    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "show %s: %#x", name, st);
}

Test(typed, cli_show_value_array_lock)
{
    size_t shape[2] = {10, 10};
    shmkit_array *v, *a;
    shmkit_lock *l;
    char out[16384];
    int *d;

    cr_assert_eq(shmkit_value_create(&v, tu_name("sv"), 'q', 0), 0);
    *(long long *)shmkit_array_data(v) = -42;
    show(tu_name("sv"), false, out, sizeof out);
    cr_assert(strstr(out, "value of 'q'") && strstr(out, "value: -42"), "%s",
              out);
    show(tu_name("sv"), true, out, sizeof out);
    cr_assert(strstr(out, "\"kind\": \"value\"") &&
              strstr(out, "\"typecode\": \"q\"") &&
              strstr(out, "\"value\": -42"), "%s", out);

    cr_assert_eq(shmkit_array_create(&a, tu_name("sa"), 'i', 2, shape, 0), 0);
    d = shmkit_array_data(a);
    for (int i = 0; i < 100; i++)
        d[i] = i * 3;
    show(tu_name("sa"), false, out, sizeof out);
    cr_assert(strstr(out, "shape [10, 10]"), "%s", out);
    cr_assert(strstr(out, "values:\n[[  0   3   6") &&
              strstr(out, "\n [ 30  33  36") && strstr(out, "297]]\n"),
              "rows nested as NumPy prints them: %s", out);
    show(tu_name("sa"), true, out, sizeof out);
    cr_assert(strstr(out, "\"shape\": [10, 10]") &&
              strstr(out, "\"values\": [0, 3, 6,") && strstr(out, "297]"),
              "%s", out);

    cr_assert_eq(shmkit_lock_create(&l, tu_name("sl"), 0, 0), 0);
    cr_assert_eq(shmkit_mutex_lock(shmkit_lock_mutex(l)), 0);
    show(tu_name("sl"), true, out, sizeof out);
    cr_assert(strstr(out, "\"kind\": \"lock\"") &&
              strstr(out, "\"state\": \"held\""), "%s", out);
    cr_assert_eq(shmkit_mutex_unlock(shmkit_lock_mutex(l)), 0);
    show(tu_name("sl"), false, out, sizeof out);
    cr_assert(strstr(out, "state: free"), "%s", out);

    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
    drop(a);
    drop(v);
}

Test(typed, cli_show_floats_chars_bools)
{
    size_t shape[1] = {3};
    shmkit_array *f, *c, *b;
    char out[4096];

    cr_assert_eq(shmkit_array_create(&f, tu_name("f"), 'd', 1, shape, 0), 0);
    ((double *)shmkit_array_data(f))[0] = 0.5;
    ((double *)shmkit_array_data(f))[1] = 1.0 / 0.0;
    show(tu_name("f"), true, out, sizeof out);
    cr_assert(strstr(out, "[0.5, null, 0]"), "%s", out);
    cr_assert_eq(shmkit_array_create(&c, tu_name("c"), 'c', 1, shape, 0), 0);
    memcpy(shmkit_array_data(c), "a\"b", 3);
    show(tu_name("c"), true, out, sizeof out);
    cr_assert(strstr(out, "[\"a\", \"\\\"\", \"b\"]"), "%s", out);
    cr_assert_eq(shmkit_array_create(&b, tu_name("b"), '?', 1, shape, 0), 0);
    ((unsigned char *)shmkit_array_data(b))[1] = 1;
    show(tu_name("b"), true, out, sizeof out);
    cr_assert(strstr(out, "[false, true, false]"), "%s", out);
    drop(f);
    drop(c);
    drop(b);
}

Test(typed, cli_ls_marks_kinds)
{
    char *argv[] = {(char *)tu_cli(), "ls", NULL};
    char out[65536], line[512];
    shmkit_array *a;
    int st;

    cr_assert_eq(shmkit_value_create(&a, tu_name("lsv"), 'i', 0), 0);
    st = tu_run(argv, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (char *p = strstr(out, tu_name("lsv")); p; p = NULL) {
        size_t n = strcspn(p, "\n");
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        cr_assert(strstr(line, " value "), "%s", line);
    }
    cr_assert(strstr(out, tu_name("lsv")), "%s", out);
    drop(a);
}

/* ---- publishing whole, under failure and SIGKILL ---------------------- */

#include "core/os.h"

static int rename_fails(const char *from, const char *to, unsigned flags)
{
    (void)from, (void)to, (void)flags;
    return -EIO;
}

static int link_fails(int fd, const char *name)
{
    (void)fd, (void)name;
    return -EIO;
}

static int no_tmpfile(mode_t mode)
{
    (void)mode;
    return -EOPNOTSUPP;
}

Test(typed, failed_publish_leaves_nothing)
{
    size_t shape[1] = {8};
    shmkit_array *a;
    shmkit_lock *l;
    int round;

    /* Nameless objects published by link, then (where the system has
     * none) temporary names published by rename. */
    for (round = 0; round < 2; round++) {
        shmkit__os.shm_link = link_fails;
        shmkit__os.shm_rename = rename_fails;
        if (round == 1)
            shmkit__os.shm_open_anon = no_tmpfile;
        cr_assert_eq(shmkit_array_create(&a, tu_name("pub"), 'i', 1, shape, 0),
                     -EIO);
        cr_assert_eq(shmkit_lock_create(&l, tu_name("publ"), 0, 0), -EIO);
        shmkit__os_reset();
        cr_assert_eq(temp_leftovers(), 0, "temporary objects removed");
        cr_assert_eq(tu_count_leftovers(), 0, "nothing at the real names");
    }
}

/* Removes the temporary objects a killed creator left (its pid in the
 * name), returning how many there were. */
static int reap_temps_of(pid_t pid)
{
    char prefix[64], path[600];
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    snprintf(prefix, sizeof prefix, "shmkit-tmp-%ld-", (long)pid);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        n += unlink(path) == 0;
    }
    closedir(d);
    return n;
}

/*
 * Kill points inside create. The creator runs with the OS operations that
 * create uses wrapped: before and after each call, it counts a point, and
 * at point k it writes k to a pipe and waits to be killed, so the parent
 * knows exactly where the kill landed. Library code between two calls (the
 * header being filled) lies between an "after" and the next "before"
 * point. The last point is "create returned".
 */
static shmkit__os_ops real_os;
static int stop_at = -1, stop_fd = -1, os_calls, rename_call = -1;

static void maybe_stop(void)
{
    tu_kill_point(&os_calls, stop_at, stop_fd);
}

static int h_shm_open(const char *n, int o, mode_t m)
{
    int r;

    maybe_stop();
    r = real_os.shm_open(n, o, m);
    maybe_stop();
    return r;
}

static int h_shm_rename(const char *from, const char *to, unsigned flags)
{
    int r;

    if (rename_call < 0)
        rename_call = os_calls; /* the point just before publishing */
    maybe_stop();
    r = real_os.shm_rename(from, to, flags);
    maybe_stop();
    return r;
}

/* Publishing a nameless object (the O_TMPFILE path). */
static int h_shm_link(int fd, const char *name)
{
    int r;

    if (rename_call < 0)
        rename_call = os_calls; /* the point just before publishing */
    maybe_stop();
    r = real_os.shm_link(fd, name);
    maybe_stop();
    return r;
}

static int h_shm_open_anon(mode_t m)
{
    int r;

    maybe_stop();
    r = real_os.shm_open_anon(m);
    maybe_stop();
    return r;
}

static int h_ftruncate(int fd, off_t len)
{
    int r;

    maybe_stop();
    r = real_os.ftruncate(fd, len);
    maybe_stop();
    return r;
}

static int h_fallocate(int fd, off_t len)
{
    int r;

    maybe_stop();
    r = real_os.fallocate(fd, len);
    maybe_stop();
    return r;
}

static int h_mmap(void **addr, size_t len, bool w, bool pop, int fd)
{
    int r;

    maybe_stop();
    r = real_os.mmap(addr, len, w, pop, fd);
    maybe_stop();
    return r;
}

static int h_close(int fd)
{
    int r;

    maybe_stop();
    r = real_os.close(fd);
    maybe_stop();
    return r;
}

static int h_fstat(int fd, struct stat *st)
{
    int r;

    maybe_stop();
    r = real_os.fstat(fd, st);
    maybe_stop();
    return r;
}

static int h_munmap(void *addr, size_t len)
{
    int r;

    maybe_stop();
    r = real_os.munmap(addr, len);
    maybe_stop();
    return r;
}

static int h_random(void *buf, size_t len)
{
    int r;

    maybe_stop();
    r = real_os.random(buf, len);
    maybe_stop();
    return r;
}

static void hook_os(void)
{
    real_os = shmkit__os;
    shmkit__os.shm_open = h_shm_open;
    shmkit__os.shm_rename = h_shm_rename;
    shmkit__os.shm_link = h_shm_link;
    shmkit__os.shm_open_anon = h_shm_open_anon;
    shmkit__os.ftruncate = h_ftruncate;
    shmkit__os.fallocate = h_fallocate;
    shmkit__os.mmap = h_mmap;
    shmkit__os.close = h_close;
    shmkit__os.fstat = h_fstat;
    shmkit__os.munmap = h_munmap;
    shmkit__os.random = h_random;
}

/* A creator killed at each point of create: before the object is
 * published under its name, the name holds nothing; from then on, a whole
 * object. Every point is hit (the creator says where it stopped). */
Test(typed, creator_killed_mid_create_never_half_publishes)
{
    enum { REPS = 4, MAX_POINTS = 64 };
    size_t shape[2] = {16, 16};
    const char *name = tu_name("killpub");
    int points, publish, hits[MAX_POINTS] = {0}, temps = 0;
    shmkit_array *a;

    /* A dry pass counts create's points and finds the publishing call. */
    hook_os();
    os_calls = 0;
    cr_assert_eq(shmkit_array_create(&a, name, 'd', 2, shape, 0), 0);
    points = os_calls + 1, publish = rename_call;
    shmkit__os_reset();
    drop(a);
    cr_assert_geq(publish, 0, "create never published (link or rename)");
    cr_assert_leq(points, MAX_POINTS);

    for (int round = 0; round < points * REPS; round++) {
        int k = round % points, p[2], r;
        unsigned char got;
        pid_t pid;

        cr_assert_eq(pipe(p), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            shmkit_array *c;
            close(p[0]);
            stop_fd = p[1], stop_at = k, os_calls = 0;
            hook_os();
            if (shmkit_array_create(&c, name, 'd', 2, shape, 0) != 0)
                _exit(2);
            maybe_stop(); /* point N: create returned */
            _exit(4);
        }
        close(p[1]);
        cr_assert_eq(read(p[0], &got, 1), 1, "round %d: creator never "
                     "reached point %d", round, k);
        cr_assert_eq(got, k);
        close(p[0]);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        tu_wait_signaled(pid, SIGKILL);
        hits[k]++;
        r = shmkit_array_attach(&a, name, 0);
        if (k <= publish) {
            cr_assert_eq(r, -ENOENT, "killed before publishing (point %d of "
                         "%d) but the name holds: %s", k, points,
                         shmkit_errname(r));
        } else {
            cr_assert_eq(r, 0, "point %d: %s", k, shmkit_errname(r));
            cr_assert_eq(shmkit_array_length(a), 256);
            drop(a);
        }
        temps += reap_temps_of(pid);
    }
    for (int k = 0; k < points; k++)
        cr_assert_eq(hits[k], REPS, "point %d hit %d times", k, hits[k]);
    cr_log_info("%d kill points x %d, publishing at point %d, %d temporaries "
                "reaped", points, REPS, publish, temps);
}
