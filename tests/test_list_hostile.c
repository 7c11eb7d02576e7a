/*
 * test_list_hostile.c - corrupt and hostile ShareableList blocks: every
 * header field broken in turn must give its specific error, never a crash
 * or a read outside the block (the in-memory cases use heap buffers of the
 * exact size, so the sanitizer build catches any overread), and a peer
 * changing the bytes after attach must not get past the checks at use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objects/list_internal.h"
#include "testutil.h"

TestSuite(list_hostile, .init = tu_setup, .fini = tu_cleanup, .timeout = 60);

/* A valid image: [7, "hello", 2.5, b"bytes!!!!"] -> slots 8, 8, 8, 16. */
#define N 4
#define DATA 48           /* 8 * (N + 2) */
#define FMT (DATA + 40)   /* 88 */
#define CODE (FMT + 8 * N)
#define SIZE (CODE + N)   /* 124 */

static unsigned char *image(size_t size)
{
    shmkit_item in[] = {shmkit_item_int(7), shmkit_item_str("hello"),
                        shmkit_item_float(2.5),
                        shmkit_item_bytes("bytes!!!!", 9)};
    shmkit_list *l;
    unsigned char *p = calloc(1, size);

    cr_assert_not_null(p);
    cr_assert_eq(shmkit_list_create(&l, tu_name("img"), in, N, 0), 0);
    cr_assert_eq(shmkit_block_size(shmkit_list_block(l)), SIZE);
    memcpy(p, shmkit_block_data(shmkit_list_block(l)), size < SIZE ? size : SIZE);
    shmkit_list_unlink(l);
    shmkit_list_close(l);
    return p;
}

static void put64(unsigned char *p, size_t off, int64_t v)
{
    memcpy(p + off, &v, 8);
}

static void put_fmt(unsigned char *p, size_t k, const char *f, size_t len)
{
    memset(p + FMT + 8 * k, 0, 8);
    memcpy(p + FMT + 8 * k, f, len);
}

/* Validates p[0..size) both ways (view and probe); returns the code. */
static int check(unsigned char *p, size_t size)
{
    shmkit_list *l = NULL;
    int r = shmkit__list_view(&l, p, size, false);

    cr_assert_eq(shmkit__list_probe(p, size), r == 0);
    shmkit_list_close(l);
    return r;
}

Test(list_hostile, valid_image_validates)
{
    unsigned char *p = image(SIZE);

    cr_assert_eq(check(p, SIZE), 0);
    free(p);
}

Test(list_hostile, sizes)
{
    unsigned char *p = image(SIZE);
    unsigned char *big = image(SIZE + 8);
    size_t s;

    for (s = 1; s < 16; s++)
        cr_assert_eq(check(p, s), SHMKIT_ETRUNCATED, "size %zu", s);
    cr_assert_eq(check(p, SIZE - 1), SHMKIT_ETRUNCATED);
    cr_assert_eq(check(p, SIZE - 9), SHMKIT_ETRUNCATED);
    cr_assert_eq(check(big, SIZE + 8), SHMKIT_ECORRUPT, "bytes beyond end");
    free(p);
    free(big);
}

Test(list_hostile, item_count)
{
    static const int64_t bad[] = {-1, INT64_MIN, INT64_MAX, 1000, N + 1};
    size_t k;

    for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        unsigned char *p = image(SIZE);
        int r;
        put64(p, 0, bad[k]);
        r = check(p, SIZE);
        cr_assert(r == (bad[k] < 0 ? SHMKIT_ECORRUPT : SHMKIT_ETRUNCATED),
                  "count %lld: %d", (long long)bad[k], r);
        free(p);
    }
    /* fewer items than the block holds: the rest is "beyond the end" or
     * garbage formats, never a success */
    for (k = 0; k < N; k++) {
        unsigned char *p = image(SIZE);
        int r;
        put64(p, 0, (int64_t)k);
        r = check(p, SIZE);
        cr_assert(r == SHMKIT_ECORRUPT || r == SHMKIT_ETRUNCATED, "%d", r);
        free(p);
    }
}

Test(list_hostile, offsets)
{
    static const struct { size_t idx; int64_t v; int want; } cases[] = {
        {0, 8, SHMKIT_ECORRUPT},         /* first offset not 0 */
        {1, 0, SHMKIT_ECORRUPT},         /* empty slot */
        {1, 12, SHMKIT_ECORRUPT},        /* not a multiple of 8 */
        {2, 8, SHMKIT_ECORRUPT},         /* not increasing */
        {3, 8, SHMKIT_ECORRUPT},         /* decreasing */
        {4, 48, SHMKIT_ETRUNCATED},      /* layout needs 8 more bytes */
        {4, 32, SHMKIT_ECORRUPT},        /* layout ends early */
        {4, INT64_MAX - 7, SHMKIT_ETRUNCATED},
        {4, (int64_t)1 << 62, SHMKIT_ETRUNCATED},
        {4, INT64_MIN, SHMKIT_ECORRUPT}, /* negative */
        {2, -8, SHMKIT_ECORRUPT},
    };
    size_t k;

    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char *p = image(SIZE);
        int r;
        put64(p, 8 + 8 * cases[k].idx, cases[k].v);
        r = check(p, SIZE);
        cr_assert_eq(r, cases[k].want, "case %zu: %d", k, r);
        free(p);
    }
}

Test(list_hostile, format_records)
{
    static const struct { const char *f; size_t len; } bad[] = {
        {"", 0}, {"z", 1}, {"q\0d", 3}, {"016s", 4}, {"s", 1}, {"8s8s", 4},
        {"8sxx", 4}, {"9s", 2}, {"17s", 3}, {"qqqqqqqq", 8}, {"d ", 2},
        {" d", 2}, {"-8s", 3}, {"8S", 2}, {"\xff", 1}, {"xxxxxxx\0", 8},
        {"xxxxxx??", 8}, {"8s1", 3}, {"8sx\0x", 5}, {"16s01x", 6},
        {"99999999", 8}, {"8s9x", 4}, {"Q", 1}, {"<q", 2},
    };
    size_t k;

    for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        unsigned char *p = image(SIZE);
        put_fmt(p, 1, bad[k].f, bad[k].len); /* item 1: slot of 8 */
        cr_assert_eq(check(p, SIZE), SHMKIT_ECORRUPT, "format '%s'", bad[k].f);
        free(p);
    }
}

Test(list_hostile, format_records_accepted)
{
    static const char *good[] = {"q", "d", "xxxxxxx?", "xxxxxx?x", "8s",
                                 "0s", "7sx", "3s5x", "8s0x", "1s"};
    size_t k;

    for (k = 0; k < sizeof good / sizeof good[0]; k++) {
        unsigned char *p = image(SIZE);
        put_fmt(p, 1, good[k], strlen(good[k]));
        cr_assert_eq(check(p, SIZE), 0, "format '%s'", good[k]);
        free(p);
    }
}

Test(list_hostile, codes)
{
    static const unsigned char bad[] = {4, 5, 0x7f, 0x80, 0xff};
    size_t k;

    for (k = 0; k < sizeof bad; k++) {
        unsigned char *p = image(SIZE);
        p[CODE + 2] = bad[k];
        cr_assert_eq(check(p, SIZE), SHMKIT_ECORRUPT, "code %u", bad[k]);
        free(p);
    }
}

/* After attach, a peer rewrites records, codes, data and even the offsets
 * (which the handle copied): every access re-validates and stays inside. */
Test(list_hostile, peer_changes_after_attach)
{
    unsigned char *p = image(SIZE);
    shmkit_list *l;
    shmkit_item it, one = shmkit_item_int(7);
    size_t c;
    char buf[64];

    cr_assert_eq(shmkit__list_view(&l, p, SIZE, false), 0);
    put64(p, 8 + 8 * 4, INT64_MAX); /* cached: no effect */
    put64(p, 0, 1000);
    cr_assert_eq(shmkit_list_len(l), N);
    cr_assert_eq(shmkit_list_get(l, 3, &it), 0);
    cr_assert_eq(it.v.s.len, 9);
    put_fmt(p, 3, "17s", 3); /* longer than its slot of 16 */
    cr_assert_eq(shmkit_list_get(l, 3, &it), SHMKIT_ECORRUPT);
    put_fmt(p, 3, "16s", 3);
    memset(p + DATA + 24, 'x', 16); /* no NUL left: still bounded by 16 */
    cr_assert_eq(shmkit_list_get(l, 3, &it), 0);
    cr_assert_eq(it.v.s.len, 16);
    p[CODE + 0] = 1; /* str code on an int format */
    cr_assert_eq(shmkit_list_get(l, 0, &it), SHMKIT_ECORRUPT);
    cr_assert(strstr(shmkit_last_error(), "code 1"), "%s", shmkit_last_error());
    cr_assert_eq(shmkit_list_count(l, &one, &c), SHMKIT_ECORRUPT);
    cr_assert_eq(shmkit_list_index(l, &one, &c), SHMKIT_ECORRUPT);
    p[CODE + 0] = 9;
    cr_assert_eq(shmkit_list_get(l, 0, &it), SHMKIT_ECORRUPT);
    p[CODE + 0] = 0;
    cr_assert_eq(shmkit_list_get(l, 0, &it), 0);
    put_fmt(p, 2, "\x01\x02", 2);
    cr_assert_eq(shmkit_list_format(l, buf, sizeof buf, NULL), SHMKIT_ECORRUPT);
    cr_assert(strstr(shmkit_last_error(), "\\x01\\x02"), "%s",
              shmkit_last_error());
    /* set repairs the item */
    it = shmkit_item_float(1.5);
    cr_assert_eq(shmkit_list_set(l, 2, &it), 0);
    cr_assert_eq(shmkit_list_format(l, buf, sizeof buf, NULL), 0);
    cr_assert_str_eq(buf, "q8sd16s");
    shmkit_list_close(l);
    free(p);
}

/* The same through real blocks: attach refuses with the same codes, the
 * block is not called a list, and nothing is unlinked. */
Test(list_hostile, attach_real_blocks)
{
    unsigned char *p = image(SIZE);
    shmkit_block *b;
    shmkit_list *l;

    put_fmt(p, 0, "zz", 2);
    cr_assert_eq(shmkit_block_create(&b, tu_name("bad"), SIZE, 0), 0);
    memcpy(shmkit_block_data(b), p, SIZE);
    cr_assert_eq(shmkit_list_attach(&l, tu_name("bad"), 0), SHMKIT_ECORRUPT);
    cr_assert(strstr(shmkit_last_error(), "unknown format record"), "%s",
              shmkit_last_error());
    cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_RAW);
    cr_assert_eq(shmkit_list_open_block(&l, b), SHMKIT_ECORRUPT);
    put_fmt(shmkit_block_data(b), 0, "q", 1);
    cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_LIST);
    cr_assert_eq(shmkit_list_open_block(&l, b), 0);
    cr_assert_eq(shmkit_list_close(l), 0, "borrowed block stays open");
    cr_assert_eq(((unsigned char *)shmkit_block_data(b))[0], N);
    cr_assert_eq(shmkit_list_attach(&l, tu_name("bad"), 0), 0);
    shmkit_list_close(l);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    free(p);
}

Test(list_hostile, zero_filled_and_random_blocks_are_not_lists)
{
    static const size_t sizes[] = {8, 17, 24, 100, 4096, 65536};
    shmkit_block *b;
    shmkit_list *l;
    unsigned seed = 12345;
    size_t k, i;

    for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        cr_assert_eq(shmkit_block_create(&b, tu_name("zero"), sizes[k], 0), 0);
        cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_RAW, "%zu", sizes[k]);
        cr_assert_lt(shmkit_list_attach(&l, tu_name("zero"), 0), 0);
        for (i = 0; i < sizes[k]; i++)
            ((unsigned char *)shmkit_block_data(b))[i] = (unsigned char)rand_r(&seed);
        cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_RAW, "%zu", sizes[k]);
        cr_assert_lt(shmkit_list_attach(&l, tu_name("zero"), 0), 0);
        shmkit_block_unlink(b);
        shmkit_block_close(b);
    }
    /* 16 zero bytes are exactly CPython's ShareableList([]) */
    cr_assert_eq(shmkit_block_create(&b, tu_name("zero"), 16, 0), 0);
    cr_assert_eq(shmkit_block_kind(b), SHMKIT_KIND_LIST);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* Random buffers of random sizes: validation never succeeds by accident
 * and never reads outside (sanitizer build). */
Test(list_hostile, random_buffers)
{
    unsigned seed = 777;
    int round;

    for (round = 0; round < 20000; round++) {
        /* 16 zero-ish bytes could be a genuine empty list: skip 16 */
        size_t size = 1 + (size_t)rand_r(&seed) % 300, i;
        if (size == 16)
            size = 15;
        unsigned char *p = malloc(size);
        for (i = 0; i < size; i++)
            p[i] = (unsigned char)rand_r(&seed);
        if (size >= 8 && round % 2) /* plausible counts */
            put64(p, 0, rand_r(&seed) % 8);
        if (size >= 16 && round % 3 == 0)
            put64(p, 8, 0);
        cr_assert_lt(check(p, size), 0);
        free(p);
    }
}

Test(list_hostile, unaligned_memory_refused)
{
    unsigned char *p = image(SIZE + 1);
    shmkit_list *l;

    memmove(p + 1, p, SIZE);
    cr_assert_eq(shmkit__list_view(&l, p + 1, SIZE, false), -EINVAL);
    cr_assert(!shmkit__list_probe(p + 1, SIZE));
    free(p);
}
