/*
 * test_cond_wake.c - a condition's wake-up is never reported as a timeout.
 *
 * Python's Condition waits in short slices (to see Ctrl-C between them), so
 * a wake-up reported as -ETIMEDOUT is lost: the caller sleeps again. That
 * happened when the woken waiter got the mutex back only after its
 * deadline (the notifier still held it), and CPython's own Condition tests
 * hung. Threads of one process; the notifier holds the mutex past the
 * waiter's deadline by watching the clock, not by sleeping.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

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

static bool passed(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec ||
           (now.tv_sec == t->tv_sec && now.tv_nsec > t->tv_nsec);
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
        while (!passed(&S.deadline))
            ;                           /* keep the mutex past its deadline */
        cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_eq(S.result, 0, "round %d: a signalled waiter reported %d", k,
                     S.result);
    }
}

static void *sleeper(void *arg)
{
    int *r = arg;

    shmkit_mutex_lock(&S.m);
    S.ready++;
    *r = shmkit_cond_wait(&S.c, &S.m);
    shmkit_mutex_unlock(&S.m);
    return NULL;
}

Test(cond_wake, signal_wakes_one_of_two)
{
    pthread_t t[2];
    int r[2] = {1, 1}, k;

    cr_assert_eq(shmkit_mutex_init(&S.m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&S.c), 0);
    S.ready = 0;
    for (k = 0; k < 2; k++)
        cr_assert_eq(pthread_create(&t[k], NULL, sleeper, &r[k]), 0);
    for (;;) {
        cr_assert_eq(shmkit_mutex_lock(&S.m), 0);
        if (S.ready == 2)
            break;
        shmkit_mutex_unlock(&S.m);
        sched_yield();
    }
    cr_assert_eq(shmkit_cond_signal(&S.c), 0);
    cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
    /* One wakes; the other needs the second signal. */
    cr_assert_eq(shmkit_mutex_lock(&S.m), 0);
    cr_assert_eq(shmkit_cond_signal(&S.c), 0);
    cr_assert_eq(shmkit_mutex_unlock(&S.m), 0);
    for (k = 0; k < 2; k++)
        cr_assert_eq(pthread_join(t[k], NULL), 0);
    cr_assert_eq(r[0], 0);
    cr_assert_eq(r[1], 0);
}
