/*
 * test_queue_owners.c - a live owner's loan or reservation is never
 * reaped: not when this process cannot read /proc (out of descriptors),
 * not when the owner's main thread has exited while its other threads
 * run (its thread-group leader is a zombie). Only a process known to be
 * gone gives its records back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/os.h"
#include "objects/queue_internal.h"
#include "queue_hdr.h"
#include "testutil.h"

TestSuite(queue_owners, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

static shmkit_queue *q;
static int chan[2]; /* socketpair: [0] the parent's end, [1] the child's */

/* In the child: peeks "LOANED", says 'x', waits for the word, then says
 * 'k' if the loan still reads "LOANED" ('X' if not) and releases it. */
static void *holder(void *arg)
{
    const void *p;
    size_t len;
    char c;

    (void)arg;
    CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 3);
    CHILD_CHECK(write(chan[1], "x", 1) == 1, 4);
    CHILD_CHECK(read(chan[1], &c, 1) == 1, 5);
    c = len == 6 && memcmp(p, "LOANED", 6) == 0 ? 'k' : 'X';
    CHILD_CHECK(write(chan[1], &c, 1) == 1, 6);
    CHILD_CHECK(shmkit_queue_release(q, p) == 0, 7);
    _exit(0);
}

/* A child whose second thread loans "LOANED"; with `leader_exits`, the
 * child's main thread calls pthread_exit meanwhile. */
static pid_t loan_in_child(bool leader_exits)
{
    pid_t pid;

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, chan), 0);
    cr_assert_eq(shmkit_queue_put(q, "LOANED", 6, NULL), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        pthread_t t;

        close(chan[0]); /* the parent's death is EOF on chan[1] */
        CHILD_CHECK(pthread_create(&t, NULL, holder, NULL) == 0, 2);
        if (leader_exits)
            pthread_exit(NULL);
        pthread_join(t, NULL);
        _exit(8);
    }
    return pid;
}

/* The parent: the loan is still the child's, its message intact. */
static void expect_loan_kept(pid_t pid)
{
    char c, buf[16];
    size_t len;
    int st;

    cr_assert_eq(shmkit_queue_put(q, "CLOBBER", 7, NULL), 0);
    cr_assert_eq(write(chan[0], "g", 1), 1);
    cr_assert_eq(read(chan[0], &c, 1), 1);
    cr_assert_eq(c, 'k', "the child's loan changed under it");
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    /* released: the next message is the parent's own */
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0);
    cr_assert_eq(len, 7);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT),
                 -EAGAIN);
    close(chan[0]);
    close(chan[1]);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* This process out of descriptors: /proc/PID/stat cannot be opened
 * (EMFILE), which says nothing about the owner: it is alive. Guards the
 * rule (fails when owner_alive takes -EMFILE for "gone": "a live owner's
 * loan reaped"); it does not guard the uninitialised start time that
 * df2ab55 fixed (what the stack held decided that one): the EACCES test
 * below, which leaves rubbish in *start, does. */
Test(queue_owners, no_descriptor_left_reaps_nothing)
{
    struct rlimit old, rl;
    char c, buf[16];
    size_t len;
    int fd, lo = -1, hi = -1, r;
    pid_t pid;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("ef"), 4096, 0, 0), 0);
    pid = loan_in_child(false);
    cr_assert_eq(read(chan[0], &c, 1), 1);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
        if (lo < 0)
            lo = fd;
        hi = fd;
        if (fd > 4096)
            break;
    }
    cr_assert_geq(hi, 0);
    rl = old;
    rl.rlim_cur = (rlim_t)hi + 1;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_lt(open("/dev/null", O_RDONLY), 0);
    r = shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    for (fd = lo; fd <= hi; fd++)
        if (fd != chan[0] && fd != chan[1])
            close(fd);
    cr_assert_eq(r, -EAGAIN, "get(NOWAIT) = %d: a live owner's loan reaped", r);
    expect_loan_kept(pid);
}

/* A /proc that answers neither a start time nor "gone" (EACCES, as
 * hidepid=1 gives for another user's process), leaving rubbish in *start:
 * the owner is alive. Deterministic where the real EMFILE above depends
 * on what the stack held. */
static pid_t unreadable_pid;
static int (*real_proc_start)(pid_t, uint64_t *);

static int eacces_proc_start(pid_t pid, uint64_t *start)
{
    if (pid != unreadable_pid)
        return real_proc_start(pid, start);
    *start = 0x5eed5eedu;
    return -EACCES;
}

Test(queue_owners, unreadable_proc_reaps_nothing)
{
    char c, buf[16];
    size_t len;
    int r;
    pid_t pid;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("ea"), 4096, 0, 0), 0);
    pid = loan_in_child(false);
    cr_assert_eq(read(chan[0], &c, 1), 1);
    real_proc_start = shmkit__os.proc_start;
    unreadable_pid = pid;
    shmkit__os.proc_start = eacces_proc_start;
    r = shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT);
    shmkit__os.proc_start = real_proc_start;
    cr_assert_eq(r, -EAGAIN, "get(NOWAIT) = %d: a live owner's loan reaped", r);
    expect_loan_kept(pid);
}

/* No /proc (a sandbox without it): this process's own start time cannot
 * be read. The queue still works, and tries the read again only now and
 * then (every 100 ms), not at every call: each try is a getpid, a failed
 * open and a kill, several per put+get pair (~30 us a pair, review s20
 * finding 3). The child counts its own reads over 1,000 pairs. */
static unsigned own_reads;

static int no_proc_start(pid_t pid, uint64_t *start)
{
    if (pid == getpid()) {
        own_reads++;
        return -EACCES; /* what linux_proc_start answers without /proc */
    }
    return real_proc_start(pid, start);
}

Test(queue_owners, without_proc_the_own_start_is_read_seldom)
{
    char buf[16];
    size_t len;
    int st, i;
    pid_t pid;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("np"), 65536, 0, 0), 0);
    real_proc_start = shmkit__os.proc_start;
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* fork made this process forget its start time */
        shmkit__os.proc_start = no_proc_start;
        for (i = 0; i < 1000; i++)
            if (shmkit_queue_put(q, "12345678", 8, SHMKIT_NOWAIT) ||
                shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT))
                _exit(100);
        _exit(own_reads < 100 ? (int)own_reads : 99);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 100, "status 0x%x", st);
    /* 1 read, a few if the loop outlasted 100 ms (a loaded machine, ASan) */
    cr_assert(WEXITSTATUS(st) >= 1 && WEXITSTATUS(st) <= 10,
              "%d reads of its own start time for 1,000 put+get pairs",
              WEXITSTATUS(st));
}

/* The state letter of /proc/PID/stat ('?' if unreadable). */
static char proc_state(pid_t pid)
{
    char path[64], buf[512], *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* The child's main thread has exited (its leader shows 'Z'), its second
 * thread holds the loan: the process is alive. */
Test(queue_owners, zombie_leader_with_live_threads_reaps_nothing)
{
    char c, buf[16];
    size_t len;
    int r;
    pid_t pid;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("zl"), 4096, 0, 0), 0);
    pid = loan_in_child(true);
    cr_assert_eq(read(chan[0], &c, 1), 1);
    while (proc_state(pid) != 'Z') /* the leader's exit, not a timer */
        sched_yield();
    r = shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT);
    cr_assert_eq(r, -EAGAIN, "get(NOWAIT) = %d: a live owner's loan reaped", r);
    expect_loan_kept(pid);
}

/* A child loans "LOANED" and exits; left a zombie not yet waited for, it
 * is gone and the loan must come back to a NOWAIT get. With `no_pidfd`,
 * this test process is first forbidden pidfd_open by a seccomp filter. */
/* From now on this test process is refused pidfd_open (EPERM), as a
 * sandbox's seccomp profile that does not list it answers. */
static void deny_pidfd_open(pid_t pid)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};

    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    cr_assert_eq(syscall(SYS_pidfd_open, pid, 0), -1);
    cr_assert_eq(errno, EPERM);
}

static void zombie_loan_given_back(const char *tag, bool no_pidfd)
{
    char buf[16];
    size_t len;
    pid_t pid;
    int st;
    siginfo_t si;

    cr_assert_eq(shmkit_queue_create(&q, tu_name(tag), 4096, 0, 0), 0);
    cr_assert_eq(shmkit_queue_put(q, "LOANED", 6, NULL), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const void *p;

        CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 3);
        _exit(0);
    }
    /* wait for the exit but leave the zombie (WNOWAIT) */
    cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    cr_assert_eq(proc_state(pid), 'Z');
    if (no_pidfd)
        deny_pidfd_open(pid);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0,
                 "the zombie's loan was not given back%s",
                 no_pidfd ? " without pidfd_open" : "");
    cr_assert_eq(len, 6);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* The other half of the rule: a process whose threads have all exited,
 * a zombie not yet waited for, is gone and its loan comes back. */
Test(queue_owners, zombie_process_loan_given_back)
{
    zombie_loan_given_back("zp", false);
}

/* The same where a sandbox refuses pidfd_open (EPERM, as a seccomp filter
 * that does not list it answers): the zombie is still known gone, from
 * /proc/PID/status, and its loan comes back (it was "cannot tell", so
 * alive for ever, and a waiter behind it hung). */
Test(queue_owners, zombie_loan_given_back_without_pidfd)
{
    zombie_loan_given_back("zs", true);
}

/* The longest sleep a futex_wait with a deadline was asked for, in s. */
static double longest_wait;
static int (*real_futex_wait)(uint32_t *, uint32_t, const struct timespec *);

static int timed_futex_wait(uint32_t *addr, uint32_t val,
                            const struct timespec *deadline)
{
    struct timespec now;
    double left;

    if (deadline) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = (double)(deadline->tv_sec - now.tv_sec) +
               (double)(deadline->tv_nsec - now.tv_nsec) / 1e9;
        if (left > longest_wait)
            longest_wait = left;
    }
    return real_futex_wait(addr, val, deadline);
}

static pid_t victim;
static struct timespec killed_at;

/* Kills the victim once a consumer sleeps in q. */
static void *kill_when_waited(void *arg)
{
    shmkit_queue_info in;

    (void)arg;
    do {
        if (shmkit_queue_stat(q, &in) != 0)
            return (void *)1;
        sched_yield();
    } while (in.waiting_consumers < 1);
    clock_gettime(CLOCK_MONOTONIC, &killed_at);
    return kill(victim, SIGKILL) == 0 ? NULL : (void *)2;
}

/* A sandbox refuses pidfd_open: a consumer blocked behind a producer's
 * reservation, woken by the producer's death (its liveness slot), cannot
 * wait on a pidfd for the process to be gone. It re-checks in short
 * slices (1 ms doubling), not one sleep of the whole 0.5 s cap (review
 * finding 6); the producer is its own child, a zombie until the get
 * returns, known gone from /proc/PID/status (finding 4b: the get hung). */
Test(queue_owners, death_without_pidfd_rechecks_in_slices)
{
    struct timespec d, back;
    char c, buf[16];
    size_t len;
    void *w;
    pthread_t t;
    void *tr;
    int r, st;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("ds"), 4096, 0, 0), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, chan), 0);
    victim = fork();
    cr_assert_geq(victim, 0);
    if (victim == 0) {
        close(chan[0]);
        CHILD_CHECK(shmkit_queue_reserve(q, 100, &w, NULL) == 0, 3);
        CHILD_CHECK(shmkit_queue_put(q, "after", 5, NULL) == 0, 4);
        CHILD_CHECK(write(chan[1], "x", 1) == 1, 5);
        CHILD_CHECK(read(chan[1], &c, 1) == 0, 6); /* until killed */
        _exit(0);
    }
    cr_assert_eq(read(chan[0], &c, 1), 1);
    deny_pidfd_open(victim);
    real_futex_wait = shmkit__os.futex_wait;
    shmkit__os.futex_wait = timed_futex_wait;
    cr_assert_eq(pthread_create(&t, NULL, kill_when_waited, NULL), 0);
    shmkit_deadline(&d, 30);
    r = shmkit_queue_get(q, buf, sizeof buf, &len, &d);
    clock_gettime(CLOCK_MONOTONIC, &back);
    shmkit__os_reset();
    cr_assert_eq(pthread_join(t, &tr), 0);
    cr_assert_null(tr, "the killer thread failed (%p)", tr);
    cr_assert_eq(r, 0, "get = %d (%s)", r, shmkit_last_error());
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    cr_log_info("kill to return: %.1f ms, longest slice %.1f ms",
                ((double)(back.tv_sec - killed_at.tv_sec) +
                 (double)(back.tv_nsec - killed_at.tv_nsec) / 1e9) * 1e3,
                longest_wait * 1e3);
    cr_assert_lt(longest_wait, 0.2,
                 "a wait of %.3f s for a dead owner (slices end at 0.1 s)",
                 longest_wait);
    cr_assert_eq(waitpid(victim, &st, 0), victim);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status 0x%x", st);
    close(chan[0]);
    close(chan[1]);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* A peer that gives back (TAKEN -> READY) every loan it sees, as a
 * reaper that wrongly judged this process dead would: it scans the ring's
 * 16-byte record positions (the messages are zeros, never 'T'). */
struct flipper {
    unsigned char *ring;
    size_t rs;
    unsigned flips;
    bool busy; /* set from before a give-back to after it is counted */
    bool stop;
};

static void *flip_loans(void *arg)
{
    struct flipper *f = arg;
    size_t off;

    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
        for (off = 0; off < f->rs; off += 16) {
            uint32_t *st = (uint32_t *)(f->ring + off + 4), t = 0x54u;

            if (__atomic_load_n(st, __ATOMIC_RELAXED) != t)
                continue;
            __atomic_store_n(&f->busy, true, __ATOMIC_SEQ_CST);
            if (__atomic_compare_exchange_n(st, &t, 0x59u, false,
                                            __ATOMIC_SEQ_CST,
                                            __ATOMIC_RELAXED))
                __atomic_add_fetch(&f->flips, 1, __ATOMIC_SEQ_CST);
            __atomic_store_n(&f->busy, false, __ATOMIC_SEQ_CST);
        }
    return NULL;
}

/* get copies a message bigger than what it copies under the mutex (16
 * KiB) out after the unlock, then frees its record without the mutex: a
 * record given back while the copy ran stays READY (the get fails with
 * SHMKIT_ECORRUPT and the message is delivered again), never DONE under
 * a get that says it delivered it. Each get that a flip landed in must
 * fail; the peer's timing is the scheduler's, so the test runs until a
 * few flips landed (or skips if none did in 20 s). */
Test(queue_owners, get_never_frees_a_record_given_back_meanwhile)
{
    static unsigned char msg[20000], buf[20000];
    struct flipper f = {0};
    struct timespec end, now;
    unsigned before, landed = 0, bad = 0;
    uint64_t ring_off;
    size_t len;
    pthread_t t;
    int r;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("fl"), 65536, 0, 0), 0);
    f.ring = shmkit_block_data(shmkit_queue_block(q));
    memcpy(&ring_off, f.ring + 16, 8);
    memcpy(&f.rs, f.ring + 24, 8);
    f.ring += ring_off;
    cr_assert_eq(pthread_create(&t, NULL, flip_loans, &f), 0);
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 20;
    while (landed < 20) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec)
            break;
        cr_assert_eq(shmkit_queue_put(q, msg, sizeof msg, NULL), 0);
        /* Records are TAKEN only inside a get: a give-back that succeeds
         * lands inside one, and is counted once `busy` is false. */
        do {
            while (__atomic_load_n(&f.busy, __ATOMIC_SEQ_CST))
                sched_yield();
            before = __atomic_load_n(&f.flips, __ATOMIC_SEQ_CST);
            r = shmkit_queue_get(q, buf, sizeof buf, &len, NULL);
            while (__atomic_load_n(&f.busy, __ATOMIC_SEQ_CST))
                sched_yield();
            if (__atomic_load_n(&f.flips, __ATOMIC_SEQ_CST) != before) {
                landed++;
                bad += r == 0;
            } else {
                cr_assert_eq(r, 0, "%s", shmkit_last_error());
            }
        } while (r);
    }
    __atomic_store_n(&f.stop, true, __ATOMIC_RELEASE);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(bad, 0, "%u of %u gets freed a record given back under them",
                 bad, landed);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
    if (!landed)
        cr_skip_test("no give-back landed during a get in 20 s");
}

/* A loan a peer gave back meanwhile (a reaper's TAKEN -> READY: the
 * record header precedes the message, its state at offset 4) is no longer
 * this process's: release is -EINVAL and the message stays READY for the
 * next consumer, not DONE (lost). */
Test(queue_owners, release_never_overwrites_a_given_back_loan)
{
    const void *p;
    char buf[16];
    size_t len;
    uint32_t *state;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("rl"), 4096, 0, 0), 0);
    cr_assert_eq(shmkit_queue_put(q, "LOANED", 6, NULL), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    state = (uint32_t *)((const unsigned char *)p - SHMKIT_QUEUE_RECORD + 4);
    cr_assert_eq(*state, 0x54u); /* TAKEN */
    __atomic_store_n(state, 0x59u, __ATOMIC_SEQ_CST); /* READY: reaped */
    cr_assert_eq(shmkit_queue_release(q, p), -EINVAL);
    cr_assert_eq(*state, 0x59u);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0);
    cr_assert_eq(len, 6);
    cr_assert_eq(memcmp(buf, "LOANED", 6), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

static int waitv_eperm(uint32_t *const *addrs, const uint32_t *vals, int n,
                       const struct timespec *deadline)
{
    (void)addrs, (void)vals, (void)n, (void)deadline;
    return -EPERM;
}

/* A sandbox that refuses futex_waitv (a seccomp filter's EPERM) makes the
 * handle wait in slices, as without the call: a get behind a live
 * producer's reservation waits for its deadline, it does not fail. */
Test(queue_owners, futex_waitv_refused_falls_back_to_slices)
{
    struct timespec d;
    char c, buf[16];
    size_t len;
    pid_t pid;
    int r, st;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("wp"), 4096, 0, 0), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, chan), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        void *w;

        close(chan[0]);
        CHILD_CHECK(shmkit_queue_reserve(q, 100, &w, NULL) == 0, 3);
        CHILD_CHECK(shmkit_queue_put(q, "after", 5, NULL) == 0, 4);
        CHILD_CHECK(write(chan[1], "x", 1) == 1, 5);
        CHILD_CHECK(read(chan[1], &c, 1) == 0, 6); /* until the parent ends */
        _exit(0);
    }
    cr_assert_eq(read(chan[0], &c, 1), 1);
    shmkit__os.futex_waitv = waitv_eperm;
    shmkit_deadline(&d, 0.3);
    r = shmkit_queue_get(q, buf, sizeof buf, &len, &d);
    shmkit__os_reset();
    cr_assert_eq(r, -ETIMEDOUT, "get = %d (%s)", r, shmkit_last_error());
    close(chan[0]);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    close(chan[1]);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* A queue of layout version 1 (the previous library's, which refuses
 * version 2): the header rewritten as version_1_queue_works_with_slices
 * does, then attached again. */
static shmkit_queue *v1_queue(const char *tag)
{
    shmkit_queue *a;
    shmkit_queue_info in;

    cr_assert_eq(queue_make_v1(tu_name(tag), &a), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_queue_stat(a, &in), 0);
    cr_assert_eq(in.version, 1);
    return a;
}

/* The previous library's producer decides "full" from head and tail
 * without moving head past released records: in a version-1 queue, get
 * and release leave head past what they freed (head at 128, tail at 136
 * of the header), and wake the producers. */
Test(queue_owners, version_1_release_moves_head)
{
    const void *p;
    char buf[16];
    size_t len;

    q = v1_queue("v1r");
    cr_assert_eq(shmkit_queue_put(q, "one", 3, NULL), 0);
    cr_assert_eq(shmkit_queue_put(q, "two", 3, NULL), 0);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(queue_hdr64(q, 128), 32, "get left head at %llu",
                 (unsigned long long)queue_hdr64(q, 128));
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    cr_assert_eq(queue_hdr64(q, 128), queue_hdr64(q, 136),
                 "release left head at %llu",
                 (unsigned long long)queue_hdr64(q, 128));
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* A record freed without the mutex (as this library's releases did in a
 * version-1 queue until now) is passed by the next get's head_advance,
 * which then wakes the producers (space_seq, at 196, moves). */
Test(queue_owners, version_1_head_advance_wakes_producers)
{
    const void *p;
    uint32_t *state, seq;
    unsigned char *h;

    q = v1_queue("v1w");
    h = shmkit_block_data(shmkit_queue_block(q));
    cr_assert_eq(shmkit_queue_put(q, "one", 3, NULL), 0);
    cr_assert_eq(shmkit_queue_put(q, "two", 3, NULL), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &(size_t){0}, NULL), 0);
    state = (uint32_t *)((const unsigned char *)p - SHMKIT_QUEUE_RECORD + 4);
    __atomic_store_n(state, 0x44u, __ATOMIC_SEQ_CST); /* DONE, head not moved */
    memcpy(&seq, h + 196, 4);
    cr_assert_eq(shmkit_queue_peek(q, &p, &(size_t){0}, NULL), 0);
    cr_assert_neq(*(volatile uint32_t *)(h + 196), seq,
                  "head moved and space_seq did not");
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* A consumer that gathers loans gets as many as the ring holds, whatever
 * came before: 8 loaned and released, then a 9th loaned (head in the
 * middle of the ring), then puts and loans until a put finds the ring
 * full: 16 records of 4 KiB fill the 64 KiB ring, so 16 loans (an early
 * wrap past the 9th loan left 9). */
Test(queue_owners, loans_held_get_the_whole_ring)
{
    static unsigned char m[4096 - SHMKIT_QUEUE_RECORD];
    const void *loan[32];
    size_t len;
    int i, held;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("wl"), 65536, 0, 0), 0);
    for (i = 0; i < 8; i++) {
        cr_assert_eq(shmkit_queue_put(q, m, sizeof m, SHMKIT_NOWAIT), 0);
        cr_assert_eq(shmkit_queue_peek(q, &loan[i], &len, SHMKIT_NOWAIT), 0);
    }
    cr_assert_eq(shmkit_queue_put(q, m, sizeof m, SHMKIT_NOWAIT), 0);
    for (i = 0; i < 8; i++)
        cr_assert_eq(shmkit_queue_release(q, loan[i]), 0);
    cr_assert_eq(shmkit_queue_peek(q, &loan[0], &len, SHMKIT_NOWAIT), 0);
    for (held = 1; held < 32; held++) {
        if (shmkit_queue_put(q, m, sizeof m, SHMKIT_NOWAIT))
            break;
        cr_assert_eq(shmkit_queue_peek(q, &loan[held], &len, SHMKIT_NOWAIT),
                     0);
    }
    cr_assert_eq(held, 16, "loans held when a put found the ring full: %d",
                 held);
    for (i = 0; i < held; i++)
        cr_assert_eq(shmkit_queue_release(q, loan[i]), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* A producer that gathers reservations gets as many as the ring holds,
 * whatever came before: 8 put, a 9th reserved, the 8 taken (head at the
 * reservation, in the middle of the ring), then reservations until one
 * finds the ring full: 16 records of 4 KiB fill the 64 KiB ring, so 15
 * held and the 16th succeeds (an early wrap past the reservation left the
 * room before it: 9, and a producer waiting for its 10th waited for ever
 * on itself). */
Test(queue_owners, reservations_held_get_the_whole_ring)
{
    static unsigned char m[4096 - SHMKIT_QUEUE_RECORD];
    unsigned char buf[4096];
    void *resv[32];
    size_t len;
    int i, held;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("wr"), 65536, 0, 0), 0);
    for (i = 0; i < 8; i++)
        cr_assert_eq(shmkit_queue_put(q, m, sizeof m, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_reserve(q, sizeof m, &resv[0], SHMKIT_NOWAIT),
                 0);
    for (i = 0; i < 8; i++)
        cr_assert_eq(
            shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0);
    for (held = 1; held < 32; held++)
        if (shmkit_queue_reserve(q, sizeof m, &resv[held], SHMKIT_NOWAIT))
            break;
    cr_assert_eq(held, 16,
                 "reservations held when reserve found the ring full: %d",
                 held);
    for (i = 0; i < held; i++)
        cr_assert_eq(shmkit_queue_commit(q, resv[i], sizeof m), 0);
    for (i = 0; i < held; i++)
        cr_assert_eq(
            shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

static int populates;
static size_t populated;
static int (*real_populate)(void *, size_t, bool);

static int count_populate(void *addr, size_t len, bool write)
{
    populates++;
    populated += len;
    return real_populate(addr, len, write);
}

/* A forked child populates the ring (1 MiB here: chunks of 64 KiB) as it
 * goes, not whole at its first call: its first put, blocking or TRY, and
 * its first get, populate the header's page and a chunk or two (not the
 * ~4 ms of a whole 16 MiB ring); a lap round the ring populates every
 * chunk once; after that, nothing more is populated. */
Test(queue_owners, forked_child_maps_the_ring_as_it_goes)
{
    static char big[4000];
    const size_t rs = 1 << 20, chunk = 64 << 10;
    char buf[4096];
    size_t len;
    pid_t pid;
    int i, n, st, blocking;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("pf"), rs, 0, 0), 0);
    for (blocking = 0; blocking < 2; blocking++) {
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            real_populate = shmkit__os.populate;
            shmkit__os.populate = count_populate;
            CHILD_CHECK(shmkit_queue_put(q, "a", 1,
                                         blocking ? NULL : SHMKIT_QUEUE_TRY) ==
                            0, 2);
            CHILD_CHECK(populated <= 4096 + 2 * chunk, 3);
            CHILD_CHECK(shmkit_queue_get(q, buf, sizeof buf, &len,
                                         blocking ? NULL : SHMKIT_NOWAIT) == 0,
                        4);
            CHILD_CHECK(populated <= 4096 + 2 * chunk, 5);
            /* A lap: fill the ring, then empty it. */
            for (n = 0; shmkit_queue_put(q, big, sizeof big, SHMKIT_NOWAIT) ==
                        0;
                 n++)
                ;
            CHILD_CHECK(n > 200, 6);
            for (i = 0; i < n; i++)
                CHILD_CHECK(shmkit_queue_get(q, buf, sizeof buf, &len,
                                             SHMKIT_NOWAIT) == 0, 7);
            /* Every chunk once, and the header's page. */
            CHILD_CHECK(populated >= rs && populated <= rs + 2 * 4096, 8);
            n = populates;
            for (i = 0; i < 300; i++) {
                CHILD_CHECK(shmkit_queue_put(q, big, sizeof big, NULL) == 0, 9);
                CHILD_CHECK(shmkit_queue_get(q, buf, sizeof buf, &len, NULL) ==
                                0, 10);
            }
            CHILD_CHECK(populates == n, 11);
            _exit(0);
        }
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "child %d: status 0x%x", blocking, st);
    }
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}
