/*
 * lifeutil.h - helpers of the lifecycle tests (tracker, refcount, manager,
 * gc): a private runtime directory per test, name passing through pipes,
 * and bounded waits for a condition (never a sleep as synchronisation).
 * Header-only so each test file stays one executable.
 */
#ifndef SHMKIT_LIFEUTIL_H
#define SHMKIT_LIFEUTIL_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char lu_rundir[256];

static inline int lu_rm_one(const char *p, const struct stat *st, int flag,
                     struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    /* A daemon of the test may be removing the same files: go on. */
    remove(p);
    return 0;
}

/* Removes refcount sidecars that count blocks of this test run. */
static inline void lu_sidecar_cleanup(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char buf[400];
        int fd;
        ssize_t n;
        if (strncmp(e->d_name, "shmkit.ref.", 11) != 0)
            continue;
        fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        /* The block name sits at offset 96 of the sidecar header. */
        if (n > 96 && strncmp(buf + 96, tu_prefix(), strlen(tu_prefix())) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static inline void lu_setup(void)
{
    tu_setup();
    snprintf(lu_rundir, sizeof lu_rundir, "/tmp/sktest-rt-XXXXXX");
    cr_assert_not_null(mkdtemp(lu_rundir));
    setenv("SHMKIT_RUNTIME_DIR", lu_rundir, 1);
    unsetenv("SHMKIT_TRACKER");
}

static inline bool lu_wait_pid_gone(pid_t pid, long ms);

/* Lets this test's tracker finish (we are the last of its family once we
 * drop the lifeline), then removes the test's runtime directory. */
static inline void lu_cleanup(void)
{
    pid_t t = shmkit_track_pid();
    int fd = shmkit_track_fd();

    if (fd >= 0)
        close(fd);
    if (t > 0)
        lu_wait_pid_gone(t, 2000);
    lu_sidecar_cleanup();
    tu_cleanup();
    if (lu_rundir[0])
        nftw(lu_rundir, lu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline long lu_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static inline bool lu_exists(const char *name)
{
    char path[sizeof "/dev/shm/" + SHMKIT_NAME_MAX];
    size_t n = strlen(name);
    struct stat st;

    if (n > SHMKIT_NAME_MAX)
        return false;
    memcpy(path, "/dev/shm/", 9);
    memcpy(path + 9, name, n + 1);
    return lstat(path, &st) == 0;
}

/* Polls (1 ms steps) until `name` exists == want, for at most ms. */
static inline bool lu_wait_exists(const char *name, bool want, long ms)
{
    long end = lu_now_ms() + ms;
    struct timespec step = {0, 1000000};

    for (;;) {
        if (lu_exists(name) == want)
            return true;
        if (lu_now_ms() > end)
            return false;
        nanosleep(&step, NULL);
    }
}

/* Polls until process pid (not our child) has gone, for at most ms. */
static inline bool lu_wait_pid_gone(pid_t pid, long ms)
{
    long end = lu_now_ms() + ms;
    struct timespec step = {0, 1000000};

    while (kill(pid, 0) == 0 || errno != ESRCH) {
        char path[64], st = 0;
        FILE *f;
        /* A zombie of someone else's counts as gone. */
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        if ((f = fopen(path, "re"))) {
            int r = fscanf(f, "%*d %*s %c", &st);
            fclose(f);
            if (r == 1 && st == 'Z')
                return true;
        }
        if (lu_now_ms() > end)
            return false;
        nanosleep(&step, NULL);
    }
    return true;
}

/* Writes a NUL-terminated string to fd as one message. */
static inline void lu_send(int fd, const char *s)
{
    size_t n = strlen(s) + 1;

    cr_assert_eq(write(fd, s, n), (ssize_t)n);
}

/* Reads one NUL-terminated message from fd into buf; false on EOF. */
static inline bool lu_recv(int fd, char *buf, size_t len)
{
    size_t i = 0;

    while (i + 1 < len) {
        ssize_t n = read(fd, buf + i, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        if (buf[i++] == 0)
            return true;
    }
    buf[i] = 0;
    return true;
}

static inline void lu_send_int(int fd, long v)
{
    char b[32];

    snprintf(b, sizeof b, "%ld", v);
    lu_send(fd, b);
}

static inline long lu_recv_int(int fd)
{
    char b[32];

    cr_assert(lu_recv(fd, b, sizeof b), "peer closed before sending a number");
    return atol(b);
}

/* Blocks until the peer closes fd (used as "wait until told to exit"). */
static inline void lu_wait_eof(int fd)
{
    char c;

    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 0 || (n < 0 && errno != EINTR))
            return;
    }
}

#endif
