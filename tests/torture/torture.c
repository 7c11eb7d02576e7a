/*
 * torture.c - runs every attack of issue 11 against shmkit and prints one
 * table: kills, owner deaths reported, hangs, leaks, mutations, crashes,
 * SIGBUS, wrong results.
 *
 *   torture [--long] [--only a,b,...] [--scale X] [--seed N] [-v]
 *
 * Attacks: locks, create, full, mutate, truncate, manager, fds, qwait (queue
 * waiters behind a SIGKILLed peer: woken by its death, not a slice), qbatch
 * (queue consumers SIGKILLed inside get_many's big batches). The default run
 * is short (CI, under a minute); --long runs the goal figures. It refuses
 * to run outside a private /dev/shm (scripts/private-shm.sh sets
 * SHMKIT_PRIVATE_SHM=1) and re-executes itself through that script when
 * SHMKIT_SOURCE_DIR says where it is; inside, it mounts a /dev/shm and
 * takes a runtime directory of its own, so that what it counts and what
 * its gc removes are its own even beside other tests. Exit status 1 if
 * any row shows a hang, a leak, a crash, a SIGBUS or a wrong result.
 */
#define _GNU_SOURCE
#include "torture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

struct torture T = {.scale = 1.0};

#define MAX_ROWS 64
static struct row rows[MAX_ROWS];
static int nrows;

struct row *row_new(const char *attack, const char *kind)
{
    struct row *r = &rows[nrows < MAX_ROWS - 1 ? nrows++ : nrows];

    memset(r, 0, sizeof *r);
    snprintf(r->attack, sizeof r->attack, "%s", attack);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    return r;
}

/* ---- randomness and time --------------------------------------------- */

static uint64_t rstate = 88172645463325252ull;

void rnd_seed(uint64_t s)
{
    rstate = s ? s : 88172645463325252ull;
}

uint64_t rnd(void)
{
    rstate ^= rstate << 13;
    rstate ^= rstate >> 7;
    rstate ^= rstate << 17;
    return rstate;
}

uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

long scaled(long n, long nlong)
{
    double v = (T.longrun ? (double)nlong : (double)n) * T.scale;

    return v < 1 ? 1 : (long)v;
}

/* ---- children -------------------------------------------------------- */

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

enum outcome child_wait(pid_t pid, int timeout_ms, int *code)
{
    int st = 0, fd = timeout_ms >= 0 ? pidfd_open_(pid) : -1;
    bool hung = false;

    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
        int n;
        do {
            int64_t left = (end - now_ns()) / 1000000;
            n = poll(&p, 1, left < 0 ? 0 : (int)left);
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            hung = true;
            kill(pid, SIGKILL);
        }
        close(fd);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (code)
        *code = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
    if (hung)
        return OUT_HANG;
    if (WIFEXITED(st))
        return WEXITSTATUS(st) == 0 ? OUT_OK : OUT_EXIT;
    if (WTERMSIG(st) == SIGKILL)
        return OUT_KILLED;
    return WTERMSIG(st) == SIGBUS ? OUT_SIGBUS : OUT_CRASH;
}

void row_count(struct row *r, enum outcome o)
{
    if (o == OUT_SIGBUS)
        r->sigbus++;
    else if (o == OUT_CRASH)
        r->crashes++;
    else if (o == OUT_HANG)
        r->hangs++;
}

pid_t child_run(int (*fn)(void *), void *arg)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

pid_t child_exec(char *const argv[], bool quiet, int *exec_errno)
{
    int p[2], err = 0;
    ssize_t n;
    pid_t pid;

    *exec_errno = 0;
    if (pipe2(p, O_CLOEXEC) < 0) {
        *exec_errno = errno;
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(argv[0], argv);
        err = errno;
        if (write(p[1], &err, sizeof err) < 0)
            _exit(126);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        *exec_errno = errno;
        close(p[0]);
        return -1;
    }
    /* End of file: the exec closed the pipe, it succeeded. */
    do
        n = read(p[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof err)
        *exec_errno = err;
    return pid;
}

/* ---- the program under test ------------------------------------------- */

static char cli_copy[64];

static void cli_copy_remove(void)
{
    if (cli_copy[0]) {
        unlink(cli_copy);
        *strrchr(cli_copy, '/') = 0;
        rmdir(cli_copy);
    }
}

/* Copies the shmkit command into a private directory and returns the
 * copy's path (NULL on failure). Every CLI run of the torture execs the
 * copy: rebuilding the original while the torture runs (the linker
 * removes and rewrites it) made exec fail with ENOENT/ETXTBSY, and those
 * runs looked like wrong answers of the CLI (the "226 wrong" of an
 * earlier long run). */
static const char *cli_snapshot(const char *path)
{
    char buf[65536];
    int in, out;
    ssize_t n = -1;
    bool ok;

    strcpy(cli_copy, "/tmp/torture-cli-XXXXXX");
    if (!mkdtemp(cli_copy)) {
        cli_copy[0] = 0;
        return NULL;
    }
    strcat(cli_copy, "/shmkit");
    atexit(cli_copy_remove);
    if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return NULL;
    out = open(cli_copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    ok = out >= 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0)
        ok = write(out, buf, (size_t)n) == n;
    ok = ok && n == 0;
    close(in);
    if (out >= 0 && close(out) < 0)
        ok = false;
    return ok ? cli_copy : NULL;
}

/* ---- the shm directory ------------------------------------------------ */

long shm_count(const char *prefix)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    size_t n = strlen(prefix);
    long c = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strncmp(e->d_name, prefix, n) == 0)
            c++;
    closedir(d);
    return c;
}

void shm_print(const char *what)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;

    fputs(what, stderr);
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            fprintf(stderr, "%s ", e->d_name);
    fputc('\n', stderr);
    if (d)
        closedir(d);
}

void shm_clear(const char *prefix)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    size_t n = strlen(prefix);

    if (!d)
        return;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strncmp(e->d_name, prefix, n) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* True if some family directory's tracker (pid in its "tracker" file)
 * still runs, or a family directory has no tracker file yet (its tracker
 * is starting: it removes the directory when it has cleaned up). */
static bool trackers_running(void)
{
    char rundir[4096], path[4400], buf[64];
    struct dirent *e;
    bool any = false;
    DIR *d;

    if (shmkit_runtime_dir(rundir, sizeof rundir) < 0 || !(d = opendir(rundir)))
        return false;
    while ((e = readdir(d)) && !any) {
        long pid;
        ssize_t n;
        int fd;
        if (strncmp(e->d_name, "fam-", 4) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s/tracker", rundir, e->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", rundir, e->d_name);
            /* Starting, unless its creator died before starting it. */
            any = errno == ENOENT && stat(path, &st) == 0 &&
                  time(NULL) - st.st_mtime < 3;
            continue;
        }
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        if (sscanf(buf, "%ld", &pid) == 1 && pid > 0 && kill((pid_t)pid, 0) == 0)
            any = true;
    }
    closedir(d);
    return any;
}

void trackers_settle(int timeout_ms)
{
    int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;

    /* The trackers are daemons of other processes: there is nothing to
     * wait on but their pid, so poll it with a bounded budget. */
    while (trackers_running() && now_ns() < end)
        sleep_ns(5000000);
}

/* ---- main ---------------------------------------------------------------- */

static void print_cell(long v)
{
    printf(" %8ld |", v);
}

static int print_table(void)
{
    int i, bad = 0;

    printf("\n| attack | kind | runs | kills | owner deaths | hangs | leaks |"
           " mutations | crashes | SIGBUS | wrong | note |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        printf("| %s | %s |", r->attack, r->kind);
        print_cell(r->runs);
        print_cell(r->kills);
        print_cell(r->deaths);
        print_cell(r->hangs);
        print_cell(r->leaks);
        print_cell(r->mutations);
        print_cell(r->crashes);
        print_cell(r->sigbus);
        print_cell(r->bad);
        printf(" %s |\n", r->note);
        if (r->hangs || r->leaks || r->crashes || r->sigbus || r->bad)
            bad = 1;
    }
    fflush(stdout);
    return bad;
}

static const struct {
    const char *name;
    void (*fn)(void);
} attacks[] = {
    {"locks", attack_locks},       {"create", attack_create},
    {"full", attack_full},         {"mutate", attack_mutate},
    {"truncate", attack_truncate}, {"manager", attack_manager},
    {"fds", attack_fds},           {"qwait", attack_qwait},
    {"qbatch", attack_qbatch},
};

static bool selected(const char *only, const char *name)
{
    const char *p = only;
    size_t n = strlen(name);

    if (!only)
        return true;
    while ((p = strstr(p, name))) {
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return true;
        p += n;
    }
    return false;
}

/* ---- a /dev/shm of its own ---------------------------------------------- */

static char own_rundir[4200];

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

static void own_rundir_remove(void)
{
    if (own_rundir[0])
        nftw(own_rundir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Mounts a fresh tmpfs on /dev/shm in a mount namespace of this process
 * (children inherit it) and takes a runtime directory of its own. The
 * private /dev/shm the torture is started in (scripts/private-shm.sh) is
 * shared by a whole test run: under ctest -j other tests' objects were
 * counted as the torture's leaks ("SIGKILL creators left 2 array / 1 value
 * / 1 lock" under load), and its gc could remove theirs. */
static int own_shm(void)
{
    char rundir[4096];

    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("torture", "/dev/shm", "tmpfs", 0, "size=2g,mode=1777") < 0)
        return -errno;
    if (shmkit_runtime_dir(rundir, sizeof rundir) < 0)
        return -ENOTDIR;
    snprintf(own_rundir, sizeof own_rundir, "%s/torture-%ld", rundir,
             (long)getpid());
    if (mkdir(own_rundir, 0700) < 0) {
        own_rundir[0] = 0;
        return -errno;
    }
    atexit(own_rundir_remove);
    return setenv("SHMKIT_RUNTIME_DIR", own_rundir, 1) < 0 ? -errno : 0;
}

/* Runs the program again through scripts/private-shm.sh. */
static void reexec_private(char **argv)
{
    const char *src = getenv("SHMKIT_SOURCE_DIR");
    char script[4096];
    char *args[64];
    int i, n = 0;

    if (!src) {
        fprintf(stderr, "torture: needs a private /dev/shm: run it through "
                        "scripts/private-shm.sh (or set SHMKIT_SOURCE_DIR)\n");
        exit(2);
    }
    snprintf(script, sizeof script, "%s/scripts/private-shm.sh", src);
    args[n++] = "sh";
    args[n++] = script;
    for (i = 0; argv[i] && n < 62; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execv("/bin/sh", args);
    perror("torture: exec private-shm.sh");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    uint64_t seed = 0;
    size_t i;
    int a;

    if (argc >= 2 && strcmp(argv[1], "--child-create") == 0)
        return child_create_main(argc - 2, argv + 2);
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--long") == 0)
            T.longrun = true;
        else if (strcmp(argv[a], "--only") == 0 && a + 1 < argc)
            only = argv[++a];
        else if (strcmp(argv[a], "--scale") == 0 && a + 1 < argc)
            T.scale = atof(argv[++a]);
        else if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc)
            seed = strtoull(argv[++a], NULL, 0);
        else if (strcmp(argv[a], "-v") == 0)
            T.verbose = true;
        else {
            fprintf(stderr, "usage: torture [--long] [--only a,b] [--scale X]"
                            " [--seed N] [-v]\n");
            return 2;
        }
    }
    if (!getenv("SHMKIT_PRIVATE_SHM") ||
        strcmp(getenv("SHMKIT_PRIVATE_SHM"), "1") != 0)
        reexec_private(argv);
    if ((a = own_shm()) < 0) {
        fprintf(stderr, "torture: cannot mount a /dev/shm of its own: %s\n",
                strerror(-a));
        return 2;
    }
    /* The program itself belongs to no tracked family: each creator it
     * starts must be the root of its own. */
    unsetenv("SHMKIT_TRACKER");
    T.self = "/proc/self/exe";
    {
        static char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = 0;
            T.self = self;
        }
    }
    T.cli = getenv("SHMKIT_CLI");
    if (T.cli && *T.cli && !(T.cli = cli_snapshot(T.cli))) {
        fprintf(stderr, "torture: cannot copy %s: %s\n", getenv("SHMKIT_CLI"),
                strerror(errno));
        return 2;
    }
    if (T.cli && !*T.cli)
        T.cli = NULL;
    T.python = getenv("SHMKIT_PYTHON");
    T.pyscript = getenv("SHMKIT_TORTURE_PY");
    if (T.python && !*T.python)
        T.python = NULL;
    if (!seed)
        seed = (uint64_t)now_ns() ^ (uint64_t)getpid();
    rnd_seed(seed);
    printf("torture: %s run, seed %" PRIu64 ", scale %.2f\n",
           T.longrun ? "long" : "short", seed, T.scale);
    for (i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
        int64_t t0;
        if (!selected(only, attacks[i].name))
            continue;
        t0 = now_ns();
        printf("torture: %s ...\n", attacks[i].name);
        fflush(stdout);
        attacks[i].fn();
        printf("torture: %s done in %.1f s\n", attacks[i].name,
               (double)(now_ns() - t0) / 1e9);
        fflush(stdout);
    }
    return print_table();
}
