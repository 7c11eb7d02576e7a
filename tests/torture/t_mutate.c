/*
 * t_mutate.c - hostile bytes: for each kind (list, array, value, lock,
 * queue) a
 * valid object is made, then, over and over, its pristine bytes are put
 * back, a random mutation is applied, and every operation is run on it:
 * from C (a driver process), from the CLI (`shmkit show`, `shmkit ls`, one
 * process per image) and from Python (torture_py.py). A driver killed by a
 * signal is a crash (the image is skipped and a new driver goes on); a
 * driver that makes no progress for 5 s is a hang.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"
#include "shmkit/queue.h"
#include "torture.h"

#define PROG_NAME "tm_progress"
/* A driver making no progress this long hangs. An honest queue image can
 * take ~1 s: a mutex word naming a live thread makes each of its ~10
 * NOWAIT calls wait the queue's 0.1 s grace for the mutex (measured: 1,002
 * ms, 2 images of 1,000). The short run's 2 s was within 2x of that: a
 * loaded CI machine (two busy loops beside it) counted 3 such images as
 * hangs in the queue rows of torture_cli_replaced. */
#define STALL_MS 5000

/* Progress, shared with the drivers through a block (Python reads it by
 * offset: done at 0, then the CLI's counts). */
struct prog {
    volatile uint64_t done;
    volatile uint64_t crashes, sigbus, hangs, bad;
};

struct target {
    const char *kind;
    char name[32];
    size_t size;
    unsigned char *pristine;
    long n;
    uint64_t seed;
    struct prog *prog;
};

/* ---- mutation -------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Applies mutation number i (deterministic from seed and i) to p. */
static void mutate(unsigned char *p, size_t size, uint64_t seed, uint64_t i)
{
    uint64_t s = mix(seed ^ mix(i + 1));
    size_t hot = size < 512 ? size : 512, pos;
    int k, n = 1 + (int)(s % 4);
    static const int64_t words[] = {0, -1, 1, INT64_MAX, INT64_MIN, 0x7fffffff,
                                    0x80000000, 4096};

    for (k = 0; k < n; k++) {
        s = mix(s);
        pos = (s >> 8) % ((s & 3) ? hot : size);
        switch ((s >> 4) % 4) {
        case 0:
        case 1:
            p[pos] = (unsigned char)(s >> 40);
            break;
        case 2: {
            int64_t w = words[(s >> 20) % 8];
            if ((s >> 24) & 1)
                w = (int64_t)size + (int64_t)((s >> 30) % 16) - 8;
            pos -= pos % 8;
            if (pos + 8 <= size)
                memcpy(p + pos, &w, 8);
            break;
        }
        default: {
            size_t len = 1 + (s >> 32) % 64;
            if (pos + len > size)
                len = size - pos;
            memset(p + pos, (s >> 50) & 1 ? 0xff : 0, len);
        }
        }
    }
}

/* ---- every operation, per kind ----------------------------------------- */

static void deadline_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += ms * 1000000;
    ts->tv_sec += ts->tv_nsec / 1000000000;
    ts->tv_nsec %= 1000000000;
}

static void ops_list(const char *name)
{
    shmkit_item one = shmkit_item_int(1), it;
    shmkit_list *l;
    size_t i, n, cnt, cap;
    char buf[256];
    int r;

    if (shmkit_list_attach(&l, name, 0) < 0)
        return;
    n = shmkit_list_len(l);
    for (i = 0; i < n && i < 64; i++)
        shmkit_list_get(l, (ptrdiff_t)i, &it);
    shmkit_list_get(l, -1, &it);
    shmkit_list_capacity(l, 0, &cap);
    shmkit_list_count(l, &one, &cnt);
    shmkit_list_index(l, &one, &i);
    shmkit_list_format(l, buf, sizeof buf, &n);
    shmkit_list_set(l, 0, &one);
    it = shmkit_item_str("x");
    shmkit_list_set(l, 1, &it);
    r = shmkit_list_lock(l);
    if (r == SHMKIT_EOWNERDEAD)
        shmkit_list_consistent(l);
    if (r == 0 || r == SHMKIT_EOWNERDEAD)
        shmkit_list_unlock(l);
    shmkit_list_close(l);
}

static void ops_array(const char *name)
{
    shmkit_array *a;
    struct timespec dl;
    int64_t v, e = 0;
    size_t n;
    int r;

    if (shmkit_array_attach(&a, name, 0) < 0)
        return;
    n = shmkit_array_length(a);
    shmkit_array_load(a, 0, &v);
    shmkit_array_store(a, 0, 5);
    shmkit_array_fetch_add(a, 0, 1, &v);
    shmkit_array_compare_exchange(a, 0, &e, 9);
    if (n > 0) {
        shmkit_array_load(a, n - 1, &v);
        shmkit_array_store(a, n - 1, 3);
    }
    deadline_ms(&dl, 100);
    r = shmkit_mutex_timedlock(shmkit_array_lock(a), &dl);
    if (r == SHMKIT_EOWNERDEAD)
        shmkit_mutex_consistent(shmkit_array_lock(a));
    if (r == 0 || r == SHMKIT_EOWNERDEAD)
        shmkit_mutex_unlock(shmkit_array_lock(a));
    shmkit_array_close(a);
}

static void ops_lock(const char *name)
{
    struct timespec dl;
    shmkit_lock *l;
    int r;

    if (shmkit_lock_attach(&l, name, 0) < 0)
        return;
    deadline_ms(&dl, 100);
    r = shmkit_mutex_timedlock(shmkit_lock_mutex(l), &dl);
    if (r == SHMKIT_EOWNERDEAD)
        shmkit_mutex_consistent(shmkit_lock_mutex(l));
    if (r == 0 || r == SHMKIT_EOWNERDEAD) {
        shmkit_cond_signal(shmkit_lock_cond(l));
        shmkit_cond_broadcast(shmkit_lock_cond(l));
        deadline_ms(&dl, 1);
        r = shmkit_cond_timedwait(shmkit_lock_cond(l), shmkit_lock_mutex(l),
                                  &dl);
        if (r == SHMKIT_EOWNERDEAD)
            shmkit_mutex_consistent(shmkit_lock_mutex(l));
        if (r != SHMKIT_ENOTRECOVERABLE)
            shmkit_mutex_unlock(shmkit_lock_mutex(l));
    }
    shmkit_cond_signal(shmkit_lock_cond(l));
    shmkit_lock_close(l);
}

/* Every queue call, none of them waiting: a hostile ring may say it is
 * full or empty for ever. */
static void ops_queue(const char *name)
{
    static const char msg[] = "mutated";
    shmkit_queue_info in;
    struct iovec many[3] = {{(void *)msg, 3}, {(void *)msg, 7}, {NULL, 0}};
    struct iovec got[8];
    unsigned char buf[512];
    const void *cp;
    shmkit_queue *q;
    size_t len, n;
    void *p;

    if (shmkit_queue_attach(&q, name, 0) < 0)
        return;
    shmkit_queue_stat(q, &in);
    shmkit_queue_max_message(q);
    shmkit_queue_get(q, buf, sizeof buf, &len, SHMKIT_NOWAIT);
    shmkit_queue_get(q, buf, 8, &len, SHMKIT_NOWAIT);
    shmkit_queue_put(q, msg, sizeof msg, SHMKIT_NOWAIT);
    shmkit_queue_put_many(q, many, 3, &n, SHMKIT_NOWAIT);
    shmkit_queue_get_many(q, buf, sizeof buf, got, 8, &n, SHMKIT_NOWAIT);
    if (shmkit_queue_reserve(q, 40, &p, SHMKIT_NOWAIT) == 0) {
        memset(p, 'r', 40);
        shmkit_queue_commit(q, p, 20);
    }
    if (shmkit_queue_reserve(q, 8, &p, SHMKIT_NOWAIT) == 0)
        shmkit_queue_cancel(q, p);
    if (shmkit_queue_peek(q, &cp, &len, SHMKIT_NOWAIT) == 0) {
        if (len > 0)
            buf[0] = *(const volatile unsigned char *)cp;
        shmkit_queue_release(q, cp);
    }
    shmkit_queue_task_add(q, 1);
    shmkit_queue_task_done(q);
    shmkit_queue_task_done(q);
    shmkit_queue_join(q, SHMKIT_NOWAIT);
    shmkit_queue_stat(q, &in);
    shmkit_queue_close(q);
}

static void ops(const char *kind, const char *name)
{
    if (strcmp(kind, "list") == 0)
        ops_list(name);
    else if (strcmp(kind, "lock") == 0)
        ops_lock(name);
    else if (strcmp(kind, "queue") == 0)
        ops_queue(name);
    else
        ops_array(name);
}

/* ---- drivers ----------------------------------------------------------- */

static int driver_c(void *arg)
{
    struct target *t = arg;
    shmkit_block *raw;

    if (shmkit_block_attach(&raw, t->name, 0) < 0)
        return 2;
    while (t->prog->done < (uint64_t)t->n) {
        unsigned char *p = shmkit_block_data(raw);
        memcpy(p, t->pristine, t->size);
        mutate(p, t->size, t->seed, t->prog->done);
        ops(t->kind, t->name);
        t->prog->done++;
    }
    return 0;
}

static void run_cli(struct target *t, const char *sub)
{
    char *argv[4] = {(char *)T.cli, (char *)sub, t->name, NULL};
    int code, err;
    enum outcome o;
    pid_t pid;

    if (strcmp(sub, "ls") == 0)
        argv[2] = NULL;
    pid = child_exec(argv, true, &err);
    if (pid < 0 || err) {
        /* Not the CLI's answer: it never ran. */
        if (pid > 0)
            child_wait(pid, -1, &code);
        if (t->prog->bad++ < 3)
            fprintf(stderr, "torture: mutate %s: cannot run `%s %s`: %s\n",
                    t->kind, T.cli, sub, strerror(err));
        return;
    }
    o = child_wait(pid, STALL_MS, &code);
    if (o == OUT_SIGBUS)
        t->prog->sigbus++;
    else if (o == OUT_CRASH)
        t->prog->crashes++;
    else if (o == OUT_HANG)
        t->prog->hangs++;
    else if (o == OUT_EXIT && code != 1) {
        /* The CLI answers 0 or 1 (refused: the right answer to many
         * images); 2 is a usage error, and the arguments are right. */
        if (t->prog->bad++ < 3)
            fprintf(stderr, "torture: mutate %s: `shmkit %s` exit %d at "
                    "image %llu (seed %llu)\n", t->kind, sub, code,
                    (unsigned long long)t->prog->done,
                    (unsigned long long)t->seed);
    }
}

static int driver_cli(void *arg)
{
    struct target *t = arg;
    shmkit_block *raw;

    if (shmkit_block_attach(&raw, t->name, 0) < 0)
        return 2;
    while (t->prog->done < (uint64_t)t->n) {
        unsigned char *p = shmkit_block_data(raw);
        memcpy(p, t->pristine, t->size);
        mutate(p, t->size, t->seed, t->prog->done);
        run_cli(t, (t->prog->done & 1) ? "ls" : "show");
        t->prog->done++;
    }
    return 0;
}

static int driver_py(void *arg)
{
    struct target *t = arg;
    char n[32], seed[32];

    snprintf(n, sizeof n, "%ld", t->n);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->seed);
    execl(T.python, T.python, T.pyscript, "mutate", t->kind, t->name,
          PROG_NAME, n, seed, (char *)NULL);
    _exit(127);
}

static int pidfd_of(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Runs drivers until n images are done; restarts a driver that died or
 * stalled, skipping the image it was on. */
static void supervise(struct target *t, int (*driver)(void *), struct row *r)
{
    while (t->prog->done < (uint64_t)t->n) {
        pid_t pid = child_run(driver, t);
        int fd = pidfd_of(pid), code;
        uint64_t seen = t->prog->done;
        int64_t last = now_ns();
        enum outcome o;

        for (;;) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 500) > 0)
                break;
            if (t->prog->done != seen) {
                seen = t->prog->done;
                last = now_ns();
            } else if (now_ns() - last > (int64_t)STALL_MS * 1000000) {
                kill(pid, SIGKILL);
                r->hangs++;
                fprintf(stderr, "torture: mutate %s: hang at image %llu\n",
                        t->kind, (unsigned long long)seen);
                break;
            }
        }
        close(fd);
        o = child_wait(pid, -1, &code);
        if (o == OUT_SIGBUS || o == OUT_CRASH) {
            row_count(r, o);
            fprintf(stderr, "torture: mutate %s: signal %d at image %llu "
                            "(seed %llu)\n", t->kind, code,
                    (unsigned long long)t->prog->done,
                    (unsigned long long)t->seed);
        } else if (o == OUT_EXIT) {
            r->bad++;
            fprintf(stderr, "torture: mutate %s: driver exit %d\n", t->kind,
                    code);
            return;
        }
        if (o != OUT_OK)
            t->prog->done++;
    }
}

static int make_target(struct target *t, const char *kind)
{
    char pname[40];
    shmkit_block *b;
    int r = -EINVAL;

    t->kind = kind;
    snprintf(t->name, sizeof t->name, "tm_%s", kind);
    if (strcmp(kind, "list") == 0) {
        shmkit_item it[5] = {shmkit_item_int(1), shmkit_item_str("hello"),
                             shmkit_item_float(2.5), shmkit_item_bool(true),
                             shmkit_item_bytes("\0ab", 3)};
        shmkit_list *l;
        r = shmkit_list_create(&l, t->name, it, 5, 0);
        if (r == 0)
            shmkit_list_close(l);
    } else if (strcmp(kind, "array") == 0 || strcmp(kind, "value") == 0) {
        size_t shape[2] = {4, 8};
        shmkit_array *a;
        r = strcmp(kind, "array") == 0
                ? shmkit_array_create(&a, t->name, 'i', 2, shape, 0)
                : shmkit_value_create(&a, t->name, 'q', 0);
        if (r == 0)
            shmkit_array_close(a);
    } else if (strcmp(kind, "lock") == 0) {
        shmkit_lock *l;
        r = shmkit_lock_create(&l, t->name, SHMKIT_MUTEX_RECURSIVE, 0);
        if (r == 0)
            shmkit_lock_close(l);
    } else if (strcmp(kind, "queue") == 0) {
        /* A small ring holding committed messages, so that mutations hit
         * records as well as the header. */
        static const char *const msgs[] = {"one", "two", "three", ""};
        shmkit_queue *q = NULL;
        size_t i;
        r = shmkit_queue_create(&q, t->name, 1024, 0, 0);
        for (i = 0; r == 0 && i < sizeof msgs / sizeof msgs[0]; i++)
            r = shmkit_queue_put(q, msgs[i], strlen(msgs[i]), SHMKIT_NOWAIT);
        if (q)
            shmkit_queue_close(q);
    }
    if (r < 0 || (r = shmkit_block_attach(&b, t->name, 0)) < 0)
        return r;
    t->size = shmkit_block_size(b);
    t->pristine = malloc(t->size);
    if (t->pristine)
        memcpy(t->pristine, shmkit_block_data(b), t->size);
    shmkit_block_close(b);
    /* Python drivers take the pristine image from "<name>_p". */
    snprintf(pname, sizeof pname, "%s_p", t->name);
    if (t->pristine && shmkit_block_create(&b, pname, t->size, 0) == 0) {
        memcpy(shmkit_block_data(b), t->pristine, t->size);
        shmkit_block_close(b);
    }
    t->seed = rnd();
    return t->pristine ? 0 : -ENOMEM;
}

static void drive(struct target *t, const char *via, int (*driver)(void *),
                  long n)
{
    char what[48];
    struct row *r;

    snprintf(what, sizeof what, "mutations, every op (%s)", via);
    r = row_new(what, t->kind);
    t->n = n;
    memset((void *)t->prog, 0, sizeof *t->prog);
    supervise(t, driver, r);
    r->mutations = (long)t->prog->done;
    r->runs = (long)t->prog->done;
    r->crashes += (long)t->prog->crashes;
    r->sigbus += (long)t->prog->sigbus;
    r->hangs += (long)t->prog->hangs;
    r->bad += (long)t->prog->bad;
    snprintf(r->note, sizeof r->note, "seed %llu",
             (unsigned long long)t->seed);
}

void attack_mutate(void)
{
    static const char *const kinds[] = {"list", "array", "value", "lock",
                                        "queue"};
    shmkit_block *pb;
    size_t k;

    if (shmkit_block_create(&pb, PROG_NAME, 4096, 0) < 0) {
        row_new("mutations", "-")->bad++;
        return;
    }
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        struct target t = {.prog = shmkit_block_data(pb)};
        if (make_target(&t, kinds[k]) < 0) {
            row_new("mutations: setup", kinds[k])->bad++;
            continue;
        }
        drive(&t, "C", driver_c, scaled(2000, 20000));
        if (T.cli)
            drive(&t, "CLI", driver_cli, scaled(100, 20000));
        if (T.python && T.pyscript)
            drive(&t, "Python", driver_py, scaled(500, 20000));
        shmkit_unlink(t.name);
        {
            char pname[40];
            snprintf(pname, sizeof pname, "%s_p", t.name);
            shmkit_unlink(pname);
        }
        free(t.pristine);
    }
    shmkit_block_unlink(pb);
    shmkit_block_close(pb);
}
