/* testutil.c - see testutil.h. */
#define _GNU_SOURCE
#include "testutil.h"
#include "sync/sync_internal.h"

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char prefix[64];

const char *tu_prefix(void)
{
    if (!prefix[0])
    {
        const char *tag = getenv("SHMKIT_TEST_TAG");
        if (!tag || strlen(tag) > 24 || strspn(tag, "abcdefghijklmnopqrstuvwxyz"
                                               "0123456789") != strlen(tag))
            tag = "";
        snprintf(prefix, sizeof prefix, "sktest_%s%ld_", tag, (long)getpid());
    }
    return prefix;
}

const char *tu_name(const char *tag)
{
    static char bufs[8][300];
    static unsigned next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%s%s", tu_prefix(), tag);
    return b;
}

static void (*skip_cleanup)(void);

void tu_setup(void)
{
    prefix[0] = 0;
    tu_prefix();
    skip_cleanup = tu_cleanup;
}

void tu_on_skip(void (*cleanup)(void))
{
    skip_cleanup = cleanup;
}

void tu_skip(const char *why)
{
    if (skip_cleanup)
        skip_cleanup();
    cr_skip_test("%s", why);
}

static int sweep(bool remove)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    size_t n = strlen(tu_prefix());
    int count = 0;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, tu_prefix(), n) != 0)
            continue;
        count++;
        if (remove)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    return count;
}

void tu_cleanup(void)
{
    sweep(true);
}

int tu_count_leftovers(void)
{
    return sweep(false);
}

int tu_wait_status(pid_t pid)
{
    int st;
    pid_t r;

    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    cr_assert_eq(r, pid, "waitpid(%d): %s", (int)pid, strerror(errno));
    return st;
}

void tu_wait_ok(pid_t pid)
{
    int st = tu_wait_status(pid);

    cr_assert(WIFEXITED(st), "child %d did not exit normally (status %#x, "
              "signal %d)", (int)pid, st, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    cr_assert_eq(WEXITSTATUS(st), 0, "child %d exited with %d", (int)pid,
                 WEXITSTATUS(st));
}

void tu_kill_point(int *count, int stop_at, int fd)
{
    if ((*count)++ == stop_at) {
        unsigned char k = (unsigned char)stop_at;
        if (write(fd, &k, 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
}

void tu_wait_signaled(pid_t pid, int sig)
{
    int st = tu_wait_status(pid);

    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == sig,
              "child %d: status %#x, expected death by signal %d", (int)pid,
              st, sig);
}

int tu_run(char *const argv[], char *out, size_t outlen)
{
    int p[2];
    pid_t pid;
    size_t used = 0;

    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        dup2(p[1], 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    for (;;) {
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (out && used + 1 < outlen) {
            size_t k = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
            memcpy(out + used, tmp, k);
            used += k;
        }
    }
    close(p[0]);
    if (out && outlen)
        out[used] = 0;
    return tu_wait_status(pid);
}

const char *tu_python_path(void)
{
    const char *py = getenv("SHMKIT_PYTHON");

    return py && *py ? py : "/usr/bin/python3";
}

int tu_python(const char *code, const char *arg1, const char *arg2,
              char *out, size_t outlen)
{
    char *argv[6] = {(char *)tu_python_path(), "-c",
                     (char *)code, (char *)arg1, (char *)arg2, NULL};

    if (!arg1)
        argv[3] = NULL;
    return tu_run(argv, out, outlen);
}

const char *tu_cli(void)
{
    const char *c = getenv("SHMKIT_CLI");

    cr_assert(c && *c, "SHMKIT_CLI is not set (run the tests through ctest)");
    return c;
}

int tu_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static int filled[64], nfilled;

int tu_fds_leave(int free_left)
{
    struct rlimit rl = {64, 64};
    int i;

    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    nfilled = 0;
    while (nfilled < 64 &&
           (filled[nfilled] = open("/dev/null", O_RDONLY)) >= 0)
        nfilled++;
    for (i = 0; i < free_left && nfilled > 0; i++)
        close(filled[--nfilled]);
    return 0;
}

void tu_fds_release(void)
{
    while (nfilled > 0)
        close(filled[--nfilled]);
}

int tu_shm_mapping_count(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[1024];
    int n = 0;

    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, " /dev/shm/"))
            n++;
    fclose(f);
    return n;
}

bool tu_private_shm(void)
{
    const char *v = getenv("SHMKIT_PRIVATE_SHM");

    return v && strcmp(v, "1") == 0;
}

void tu_require_private_shm(void)
{
    if (!tu_private_shm())
        tu_skip("runs shmkit_gc(), which would act on the host's whole "
                "/dev/shm: run the suite through scripts/private-shm.sh");
}

static void count_own(const char *what, const char *name, void *arg)
{
    (void)what;
    if (strncmp(name, tu_prefix(), strlen(tu_prefix())) == 0)
        ++*(int *)arg;
}

int tu_gc(unsigned flags)
{
    int own = 0, r;

    if (tu_private_shm())
        return shmkit_gc(flags, NULL, NULL);
    if (!(flags & SHMKIT_GC_DRY_RUN))
        tu_skip("shmkit_gc() would act on the host's whole /dev/shm: "
                "run the suite through scripts/private-shm.sh");
    r = shmkit_gc(flags, count_own, &own);
    return r < 0 ? r : own;
}

/* The first field of /proc/<tid>/syscall: the number of the system call
 * the thread is blocked in, or -1 ("running") if it is not in one. */
static long blocked_syscall(pid_t tid)
{
    char path[64], buf[256];
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)tid, (int)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -2;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -2;
    buf[n] = 0;
    return buf[0] >= '0' && buf[0] <= '9' ? strtol(buf, NULL, 10) : -1;
}

void tu_wait_in_futex(pid_t tid)
{
    struct timespec step = {0, 1000000}, t0, t;
    long nr = -1;

    /* There is no event for "went to sleep in a futex": this looks at the
     * thread's state every millisecond, for at most 30 s. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        nr = blocked_syscall(tid);
        if (nr == SYS_futex)
            return;
        cr_assert_neq(nr, -2, "thread %d is gone", (int)tid);
        clock_gettime(CLOCK_MONOTONIC, &t);
        cr_assert_lt(t.tv_sec - t0.tv_sec, 30,
                     "thread %d not asleep in futex after 30 s (syscall %ld)",
                     (int)tid, nr);
        nanosleep(&step, NULL);
    }
}

/* Writes `text` to /proc/self/<file>; false on failure. */
static bool write_proc(const char *file, const char *text)
{
    char path[64];
    size_t n = strlen(text);
    bool ok;
    int fd;

    snprintf(path, sizeof path, "/proc/self/%s", file);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    return ok;
}

bool tu_unshare(int flags)
{
    unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();
    char map[64];

    if (unshare(flags) == 0)
        return true;
    if (unshare(CLONE_NEWUSER | flags) < 0)
        return false;
    snprintf(map, sizeof map, "%u %u 1", uid, uid);
    if (!write_proc("uid_map", map) || !write_proc("setgroups", "deny"))
        return false;
    snprintf(map, sizeof map, "%u %u 1", gid, gid);
    return write_proc("gid_map", map);
}

shmkit_block *tu_make_block(const char *tag, size_t size, void **pp)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name(tag), size, 0), 0, "%s",
                 shmkit_last_error());
    *pp = shmkit_block_data(b);
    return b;
}

void tu_drop_block(shmkit_block *b)
{
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0, "%s", shmkit_last_error());
}

double tu_now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

bool tu_reached(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return !shmkit__ts_before(&now, t);
}

int tu_in_small_shm(int (*body)(void))
{
    int st;
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (!tu_unshare(CLONE_NEWNS) ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") < 0)
            _exit(77);
        _exit(body());
    }
    st = tu_wait_status(pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 77 ? -1 : st;
}
