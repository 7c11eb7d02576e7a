/*
 * test_truncate_peer.c - a peer that truncates a block while we attach to
 * it, ask its kind, or refresh a handle must never kill us with SIGBUS:
 * headers are read with pread, so the answers are refusals
 * (SHMKIT_ETRUNCATED, SHMKIT_EEMPTY, SHMKIT_EKIND, ...) or success; an
 * attach that answers anything else (it once said -ENOSPC for a queue)
 * exits 2.
 *
 * The peer loops (to size 0, then a few bytes, then back to full with the
 * original bytes) until the attacker, a child that runs a fixed number of
 * rounds, has exited; the attacker's exit status must be 0.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit.h"
#include "testutil.h"

TestSuite(truncate_peer, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

#define ROUNDS 3000

/* Toggles the object's size until *stop; exits 0, or 1 on a failed call. */
static void peer(const char *name, volatile int *stop)
{
    shmkit_block *b;
    unsigned char *orig;
    size_t size;
    int fd;

    if (shmkit_block_attach(&b, name, 0) < 0)
        _exit(1);
    size = shmkit_block_size(b);
    fd = shmkit_block_fd(b);
    orig = malloc(size);
    if (!orig || pread(fd, orig, size, 0) != (ssize_t)size)
        _exit(1);
    while (!*stop) {
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, 8) < 0 ||
            ftruncate(fd, (off_t)size) < 0 ||
            pwrite(fd, orig, size, 0) != (ssize_t)size)
            _exit(1);
    }
    _exit(0);
}

/* Attaches as `kind` (by attach_fn), probes the kind, refreshes a held
 * handle, ROUNDS times. A signal kills it; a wrong code exits 2. */
static void attacker(const char *name, int (*attach_fn)(const char *))
{
    shmkit_block *held = NULL, *b;
    int i, r;

    for (i = 0; i < ROUNDS; i++) {
        r = attach_fn(name);
        /* A header read while the peer rewrites it may be refused by any
         * documented bad-header code (the peer's pwrite is not atomic
         * against our pread). */
        if (r != 0 && r != SHMKIT_ETRUNCATED && r != SHMKIT_EEMPTY &&
            r != SHMKIT_EKIND && r != SHMKIT_ECORRUPT &&
            r != SHMKIT_EVERSION && r != SHMKIT_ETYPE && r != SHMKIT_ESHAPE)
            _exit(2);
        if (shmkit_block_attach(&b, name, 0) == 0) {
            shmkit_block_kind(b);
            shmkit_block_close(b);
        }
        if (held) {
            r = shmkit_block_refresh(held);
            if (r != 0 && r != SHMKIT_ETRUNCATED)
                _exit(3);
        } else {
            shmkit_block_attach(&held, name, 0);
        }
    }
    shmkit_block_close(held);
    _exit(0);
}

static void run(const char *name, int (*attach_fn)(const char *))
{
    volatile int *stop = mmap(NULL, sizeof *stop, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t p, a;

    cr_assert_neq((void *)stop, MAP_FAILED);
    *stop = 0;
    p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        /* Never outlive a test that failed before setting *stop. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
            _exit(1);
        peer(name, stop);
    }
    a = fork();
    cr_assert_geq(a, 0);
    if (a == 0)
        attacker(name, attach_fn);
    cr_assert_eq(tu_wait_status(a), 0,
                 "attacker of %s: status %#x (a signal: SIGBUS is %d)", name,
                 tu_wait_status(a), SIGBUS);
    *stop = 1;
    tu_wait_ok(p);
    munmap((void *)stop, sizeof *stop);
    cr_assert_eq(shmkit_unlink(name), 0);
}

static int attach_list(const char *name)
{
    shmkit_list *l;
    int r = shmkit_list_attach(&l, name, 0);

    if (r == 0)
        shmkit_list_close(l);
    return r;
}

static int attach_array(const char *name)
{
    shmkit_array *a;
    int r = shmkit_array_attach(&a, name, 0);

    if (r == 0)
        shmkit_array_close(a);
    return r;
}

static int attach_lock(const char *name)
{
    shmkit_lock *l;
    int r = shmkit_lock_attach(&l, name, 0);

    if (r == 0)
        shmkit_lock_close(l);
    return r;
}

static int attach_queue(const char *name)
{
    shmkit_queue *q;
    int r = shmkit_queue_attach(&q, name, 0);

    if (r == 0)
        shmkit_queue_close(q);
    return r;
}

static int attach_raw(const char *name)
{
    shmkit_block *b;
    int r = shmkit_block_attach(&b, name, 0);

    if (r == 0)
        shmkit_block_close(b);
    return r;
}

Test(truncate_peer, list)
{
    static char big[20000];
    shmkit_item it[2];
    shmkit_list *l;

    memset(big, 'y', sizeof big);
    it[0] = shmkit_item_strn(big, sizeof big);
    it[1] = shmkit_item_int(3);
    cr_assert_eq(shmkit_list_create(&l, tu_name("l"), it, 2, 0), 0);
    shmkit_list_close(l);
    run(tu_name("l"), attach_list);
}

Test(truncate_peer, array)
{
    size_t shape[1] = {4096};
    shmkit_array *a;

    cr_assert_eq(shmkit_array_create(&a, tu_name("a"), 'q', 1, shape, 0), 0);
    shmkit_array_close(a);
    run(tu_name("a"), attach_array);
}

Test(truncate_peer, lock)
{
    shmkit_lock *l;

    cr_assert_eq(shmkit_lock_create(&l, tu_name("k"), 0, 0), 0);
    shmkit_lock_close(l);
    run(tu_name("k"), attach_lock);
}

Test(truncate_peer, queue)
{
    shmkit_queue *q;
    int i;

    cr_assert_eq(shmkit_queue_create(&q, tu_name("q"), 64 << 10, 0, 0), 0);
    for (i = 0; i < 100; i++)
        cr_assert_eq(shmkit_queue_put(q, &i, sizeof i, NULL), 0);
    shmkit_queue_close(q);
    run(tu_name("q"), attach_queue);
}

Test(truncate_peer, raw_kind_and_refresh)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("r"), 40000, 0), 0);
    memset(shmkit_block_data(b), 1, 40000);
    shmkit_block_close(b);
    run(tu_name("r"), attach_raw);
}
