/*
 * bench_util.h - what the C benchmarks share: a clock, and one way of
 * timing a piece of work done by several contenders.
 *
 * Every contender of one piece of work runs n operations per round, the
 * contenders interleaved within each round (and their order rotated from
 * round to round), so that a busy moment of the machine weighs on all of
 * them alike; the figure kept is the median of the rounds, in ns per
 * operation. The first contender is the reference that the others are
 * divided by.
 *
 * Work done by this one thread is timed in the thread's CPU time (kernel
 * time in its system calls and page faults included), so that the other
 * load of a shared machine does not count: time spent by other processes
 * (a tracker, a child) is not included. Work that involves other
 * processes is timed in wall time (bench_run_wall).
 *
 * Output, one line per contender:
 *   default       work, contender, ns per operation, ratio to the first
 *   --tsv         work-id TAB work TAB contender TAB ns TAB rounds
 *                 TAB min ns TAB max ns
 *                 (what bench/run reads to build its one table; the last
 *                 two fields, the fastest and the slowest round, are
 *                 optional in the format: bench/run prints the spread of
 *                 wall-time rows from them)
 */
#ifndef SHMKIT_BENCH_UTIL_H
#define SHMKIT_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_MAX_CONTENDERS 8
#define BENCH_MAX_ROUNDS 64 /* the most rounds a figure is the median of */

typedef struct bench_contender {
    const char *label;               /* what the row is called */
    void (*fn)(void *ctx, long n);   /* does n operations */
    void *ctx;
} bench_contender;

static int bench_tsv;      /* set by bench_args() from --tsv */
static int bench_rounds = 5;
static double bench_scale = 1.0; /* --quick: fewer operations per round */

/* Not a clock of the kernel's: the CPU time (user + system) of this
 * process's children that have been waited for (getrusage). Work whose
 * processes are all reaped inside the timed function can be timed in it:
 * the time the children spent descheduled by other load does not count. */
#define BENCH_CLOCK_CHILDREN ((clockid_t)0x7fff0001)

static inline double bench_clock_ns(clockid_t id)
{
    struct timespec ts;

    if (id == BENCH_CLOCK_CHILDREN) {
        struct rusage ru;

        getrusage(RUSAGE_CHILDREN, &ru);
        return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
               ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
    }
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Wall time. */
static inline double bench_now_ns(void)
{
    return bench_clock_ns(CLOCK_MONOTONIC);
}

/* Reads the options every C benchmark takes: --tsv, --quick,
 * --rounds N. Returns the index of the first other argument. */
static inline int bench_args(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tsv") == 0)
            bench_tsv = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            bench_scale = 0.2;
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            /* 1 to BENCH_MAX_ROUNDS: no more are ever run, and bench_lock
             * and bench_queue multiply it (9x, 3x) for their rows of
             * many short rounds, which a larger value would overflow. */
            long r = strtol(argv[++i], NULL, 10);

            bench_rounds = r < 1                  ? 1
                           : r > BENCH_MAX_ROUNDS ? BENCH_MAX_ROUNDS
                                                  : (int)r;
        }
        else
            break;
    }
    return i;
}

/* n scaled by --quick, at least 1. */
static inline long bench_n(long n)
{
    long m = (long)((double)n * bench_scale);

    return m > 0 ? m : 1;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Prints one contender's line (see the top of this file): its median
 * over `rounds` rounds, and the fastest and slowest of them. */
static inline void bench_emit_r(const char *id, const char *work,
                                const char *label, double ns, double ref,
                                int rounds, double lo, double hi)
{
    if (bench_tsv)
        printf("%s\t%s\t%s\t%.3f\t%d\t%.3f\t%.3f\n", id, work, label, ns,
               rounds, lo, hi);
    else
        printf("%-44s %-40s %12.1f ns %8.2fx  (rounds %.1f..%.1f)\n", work,
               label, ns, ns / ref, lo, hi);
    fflush(stdout);
}

static inline void bench_emit(const char *id, const char *work,
                              const char *label, double ns, double ref)
{
    bench_emit_r(id, work, label, ns, ref, bench_rounds, ns, ns);
}

/*
 * Times the nc contenders of one piece of work (see the top of this file)
 * and prints a line for each. `id` is a short stable key, `work` what the
 * table calls the row. Results, when `out` is not NULL, go to out[0..nc).
 */
static inline void bench_run_clock_r(clockid_t clock, int rounds,
                                     const char *id, const char *work,
                                     const bench_contender *c, int nc, long n,
                                     double *out)
{
    double t[BENCH_MAX_CONTENDERS][BENCH_MAX_ROUNDS], med[BENCH_MAX_CONTENDERS];
    int r, k;

    if (rounds > BENCH_MAX_ROUNDS)
        rounds = BENCH_MAX_ROUNDS;
    if (rounds < 1)
        rounds = 1;
    if (nc > BENCH_MAX_CONTENDERS)
        nc = BENCH_MAX_CONTENDERS;
    for (k = 0; k < nc; k++) /* warm up: first faults, caches, lazy binding */
        c[k].fn(c[k].ctx, n / 10 > 0 ? n / 10 : 1);
    for (r = 0; r < rounds; r++)
        for (int j = 0; j < nc; j++) {
            double t0;

            k = (j + r) % nc;
            t0 = bench_clock_ns(clock);
            c[k].fn(c[k].ctx, n);
            t[k][r] = (bench_clock_ns(clock) - t0) / (double)n;
        }
    for (k = 0; k < nc; k++) {
        qsort(t[k], (size_t)rounds, sizeof t[k][0], bench_cmp_double);
        med[k] = rounds % 2 ? t[k][rounds / 2]
                            : (t[k][rounds / 2 - 1] + t[k][rounds / 2]) / 2;
        if (out)
            out[k] = med[k];
    }
    for (k = 0; k < nc; k++)
        bench_emit_r(id, work, c[k].label, med[k], med[0], rounds, t[k][0],
                     t[k][rounds - 1]);
}

static inline void bench_run_clock(clockid_t clock, const char *id,
                                   const char *work, const bench_contender *c,
                                   int nc, long n, double *out)
{
    bench_run_clock_r(clock, bench_rounds, id, work, c, nc, n, out);
}

/* Work done by this thread alone: its CPU time. */
static inline void bench_run(const char *id, const char *work,
                             const bench_contender *c, int nc, long n,
                             double *out)
{
    bench_run_clock(CLOCK_THREAD_CPUTIME_ID, id, work, c, nc, n, out);
}

/* Work that other processes take part in: wall time. */
static inline void bench_run_wall(const char *id, const char *work,
                                  const bench_contender *c, int nc, long n,
                                  double *out)
{
    bench_run_clock(CLOCK_MONOTONIC, id, work, c, nc, n, out);
}

#endif
