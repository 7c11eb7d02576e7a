/*
 * test_queue_copykill.c - a consumer killed INSIDE get's or get_many's
 * copy, at a chosen message, not at a random instant.
 *
 * get and get_many copy a batch's first 16 KiB out of the ring while they
 * hold the queue's mutex (LOCKED_COPY_MAX in src/objects/queue.c) and
 * free those records only once every one of them is copied; the rest of a
 * batch is taken as loans and copied after the unlock. Here the child's
 * destination buffer ends at a PROT_NONE page placed inside the message
 * the test picks: the memcpy faults there, and the child's SIGSEGV
 * handler checks the fault is that page, tells the parent whether it
 * holds the mutex, and blocks. The parent looks at the queue while the
 * child is stopped mid-copy (shmkit_queue_parse and shmkit_mutex_inspect
 * read without the mutex), SIGKILLs it, and then every message must
 * arrive exactly once, in order, intact: the mutex's owner-death repair
 * (or, for a batch's loans, their give-back) leaves them to the next
 * consumer, and the queue keeps working.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "objects/queue_internal.h"
#include "queue_hdr.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define CK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CK_ASAN 1
#endif
#endif
#ifdef CK_ASAN
#include <sanitizer/asan_interface.h>
#endif

TestSuite(queue_copykill, .init = tu_setup, .fini = tu_cleanup,
          .timeout = 120);

/* What get and get_many copy under the mutex (LOCKED_COPY_MAX). */
#define LOCKED_COPY 16384

/* ---- messages that check themselves -------------------------------------- */

static unsigned char msg_byte(uint32_t id, size_t i)
{
    return (unsigned char)(id * 131u + i * 7u + (i >> 8));
}

/* Message `id` of len (>= 4) bytes: the id, then bytes derived from it. */
static void msg_fill(unsigned char *p, uint32_t id, size_t len)
{
    size_t i;

    memcpy(p, &id, 4);
    for (i = 4; i < len; i++)
        p[i] = msg_byte(id, i);
}

/* True if p holds message `id` of `want` bytes, whole. */
static bool msg_ok(const void *p, size_t len, uint32_t id, size_t want)
{
    const unsigned char *b = p;
    uint32_t got;
    size_t i;

    if (len != want)
        return false;
    memcpy(&got, b, 4);
    if (got != id)
        return false;
    for (i = 4; i < len; i++)
        if (b[i] != msg_byte(id, i))
            return false;
    return true;
}

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* ---- the child that dies inside the copy --------------------------------- */

static int fault_fd = -1;          /* the child's end of the socketpair */
static unsigned char *guard_lo;    /* the PROT_NONE page */
static unsigned char *guard_hi;
static shmkit_mutex *fault_mutex;  /* the queue's mutex, as the child maps it */

/* The child's SIGSEGV handler: a fault outside the guard page exits with
 * 8 (the parent sees the wrong status). On the guard page it says 'L' if
 * this thread holds the queue's mutex (the copy under it), 'U' if not
 * (the copy of the loans after the unlock), and blocks until killed; it
 * exits (10) only if the parent's end closes first (a failed test). */
static void on_fault(int sig, siginfo_t *si, void *ctx)
{
    unsigned char *at = si->si_addr;
    char c;

    (void)sig;
    (void)ctx;
    if (at < guard_lo || at >= guard_hi)
        _exit(8);
    c = shmkit_mutex_held(fault_mutex) ? 'L' : 'U';
    if (write(fault_fd, &c, 1) != 1)
        _exit(9);
    while (read(fault_fd, &c, 1) > 0)
        ;
    _exit(10);
}

struct plan {
    const char *tag;
    size_t n;          /* messages put before the child runs */
    size_t len;        /* bytes each */
    size_t max;        /* get_many's max; 0: the child calls get */
    size_t fault_msg;  /* the message whose copy faults (from 0) */
    char expect;       /* 'L': the fault is under the mutex; 'U': after it */
    bool waiter;       /* a consumer of ours sleeps on the mutex meanwhile */
};

/* In the child: attaches, and gets into a buffer whose end is a guard
 * in the middle of message p->fault_msg (each message lands 16-byte
 * aligned after the one before: see get_many). The guard covers the rest
 * of the room the call is told, so that every byte a copy may touch is in
 * this mapping (ASan checks a memcpy's whole range before it copies; its
 * shadow of this fresh mapping is cleared first). Exits 2..5 if a step
 * fails, or if the get returns (no fault). */
static void copy_and_die(const struct plan *p, int fd)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t room = p->n * pad16(p->len);
    size_t before = p->fault_msg * pad16(p->len) + p->len / 2;
    size_t span = (before + page - 1) / page * page;
    size_t guard = (room - before + page - 1) / page * page;
    struct sigaction sa;
    struct iovec v[SHMKIT_QUEUE_BATCH];
    unsigned char *base, *dst;
    shmkit_queue *a;
    size_t got;

    fault_fd = fd;
    base = mmap(NULL, span + guard, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHILD_CHECK(base != MAP_FAILED, 2);
#ifdef CK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(base, span + guard);
#endif
    CHILD_CHECK(mprotect(base + span, guard, PROT_NONE) == 0, 2);
    guard_lo = base + span;
    guard_hi = guard_lo + guard;
    dst = guard_lo - before;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHILD_CHECK(sigaction(SIGSEGV, &sa, NULL) == 0, 3);
    CHILD_CHECK(shmkit_queue_attach(&a, tu_name(p->tag), 0) == 0, 4);
    fault_mutex = (shmkit_mutex *)((unsigned char *)shmkit_block_data(
                                       shmkit_queue_block(a)) + 64);
    if (p->max == 0)
        (void)shmkit_queue_get(a, dst, room, &got, NULL);
    else
        (void)shmkit_queue_get_many(a, dst, room, v, p->max, &got, NULL);
    _exit(5);
}

/* ---- the parent ------------------------------------------------------------ */

static shmkit_queue *make(const char *tag)
{
    shmkit_queue *q;

    cr_assert_eq(shmkit_queue_create(&q, tu_name(tag), 1 << 17, 0, 0), 0,
                 "%s", shmkit_last_error());
    return q;
}

static shmkit_mutex *mutex_of(shmkit_queue *q)
{
    return (shmkit_mutex *)((unsigned char *)shmkit_block_data(
                                shmkit_queue_block(q)) + 64);
}

/* The queue as the ring says, read without its mutex. */
static shmkit_queue_info parsed(shmkit_queue *q)
{
    shmkit_queue_info in;

    cr_assert_eq(shmkit_queue_parse(shmkit_block_data(shmkit_queue_block(q)),
                                    shmkit_block_size(shmkit_queue_block(q)),
                                    &in), 0);
    return in;
}

static shmkit_mutex_info mutex_now(shmkit_queue *q)
{
    shmkit_mutex_info mi;

    cr_assert_eq(shmkit_mutex_inspect(mutex_of(q), &mi), 0);
    return mi;
}

/* Messages delivered to the parent, checked as they come. */
struct ledger {
    const struct plan *p;
    uint32_t next;     /* the id the next message must carry */
};

static void take(struct ledger *l, const struct iovec *v, size_t got)
{
    size_t i;

    for (i = 0; i < got; i++) {
        cr_assert_lt(l->next, l->p->n, "message %zu of %zu bytes past the %zu",
                     i, v[i].iov_len, l->p->n);
        uint32_t id = UINT32_MAX;

        if (v[i].iov_len >= 4)
            memcpy(&id, v[i].iov_base, 4);
        cr_assert(msg_ok(v[i].iov_base, v[i].iov_len, l->next, l->p->len),
                  "message %zu of the batch is not message %u whole: it "
                  "says %u, %zu bytes (lost, duplicated, out of order or "
                  "torn)", i, l->next, id, v[i].iov_len);
        l->next++;
    }
}

/* A consumer of this process that takes the mutex while the child holds
 * it: sleeps in the lock's futex until the child's death wakes it. */
struct waiter {
    shmkit_queue *q;
    pid_t tid;          /* atomic: set once it runs */
    int r;
    size_t got;
    unsigned char *buf;
    struct iovec v[SHMKIT_QUEUE_BATCH];
};

static void *wait_in_lock(void *arg)
{
    struct waiter *w = arg;

    __atomic_store_n(&w->tid, gettid(), __ATOMIC_SEQ_CST);
    w->r = shmkit_queue_get_many(w->q, w->buf, 1 << 20, w->v,
                                 SHMKIT_QUEUE_BATCH, &w->got, NULL);
    return NULL;
}

static void run(const struct plan *p)
{
    shmkit_queue *q = make(p->tag);
    struct iovec in[64], v[SHMKIT_QUEUE_BATCH];
    struct shmkit__queue_wait_stats w0, w1;
    struct ledger l = {p, 0};
    struct waiter wt = {0};
    shmkit_queue_info qi;
    shmkit_mutex_info mi;
    unsigned char *src, *buf;
    uint64_t head0;
    size_t i, done, got;
    struct timespec d;
    pthread_t t;
    int fds[2], st;
    pid_t pid;
    char c;

    cr_assert_leq(p->n, 64);
    src = malloc(p->n * p->len);
    buf = malloc(1 << 20);
    wt.buf = malloc(1 << 20);
    cr_assert(src && buf && wt.buf);
    for (i = 0; i < p->n; i++) {
        msg_fill(src + i * p->len, (uint32_t)i, p->len);
        in[i].iov_base = src + i * p->len;
        in[i].iov_len = p->len;
    }
    cr_assert_eq(shmkit_queue_put_many(q, in, p->n, &done, NULL), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(done, p->n);
    head0 = queue_hdr64(q, 128);

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        copy_and_die(p, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], &c, 1) != 1) {
        st = tu_wait_status(pid);
        cr_assert_fail("the child never faulted in its copy: status 0x%x", st);
    }
    cr_assert_eq(c, p->expect, "the child faulted %s the mutex",
                 c == 'L' ? "holding" : "without");

    /* The child is stopped inside its copy. */
    mi = mutex_now(q);
    qi = parsed(q);
    if (p->expect == 'L') {
        cr_assert(mi.locked && mi.owner_tid == pid && !mi.owner_died,
                  "mutex: locked %d owner %d died %d (child %d)", mi.locked,
                  (int)mi.owner_tid, mi.owner_died, (int)pid);
        /* Nothing freed, nothing taken: every record still READY. */
        cr_assert_eq(qi.depth, p->n, "depth %zu", qi.depth);
        cr_assert_eq(qi.loaned, 0, "loaned %zu", qi.loaned);
        cr_assert_eq(queue_hdr64(q, 128), head0, "head moved");
    } else {
        size_t batch = p->max ? p->n : 1;

        cr_assert(!mi.locked, "the child holds the mutex");
        /* The whole batch is the child's, none of it freed: its loans and
         * the records it copied under the mutex are all TAKEN. */
        cr_assert_eq(qi.loaned, batch, "loaned %zu, depth %zu", qi.loaned,
                     qi.depth);
        cr_assert_eq(qi.depth, p->n - batch, "depth %zu", qi.depth);
        cr_assert_eq(queue_hdr64(q, 128), head0, "head moved");
    }
    if (p->waiter) {
        wt.q = q;
        cr_assert_eq(pthread_create(&t, NULL, wait_in_lock, &wt), 0);
        while (!__atomic_load_n(&wt.tid, __ATOMIC_SEQ_CST))
            sched_yield();
        tu_wait_in_futex(wt.tid);
    }

    w0 = queue_waits_now();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    st = tu_wait_status(pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status 0x%x",
              st);
    if (p->waiter) {
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_eq(wt.r, 0, "the waiter's get_many: %d (%s)", wt.r,
                     shmkit_last_error());
        cr_assert_geq(wt.got, 1);
        take(&l, wt.v, wt.got);
    } else if (p->expect == 'L') {
        /* The kernel marked the dead holder's mutex; nobody took it yet. */
        mi = mutex_now(q);
        cr_assert(mi.owner_died, "mutex not marked: locked %d owner %d",
                  mi.locked, (int)mi.owner_tid);
        qi = parsed(q);
        cr_assert_eq(qi.depth, p->n);
    }
    /* Everything else, in order, each once: a get_many first, then gets. */
    shmkit_deadline(&d, 20);
    if (l.next < p->n) {
        cr_assert_eq(shmkit_queue_get_many(q, buf, 1 << 20, v, 3, &got, &d),
                     0, "%s", shmkit_last_error());
        take(&l, v, got);
    }
    while (l.next < p->n) {
        cr_assert_eq(shmkit_queue_get(q, buf, 1 << 20, &v[0].iov_len, &d), 0,
                     "message %u: %s", l.next, shmkit_last_error());
        v[0].iov_base = buf;
        take(&l, v, 1);
    }
    w1 = queue_waits_now();
    st = shmkit_queue_get(q, buf, 1 << 20, &got, SHMKIT_NOWAIT);
    cr_assert_eq(st, -EAGAIN, "after the %zu messages put: %d (%s)", p->n, st,
                 st ? shmkit_last_error() : "a message more");
    if (p->expect == 'L')
        /* The mutex's repair did it all: no wait behind a dead owner's
         * record, no slice. */
        cr_assert(w1.deaths == w0.deaths && w1.slices == w0.slices,
                  "waits: deaths +%llu, slices +%llu",
                  (unsigned long long)(w1.deaths - w0.deaths),
                  (unsigned long long)(w1.slices - w0.slices));
    else
        /* The dead child's loans: found dead, given back, no slice. */
        cr_assert(w1.deaths > w0.deaths && w1.slices == w0.slices,
                  "waits: deaths +%llu, slices +%llu",
                  (unsigned long long)(w1.deaths - w0.deaths),
                  (unsigned long long)(w1.slices - w0.slices));

    /* Repaired and consistent again; the ring empty, its counters true. */
    mi = mutex_now(q);
    cr_assert(!mi.locked && !mi.owner_died && !mi.inconsistent &&
                  !mi.not_recoverable,
              "mutex: locked %d died %d inconsistent %d not recoverable %d",
              mi.locked, mi.owner_died, mi.inconsistent, mi.not_recoverable);
    qi = parsed(q);
    cr_assert(qi.depth == 0 && qi.loaned == 0 && qi.reserved == 0 &&
                  qi.bytes_used == 0,
              "depth %zu loaned %zu reserved %zu bytes_used %zu", qi.depth,
              qi.loaned, qi.reserved, qi.bytes_used);
    cr_assert_eq(queue_hdr64(q, 128), queue_hdr64(q, 136), "head != tail");

    /* The queue keeps working, through get and get_many. */
    cr_assert_eq(shmkit_queue_put_many(q, in, p->n, &done, NULL), 0, "%s",
                 shmkit_last_error());
    l.next = 0;
    cr_assert_eq(shmkit_queue_get(q, buf, 1 << 20, &v[0].iov_len, &d), 0);
    v[0].iov_base = buf;
    take(&l, v, 1);
    while (l.next < p->n) {
        cr_assert_eq(shmkit_queue_get_many(q, buf, 1 << 20, v,
                                           SHMKIT_QUEUE_BATCH, &got, &d),
                     0, "%s", shmkit_last_error());
        take(&l, v, got);
    }
    cr_assert_eq(shmkit_queue_stat(q, &qi), 0);
    cr_assert_eq(qi.depth, 0);

    close(fds[0]);
    free(src);
    free(buf);
    free(wt.buf);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0, "%s", shmkit_last_error());
}

/* get_many of 8 small messages (all under the mutex): the copy of the 3rd
 * faults, two copied already; all 8 are still READY, and the next
 * consumer gets them all. */
Test(queue_copykill, get_many_killed_in_the_locked_copy)
{
    struct plan p = {"ckm", 8, 100, SHMKIT_QUEUE_BATCH, 2, 'L', false};

    run(&p);
}

/* The same with a consumer of ours asleep in the mutex's futex when the
 * child dies: the kernel's robust-list walk wakes it, it repairs, and its
 * get_many gets the batch. */
Test(queue_copykill, get_many_killed_in_the_locked_copy_wakes_a_waiter)
{
    struct plan p = {"ckw", 8, 100, SHMKIT_QUEUE_BATCH, 2, 'L', true};

    run(&p);
}

/* get of one message (1,000 bytes, under the mutex), killed half-way
 * through its copy: the message and the one after it arrive, in order. */
Test(queue_copykill, get_killed_in_the_locked_copy)
{
    struct plan p = {"ckg", 2, 1000, 0, 0, 'L', false};

    run(&p);
}

/* get of a message past what is copied under the mutex (20,000 bytes: a
 * loan, copied after the unlock), killed half-way through that copy: the
 * loan is given back. One message only: a loan given back is delivered
 * after any message taken meanwhile (a consumer takes the READY records
 * past a dead owner's loan and reaps it only when nothing else is ready),
 * so with a second message queued the order would not hold. */
Test(queue_copykill, get_killed_copying_a_loan)
{
    struct plan p = {"ckk", 1, 20000, 0, 0, 'U', false};

    cr_assert_gt(p.len, LOCKED_COPY);
    run(&p);
}

/* A batch bigger than what is copied under the mutex (8 x 4,000 bytes:
 * 4 copied under it, 4 loans), killed in the copy of the 3rd, under the
 * mutex, before any loan is taken. */
Test(queue_copykill, big_batch_killed_in_its_locked_part)
{
    struct plan p = {"ckb", 8, 4000, SHMKIT_QUEUE_BATCH, 2, 'L', false};

    cr_assert_gt(p.n * p.len, LOCKED_COPY);
    cr_assert_leq(4 * p.len, LOCKED_COPY);
    cr_assert_gt(5 * p.len, LOCKED_COPY);
    run(&p);
}

/* The same batch, killed in the copy of the 6th message, a loan copied
 * after the unlock: the 4 copied under the mutex were not freed yet (a
 * batch with loans frees its records together, after its last copy), so
 * all 8 come back with the loans. */
Test(queue_copykill, big_batch_killed_copying_its_loans)
{
    struct plan p = {"ckl", 8, 4000, SHMKIT_QUEUE_BATCH, 5, 'U', false};

    run(&p);
}
