/*
 * t_qwait.c - queue waiters behind a killed peer: each round a child
 * makes a record in flight in a queue (a loan of the only message the
 * queue may hold, or a reservation holding back its own next message) and
 * blocks; this process waits behind it (put, or get, with a 30 s
 * deadline) while a thread SIGKILLs the child at a random instant: before
 * the wait, or once the waiter is asleep. The wait must end with the
 * right message, and by the child's death (its liveness slot), never by a
 * re-check slice: the row counts waits woken by a death (deaths) and
 * those that needed a slice (bad, with the figures in the note).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "objects/queue_internal.h"
#include "shmkit.h"
#include "shmkit/queue.h"
#include "torture.h"

struct round {
    shmkit_queue *q;
    const char *name;
    pid_t pid;
    int fd;      /* the child's end of the socket pair */
    bool loan;   /* the child loans (else: reserves) */
    bool asleep; /* kill once the waiter sleeps (else at once) */
    int got;     /* loan: the killer's get of the given-back message */
    char buf[16];
    size_t len;
};

/* The child: attaches, makes its record, tells `fd`, blocks until killed.
 * Exit codes: 2-5 a step failed. */
static int holder(void *arg)
{
    const struct round *r = arg;
    shmkit_queue *a;
    const void *p;
    size_t len;
    void *w;
    char c;

    if (shmkit_queue_attach(&a, r->name, 0) != 0)
        return 2;
    if (r->loan ? shmkit_queue_peek(a, &p, &len, NULL) != 0
                : (shmkit_queue_reserve(a, 64, &w, NULL) != 0 ||
                   shmkit_queue_put(a, "later", 5, NULL) != 0))
        return 3;
    if (write(r->fd, "x", 1) != 1)
        return 4;
    while (read(r->fd, &c, 1) > 0) /* never written: until killed */
        ;
    return 5;
}

/* Kills the child (at once, or once the waiter sleeps); for a loan,
 * then takes the given-back message, which makes room for the put. */
static void *killer(void *arg)
{
    struct round *r = arg;
    shmkit_queue_info in;
    struct timespec d;

    while (r->asleep) {
        if (shmkit_queue_stat(r->q, &in) == 0 &&
            (r->loan ? in.waiting_producers : in.waiting_consumers) >= 1)
            break;
        sched_yield();
    }
    kill(r->pid, SIGKILL);
    if (r->loan) {
        shmkit_deadline(&d, 30);
        r->got = shmkit_queue_get(r->q, r->buf, sizeof r->buf, &r->len, &d);
    }
    return NULL;
}

/* One round; true if the waiter got the right message back. */
static bool one_round(struct row *row, shmkit_queue *q, const char *name,
                      bool loan, bool asleep)
{
    struct round r = {q, name, 0, -1, loan, asleep, -1, {0}, 0};
    struct timespec d;
    pthread_t t;
    char buf[16], ready;
    size_t len;
    int fds[2], code, e;
    enum outcome o;
    bool ok;

    if (loan && shmkit_queue_put(q, "loaned", 6, SHMKIT_NOWAIT) != 0)
        return false;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return false;
    r.fd = fds[1];
    r.pid = child_run(holder, &r);
    close(fds[1]);
    if (r.pid < 0 || read(fds[0], &ready, 1) != 1) {
        close(fds[0]);
        if (r.pid > 0)
            row_count(row, child_wait(r.pid, 30000, &code));
        return false;
    }
    if (pthread_create(&t, NULL, killer, &r) != 0) {
        kill(r.pid, SIGKILL);
        child_wait(r.pid, 30000, &code);
        close(fds[0]);
        return false;
    }
    shmkit_deadline(&d, 30);
    if (loan) {
        /* Full (one message at most, loaned): put waits until the loan
         * comes back and the killer takes it. */
        e = shmkit_queue_put(q, "mine", 4, &d);
        ok = e == 0 &&
             shmkit_queue_get(q, buf, sizeof buf, &len, &d) == 0 &&
             len == 4 && memcmp(buf, "mine", 4) == 0;
    } else {
        /* The child's "later" is held back behind its reservation. */
        e = shmkit_queue_get(q, buf, sizeof buf, &len, &d);
        ok = e == 0 && len == 5 && memcmp(buf, "later", 5) == 0;
    }
    pthread_join(t, NULL);
    if (loan)
        ok = ok && r.got == 0 && r.len == 6 && memcmp(r.buf, "loaned", 6) == 0;
    o = child_wait(r.pid, 30000, &code);
    close(fds[0]);
    row->kills++;
    if (o != OUT_KILLED)
        row_count(row, o);
    return ok && o == OUT_KILLED;
}

void attack_qwait(void)
{
    struct row *row = row_new("queue waiters, peer SIGKILLed", "queue");
    long rounds = (long)((T.longrun ? 2000 : 100) * T.scale), i;
    struct shmkit__queue_wait_stats s0 = shmkit__queue_waits, s1;
    shmkit_queue *q[2];

    if (rounds < 4)
        rounds = 4;
    /* [0]: one message at most (loans fill it), [1]: by bytes. */
    if (shmkit_queue_create(&q[0], "tq_wait0", 4096, 1, 0) != 0 ||
        shmkit_queue_create(&q[1], "tq_wait1", 4096, 0, 0) != 0) {
        row->bad++;
        snprintf(row->note, sizeof row->note, "create: %s",
                 shmkit_last_error());
        return;
    }
    for (i = 0; i < rounds; i++) {
        bool loan = i % 2 == 0;

        row->runs++;
        if (!one_round(row, q[!loan], loan ? "tq_wait0" : "tq_wait1", loan,
                       (i / 2) % 2 == 0))
            row->bad++;
    }
    s1 = shmkit__queue_waits;
    row->deaths = (long)(s1.deaths - s0.deaths);
    row->bad += (long)(s1.slices - s0.slices);
    snprintf(row->note, sizeof row->note,
             "waits woken by the owner's death %llu, by a slice %llu",
             (unsigned long long)(s1.deaths - s0.deaths),
             (unsigned long long)(s1.slices - s0.slices));
    for (i = 0; i < 2; i++) {
        shmkit_queue_unlink(q[i]);
        shmkit_queue_close(q[i]);
    }
}
