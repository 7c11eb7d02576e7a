/*
 * test_queue_hostile.c - a peer scribbles on a queue's header and ring.
 *
 * Thousands of times: restore a queue with messages, reservations and
 * loans in it, overwrite 1 to 8 random bytes (or 32-bit words with
 * boundary values) anywhere except the mutex (whose own robustness is the
 * lock's business), then run every operation without sleeping. Each must
 * return 0 or an error code - never crash, read or write outside the
 * block (ASan in the sanitizer run), or hang (the suite's timeout) - and
 * shmkit_queue_parse must agree with attach about what is a queue.
 *
 * The mutex's one word that matters to the queue: a peer writes the id of
 * a live thread that will never unlock into it. Calls with a deadline must
 * still return by their deadline (NOWAIT: -EAGAIN after a short grace),
 * and once that thread is gone the next locker repairs the queue.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(queue_hostile, .init = tu_setup, .fini = tu_cleanup, .timeout = 300);

#define MUTEX_AT 64
#define MUTEX_END 128
#define COUNT_AT 144 /* the message count, under the mutex */

/* Every operation once, none allowed to sleep. Returns how many failed
 * with SHMKIT_ECORRUPT (for the log). */
static int exercise(shmkit_queue *q)
{
    const unsigned char *lo = shmkit_block_data(shmkit_queue_block(q));
    const unsigned char *hi = lo + shmkit_block_size(shmkit_queue_block(q));
    static unsigned char buf[1 << 14];
    struct iovec v[8], in[3] = {{buf, 10}, {buf, 0}, {buf, 300}};
    shmkit_queue_info info;
    const void *p;
    size_t len, got, done;
    void *w;
    int r, corrupt = 0;

#define OK(call) \
    do { \
        r = (call); \
        cr_assert(r <= 0, "%s returned %d", #call, r); \
        corrupt += r == SHMKIT_ECORRUPT; \
    } while (0)
    OK(shmkit_queue_stat(q, &info));
    OK(shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT));
    OK(shmkit_queue_peek(q, &p, &len, SHMKIT_NOWAIT));
    if (r == 0) {
        cr_assert_leq(len, shmkit_queue_max_message(q));
        cr_assert((const unsigned char *)p >= lo + SHMKIT_QUEUE_HEADER &&
                  (const unsigned char *)p + len <= hi,
                  "peek: %zu bytes at offset %td of a %td-byte block", len,
                  (const unsigned char *)p - lo, hi - lo);
        memcpy(buf, p, len);
        OK(shmkit_queue_release(q, p));
    }
    OK(shmkit_queue_put(q, buf, 100, SHMKIT_NOWAIT));
    OK(shmkit_queue_reserve(q, 200, &w, SHMKIT_NOWAIT));
    if (r == 0) {
        cr_assert((unsigned char *)w + 200 <= hi, "reserve: past the end");
        memset(w, 1, 200);
        OK(shmkit_queue_commit(q, w, 50));
    }
    OK(shmkit_queue_put_many(q, in, 3, &done, SHMKIT_NOWAIT));
    OK(shmkit_queue_get_many(q, buf, sizeof buf, v, 8, &got, SHMKIT_NOWAIT));
    if (r == 0)
        for (size_t i = 0; i < got; i++)
            cr_assert((unsigned char *)v[i].iov_base + v[i].iov_len <=
                      buf + sizeof buf);
#undef OK
    return corrupt;
}

/* Overwrites 1 to 8 places: random bytes anywhere, or boundary values
 * and record states into the 32-bit fields of record headers (16-byte
 * aligned in the ring) and of the header - never the mutex. */
static void scribble(unsigned char *p, size_t size, unsigned *seed)
{
    static const uint32_t words[] = {0, 1, 15, 16, 100, 1000, 2000, 4000,
                                     4080, 0x7fffffff, 0x80000000u,
                                     0xffffffffu, 0x52, 0x59, 0x54, 0x44,
                                     0x50};
    int n = 1 + rand_r(seed) % 8, i;

    for (i = 0; i < n; i++) {
        size_t at = (size_t)rand_r(seed) % size;

        if (rand_r(seed) % 2) {
            uint32_t w = words[rand_r(seed) % (sizeof words / sizeof *words)];

            at &= ~(size_t)3;
            if (rand_r(seed) % 2 && at >= SHMKIT_QUEUE_HEADER)
                at = at - (at - SHMKIT_QUEUE_HEADER) % 16 + 4 * (rand_r(seed) % 2);
            if (at + 4 > size || (at + 4 > MUTEX_AT && at < MUTEX_END))
                continue;
            memcpy(p + at, &w, 4);
        } else if (at < MUTEX_AT || at >= MUTEX_END) {
            p[at] = (unsigned char)rand_r(seed);
        }
    }
}

Test(queue_hostile, scribbled_header_and_ring)
{
    const char *env = getenv("SHMKIT_QUEUE_HOSTILE");
    unsigned rounds = env ? (unsigned)atoi(env) : 20000, i;
    unsigned seed = (unsigned)time(NULL), corrupt = 0, refused = 0;
    unsigned char msg[700], *data, *snap;
    shmkit_queue *q, *a;
    const void *p;
    size_t size, len;
    void *w;
    int r;

    cr_log_info("hostile: %u rounds, seed %u", rounds, seed);
    cr_assert_eq(shmkit_queue_create(&q, tu_name("h"), 4096, 0, 0), 0);
    memset(msg, 7, sizeof msg);
    /* Ring content: a wrapped ring with every record state in it. */
    for (i = 0; i < 5; i++)
        cr_assert_eq(shmkit_queue_put(q, msg, 600, NULL), 0);
    for (i = 0; i < 4; i++)
        cr_assert_eq(shmkit_queue_get(q, msg, sizeof msg, &len, NULL), 0);
    for (i = 0; i < 3; i++)
        cr_assert_eq(shmkit_queue_put(q, msg, 100 + i * 200, NULL), 0);
    cr_assert_eq(shmkit_queue_reserve(q, 300, &w, NULL), 0);
    cr_assert_eq(shmkit_queue_peek(q, &p, &len, NULL), 0);
    data = shmkit_block_data(shmkit_queue_block(q));
    size = shmkit_block_size(shmkit_queue_block(q));
    snap = malloc(size);
    cr_assert(snap);
    memcpy(snap, data, size);
    for (i = 0; i < rounds; i++) {
        memcpy(data, snap, size);
        scribble(data, size, &seed);
        r = shmkit_queue_parse(data, size, NULL);
        cr_assert(r == 0 || r == SHMKIT_EKIND || r == SHMKIT_EVERSION ||
                  r == SHMKIT_ECORRUPT || r == SHMKIT_ETRUNCATED,
                  "parse: %s", shmkit_errname(r));
        if (shmkit_queue_attach(&a, tu_name("h"), 0) != 0) {
            refused++;
            continue;
        }
        corrupt += exercise(a) > 0;
        cr_assert_eq(shmkit_queue_close(a), 0);
    }
    cr_log_info("hostile: %u refused at attach, %u saw SHMKIT_ECORRUPT",
                refused, corrupt);
    /* Both outcomes happened: the test reached the checks it means to. */
    cr_assert_gt(refused, 0);
    cr_assert_gt(corrupt, 0);
    memcpy(data, snap, size);
    free(snap);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* The message count (COUNT_AT) of a queue made with a limit,
 * scribbled high: a put it refuses checks the count against the records
 * [head, tail) has room for and answers SHMKIT_ECORRUPT, at once, instead
 * of refusing (or, blocking, waiting) for ever - an empty ring has nothing
 * a consumer could take to bring the count down. A true count still
 * refuses. */
Test(queue_hostile, a_scribbled_message_count_is_corrupt_not_full)
{
    shmkit_queue *q;
    unsigned char *p;
    struct timespec dl;
    uint32_t n;
    char buf[16];
    size_t len;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("cnt"), 4096, 4, 0), 0);
    p = shmkit_block_data(shmkit_queue_block(q));
    cr_assert_eq(shmkit_queue_put(q, "a", 1, NULL), 0);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0);
    n = 1000; /* on an empty ring */
    memcpy(p + COUNT_AT, &n, 4);
    cr_assert_eq(shmkit_queue_put(q, "b", 1, SHMKIT_NOWAIT), SHMKIT_ECORRUPT);
    shmkit_deadline(&dl, 5);
    cr_assert_eq(shmkit_queue_put(q, "b", 1, &dl), SHMKIT_ECORRUPT);
    n = 0;
    memcpy(p + COUNT_AT, &n, 4);
    cr_assert_eq(shmkit_queue_put(q, "b", 1, NULL), 0);
    n = 4; /* at the limit with one record */
    memcpy(p + COUNT_AT, &n, 4);
    cr_assert_eq(shmkit_queue_put(q, "c", 1, NULL), SHMKIT_ECORRUPT);
    n = 1;
    memcpy(p + COUNT_AT, &n, 4);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmkit_queue_put(q, "d", 1, NULL), 0);
    /* Full by a true count: refused, not corrupt. */
    cr_assert_eq(shmkit_queue_put(q, "e", 1, SHMKIT_NOWAIT), -EAGAIN);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* The mutex's futex word: at 16 in the mutex (struct shmkit__mutex_layout
 * in sync_inline.h), the mutex at 64 in the header. */
#define MUTEX_WORD_AT (MUTEX_AT + 16)

/* Child exit codes: 0 fine, else the step that failed. */
static int calls_by_deadline(shmkit_queue *q)
{
    unsigned char buf[64];
    double t0 = tu_now_s();
    struct timespec dl;
    shmkit_queue_info info;
    size_t len;
    void *w;

    if (shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT) != -EAGAIN)
        return 10;
    if (shmkit_queue_put(q, "x", 1, SHMKIT_NOWAIT) != -EAGAIN)
        return 11;
    if (shmkit_queue_reserve(q, 8, &w, SHMKIT_NOWAIT) != -EAGAIN)
        return 12;
    if (shmkit_queue_stat(q, &info) != -EAGAIN)
        return 13;
    shmkit_deadline(&dl, 0.3);
    if (shmkit_queue_get(q, buf, sizeof buf, &len, &dl) != -ETIMEDOUT)
        return 14;
    /* 4 x 0.1 s of grace + 0.3 s: generous for a loaded machine. */
    if (tu_now_s() - t0 > 10.0)
        return 15;
    return 0;
}

Test(queue_hostile, mutex_held_by_a_live_thread_for_ever_respects_deadlines)
{
    unsigned char *data, buf[64];
    int hold[2], st;
    shmkit_queue *q;
    uint32_t word;
    size_t len;
    pid_t peer, pid;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("held"), 4096, 0, 0), 0);
    cr_assert_eq(shmkit_queue_put(q, "kept", 4, NULL), 0);
    /* A live process that never unlocks: it waits for the pipe's end. */
    cr_assert_eq(pipe(hold), 0);
    peer = fork();
    cr_assert_geq(peer, 0);
    if (peer == 0) {
        char c;
        close(hold[1]);
        _exit(read(hold[0], &c, 1) == 0 ? 0 : 1);
    }
    close(hold[0]);
    data = shmkit_block_data(shmkit_queue_block(q));
    word = (uint32_t)peer;
    memcpy(data + MUTEX_WORD_AT, &word, sizeof word);
    /* In a child, so that a call that never returns is a SIGALRM death
     * the status shows, not a suite timeout. */
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        _exit(calls_by_deadline(q));
    }
    st = tu_wait_status(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "calls with a deadline: %s %d",
              WIFEXITED(st) ? "exit" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    /* The "holder" goes: the word names a dead thread, the next locker
     * takes the mutex over, repairs, and the message is still there. */
    close(hold[1]);
    tu_wait_ok(peer);
    cr_assert_eq(shmkit_queue_get(q, buf, sizeof buf, &len, NULL), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(buf, "kept", 4), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}
