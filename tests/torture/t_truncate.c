/*
 * t_truncate.c - a peer toggles the size of a block (to 0, to a few
 * bytes, to half, back to full with the pristine bytes) while another
 * process attaches to it as its kind, asks shmkit_block_kind() and
 * refreshes a long-lived handle, over and over. Any of those dying by
 * SIGBUS counts; refusals (SHMKIT_ETRUNCATED, SHMKIT_EEMPTY, SHMKIT_EKIND,
 * ...) are the right answer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmkit.h"
#include "shmkit/queue.h"
#include "torture.h"

struct shared {
    volatile uint64_t attempts;
    volatile uint64_t wrong; /* attaches answered with an unexpected code */
    volatile int first_wrong; /* the first such code */
    volatile int stop;
};

struct ctx {
    const char *kind;
    char name[32];
    unsigned char *pristine;
    size_t size;
    int64_t until;
    struct shared *sh;
};

static int peer(void *arg)
{
    struct ctx *c = arg;
    shmkit_block *b;
    int fd;

    if (shmkit_block_attach(&b, c->name, 0) < 0)
        return 2;
    fd = shmkit_block_fd(b);
    while (!c->sh->stop) {
        static const size_t cuts[] = {0, 8, 100};
        size_t cut = rnd_below(4) == 3 ? c->size / 2 : cuts[rnd_below(3)];
        if (ftruncate(fd, (off_t)cut) < 0 ||
            ftruncate(fd, (off_t)c->size) < 0 ||
            pwrite(fd, c->pristine, c->size, 0) != (ssize_t)c->size)
            return 3;
    }
    return 0;
}

/* Attaches as the kind; the code (0 for raw, which has no attach of its
 * own here). */
static int attach_kind(struct ctx *c)
{
    int r = 0;

    if (strcmp(c->kind, "list") == 0) {
        shmkit_list *l;
        if ((r = shmkit_list_attach(&l, c->name, 0)) == 0)
            shmkit_list_close(l);
    } else if (strcmp(c->kind, "lock") == 0) {
        shmkit_lock *l;
        if ((r = shmkit_lock_attach(&l, c->name, 0)) == 0)
            shmkit_lock_close(l);
    } else if (strcmp(c->kind, "array") == 0 ||
               strcmp(c->kind, "value") == 0) {
        shmkit_array *a;
        if ((r = shmkit_array_attach(&a, c->name, 0)) == 0)
            shmkit_array_close(a);
    } else if (strcmp(c->kind, "queue") == 0) {
        shmkit_queue *q;
        if ((r = shmkit_queue_attach(&q, c->name, 0)) == 0)
            shmkit_queue_close(q);
    }
    return r;
}

/* The answers a peer's truncation may rightly cause: success, a block too
 * small or empty, or the refusal of a header read half restored (the
 * peer's pwrite is not atomic against our pread: any documented "bad
 * header" code). Anything else (say -ENOSPC) is wrong. */
static bool expected(int r)
{
    return r == 0 || r == SHMKIT_ETRUNCATED || r == SHMKIT_EEMPTY ||
           r == SHMKIT_EKIND || r == SHMKIT_ECORRUPT ||
           r == SHMKIT_EVERSION || r == SHMKIT_ETYPE || r == SHMKIT_ESHAPE;
}

static int attacker(void *arg)
{
    struct ctx *c = arg;
    shmkit_block *held = NULL, *b;

    shmkit_block_attach(&held, c->name, 0);
    while (now_ns() < c->until) {
        int code = attach_kind(c);
        if (!expected(code) && c->sh->wrong++ == 0)
            c->sh->first_wrong = code;
        if (shmkit_block_attach(&b, c->name, 0) == 0) {
            shmkit_block_kind(b);
            shmkit_block_close(b);
        }
        if (held)
            shmkit_block_refresh(held);
        else
            shmkit_block_attach(&held, c->name, 0);
        c->sh->attempts++;
    }
    shmkit_block_close(held);
    return 0;
}

static int make(struct ctx *c)
{
    static char big[20000];
    shmkit_block *b;
    int r = -EINVAL;

    snprintf(c->name, sizeof c->name, "tt_%s", c->kind);
    if (strcmp(c->kind, "list") == 0) {
        shmkit_item it[2];
        shmkit_list *l;
        memset(big, 'y', sizeof big);
        it[0] = shmkit_item_strn(big, sizeof big);
        it[1] = shmkit_item_int(3);
        if ((r = shmkit_list_create(&l, c->name, it, 2, 0)) == 0)
            shmkit_list_close(l);
    } else if (strcmp(c->kind, "lock") == 0) {
        shmkit_lock *l;
        if ((r = shmkit_lock_create(&l, c->name, 0, 0)) == 0)
            shmkit_lock_close(l);
    } else if (strcmp(c->kind, "array") == 0) {
        size_t shape[1] = {4096};
        shmkit_array *a;
        if ((r = shmkit_array_create(&a, c->name, 'q', 1, shape, 0)) == 0)
            shmkit_array_close(a);
    } else if (strcmp(c->kind, "value") == 0) {
        shmkit_array *a;
        if ((r = shmkit_value_create(&a, c->name, 'd', 0)) == 0)
            shmkit_array_close(a);
    } else if (strcmp(c->kind, "queue") == 0) {
        shmkit_queue *q;
        int i;
        if ((r = shmkit_queue_create(&q, c->name, 64 << 10, 0, 0)) == 0) {
            for (i = 0; i < 100 && r == 0; i++)
                r = shmkit_queue_put(q, &i, sizeof i, NULL);
            shmkit_queue_close(q);
        }
    } else {
        if ((r = shmkit_block_create(&b, c->name, 40000, 0)) == 0)
            shmkit_block_close(b);
    }
    if (r < 0 || (r = shmkit_block_attach(&b, c->name, 0)) < 0)
        return r;
    c->size = shmkit_block_size(b);
    c->pristine = malloc(c->size);
    if (c->pristine)
        memcpy(c->pristine, shmkit_block_data(b), c->size);
    shmkit_block_close(b);
    return c->pristine ? 0 : -ENOMEM;
}

static void attack_kind(const char *kind, double seconds)
{
    struct row *r = row_new("peer toggles size: attach, kind, refresh", kind);
    struct ctx c = {.kind = kind};
    int64_t end;
    pid_t ppid;
    int code;

    c.sh = mmap(NULL, sizeof *c.sh, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c.sh == MAP_FAILED || make(&c) < 0) {
        r->bad++;
        return;
    }
    end = now_ns() + (int64_t)(seconds * 1e9);
    c.until = end;
    ppid = child_run(peer, &c);
    while (now_ns() < end) {
        pid_t a = child_run(attacker, &c);
        enum outcome o = child_wait(a, (int)(seconds * 1000) + 10000, &code);
        row_count(r, o);
        if (o == OUT_EXIT || o == OUT_KILLED)
            r->bad++;
    }
    c.sh->stop = 1;
    if (child_wait(ppid, 10000, &code) != OUT_OK)
        r->bad++;
    r->runs = (long)c.sh->attempts;
    r->bad += (long)c.sh->wrong;
    if (c.sh->wrong)
        snprintf(r->note, sizeof r->note, "%.0f s, %zu bytes; first wrong "
                 "attach code %s", seconds, c.size,
                 shmkit_errname(c.sh->first_wrong));
    else
        snprintf(r->note, sizeof r->note, "%.0f s, %zu bytes", seconds,
                 c.size);
    shmkit_unlink(c.name);
    free(c.pristine);
    munmap(c.sh, sizeof *c.sh);
}

void attack_truncate(void)
{
    static const char *const kinds[] = {"list", "array", "value",
                                        "lock", "queue", "raw"};
    double secs = T.longrun ? 15.0 * T.scale : 1.5 * T.scale;
    size_t k;

    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        attack_kind(kinds[k], secs);
}
