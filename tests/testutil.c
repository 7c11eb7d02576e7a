/* testutil.c - see testutil.h. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char prefix[64];

const char *tu_prefix(void)
{
    if (!prefix[0])
        snprintf(prefix, sizeof prefix, "sktest_%ld_", (long)getpid());
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

void tu_setup(void)
{
    prefix[0] = 0;
    tu_prefix();
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

int tu_python(const char *code, const char *arg1, const char *arg2,
              char *out, size_t outlen)
{
    const char *py = getenv("SHMKIT_PYTHON");
    char *argv[6] = {(char *)(py && *py ? py : "/usr/bin/python3"), "-c",
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
