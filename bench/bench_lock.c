/*
 * bench_lock.c - shmkit's locks and atomics beside the raw primitives
 * and the peers, all measured in one run: a raw robust pthread mutex (the
 * reference), Boost.Interprocess's interprocess_mutex (not robust; built
 * in when Boost's headers are there), shmkit_mutex through the inline
 * fast path (shmkit/sync_inline.h) and through the called functions;
 * uncontended and with two processes contending; an atomic fetch-add raw,
 * through the inline typed pointer and through the checked call; and a
 * locked increment beside CPython's `with v.get_lock(): v.value += 1`.
 *
 * Contenders are interleaved round by round so that drift in the
 * machine's load hits all alike; each figure is the median of ROUNDS
 * rounds, each round the best of REPEAT back-to-back runs. Single-process
 * loops are timed in thread CPU time (other load on the machine does not
 * count); the two-process runs in wall time.
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
#define ROUNDS 5  /* interleaved rounds; the median is reported */
#define UNCONTENDED_OPS 3000000L
#define CONTENDED_OPS 500000L    /* per process */
#define ATOMIC_OPS 10000000L

#ifdef SHMKIT_BENCH_BOOST
#include "peers.h"
#endif

/* What the processes share: the mutexes and the counters, each on its own
 * cache line. */
struct arena {
    _Alignas(64) pthread_mutex_t raw;
    _Alignas(64) shmkit_mutex mine;
    _Alignas(64) unsigned char boost[64];
    _Alignas(64) unsigned long long count; /* under whichever lock is timed */
    _Alignas(64) _Atomic int64_t atomic;
};

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

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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

static void loop_called(struct arena *a, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_mutex_lock(&a->mine);
        a->count++;
        shmkit_mutex_unlock(&a->mine);
    }
}

static void loop_inline(struct arena *a, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_mutex_lock_fast(&a->mine);
        a->count++;
        shmkit_mutex_unlock_fast(&a->mine);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void loop_boost(struct arena *a, long n)
{
    for (long i = 0; i < n; i++) {
        peer_boost_mutex_lock(a->boost);
        a->count++;
        peer_boost_mutex_unlock(a->boost);
    }
}
#endif

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
            __atomic_fetch_add((int64_t *)&a->atomic, 1, __ATOMIC_SEQ_CST);
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

static double time_inline_atomic(int64_t *p)
{
    double best = 1e30;

    for (int r = 0; r < REPEAT; r++) {
        double t0 = cpu_ns();
        for (long i = 0; i < ATOMIC_OPS; i++)
            shmkit_atomic_fetch_add_i64(p, 1);
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

enum {
    U_RAW, U_BOOST, U_INLINE, U_CALLED,
    C_RAW, C_BOOST, C_INLINE, C_CALLED,
    A_RAW, A_INLINE, A_CALLED, N_FIG
};

static void row(const char *what, const char *who, double ns, double ref)
{
    printf("  %s%-40s %8.1f ns   %5.2fx\n", what, who, ns, ns / ref);
}

int main(int argc, char **argv)
{
    const char *python = argc > 1 ? argv[1] : "/usr/bin/python3";
    char name[64];
    shmkit_block *b;
    shmkit_array *v;
    struct arena *a;
    double fig[N_FIG][ROUNDS], med[N_FIG], val, py;
    bool boost = false;
    int64_t *item;
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
#ifdef SHMKIT_BENCH_BOOST
    if (peer_boost_mutex_size() <= sizeof a->boost &&
        peer_boost_mutex_init(a->boost) == 0)
        boost = true;
#endif
    snprintf(name, sizeof name, "bench_lock_v_%ld", (long)getpid());
    if ((r = shmkit_value_create(&v, name, 'q', 0)) < 0)
        die("shmkit_value_create", r);
    shmkit_array_unlink(v);
    item = shmkit_array_i64(v);
    if (!item)
        die("shmkit_array_i64", -EINVAL);

    for (int k = 0; k < ROUNDS; k++) {
        fig[U_RAW][k] = time_one(loop_raw, a, UNCONTENDED_OPS);
        fig[U_INLINE][k] = time_one(loop_inline, a, UNCONTENDED_OPS);
        fig[U_CALLED][k] = time_one(loop_called, a, UNCONTENDED_OPS);
        fig[C_RAW][k] = time_two(loop_raw, a, CONTENDED_OPS);
        fig[C_INLINE][k] = time_two(loop_inline, a, CONTENDED_OPS);
        fig[C_CALLED][k] = time_two(loop_called, a, CONTENDED_OPS);
#ifdef SHMKIT_BENCH_BOOST
        if (boost) {
            fig[U_BOOST][k] = time_one(loop_boost, a, UNCONTENDED_OPS);
            fig[C_BOOST][k] = time_two(loop_boost, a, CONTENDED_OPS);
        }
#endif
        fig[A_RAW][k] = time_raw_atomic(a);
        fig[A_INLINE][k] = time_inline_atomic(item);
        fig[A_CALLED][k] = time_array_atomic(v);
    }
    for (int f = 0; f < N_FIG; f++)
        med[f] = median(fig[f], ROUNDS);
    val = time_value_locked(v);
    py = strcmp(python, "-") ? time_cpython(python) : -1;

    printf("bench_lock: medians of %d interleaved rounds; ratio to the "
           "first row of each group\n", ROUNDS);
    printf("uncontended lock + unlock (thread CPU ns per pair)\n");
    row("", "raw robust pthread mutex", med[U_RAW], med[U_RAW]);
    if (boost)
        row("", "Boost interprocess_mutex (not robust)", med[U_BOOST],
            med[U_RAW]);
    row("", "shmkit_mutex inline (_fast)", med[U_INLINE], med[U_RAW]);
    row("", "shmkit_mutex called", med[U_CALLED], med[U_RAW]);
    printf("2 processes contending (wall ns per pair; lower is more "
           "throughput)\n");
    row("", "raw robust pthread mutex", med[C_RAW], med[C_RAW]);
    if (boost)
        row("", "Boost interprocess_mutex (not robust)", med[C_BOOST],
            med[C_RAW]);
    row("", "shmkit_mutex inline (_fast)", med[C_INLINE], med[C_RAW]);
    row("", "shmkit_mutex called", med[C_CALLED], med[C_RAW]);
    printf("atomic fetch-add, uncontended (thread CPU ns)\n");
    row("", "raw __atomic_fetch_add", med[A_RAW], med[A_RAW]);
    row("", "shmkit_atomic_fetch_add_i64 (inline)", med[A_INLINE],
        med[A_RAW]);
    row("", "shmkit_array_fetch_add (checked)", med[A_CALLED], med[A_RAW]);
    if (py > 0)
        printf("locked increment: CPython Value %.1f ns, shmkit Value (C, "
               "called) %.1f ns: CPython/shmkit %.1fx\n", py, val, py / val);
    else
        printf("locked increment: shmkit Value (C, called) %.1f ns (CPython "
               "not measured)\n", val);
    shmkit_array_close(v);
    shmkit_block_close(b);
    return 0;
}
