/*
 * bench_list.c - ShareableList from C beside a raw C reader of the same
 * bytes (the floor), in one run (see bench_util.h for how each figure is
 * taken). CPython's ShareableList is compared with shmkit's from Python,
 * Python with Python, in bench_python.py.
 *
 *   get int / get float   item i of a 1000-item list, i cycling: the raw
 *                         reader loads the item's offset from the header
 *                         and the 8 bytes there (CPython's layout), with
 *                         no checks at all
 *   set int               the raw writer stores the 8 bytes, no checks
 *   attach                shmkit_list_attach + close beside a plain
 *                         shmkit_block_attach + close of the same block
 *
 * Usage: bench_list [--tsv] [--quick] [--rounds N]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "shmkit.h"

#define ITEMS 1000

static shmkit_list *lists[2]; /* ints, floats */
static char names[2][64];
static unsigned char *raw[2]; /* the same blocks, mapped by shmkit_block_attach */
static shmkit_block *rawb[2];
static volatile int64_t sink;
static volatile double fsink;

static void die(const char *what)
{
    fprintf(stderr, "bench_list: %s failed: %s\n", what, shmkit_last_error());
    exit(1);
}

/* CPython's layout: int64 count, count + 1 int64 offsets, then the data. */
static inline const void *raw_item(const unsigned char *p, long i)
{
    int64_t n, off;

    memcpy(&n, p, 8);
    memcpy(&off, p + 8 + 8 * i, 8);
    return p + 8 * (n + 2) + off;
}

static void raw_get_int(void *ctx, long n)
{
    int64_t acc = 0, v;

    for (long i = 0; i < n; i++) {
        memcpy(&v, raw_item(raw[0], i % ITEMS), 8);
        acc += v;
    }
    sink = acc;
}

static void raw_get_float(void *ctx, long n)
{
    double acc = 0, v;

    for (long i = 0; i < n; i++) {
        memcpy(&v, raw_item(raw[1], i % ITEMS), 8);
        acc += v;
    }
    fsink = acc;
}

static void shmkit_get(void *ctx, long n)
{
    shmkit_list *l = lists[ctx != NULL];
    shmkit_item it;
    int64_t acc = 0;

    for (long i = 0; i < n; i++) {
        if (shmkit_list_get(l, (size_t)(i % ITEMS), &it) != 0)
            die("shmkit_list_get");
        acc += it.v.i; /* a float's bits: any use will do */
    }
    sink = acc;
}

static void raw_set_int(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        int64_t v = i;

        memcpy((void *)raw_item(raw[0], i % ITEMS), &v, 8);
    }
}

static void shmkit_set_int(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_item v = shmkit_item_int(i);

        if (shmkit_list_set(lists[0], (size_t)(i % ITEMS), &v) != 0)
            die("shmkit_list_set");
    }
}

static void block_attach(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_block *b;

        if (shmkit_block_attach(&b, names[0], 0) != 0)
            die("shmkit_block_attach");
        sink = *(volatile char *)shmkit_block_data(b);
        shmkit_block_close(b);
    }
}

static void list_attach(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_list *l;

        if (shmkit_list_attach(&l, names[0], 0) != 0)
            die("shmkit_list_attach");
        shmkit_list_close(l);
    }
}

static void setup(void)
{
    shmkit_item in[ITEMS], it;

    for (int t = 0; t < 2; t++) {
        snprintf(names[t], sizeof names[t], "bench_list_%d_%d", (int)getpid(), t);
        for (int i = 0; i < ITEMS; i++)
            in[i] = t == 0 ? shmkit_item_int(i) : shmkit_item_float(i * 0.5);
        if (shmkit_list_create(&lists[t], names[t], in, ITEMS, 0) != 0)
            die("shmkit_list_create");
        if (shmkit_block_attach(&rawb[t], names[t], 0) != 0)
            die("shmkit_block_attach");
        raw[t] = shmkit_block_data(rawb[t]);
    }
    /* The raw reader reads what shmkit reads, or the comparison is void. */
    for (int i = 0; i < ITEMS; i++) {
        int64_t v;
        double d;

        memcpy(&v, raw_item(raw[0], i), 8);
        memcpy(&d, raw_item(raw[1], i), 8);
        if (shmkit_list_get(lists[0], (size_t)i, &it) != 0 || it.v.i != v ||
            shmkit_list_get(lists[1], (size_t)i, &it) != 0 || it.v.f != d) {
            fprintf(stderr, "bench_list: raw reader disagrees at %d\n", i);
            exit(1);
        }
    }
}

static void teardown(void)
{
    for (int t = 0; t < 2; t++) {
        shmkit_block_close(rawb[t]);
        shmkit_list_unlink(lists[t]);
        shmkit_list_close(lists[t]);
    }
}

int main(int argc, char **argv)
{
    long n;

    bench_args(argc, argv);
    setup();
    n = bench_n(10000000);
    {
        bench_contender c[] = {{"raw C reader (floor)", raw_get_int, NULL},
                               {"shmkit_list_get", shmkit_get, NULL}};
        bench_run("c.list.get.int", "C: ShareableList get int", c, 2, n, NULL);
    }
    {
        bench_contender c[] = {{"raw C reader (floor)", raw_get_float, NULL},
                               {"shmkit_list_get", shmkit_get, (void *)1}};
        bench_run("c.list.get.float", "C: ShareableList get float", c, 2, n,
                  NULL);
    }
    {
        bench_contender c[] = {{"raw C writer (floor)", raw_set_int, NULL},
                               {"shmkit_list_set", shmkit_set_int, NULL}};
        bench_run("c.list.set.int", "C: ShareableList set int", c, 2, n, NULL);
    }
    {
        bench_contender c[] = {{"shmkit_block_attach (plain)", block_attach, NULL},
                               {"shmkit_list_attach", list_attach, NULL}};
        bench_run("c.list.attach", "C: attach 1000-int list + close", c, 2,
                  bench_n(10000), NULL);
    }
    teardown();
    return 0;
}
