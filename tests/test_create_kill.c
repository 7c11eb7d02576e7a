/*
 * test_create_kill.c - tracked creation has no window: a creator killed at
 * any point of a create (before and after every OS call it makes, and once
 * create returned) leaves nothing once its family's tracker has finished
 * and one gc ran. For each kind: block, list, array, value, named lock,
 * queue (SHMKIT_TRACK), and a reference-counted block (SHMKIT_REFCOUNT).
 *
 * The creator runs with the OS table wrapped; at point k it writes k to a
 * pipe and waits to be killed, so the parent knows where the kill landed
 * and can check that every point was hit.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/os.h"
#include "life/life.h"
#include "shmkit.h"
#include "create_kind.h"
#include "lifeutil.h"

TestSuite(create_kill, .init = tu_setup, .fini = tu_cleanup, .timeout = 240);

static shmkit__os_ops real_os;
static int stop_at = -1, stop_fd = -1, points;

static void point(void)
{
    tu_kill_point(&points, stop_at, stop_fd);
}

#define WRAP(ret, name, params, args)                                         \
    static ret h_##name params                                                \
    {                                                                         \
        ret r;                                                                \
        point();                                                              \
        r = real_os.name args;                                                \
        point();                                                              \
        return r;                                                             \
    }

WRAP(int, shm_open, (const char *n, int o, mode_t m), (n, o, m))
WRAP(int, shm_open_anon, (mode_t m), (m))
WRAP(int, shm_link, (int fd, const char *n), (fd, n))
WRAP(int, shm_rename, (const char *a, const char *b, unsigned f), (a, b, f))
WRAP(int, shm_unlink, (const char *n), (n))
WRAP(int, ftruncate, (int fd, off_t len), (fd, len))
WRAP(int, fallocate, (int fd, off_t len), (fd, len))
WRAP(int, fstat, (int fd, struct stat *st), (fd, st))
WRAP(int, mmap, (void **a, size_t l, bool w, bool p, int fd), (a, l, w, p, fd))
WRAP(int, random, (void *buf, size_t len), (buf, len))

static void hook_os(void)
{
    real_os = shmkit__os;
    shmkit__os.shm_open = h_shm_open;
    shmkit__os.shm_open_anon = h_shm_open_anon;
    shmkit__os.shm_link = h_shm_link;
    shmkit__os.shm_rename = h_shm_rename;
    shmkit__os.shm_unlink = h_shm_unlink;
    shmkit__os.ftruncate = h_ftruncate;
    shmkit__os.fallocate = h_fallocate;
    shmkit__os.fstat = h_fstat;
    shmkit__os.mmap = h_mmap;
    shmkit__os.random = h_random;
}

/* Objects left: ours by prefix, the sidecar of `name`, and temporaries of
 * creator `pid` (other suites may run beside us: only ours count). */
static int leftovers(const char *name, pid_t pid)
{
    char sc[SHMKIT_NAME_MAX + 1], tmp[64];
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    int n = 0;

    shmkit__ref_sidecar_name(name, sc);
    snprintf(tmp, sizeof tmp, "shmkit-tmp-%ld-", (long)pid);
    cr_assert_not_null(d);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, tu_prefix(), strlen(tu_prefix())) == 0 ||
             strcmp(e->d_name, sc) == 0 ||
             strncmp(e->d_name, tmp, strlen(tmp)) == 0;
    closedir(d);
    return n;
}

/* Kills a creator of `kind` at point k and checks nothing is left once
 * its tracker finished (and, for a refcounted block, one gc ran). */
static void kill_at(const char *kind, int k)
{
    const char *name = tu_name(kind);
    unsigned char got;
    pid_t pid, tracker = -1;
    int p[2], t[2];

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(t), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        close(t[0]);
        unsetenv("SHMKIT_TRACKER"); /* a family of its own */
        if (shmkit_track_start() < 0)
            _exit(5);
        tracker = shmkit_track_pid();
        if (write(t[1], &tracker, sizeof tracker) != sizeof tracker)
            _exit(6);
        stop_fd = p[1], stop_at = k, points = 0;
        hook_os();
        if (create_kind(kind, name, 8192, 64) != 0)
            _exit(2);
        point(); /* create returned */
        _exit(4);
    }
    close(p[1]);
    close(t[1]);
    cr_assert_eq(read(t[0], &tracker, sizeof tracker), sizeof tracker);
    close(t[0]);
    cr_assert_eq(read(p[0], &got, 1), 1, "%s: creator never reached point %d",
                 kind, k);
    cr_assert_eq(got, k);
    close(p[0]);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    tu_wait_signaled(pid, SIGKILL);
    /* It cleans up when the family is gone. */
    cr_assert(lu_wait_pid_gone(tracker), "tracker %d did not finish",
              (int)tracker);
    if (strcmp(kind, "refblock") == 0)
        tu_gc(0); /* no tracker: the one gc */
    cr_assert_eq(leftovers(name, pid), 0, "%s killed at point %d: %d left",
                 kind, k, leftovers(name, pid));
}

/* Counts the points of one create, in a child (this process must stay
 * out of any family, or its children would join it). */
static int count_points(const char *kind)
{
    const char *name = tu_name(kind);
    int p[2], n = 0;
    pid_t pid;

    cr_assert_eq(pipe(p), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        if (shmkit_track_start() < 0) /* as the killed creators do */
            _exit(5);
        points = 0;
        stop_at = -1;
        hook_os();
        if (create_kind(kind, name, 8192, 64) != 0)
            _exit(2);
        n = points + 1; /* + "create returned" */
        shmkit__os_reset();
        shmkit_unlink(name);
        _exit(write(p[1], &n, sizeof n) == sizeof n ? 0 : 3);
    }
    close(p[1]);
    tu_wait_ok(pid);
    cr_assert_eq(read(p[0], &n, sizeof n), sizeof n);
    close(p[0]);
    return n;
}

static void every_point(const char *kind)
{
    int n = count_points(kind), k;

    cr_assert_gt(n, 3);
    for (k = 0; k < n; k++)
        kill_at(kind, k);
    cr_log_info("%s: killed at each of %d points, nothing left", kind, n);
}

Test(create_kill, block) { every_point("block"); }
Test(create_kill, list) { every_point("list"); }
Test(create_kill, array) { every_point("array"); }
Test(create_kill, value) { every_point("value"); }
Test(create_kill, lock) { every_point("lock"); }
Test(create_kill, queue) { every_point("queue"); }
Test(create_kill, refcounted_block) { every_point("refblock"); }
