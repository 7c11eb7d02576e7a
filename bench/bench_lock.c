/*
 * bench_lock.c - shmkit's locks and atomics beside the raw primitives
 * they are built on, and a locked increment beside CPython's
 * `with v.get_lock(): v.value += 1`, all measured in one run. Prints
 * nanoseconds per operation and the ratio to the reference (best of
 * several alternating repetitions, so a noisy neighbour costs less).
 *
 * Single-process loops are timed in thread CPU time, so that other load
 * on the machine does not count; the two-process runs in wall time.
 *
 * Usage: bench_lock [python]   (default /usr/bin/python3; "-" skips it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define REPEAT 2  /* back-to-back runs inside one measurement */
#define ROUNDS 4  /* alternations of reference and shmkit */
#define UNCONTENDED_OPS 5000000L
#define CONTENDED_OPS 1000000L   /* per process */
#define ATOMIC_OPS 10000000L

/* What the processes share: both mutexes and both counters, each on its
 * own cache line. */
struct arena {
    _Alignas(64) pthread_mutex_t raw;
    _Alignas(64) shmkit_mutex mine;
    _Alignas(64) uint64_t count;         /* under whichever lock is timed */
    _Alignas(64) _Atomic int64_t atomic;
};

static double min_d(double a, double b)
{
    return a < b ? a : b;
}

static double clock_ns(clockid_t id)
{
    struct timespec t;

    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Wall time, for the runs that involve other processes. */
static double now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* This thread's CPU time, for single-thread loops: time spent descheduled
 * by other load on the machine does not count. */
static double cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_lock: %s: %s (%s)\n", what, shmkit_strerror(r),
            shmkit_last_error());
    exit(1);
}

static void raw_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

/* ---- the loops (one kind of operation each) ------------------------- */

static void loop_raw(struct arena *a, long n)
{
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&a->raw);
        a->count++;
        pthread_mutex_unlock(&a->raw);
    }
}

static void loop_mine(struct arena *a, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_mutex_lock(&a->mine);
        a->count++;
        shmkit_mutex_unlock(&a->mine);
    }
}

typedef void (*loop_fn)(struct arena *, long);

/* ns per operation of one process running fn n times. */
static double time_one(loop_fn fn, struct arena *a, long n)
{
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        double t0 = cpu_ns();
        fn(a, n);
        double t = (cpu_ns() - t0) / (double)n;
        best = t < best ? t : best;
    }
    return best;
}

/* ns per operation (total wall time / total ops) of two processes
 * running fn n times each, started together through a pipe. */
static double time_two(loop_fn fn, struct arena *a, long n)
{
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        int go[2];
        pid_t p[2];
        double t0;
        char c = 0;

        if (pipe(go) != 0)
            die("pipe", -errno);
        for (int i = 0; i < 2; i++) {
            p[i] = fork();
            if (p[i] < 0)
                die("fork", -errno);
            if (p[i] == 0) {
                if (read(go[0], &c, 1) != 1)
                    _exit(2);
                fn(a, n);
                _exit(0);
            }
        }
        t0 = now_ns();
        if (write(go[1], "xx", 2) != 2)
            die("write", -errno);
        for (int i = 0; i < 2; i++) {
            int st;
            if (waitpid(p[i], &st, 0) != p[i] || !WIFEXITED(st) ||
                WEXITSTATUS(st) != 0)
                die("child", -ECHILD);
        }
        double t = (now_ns() - t0) / (double)(2 * n);
        best = t < best ? t : best;
        close(go[0]);
        close(go[1]);
    }
    return best;
}

/* ---- atomics and the typed Value ------------------------------------ */

static double time_raw_atomic(struct arena *a)
{
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < ATOMIC_OPS; i++)
            atomic_fetch_add(&a->atomic, 1);
        double t = (cpu_ns() - t0) / ATOMIC_OPS;
        best = t < best ? t : best;
    }
    return best;
}

static double time_array_atomic(shmkit_array *v)
{
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < ATOMIC_OPS; i++)
            shmkit_array_fetch_add(v, 0, 1, NULL);
        double t = (cpu_ns() - t0) / ATOMIC_OPS;
        best = t < best ? t : best;
    }
    return best;
}

/* The C equivalent of `with v.get_lock(): v.value += 1`. */
static double time_value_locked(shmkit_array *v)
{
    shmkit_mutex *m = shmkit_array_lock(v);
    long long *x = shmkit_array_data(v);
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < UNCONTENDED_OPS; i++) {
            shmkit_mutex_lock(m);
            (*x)++;
            shmkit_mutex_unlock(m);
        }
        double t = (cpu_ns() - t0) / UNCONTENDED_OPS;
        best = t < best ? t : best;
    }
    return best;
}

/* CPython's multiprocessing.Value locked increment, ns per op, or -1. */
static double time_cpython(const char *python)
{
    static const char code[] =
        "import timeit\n"
        "from multiprocessing import Value\n"
        "v = Value('q', 0)\n"
        "n = 200000\n"
        "t = min(timeit.repeat('with v.get_lock(): v.value += 1',"
        " globals=globals(), number=n, repeat=5))\n"
        "print(t / n * 1e9)\n";
    char cmd[512], line[128];
    double ns = -1;
    FILE *f;

    snprintf(cmd, sizeof cmd, "'%s' -c \"$SHMKIT_BENCH_CODE\"", python);
    setenv("SHMKIT_BENCH_CODE", code, 1);
    f = popen(cmd, "r");
    if (!f)
        return -1;
    if (fgets(line, sizeof line, f))
        ns = strtod(line, NULL);
    if (pclose(f) != 0)
        return -1;
    return ns;
}

int main(int argc, char **argv)
{
    const char *python = argc > 1 ? argv[1] : "/usr/bin/python3";
    char name[64];
    shmkit_block *b;
    shmkit_array *v;
    struct arena *a;
    double raw1, mine1, raw2, mine2, at_raw, at_mine, val, py;
    int r;

    snprintf(name, sizeof name, "bench_lock_%ld", (long)getpid());
    r = shmkit_block_create(&b, name, sizeof *a, 0);
    if (r < 0)
        die("create", r);
    shmkit_block_unlink(b); /* nothing to leak, whatever happens next */
    a = shmkit_block_data(b);
    raw_init(&a->raw);
    if ((r = shmkit_mutex_init(&a->mine, 0)) < 0)
        die("shmkit_mutex_init", r);
    snprintf(name, sizeof name, "bench_lock_v_%ld", (long)getpid());
    if ((r = shmkit_value_create(&v, name, 'q', 0)) < 0)
        die("shmkit_value_create", r);
    shmkit_array_unlink(v);

    /* Alternate reference and shmkit so drift in the machine's load
     * hits both alike; keep the best of each. */
    raw1 = mine1 = raw2 = mine2 = at_raw = at_mine = 1e30;
    for (int round = 0; round < ROUNDS; round++) {
        raw1 = min_d(raw1, time_one(loop_raw, a, UNCONTENDED_OPS));
        mine1 = min_d(mine1, time_one(loop_mine, a, UNCONTENDED_OPS));
        raw2 = min_d(raw2, time_two(loop_raw, a, CONTENDED_OPS));
        mine2 = min_d(mine2, time_two(loop_mine, a, CONTENDED_OPS));
        at_raw = min_d(at_raw, time_raw_atomic(a));
        at_mine = min_d(at_mine, time_array_atomic(v));
    }
    val = time_value_locked(v);
    py = strcmp(python, "-") ? time_cpython(python) : -1;

    printf("uncontended lock+unlock:   raw robust pthread %6.1f ns   "
           "shmkit_mutex %6.1f ns   ratio %.2fx\n", raw1, mine1, mine1 / raw1);
    printf("2-process contended:       raw robust pthread %6.1f ns   "
           "shmkit_mutex %6.1f ns   ratio %.2fx  (wall ns per op)\n", raw2,
           mine2, mine2 / raw2);
    printf("atomic fetch-add:          raw C11 atomic     %6.1f ns   "
           "shmkit_array %6.1f ns   ratio %.2fx\n", at_raw, at_mine,
           at_mine / at_raw);
    if (py > 0)
        printf("locked increment:          CPython Value      %6.1f ns   "
               "shmkit Value %6.1f ns   CPython/shmkit %.1fx\n", py, val,
               py / val);
    else
        printf("locked increment:          shmkit Value %6.1f ns   (CPython "
               "not measured)\n", val);
    shmkit_array_close(v);
    shmkit_block_close(b);
    return 0;
}
