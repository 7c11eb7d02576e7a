/*
 * t_full.c - a full /dev/shm: in a mount namespace of its own, a 1 MiB
 * tmpfs is mounted on /dev/shm, and every kind is created there from C
 * and from Python, each attempt in its own process. Every attempt must
 * end in a clean -ENOSPC (OSError ENOSPC in Python), never SIGBUS, and
 * leave nothing behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit.h"
#include "shmkit/queue.h"
#include "torture.h"

#define BIG (4u << 20)
#define FILLER "tf_filler"

/* Fills the tmpfs with one reserved block: the largest that fits. */
static int fill_up(shmkit_block **out)
{
    size_t size;

    for (size = 1u << 20; size >= 4096; size -= 4096)
        if (shmkit_block_create(out, FILLER, size, SHMKIT_RESERVE) == 0)
            return 0;
    return -ENOSPC;
}

/* Writes every page, so that memory that is not there shows as SIGBUS. */
static void touch(void *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i += 4096)
        ((volatile char *)p)[i] = 1;
}

/* One attempt; the exit code says what happened: 0 clean ENOSPC, 1 it
 * succeeded (wrong), 2 another error (wrong). */
static int try_case(void *arg)
{
    const char *c = arg;
    shmkit_block *filler = NULL, *b;
    int r = -EINVAL;

    if (strcmp(c, "value") == 0 || strcmp(c, "lock") == 0 ||
        strcmp(c, "small-list") == 0 || strcmp(c, "small-queue") == 0)
        if (fill_up(&filler) < 0)
            return 3;
    if (strcmp(c, "block-reserve") == 0)
        r = shmkit_block_create(&b, "tf_x", BIG, SHMKIT_RESERVE);
    else if (strcmp(c, "block-populate") == 0) {
        r = shmkit_block_create(&b, "tf_x", BIG, SHMKIT_POPULATE);
        if (r == 0)
            touch(shmkit_block_data(b), BIG);
    } else if (strcmp(c, "list") == 0 || strcmp(c, "small-list") == 0) {
        static char big[2u << 20];
        shmkit_item it[2];
        shmkit_list *l;
        size_t len = strcmp(c, "list") == 0 ? sizeof big : 100;
        memset(big, 'x', sizeof big);
        it[0] = shmkit_item_strn(big, len);
        it[1] = shmkit_item_int(7);
        r = shmkit_list_create(&l, "tf_x", it, 2, 0);
    } else if (strcmp(c, "array") == 0) {
        size_t shape[1] = {500000};
        shmkit_array *a;
        r = shmkit_array_create(&a, "tf_x", 'q', 1, shape, 0);
        if (r == 0)
            touch(shmkit_array_data(a), shmkit_array_nbytes(a));
    } else if (strcmp(c, "value") == 0) {
        shmkit_array *a;
        r = shmkit_value_create(&a, "tf_x", 'q', 0);
    } else if (strcmp(c, "lock") == 0) {
        shmkit_lock *l;
        r = shmkit_lock_create(&l, "tf_x", 0, 0);
    } else if (strcmp(c, "queue") == 0 || strcmp(c, "small-queue") == 0) {
        shmkit_queue *q;
        r = shmkit_queue_create(&q, "tf_x", c[0] == 'q' ? BIG : 4096, 0, 0);
        if (r == 0) {
            void *p;
            /* A reservation is prefaulted ring: it must be there. */
            if (shmkit_queue_reserve(q, shmkit_queue_max_message(q), &p,
                                     SHMKIT_NOWAIT) == 0)
                touch(p, shmkit_queue_max_message(q));
            shmkit_queue_close(q);
        }
    }
    if (filler) {
        shmkit_block_unlink(filler);
        shmkit_block_close(filler);
    }
    if (r == 0) {
        shmkit_unlink("tf_x");
        return 1;
    }
    if (r != -ENOSPC) {
        fprintf(stderr, "torture: full %s: %s\n", c, shmkit_last_error());
        return 2;
    }
    return 0;
}

static const char *const c_cases[] = {
    "block-reserve", "block-populate", "list",  "small-list", "array",
    "value",         "lock",           "queue", "small-queue"};
static const char *const py_cases[] = {"SharedMemory-reserve", "ShareableList",
                                       "Array", "Value", "Lock", "RLock",
                                       "Queue", "small-Queue"};

/* Counts one outcome into row r; leftovers too. */
static void account(struct row *r, enum outcome o, int code, const char *what)
{
    long left = shm_count("");

    r->runs++;
    if (o != OUT_OK) {
        row_count(r, o);
        if (o == OUT_EXIT || o == OUT_KILLED) {
            r->bad++;
            if (T.verbose)
                fprintf(stderr, "torture: full %s: exit %d\n", what, code);
        }
    }
    if (left > 0) {
        r->leaks += left;
        shm_clear("");
    }
}

static int py_case(void *arg)
{
    execl(T.python, T.python, T.pyscript, "full", (const char *)arg,
          (char *)NULL);
    _exit(127);
}

/* In the new namespace: mount the 1 MiB tmpfs and run every case. */
static int in_namespace(void *arg)
{
    struct row **rows = arg;
    long i, rounds = scaled(3, 30);
    size_t k;
    int code;

    if (unshare(CLONE_NEWNS) < 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tf-tmpfs", "/dev/shm", "tmpfs", 0, "size=1m,mode=1777") < 0) {
        perror("torture: full: mount a 1 MiB tmpfs");
        return 3;
    }
    for (i = 0; i < rounds; i++) {
        for (k = 0; k < sizeof c_cases / sizeof c_cases[0]; k++) {
            pid_t pid = child_run(try_case, (void *)c_cases[k]);
            account(rows[0], child_wait(pid, 30000, &code), code, c_cases[k]);
        }
        if (!T.python || !T.pyscript)
            continue;
        for (k = 0; k < sizeof py_cases / sizeof py_cases[0]; k++) {
            pid_t pid = child_run(py_case, (void *)py_cases[k]);
            account(rows[1], child_wait(pid, 60000, &code), code, py_cases[k]);
        }
    }
    return 0;
}

void attack_full(void)
{
    struct row *rows[2];
    struct row *shared;
    int code;
    pid_t pid;

    /* The rows are filled by a child (the namespace is its own): share
     * them through an anonymous mapping and copy back. */
    shared = mmap(NULL, 2 * sizeof *shared, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    rows[0] = row_new("full /dev/shm (1 MiB), every kind", "C");
    rows[1] = row_new("full /dev/shm (1 MiB), every kind", "Python");
    if (shared == MAP_FAILED) {
        rows[0]->bad++;
        return;
    }
    memcpy(&shared[0], rows[0], sizeof *shared);
    memcpy(&shared[1], rows[1], sizeof *shared);
    {
        struct row *sr[2] = {&shared[0], &shared[1]};
        pid = child_run(in_namespace, sr);
        if (child_wait(pid, 600000, &code) != OUT_OK)
            shared[0].bad++;
    }
    memcpy(rows[0], &shared[0], sizeof *shared);
    memcpy(rows[1], &shared[1], sizeof *shared);
    if (!T.python || !T.pyscript)
        snprintf(rows[1]->note, sizeof rows[1]->note,
                 "not run: SHMKIT_PYTHON / SHMKIT_TORTURE_PY unset");
    else
        snprintf(rows[1]->note, sizeof rows[1]->note, "%s", T.python);
    munmap(shared, 2 * sizeof *shared);
}
