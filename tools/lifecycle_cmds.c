/*
 * lifecycle_cmds.c - `shmkit gc`, `shmkit manager` and the LIFECYCLE
 * column of `ls`/`info`. Thin: the library does the work.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct gc_state {
    const char *verb;
    int count;
};

static void gc_print(const char *what, const char *name, void *arg)
{
    struct gc_state *g = arg;
    char *shown = cli_escape(name, NULL);

    cli_progress_done(); /* the status line gives way to the result */
    printf("%s %-8s %s\n", g->verb, what, shown ? shown : "?");
    fflush(stdout);
    free(shown);
    g->count++;
    cli_progress(true, "shmkit gc: %d so far...", g->count);
}

/* Objects in /dev/shm, for the progress line. */
static long shm_entries(void)
{
    DIR *d = opendir("/dev/shm");
    long n = 0;

    if (!d)
        return 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 2 ? n - 2 : 0;
}

int cli_gc(int argc, char **argv)
{
    static const char *const flags[] = {"--dry-run", "-n", NULL};
    bool set[2] = {false, false};
    struct gc_state g = {"removed", 0};
    unsigned flags_gc = 0;
    int n;

    if (cli_args(argc, argv, "gc", flags, set, NULL, 0) < 0)
        return 2;
    if (set[0] || set[1]) {
        flags_gc |= SHMKIT_GC_DRY_RUN;
        g.verb = "would remove";
    }
    cli_progress(true, "shmkit gc: checking %ld objects in /dev/shm...",
                 shm_entries());
    n = shmkit_gc(flags_gc, gc_print, &g);
    cli_progress_done();
    if (n < 0)
        return cli_error("gc", n);
    printf("%d block%s %s\n", n, n == 1 ? "" : "s",
           (flags_gc & SHMKIT_GC_DRY_RUN) ? "would be removed" : "removed");
    return 0;
}

/* Reads the shared key: the file's bytes, at most SHMKIT_MANAGER_KEY_MAX,
 * from a file only its owner may read. */
static int read_key(const char *path, unsigned char *key, size_t *len)
{
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        fprintf(stderr, "shmkit: %s: key file readable by others\n", path);
        return -EACCES;
    }
    n = read(fd, key, SHMKIT_MANAGER_KEY_MAX + 1);
    close(fd);
    if (n <= 0 || n > SHMKIT_MANAGER_KEY_MAX)
        return -EINVAL;
    *len = (size_t)n;
    return 0;
}

/* ---- manager -------------------------------------------------------------- */

struct ready {
    int fd;           /* read end of the server's ready pipe */
    const char *sock; /* absolute socket path */
    bool quiet;
};

/* Waits for the server's ready report, then says where it listens. */
static void *ready_thread(void *arg)
{
    struct ready *rd = arg;
    ssize_t k;
    int status;

    while ((k = read(rd->fd, &status, sizeof status)) < 0 && errno == EINTR)
        ;
    if (k == sizeof status && status == 0 && !rd->quiet) {
        char *shown = cli_escape(rd->sock, NULL);
        printf("shmkit manager: listening on %s (pid %ld)\n",
               shown ? shown : "?", (long)getpid());
        fflush(stdout);
        free(shown);
    }
    close(rd->fd);
    return NULL;
}

/* The socket path the server will use, absolute, into buf. */
static int socket_path(const char *sock, char *buf, size_t len)
{
    char dir[PATH_MAX];
    int r, n;

    if (sock && sock[0] == '/')
        n = snprintf(buf, len, "%s", sock);
    else if (sock)
        n = getcwd(dir, sizeof dir) ? snprintf(buf, len, "%s/%s", dir, sock)
                                    : -1;
    else if ((r = shmkit_runtime_dir(dir, sizeof dir)) < 0)
        return r;
    else
        n = snprintf(buf, len, "%s/manager.sock", dir);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* After SHMKIT_EOWNER: says which directory is not private, and how to
 * fix it. Returns 1. */
static int explain_not_private(const char *sock)
{
    char dir[PATH_MAX], *slash, *shown;
    struct stat st;
    int i;

    for (i = 0; i < 2; i++) {
        if (i == 0) {
            snprintf(dir, sizeof dir, "%s", sock);
            if ((slash = strrchr(dir, '/')) && slash != dir)
                *slash = 0;
        } else if (shmkit_runtime_dir(dir, sizeof dir) == 0) {
            continue; /* the runtime directory is fine */
        } else {
            const char *env = getenv("SHMKIT_RUNTIME_DIR");
            snprintf(dir, sizeof dir, "%s", env ? env : "the runtime directory");
        }
        if (lstat(dir, &st) < 0 || (S_ISDIR(st.st_mode) &&
                                    st.st_uid == geteuid() &&
                                    !(st.st_mode & 077)))
            continue;
        shown = cli_escape(dir, NULL);
        fprintf(stderr,
                "shmkit: manager: %s %s (%s, mode %04o, owner uid %ld): it "
                "must be a private directory, owned by you (uid %ld) with "
                "mode 0700; %s\n",
                i == 0 ? "the socket's directory" : "the runtime directory",
                shown ? shown : "?",
                S_ISDIR(st.st_mode) ? "a directory" : "not a directory",
                (unsigned)(st.st_mode & 07777), (long)st.st_uid,
                (long)geteuid(),
                st.st_uid == geteuid() && S_ISDIR(st.st_mode)
                    ? "run 'chmod 700' on it, or use --socket in a "
                      "directory of your own"
                    : "use --socket in a directory of your own (e.g. "
                      "$XDG_RUNTIME_DIR)");
        free(shown);
        return 1;
    }
    return cli_error("manager", SHMKIT_EOWNER);
}

int cli_manager(int argc, char **argv)
{
    unsigned char key[SHMKIT_MANAGER_KEY_MAX + 1];
    const char *sock = NULL, *keyfile = NULL;
    char path[PATH_MAX];
    struct ready rd = {.fd = -1};
    sigset_t all, old;
    pthread_t th;
    size_t keylen = 0;
    int i, r, pfd[2];

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            sock = argv[++i];
        else if (strcmp(argv[i], "--authkey-file") == 0 && i + 1 < argc)
            keyfile = argv[++i];
        else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
            rd.quiet = true;
        else
            return cli_usage_error("manager: unexpected argument '%s'",
                                   argv[i]);
    }
    if (keyfile && (r = read_key(keyfile, key, &keylen)) < 0)
        return cli_error(keyfile, r);
    if ((r = socket_path(sock, path, sizeof path)) < 0)
        return cli_error(sock ? sock : "manager", r);
    rd.sock = path;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return cli_error("manager", -errno);
    rd.fd = pfd[0];
    /* The server takes its signals through a signalfd: the helper thread
     * must never be the one a SIGTERM is delivered to. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&th, NULL, ready_thread, &rd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        close(pfd[0]);
        close(pfd[1]);
        return cli_error("manager", -r);
    }
    r = shmkit_manager_serve(path, keylen ? key : NULL, keylen, pfd[1], -1);
    memset(key, 0, sizeof key);
    pthread_join(th, NULL);
    if (r == SHMKIT_EOWNER)
        return explain_not_private(path);
    if (r < 0)
        return cli_error("manager", r);
    return 0;
}

void cli_lifecycle_of(const char *name, char *buf, size_t len)
{
    shmkit_lifecycle_describe(name, buf, len);
}
