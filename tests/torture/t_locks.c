/*
 * t_locks.c - SIGKILL lock holders: workers lock a named lock, update
 * shared data, broadcast or signal the condition, some wait on it with a
 * deadline, unlock; the torture program kills one at a random instant,
 * starts a replacement, and checks that every other worker goes on (no
 * hang), that every deadline is honoured, and that owner deaths are
 * reported to a survivor, each at most once and only for a dead process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"
#include "torture.h"

#define WORKERS 4
#define MAX_REPORTS 65536
#define LOCK_NAME "tt_lk"
#define HANG_MS 5000

/* Shared by the workers (an anonymous shared mapping made before fork);
 * every field but beat[] is protected by the named lock. */
struct lockdata {
    uint64_t counter;
    int32_t holder;                /* pid of the holder, 0 between */
    uint32_t nreports;
    int32_t reported[MAX_REPORTS]; /* holder seen at each owner death */
    uint64_t deadline_checks, deadline_misses, errors;
    volatile uint64_t beat[WORKERS]; /* progress of each worker slot */
};

static struct lockdata *D;

static void ts_add_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += (ms % 1000) * 1000000;
    ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000;
    ts->tv_nsec %= 1000000000;
}

static void note_owner_death(shmkit_mutex *m)
{
    if (D->nreports < MAX_REPORTS)
        D->reported[D->nreports] = D->holder;
    D->nreports++;
    if (shmkit_mutex_consistent(m) < 0)
        D->errors++;
}

/* One critical section; slot 0 also waits on the condition. */
static int worker_step(shmkit_lock *l, int slot, uint64_t i)
{
    shmkit_mutex *m = shmkit_lock_mutex(l);
    shmkit_cond *c = shmkit_lock_cond(l);
    struct timespec dl;
    int r;

    ts_add_ms(&dl, HANG_MS);
    r = shmkit_mutex_timedlock(m, &dl);
    if (r == -ETIMEDOUT)
        return 0; /* the watchdog judges progress */
    if (r == SHMKIT_EOWNERDEAD)
        note_owner_death(m);
    else if (r < 0)
        return 3;
    D->holder = getpid();
    D->counter++;
    if (slot == 0 && i % 3 == 0) {
        int64_t t0 = now_ns();
        ts_add_ms(&dl, 20);
        /* The wait lets go of the mutex: a worker that takes it and is
         * killed before marking itself must not be reported as us. */
        D->holder = 0;
        r = shmkit_cond_timedwait(c, m, &dl);
        if (r == SHMKIT_EOWNERDEAD)
            note_owner_death(m);
        else if (r < 0 && r != -ETIMEDOUT)
            return 4;
        D->holder = getpid();
        D->deadline_checks++;
        if (now_ns() - t0 > 20000000 + 500000000) /* deadline + 0.5 s */
            D->deadline_misses++;
    }
    if (i % 7 == 0)
        shmkit_cond_broadcast(c);
    else if (i % 5 == 0)
        shmkit_cond_signal(c);
    D->holder = 0;
    if (shmkit_mutex_unlock(m) < 0)
        return 5;
    return 0;
}

static int worker(void *arg)
{
    int slot = (int)(intptr_t)arg, r;
    shmkit_lock *l;
    uint64_t i;

    if (shmkit_lock_attach(&l, LOCK_NAME, 0) < 0)
        return 2;
    for (i = 1;; i++) {
        r = worker_step(l, slot, i);
        if (r)
            return r;
        D->beat[slot]++;
    }
}

/* True if every slot but `skip` made progress within HANG_MS. */
static bool all_progress(int skip)
{
    uint64_t seen[WORKERS];
    int64_t end = now_ns() + (int64_t)HANG_MS * 1000000;
    int i, moved;

    for (i = 0; i < WORKERS; i++)
        seen[i] = D->beat[i];
    do {
        moved = 0;
        for (i = 0; i < WORKERS; i++)
            moved += i == skip || D->beat[i] != seen[i];
        if (moved == WORKERS)
            return true;
        /* Watching other processes' counters: bounded polling. */
        sleep_ns(200000);
    } while (now_ns() < end);
    return false;
}

static void check_reports(struct row *r, const pid_t *killed, long nkilled)
{
    uint32_t n = D->nreports < MAX_REPORTS ? D->nreports : MAX_REPORTS, i, j;
    long unknown = 0, foreign = 0, twice = 0;

    for (i = 0; i < n; i++) {
        bool found = false;
        long k;
        if (D->reported[i] == 0) {
            unknown++;
            continue;
        }
        for (k = 0; k < nkilled && !found; k++)
            found = killed[k] == D->reported[i];
        if (!found)
            foreign++; /* reported the death of a process we did not kill */
        for (j = 0; j < i; j++)
            if (D->reported[j] == D->reported[i])
                twice++; /* reported twice */
    }
    snprintf(r->note, sizeof r->note,
             "%lu deadline checks, %lu missed; %ld deaths before the holder "
             "mark%s", (unsigned long)D->deadline_checks,
             (unsigned long)D->deadline_misses, unknown,
             foreign + twice + (long)D->errors ? "; WRONG REPORTS" : "");
    if (foreign + twice + (long)D->errors)
        fprintf(stderr,
                "torture: locks: %ld deaths reported of live processes, %ld "
                "reported twice, %lu consistent() errors\n",
                foreign, twice, (unsigned long)D->errors);
    r->bad += foreign + twice + (long)D->deadline_misses + (long)D->errors;
}

static int spawn_workers(pid_t *pid)
{
    int i;

    for (i = 0; i < WORKERS; i++) {
        pid[i] = child_run(worker, (void *)(intptr_t)i);
        if (pid[i] < 0)
            return -1;
    }
    return 0;
}

void attack_locks(void)
{
    struct row *r = row_new("SIGKILL lock holders (mutex+cond+timed)", "lock");
    long target = scaled(300, 5000), n;
    pid_t pid[WORKERS], *killed;
    shmkit_lock *l;
    int i, code;

    D = mmap(NULL, sizeof *D, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    killed = calloc((size_t)target + WORKERS, sizeof *killed);
    if (D == MAP_FAILED || !killed ||
        shmkit_lock_create(&l, LOCK_NAME, 0, 0) < 0) {
        snprintf(r->note, sizeof r->note, "setup failed: %s",
                 shmkit_last_error());
        r->bad++;
        return;
    }
    if (spawn_workers(pid) < 0) {
        r->bad++;
        goto out;
    }
    for (n = 0; n < target; n++) {
        int v = (int)rnd_below(WORKERS);
        enum outcome o;
        /* A random instant: this sleep is the attack, not a handshake. */
        sleep_ns((int64_t)rnd_below(2000000));
        kill(pid[v], SIGKILL);
        o = child_wait(pid[v], HANG_MS, &code);
        r->kills++;
        killed[n] = pid[v];
        if (o != OUT_KILLED) {
            row_count(r, o);
            if (o == OUT_EXIT) {
                fprintf(stderr, "torture: locks: worker exited with %d\n",
                        code);
                r->bad++;
            }
        }
        pid[v] = child_run(worker, (void *)(intptr_t)v);
        if (!all_progress(-1)) {
            r->hangs++;
            fprintf(stderr, "torture: locks: no progress after kill %ld\n", n);
            n++;
            break;
        }
    }
    /* The last workers die too, holding the lock perhaps: the parent's
     * own lock below may report one of them. */
    for (i = 0; i < WORKERS; i++) {
        enum outcome o;
        kill(pid[i], SIGKILL);
        o = child_wait(pid[i], HANG_MS, &code);
        if (o != OUT_KILLED)
            row_count(r, o);
        killed[n++] = pid[i];
    }
    {
        struct timespec dl;
        int rc;
        ts_add_ms(&dl, HANG_MS);
        rc = shmkit_mutex_timedlock(shmkit_lock_mutex(l), &dl);
        if (rc == SHMKIT_EOWNERDEAD)
            note_owner_death(shmkit_lock_mutex(l));
        if (rc == -ETIMEDOUT)
            r->hangs++;
        else if (rc < 0 && rc != SHMKIT_EOWNERDEAD)
            r->bad++;
        else
            shmkit_mutex_unlock(shmkit_lock_mutex(l));
    }
    r->runs = (long)D->counter;
    r->deaths = D->nreports;
    check_reports(r, killed, n);
out:
    shmkit_lock_unlink(l);
    if (shmkit_lock_close(l) < 0)
        r->bad++;
    free(killed);
    munmap(D, sizeof *D);
}
