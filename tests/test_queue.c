/*
 * test_queue.c - the queue's API in one process and across two: create,
 * attach, kinds, copy and zero-copy paths, batches, deadlines, sizes,
 * waking on close, EINTR, and lifetimes (tracked, refcounted).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/os.h"
#include "queue_hdr.h"
#include "testutil.h"

TestSuite(queue, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

static shmkit_queue *make(const char *tag, size_t cap, size_t max)
{
    shmkit_queue *q;

    cr_assert_eq(shmkit_queue_create(&q, tu_name(tag), cap, max, 0), 0, "%s",
                 shmkit_last_error());
    return q;
}

static void drop(shmkit_queue *q)
{
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0, "%s", shmkit_last_error());
}

static int one_cpu(void)
{
    return 1;
}

static void stat_of(shmkit_queue *q, shmkit_queue_info *in)
{
    cr_assert_eq(shmkit_queue_stat(q, in), 0, "%s", shmkit_last_error());
}

Test(queue, put_get_in_order_and_kind)
{
    shmkit_queue *q = make("q", 4096, 0), *a;
    char buf[64];
    size_t len;
    int i;

    cr_assert_eq(shmkit_block_kind(shmkit_queue_block(q)), SHMKIT_KIND_QUEUE);
    cr_assert_str_eq(shmkit_kind_name(SHMKIT_KIND_QUEUE), "queue");
    cr_assert_eq(shmkit_queue_max_message(q), 4096 - 16);
    cr_assert_eq(shmkit_queue_attach(&a, tu_name("q"), 0), 0, "%s",
                 shmkit_last_error());
    for (i = 0; i < 10; i++) {
        snprintf(buf, sizeof buf, "message %d", i);
        cr_assert_eq(shmkit_queue_put(q, buf, strlen(buf), NULL), 0);
    }
    for (i = 0; i < 10; i++) {
        char want[64];

        snprintf(want, sizeof want, "message %d", i);
        cr_assert_eq(shmkit_queue_get(a, buf, sizeof buf, &len, NULL), 0);
        cr_assert_eq(len, strlen(want));
        cr_assert_eq(memcmp(buf, want, len), 0);
    }
    cr_assert_eq(shmkit_queue_get(a, buf, sizeof buf, &len, SHMKIT_NOWAIT),
                 -EAGAIN);
    cr_assert_eq(shmkit_queue_close(a), 0);
    drop(q);
    cr_assert_eq(tu_count_leftovers(), 0);
}

Test(queue, zero_length_and_wraparound)
{
    shmkit_queue *q = make("wrap", 256, 0);
    unsigned char msg[100], out[200];
    size_t len, i, round;

    /* 100-byte messages take 128 bytes of a 256-byte ring: the ring wraps
     * (with padding at its end) again and again. */
    for (round = 0; round < 1000; round++) {
        for (i = 0; i < sizeof msg; i++)
            msg[i] = (unsigned char)(round * 7 + i);
        cr_assert_eq(shmkit_queue_put(q, msg, sizeof msg - round % 50,
                                      SHMKIT_NOWAIT), 0, "round %zu: %s",
                     round, shmkit_last_error());
        cr_assert_eq(shmkit_queue_put(q, NULL, 0, SHMKIT_NOWAIT), 0);
        cr_assert_eq(shmkit_queue_get(q, out, sizeof out, &len, NULL), 0);
        cr_assert_eq(len, sizeof msg - round % 50);
        cr_assert_eq(memcmp(out, msg, len), 0, "round %zu", round);
        cr_assert_eq(shmkit_queue_get(q, out, sizeof out, &len, NULL), 0);
        cr_assert_eq(len, 0);
    }
    drop(q);
}

Test(queue, full_by_bytes_and_by_count)
{
    shmkit_queue *q = make("full", 256, 0), *m = make("count", 4096, 3);
    char big[300] = {0}, buf[300];
    struct timespec d;
    size_t len;

    /* A message above the largest is refused at once, never waits. */
    cr_assert_eq(shmkit_queue_put(q, big, 241, NULL), -EMSGSIZE);
    cr_assert_eq(shmkit_queue_put(q, big, 240, NULL), 0);
    cr_assert_eq(shmkit_queue_put(q, big, 1, SHMKIT_NOWAIT), -EAGAIN);
    shmkit_deadline(&d, 0.02);
    cr_assert_eq(shmkit_queue_put(q, big, 1, &d), -ETIMEDOUT);
    /* A buffer too small: the message stays, len says how much. */
    cr_assert_eq(shmkit_queue_get(q, buf, 10, &len, NULL), -EMSGSIZE);
    cr_assert_eq(len, 240);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(len, 240);

    cr_assert_eq(shmkit_queue_put(m, "a", 1, NULL), 0);
    cr_assert_eq(shmkit_queue_put(m, "b", 1, NULL), 0);
    cr_assert_eq(shmkit_queue_put(m, "c", 1, NULL), 0);
    cr_assert_eq(shmkit_queue_put(m, "d", 1, SHMKIT_NOWAIT), -EAGAIN);
    cr_assert_eq(shmkit_queue_get(m, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(shmkit_queue_put(m, "d", 1, SHMKIT_NOWAIT), 0);
    drop(q);
    drop(m);
}

/* get_many of up to 8 messages, without waiting: how many came. */
static size_t take_all(shmkit_queue *q, char *buf, size_t len, struct iovec *v)
{
    size_t got;

    cr_assert_eq(shmkit_queue_get_many(q, buf, len, v, 8, &got, SHMKIT_NOWAIT),
                 0, "%s", shmkit_last_error());
    return got;
}

/* A batch's take frees its copied records by moving head past them (and
 * past released ones beside them) without marking each; the message
 * count, which a queue made with a limit of messages checks, must follow
 * in every case: a run from head, a batch behind a loan, and a run that
 * ends in a record another producer's message left released. */
Test(queue, batches_free_their_records_and_keep_the_count)
{
    shmkit_queue *q = make("cnt", 4096, 3);
    struct iovec v[8];
    const void *p;
    char buf[256], c;
    size_t len;
    int go[2], ready[2];
    pid_t pid;

    /* A run from head. */
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(shmkit_queue_put(q, "a", 1, SHMKIT_NOWAIT), 0);
        cr_assert_eq(shmkit_queue_put(q, "b", 1, SHMKIT_NOWAIT), 0);
        cr_assert_eq(shmkit_queue_put(q, "c", 1, SHMKIT_NOWAIT), 0);
        cr_assert_eq(shmkit_queue_put(q, "d", 1, SHMKIT_NOWAIT), -EAGAIN);
        cr_assert_eq(take_all(q, buf, sizeof buf, v), 3);
        cr_assert_eq(memcmp(v[2].iov_base, "c", 1), 0);
    }
    /* Behind a loan: the batch's records wait, released, for head. */
    cr_assert_eq(shmkit_queue_put(q, "a", 1, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_put(q, "b", 1, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_put(q, "c", 1, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, SHMKIT_NOWAIT), 0);
    cr_assert_eq(take_all(q, buf, sizeof buf, v), 2);
    cr_assert_eq(shmkit_queue_put(q, "d", 1, SHMKIT_NOWAIT), -EAGAIN);
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmkit_queue_put(q, "e", 1, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_put(q, "f", 1, SHMKIT_NOWAIT), -EAGAIN);
    cr_assert_eq(take_all(q, buf, sizeof buf, v), 3);

    /* A run that ends in a released record: a child's reservation (first)
     * holds nothing of the parent's back, so the parent's later message
     * goes first, and is marked released behind the reservation; once
     * the child commits, the next batch's run takes head past both. */
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_queue *a;
        void *w;

        CHILD_CHECK(shmkit_queue_attach(&a, tu_name("cnt"), 0) == 0, 2);
        CHILD_CHECK(shmkit_queue_reserve(a, 1, &w, NULL) == 0, 3);
        CHILD_CHECK(write(ready[1], "r", 1) == 1, 4);
        CHILD_CHECK(read(go[0], &c, 1) == 1, 5);
        memcpy(w, "x", 1);
        CHILD_CHECK(shmkit_queue_commit(a, w, 1) == 0, 6);
        _exit(shmkit_queue_close(a) == 0 ? 0 : 7);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(shmkit_queue_put(q, "y", 1, SHMKIT_NOWAIT), 0);
    cr_assert_eq(take_all(q, buf, sizeof buf, v), 1);
    cr_assert_eq(memcmp(v[0].iov_base, "y", 1), 0);
    cr_assert_eq(write(go[1], "g", 1), 1);
    tu_wait_ok(pid);
    cr_assert_eq(take_all(q, buf, sizeof buf, v), 1);
    cr_assert_eq(memcmp(v[0].iov_base, "x", 1), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmkit_queue_put(q, "z", 1, SHMKIT_NOWAIT), 0, "put %d: %s",
                     i, shmkit_last_error());
    cr_assert_eq(shmkit_queue_put(q, "z", 1, SHMKIT_NOWAIT), -EAGAIN);
    for (int fd = 0; fd < 2; fd++) {
        close(go[fd]);
        close(ready[fd]);
    }
    drop(q);
}

Test(queue, reserve_commit_peek_release)
{
    shmkit_queue *q = make("zc", 4096, 0);
    shmkit_queue_info in;
    const void *p;
    void *w, *w2;
    size_t len;

    cr_assert_eq(shmkit_queue_reserve(q, 1000, &w, NULL), 0);
    cr_assert_eq((uintptr_t)w % 16, 0);
    cr_assert_eq(shmkit_queue_reserve(q, 100, &w2, NULL), 0);
    memcpy(w2, "second", 6);
    /* The second is committed first: it waits for the first, which this
     * process still writes (one producer's order). */
    cr_assert_eq(shmkit_queue_commit(q, w2, 6), 0);
    stat_of(q, &in);
    cr_assert_eq(in.depth, 1);
    cr_assert_eq(in.reserved, 1);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, SHMKIT_NOWAIT), -EAGAIN);
    memcpy(w, "first", 5);
    cr_assert_eq(shmkit_queue_commit(q, w, 5), 0); /* shrinks 1000 -> 5 */
    cr_assert_eq(shmkit_queue_commit(q, w, 5), -EINVAL); /* not twice */
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(p, "first", 5), 0);
    stat_of(q, &in);
    cr_assert_eq(in.loaned, 1);
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    cr_assert_eq(shmkit_queue_release(q, p), -EINVAL);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    cr_assert_eq(len, 6);
    cr_assert_eq(memcmp(p, "second", 6), 0);
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    /* Cancel: nothing is delivered, the space comes back. */
    cr_assert_eq(shmkit_queue_reserve(q, 4000, &w, NULL), 0);
    cr_assert_eq(shmkit_queue_cancel(q, w), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, SHMKIT_NOWAIT), -EAGAIN);
    stat_of(q, &in);
    cr_assert_eq(in.bytes_used, 0);
    cr_assert_eq(shmkit_queue_commit(q, (char *)w + 3, 1), -EINVAL);
    cr_assert_eq(shmkit_queue_release(q, NULL), -EINVAL);
    drop(q);
}

Test(queue, put_many_get_many)
{
    shmkit_queue *q = make("many", 1 << 16, 0);
    struct iovec in[200], out[64];
    char data[200][8], buf[4096];
    size_t i, done, got, total = 0;

    for (i = 0; i < 200; i++) {
        snprintf(data[i], sizeof data[i], "%zu", i);
        in[i].iov_base = data[i];
        in[i].iov_len = strlen(data[i]);
    }
    cr_assert_eq(shmkit_queue_put_many(q, in, 200, &done, NULL), 0);
    cr_assert_eq(done, 200);
    while (total < 200) {
        cr_assert_eq(shmkit_queue_get_many(q, buf, sizeof buf, out, 64, &got,
                                           NULL), 0, "%s", shmkit_last_error());
        cr_assert_gt(got, 0);
        for (i = 0; i < got; i++) {
            cr_assert_eq(out[i].iov_len, in[total + i].iov_len);
            cr_assert_eq(memcmp(out[i].iov_base, data[total + i],
                                out[i].iov_len), 0);
        }
        total += got;
    }
    /* A small buffer takes fewer at once. */
    cr_assert_eq(shmkit_queue_put_many(q, in, 10, &done, NULL), 0);
    cr_assert_eq(shmkit_queue_get_many(q, buf, 40, out, 64, &got, NULL), 0);
    cr_assert_eq(got, 3); /* at 0, 16 and 32: the last needs no padding */
    drop(q);
}

/* peek_many lends up to SHMKIT_QUEUE_BATCH messages in order, read in
 * place; release_many gives them back (one bad pointer: -EINVAL, the
 * others freed all the same); get_many and put_many move that many at a
 * time too. */
Test(queue, peek_many_release_many)
{
    enum { N = 2 * SHMKIT_QUEUE_BATCH + 10 };
    shmkit_queue *q = make("pmany", 1 << 16, 0);
    static struct iovec in[N], out[N];
    static char data[N][8];
    shmkit_queue_info info;
    size_t i, done, got, total = 0;
    char buf[8192];

    for (i = 0; i < N; i++) {
        snprintf(data[i], sizeof data[i], "%zu", i);
        in[i].iov_base = data[i];
        in[i].iov_len = strlen(data[i]);
    }
    cr_assert_eq(shmkit_queue_put_many(q, in, N, &done, NULL), 0);
    cr_assert_eq(done, N);
    cr_assert_eq(shmkit_queue_peek_many(q, out, N, &got, NULL), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(got, SHMKIT_QUEUE_BATCH);
    for (i = 0; i < got; i++) {
        cr_assert_eq(out[i].iov_len, in[i].iov_len);
        cr_assert_eq(memcmp(out[i].iov_base, data[i], out[i].iov_len), 0);
    }
    stat_of(q, &info);
    cr_assert_eq(info.loaned, SHMKIT_QUEUE_BATCH);
    cr_assert_eq(shmkit_queue_release_many(q, out, got), 0);
    stat_of(q, &info);
    cr_assert_eq(info.loaned, 0);
    cr_assert_eq(info.depth, N - SHMKIT_QUEUE_BATCH);
    total = got;
    /* Given back twice, or a pointer that was never lent: -EINVAL. */
    cr_assert_eq(shmkit_queue_release_many(q, out, 1), -EINVAL);
    cr_assert_eq(shmkit_queue_peek_many(q, out, 3, &got, NULL), 0);
    cr_assert_eq(got, 3);
    out[3] = out[1];
    out[4].iov_base = buf;
    cr_assert_eq(shmkit_queue_release_many(q, out, 5), -EINVAL);
    stat_of(q, &info); /* the three lent were freed all the same */
    cr_assert_eq(info.loaned, 0);
    total += 3;
    cr_assert_eq(shmkit_queue_get_many(q, buf, sizeof buf, out, N, &got,
                                       NULL), 0);
    cr_assert_eq(got, SHMKIT_QUEUE_BATCH);
    for (i = 0; i < got; i++)
        cr_assert_eq(memcmp(out[i].iov_base, data[total + i],
                            out[i].iov_len), 0);
    total += got;
    cr_assert_eq(shmkit_queue_peek_many(q, out, N, &got, NULL), 0);
    cr_assert_eq(got, N - total);
    cr_assert_eq(memcmp(out[0].iov_base, data[total], out[0].iov_len), 0);
    cr_assert_eq(shmkit_queue_release_many(q, out, got), 0);
    cr_assert_eq(shmkit_queue_peek_many(q, out, N, &got, SHMKIT_NOWAIT),
                 -EAGAIN);
    cr_assert_eq(got, 0);
    cr_assert_eq(shmkit_queue_peek_many(q, out, 0, &got, NULL), -EINVAL);
    cr_assert_eq(shmkit_queue_release_many(q, NULL, 0), 0);
    drop(q);
}

/* get_many copies a batch's first 16 KiB out under the mutex and frees
 * those records there and then: head (at 128 in the header) is past them
 * when it returns, with no later locker needed. Bigger messages are taken
 * as loans, copied after the unlock and released as before: head then
 * waits for the next locker. Either way every message arrives, in order. */
Test(queue, get_many_frees_what_it_copied_under_the_mutex)
{
    shmkit_queue *q = make("lcopy", 1 << 17, 0);
    static char big[20000], buf[65536];
    struct iovec in[5], out[8];
    size_t i, done, got;

    memset(big, 'b', sizeof big);
    for (i = 0; i < 3; i++) {
        in[i].iov_base = "abc";
        in[i].iov_len = 3;
    }
    cr_assert_eq(shmkit_queue_put_many(q, in, 3, &done, NULL), 0);
    cr_assert_eq(shmkit_queue_get_many(q, buf, sizeof buf, out, 8, &got, NULL),
                 0);
    cr_assert_eq(got, 3);
    cr_assert_eq(queue_hdr64(q, 128), queue_hdr64(q, 136),
                 "get_many left head at %llu, tail at %llu",
                 (unsigned long long)queue_hdr64(q, 128),
                 (unsigned long long)queue_hdr64(q, 136));
    /* small, big (past the 16 KiB: a loan), small: all three, in order */
    in[0].iov_base = "x";
    in[0].iov_len = 1;
    in[1].iov_base = big;
    in[1].iov_len = sizeof big;
    in[2].iov_base = "yz";
    in[2].iov_len = 2;
    cr_assert_eq(shmkit_queue_put_many(q, in, 3, &done, NULL), 0);
    cr_assert_eq(shmkit_queue_get_many(q, buf, sizeof buf, out, 8, &got, NULL),
                 0);
    cr_assert_eq(got, 3);
    cr_assert_eq(out[0].iov_len, 1);
    cr_assert_eq(memcmp(out[0].iov_base, "x", 1), 0);
    cr_assert_eq(out[1].iov_len, sizeof big);
    cr_assert_eq(memcmp(out[1].iov_base, big, sizeof big), 0);
    cr_assert_eq(out[2].iov_len, 2);
    cr_assert_eq(memcmp(out[2].iov_base, "yz", 2), 0);
    cr_assert_eq(shmkit_queue_peek(q, (const void **)&out[0].iov_base, &i,
                                   SHMKIT_NOWAIT), -EAGAIN);
    drop(q);
}

Test(queue, blocking_get_wakes_across_processes)
{
    shmkit_queue *q = make("wake", 1 << 16, 0);
    int go[2];
    pid_t pid;
    char c, buf[16];
    size_t len;

    cr_assert_eq(pipe(go), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_queue *a;
        int i;

        CHILD_CHECK(shmkit_queue_attach(&a, tu_name("wake"), 0) == 0, 2);
        CHILD_CHECK(write(go[1], "x", 1) == 1, 3);
        for (i = 0; i < 1000; i++) {
            CHILD_CHECK(shmkit_queue_get(a, buf, sizeof buf, &len, NULL) == 0, 4);
            CHILD_CHECK(len == sizeof i && memcmp(buf, &i, len) == 0, 5);
        }
        CHILD_CHECK(shmkit_queue_put(a, "done", 4, NULL) == 0, 6);
        _exit(shmkit_queue_close(a) == 0 ? 0 : 7);
    }
    cr_assert_eq(read(go[0], &c, 1), 1);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(shmkit_queue_put(q, &i, sizeof i, NULL), 0);
    tu_wait_ok(pid);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(len, 4);
    close(go[0]);
    close(go[1]);
    drop(q);
}

struct sleeper {
    shmkit_queue *q;
    int result;
};

static void *sleep_get(void *arg)
{
    struct sleeper *s = arg;
    char buf[8];
    size_t len;

    s->result = shmkit_queue_get(s->q, buf, sizeof buf, &len, NULL);
    return NULL;
}

Test(queue, close_wakes_sleepers)
{
    struct sleeper s = {make("close", 4096, 0), 1};
    shmkit_queue_info in;
    shmkit_block *keep;
    pthread_t t;

    cr_assert_eq(shmkit_block_attach(&keep, tu_name("close"), 0), 0);
    cr_assert_eq(pthread_create(&t, NULL, sleep_get, &s), 0);
    /* Until the thread sleeps in the queue (the block counts it). */
    do
        stat_of(s.q, &in);
    while (in.waiting_consumers == 0);
    cr_assert_eq(shmkit_queue_close(s.q), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(s.result, SHMKIT_ECLOSED, "got %s",
                 shmkit_errname(s.result));
    cr_assert_eq(shmkit_block_unlink(keep), 0);
    cr_assert_eq(shmkit_block_close(keep), 0);
}

static void on_alarm(int sig)
{
    (void)sig;
}

Test(queue, eintr_retried_unless_interruptible)
{
    shmkit_queue *q = make("intr", 4096, 0);
    struct sigaction sa;
    struct timespec d;
    char buf[8];
    size_t len;
    timer_t tm;
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM};
    struct itimerspec its = {{0, 2000000}, {0, 2000000}}; /* every 2 ms */

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: the futex sees EINTR */
    cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
    cr_assert_eq(timer_create(CLOCK_MONOTONIC, &ev, &tm), 0);
    cr_assert_eq(timer_settime(tm, 0, &its, NULL), 0);
    shmkit_deadline(&d, 0.1);
    /* Fifty signals arrive; the wait still ends at its deadline. */
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, &d), -ETIMEDOUT);
    shmkit_queue_set_interruptible(q, true);
    shmkit_deadline(&d, 5);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, &d), -EINTR);
    timer_delete(tm);
    signal(SIGALRM, SIG_DFL);
    drop(q);
}

Test(queue, header_checks)
{
    shmkit_queue *q, *made;
    shmkit_block *b;
    unsigned char *p;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("bad"), 16, 0, 0), -EINVAL);
    cr_assert_eq(shmkit_queue_create(&q, tu_name("bad"), 4096, 0,
                                     SHMKIT_RDONLY), -EINVAL);
    cr_assert_eq(tu_count_leftovers(), 0);
    /* A raw block is not a queue. */
    cr_assert_eq(shmkit_block_create(&b, tu_name("raw"), 4096, 0), 0);
    cr_assert_eq(shmkit_queue_attach(&q, tu_name("raw"), 0), SHMKIT_EKIND);
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    /* A queue whose header says more ring than the block has. */
    made = make("trunc", 4096, 0);
    cr_assert_eq(shmkit_queue_attach(&q, tu_name("trunc"), SHMKIT_RDONLY),
                 -EINVAL);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("trunc"), 0), 0);
    p = shmkit_block_data(b);
    p[24] = 0xff; /* ring_size low byte: not a multiple of 16 */
    cr_assert_eq(shmkit_queue_attach(&q, tu_name("trunc"), 0), SHMKIT_ECORRUPT);
    p[24] = 0;
    p[25] = 0x20; /* ring_size 8 KiB: more than the block holds */
    cr_assert_eq(shmkit_queue_attach(&q, tu_name("trunc"), 0),
                 SHMKIT_ETRUNCATED);
    p[25] = 0x10;
    p[4] = 3; /* version (1 and 2 are known) */
    cr_assert_eq(shmkit_queue_attach(&q, tu_name("trunc"), 0), SHMKIT_EVERSION);
    cr_assert_eq(shmkit_block_close(b), 0);
    drop(made);
}

Test(queue, tracked_and_refcounted)
{
    shmkit_queue *q, *a;
    char buf[8];
    size_t len;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("ref"), 4096, 0,
                                     SHMKIT_REFCOUNT), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_queue_attach(&a, tu_name("ref"), SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_queue_put(a, "hi", 2, NULL), 0);
    cr_assert_eq(shmkit_queue_close(a), 0);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(shmkit_queue_close(q), 0); /* last: the name goes */
    cr_assert_eq(shmkit_queue_attach(&a, tu_name("ref"), 0), -ENOENT);
    cr_assert_eq(tu_count_leftovers(), 0);
}

Test(queue, tasks_and_join)
{
    shmkit_queue *q = make("tasks", 4096, 0);
    shmkit_queue_info in;
    char buf[8];
    size_t len;
    pid_t pid;

    cr_assert_eq(shmkit_queue_join(q, SHMKIT_NOWAIT), 0); /* none yet */
    cr_assert_eq(shmkit_queue_task_add(q, 3), 0);
    cr_assert_eq(shmkit_queue_join(q, SHMKIT_NOWAIT), -EAGAIN);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmkit_queue_put(q, &i, sizeof i, NULL), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_queue *a;

        CHILD_CHECK(shmkit_queue_attach(&a, tu_name("tasks"), 0) == 0, 2);
        for (int i = 0; i < 3; i++) {
            CHILD_CHECK(shmkit_queue_get(a, buf, sizeof buf, &len, NULL) == 0, 3);
            CHILD_CHECK(shmkit_queue_task_done(a) == 0, 4);
        }
        _exit(shmkit_queue_close(a) == 0 ? 0 : 5);
    }
    cr_assert_eq(shmkit_queue_join(q, NULL), 0); /* woken by the last done */
    tu_wait_ok(pid);
    stat_of(q, &in);
    cr_assert_eq(in.unfinished, 0);
    cr_assert_eq(shmkit_queue_task_done(q), -EOVERFLOW);
    drop(q);
}

Test(queue, shutdown_keeps_the_handle)
{
    struct sleeper s = {make("shut", 4096, 0), 1};
    shmkit_queue_info in;
    const void *p;
    pthread_t t;
    size_t len;

    cr_assert_eq(shmkit_queue_put(s.q, "x", 1, NULL), 0);
    cr_assert_eq(shmkit_queue_peek(s.q, &p, &len, NULL), 0);
    cr_assert_eq(pthread_create(&t, NULL, sleep_get, &s), 0);
    do
        stat_of(s.q, &in);
    while (in.waiting_consumers == 0);
    shmkit_queue_shutdown(s.q);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(s.result, SHMKIT_ECLOSED);
    /* Blocking calls are refused; the loan can still be given back. */
    cr_assert_eq(shmkit_queue_put(s.q, "y", 1, NULL), SHMKIT_ECLOSED);
    cr_assert_eq(shmkit_queue_release(s.q, p), 0);
    drop(s.q);
}

/* ---- SHMKIT_QUEUE_TRY, and waking without spinning ----------------------- */

struct holder {
    shmkit_mutex *m;
    int held[2], go[2];
};

static void *hold_mutex(void *arg)
{
    struct holder *h = arg;
    char c;

    if (shmkit_mutex_lock(h->m) != 0 || write(h->held[1], "x", 1) != 1 ||
        read(h->go[0], &c, 1) != 1)
        return (void *)1;
    return (void *)(intptr_t)shmkit_mutex_unlock(h->m);
}

Test(queue, try_never_waits_not_even_for_the_mutex)
{
    shmkit_queue *q = make("try", 1 << 12, 0);
    struct holder h;
    pthread_t t;
    char buf[16];
    const char *msg;
    size_t len;
    void *ret;

    /* Empty: -EAGAIN, and the previous error message stays. */
    cr_assert_eq(shmkit_queue_put(q, buf, 1 << 13, SHMKIT_NOWAIT), -EMSGSIZE);
    msg = strdup(shmkit_last_error());
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_QUEUE_TRY),
                 -EAGAIN);
    cr_assert_str_eq(shmkit_last_error(), msg);
    free((void *)msg);
    cr_assert_eq(shmkit_queue_put(q, "a", 1, SHMKIT_QUEUE_TRY), 0);
    /* The queue's mutex (at offset 64 of the block) held by another
     * thread: a try answers at once; the others would wait for it. */
    h.m = (shmkit_mutex *)((char *)shmkit_block_data(shmkit_queue_block(q)) +
                           64);
    cr_assert_eq(pipe(h.held), 0);
    cr_assert_eq(pipe(h.go), 0);
    cr_assert_eq(pthread_create(&t, NULL, hold_mutex, &h), 0);
    cr_assert_eq(read(h.held[0], buf, 1), 1);
    cr_assert_eq(shmkit_queue_put(q, "b", 1, SHMKIT_QUEUE_TRY), -EAGAIN);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_QUEUE_TRY),
                 -EAGAIN);
    cr_assert_eq(write(h.go[1], "x", 1), 1);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_QUEUE_TRY),
                 0);
    cr_assert(len == 1 && buf[0] == 'a');
    for (int i = 0; i < 2; i++) {
        close(h.held[i]);
        close(h.go[i]);
    }
    drop(q);
}

struct releaser {
    shmkit_queue *q;
    const void *p;
    int result;
};

static void *release_it(void *arg)
{
    struct releaser *r = arg;

    r->result = shmkit_queue_release(r->q, r->p);
    return NULL;
}

/* Release is one atomic store (TAKEN -> DONE), without the queue's mutex:
 * it returns while another thread holds the mutex (it waited for it
 * before: the bounded join fails). The bytes count as free at
 * once (stat and parse count from the first record not released), and a
 * producer finding the ring full moves head past released records itself. */
Test(queue, release_takes_no_lock_and_the_next_put_reclaims)
{
    shmkit_queue *q = make("rel", 256, 0);
    shmkit_block *b = shmkit_queue_block(q);
    shmkit_queue_info in;
    struct holder h;
    struct releaser rel;
    struct timespec d;
    char big[200] = {0}, buf[256];
    pthread_t t, tr;
    size_t len;
    void *ret;
    int joined;

    /* One 200-byte message fills the 256-byte ring (16 + 208 bytes). */
    cr_assert_eq(shmkit_queue_put(q, big, sizeof big, SHMKIT_NOWAIT), 0);
    cr_assert_eq(shmkit_queue_put(q, big, 17, SHMKIT_NOWAIT), -EAGAIN);
    rel.q = q;
    rel.result = 1;
    cr_assert_eq(shmkit_queue_peek(q, &rel.p, &len, SHMKIT_NOWAIT), 0);
    h.m = (shmkit_mutex *)((char *)shmkit_block_data(b) + 64);
    cr_assert_eq(pipe(h.held), 0);
    cr_assert_eq(pipe(h.go), 0);
    cr_assert_eq(pthread_create(&t, NULL, hold_mutex, &h), 0);
    cr_assert_eq(read(h.held[0], buf, 1), 1);
    cr_assert_eq(pthread_create(&tr, NULL, release_it, &rel), 0);
    cr_assert_eq(clock_gettime(CLOCK_REALTIME, &d), 0);
    d.tv_sec += 5;
    joined = pthread_timedjoin_np(tr, NULL, &d);
    /* Nobody has moved head yet: the mapping says released. */
    cr_assert_eq(shmkit_queue_parse(shmkit_block_data(b), shmkit_block_size(b),
                                    &in), 0);
    cr_assert_eq(write(h.go[1], "x", 1), 1);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_null(ret);
    if (joined)
        cr_assert_eq(pthread_join(tr, NULL), 0);
    cr_assert_eq(joined, 0, "release waited for the mutex");
    cr_assert_eq(rel.result, 0, "%s", shmkit_last_error());
    cr_assert_eq(in.bytes_used, 0);
    cr_assert_eq(in.depth + in.loaned + in.reserved, 0);
    /* The ring reads full by head and tail; the put reclaims and fits. */
    cr_assert_eq(shmkit_queue_put(q, big, sizeof big, SHMKIT_NOWAIT), 0, "%s",
                 shmkit_last_error());
    stat_of(q, &in);
    cr_assert_eq(in.depth, 1);
    cr_assert_eq(in.bytes_used, 224);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT), 0);
    cr_assert_eq(len, sizeof big);
    stat_of(q, &in);
    cr_assert_eq(in.bytes_used, 0);
    for (int i = 0; i < 2; i++) {
        close(h.held[i]);
        close(h.go[i]);
    }
    drop(q);
}

/* A put starts over at the ring's start only when the ring is empty (a
 * record that is being written, waits or is loaned keeps its place, and
 * the next goes after it: no early wrap, which left a producer that
 * gathers reservations, or a consumer that gathers loans, only the room
 * before the first). 64 KiB ring, records of 20 KiB + 16. */
Test(queue, starts_over_only_when_empty)
{
    shmkit_queue *q = make("early", 1 << 16, 0);
    const size_t n = 20480, rec = 16 + 20480;
    const void *pa, *pb, *p;
    void *wa, *wb, *wc;
    char buf[1];
    size_t len;

    cr_assert_eq(shmkit_queue_reserve(q, n, &wa, NULL), 0);
    cr_assert_eq(shmkit_queue_commit(q, wa, n), 0);
    cr_assert_eq(shmkit_queue_peek(q, &pa, &len, NULL), 0);
    /* A is loaned at the start: B goes after it. */
    cr_assert_eq(shmkit_queue_reserve(q, n, &wb, NULL), 0);
    cr_assert_eq((char *)wb - (char *)wa, (ptrdiff_t)rec);
    cr_assert_eq(shmkit_queue_commit(q, wb, n), 0);
    cr_assert_eq(shmkit_queue_release(q, pa), 0);
    cr_assert_eq(shmkit_queue_peek(q, &pb, &len, NULL), 0);
    cr_assert_eq(pb, wb);
    /* Only B in the ring, loaned: C goes after it. */
    cr_assert_eq(shmkit_queue_reserve(q, n, &wc, NULL), 0);
    cr_assert_eq((char *)wc - (char *)wa, (ptrdiff_t)(2 * rec),
                 "C at offset %td, not after B", (char *)wc - (char *)wa);
    cr_assert_eq(shmkit_queue_commit(q, wc, n), 0);
    cr_assert_eq(shmkit_queue_release(q, pb), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    cr_assert_eq(shmkit_queue_release(q, p), 0);
    /* Empty: D starts over at the start; E, reserved, goes after D. */
    cr_assert_eq(shmkit_queue_reserve(q, n, &wc, NULL), 0);
    cr_assert_eq(wc, wa);
    cr_assert_eq(shmkit_queue_commit(q, wc, n), 0);
    cr_assert_eq(shmkit_queue_peek(q, &pa, &len, NULL), 0);
    cr_assert_eq(shmkit_queue_reserve(q, n, &wb, NULL), 0);
    cr_assert_eq((char *)wb - (char *)wa, (ptrdiff_t)rec);
    cr_assert_eq(shmkit_queue_release(q, pa), 0);
    /* Only E (being written) in the ring: F goes after it, not to the
     * start, and G fits behind F's pad at the start. */
    cr_assert_eq(shmkit_queue_reserve(q, n, &wc, NULL), 0);
    cr_assert_eq((char *)wc - (char *)wa, (ptrdiff_t)(2 * rec),
                 "F at offset %td, not after E", (char *)wc - (char *)wa);
    cr_assert_eq(shmkit_queue_commit(q, wb, n), 0);
    cr_assert_eq(shmkit_queue_commit(q, wc, n), 0);
    cr_assert_eq(shmkit_queue_put(q, wa, n, SHMKIT_NOWAIT), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
        cr_assert_eq(len, n);
        cr_assert_eq(p, i == 0 ? (const void *)wb
                        : i == 1 ? (const void *)wc
                                 : (const void *)wa);
        cr_assert_eq(shmkit_queue_release(q, p), 0);
    }
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT),
                 -EAGAIN);
    drop(q);
}

/* Page faults the populate calls took (getrusage counts those too). */
static long populate_faults;
static int (*real_populate)(void *, size_t, bool);

static long minflt(void)
{
    struct rusage r;

    return getrusage(RUSAGE_SELF, &r) == 0 ? r.ru_minflt : -1000000;
}

static int faults_populate(void *addr, size_t len, bool write)
{
    long f = minflt();
    int r = real_populate(addr, len, write);

    populate_faults += minflt() - f;
    return r;
}

/* A forked child inherits the ring's mapping but no page table entries:
 * it populates the ring a chunk at a time, ahead of the records it
 * writes and reads, so its messages pay no page faults (without that,
 * every first touch of a ring page faults: 15 puts of 60 KiB over a
 * 1 MiB ring, ~225). Counted: the child's faults but those its populate
 * calls took. The first put and get absorb the child's own first touches
 * (its stack is copy-on-write). */
Test(queue, a_forked_child_pays_no_page_faults)
{
    static const char msg[60 << 10];
    shmkit_queue *q = make("forkmap", 1 << 20, 0);
    long faults = -1;
    int fd[2];
    pid_t pid;

    cr_assert_eq(pipe(fd), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const void *p;
        long f0, p0;
        size_t len;
        int i;

        real_populate = shmkit__os.populate;
        shmkit__os.populate = faults_populate;
        CHILD_CHECK(shmkit_queue_put(q, msg, sizeof msg, NULL) == 0, 2);
        CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 3);
        CHILD_CHECK(shmkit_queue_release(q, p) == 0, 4);
        f0 = minflt();
        p0 = populate_faults;
        for (i = 0; i < 15; i++)
            CHILD_CHECK(shmkit_queue_put(q, msg, sizeof msg, SHMKIT_NOWAIT) == 0,
                        6);
        for (i = 0; i < 15; i++) {
            CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 7);
            CHILD_CHECK(shmkit_queue_release(q, p) == 0, 8);
        }
        faults = minflt() - f0 - (populate_faults - p0);
        CHILD_CHECK(write(fd[1], &faults, sizeof faults) == sizeof faults, 10);
        _exit(0);
    }
    tu_wait_ok(pid);
    cr_assert_eq(read(fd[0], &faults, sizeof faults), (ssize_t)sizeof faults);
    /* 64 leaves room for a sanitizer's shadow pages. */
    cr_assert_lt(faults, 64, "%ld page faults", faults);
    close(fd[0]);
    close(fd[1]);
    drop(q);
}

/* One CPU online: waiters never spin, so every wake-up is a futex wake
 * (with several CPUs most are absorbed by the spin). Both directions: the
 * consumer waits for data, the producer for room in a 4-message ring. */
Test(queue, wakes_without_spinning_on_one_cpu)
{
    shmkit_queue *q = make("one_cpu", 1 << 12, 4);
    struct timespec d;
    int go[2];
    pid_t pid;
    char c, buf[16];
    size_t len;

    shmkit__os.cpus_online = one_cpu;
    cr_assert_eq(pipe(go), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmkit_queue *a;
        int i;

        CHILD_CHECK(shmkit_queue_attach(&a, tu_name("one_cpu"), 0) == 0, 2);
        CHILD_CHECK(write(go[1], "x", 1) == 1, 3);
        for (i = 0; i < 2000; i++) {
            shmkit_deadline(&d, 20);
            CHILD_CHECK(shmkit_queue_get(a, buf, sizeof buf, &len, &d) == 0, 4);
            CHILD_CHECK(len == sizeof i && memcmp(buf, &i, len) == 0, 5);
        }
        _exit(shmkit_queue_close(a) == 0 ? 0 : 7);
    }
    cr_assert_eq(read(go[0], &c, 1), 1);
    for (int i = 0; i < 2000; i++) {
        shmkit_deadline(&d, 20);
        cr_assert_eq(shmkit_queue_put(q, &i, sizeof i, &d), 0, "%d: %s", i,
                     shmkit_last_error());
    }
    tu_wait_ok(pid);
    shmkit__os_reset();
    close(go[0]);
    close(go[1]);
    drop(q);
}

Test(queue, a_malformed_deadline_is_einval)
{
    shmkit_queue *q = make("baddl", 4096, 0);
    struct timespec bad[2] = {{0, -1}, {0, 1000000000L}};
    char buf[8];
    size_t len;

    for (int i = 0; i < 2; i++) {
        cr_assert_eq(shmkit_queue_put(q, "x", 1, &bad[i]), -EINVAL, "%d", i);
        cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, &bad[i]),
                     -EINVAL, "%d", i);
    }
    /* Nothing went in. */
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT),
                 -EAGAIN);
    drop(q);
}
