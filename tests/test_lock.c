/*
 * test_lock.c - robust process-shared mutexes and conditions, with real
 * processes: exact totals under contention, holders SIGKILLed at random
 * points in the critical section, the not-recoverable path, conditions
 * across processes, timeouts, and the guard rails (close/shrink while
 * holding, too many locks, PID namespaces, fork).
 *
 * Children report through their exit status (never through Criterion
 * asserts, which belong to the parent) and every status is checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sync/sync_internal.h"
#include "testutil.h"

TestSuite(lock, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

/* ---- basics in one process ------------------------------------------ */

struct one {
    shmkit_mutex m;
    shmkit_mutex r;
    shmkit_cond c;
};

Test(lock, basics_one_process)
{
    struct one *o;
    shmkit_block *b = tu_make_block("basic", sizeof *o, (void **)&o);
    shmkit_mutex zero;

    memset(&zero, 0, sizeof zero);
    cr_assert_eq(shmkit_mutex_lock(&zero), -EINVAL, "zeroes are no mutex");
    cr_assert_eq(shmkit_mutex_init(&o->m, 0x80), -EINVAL);
    cr_assert_eq(shmkit_mutex_init(&o->m, 0), 0);
    cr_assert_eq(shmkit_mutex_init(&o->r, SHMKIT_MUTEX_RECURSIVE), 0);
    cr_assert_eq(shmkit_cond_init(&o->c), 0);
    cr_assert_not(shmkit_mutex_is_recursive(&o->m));
    cr_assert(shmkit_mutex_is_recursive(&o->r));

    cr_assert_eq(shmkit_mutex_unlock(&o->m), SHMKIT_ENOTOWNER);
    cr_assert_eq(shmkit_mutex_lock(&o->m), 0);
    cr_assert_eq(shmkit_mutex_held(&o->m), 1);
    cr_assert_eq(shmkit_mutex_lock(&o->m), -EDEADLK);
    cr_assert_eq(shmkit_mutex_trylock(&o->m), -EDEADLK);
    cr_assert_eq(shmkit_mutex_consistent(&o->m), -EINVAL, "not owner-dead");
    cr_assert_eq(shmkit_mutex_unlock(&o->m), 0);
    cr_assert_eq(shmkit_mutex_held(&o->m), 0);
    cr_assert_eq(shmkit_mutex_trylock(&o->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&o->m), 0);

    for (int i = 0; i < 5; i++)
        cr_assert_eq(shmkit_mutex_lock(&o->r), 0);
    cr_assert_eq(shmkit_mutex_held(&o->r), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(shmkit_mutex_unlock(&o->r), 0);
    cr_assert_eq(shmkit_mutex_unlock(&o->r), SHMKIT_ENOTOWNER);

    cr_assert_eq(shmkit_cond_wait(&o->c, &o->m), SHMKIT_ENOTOWNER);
    cr_assert_eq(shmkit_cond_signal(&o->c), 0);
    cr_assert_eq(shmkit_cond_broadcast(&o->c), 0);
    cr_assert_eq(shmkit_mutex_lock(&o->m), 0);
    cr_assert_eq(shmkit_mutex_destroy(&o->m), -EBUSY, "held");
    cr_assert_eq(shmkit_mutex_unlock(&o->m), 0);
    cr_assert_eq(shmkit_mutex_destroy(&o->m), 0);
    cr_assert_eq(shmkit_mutex_lock(&o->m), -EINVAL, "destroyed");
    tu_drop_block(b);
}

/* ---- exact totals ---------------------------------------------------- */

struct counter {
    shmkit_mutex m;
    uint64_t value;  /* protected by m */
    uint64_t shadow; /* protected by m; equals value outside m */
};

static void count_child(struct counter *c, int m_incs)
{
    for (int i = 0; i < m_incs; i++) {
        CHILD_CHECK(shmkit_mutex_lock(&c->m) == 0, 2);
        CHILD_CHECK(c->value == c->shadow, 3);
        c->value++;
        c->shadow = c->value;
        CHILD_CHECK(shmkit_mutex_unlock(&c->m) == 0, 4);
    }
    _exit(0);
}

static void exact_total(unsigned flags)
{
    enum { N = 4, M = 20000 };
    struct counter *c;
    shmkit_block *b = tu_make_block("count", sizeof *c, (void **)&c);
    pid_t pids[N];

    cr_assert_eq(shmkit_mutex_init(&c->m, flags), 0);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0)
            count_child(c, M);
    }
    for (int i = 0; i < N; i++)
        tu_wait_ok(pids[i]);
    cr_assert_eq(c->value, (uint64_t)N * M, "lost updates: %llu",
                 (unsigned long long)c->value);
    tu_drop_block(b);
}

Test(lock, n_processes_exact_total)
{
    exact_total(0);
}

Test(lock, n_processes_exact_total_recursive)
{
    exact_total(SHMKIT_MUTEX_RECURSIVE);
}

/* ---- holders killed at random points --------------------------------- */

/*
 * a and b are equal whenever nobody is inside the critical section; the
 * worker bumps a, dawdles, bumps b. iters (atomic) counts finished rounds
 * so the parent can kill at a random moment; bad is set (atomically, first
 * thing) if a worker ever sees owner death, which only the parent should.
 */
struct killbox {
    shmkit_mutex m;
    uint64_t a, b;        /* protected by m */
    uint64_t iters;       /* atomic */
    uint32_t bad;         /* atomic */
};

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static void kill_worker(struct killbox *k, unsigned seed)
{
    for (;;) {
        int r = shmkit_mutex_lock(&k->m);
        if (r != 0 || k->a != k->b)
            __atomic_store_n(&k->bad, r != 0 ? 1 : 2, __ATOMIC_SEQ_CST);
        k->a++;
        spin(rand_r(&seed) % 400);
        k->b++;
        shmkit_mutex_unlock(&k->m);
        __atomic_fetch_add(&k->iters, 1, __ATOMIC_SEQ_CST);
        spin(rand_r(&seed) % 100);
    }
}

/* Waits until the worker has done `more` further rounds. */
static void wait_progress(struct killbox *k, uint64_t more)
{
    uint64_t goal = __atomic_load_n(&k->iters, __ATOMIC_SEQ_CST) + more;
    double give_up = tu_now_s() + 30;

    while (__atomic_load_n(&k->iters, __ATOMIC_SEQ_CST) < goal) {
        cr_assert_lt(tu_now_s(), give_up, "worker made no progress: deadlock");
        sched_yield();
    }
}

Test(lock, holder_killed_thousands_of_times)
{
    enum { ROUNDS = 2000 };
    struct killbox *k;
    shmkit_block *b = tu_make_block("kill", sizeof *k, (void **)&k);
    unsigned seed = 12345;
    int deaths = 0, repairs = 0, held_at_kill = 0;

    cr_assert_eq(shmkit_mutex_init(&k->m, 0), 0);
    for (int round = 0; round < ROUNDS; round++) {
        shmkit_mutex_info info;
        struct timespec dl;
        pid_t pid = fork();
        int st, r;

        cr_assert_geq(pid, 0);
        if (pid == 0)
            kill_worker(k, (unsigned)round * 7919u + 1);
        wait_progress(k, 1 + rand_r(&seed) % 8);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        st = tu_wait_status(pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "worker status %#x", st);
        cr_assert_eq(shmkit_mutex_inspect(&k->m, &info), 0);
        held_at_kill += info.owner_died;

        shmkit_deadline(&dl, 10);
        r = shmkit_mutex_timedlock(&k->m, &dl);
        cr_assert(r == 0 || r == SHMKIT_EOWNERDEAD, "round %d: %s", round,
                  shmkit_errname(r));
        cr_assert_eq(r == SHMKIT_EOWNERDEAD, info.owner_died,
                     "round %d: owner death reported iff the holder died",
                     round);
        if (r == SHMKIT_EOWNERDEAD) {
            deaths++;
            if (k->a != k->b) {
                k->b = k->a;
                repairs++;
            }
            cr_assert_eq(shmkit_mutex_consistent(&k->m), 0);
        } else {
            cr_assert_eq(k->a, k->b, "round %d: torn data, no death told",
                         round);
        }
        cr_assert_eq(shmkit_mutex_unlock(&k->m), 0);
        /* Reported once: the next locker is told nothing. */
        cr_assert_eq(shmkit_mutex_trylock(&k->m), 0, "round %d", round);
        cr_assert_eq(shmkit_mutex_unlock(&k->m), 0);
        cr_assert_eq(__atomic_load_n(&k->bad, __ATOMIC_SEQ_CST), 0,
                     "round %d: a worker saw owner death or torn data",
                     round);
    }
    cr_log_info("%d kills: %d while holding, %d owner deaths reported, "
                "%d repairs", ROUNDS, held_at_kill, deaths, repairs);
    cr_assert_eq(deaths, held_at_kill);
    cr_assert_gt(deaths, 0, "no kill landed inside the critical section");
    cr_assert_gt(repairs, 0, "no kill landed between the two fields");
    tu_drop_block(b);
}

/* A waiter already asleep in the lock is the one told when the holder
 * dies. The waiter is proved asleep in the futex (its /proc syscall) before
 * the kill: a waiter that only arrived after the death would get the same
 * report and prove nothing about waking sleepers. */
struct handoff {
    shmkit_mutex m;
    uint64_t a, b;         /* protected by m */
};

Test(lock, blocked_waiter_told_owner_died)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("handoff", sizeof *h, (void **)&h);
    int go[2];
    pid_t holder, waiter;
    char c;
    int st;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    cr_assert_eq(pipe(go), 0);
    holder = fork();
    cr_assert_geq(holder, 0);
    if (holder == 0) {
        CHILD_CHECK(shmkit_mutex_lock(&h->m) == 0, 2);
        h->a = 1; /* torn: b stays 0 */
        CHILD_CHECK(write(go[1], "x", 1) == 1, 3);
        for (;;)
            pause();
    }
    cr_assert_eq(read(go[0], &c, 1), 1);
    waiter = fork();
    cr_assert_geq(waiter, 0);
    if (waiter == 0) {
        int r = shmkit_mutex_lock(&h->m);
        CHILD_CHECK(r == SHMKIT_EOWNERDEAD, 10);
        CHILD_CHECK(h->a == 1 && h->b == 0, 11);
        h->b = h->a;
        CHILD_CHECK(shmkit_mutex_consistent(&h->m) == 0, 12);
        CHILD_CHECK(shmkit_mutex_unlock(&h->m) == 0, 13);
        _exit(0);
    }
    tu_wait_in_futex(waiter);
    cr_assert_eq(kill(holder, SIGKILL), 0);
    st = tu_wait_status(holder);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "holder %#x", st);
    tu_wait_ok(waiter);
    cr_assert_eq(shmkit_mutex_lock(&h->m), 0, "repaired: no second report");
    cr_assert_eq(h->a, h->b);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    close(go[0]), close(go[1]);
    tu_drop_block(b);
}

/* ---- not recoverable ------------------------------------------------- */

Test(lock, unrepaired_becomes_not_recoverable_forever)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("poison", sizeof *h, (void **)&h);
    shmkit_mutex_info info;
    struct timespec dl;
    pid_t pid;
    int r;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(shmkit_mutex_lock(&h->m) == 0, 2);
        _exit(0); /* dies holding it */
    }
    tu_wait_ok(pid);
    cr_assert_eq(shmkit_mutex_lock(&h->m), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_mutex_inspect(&h->m, &info), 0);
    cr_assert(info.inconsistent);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0, "unlock without repair");
    cr_assert_eq(shmkit_mutex_held(&h->m), 0);
    cr_assert_eq(shmkit_mutex_inspect(&h->m, &info), 0);
    cr_assert(info.not_recoverable);

    cr_assert_eq(shmkit_mutex_lock(&h->m), SHMKIT_ENOTRECOVERABLE);
    cr_assert_eq(shmkit_mutex_trylock(&h->m), SHMKIT_ENOTRECOVERABLE);
    shmkit_deadline(&dl, 0.01);
    r = shmkit_mutex_timedlock(&h->m, &dl);
    cr_assert_eq(r, SHMKIT_ENOTRECOVERABLE, "%s", shmkit_errname(r));
    cr_assert_eq(shmkit_mutex_held(&h->m), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            CHILD_CHECK(shmkit_mutex_lock(&h->m) == SHMKIT_ENOTRECOVERABLE,
                        3 + i);
        _exit(0);
    }
    tu_wait_ok(pid);
    cr_assert_str_eq(shmkit_errname(SHMKIT_ENOTRECOVERABLE),
                     "SHMKIT_ENOTRECOVERABLE");
    /* Destroyed and re-initialised for a fresh start. */
    cr_assert_eq(shmkit_mutex_destroy(&h->m), 0);
    cr_assert_eq(shmkit_mutex_lock(&h->m), -EINVAL);
    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    cr_assert_eq(shmkit_mutex_lock(&h->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    tu_drop_block(b);
}

static void *lock_and_exit(void *m)
{
    return (void *)(intptr_t)shmkit_mutex_lock(m);
}

Test(lock, thread_death_is_owner_death)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("thread", sizeof *h, (void **)&h);
    pthread_t t;
    void *ret;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    cr_assert_eq(pthread_create(&t, NULL, lock_and_exit, &h->m), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0);
    cr_assert_eq(shmkit_mutex_lock(&h->m), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_mutex_consistent(&h->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    tu_drop_block(b);
}

/* ---- timeouts -------------------------------------------------------- */

/* A child holds m until told to let go through a pipe. */
static pid_t hold_in_child(shmkit_mutex *m, int ready[2], int release[2])
{
    pid_t pid;
    char c;

    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(release), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(shmkit_mutex_lock(m) == 0, 2);
        CHILD_CHECK(write(ready[1], "x", 1) == 1, 3);
        CHILD_CHECK(read(release[0], &c, 1) == 1, 4);
        CHILD_CHECK(shmkit_mutex_unlock(m) == 0, 5);
        _exit(0);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    return pid;
}

Test(lock, timedlock_returns_at_its_deadline)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("timed", sizeof *h, (void **)&h);
    int ready[2], release[2];
    struct timespec dl;
    pid_t pid;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    pid = hold_in_child(&h->m, ready, release);
    cr_assert_eq(shmkit_mutex_trylock(&h->m), -EBUSY);
    shmkit_deadline(&dl, 0.2);
    cr_assert_eq(shmkit_mutex_timedlock(&h->m, &dl), -ETIMEDOUT);
    cr_assert(tu_reached(&dl), "returned before the deadline");
    cr_assert_eq(shmkit_mutex_held(&h->m), 0);
    shmkit_deadline(&dl, -5);
    cr_assert_eq(shmkit_mutex_timedlock(&h->m, &dl), -ETIMEDOUT, "past");
    dl.tv_nsec = 2000000000L;
    cr_assert_eq(shmkit_mutex_timedlock(&h->m, &dl), -EINVAL);

    cr_assert_eq(write(release[1], "x", 1), 1);
    tu_wait_ok(pid);
    shmkit_deadline(&dl, 10);
    cr_assert_eq(shmkit_mutex_timedlock(&h->m, &dl), 0);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    shmkit_deadline(&dl, -1);
    cr_assert_eq(shmkit_mutex_timedlock(&h->m, &dl), 0,
                 "a past deadline still takes a free lock");
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    tu_drop_block(b);
}

/* ---- conditions ------------------------------------------------------ */

enum { RING = 8, ITEMS = 20000 };

struct queue {
    shmkit_mutex m;
    shmkit_cond not_empty, not_full;
    uint32_t head, tail;   /* protected by m */
    uint64_t ring[RING];   /* protected by m */
};

static int queue_wait(struct queue *q, shmkit_cond *c)
{
    struct timespec dl;

    shmkit_deadline(&dl, 20);
    return shmkit_cond_timedwait(c, &q->m, &dl);
}

static void producer(struct queue *q)
{
    for (uint64_t i = 1; i <= ITEMS; i++) {
        CHILD_CHECK(shmkit_mutex_lock(&q->m) == 0, 2);
        while (q->tail - q->head == RING)
            CHILD_CHECK(queue_wait(q, &q->not_full) == 0, 3);
        q->ring[q->tail++ % RING] = i;
        CHILD_CHECK(shmkit_cond_signal(&q->not_empty) == 0, 4);
        CHILD_CHECK(shmkit_mutex_unlock(&q->m) == 0, 5);
    }
    _exit(0);
}

static void consumer(struct queue *q)
{
    for (uint64_t want = 1; want <= ITEMS; want++) {
        CHILD_CHECK(shmkit_mutex_lock(&q->m) == 0, 2);
        while (q->tail == q->head)
            CHILD_CHECK(queue_wait(q, &q->not_empty) == 0, 3);
        CHILD_CHECK(q->ring[q->head++ % RING] == want, 6);
        CHILD_CHECK(shmkit_cond_signal(&q->not_full) == 0, 4);
        CHILD_CHECK(shmkit_mutex_unlock(&q->m) == 0, 5);
    }
    _exit(0);
}

static void producer_consumer(unsigned flags)
{
    struct queue *q;
    shmkit_block *b = tu_make_block("queue", sizeof *q, (void **)&q);
    pid_t p, c;

    cr_assert_eq(shmkit_mutex_init(&q->m, flags), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_empty), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_full), 0);
    c = fork();
    cr_assert_geq(c, 0);
    if (c == 0)
        consumer(q);
    p = fork();
    cr_assert_geq(p, 0);
    if (p == 0)
        producer(q);
    tu_wait_ok(p);
    tu_wait_ok(c);
    cr_assert_eq(q->head, ITEMS);
    cr_assert_eq(q->tail, ITEMS);
    tu_drop_block(b);
}

Test(lock, condition_producer_consumer)
{
    producer_consumer(0);
}

Test(lock, condition_producer_consumer_recursive)
{
    producer_consumer(SHMKIT_MUTEX_RECURSIVE);
}

Test(lock, cond_timedwait_times_out_holding_the_mutex)
{
    struct queue *q;
    shmkit_block *b = tu_make_block("cwait", sizeof *q, (void **)&q);
    struct timespec dl;

    cr_assert_eq(shmkit_mutex_init(&q->m, SHMKIT_MUTEX_RECURSIVE), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_empty), 0);
    cr_assert_eq(shmkit_mutex_lock(&q->m), 0);
    cr_assert_eq(shmkit_mutex_lock(&q->m), 0);
    shmkit_deadline(&dl, 0.1);
    cr_assert_eq(shmkit_cond_timedwait(&q->not_empty, &q->m, &dl), -ETIMEDOUT);
    cr_assert(tu_reached(&dl), "returned before the deadline");
    cr_assert_eq(shmkit_mutex_held(&q->m), 2, "depth restored");
    cr_assert_eq(shmkit_mutex_unlock(&q->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&q->m), 0);
    cr_assert_eq(shmkit_mutex_held(&q->m), 0);
    tu_drop_block(b);
}

/* A recursive mutex held twice is released entirely for the wait, so the
 * other process gets in and signals. */
Test(lock, cond_wait_releases_all_levels)
{
    struct queue *q;
    shmkit_block *b = tu_make_block("clevels", sizeof *q, (void **)&q);
    pid_t pid;

    cr_assert_eq(shmkit_mutex_init(&q->m, SHMKIT_MUTEX_RECURSIVE), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_empty), 0);
    cr_assert_eq(shmkit_mutex_lock(&q->m), 0);
    cr_assert_eq(shmkit_mutex_lock(&q->m), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(shmkit_mutex_held(&q->m) == 0, 2);
        CHILD_CHECK(shmkit_mutex_lock(&q->m) == 0, 3);
        q->tail = 1;
        CHILD_CHECK(shmkit_cond_broadcast(&q->not_empty) == 0, 4);
        CHILD_CHECK(shmkit_mutex_unlock(&q->m) == 0, 5);
        _exit(0);
    }
    while (q->tail == 0)
        cr_assert_eq(queue_wait(q, &q->not_empty), 0);
    cr_assert_eq(shmkit_mutex_held(&q->m), 2);
    cr_assert_eq(shmkit_mutex_unlock(&q->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&q->m), 0);
    tu_wait_ok(pid);
    tu_drop_block(b);
}

/* The holder dies while the other waits on the condition: the waiter,
 * once signalled, reacquires with the death reported. */
Test(lock, cond_waiter_told_owner_died)
{
    struct queue *q;
    shmkit_block *b = tu_make_block("cdead", sizeof *q, (void **)&q);
    int ready[2];
    pid_t waiter, killer;
    char c;

    cr_assert_eq(shmkit_mutex_init(&q->m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_empty), 0);
    cr_assert_eq(pipe(ready), 0);
    waiter = fork();
    cr_assert_geq(waiter, 0);
    if (waiter == 0) {
        int r;
        CHILD_CHECK(shmkit_mutex_lock(&q->m) == 0, 2);
        q->head = 1; /* "I am waiting", seen only under m */
        do
            r = queue_wait(q, &q->not_empty);
        while (r == 0 && q->tail == 0);
        CHILD_CHECK(r == SHMKIT_EOWNERDEAD, 3);
        CHILD_CHECK(shmkit_mutex_consistent(&q->m) == 0, 4);
        CHILD_CHECK(shmkit_mutex_unlock(&q->m) == 0, 5);
        _exit(0);
    }
    killer = fork();
    cr_assert_geq(killer, 0);
    if (killer == 0) {
        /* Waits until the waiter sleeps (it released m), then signals
         * and dies holding m. */
        for (;;) {
            CHILD_CHECK(shmkit_mutex_lock(&q->m) == 0, 2);
            if (q->head == 1)
                break;
            CHILD_CHECK(shmkit_mutex_unlock(&q->m) == 0, 3);
            sched_yield();
        }
        q->tail = 1;
        CHILD_CHECK(shmkit_cond_signal(&q->not_empty) == 0, 4);
        CHILD_CHECK(write(ready[1], "x", 1) == 1, 5);
        for (;;)
            pause();
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(kill(killer, SIGKILL), 0);
    tu_wait_signaled(killer, SIGKILL);
    tu_wait_ok(waiter);
    close(ready[0]), close(ready[1]);
    tu_drop_block(b);
}

/* ---- named locks ----------------------------------------------------- */

Test(lock, named_lock_across_processes)
{
    const char *name = tu_name("named");
    shmkit_lock *l, *l2;
    shmkit_block *raw;
    pid_t pids[3];
    uint64_t *count;

    cr_assert_eq(shmkit_lock_create(&l, name, SHMKIT_MUTEX_RECURSIVE, 0), 0,
                 "%s", shmkit_last_error());
    cr_assert_eq(shmkit_lock_create(&l2, name, 0, 0), -EEXIST);
    cr_assert_eq(shmkit_block_kind(shmkit_lock_block(l)), SHMKIT_KIND_LOCK);
    cr_assert(shmkit_mutex_is_recursive(shmkit_lock_mutex(l)));
    cr_assert_eq(shmkit_block_create(&raw, tu_name("cnt"), 8, 0), 0);
    count = shmkit_block_data(raw);
    for (int i = 0; i < 3; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            shmkit_lock *mine;
            CHILD_CHECK(shmkit_lock_attach(&mine, name, 0) == 0, 2);
            for (int j = 0; j < 5000; j++) {
                CHILD_CHECK(shmkit_mutex_lock(shmkit_lock_mutex(mine)) == 0, 3);
                (*count)++;
                CHILD_CHECK(shmkit_mutex_unlock(shmkit_lock_mutex(mine)) == 0,
                            4);
            }
            CHILD_CHECK(shmkit_lock_close(mine) == 0, 5);
            _exit(0);
        }
    }
    for (int i = 0; i < 3; i++)
        tu_wait_ok(pids[i]);
    cr_assert_eq(*count, 15000);

    cr_assert_eq(shmkit_mutex_lock(shmkit_lock_mutex(l)), 0);
    cr_assert_eq(shmkit_lock_close(l), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_mutex_unlock(shmkit_lock_mutex(l)), 0);
    cr_assert_eq(shmkit_lock_attach(&l2, tu_name("cnt"), 0), SHMKIT_EKIND);
    cr_assert_eq(shmkit_lock_attach(&l2, name, SHMKIT_RDONLY), -EINVAL);
    cr_assert_eq(shmkit_lock_attach(&l2, tu_name("nothing"), 0), -ENOENT);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
    tu_drop_block(raw);
    cr_assert_eq(tu_count_leftovers(), 0);
}

/* A named lock's condition, with a waiter that attached by name. */
Test(lock, named_condition_across_processes)
{
    const char *name = tu_name("ncond");
    shmkit_lock *l;
    shmkit_block *fb;
    uint32_t *flag;
    pid_t pid;

    cr_assert_eq(shmkit_lock_create(&l, name, 0, 0), 0);
    cr_assert_eq(shmkit_block_create(&fb, tu_name("nflag"), 8, 0), 0);
    flag = shmkit_block_data(fb);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_lock *x;
        struct timespec dl;
        int r = 0;
        CHILD_CHECK(shmkit_lock_attach(&x, name, 0) == 0, 2);
        CHILD_CHECK(shmkit_mutex_lock(shmkit_lock_mutex(x)) == 0, 3);
        flag[1] = 1; /* waiting: only seen under the lock */
        shmkit_deadline(&dl, 20);
        while (r == 0 && flag[0] == 0)
            r = shmkit_cond_timedwait(shmkit_lock_cond(x),
                                      shmkit_lock_mutex(x), &dl);
        CHILD_CHECK(r == 0, 4);
        CHILD_CHECK(shmkit_mutex_unlock(shmkit_lock_mutex(x)) == 0, 5);
        CHILD_CHECK(shmkit_lock_close(x) == 0, 6);
        _exit(0);
    }
    for (bool waiting = false; !waiting;) {
        cr_assert_eq(shmkit_mutex_lock(shmkit_lock_mutex(l)), 0);
        waiting = flag[1] == 1;
        if (waiting) {
            flag[0] = 1;
            cr_assert_eq(shmkit_cond_broadcast(shmkit_lock_cond(l)), 0);
        }
        cr_assert_eq(shmkit_mutex_unlock(shmkit_lock_mutex(l)), 0);
        if (!waiting)
            sched_yield();
    }
    tu_wait_ok(pid);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
    tu_drop_block(fb);
}

Test(lock, named_lock_corrupt_headers)
{
    const char *name = tu_name("ncorrupt");
    shmkit_lock *l, *l2;
    unsigned char *p;

    cr_assert_eq(shmkit_lock_create(&l, name, 0, 0), 0);
    p = shmkit_block_data(shmkit_lock_block(l));
    p[4] = 9; /* version */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_EVERSION);
    p[4] = 1;
    p[20] = 1; /* reserved */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_ECORRUPT);
    p[20] = 0;
    p[64] ^= 0xff; /* the mutex's magic */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_ECORRUPT);
    p[64] ^= 0xff;
    /* A mutex or condition of the other layout version (sync.h). */
    p[64 + 4] = 1;
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_EVERSION, "mutex");
    cr_assert_eq(shmkit_lock_parse(p, 192, NULL), SHMKIT_EVERSION);
    cr_assert_eq(shmkit_mutex_lock(shmkit_lock_mutex(l)), -EINVAL);
    p[64 + 4] = 2;
    p[128 + 4] = 1;
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_EVERSION, "cond");
    cr_assert_eq(shmkit_cond_signal(shmkit_lock_cond(l)), -EINVAL);
    p[128 + 4] = 2;
    p[128 + 6] = 1; /* the condition's flags: none are defined */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_ECORRUPT, "cond flags");
    p[128 + 6] = 0;
    p[64 + 6] = 0x80; /* the mutex's flags: an unknown one */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_ECORRUPT, "mutex flags");
    p[64 + 6] = 0;
    p[6] = SHMKIT_MUTEX_RECURSIVE; /* the block says recursive, its mutex not */
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), SHMKIT_ECORRUPT, "recursion");
    p[6] = 0;
    cr_assert_eq(shmkit_lock_parse(p, 100, NULL), SHMKIT_ETRUNCATED);
    cr_assert_eq(shmkit_lock_parse(p, 3, NULL), SHMKIT_EKIND);
    cr_assert_eq(shmkit_lock_attach(&l2, name, 0), 0);
    cr_assert_eq(shmkit_lock_close(l2), 0);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
}

Test(lock, named_lock_generated_name)
{
    shmkit_lock *l;

    cr_assert_eq(shmkit_lock_create(&l, NULL, 0, 0), 0);
    cr_assert_eq(strncmp(shmkit_block_name(shmkit_lock_block(l)), "psm_", 4),
                 0);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
}

/* ---- guard rails ----------------------------------------------------- */

Test(lock, close_and_shrink_refused_while_holding)
{
    shmkit_block *b;
    char *p;
    shmkit_mutex *m;

    cr_assert_eq(shmkit_block_create(&b, tu_name("guard"), 8192, 0), 0);
    p = shmkit_block_data(b);
    m = (shmkit_mutex *)(p + 4096);
    cr_assert_eq(shmkit_mutex_init(m, 0), 0);
    cr_assert_eq(shmkit_mutex_lock(m), 0);
    cr_assert_eq(shmkit_block_close(b), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_block_shrink(b, 4096 + 32), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_block_shrink(b, 4096), SHMKIT_ELOCKHELD);
    cr_assert_eq(shmkit_block_shrink(b, 4096 + 64), 0, "lock kept whole");
    cr_assert_eq(shmkit_mutex_unlock(m), 0);
    cr_assert_eq(shmkit_block_shrink(b, 4096), 0);
    tu_drop_block(b);
}

struct holder_arg {
    shmkit_mutex *m;
    int ready[2], release[2];
};

static void *hold_until_told(void *p)
{
    struct holder_arg *a = p;
    char c;

    if (shmkit_mutex_lock(a->m) != 0 || write(a->ready[1], "x", 1) != 1 ||
        read(a->release[0], &c, 1) != 1)
        return (void *)1;
    return (void *)(intptr_t)shmkit_mutex_unlock(a->m);
}

Test(lock, close_refused_while_another_thread_holds)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("guardt", sizeof *h, (void **)&h);
    struct holder_arg a = {&h->m, {0, 0}, {0, 0}};
    pthread_t t;
    void *ret;
    char c;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    cr_assert_eq(pipe(a.ready), 0);
    cr_assert_eq(pipe(a.release), 0);
    cr_assert_eq(pthread_create(&t, NULL, hold_until_told, &a), 0);
    cr_assert_eq(read(a.ready[0], &c, 1), 1);
    cr_assert_eq(shmkit_mutex_held(&h->m), 0, "held by the other thread");
    cr_assert_eq(shmkit_block_close(b), SHMKIT_ELOCKHELD,
                 "a lock held by any thread of the process counts");
    cr_assert_eq(write(a.release[1], "x", 1), 1);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0);
    close(a.ready[0]), close(a.ready[1]), close(a.release[0]),
        close(a.release[1]);
    tu_drop_block(b);
}

static void *lock_then_unlock(void *m)
{
    int r = shmkit_mutex_lock(m);

    if (r == 0)
        r = shmkit_mutex_unlock(m);
    return (void *)(intptr_t)r;
}

/* A thread still waiting for a lock in a block keeps it open too. */
Test(lock, close_refused_while_a_thread_waits_for_a_lock)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("guardw", sizeof *h, (void **)&h);
    int ready[2], release[2];
    pthread_t t;
    void *ret;
    pid_t pid;

    cr_assert_eq(shmkit_mutex_init(&h->m, 0), 0);
    pid = hold_in_child(&h->m, ready, release);
    cr_assert_eq(pthread_create(&t, NULL, lock_then_unlock, &h->m), 0);
    while (!shmkit__locks_held_in(shmkit_block_data(b), shmkit_block_size(b)))
        sched_yield();
    cr_assert_eq(shmkit_block_close(b), SHMKIT_ELOCKHELD);
    cr_assert_eq(write(release[1], "x", 1), 1);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0);
    tu_wait_ok(pid);
    tu_drop_block(b);
}

Test(lock, too_many_locks_per_thread)
{
    enum { N = SHMKIT_LOCKS_PER_THREAD + 1 };
    shmkit_mutex *m;
    shmkit_block *b = tu_make_block("many", sizeof *m * N, (void **)&m);

    for (int i = 0; i < N; i++)
        cr_assert_eq(shmkit_mutex_init(&m[i], 0), 0);
    for (int i = 0; i < N - 1; i++)
        cr_assert_eq(shmkit_mutex_lock(&m[i]), 0, "lock %d", i);
    cr_assert_eq(shmkit_mutex_lock(&m[N - 1]), SHMKIT_ETOOMANYLOCKS);
    cr_assert_eq(shmkit_mutex_trylock(&m[N - 1]), SHMKIT_ETOOMANYLOCKS);
    cr_assert_eq(shmkit_mutex_unlock(&m[7]), 0, "out of order");
    cr_assert_eq(shmkit_mutex_lock(&m[N - 1]), 0);
    for (int i = 0; i < N; i++)
        if (i != 7)
            cr_assert_eq(shmkit_mutex_unlock(&m[i]), 0, "unlock %d", i);
    tu_drop_block(b);
}

Test(lock, fork_child_holds_nothing)
{
    struct handoff *h;
    shmkit_block *b = tu_make_block("fork", sizeof *h, (void **)&h);
    pid_t pid;

    cr_assert_eq(shmkit_mutex_init(&h->m, SHMKIT_MUTEX_RECURSIVE), 0);
    cr_assert_eq(shmkit_mutex_lock(&h->m), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(shmkit_mutex_held(&h->m) == 0, 2);
        CHILD_CHECK(shmkit_mutex_trylock(&h->m) == -EBUSY, 3);
        CHILD_CHECK(shmkit_mutex_unlock(&h->m) == SHMKIT_ENOTOWNER, 4);
        CHILD_CHECK(shmkit_block_close(b) == 0, 5);
        _exit(0);
    }
    tu_wait_ok(pid);
    cr_assert_eq(shmkit_mutex_held(&h->m), 1);
    cr_assert_eq(shmkit_mutex_unlock(&h->m), 0);
    tu_drop_block(b);
}

/* A header that says another PID namespace is refused everywhere. */
Test(lock, foreign_pid_namespace_refused)
{
    struct queue *q;
    shmkit_block *b = tu_make_block("ns", sizeof *q, (void **)&q);
    shmkit_mutex_info info;
    uint64_t ns;
    unsigned char *mp = (unsigned char *)&q->m, *cp = (unsigned char *)&q->not_empty;

    cr_assert_eq(shmkit_mutex_init(&q->m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&q->not_empty), 0);
    cr_assert_eq(shmkit_mutex_inspect(&q->m, &info), 0);
    if (info.pid_ns == 0)
        cr_skip_test("no /proc: PID namespace unknown");
    ns = info.pid_ns + 1;
    memcpy(mp + 8, &ns, sizeof ns); /* the header's pid_ns field */
    cr_assert_eq(shmkit_mutex_lock(&q->m), SHMKIT_ENAMESPACE);
    cr_assert_eq(shmkit_mutex_trylock(&q->m), SHMKIT_ENAMESPACE);
    memcpy(mp + 8, &info.pid_ns, sizeof ns);
    memcpy(cp + 8, &ns, sizeof ns);
    cr_assert_eq(shmkit_mutex_lock(&q->m), 0);
    cr_assert_eq(shmkit_cond_signal(&q->not_empty), SHMKIT_ENAMESPACE);
    cr_assert_eq(shmkit_cond_wait(&q->not_empty, &q->m), SHMKIT_ENAMESPACE);
    cr_assert_eq(shmkit_mutex_unlock(&q->m), 0);
    tu_drop_block(b);
}

/* A real process in a new PID namespace, where the system lets us make
 * one (root, or unprivileged user namespaces). */
Test(lock, real_pid_namespace_refused)
{
    const char *name = tu_name("realns");
    shmkit_lock *l;
    pid_t pid;
    int st;

    cr_assert_eq(shmkit_lock_create(&l, name, 0, 0), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        pid_t inner;
        int ist;
        if (unshare(CLONE_NEWPID) != 0 &&
            unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
            _exit(77);
        inner = fork(); /* the first child lives in the new namespace */
        if (inner < 0)
            _exit(78);
        if (inner == 0) {
            shmkit_lock *x;
            int r = shmkit_lock_attach(&x, name, SHMKIT_ANYUSER);
            _exit(r == SHMKIT_ENAMESPACE ? 0 : 10);
        }
        CHILD_CHECK(waitpid(inner, &ist, 0) == inner, 79);
        _exit(WIFEXITED(ist) ? WEXITSTATUS(ist) : 80);
    }
    st = tu_wait_status(pid);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        cr_skip_test("cannot create a PID namespace here");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

/* `shmkit show` tells a named lock's state, owner death included. */
static void show_lock_json(const char *name, char *out, size_t len)
{
    char *argv[] = {(char *)tu_cli(), "show", (char *)name, "--json", NULL};
    int st = tu_run(argv, out, len);

    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "show: %#x", st);
}

Test(lock, cli_show_lock_states)
{
    const char *name = tu_name("showlock");
    shmkit_lock *l;
    char out[1024];
    pid_t pid;

    cr_assert_eq(shmkit_lock_create(&l, name, 0, 0), 0);
    show_lock_json(name, out, sizeof out);
    cr_assert(strstr(out, "\"state\": \"free\""), "%s", out);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_lock *x;
        CHILD_CHECK(shmkit_lock_attach(&x, name, 0) == 0, 2);
        CHILD_CHECK(shmkit_mutex_lock(shmkit_lock_mutex(x)) == 0, 3);
        _exit(0); /* dies holding it */
    }
    tu_wait_ok(pid);
    show_lock_json(name, out, sizeof out);
    cr_assert(strstr(out, "owner died"), "%s", out);
    cr_assert_eq(shmkit_mutex_lock(shmkit_lock_mutex(l)), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_mutex_unlock(shmkit_lock_mutex(l)), 0);
    show_lock_json(name, out, sizeof out);
    cr_assert(strstr(out, "\"state\": \"not recoverable\""), "%s", out);
    cr_assert_eq(shmkit_lock_unlink(l), 0);
    cr_assert_eq(shmkit_lock_close(l), 0);
}
