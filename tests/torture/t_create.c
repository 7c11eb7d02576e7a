/*
 * t_create.c - SIGKILL creators at random instants, from exec to ready,
 * for each kind of object, tracked (refcounted for "refblock"): after the
 * family trackers have finished and one shmkit_gc(), nothing may be left.
 *
 * Each creator is this program exec'd as "--child-create KIND NAME": it
 * creates the object, writes one byte to stdout (a pipe) and waits to be
 * killed. The kill delay is uniform over 1.2 times the measured time from
 * fork to ready, so every phase of creation gets hit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../create_kind.h"
#include "shmkit.h"
#include "torture.h"

static const char *const kinds[] = {"block", "list",  "array",   "value",
                                    "lock",  "queue", "refblock"};


int child_create_main(int argc, char **argv)
{
    int r;

    if (argc < 2)
        return 2;
    r = create_kind(argv[0], argv[1], 65536, 4096);
    if (r < 0) {
        fprintf(stderr, "create %s %s: %s\n", argv[0], argv[1],
                shmkit_last_error());
        return 3;
    }
    if (write(1, "R", 1) != 1)
        return 4;
    for (;;)
        pause();
}

/* Starts a creator; *rfd gets the read end of its ready pipe. */
static pid_t creator_start(const char *kind, const char *name, int *rfd)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        execl(T.self, T.self, "--child-create", kind, name, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

/* Time from fork to ready, the largest of a few unkilled runs (ns). */
static int64_t calibrate(const char *kind, struct row *r)
{
    int64_t worst = 1000000;
    char name[64], c;
    int i, fd, code;

    for (i = 0; i < 3; i++) {
        int64_t t0 = now_ns();
        pid_t pid;
        snprintf(name, sizeof name, "tc_%s_cal%d", kind, i);
        pid = creator_start(kind, name, &fd);
        if (pid < 0)
            return worst;
        if (read(fd, &c, 1) != 1)
            r->bad++;
        else if (now_ns() - t0 > worst)
            worst = now_ns() - t0;
        close(fd);
        kill(pid, SIGKILL);
        if (child_wait(pid, 5000, &code) != OUT_KILLED)
            r->bad++;
    }
    return worst;
}

static long leftovers(void)
{
    return shm_count("tc_") + shm_count("shmkit-tmp-") + shm_count("psm_") +
           shm_count("shmkit.ref.");
}

static void attack_kind(const char *kind, long n)
{
    struct row *r = row_new("SIGKILL creators, random instant", kind);
    char name[64];
    int64_t window;
    long i, before;

    window = calibrate(kind, r) * 12 / 10;
    for (i = 0; i < n; i++) {
        int fd, code;
        enum outcome o;
        pid_t pid;
        snprintf(name, sizeof name, "tc_%s_%ld", kind, i);
        pid = creator_start(kind, name, &fd);
        if (pid < 0) {
            r->bad++;
            break;
        }
        /* The random instant is the attack. */
        sleep_ns((int64_t)rnd_below((uint64_t)window));
        kill(pid, SIGKILL);
        o = child_wait(pid, 5000, &code);
        close(fd);
        r->runs++;
        if (o == OUT_KILLED)
            r->kills++;
        else {
            row_count(r, o);
            if (o == OUT_EXIT)
                r->bad++;
        }
    }
    trackers_settle(20000);
    before = leftovers();
    shmkit_gc(0, NULL, NULL);
    r->leaks = leftovers();
    if (r->leaks)
        shm_print("torture: create: left after gc: ");
    snprintf(r->note, sizeof r->note, "window %.1f ms; %ld left before gc",
             (double)window / 1e6, before);
    shm_clear("tc_");
}

void attack_create(void)
{
    size_t k;
    long n = scaled(40, 400);

    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        attack_kind(kinds[k], n);
}
