/*
 * bench_block.c - the block life cycle beside its floor and beside CPython.
 *
 *   create cycle: create 4 KiB + write + close + unlink
 *   attach cycle: attach + read + close
 *
 * The floor is the same work done with the raw calls (shm_open, ftruncate,
 * fstat, mmap, munmap, close, shm_unlink); CPython is
 * multiprocessing.shared_memory.SharedMemory timed by /usr/bin/python3 in
 * the same run. Prints per-operation times and ratios; asserts nothing.
 * Usage: bench_block [iterations]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define SIZE 4096

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static char name[64], slashed[65];

static void raw_create_cycle(void)
{
    int fd = shm_open(slashed, O_RDWR | O_CREAT | O_EXCL, 0600);
    void *p;

    if (fd < 0 || ftruncate(fd, SIZE) < 0)
        abort();
    p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        abort();
    memset(p, 1, 64);
    munmap(p, SIZE);
    close(fd);
    shm_unlink(slashed);
}

static void shmkit_create_cycle(void)
{
    shmkit_block *b;

    if (shmkit_block_create(&b, name, SIZE, 0) != 0)
        abort();
    memset(shmkit_block_data(b), 1, 64);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

static volatile char sink;

static void raw_attach_cycle(void)
{
    int fd = shm_open(slashed, O_RDWR, 0);
    struct stat st;
    void *p;

    if (fd < 0 || fstat(fd, &st) < 0)
        abort();
    p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        abort();
    sink = *(char *)p;
    munmap(p, (size_t)st.st_size);
    close(fd);
}

static void shmkit_attach_cycle(void)
{
    shmkit_block *b;

    if (shmkit_block_attach(&b, name, 0) != 0)
        abort();
    sink = *(char *)shmkit_block_data(b);
    shmkit_block_close(b);
}

/* Best of 5 rounds of n calls, in ns per call: the minimum is the figure
 * least disturbed by whatever else the machine does. */
static double time_it(void (*fn)(void), int n)
{
    double best = 1e18;
    int round, i;

    for (round = 0; round < 5; round++) {
        double t0 = now_ns();
        for (i = 0; i < n; i++)
            fn();
        t0 = (now_ns() - t0) / n;
        if (t0 < best)
            best = t0;
    }
    return best;
}

/* Times CPython's SharedMemory for the same two cycles; ns per op. */
static int cpython_times(int n, double *create, double *attach)
{
    char cmd[2048];
    FILE *f;
    int ok;

    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\n"
             "import timeit\n"
             "from multiprocessing import shared_memory as sm, resource_tracker as rt\n"
             "def create():\n"
             "    s = sm.SharedMemory(name='%s', create=True, size=%d)\n"
             "    s.buf[:64] = b'x' * 64\n"
             "    s.close(); s.unlink()\n"
             "def attach():\n"
             "    s = sm.SharedMemory(name='%s')\n"
             "    s.buf[0]\n"
             "    s.close()\n"
             "    rt.unregister(s._name, 'shared_memory')\n"
             "n = %d\n"
             "c = min(timeit.repeat(create, number=n, repeat=5)) / n * 1e9\n"
             "keep = sm.SharedMemory(name='%s', create=True, size=%d)\n"
             "try:\n"
             "    a = min(timeit.repeat(attach, number=n, repeat=5)) / n * 1e9\n"
             "finally:\n"
             "    keep.close(); keep.unlink()\n"
             "print(c, a)\n\" 2>/dev/null",
             name, SIZE, name, n, name, SIZE);
    f = popen(cmd, "r");
    if (!f)
        return -1;
    ok = fscanf(f, "%lf %lf", create, attach) == 2;
    return pclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    double rc, sc, ra, sa, pc = 0, pa = 0;
    shmkit_block *keep;
    int py;

    snprintf(name, sizeof name, "bench_block_%ld", (long)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);
    rc = time_it(raw_create_cycle, n);
    sc = time_it(shmkit_create_cycle, n);
    if (shmkit_block_create(&keep, name, SIZE, 0) != 0)
        return 1;
    ra = time_it(raw_attach_cycle, n);
    sa = time_it(shmkit_attach_cycle, n);
    shmkit_block_unlink(keep);
    shmkit_block_close(keep);
    py = cpython_times(n / 4 > 0 ? n / 4 : 1, &pc, &pa);

    printf("block life cycle, 4 KiB, best of 5 x %d (ns per operation)\n", n);
    printf("%-14s %10s %10s %10s %14s %14s\n", "", "raw floor", "shmkit",
           "CPython", "shmkit/floor", "CPython/shmkit");
    printf("%-14s %10.0f %10.0f %10.0f %13.2fx %13.2fx\n", "create cycle", rc,
           sc, pc, sc / rc, py == 0 ? pc / sc : 0);
    printf("%-14s %10.0f %10.0f %10.0f %13.2fx %13.2fx\n", "attach cycle", ra,
           sa, pa, sa / ra, py == 0 ? pa / sa : 0);
    if (py != 0)
        printf("(CPython timing unavailable: /usr/bin/python3 failed)\n");
    return 0;
}
