/*
 * test_lock_hostile.c - locks and conditions against killers and
 * scribblers (issue 11, items 1 and 4).
 *
 *  - A kill loop with conditions: two workers lock, update two fields,
 *    broadcast every 7th round and unlock; a waiter waits on the condition
 *    with short deadlines; any of the three is SIGKILLed at random and
 *    respawned, while the parent broadcasts and locks with a deadline. No
 *    one may hang, every deadline is honoured, torn data is always
 *    reported as an owner death. SHMKIT_LOCK_KILLS sets the number of
 *    kills (default 500; the long run uses 5000).
 *  - Random mutations of a mutex's and a condition's bytes, free or held,
 *    then every operation: each answers a defined code; a child process
 *    does the work, so a crash or a hang (SIGALRM) shows in its status.
 *    SHMKIT_LOCK_MUTATIONS sets the count (default 5000).
 *
 * Children report through their exit status and every status is checked.
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

#include "core/internal.h"
#include "lock_answers.h"
#include "testutil.h"

TestSuite(lock_hostile, .init = tu_setup, .fini = tu_cleanup, .timeout = 300);

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    long v = s ? strtol(s, NULL, 10) : 0;

    return v > 0 ? v : dflt;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

/* ---- the kill loop with conditions ----------------------------------- */

struct condbox {
    shmkit_mutex m;
    shmkit_cond c;
    uint64_t a, b;           /* protected by m */
    uint64_t rounds;         /* protected by m: completed updates */
    uint64_t progress;       /* atomic: rounds + waits, for liveness */
    uint64_t deaths_seen;    /* atomic: EOWNERDEAD received */
    uint64_t repairs;        /* atomic: torn data found and repaired */
    uint64_t waits, timeouts;/* atomic */
    uint64_t late_ns;        /* atomic max: how far past its deadline a
                                timed wait returned */
    uint32_t bad;            /* atomic: first failure code */
};

static void note_bad(struct condbox *k, uint32_t code)
{
    uint32_t zero = 0;

    __atomic_compare_exchange_n(&k->bad, &zero, code, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
}

/* After a lock (or wait) returned r: repair if told, check otherwise. */
static void after_lock(struct condbox *k, int r)
{
    if (r == SHMKIT_EOWNERDEAD) {
        __atomic_fetch_add(&k->deaths_seen, 1, __ATOMIC_SEQ_CST);
        if (k->a != k->b) {
            k->b = k->a;
            __atomic_fetch_add(&k->repairs, 1, __ATOMIC_SEQ_CST);
        }
        if (shmkit_mutex_consistent(&k->m) != 0)
            note_bad(k, 10);
    } else if (r != 0 && r != -ETIMEDOUT) {
        note_bad(k, 11);
    } else if (k->a != k->b) {
        note_bad(k, 12); /* torn data with no owner death told */
    }
}

static void max_store(uint64_t *p, uint64_t v)
{
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

    while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, false,
                                                   __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST))
        ;
}

static void worker(struct condbox *k, unsigned seed)
{
    for (;;) {
        after_lock(k, shmkit_mutex_lock(&k->m));
        k->a++;
        spin(rand_r(&seed) % 300);
        k->b++;
        if (++k->rounds % 7 == 0 && shmkit_cond_broadcast(&k->c) != 0)
            note_bad(k, 13);
        if (shmkit_mutex_unlock(&k->m) != 0)
            note_bad(k, 14);
        __atomic_fetch_add(&k->progress, 1, __ATOMIC_SEQ_CST);
        spin(rand_r(&seed) % 100);
    }
}

static void waiter(struct condbox *k, unsigned seed)
{
    for (;;) {
        struct timespec dl, now;
        uint64_t seen;
        int r;

        after_lock(k, shmkit_mutex_lock(&k->m));
        seen = k->rounds;
        shmkit_deadline(&dl, 0.001 * (1 + rand_r(&seed) % 20));
        r = 0;
        while (k->rounds == seen && r != -ETIMEDOUT) {
            r = shmkit_cond_timedwait(&k->c, &k->m, &dl);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (r == -ETIMEDOUT) {
                int64_t late = (int64_t)(now.tv_sec - dl.tv_sec) * 1000000000 +
                               (now.tv_nsec - dl.tv_nsec);
                if (late > 0)
                    max_store(&k->late_ns, (uint64_t)late);
                __atomic_fetch_add(&k->timeouts, 1, __ATOMIC_SEQ_CST);
            }
            after_lock(k, r);
        }
        __atomic_fetch_add(&k->waits, 1, __ATOMIC_SEQ_CST);
        if (shmkit_mutex_unlock(&k->m) != 0)
            note_bad(k, 15);
        __atomic_fetch_add(&k->progress, 1, __ATOMIC_SEQ_CST);
    }
}

static pid_t spawn(struct condbox *k, int role, unsigned seed)
{
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (role == 2)
            waiter(k, seed);
        worker(k, seed);
    }
    return pid;
}

/* Waits until the others made `more` further steps: a hang fails here. */
static bool wait_progress(struct condbox *k, uint64_t more, double limit)
{
    uint64_t goal = __atomic_load_n(&k->progress, __ATOMIC_SEQ_CST) + more;
    double give_up = tu_now_s() + limit;

    while (__atomic_load_n(&k->progress, __ATOMIC_SEQ_CST) < goal) {
        if (tu_now_s() > give_up)
            return false;
        sched_yield();
    }
    return true;
}

Test(lock_hostile, cond_kill_loop_no_hang)
{
    long kills = env_long("SHMKIT_LOCK_KILLS", 500);
    struct condbox *k;
    shmkit_block *b = tu_make_block("condkill", sizeof *k, (void **)&k);
    unsigned seed = 4242;
    pid_t pid[3];
    long hangs = 0, held_at_kill = 0;
    double t0 = tu_now_s(), parent_late = 0;

    cr_assert_eq(shmkit_mutex_init(&k->m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&k->c), 0);
    for (int i = 0; i < 3; i++)
        pid[i] = spawn(k, i, (unsigned)i * 7919u + 1);
    for (long round = 0; round < kills; round++) {
        int victim = rand_r(&seed) % 3, st, r;
        shmkit_mutex_info info;
        struct timespec dl, now;

        if (!wait_progress(k, 1 + rand_r(&seed) % 6, 30)) {
            hangs++;
            break;
        }
        cr_assert_eq(kill(pid[victim], SIGKILL), 0);
        st = tu_wait_status(pid[victim]);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "round %ld: status %#x", round, st);
        if (shmkit_mutex_inspect(&k->m, &info) == 0 && info.owner_died)
            held_at_kill++;
        /* The parent's part: a broadcast never blocks, a timed lock is
         * back by its deadline (or holds the lock). */
        cr_assert_eq(shmkit_cond_broadcast(&k->c), 0);
        if (round % 5 == 0) {
            shmkit_deadline(&dl, 10);
            r = shmkit_mutex_timedlock(&k->m, &dl);
            clock_gettime(CLOCK_MONOTONIC, &now);
            cr_assert(r == 0 || r == SHMKIT_EOWNERDEAD, "round %ld: %s", round,
                      shmkit_errname(r));
            after_lock(k, r);
            cr_assert_eq(shmkit_mutex_unlock(&k->m), 0);
            if (now.tv_sec > dl.tv_sec)
                parent_late = 1;
        }
        pid[victim] = spawn(k, victim, (unsigned)round * 31u + 7);
    }
    for (int i = 0; i < 3; i++) {
        int st;
        kill(pid[i], SIGKILL);
        st = tu_wait_status(pid[i]);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
    }
    cr_log_info("cond kill loop: %ld kills in %.1f s, %ld hangs, %ld with the "
                "lock held, %lu owner deaths reported, %lu repairs, %lu waits "
                "(%lu timed out), latest timed-wait return %.3f ms past its "
                "deadline",
                kills, tu_now_s() - t0, hangs, held_at_kill,
                (unsigned long)k->deaths_seen, (unsigned long)k->repairs,
                (unsigned long)k->waits, (unsigned long)k->timeouts,
                (double)k->late_ns / 1e6);
    cr_assert_eq(hangs, 0, "no progress for 30 s: a hang");
    cr_assert_eq(k->bad, 0, "a process saw failure code %u", k->bad);
    cr_assert_eq(parent_late, 0, "a 10 s timed lock overran its deadline");
    /* A timed wait may return late by the time it takes to get the mutex
     * back; on this machine that is well under a second. */
    cr_assert_lt(k->late_ns, 1000000000ull, "a timed wait overran by %.3f s",
                 (double)k->late_ns / 1e9);
    cr_assert_gt(k->deaths_seen, 0, "no kill landed inside a critical section");
    cr_assert_gt(k->waits, 0);
    tu_drop_block(b);
}

/* ---- random mutations ------------------------------------------------ */

struct pair {
    shmkit_mutex m;
    shmkit_cond c;
};

static void mutate(unsigned char *p, size_t n, unsigned *seed)
{
    int kinds = 1 + rand_r(seed) % 3;
    uint32_t tid = (uint32_t)gettid();
    static const uint32_t special[] = {
        0, 0xffffffffu, 0x80000000u, 0x40000000u, 0x3fffffffu, 0x7fffffffu,
        0xc0000000u, 1, 2,
    };

    for (int i = 0; i < kinds; i++) {
        size_t at = (size_t)rand_r(seed) % n;
        uint32_t w;

        switch (rand_r(seed) % 4) {
        case 0: /* one byte flipped */
            p[at] ^= (unsigned char)(1 + rand_r(seed) % 255);
            break;
        case 1: /* a 32-bit word set to a special value */
            w = special[rand_r(seed) % (sizeof special / sizeof *special)];
            memcpy(p + (at & ~(size_t)3), &w, 4);
            break;
        case 2: /* a word naming this thread, with random high bits */
            w = tid | ((uint32_t)rand_r(seed) << 30);
            memcpy(p + (at & ~(size_t)3), &w, 4);
            break;
        default: /* 8 random bytes */
            for (int j = 0; j < 8; j++)
                p[((at & ~(size_t)7) + (size_t)j) % n] =
                    (unsigned char)rand_r(seed);
            break;
        }
    }
}

/* Runs `count` mutation rounds; exits 0, or the number of the check that
 * failed (an undefined answer, a lock still recorded at the end). */
static void mutation_child(struct pair *pr, long count, unsigned seed,
                           long *codes)
{
    alarm(240); /* a hang is a SIGALRM death */
    for (long i = 0; i < count; i++) {
        struct timespec dl;
        int r, held = rand_r(&seed) % 3;

        CHILD_CHECK(shmkit_mutex_init(&pr->m, rand_r(&seed) % 2
                                                  ? SHMKIT_MUTEX_RECURSIVE
                                                  : 0) == 0, 2);
        CHILD_CHECK(shmkit_cond_init(&pr->c) == 0, 3);
        if (held)
            CHILD_CHECK(shmkit_mutex_lock(&pr->m) == 0, 4);
        mutate((unsigned char *)pr, sizeof *pr, &seed);
        for (int op = 0; op < 8; op++) {
            shmkit_mutex_info info;
            switch (rand_r(&seed) % 10) {
            case 0:
                r = shmkit_mutex_trylock(&pr->m);
                break;
            case 1:
                shmkit_deadline(&dl, 0.002);
                r = shmkit_mutex_timedlock(&pr->m, &dl);
                break;
            case 2:
                r = shmkit_mutex_unlock(&pr->m);
                break;
            case 3:
                r = shmkit_mutex_consistent(&pr->m);
                break;
            case 4:
                shmkit_deadline(&dl, 0.002);
                r = shmkit_cond_timedwait(&pr->c, &pr->m, &dl);
                break;
            case 5:
                r = rand_r(&seed) % 2 ? shmkit_cond_signal(&pr->c)
                                      : shmkit_cond_broadcast(&pr->c);
                break;
            case 6:
                r = shmkit_mutex_inspect(&pr->m, &info);
                break;
            case 7:
                r = (int)shmkit_mutex_held(&pr->m) > 0;
                break;
            case 8:
                /* Rarely, a long wait: past the owner probe, so a word
                 * naming a thread that does not exist is taken as an owner
                 * death. (Not an untimed lock: a word naming a live thread,
                 * such as 1, is a lock that thread holds, and waits.) */
                shmkit_deadline(&dl, 0.3);
                r = rand_r(&seed) % 16 == 0 ? shmkit_mutex_timedlock(&pr->m, &dl)
                                            : shmkit_mutex_trylock(&pr->m);
                break;
            default:
                r = rand_r(&seed) % 2 ? shmkit_mutex_destroy(&pr->m)
                                      : shmkit_cond_destroy(&pr->c);
                break;
            }
            if (r != 1 && !lock_answer_defined(r))
                _exit(5);
            codes[r == 0 ? 0 : r == SHMKIT_ECORRUPT ? 1 : 2]++;
        }
        /* Leave nothing held: unlock until the record says free. */
        for (int j = 0; j < 64 && shmkit_mutex_held(&pr->m); j++)
            shmkit_mutex_unlock(&pr->m);
        CHILD_CHECK(shmkit_mutex_held(&pr->m) == 0, 6);
    }
    _exit(0);
}

Test(lock_hostile, random_mutations_defined_outcomes)
{
    long count = env_long("SHMKIT_LOCK_MUTATIONS", 5000);
    struct pair *pr;
    shmkit_block *b = tu_make_block("mutate", sizeof *pr + 4096, (void **)&pr);
    long *codes;
    shmkit_block *cb = tu_make_block("mutcodes", 4096, (void **)&codes);
    double t0 = tu_now_s();
    pid_t pid;
    int st;

    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        mutation_child(pr, count, 777, codes);
    st = tu_wait_status(pid);
    cr_log_info("%ld mutation rounds (8 calls each) in %.1f s: %ld calls "
                "answered 0, %ld SHMKIT_ECORRUPT, %ld another defined code; "
                "child status %#x", count, tu_now_s() - t0, codes[0], codes[1],
                codes[2], st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child status %#x (signal %d: a crash, or SIGALRM: a hang)", st,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    tu_drop_block(cb);
    tu_drop_block(b);
}

/* A mutex held by this thread whose list pointers a peer overwrote: the
 * unlock says SHMKIT_ECORRUPT, releases it, and the thread's other locks
 * still reach the kernel's owner-death walk (checked by dying). */
Test(lock_hostile, held_list_pointers_overwritten)
{
    struct pair *pr;
    shmkit_block *b = tu_make_block("listptr", sizeof *pr * 3, (void **)&pr);
    pid_t pid;
    int st;

    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmkit_mutex_init(&pr[i].m, 0), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        uint64_t junk = 0x00007ff0deadbee0ull;
        CHILD_CHECK(shmkit_mutex_lock(&pr[0].m) == 0, 2);
        CHILD_CHECK(shmkit_mutex_lock(&pr[1].m) == 0, 3);
        CHILD_CHECK(shmkit_mutex_lock(&pr[2].m) == 0, 4);
        /* prev and next of the middle one (offsets 40 and 48) */
        memcpy((char *)&pr[1].m + 40, &junk, 8);
        memcpy((char *)&pr[1].m + 48, &junk, 8);
        CHILD_CHECK(shmkit_mutex_unlock(&pr[1].m) == SHMKIT_ECORRUPT, 5);
        CHILD_CHECK(shmkit_mutex_held(&pr[1].m) == 0, 6);
        _exit(0); /* dies holding pr[0] and pr[2] */
    }
    st = tu_wait_status(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
    cr_assert_eq(shmkit_mutex_trylock(&pr[1].m), 0, "released");
    cr_assert_eq(shmkit_mutex_unlock(&pr[1].m), 0);
    cr_assert_eq(shmkit_mutex_trylock(&pr[0].m), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_mutex_consistent(&pr[0].m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&pr[0].m), 0);
    cr_assert_eq(shmkit_mutex_trylock(&pr[2].m), SHMKIT_EOWNERDEAD);
    cr_assert_eq(shmkit_mutex_consistent(&pr[2].m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&pr[2].m), 0);
    tu_drop_block(b);
}

/* The word names a thread that does not exist (overwritten, or lost from
 * every robust list): a blocking lock takes it as an owner death instead
 * of waiting forever. */
Test(lock_hostile, word_naming_no_thread_is_owner_death)
{
    struct pair *pr;
    shmkit_block *b = tu_make_block("ghost", sizeof *pr, (void **)&pr);
    uint32_t ghost = 0x3ffffffe; /* above any pid_max */
    double t0;

    cr_assert_eq(shmkit_mutex_init(&pr->m, 0), 0);
    memcpy((char *)&pr->m + 16, &ghost, 4);
    cr_assert_eq(shmkit_mutex_trylock(&pr->m), -EBUSY);
    t0 = tu_now_s();
    cr_assert_eq(shmkit_mutex_lock(&pr->m), SHMKIT_EOWNERDEAD);
    cr_assert_lt(tu_now_s() - t0, 5.0);
    cr_assert_eq(shmkit_mutex_consistent(&pr->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&pr->m), 0);
    cr_assert_eq(shmkit_mutex_trylock(&pr->m), 0);
    cr_assert_eq(shmkit_mutex_unlock(&pr->m), 0);
    tu_drop_block(b);
}

/* ---- a signal sent while a timed-out waiter takes the mutex back ------ */

struct late_signal {
    shmkit_mutex m;
    shmkit_cond c;
    struct timespec deadline;
    int result;
    int waiting; /* atomic: the waiter is inside the wait */
};

static void *late_waiter(void *p)
{
    struct late_signal *ls = p;

    if (shmkit_mutex_lock(&ls->m) != 0) {
        ls->result = 1000;
        return NULL;
    }
    shmkit_deadline(&ls->deadline, 0.05);
    __atomic_store_n(&ls->waiting, 1, __ATOMIC_SEQ_CST);
    ls->result = shmkit_cond_timedwait(&ls->c, &ls->m, &ls->deadline);
    shmkit_mutex_unlock(&ls->m);
    return NULL;
}

/* The waiter's sleep ends at its deadline while the signaller holds the
 * mutex; the signaller then signals and unlocks. The signal came before
 * the wait returned: it must count (0), or a caller that waits again in a
 * loop (Python's sliced waits) loses it for good. */
Test(lock_hostile, signal_during_timed_out_reacquire_counts)
{
    struct late_signal *ls;
    shmkit_block *b = tu_make_block("latesig", sizeof *ls, (void **)&ls);
    const struct shmkit__mutex_layout *lay = (const void *)&ls->m;
    pthread_t t;
    struct timespec now;

    cr_assert_eq(shmkit_mutex_init(&ls->m, 0), 0);
    cr_assert_eq(shmkit_cond_init(&ls->c), 0);
    cr_assert_eq(pthread_create(&t, NULL, late_waiter, ls), 0);
    while (!__atomic_load_n(&ls->waiting, __ATOMIC_SEQ_CST))
        sched_yield();
    cr_assert_eq(shmkit_mutex_lock(&ls->m), 0); /* the waiter released it */
    /* Hold it until the waiter's sleep has timed out and it waits for the
     * mutex (it sets WAITERS in the word before it sleeps on it). */
    do {
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (!(__atomic_load_n(&lay->word, __ATOMIC_SEQ_CST) &
               SHMKIT__FUTEX_WAITERS));
    cr_assert(now.tv_sec > ls->deadline.tv_sec ||
              (now.tv_sec == ls->deadline.tv_sec &&
               now.tv_nsec >= ls->deadline.tv_nsec));
    cr_assert_eq(shmkit_cond_signal(&ls->c), 0);
    cr_assert_eq(shmkit_mutex_unlock(&ls->m), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(ls->result, 0, "the signal was lost: %s",
                 shmkit_errname(ls->result));
    tu_drop_block(b);
}
