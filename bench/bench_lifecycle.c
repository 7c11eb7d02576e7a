/*
 * bench_lifecycle.c - what a lifetime costs, beside the floor, in one run
 * (see bench_util.h for how each figure is taken). One operation is a
 * create cycle of a 4 KiB block: create + write 64 bytes + unlink + close.
 *
 *   c.life.create (thread CPU time)
 *     raw system calls (floor)  shm_open(O_CREAT|O_EXCL) + ftruncate + mmap
 *                               + write + munmap + close + shm_unlink
 *     shmkit, untracked         shmkit_block_create(0)
 *     shmkit, tracked           SHMKIT_TRACK (a journal record on create and
 *                               on unlink; the tracker is started once,
 *                               before timing: its own time is not counted,
 *                               as the journal is a mapping it reads later)
 *     shmkit, refcounted        SHMKIT_REFCOUNT (sidecar made, locked,
 *                               unlinked by the last close)
 *   c.life.manager (wall time: the manager process does the work)
 *     raw system calls (floor)  as above
 *     shmkit, untracked         as above
 *     shmkit, manager-owned     shmkit_manager_create_block over the socket
 *                               (the manager creates, reserves and journals
 *                               it), attach + write + close here, then
 *                               shmkit_manager_release
 *
 * Usage: bench_lifecycle [--tsv] [--quick] [--rounds N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_util.h"
#include "shmkit.h"

#define SIZE 4096

static char name[64], slashed[72];
static shmkit_manager *M;

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_lifecycle: %s: %s (%s)\n", what, shmkit_strerror(r),
            shmkit_last_error());
    exit(1);
}

static void loop_floor(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        int fd = shm_open(slashed, O_CREAT | O_EXCL | O_RDWR, 0600);
        void *p;

        if (fd < 0 || ftruncate(fd, SIZE) != 0)
            die("shm_open/ftruncate", -errno);
        p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            die("mmap", -errno);
        memset(p, 1, 64);
        munmap(p, SIZE);
        close(fd);
        shm_unlink(slashed);
    }
}

static void loop_shmkit(void *ctx, long n)
{
    unsigned flags = (unsigned)(uintptr_t)ctx;

    for (long i = 0; i < n; i++) {
        shmkit_block *b;
        int r = shmkit_block_create(&b, name, SIZE, flags);

        if (r != 0)
            die("shmkit_block_create", r);
        memset(shmkit_block_data(b), 1, 64);
        if (!(flags & SHMKIT_REFCOUNT))
            shmkit_block_unlink(b);
        shmkit_block_close(b); /* refcount: the last close unlinks */
    }
}

static void loop_manager(void *ctx, long n)
{
    char got[SHMKIT_NAME_MAX + 1];

    (void)ctx;
    for (long i = 0; i < n; i++) {
        shmkit_block *b;
        int r = shmkit_manager_create_block(M, name, SIZE, got);

        if (r != 0)
            die("shmkit_manager_create_block", r);
        if ((r = shmkit_block_attach(&b, got, 0)) != 0)
            die("shmkit_block_attach", r);
        memset(shmkit_block_data(b), 1, 64);
        shmkit_block_close(b);
        if ((r = shmkit_manager_release(M, got)) != 0)
            die("shmkit_manager_release", r);
    }
}

int main(int argc, char **argv)
{
    int r;

    bench_args(argc, argv);
    snprintf(name, sizeof name, "bench_life_%ld", (long)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);
    if ((r = shmkit_track_start()) != 0)
        die("shmkit_track_start", r);
    {
        bench_contender c[] = {
            {"raw system calls (floor)", loop_floor, NULL},
            {"shmkit, untracked", loop_shmkit, (void *)(uintptr_t)0},
            {"shmkit, tracked", loop_shmkit, (void *)(uintptr_t)SHMKIT_TRACK},
            {"shmkit, refcounted", loop_shmkit,
             (void *)(uintptr_t)SHMKIT_REFCOUNT},
        };
        bench_run("c.life.create", "C: 4 KiB create cycle, by lifetime", c,
                  sizeof c / sizeof *c, bench_n(5000), NULL);
    }
    if ((r = shmkit_manager_start(&M, NULL, NULL, 0)) != 0) {
        fprintf(stderr, "bench_lifecycle: no manager (%s): its row is left out\n",
                shmkit_last_error());
        return 0;
    }
    {
        bench_contender c[] = {
            {"raw system calls (floor)", loop_floor, NULL},
            {"shmkit, untracked", loop_shmkit, (void *)(uintptr_t)0},
            {"shmkit, manager-owned (+ attach, release)", loop_manager, NULL},
        };
        bench_run_wall("c.life.manager",
                       "C: 4 KiB create cycle, manager-owned (wall)", c,
                       sizeof c / sizeof *c, bench_n(2000), NULL);
    }
    shmkit_manager_close(M);
    return 0;
}
