/*
 * bench_lock.c - shmkit's locks and atomics beside the raw primitives (the
 * floor) and Boost.Interprocess, in one run (see bench_util.h for how each
 * figure is taken):
 *
 *   uncontended lock+unlock   raw robust pthread mutex (floor), shmkit_mutex
 *                             called (shmkit_mutex_lock/unlock), shmkit_mutex
 *                             inline (shmkit_mutex_lock_fast/unlock_fast from
 *                             shmkit/sync_inline.h), raw pthread mutex not
 *                             robust, Boost's interprocess_mutex
 *                             (process-shared, not robust; built in when
 *                             Boost's headers are there)
 *   2 processes contending    the same locks, two processes each doing
 *                             lock + count++ + unlock; wall ns per
 *                             operation (the throughput), in 9 times as
 *                             many rounds as the others, each a third as
 *                             long (it is the noisiest row on a shared
 *                             machine: the median of many short rounds is
 *                             far steadier from run to run than that of a
 *                             few long ones), the fastest and slowest
 *                             round printed; then the same work in
 *                             the CPU time of the two processes (user +
 *                             system, from getrusage of the reaped
 *                             children) per operation: what contending
 *                             costs, with the time that other load on the
 *                             machine took the CPUs away left out
 *   atomic fetch-add          __atomic_fetch_add (floor), the inline
 *                             shmkit_atomic_fetch_add_i64 on the pointer
 *                             from shmkit_array_i64(), the checked
 *                             shmkit_array_fetch_add
 *
 * The contended runs check the count afterwards (a lock that let two in
 * would lose increments).
 *
 * Usage: bench_lock [--tsv] [--quick] [--rounds N] [--pin]
 *   --pin      each contending process on a CPU of its own (by default
 *              they go where the scheduler puts them: on a shared
 *              machine a pinned process cannot flee a busy CPU, and three
 *              runs each way here were no steadier pinned)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#ifdef SHMKIT_BENCH_BOOST
#include "peers.h"
#endif
#include "shmkit.h"

/* What the processes share: every lock and counter on its own line. */
struct arena {
    _Alignas(64) pthread_mutex_t robust;
    _Alignas(64) pthread_mutex_t plain;
    _Alignas(64) shmkit_mutex mine;
    _Alignas(64) unsigned char boost[256];
    _Alignas(64) uint64_t count; /* under whichever lock is timed */
    _Alignas(64) int64_t atomic;
};

/* Contention: many short rounds (9x the others', a third of the work
 * each), so that the median sees many samples of the machine's load. */
#define CONTENDED_ROUNDS (9 * bench_rounds)
#define CONTENDED_OPS (4000000L / 3)

static struct arena *A;
static shmkit_array *V;
static int64_t *V_item;

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_lock: %s: %s (%s)\n", what, shmkit_strerror(r),
            shmkit_last_error());
    exit(1);
}

static void pthread_init(pthread_mutex_t *m, int robust)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (pthread_mutex_init(m, &a) != 0)
        die("pthread_mutex_init", -EINVAL);
    pthread_mutexattr_destroy(&a);
}

/* ---- the loops --------------------------------------------------------- */

static void loop_pthread(void *ctx, long n)
{
    pthread_mutex_t *m = ctx;

    for (long i = 0; i < n; i++) {
        if (pthread_mutex_lock(m) != 0)
            die("pthread_mutex_lock", -EINVAL);
        A->count++;
        pthread_mutex_unlock(m);
    }
}

static void loop_called(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        int r = shmkit_mutex_lock(&A->mine);

        if (r != 0)
            die("shmkit_mutex_lock", r);
        A->count++;
        shmkit_mutex_unlock(&A->mine);
    }
}

static void loop_inline(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        int r = shmkit_mutex_lock_fast(&A->mine);

        if (r != 0)
            die("shmkit_mutex_lock_fast", r);
        A->count++;
        shmkit_mutex_unlock_fast(&A->mine);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void loop_boost(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        peer_boost_mutex_lock(A->boost);
        A->count++;
        peer_boost_mutex_unlock(A->boost);
    }
}
#endif

/* Two processes run the inner loop of ctx n / 2 times each, each on its
 * own CPU when there are two, started together through a pipe; the time
 * is the parent's wall time. The count must have grown by n. */
struct two {
    void (*fn)(void *, long);
    void *ctx;
};

static int cpus[2] = {-1, -1};

static void pick_cpus(void)
{
    cpu_set_t set;
    int k = 0;

    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[k++] = c;
    if (k < 2)
        cpus[0] = cpus[1] = -1;
}

static void loop_two(void *ctx, long n)
{
    struct two *t = ctx;
    uint64_t before = A->count;
    pid_t p[2];
    int go[2];
    char c;

    if (pipe(go) != 0)
        die("pipe", -errno);
    for (int i = 0; i < 2; i++) {
        p[i] = fork();
        if (p[i] < 0)
            die("fork", -errno);
        if (p[i] == 0) {
            close(go[1]);
            if (cpus[i] >= 0) {
                cpu_set_t set;

                CPU_ZERO(&set);
                CPU_SET(cpus[i], &set);
                sched_setaffinity(0, sizeof set, &set);
            }
            if (read(go[0], &c, 1) != 1)
                _exit(2);
            t->fn(t->ctx, n / 2);
            _exit(0);
        }
    }
    close(go[0]);
    if (write(go[1], "xx", 2) != 2)
        die("write", -errno);
    close(go[1]);
    for (int i = 0; i < 2; i++) {
        int st;

        if (waitpid(p[i], &st, 0) != p[i] || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            die("contending child", -ECHILD);
    }
    if (A->count - before != (uint64_t)(n / 2) * 2)
        die("contended count (a lock let two in)", -EPROTO);
}

static void loop_raw_atomic(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(&A->atomic, 1, __ATOMIC_SEQ_CST);
}

static void loop_inline_atomic(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        shmkit_atomic_fetch_add_i64(V_item, 1);
}

static void loop_checked_atomic(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        shmkit_array_fetch_add(V, 0, 1, NULL);
}

int main(int argc, char **argv)
{
    shmkit_block *b;
    char name[64];
    int r;

    for (int i = bench_args(argc, argv); i < argc; i++) {
        if (strcmp(argv[i], "--pin") != 0) {
            fprintf(stderr, "usage: bench_lock [--tsv] [--quick] [--rounds N] [--pin]\n");
            return 2;
        }
        pick_cpus();
    }
    snprintf(name, sizeof name, "bench_lock_%ld", (long)getpid());
    if ((r = shmkit_block_create(&b, name, sizeof *A, 0)) < 0)
        die("create", r);
    shmkit_block_unlink(b); /* nothing to leak, whatever happens next */
    A = shmkit_block_data(b);
    pthread_init(&A->robust, 1);
    pthread_init(&A->plain, 0);
    if ((r = shmkit_mutex_init(&A->mine, 0)) < 0)
        die("shmkit_mutex_init", r);
#ifdef SHMKIT_BENCH_BOOST
    if (peer_boost_mutex_size() > sizeof A->boost ||
        peer_boost_mutex_init(A->boost) != 0)
        die("boost interprocess_mutex", -EINVAL);
#endif
    {
        bench_contender c[] = {
            {"raw robust pthread mutex (floor)", loop_pthread, &A->robust},
            {"shmkit_mutex, called", loop_called, NULL},
            {"shmkit_mutex, inline (_fast)", loop_inline, NULL},
            {"raw pthread mutex, not robust", loop_pthread, &A->plain},
#ifdef SHMKIT_BENCH_BOOST
            {"Boost interprocess_mutex (not robust)", loop_boost, NULL},
#endif
        };
        struct two t[sizeof c / sizeof *c];
        bench_contender c2[sizeof c / sizeof *c];
        int nc = (int)(sizeof c / sizeof *c);

        bench_run("c.lock.uncontended", "C: uncontended lock+unlock", c, nc,
                  bench_n(2000000), NULL);
        for (int k = 0; k < nc; k++) {
            t[k] = (struct two){c[k].fn, c[k].ctx};
            c2[k] = (bench_contender){c[k].label, loop_two, &t[k]};
        }
        bench_run_clock_r(CLOCK_MONOTONIC, CONTENDED_ROUNDS,
                          "c.lock.contended",
                          cpus[0] >= 0
                              ? "C: 2 processes contending, 1 CPU each (wall ns per op)"
                              : "C: 2 processes contending (wall ns per op)",
                          c2, nc, bench_n(CONTENDED_OPS), NULL);
        bench_run_clock_r(BENCH_CLOCK_CHILDREN, CONTENDED_ROUNDS,
                          "c.lock.contended.cpu",
                          "C: 2 processes contending (their CPU ns per op)",
                          c2, nc, bench_n(CONTENDED_OPS), NULL);
    }
    {
        char vn[64];

        snprintf(vn, sizeof vn, "bench_lock_a_%ld", (long)getpid());
        if ((r = shmkit_value_create(&V, vn, 'q', 0)) < 0)
            die("shmkit_value_create", r);
        shmkit_array_unlink(V);
        V_item = shmkit_array_i64(V);
        if (!V_item)
            die("shmkit_array_i64", -EINVAL);
        bench_contender c[] = {
            {"__atomic_fetch_add (floor)", loop_raw_atomic, NULL},
            {"shmkit_atomic_fetch_add_i64 (inline)", loop_inline_atomic, NULL},
            {"shmkit_array_fetch_add (checked)", loop_checked_atomic, NULL},
        };
        bench_run("c.atomic", "C: atomic fetch-add, uncontended", c,
                  sizeof c / sizeof *c, bench_n(10000000), NULL);
        shmkit_array_close(V);
    }
#ifdef SHMKIT_BENCH_BOOST
    peer_boost_mutex_destroy(A->boost);
#endif
    shmkit_block_close(b);
    return 0;
}
