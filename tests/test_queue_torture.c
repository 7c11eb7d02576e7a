/*
 * test_queue_torture.c - the queue under many processes and under SIGKILL.
 *
 * mpmc: 2 producers x 2 consumers (one of each copying, one zero-copy or
 * batched) move 100,000 messages of random sizes; every message arrives
 * exactly once, intact (checksummed), and each consumer sees each
 * producer's messages in the order they were put.
 *
 * kill_loop: children produce or consume and are SIGKILLed at random
 * points - by the parent after a random number of messages, or by
 * themselves between reserve and commit, between peek and release, or
 * while holding the queue's mutex - SHMKIT_QUEUE_KILLS times (default
 * 300; the long run uses thousands). The queue must keep working, deliver
 * nothing torn, deliver every committed message, deliver again what a
 * consumer killed between peek and release held, and deliver a message
 * twice only then (the documented give-back rule).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(queue_torture, .init = tu_setup, .fini = tu_cleanup, .timeout = 600);

/* ---- messages that check themselves -------------------------------------- */

struct msg_head {
    uint32_t id;  /* who made it */
    uint32_t len; /* whole message */
    uint32_t sum; /* of the payload */
    uint32_t pad;
};

static uint32_t payload_sum(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Writes message `id` of `len` bytes (>= sizeof head) into buf. */
static void msg_fill(unsigned char *buf, uint32_t id, size_t len)
{
    struct msg_head h = {id, (uint32_t)len, 0, 0};
    size_t i;

    for (i = sizeof h; i < len; i++)
        buf[i] = (unsigned char)(id * 31 + i);
    h.sum = payload_sum(buf + sizeof h, len - sizeof h);
    memcpy(buf, &h, sizeof h);
}

/* The message's id, or -1 if it is torn. */
static int64_t msg_check(const void *p, size_t len)
{
    const unsigned char *b = p;
    struct msg_head h;
    size_t i;

    if (len < sizeof h)
        return -1;
    memcpy(&h, b, sizeof h);
    if (h.len != len || payload_sum(b + sizeof h, len - sizeof h) != h.sum)
        return -1;
    for (i = sizeof h; i < len; i++)
        if (b[i] != (unsigned char)(h.id * 31 + i))
            return -1;
    return h.id;
}

static size_t rand_len(unsigned *seed, size_t max)
{
    return sizeof(struct msg_head) + (size_t)rand_r(seed) % max;
}

/* ---- mpmc ------------------------------------------------------------------ */

#define MP_PRODUCERS 2
#define MP_CONSUMERS 2
#define MP_PER 50000
#define MP_STOP 0xffffffffu

/* Delivery counts live in a block all consumers share. */
static uint8_t *seen_map(shmkit_block **b, bool create)
{
    size_t n = MP_PRODUCERS * MP_PER;

    if (create)
        cr_assert_eq(shmkit_block_create(b, tu_name("seen"), n, 0), 0);
    else if (shmkit_block_attach(b, tu_name("seen"), 0) != 0)
        return NULL;
    return shmkit_block_data(*b);
}

static void producer(int p)
{
    unsigned seed = (unsigned)p * 7919u + 1;
    shmkit_queue *q;
    uint32_t j;

    CHILD_CHECK(shmkit_queue_attach(&q, tu_name("mpmc"), 0) == 0, 2);
    for (j = 0; j < MP_PER;) {
        if (p == 0) { /* zero copy */
            size_t len = rand_len(&seed, 1500);
            void *w;

            CHILD_CHECK(shmkit_queue_reserve(q, len, &w, NULL) == 0, 3);
            msg_fill(w, (uint32_t)p << 24 | j, len);
            CHILD_CHECK(shmkit_queue_commit(q, w, len) == 0, 4);
            j++;
        } else { /* batches of up to 16, copied */
            struct iovec v[16];
            unsigned char many[16][600];
            size_t k, n = 1 + (size_t)rand_r(&seed) % 16, done;

            for (k = 0; k < n && j + k < MP_PER; k++) {
                v[k].iov_len = rand_len(&seed, 580);
                v[k].iov_base = many[k];
                msg_fill(many[k], (uint32_t)p << 24 | (uint32_t)(j + k),
                         v[k].iov_len);
            }
            CHILD_CHECK(shmkit_queue_put_many(q, v, k, &done, NULL) == 0, 5);
            CHILD_CHECK(done == k, 6);
            j += (uint32_t)k;
        }
    }
    _exit(shmkit_queue_close(q) == 0 ? 0 : 7);
}

/* Records one delivery; false at the stop message. */
static bool consume_one(const void *p, size_t len, uint8_t *seen,
                        int64_t *last)
{
    int64_t id;
    uint32_t prod, seq;

    if (len == sizeof(uint32_t) && memcmp(p, &(uint32_t){MP_STOP}, 4) == 0)
        return false;
    id = msg_check(p, len);
    CHILD_CHECK(id >= 0, 10);
    prod = (uint32_t)id >> 24;
    seq = (uint32_t)id & 0xffffff;
    CHILD_CHECK(prod < MP_PRODUCERS && seq < MP_PER, 11);
    CHILD_CHECK((int64_t)seq > last[prod], 12); /* one producer's order */
    last[prod] = seq;
    __atomic_fetch_add(&seen[prod * MP_PER + seq], 1, __ATOMIC_RELAXED);
    return true;
}

static void consumer(int c)
{
    int64_t last[MP_PRODUCERS] = {-1, -1};
    static unsigned char buf[1 << 16];
    shmkit_block *sb;
    shmkit_queue *q;
    uint8_t *seen;
    bool more = true;

    CHILD_CHECK(shmkit_queue_attach(&q, tu_name("mpmc"), 0) == 0, 2);
    seen = seen_map(&sb, false);
    CHILD_CHECK(seen, 3);
    while (more) {
        if (c == 0) { /* zero copy */
            const void *p;
            size_t len;

            CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 4);
            more = consume_one(p, len, seen, last);
            CHILD_CHECK(shmkit_queue_release(q, p) == 0, 5);
        } else { /* batches */
            struct iovec v[32];
            size_t got, i;

            CHILD_CHECK(shmkit_queue_get_many(q, buf, sizeof buf, v, 32, &got,
                                              NULL) == 0, 6);
            for (i = 0; i < got; i++) {
                if (consume_one(v[i].iov_base, v[i].iov_len, seen, last))
                    continue;
                if (!more) /* a second stop: it is another consumer's */
                    CHILD_CHECK(shmkit_queue_put(q, v[i].iov_base, 4,
                                                 NULL) == 0, 8);
                more = false;
            }
        }
    }
    shmkit_block_close(sb);
    _exit(shmkit_queue_close(q) == 0 ? 0 : 7);
}

/* Waits for the producers; if any child fails first (a consumer that saw
 * a torn or misordered message leaves the producers blocked on a full
 * ring), kills them all and fails at once instead of hanging. */
static void wait_producers(const pid_t *prod, const pid_t *cons)
{
    int left = MP_PRODUCERS, st, k;
    pid_t pid;

    while (left > 0) {
        pid = wait(&st);
        cr_assert_gt(pid, 0);
        for (k = 0; k < MP_PRODUCERS; k++)
            left -= pid == prod[k];
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
            continue;
        for (k = 0; k < MP_PRODUCERS; k++)
            kill(prod[k], SIGKILL);
        for (k = 0; k < MP_CONSUMERS; k++)
            kill(cons[k], SIGKILL);
        while (wait(NULL) > 0)
            ;
        cr_assert_fail("child %d failed: status 0x%x", (int)pid, st);
    }
}

Test(queue_torture, mpmc_exactly_once)
{
    pid_t prod[MP_PRODUCERS], cons[MP_CONSUMERS];
    shmkit_block *sb;
    shmkit_queue *q;
    uint8_t *seen = seen_map(&sb, true);
    uint32_t stop = MP_STOP;
    size_t i;
    int k;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("mpmc"), 1 << 16, 0, 0), 0);
    for (k = 0; k < MP_CONSUMERS; k++)
        if ((cons[k] = fork()) == 0)
            consumer(k);
    for (k = 0; k < MP_PRODUCERS; k++)
        if ((prod[k] = fork()) == 0)
            producer(k);
    wait_producers(prod, cons);
    /* One stop per consumer, after every message (a batch consumer that
     * takes two puts one back). */
    for (k = 0; k < MP_CONSUMERS; k++)
        cr_assert_eq(shmkit_queue_put(q, &stop, sizeof stop, NULL), 0);
    for (k = 0; k < MP_CONSUMERS; k++)
        tu_wait_ok(cons[k]);
    for (i = 0; i < MP_PRODUCERS * MP_PER; i++)
        cr_assert_eq(seen[i], 1, "message %zu of producer %zu seen %u times",
                     i % MP_PER, i / MP_PER, seen[i]);
    cr_assert_eq(shmkit_block_unlink(sb), 0);
    cr_assert_eq(shmkit_block_close(sb), 0);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
}

/* ---- kill loop ---------------------------------------------------------- */

enum { EV_COMMITTED = 1, EV_TAKEN = 2 };
enum { M_EXTERNAL, M_MIDWAY, M_MUTEX, M_FINISH, M_MODES };

struct event {
    uint32_t kind, id;
};

static void report(int fd, uint32_t kind, uint32_t id)
{
    struct event e = {kind, id};

    CHILD_CHECK(write(fd, &e, sizeof e) == sizeof e, 20);
}

static void die_holding_mutex(shmkit_queue *q)
{
    shmkit_mutex *m = (shmkit_mutex *)((char *)shmkit_block_data(
                                           shmkit_queue_block(q)) + 64);

    int r = shmkit_mutex_lock(m);

    CHILD_CHECK(r == 0 || r == SHMKIT_EOWNERDEAD, 21);
    raise(SIGKILL);
}

static void kill_producer(uint32_t it, int mode, unsigned r, int fd)
{
    unsigned char buf[1024];
    unsigned seed = it;
    shmkit_queue *q;
    uint32_t j;
    void *w;

    CHILD_CHECK(shmkit_queue_attach(&q, tu_name("kill"), 0) == 0, 22);
    for (j = 0; mode == M_EXTERNAL || j < r; j++) {
        size_t len = rand_len(&seed, 900);

        if (j % 2) {
            CHILD_CHECK(shmkit_queue_reserve(q, len, &w, NULL) == 0, 23);
            msg_fill(w, it << 12 | (j & 0x7ff), len);
            CHILD_CHECK(shmkit_queue_commit(q, w, len) == 0, 24);
        } else {
            msg_fill(buf, it << 12 | (j & 0x7ff), len);
            CHILD_CHECK(shmkit_queue_put(q, buf, len, NULL) == 0, 25);
        }
        report(fd, EV_COMMITTED, it << 12 | (j & 0x7ff));
    }
    if (mode == M_MIDWAY) {
        CHILD_CHECK(shmkit_queue_reserve(q, 800, &w, NULL) == 0, 26);
        msg_fill(w, it << 12 | 0x7ff, 800);
        memset(w, 0xee, 400); /* half written */
        raise(SIGKILL);
    }
    if (mode == M_MUTEX)
        die_holding_mutex(q);
    _exit(shmkit_queue_close(q) == 0 ? 0 : 27);
}

static void kill_consumer(int mode, unsigned r, int fd)
{
    shmkit_queue *q;
    const void *p;
    size_t len;
    unsigned j;
    int64_t id;

    CHILD_CHECK(shmkit_queue_attach(&q, tu_name("kill"), 0) == 0, 30);
    for (j = 0; mode == M_EXTERNAL || j < r; j++) {
        CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 31);
        id = msg_check(p, len);
        CHILD_CHECK(id >= 0, 32); /* torn */
        report(fd, EV_TAKEN, (uint32_t)id);
        CHILD_CHECK(shmkit_queue_release(q, p) == 0, 33);
    }
    if (mode == M_MIDWAY) {
        CHILD_CHECK(shmkit_queue_peek(q, &p, &len, NULL) == 0, 34);
        id = msg_check(p, len);
        CHILD_CHECK(id >= 0, 35);
        report(fd, EV_TAKEN, (uint32_t)id);
        raise(SIGKILL); /* holding the loan */
    }
    if (mode == M_MUTEX)
        die_holding_mutex(q);
    _exit(shmkit_queue_close(q) == 0 ? 0 : 36);
}

/* What the parent knows: per id, committed or not, and delivery count. */
struct ledger {
    uint8_t *committed, *delivered, *dup_ok, *again;
    size_t ids;
};

static void parent_put(shmkit_queue *q, struct ledger *l, uint32_t id,
                       unsigned *seed)
{
    unsigned char buf[1024];
    size_t len = rand_len(seed, 900);
    struct timespec d;

    msg_fill(buf, id, len);
    shmkit_deadline(&d, 20);
    /* May wait for a dead producer's reservation to be reaped. */
    cr_assert_eq(shmkit_queue_put(q, buf, len, &d), 0, "%s",
                 shmkit_last_error());
    l->committed[id] = 1;
}

/* Takes everything deliverable now (dead owners' loans given back). */
static void parent_drain(shmkit_queue *q, struct ledger *l)
{
    unsigned char buf[1024];
    size_t len;
    int64_t id;
    int r;

    while ((r = shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT)) == 0) {
        id = msg_check(buf, len);
        cr_assert_geq(id, 0, "torn message of %zu bytes", len);
        cr_assert_lt((size_t)id, l->ids);
        l->delivered[id]++;
    }
    cr_assert_eq(r, -EAGAIN, "%s", shmkit_last_error());
}

/* Runs one child to its end, reading its events; returns its status. */
static int run_child(uint32_t it, bool prod, int mode, unsigned r,
                     struct ledger *l)
{
    struct event e, last = {0, 0};
    unsigned events = 0;
    int fds[2], status;
    pid_t pid;

    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        if (prod)
            kill_producer(it, mode, r, fds[1]);
        kill_consumer(mode, r, fds[1]);
    }
    close(fds[1]);
    while (read(fds[0], &e, sizeof e) == sizeof e) {
        cr_assert_lt(e.id, l->ids);
        if (e.kind == EV_COMMITTED)
            l->committed[e.id] = 1;
        else
            l->delivered[e.id]++;
        last = e;
        if (mode == M_EXTERNAL && ++events == r)
            kill(pid, SIGKILL);
    }
    close(fds[0]);
    status = tu_wait_status(pid);
    if (!prod && WIFSIGNALED(status) && last.kind == EV_TAKEN)
        l->dup_ok[last.id] = 1; /* killed maybe before its release */
    if (!prod && mode == M_MIDWAY && last.kind == EV_TAKEN)
        l->again[last.id] = 1; /* killed holding it: must come back */
    return status;
}

Test(queue_torture, kill_loop)
{
    const char *env = getenv("SHMKIT_QUEUE_KILLS");
    uint32_t kills = env ? (uint32_t)atoi(env) : 300, it, id;
    unsigned seed = (unsigned)time(NULL), counts[2][M_MODES] = {{0}};
    struct ledger l;
    shmkit_queue *q;
    size_t i;

    cr_log_info("kill_loop: %u kills, seed %u", kills, seed);
    cr_assert_lt(kills, 1u << 19);
    l.ids = (size_t)(kills + 1) << 12;
    l.committed = calloc(l.ids, 1);
    l.delivered = calloc(l.ids, 1);
    l.dup_ok = calloc(l.ids, 1);
    l.again = calloc(l.ids, 1);
    cr_assert(l.committed && l.delivered && l.dup_ok && l.again);
    cr_assert_eq(shmkit_queue_create(&q, tu_name("kill"), 1 << 16, 0, 0), 0);
    for (it = 1; it <= kills; it++) {
        bool prod = rand_r(&seed) % 2;
        int mode = rand_r(&seed) % M_MODES, st;
        unsigned r = (unsigned)rand_r(&seed) % 20 + (mode == M_EXTERNAL);

        if (!prod) /* work for the consumer: more than it will take */
            for (id = 0; id < r + 2; id++)
                parent_put(q, &l, it << 12 | 0x800 | id, &seed);
        st = run_child(it, prod, mode, r, &l);
        if (mode == M_FINISH)
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "iteration %u: status 0x%x", it, st);
        else
            cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                      "iteration %u (%s, mode %d): status 0x%x", it,
                      prod ? "producer" : "consumer", mode, st);
        counts[prod][mode]++;
        parent_drain(q, &l);
    }
    /* Everything committed arrived; nothing arrived twice unless a killed
     * consumer held it. */
    for (i = 0; i < l.ids; i++) {
        if (l.committed[i])
            cr_assert_geq(l.delivered[i], 1, "id %zx committed, never delivered",
                          i);
        if (l.again[i])
            cr_assert_geq(l.delivered[i], 2, "id %zx: a dead consumer's loan "
                          "was not given back", i);
        if (l.delivered[i] > 1)
            cr_assert(l.dup_ok[i], "id %zx delivered %u times", i,
                      l.delivered[i]);
    }
    cr_log_info("producers killed ext/midway/mutex, finished: %u/%u/%u, %u; "
                "consumers %u/%u/%u, %u", counts[1][0], counts[1][1],
                counts[1][2], counts[1][3], counts[0][0], counts[0][1],
                counts[0][2], counts[0][3]);
    cr_assert_eq(shmkit_queue_unlink(q), 0);
    cr_assert_eq(shmkit_queue_close(q), 0);
    free(l.committed);
    free(l.delivered);
    free(l.dup_ok);
    free(l.again);
}
