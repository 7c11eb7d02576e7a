/*
 * bench_lifecycle.c - what a lifetime costs, measured in one run:
 *
 *   untracked create cycle   create 4 KiB + write + unlink + close
 *   tracked create cycle     the same with SHMKIT_TRACK (journal record on
 *                            create and on unlink; the tracker is started
 *                            once, before timing)
 *   refcount create cycle    the same with SHMKIT_REFCOUNT (sidecar made,
 *                            locked, unlinked)
 *   CPython tracked cycle    SharedMemory(create=True) + close + unlink,
 *                            whose resource tracker is a pipe write per
 *                            create and per unlink (/usr/bin/python3)
 *   manager create round     shmkit_manager_create_block over the socket
 *                            (the manager creates and journals the block)
 *
 * Prints per-operation times and ratios; asserts nothing.
 * Usage: bench_lifecycle [iterations]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define SIZE 4096

static char name[64];
static unsigned cycle_flags;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void create_cycle(void)
{
    shmkit_block *b;

    if (shmkit_block_create(&b, name, SIZE, cycle_flags) != 0)
        abort();
    memset(shmkit_block_data(b), 1, 64);
    if (!(cycle_flags & SHMKIT_REFCOUNT))
        shmkit_block_unlink(b);
    shmkit_block_close(b); /* refcount: the last close unlinks */
}

/* n cycles with `flags`, ns per cycle. */
static double run_cycles(unsigned flags, int n)
{
    double t0;
    int i;

    cycle_flags = flags;
    t0 = now_ns();
    for (i = 0; i < n; i++)
        create_cycle();
    return (now_ns() - t0) / n;
}

/* Best of ROUNDS for each of the nf variants, the rounds interleaved so
 * that a busy moment of the machine hits all variants alike. */
#define ROUNDS 7
static void time_variants(const unsigned *flags, double *best, int nf, int n)
{
    int round, v;

    for (v = 0; v < nf; v++)
        best[v] = 1e18;
    for (round = 0; round < ROUNDS; round++)
        for (v = 0; v < nf; v++) {
            double t = run_cycles(flags[v], n);
            if (t < best[v])
                best[v] = t;
        }
}

/* CPython's tracked create cycle (the default: its resource tracker
 * registers and unregisters every block), ns per cycle. */
static int cpython_tracked(int n, double *ns)
{
    char cmd[2048];
    FILE *f;
    int ok;

    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\n"
             "import timeit\n"
             "from multiprocessing import shared_memory as sm\n"
             "def create():\n"
             "    s = sm.SharedMemory(name='%s', create=True, size=%d)\n"
             "    s.buf[:64] = b'x' * 64\n"
             "    s.close(); s.unlink()\n"
             "create()\n"
             "n = %d\n"
             "print(min(timeit.repeat(create, number=n, repeat=5)) / n * 1e9)\n"
             "\" 2>/dev/null",
             name, SIZE, n);
    f = popen(cmd, "r");
    if (!f)
        return -1;
    ok = fscanf(f, "%lf", ns) == 1;
    return pclose(f) == 0 && ok ? 0 : -1;
}

/* Best of 5 rounds of n manager create round trips, ns each; the blocks
 * are released (untimed) between rounds. */
static int manager_round_trip(int n, double *ns)
{
    char (*names)[SHMKIT_NAME_MAX + 1] = malloc((size_t)n * sizeof *names);
    shmkit_manager *m;
    double best = 1e18;
    int round, i;

    if (!names || shmkit_manager_start(&m, NULL, NULL, 0) != 0) {
        free(names);
        return -1;
    }
    for (round = 0; round < 5; round++) {
        double t0 = now_ns();
        for (i = 0; i < n; i++)
            if (shmkit_manager_create_block(m, NULL, SIZE, names[i]) != 0) {
                fprintf(stderr, "manager: %s\n", shmkit_last_error());
                abort();
            }
        t0 = (now_ns() - t0) / n;
        if (t0 < best)
            best = t0;
        for (i = 0; i < n; i++)
            shmkit_manager_release(m, names[i]);
    }
    shmkit_manager_close(m);
    free(names);
    *ns = best;
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    double un, tr, rc, py = 0, mg = 0;
    int pyok, mgok;

    if (n <= 0)
        n = 1;
    snprintf(name, sizeof name, "bench_life_%ld", (long)getpid());
    if (shmkit_track_start() != 0) {
        fprintf(stderr, "bench_lifecycle: %s\n", shmkit_last_error());
        return 1;
    }
    static const unsigned variants[3] = {0, SHMKIT_TRACK, SHMKIT_REFCOUNT};
    double best[3];

    time_variants(variants, best, 3, n / ROUNDS > 0 ? n / ROUNDS : 1);
    un = best[0];
    tr = best[1];
    rc = best[2];
    pyok = cpython_tracked(n / 4 > 0 ? n / 4 : 1, &py);
    mgok = manager_round_trip(n / 10 > 0 ? n / 10 : 1, &mg);

    printf("lifecycle costs, 4 KiB blocks, best of %d interleaved rounds x %d "
           "(ns per operation)\n", ROUNDS, n / ROUNDS > 0 ? n / ROUNDS : 1);
    printf("%-26s %10.0f\n", "untracked create cycle", un);
    printf("%-26s %10.0f   %.2fx untracked (target <= 1.30x)\n",
           "tracked create cycle", tr, tr / un);
    printf("%-26s %10.0f   %.2fx untracked\n", "refcount create cycle", rc,
           rc / un);
    if (pyok == 0)
        printf("%-26s %10.0f   %.2fx shmkit tracked\n", "CPython tracked cycle",
               py, py / tr);
    else
        printf("(CPython timing unavailable: /usr/bin/python3 failed)\n");
    if (mgok == 0)
        printf("%-26s %10.0f   %.2fx untracked create cycle\n",
               "manager create round trip", mg, mg / un);
    else
        printf("(manager unavailable: %s)\n", shmkit_last_error());
    return 0;
}
