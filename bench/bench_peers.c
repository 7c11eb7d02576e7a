/*
 * bench_peers.c - shmkit's locks, atomics and named values beside the raw
 * primitives (the floor) and beside Boost.Interprocess, in one run (see
 * bench_util.h for how each figure is taken):
 *
 *   uncontended lock+unlock   raw robust pthread mutex (floor), shmkit_mutex,
 *                             raw non-robust pthread mutex, Boost's
 *                             interprocess_mutex (process-shared, not robust)
 *   2 processes contending    the same locks, two processes each doing
 *                             lock + count++ + unlock; wall ns per operation
 *   atomic fetch-add          __atomic_fetch_add (floor), shmkit_array_fetch_add
 *   named int64 value         create by name + attach by name from a second
 *                             handle + increment + close + unlink: shmkit's
 *                             Value beside Boost's managed_shared_memory
 *                             construct/find
 *
 * (bench_lock.c, owned with the locks, goes deeper into the locks alone.)
 * Usage: bench_peers [--tsv] [--quick] [--rounds N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "peers.h"
#include "shmkit.h"

/* What the processes share: every lock and counter on its own line. */
struct arena {
    _Alignas(64) pthread_mutex_t robust;
    _Alignas(64) pthread_mutex_t plain;
    _Alignas(64) shmkit_mutex mine;
    _Alignas(64) unsigned char boost[256];
    _Alignas(64) uint64_t count;
    _Alignas(64) int64_t atomic;
};

static struct arena *A;
static shmkit_array *V;
static char vname[64];

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_peers: %s: %s (%s)\n", what, shmkit_strerror(r),
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
        pthread_mutex_lock(m);
        A->count++;
        pthread_mutex_unlock(m);
    }
}

static void loop_shmkit(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_mutex_lock(&A->mine);
        A->count++;
        shmkit_mutex_unlock(&A->mine);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void loop_boost(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        peer_boost_mutex_lock(A->boost);
        A->count++;
        peer_boost_mutex_unlock(A->boost);
    }
}
#endif

/* Two processes run the inner loop of ctx n / 2 times each, started
 * together through a pipe; the time is the parent's wall time. */
struct two {
    void (*fn)(void *, long);
    void *ctx;
};

static void loop_two(void *ctx, long n)
{
    struct two *t = ctx;
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
}

static void loop_raw_atomic(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(&A->atomic, 1, __ATOMIC_SEQ_CST);
}

static void loop_array_atomic(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        shmkit_array_fetch_add(V, 0, 1, NULL);
}

static void loop_value_cycle(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_array *made, *seen;
        int r = shmkit_value_create(&made, vname, 'q', 0);

        if (r != 0)
            die("shmkit_value_create", r);
        if ((r = shmkit_array_attach(&seen, vname, 0)) != 0)
            die("shmkit_array_attach", r);
        ++*(int64_t *)shmkit_array_data(seen);
        shmkit_array_close(seen);
        shmkit_array_unlink(made);
        shmkit_array_close(made);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void loop_boost_value_cycle(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        if (peer_boost_value_cycle(vname) != 0)
            die("boost managed_shared_memory", -EIO);
}
#endif

int main(int argc, char **argv)
{
    shmkit_block *b;
    char name[64];
    int r;

    bench_args(argc, argv);
    snprintf(name, sizeof name, "bench_peers_%ld", (long)getpid());
    snprintf(vname, sizeof vname, "bench_peers_v_%ld", (long)getpid());
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
            {"shmkit_mutex", loop_shmkit, NULL},
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
        bench_run_wall("c.lock.contended",
                  "C: 2 processes contending (wall ns per op)", c2, nc,
                  bench_n(4000000), NULL);
    }
    {
        char vn[64];

        snprintf(vn, sizeof vn, "bench_peers_a_%ld", (long)getpid());
        if ((r = shmkit_value_create(&V, vn, 'q', 0)) < 0)
            die("shmkit_value_create", r);
        shmkit_array_unlink(V);
        bench_contender c[] = {
            {"__atomic_fetch_add (floor)", loop_raw_atomic, NULL},
            {"shmkit_array_fetch_add", loop_array_atomic, NULL},
        };
        bench_run("c.atomic", "C: atomic fetch-add, uncontended", c,
                  sizeof c / sizeof *c, bench_n(10000000), NULL);
        shmkit_array_close(V);
    }
    {
        bench_contender c[] = {
            {"shmkit_value_create + attach", loop_value_cycle, NULL},
#ifdef SHMKIT_BENCH_BOOST
            {"Boost managed_shared_memory construct + find",
             loop_boost_value_cycle, NULL},
#endif
        };
        bench_run("c.value.named",
                  "C: named int64 value create+attach+use+unlink", c,
                  sizeof c / sizeof *c, bench_n(2000), NULL);
    }
#ifdef SHMKIT_BENCH_BOOST
    peer_boost_mutex_destroy(A->boost);
#endif
    shmkit_block_close(b);
    return 0;
}
