/*
 * bench_block.c - blocks beside their floor and beside Boost.Interprocess,
 * in one run (see bench_util.h for how each figure is taken):
 *
 *   create cycle   create 4 KiB + write 64 bytes + close + unlink
 *   attach cycle   attach + read 1 byte + close
 *   size scaling   create + first touch (one write per 4 KiB page) +
 *                  close + unlink, 4 KiB to 1 GiB, with and without
 *                  SHMKIT_RESERVE, beside memcpy of the same size between
 *                  two buffers already in memory
 *
 * The floor is the same work done with the raw calls (shm_open, ftruncate,
 * fstat, mmap, munmap, close, shm_unlink); Boost is shared_memory_object
 * with a mapped_region when the build found Boost's headers.
 * Usage: bench_block [--tsv] [--quick] [--rounds N] [--max-size BYTES]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "peers.h"
#include "shmkit.h"

#define SIZE 4096

static char name[64], slashed[65];
static volatile char sink;

static void die(const char *what)
{
    fprintf(stderr, "bench_block: %s failed: %s\n", what, shmkit_last_error());
    exit(1);
}

/* ---- create and attach cycles -------------------------------------------- */

static void raw_create(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        int fd = shm_open(slashed, O_RDWR | O_CREAT | O_EXCL, 0600);
        void *p;

        if (fd < 0 || ftruncate(fd, SIZE) < 0)
            die("shm_open/ftruncate");
        p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            die("mmap");
        memset(p, 1, 64);
        munmap(p, SIZE);
        close(fd);
        shm_unlink(slashed);
    }
}

static void shmkit_create(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_block *b;

        if (shmkit_block_create(&b, name, SIZE, 0) != 0)
            die("shmkit_block_create");
        memset(shmkit_block_data(b), 1, 64);
        shmkit_block_unlink(b);
        shmkit_block_close(b);
    }
}

static void raw_attach(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        int fd = shm_open(slashed, O_RDWR, 0);
        struct stat st;
        void *p;

        if (fd < 0 || fstat(fd, &st) < 0)
            die("shm_open/fstat");
        p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
        if (p == MAP_FAILED)
            die("mmap");
        sink = *(char *)p;
        munmap(p, (size_t)st.st_size);
        close(fd);
    }
}

static void shmkit_attach(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_block *b;

        if (shmkit_block_attach(&b, name, 0) != 0)
            die("shmkit_block_attach");
        sink = *(char *)shmkit_block_data(b);
        shmkit_block_close(b);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void boost_create(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        if (peer_boost_create_cycle(name, SIZE) != 0)
            die("boost create");
}

static void boost_attach(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        if (peer_boost_attach_cycle(name, &sink) != 0)
            die("boost attach");
}
#endif

static void cycles(void)
{
    bench_contender create[] = {
        {"raw system calls (floor)", raw_create, NULL},
        {"shmkit_block_create", shmkit_create, NULL},
#ifdef SHMKIT_BENCH_BOOST
        {"Boost shared_memory_object", boost_create, NULL},
#endif
    };
    bench_contender attach[] = {
        {"raw system calls (floor)", raw_attach, NULL},
        {"shmkit_block_attach", shmkit_attach, NULL},
#ifdef SHMKIT_BENCH_BOOST
        {"Boost shared_memory_object", boost_attach, NULL},
#endif
    };
    shmkit_block *keep;

    bench_run("c.block.create", "C: block create+write+close+unlink 4 KiB",
              create, sizeof create / sizeof *create, bench_n(4000), NULL);
    if (shmkit_block_create(&keep, name, SIZE, 0) != 0)
        die("shmkit_block_create");
    bench_run("c.block.attach", "C: block attach+read+close 4 KiB", attach,
              sizeof attach / sizeof *attach, bench_n(10000), NULL);
    shmkit_block_unlink(keep);
    shmkit_block_close(keep);
}

/* ---- size scaling ------------------------------------------------------ */

struct sized {
    size_t size;
    unsigned flags;
    char *src, *dst; /* memcpy's buffers */
};

static void touch(char *p, size_t size)
{
    for (size_t off = 0; off < size; off += 4096)
        p[off] = 1;
}

static void raw_create_touch(void *ctx, long n)
{
    struct sized *s = ctx;

    for (long i = 0; i < n; i++) {
        int fd = shm_open(slashed, O_RDWR | O_CREAT | O_EXCL, 0600);
        void *p;

        if (fd < 0 || ftruncate(fd, (off_t)s->size) < 0)
            die("shm_open/ftruncate");
        p = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            die("mmap");
        touch(p, s->size);
        munmap(p, s->size);
        close(fd);
        shm_unlink(slashed);
    }
}

static void shmkit_create_touch(void *ctx, long n)
{
    struct sized *s = ctx;

    for (long i = 0; i < n; i++) {
        shmkit_block *b;

        if (shmkit_block_create(&b, name, s->size, s->flags) != 0)
            die("shmkit_block_create");
        touch(shmkit_block_data(b), s->size);
        shmkit_block_unlink(b);
        shmkit_block_close(b);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void boost_create_touch(void *ctx, long n)
{
    struct sized *s = ctx;

    for (long i = 0; i < n; i++)
        if (peer_boost_create_touch(name, s->size) != 0)
            die("boost create");
}
#endif

static void memcpy_size(void *ctx, long n)
{
    struct sized *s = ctx;

    for (long i = 0; i < n; i++) {
        memcpy(s->dst, s->src, s->size);
        sink = s->dst[s->size - 1];
    }
}

static void human(char *out, size_t cap, size_t size)
{
    if (size >= 1u << 30)
        snprintf(out, cap, "%zu GiB", size >> 30);
    else if (size >= 1u << 20)
        snprintf(out, cap, "%zu MiB", size >> 20);
    else
        snprintf(out, cap, "%zu KiB", size >> 10);
}

static void scaling(size_t max_size)
{
    static const size_t sizes[] = {4096, 64u << 10, 1u << 20, 16u << 20,
                                   256u << 20, 1u << 30};

    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t size = sizes[k];
        struct sized plain = {size, 0, NULL, NULL}, reserve;
        char id[64], work[96], h[32];
        long n;

        if (size > max_size)
            break;
        plain.src = malloc(size);
        plain.dst = malloc(size);
        if (!plain.src || !plain.dst)
            die("malloc");
        memset(plain.src, 7, size); /* both in memory before timing */
        memset(plain.dst, 0, size);
        reserve = plain;
        reserve.flags = SHMKIT_RESERVE;
        bench_contender c[] = {
            {"raw system calls (floor)", raw_create_touch, &plain},
            {"shmkit_block_create", shmkit_create_touch, &plain},
            {"shmkit_block_create SHMKIT_RESERVE", shmkit_create_touch,
             &reserve},
#ifdef SHMKIT_BENCH_BOOST
            {"Boost shared_memory_object", boost_create_touch, &plain},
#endif
            {"memcpy of the same size", memcpy_size, &plain},
        };
        human(h, sizeof h, size);
        snprintf(id, sizeof id, "c.size.%zu", size);
        snprintf(work, sizeof work, "C: create+first touch %s", h);
        /* About 64 MiB of pages per round, at least one operation. */
        n = (long)((64u << 20) / size);
        bench_run(id, work, c, sizeof c / sizeof *c,
                  n > 0 ? bench_n(n) : 1, NULL);
        free(plain.src);
        free(plain.dst);
    }
}

int main(int argc, char **argv)
{
    size_t max_size = (size_t)1 << 30;
    int i = bench_args(argc, argv);

    if (i + 1 < argc && strcmp(argv[i], "--max-size") == 0)
        max_size = strtoull(argv[i + 1], NULL, 0);
    snprintf(name, sizeof name, "bench_block_%ld", (long)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);
    cycles();
    scaling(max_size);
    return 0;
}
