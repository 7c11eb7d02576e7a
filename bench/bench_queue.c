/*
 * bench_queue.c - handing messages to another process through a shmkit
 * queue, beside the floor and the ways users do it today, in one run.
 *
 * Handoff with the reply (ping-pong, one producer and one consumer
 * process; 4 KiB and 64 MiB): the producer writes the message into shared
 * memory and wakes the consumer, which reads its first and last byte and
 * answers with 8 bytes; the figure is the time per round trip.
 *
 *   floor              memcpy into a shared mapping + futex wake; the
 *                      answer is a futex wake back (nothing less can do it)
 *   queue zero copy    reserve + memcpy + commit / peek + release; the
 *                      answer is an 8-byte put/get on a second queue
 *   queue put/get      put (copy in) / get (copy out into the consumer's
 *                      buffer: one more memcpy than the others)
 *   block per message  a new block per message (create, memcpy, the
 *                      consumer attaches it by name, unlinks it), the
 *                      wake-ups as in the floor: what a shmkit user writes
 *                      without a queue
 *   iceoryx            (when built with the Debian C binding) loan +
 *                      publish / take + release, with its RouDi daemon
 *                      started by this benchmark; see peers_iceoryx.c
 *
 * Throughput, 1 producer -> 1 consumer process, 4 KiB messages streamed
 * (no reply): put/get, zero copy, and put_many/get_many of 64.
 *
 * A dead peer's wake-up: a consumer blocked behind a producer's
 * reservation (its next message held back), the producer SIGKILLed as
 * soon as the consumer sleeps; the figure is the time from the kill to
 * the get's return. Reference: the same queue with its header rewritten
 * to layout version 1 (no liveness slots: the waiter re-checks in capped
 * slices, 1 ms doubling to 100 ms, so a longer sleep before the kill
 * costs more); then version 2 (the producer's liveness slot wakes it).
 *
 * The machine's core-to-core floor (--line-rtt): two processes, each
 * pinned to its own CPU (the first two it may use; -1 if it has fewer, or
 * if the round trips take over 2 s), hand one cache line back and forth (each spins
 * until the other wrote it), 200,000 round trips; prints the ns per
 * round trip and exits. Every message between processes moves cache
 * lines this way, so this bounds what any queue can do here; on a
 * virtual machine it also varies with where the host puts the virtual
 * CPUs (seen here: 63 to 100 ns, at times 300 to 1,500 ns for seconds
 * on end, which slows every multi-process figure of bench/run alike).
 * bench/run prints it before and after its benchmarks.
 *
 * Usage: bench_queue [--tsv] [--quick] [--rounds N] [--max-size BYTES]
 *                    [--no-iceoryx]
 *        bench_queue --line-rtt
 *   --tsv      the common format of bench/ (bench_util.h), read by bench/run
 *   --quick    a fifth of the operations per round
 *   --rounds N rounds of each row (5; at most 64), the 64 MiB handoff
 *              3N rounds (at most 64) of 4 handoffs each (--quick: 2)
 *   --max-size below 64 MiB leaves the 64 MiB handoff out
 *   --no-iceoryx leaves iceoryx out (its RouDi daemon's socket is one per
 *              machine: bench/run --smoke, run by the tests, says this)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#ifdef SHMKIT_BENCH_ICEORYX
#include "peers_iceoryx.h"
#endif
#include "shmkit.h"

static volatile unsigned char sink;
static int use_iox = 1; /* --no-iceoryx: leave the peer out */

static void die(const char *what)
{
    fprintf(stderr, "bench_queue: %s failed: %s\n", what, shmkit_last_error());
    exit(1);
}

/* ---- futex wake-ups in an anonymous shared mapping ---------------------- */

struct ctl {
    uint32_t ping, pong, stop, pad;
    uint64_t arg;
};

static void fwait(uint32_t *w, uint32_t old)
{
    while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == old)
        syscall(SYS_futex, w, FUTEX_WAIT, old, NULL, NULL, 0);
}

static void fbump(uint32_t *w)
{
    __atomic_fetch_add(w, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static struct ctl *ctl_new(size_t extra)
{
    void *p = mmap(NULL, sizeof(struct ctl) + extra, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

/* ---- contenders ---------------------------------------------------------- */

struct pp {
    size_t size;
    unsigned char *src;      /* the producer's message */
    struct ctl *ctl;         /* floor and block-per-message wake-ups */
    unsigned char *shared;   /* floor: the shared buffer after ctl */
    shmkit_queue *q, *reply; /* queue contenders */
    unsigned char *dst;      /* queue put/get: the consumer's buffer */
    char prefix[64];         /* block per message: names */
    pid_t child;
};

static void floor_serve(struct pp *p)
{
    uint32_t seen = 0;

    for (;;) {
        fwait(&p->ctl->ping, seen);
        seen = __atomic_load_n(&p->ctl->ping, __ATOMIC_ACQUIRE);
        if (p->ctl->stop)
            _exit(0);
        sink = p->shared[0] ^ p->shared[p->size - 1];
        fbump(&p->ctl->pong);
    }
}

static void floor_run(void *ctx, long n)
{
    struct pp *p = ctx;

    for (long i = 0; i < n; i++) {
        uint32_t old = __atomic_load_n(&p->ctl->pong, __ATOMIC_ACQUIRE);

        memcpy(p->shared, p->src, p->size);
        fbump(&p->ctl->ping);
        fwait(&p->ctl->pong, old);
    }
}

static void zc_serve(struct pp *p)
{
    uint64_t ok = 1;

    for (;;) {
        const void *m;
        size_t len;

        if (shmkit_queue_peek(p->q, &m, &len, NULL) < 0)
            _exit(2);
        if (len == 0)
            _exit(0);
        sink = ((const unsigned char *)m)[0] ^ ((const unsigned char *)m)[len - 1];
        if (shmkit_queue_release(p->q, m) < 0 ||
            shmkit_queue_put(p->reply, &ok, sizeof ok, NULL) < 0)
            _exit(3);
    }
}

static void zc_run(void *ctx, long n)
{
    struct pp *p = ctx;
    uint64_t ok;
    size_t len;
    void *w;

    for (long i = 0; i < n; i++) {
        if (shmkit_queue_reserve(p->q, p->size, &w, NULL) < 0)
            die("reserve");
        memcpy(w, p->src, p->size);
        if (shmkit_queue_commit(p->q, w, p->size) < 0 ||
            shmkit_queue_get(p->reply, &ok, sizeof ok, &len, NULL) < 0)
            die("commit/get");
    }
}

static void copy_serve(struct pp *p)
{
    uint64_t ok = 1;
    size_t len;

    for (;;) {
        if (shmkit_queue_get(p->q, p->dst, p->size, &len, NULL) < 0)
            _exit(2);
        if (len == 0)
            _exit(0);
        sink = p->dst[0] ^ p->dst[len - 1];
        if (shmkit_queue_put(p->reply, &ok, sizeof ok, NULL) < 0)
            _exit(3);
    }
}

static void copy_run(void *ctx, long n)
{
    struct pp *p = ctx;
    uint64_t ok;
    size_t len;

    for (long i = 0; i < n; i++)
        if (shmkit_queue_put(p->q, p->src, p->size, NULL) < 0 ||
            shmkit_queue_get(p->reply, &ok, sizeof ok, &len, NULL) < 0)
            die("put/get");
}

static void block_serve(struct pp *p)
{
    uint32_t seen = 0;
    char name[96];

    for (;;) {
        shmkit_block *b;
        unsigned char *d;

        fwait(&p->ctl->ping, seen);
        seen = __atomic_load_n(&p->ctl->ping, __ATOMIC_ACQUIRE);
        if (p->ctl->stop)
            _exit(0);
        snprintf(name, sizeof name, "%s%llu", p->prefix,
                 (unsigned long long)p->ctl->arg);
        if (shmkit_block_attach(&b, name, 0) < 0)
            _exit(2);
        d = shmkit_block_data(b);
        sink = d[0] ^ d[shmkit_block_size(b) - 1];
        shmkit_block_unlink(b);
        shmkit_block_close(b);
        fbump(&p->ctl->pong);
    }
}

static void block_run(void *ctx, long n)
{
    struct pp *p = ctx;
    char name[96];

    for (long i = 0; i < n; i++) {
        uint32_t old = __atomic_load_n(&p->ctl->pong, __ATOMIC_ACQUIRE);
        shmkit_block *b;

        p->ctl->arg++;
        snprintf(name, sizeof name, "%s%llu", p->prefix,
                 (unsigned long long)p->ctl->arg);
        if (shmkit_block_create(&b, name, p->size, 0) < 0)
            die("block create");
        memcpy(shmkit_block_data(b), p->src, p->size);
        shmkit_block_close(b);
        fbump(&p->ctl->ping);
        fwait(&p->ctl->pong, old);
    }
}

/* ---- set-up ---------------------------------------------------------------- */

static void spawn(struct pp *p, void (*serve)(struct pp *))
{
    fflush(stdout);
    p->child = fork();
    if (p->child < 0)
        die("fork");
    if (p->child == 0)
        serve(p);
}

static void reap(struct pp *p, const char *what)
{
    int st;

    if (waitpid(p->child, &st, 0) != p->child || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_queue: %s consumer failed (0x%x)\n", what, st);
        exit(1);
    }
}

static shmkit_queue *queue_new(size_t cap)
{
    shmkit_queue *q;

    if (shmkit_queue_create(&q, NULL, cap, 0, 0) < 0)
        die("queue create");
    return q;
}

static void queue_drop(shmkit_queue *q)
{
    shmkit_queue_unlink(q);
    shmkit_queue_close(q);
}

static void handoff(size_t size, long n, int rounds)
{
    struct pp fl = {0}, zc = {0}, cp = {0}, bl = {0};
    bench_contender c[5];
    char work[64];
    int nc = 0;
#ifdef SHMKIT_BENCH_ICEORYX
    struct peer_iox *iox;
#endif

    fl.size = zc.size = cp.size = bl.size = size;
    fl.src = zc.src = cp.src = bl.src = malloc(size);
    cp.dst = malloc(size);
    if (!fl.src || !cp.dst)
        die("malloc");
    memset(fl.src, 0x5a, size);
    memset(cp.dst, 0, size); /* the consumer's buffer, faulted in */
    fl.ctl = ctl_new(size);
    fl.shared = (unsigned char *)(fl.ctl + 1);
    spawn(&fl, floor_serve);
    zc.q = queue_new(size + 4096);
    zc.reply = queue_new(4096);
    spawn(&zc, zc_serve);
    cp.q = queue_new(size + 4096);
    cp.reply = queue_new(4096);
    spawn(&cp, copy_serve);
    bl.ctl = ctl_new(0);
    snprintf(bl.prefix, sizeof bl.prefix, "skbq%ld_", (long)getpid());
    spawn(&bl, block_serve);

    c[nc++] = (bench_contender){"floor (memcpy + futex wake)", floor_run, &fl};
    c[nc++] = (bench_contender){"shmkit queue, zero copy", zc_run, &zc};
    c[nc++] = (bench_contender){"shmkit queue, put/get (copy out)", copy_run, &cp};
    c[nc++] = (bench_contender){"new block per message", block_run, &bl};
#ifdef SHMKIT_BENCH_ICEORYX
    iox = use_iox ? peer_iox_start(size) : NULL;
    if (iox)
        c[nc++] = (bench_contender){"iceoryx (loan/publish, take)",
                                    peer_iox_run, iox};
#endif
    if (size >= (1 << 20))
        snprintf(work, sizeof work, "C queue: handoff + reply, %zu MiB", size >> 20);
    else
        snprintf(work, sizeof work, "C queue: handoff + reply, %zu KiB", size >> 10);
    bench_run_clock_r(CLOCK_MONOTONIC, rounds,
                      size < (1 << 20) ? "c.queue.handoff.4k" : "c.queue.handoff.64m",
                      work, c, nc, n, NULL);
#ifdef SHMKIT_BENCH_ICEORYX
    if (iox)
        peer_iox_stop(iox);
#endif
    fl.ctl->stop = 1;
    fbump(&fl.ctl->ping);
    reap(&fl, "floor");
    shmkit_queue_put(zc.q, "", 0, NULL);
    reap(&zc, "zero copy");
    shmkit_queue_put(cp.q, "", 0, NULL);
    reap(&cp, "put/get");
    bl.ctl->stop = 1;
    fbump(&bl.ctl->ping);
    reap(&bl, "block");
    queue_drop(zc.q);
    queue_drop(zc.reply);
    queue_drop(cp.q);
    queue_drop(cp.reply);
    munmap(fl.ctl, sizeof *fl.ctl + size);
    munmap(bl.ctl, sizeof *bl.ctl);
    free(fl.src);
    free(cp.dst);
}

/* ---- streaming throughput ---------------------------------------------------- */

struct stream {
    shmkit_queue *q, *start, *done;
    size_t size;
    unsigned char *src, *dst;
    int mode; /* 0 put/get, 1 zero copy, 2 batches of 64 */
    pid_t child;
};

#define BATCH 64

/* The consumer takes n messages, then says so on `done`. */
static void stream_serve(struct stream *s)
{
    for (;;) {
        uint64_t n, got = 0;
        size_t len;

        if (shmkit_queue_get(s->start, &n, sizeof n, &len, NULL) < 0)
            _exit(2);
        if (n == 0)
            _exit(0);
        while (got < n) {
            if (s->mode == 0) {
                if (shmkit_queue_get(s->q, s->dst, s->size, &len, NULL) < 0)
                    _exit(3);
                got++;
            } else if (s->mode == 1) {
                const void *m;

                if (shmkit_queue_peek(s->q, &m, &len, NULL) < 0)
                    _exit(4);
                sink = ((const unsigned char *)m)[len - 1];
                shmkit_queue_release(s->q, m);
                got++;
            } else {
                struct iovec v[BATCH];
                size_t k;

                if (shmkit_queue_get_many(s->q, s->dst, s->size * BATCH, v,
                                          BATCH, &k, NULL) < 0)
                    _exit(5);
                got += k;
            }
        }
        if (shmkit_queue_put(s->done, &got, sizeof got, NULL) < 0)
            _exit(6);
    }
}

static void stream_run(void *ctx, long n)
{
    struct stream *s = ctx;
    uint64_t want = (uint64_t)n, ack;
    size_t len;
    long i = 0;

    /* The consumer learns n first (and answers at the end), so the
     * figure is producer start to consumer done. */
    if (shmkit_queue_put(s->start, &want, sizeof want, NULL) < 0)
        die("stream start");
    while (i < n) {
        if (s->mode == 0) {
            if (shmkit_queue_put(s->q, s->src, s->size, NULL) < 0)
                die("put");
            i++;
        } else if (s->mode == 1) {
            void *w;

            if (shmkit_queue_reserve(s->q, s->size, &w, NULL) < 0)
                die("reserve");
            memcpy(w, s->src, s->size);
            shmkit_queue_commit(s->q, w, s->size);
            i++;
        } else {
            struct iovec v[BATCH];
            size_t k, done;

            for (k = 0; k < BATCH && i + (long)k < n; k++)
                v[k] = (struct iovec){s->src, s->size};
            if (shmkit_queue_put_many(s->q, v, k, &done, NULL) < 0)
                die("put_many");
            i += (long)k;
        }
    }
    if (shmkit_queue_get(s->done, &ack, sizeof ack, &len, NULL) < 0 ||
        ack != want)
        die("stream end");
}

static void throughput(size_t size, long n)
{
    static const char *labels[] = {"shmkit queue, put/get",
                                   "shmkit queue, zero copy",
                                   "shmkit queue, put_many/get_many 64"};
    struct stream s[3];
    bench_contender c[3];
    int k;

    for (k = 0; k < 3; k++) {
        s[k].q = queue_new(1 << 20);
        s[k].start = queue_new(4096);
        s[k].done = queue_new(4096);
        s[k].size = size;
        s[k].src = malloc(size);
        s[k].dst = malloc(size * BATCH);
        if (!s[k].src || !s[k].dst)
            die("malloc");
        memset(s[k].src, 1, size);
        memset(s[k].dst, 0, size * BATCH);
        s[k].mode = k;
        fflush(stdout);
        s[k].child = fork();
        if (s[k].child == 0)
            stream_serve(&s[k]);
        c[k] = (bench_contender){labels[k], stream_run, &s[k]};
    }
    bench_run_wall("c.queue.stream.4k", "C queue: stream 1 -> 1 process, 4 KiB", c, 3, n,
                   NULL);
    for (k = 0; k < 3; k++) {
        uint64_t zero = 0;
        int st;

        shmkit_queue_put(s[k].start, &zero, sizeof zero, NULL);
        if (waitpid(s[k].child, &st, 0) != s[k].child || st != 0)
            die("stream consumer");
        queue_drop(s[k].q);
        queue_drop(s[k].start);
        queue_drop(s[k].done);
        free(s[k].src);
        free(s[k].dst);
    }
}

/* ---- a dead peer's wake-up --------------------------------------------- */

struct deadwake {
    const char *name;
    shmkit_queue *q;
    pid_t pid;
    double t_kill;
};

/* Rewrites a new queue's header to layout version 1 (ring at 256, no
 * liveness slots) before any record: the old behaviour, as reference. */
static void to_version_1(shmkit_queue *q)
{
    unsigned char *p = shmkit_block_data(shmkit_queue_block(q));
    uint16_t v1 = 1;
    uint64_t ring = SHMKIT_QUEUE_HEADER;
    uint32_t zero = 0;

    memcpy(p + 4, &v1, sizeof v1);
    memcpy(p + 16, &ring, sizeof ring);
    memcpy(p + 40, &zero, sizeof zero);
    memcpy(p + 44, &zero, sizeof zero);
}

static void *deadwake_killer(void *arg)
{
    struct deadwake *d = arg;
    shmkit_queue_info in;

    for (;;) {
        if (shmkit_queue_stat(d->q, &in) == 0 && in.waiting_consumers)
            break;
        sched_yield();
    }
    d->t_kill = bench_now_ns();
    kill(d->pid, SIGKILL);
    return NULL;
}

/* One kill; ns from the kill to the blocked get's return. */
static double deadwake_once(const char *name)
{
    struct deadwake d = {name, NULL, 0, 0};
    char buf[64], c;
    size_t len;
    pthread_t t;
    int fds[2];
    double t1;

    if (shmkit_queue_attach(&d.q, name, 0) < 0 || pipe(fds) < 0)
        die("dead peer set-up");
    fflush(stdout);
    d.pid = fork();
    if (d.pid == 0) {
        shmkit_queue *a;
        void *w;

        close(fds[0]);
        if (shmkit_queue_attach(&a, name, 0) < 0 ||
            shmkit_queue_reserve(a, 64, &w, NULL) < 0 ||
            shmkit_queue_put(a, "next", 4, NULL) < 0 ||
            write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    if (d.pid < 0 || read(fds[0], &c, 1) != 1)
        die("dead peer child");
    close(fds[0]);
    if (pthread_create(&t, NULL, deadwake_killer, &d) != 0)
        die("pthread_create");
    if (shmkit_queue_get(d.q, buf, sizeof buf, &len, NULL) < 0)
        die("get behind a dead peer");
    t1 = bench_now_ns();
    pthread_join(t, NULL);
    waitpid(d.pid, NULL, 0);
    shmkit_queue_close(d.q);
    return t1 - d.t_kill;
}

static void dead_peer_wake(long n)
{
    static const char *labels[] = {"slices (layout version 1)",
                                   "liveness slot (version 2)"};
    char name[2][64];
    double med[2], lo[2], hi[2], v[64];
    shmkit_queue *q;
    int k, r;
    long i;

    for (k = 0; k < 2; k++) {
        snprintf(name[k], sizeof name[k], "bq_dead%d_%d", k, (int)getpid());
        if (shmkit_queue_create(&q, name[k], 4096, 0, 0) < 0)
            die("queue create");
        if (k == 0)
            to_version_1(q);
        shmkit_queue_close(q);
    }
    for (k = 0; k < 2; k++) {
        for (r = 0; r < bench_rounds && r < 64; r++) {
            double sum = 0;

            for (i = 0; i < n; i++)
                sum += deadwake_once(name[k]);
            v[r] = sum / (double)n;
        }
        qsort(v, (size_t)r, sizeof *v, bench_cmp_double);
        med[k] = v[r / 2];
        lo[k] = v[0];
        hi[k] = v[r - 1];
    }
    for (k = 0; k < 2; k++)
        bench_emit_r("c.queue.deadwake",
                     "C queue: blocked get, its producer SIGKILLed "
                     "(kill to return)", labels[k], med[k], med[0],
                     bench_rounds < 64 ? bench_rounds : 64, lo[k], hi[k]);
    for (k = 0; k < 2; k++)
        shmkit_unlink(name[k]);
}

/* ---- the core-to-core floor ------------------------------------------------ */

static int pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* ns per round trip of one cache line between the first two CPUs this
 * process may run on, or -1 if it may not run on two (a cpuset of one
 * CPU), either cannot be had, or the 200,000 round trips take more than
 * 2 s (each side's spin waiting for the other's time slice). */
static double line_rtt(void)
{
    const uint64_t n = 200000;
    uint64_t *w, i;
    double t0, t;
    cpu_set_t allowed;
    int cpu[2], k = 0, c, st;
    pid_t pid;

    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return -1;
    for (c = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &allowed))
            cpu[k++] = c;
    if (k < 2)
        return -1;
    w = (uint64_t *)(void *)ctl_new(0);
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (pin(cpu[1]) != 0)
            _exit(3);
        for (i = 1; i < 2 * n; i += 2) {
            while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != i)
                ;
            __atomic_store_n(w, i + 1, __ATOMIC_RELEASE);
        }
        _exit(0);
    }
    t0 = bench_now_ns();
    t = pin(cpu[0]) == 0 ? 0 : -1;
    for (i = 0; t == 0 && i < 2 * n; i += 2) {
        unsigned spins = 0;

        __atomic_store_n(w, i + 1, __ATOMIC_RELEASE);
        /* The child and the clock are looked at only after 4,096 spins
         * of one wait: a waitpid and a clock read on every spin would be
         * timed too (a system call is some 300 ns here, more than a
         * round trip). */
        while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != i + 2)
            if (++spins % 4096 == 0 &&
                (waitpid(pid, &st, WNOHANG) != 0 ||
                 bench_now_ns() - t0 > 2e9)) {
                t = -1;
                break;
            }
    }
    if (t == 0)
        t = (bench_now_ns() - t0) / (double)n;
    else
        kill(pid, SIGKILL);
    if (waitpid(pid, &st, 0) == pid && t > 0 &&
        (!WIFEXITED(st) || WEXITSTATUS(st)))
        die("the line round trip's child");
    munmap(w, sizeof(struct ctl));
    return t;
}

int main(int argc, char **argv)
{
    size_t max = (size_t)64 << 20;
    int i;

#ifdef SHMKIT_BENCH_ICEORYX
    if (argc == 3 && strcmp(argv[1], "--iox-consumer") == 0)
        return peer_iox_consumer_main(strtoull(argv[2], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "--iox-producer") == 0)
        return peer_iox_producer_main(strtoull(argv[2], NULL, 10));
#endif
    if (argc == 2 && strcmp(argv[1], "--line-rtt") == 0) {
        printf("%.1f\n", line_rtt());
        return 0;
    }
    for (i = bench_args(argc, argv); i < argc; i++) {
        if (strcmp(argv[i], "--max-size") == 0 && i + 1 < argc)
            max = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--no-iceoryx") == 0)
            use_iox = 0;
        else {
            fprintf(stderr, "usage: bench_queue [--tsv] [--quick] [--rounds N]"
                            " [--max-size BYTES] [--no-iceoryx]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    handoff(4096, bench_n(20000), bench_rounds);
    /* 64 MiB: three times the rounds, each under half as long (as
     * bench_lock's contention): the floor, zero copy and iceoryx all sit
     * at the memory's speed, within ~10% of one another, and single
     * rounds scattered up to 1.6x. Four runs of each, alternated
     * (/tmp/lead/ab64.sh): zero copy / iceoryx 0.89-1.10 with 5 rounds of
     * 10 handoffs, 0.88-1.00 with 15 of 4. */
    if (max >= ((size_t)64 << 20))
        handoff((size_t)64 << 20, bench_n(4) < 2 ? 2 : bench_n(4),
                3 * bench_rounds);
#ifdef SHMKIT_BENCH_ICEORYX
    peer_iox_shutdown();
#endif
    throughput(4096, bench_n(100000));
    dead_peer_wake(bench_n(10) < 2 ? 2 : bench_n(10));
    return 0;
}
