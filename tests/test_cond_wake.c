/*
 * test_cond_wake.c - a condition's wake-up is never reported as a timeout.
 *
 * Python's Condition waits in short slices (to see Ctrl-C between them), so
 * a wake-up reported as -ETIMEDOUT is lost: the caller sleeps again. That
 * happened when the woken waiter got the mutex back only after its
 * deadline (the notifier still held it), and CPython's own Condition tests
 * hung. Threads of one process; the notifier holds the mutex past the
 * waiter's deadline by watching the clock, not by sleeping. And a signal
 * wakes one waiter, not two.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "sync/sync_internal.h"
#include "testutil.h"

TestSuite(cond_wake, .init = tu_setup, .fini = tu_cleanup, .timeout = 60);

static struct {
    shmkit_mutex m;
    shmkit_cond c;
    int ready;
    struct timespec deadline;
    int result;
} S;

static void *waiter(void *arg)
{
    (void)arg;
    if (shmkit_mutex_lock(&S.m) != 0)
        return NULL;
    shmkit_deadline(&S.deadline, 0.05);
    S.ready = 1;
    S.result = shmkit_cond_timedwait(&S.c, &S.m, &S.deadline);
    shmkit_mutex_unlock(&S.m);
    return NULL;
}

Test(cond_wake, woken_waiter_late_for_the_mutex_is_not_timed_out)
{
    pthread_t t;
    int k;

    for (k = 0; k < 20; k++) {
        cr_assert_eq(shmkit_mutex_init(&S.m, 0), 0);
        cr_assert_eq(shmkit_cond_init(&S.c), 0);
        S.ready = 0;
        S.result = 12345;
        cr_assert_eq(pthread_create(&t, NULL, waiter, NULL), 0);
        /* Holding the mutex with ready set: the waiter is inside its wait
         * (it released the mutex there). */
        for (;;) {
            cr_assert_eq(shmkit_mutex_lock(&S.m), 0);
            if (S.ready)
                break;
            shmkit_mutex_unlock(&S.m);
            sched_yield();
        }
        cr_assert_eq(shmkit_cond_signal(&S.c), 0);
        while (!tu_reached(&S.deadline))
            ;                           /* keep the mutex past its deadline */
        cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_eq(S.result, 0, "round %d: a signalled waiter reported %d", k,
                     S.result);
    }
}

/* A sleeper's record: its thread id, its wait's answer, and whether it
 * came back from the wait (written under S.m). */
struct sleeper {
    pid_t tid;
    int result;
    int woke;
};

static void *sleeper(void *arg)
{
    struct sleeper *me = arg;

    shmkit_mutex_lock(&S.m);
    me->tid = gettid();
    S.ready++;
    me->result = shmkit_cond_wait(&S.c, &S.m);
    me->woke = 1;
    shmkit_mutex_unlock(&S.m);
    return NULL;
}

/* The condition's registered waiters and unclaimed wake tickets. */
static void cond_counts(uint32_t *waiters, uint32_t *tickets)
{
    const struct shmkit__cond_layout *l = (const void *)&S.c;
    uint64_t t = __atomic_load_n(&l->tickets, __ATOMIC_ACQUIRE);

    *waiters = COND_WAITERS(t);
    *tickets = COND_TICKETS(t);
}

/*
 * A signal wakes exactly one of two waiters. After it, we wait (bounded)
 * for one to come back, then, holding the mutex, show the other cannot:
 * it is still a registered waiter, no wake ticket is left for it (a wait
 * without a deadline returns only with a ticket), and it sleeps in the
 * futex. A broadcast there leaves a ticket for the other, or the other
 * has already taken it (and left the waiters): either fails. Only the
 * second signal lets it return.
 */
Test(cond_wake, signal_wakes_one_of_two)
{
    struct sleeper w[2] = {{0, 1, 0}, {0, 1, 0}};
    pthread_t t[2];
    uint32_t waiters, tickets;
    double end;
    int k, woken;

    cr_assert_eq(shmkit_mutex_init(&S.m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&S.c), 0);
    S.ready = 0;
    for (k = 0; k < 2; k++)
        cr_assert_eq(pthread_create(&t[k], NULL, sleeper, &w[k]), 0);
    for (;;) {
        cr_assert_eq(shmkit_mutex_lock(&S.m), 0);
        if (S.ready == 2)
            break;
        shmkit_mutex_unlock(&S.m);
        sched_yield();
    }
    cond_counts(&waiters, &tickets);
    cr_assert_eq(waiters, 2);
    cr_assert_eq(tickets, 0);
    cr_assert_eq(shmkit_cond_signal(&S.c), 0);
    cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
    /* One comes back (30 s at most). */
    end = tu_now_s() + 30;
    for (;;) {
        cr_assert_eq(shmkit_mutex_lock(&S.m), 0);
        woken = w[0].woke + w[1].woke;
        if (woken > 0)
            break;
        shmkit_mutex_unlock(&S.m);
        cr_assert(tu_now_s() < end, "no waiter came back from the signal");
        sched_yield();
    }
    /* Holding the mutex: the other is registered, has no ticket, sleeps. */
    cr_assert_eq(woken, 1, "one signal woke both waiters");
    k = w[0].woke ? 0 : 1;
    cr_assert_eq(w[k].result, 0);
    cond_counts(&waiters, &tickets);
    cr_assert_eq(waiters, 1, "the other waiter left the wait (woken too)");
    cr_assert_eq(tickets, 0, "a wake ticket is left for the other waiter");
    tu_wait_in_futex(w[1 - k].tid);
    cr_assert_eq(w[1 - k].woke, 0);
    /* The second signal lets it return. */
    cr_assert_eq(shmkit_cond_signal(&S.c), 0);
    cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
    for (k = 0; k < 2; k++)
        cr_assert_eq(pthread_join(t[k], NULL), 0);
    cr_assert_eq(w[0].result, 0);
    cr_assert_eq(w[1].result, 0);
    cr_assert(w[0].woke && w[1].woke);
    cond_counts(&waiters, &tickets);
    cr_assert_eq(waiters, 0);
    cr_assert_eq(tickets, 0);
}
