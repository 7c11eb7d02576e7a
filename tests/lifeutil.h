/*
 * lifeutil.h - helpers of the lifecycle tests (tracker, refcount, manager,
 * gc): a private runtime directory per test, name passing through pipes,
 * and waits on the event itself (a pidfd, inotify), never a sleep, with a
 * generous bound.
 * Header-only so each test file stays one executable.
 */
#ifndef SHMKIT_LIFEUTIL_H
#define SHMKIT_LIFEUTIL_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/os.h"
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

static inline void lu_cleanup(void);

static inline void lu_setup(void)
{
    tu_setup();
    tu_on_skip(lu_cleanup);
    snprintf(lu_rundir, sizeof lu_rundir, "/tmp/sktest-rt-XXXXXX");
    cr_assert_not_null(mkdtemp(lu_rundir));
    setenv("SHMKIT_RUNTIME_DIR", lu_rundir, 1);
    unsetenv("SHMKIT_TRACKER");
}

static inline bool lu_wait_pid_gone(pid_t pid);

/* Lets this test's tracker finish (we are the last of its family once we
 * drop the lifeline), then removes the test's runtime directory. */
static inline void lu_cleanup(void)
{
    pid_t t = shmkit_track_pid();
    int fd = shmkit_track_fd();

    if (fd >= 0)
        close(fd);
    if (t > 0)
        lu_wait_pid_gone(t);
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

/* How long a wait for an event may take before the test calls it lost:
 * generous, so a slow or loaded machine is not a failure; the waits below
 * return as soon as the event happens, so a fast one pays nothing. */
#define LU_BOUND_MS 30000

/* Waits, on inotify events of the shm directory (no polling), until
 * `name` does not exist; false if it still does after LU_BOUND_MS. */
static inline bool lu_wait_gone(const char *name)
{
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    long end = lu_now_ms() + LU_BOUND_MS;
    bool gone = false;

    cr_assert_geq(fd, 0, "inotify_init1: %s", strerror(errno));
    cr_assert_geq(inotify_add_watch(fd, "/dev/shm", IN_DELETE | IN_MOVED_FROM),
                  0, "inotify_add_watch: %s", strerror(errno));
    for (;;) {
        char buf[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = end - lu_now_ms();
        /* Checked after the watch is in place: no removal is missed. */
        if (!lu_exists(name)) {
            gone = true;
            break;
        }
        if (left <= 0)
            break;
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            break;
        while (read(fd, buf, sizeof buf) > 0)
            ;
    }
    close(fd);
    return gone;
}

/* Waits until process pid (not necessarily our child) has exited, on a
 * pidfd (no polling); false if it still runs after LU_BOUND_MS. A zombie
 * counts as gone. */
static inline bool lu_wait_pid_gone(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p;
    int r;

    if (fd < 0 && errno == ESRCH)
        return true;
    cr_assert_geq(fd, 0, "pidfd_open(%d): %s", (int)pid, strerror(errno));
    p = (struct pollfd){.fd = fd, .events = POLLIN};
    do
        r = poll(&p, 1, LU_BOUND_MS);
    while (r < 0 && errno == EINTR);
    close(fd);
    return r == 1;
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

/* ---- a daemon whose own /proc read fails ----------------------------------
 * lu_proc_start_fails_elsewhere() makes the OS table's proc_start answer
 * `err` in every process but this one: a tracker or manager forked from
 * here (it inherits the table) cannot read its own start time, while this
 * process still can. shmkit__os_reset() undoes it. */
struct lu_gate {
    pid_t only;
    int err;
    int (*real)(pid_t pid, uint64_t *start);
};

static inline struct lu_gate *lu_gate(void)
{
    static struct lu_gate g;

    return &g;
}

static inline int lu_gated_proc_start(pid_t pid, uint64_t *start)
{
    struct lu_gate *g = lu_gate();

    if (getpid() != g->only)
        return g->err;
    return g->real(pid, start);
}

static inline void lu_proc_start_fails_elsewhere(int err)
{
    struct lu_gate *g = lu_gate();

    g->only = getpid();
    g->err = err;
    g->real = shmkit__os.proc_start;
    shmkit__os.proc_start = lu_gated_proc_start;
}

/* How many entries of the test's runtime directory start with `prefix`
 * ("fam-": families, "mgr-": managers' state). */
static inline int lu_rundir_count(const char *prefix)
{
    DIR *d = opendir(lu_rundir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d, "opendir(%s): %s", lu_rundir, strerror(errno));
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* ---- a family member holding a tracked block ------------------------------ */

/* A child of the test in the test's family (or its own, if it is the
 * first to track), holding a tracked block until the test lets it go. */
struct lu_holder {
    pid_t pid;
    pid_t tracker;  /* its family's tracker */
    int hold;       /* close it to let the child exit 0 */
    char name[SHMKIT_NAME_MAX + 1];
};

/* Child body: creates tracked block tu_name(tag); with `rename_to`,
 * renames it there, with `unlink_it` unlinks it; sends its name and its
 * tracker's pid to `out`, then waits until `hold` ends. Exits 10 if a call
 * fails, else 0. */
static inline void lu_holder_body(const char *tag, const char *rename_to,
                                  bool unlink_it, int out, int hold)
{
    shmkit_block *b;

    if (shmkit_block_create(&b, tu_name(tag), 64, SHMKIT_TRACK) < 0 ||
        (rename_to && shmkit_block_rename(b, rename_to, 0) < 0) ||
        (unlink_it && shmkit_block_unlink(b) < 0))
        _exit(10);
    lu_send(out, shmkit_block_name(b));
    lu_send_int(out, shmkit_track_pid());
    shmkit_block_close(b);
    lu_wait_eof(hold);
    _exit(0);
}

/* Forks a child running lu_holder_body and returns once it has reported. */
static inline void lu_spawn_holder(struct lu_holder *h, const char *tag,
                                   const char *rename_to, bool unlink_it)
{
    int p[2], hold[2];

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(hold), 0);
    h->pid = fork();
    cr_assert_geq(h->pid, 0);
    if (h->pid == 0) {
        close(p[0]);
        close(hold[1]);
        lu_holder_body(tag, rename_to, unlink_it, p[1], hold[0]);
    }
    close(p[1]);
    close(hold[0]);
    cr_assert(lu_recv(p[0], h->name, sizeof h->name), "the holder failed");
    h->tracker = (pid_t)lu_recv_int(p[0]);
    cr_assert_gt(h->tracker, 0);
    close(p[0]);
    h->hold = hold[1];
}

#endif
