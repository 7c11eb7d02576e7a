/*
 * tracker.c - crash-safe cleanup of tracked blocks (SHMKIT_TRACK).
 *
 * A family is every process holding its lifeline: the write end of a pipe
 * whose read end only the family's tracker holds. The kernel closes a
 * descriptor however a process dies, so the tracker reading end-of-file
 * means the whole family is gone, SIGKILL included. The lifeline is
 * inherited through fork and, not being close-on-exec, through exec and
 * posix_spawn; an exec'd member finds its number in SHMKIT_TRACKER.
 *
 * Each member that creates tracked blocks appends to its own journal in
 * the family directory <rundir>/fam-<pipe inode>-<random>/<pid>-<start>.j
 * before create returns, so nothing is lost when the tracker is killed too:
 * shmkit_gc() and the next tracker to start replay dead families.
 *
 * In-process state (struct tracker) is guarded by T.mu; a fork handler
 * makes the child drop what belongs to the parent (its journal and set).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "life.h"
#include "core/os.h"

#define TRACKER_ENV "SHMKIT_TRACKER"
#define TRACKER_CHECK_EVERY 64

static struct tracker {
    pthread_mutex_t mu;
    bool loaded;                /* SHMKIT_TRACKER looked at */
    bool active;                /* this process registered something */
    unsigned checks;            /* family_ensure calls, for polling */
    int lifeline;               /* write end, -1 if no family */
    uint64_t lifeline_ino;
    pid_t tracker_pid;
    char famdir[SHMKIT__DIR_MAX];
    struct shmkit__journal j;   /* this process's journal, fd -1 if none */
    struct shmkit__nset names;  /* what this process registered */
} T = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .lifeline = -1,
    .j = {.fd = -1},
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Set while this thread forks the tracker with T.mu already held. */
static __thread bool spawning;

static void atfork_prepare(void)
{
    if (!spawning)
        pthread_mutex_lock(&T.mu);
}

static void atfork_parent(void)
{
    if (!spawning)
        pthread_mutex_unlock(&T.mu);
}

/* The child stays in the family but registered nothing yet: the parent's
 * journal and names remain the parent's. */
static void atfork_child(void)
{
    if (spawning)
        return;
    shmkit__journal_close(&T.j);
    shmkit__nset_clear(&T.names);
    __atomic_store_n(&T.active, false, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&T.mu);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- the tracker process -------------------------------------------------- */

/* Writes "pid start" for gc and `shmkit ls`. Without its start time the
 * tracker does not start: a start of 0 cannot tell this tracker from a
 * later process given its pid (shmkit__proc_alive counts any process at
 * that pid then, so gc would keep the family's blocks after its end). A
 * missing file (write failed) leaves gc its pipe scan. */
static int tracker_write_info(const char *famdir)
{
    char path[SHMKIT__DIR_MAX], buf[64];
    uint64_t start;
    int fd, n, r;

    r = shmkit__proc_start(getpid(), &start);
    if (r < 0)
        return r;
    n = snprintf(buf, sizeof buf, "%ld %" PRIu64 "\n", (long)getpid(), start);
    shmkit__path_join(path, famdir, "tracker");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return 0;
    if (write(fd, buf, (size_t)n) != n)
        unlink(path);
    close(fd);
    return 0;
}

/* Never returns. Waits for the family to go, then removes what it left.
 * Reports its pid through `ready`, or a negative code if it cannot run. */
static void tracker_main(int life, int ready, const char *famdir,
                         const char *rundir)
{
    int keep[2] = {life, ready};
    const char *base = strrchr(famdir, '/') + 1;
    pid_t me;
    char c;

    shmkit__daemon_detach(keep, 2);
    life = keep[0];
    ready = keep[1];
    me = tracker_write_info(famdir);
    if (me == 0)
        me = getpid();
    if (write(ready, &me, sizeof me) != sizeof me || me < 0)
        _exit(1);
    close(ready);
    /* Sweep families whose tracker died with them earlier. */
    shmkit__gc_families(rundir, base, 0, NULL, NULL);
    for (;;) {
        ssize_t n = read(life, &c, 1);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            break;
    }
    shmkit__family_clean(famdir, 0, NULL, NULL);
    _exit(0);
}

/* ---- joining or starting a family ----------------------------------------- */

/* True if fd is the write end of a pipe with inode ino. */
static bool lifeline_valid(int fd, uint64_t ino)
{
    struct stat st;
    int fl;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode) ||
        (uint64_t)st.st_ino != ino)
        return false;
    fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) == O_WRONLY;
}

/* True if famdir is a family directory's path for lifeline inode ino:
 * absolute, its last part "fam-<ino>-...". */
static bool famdir_valid(const char *famdir, unsigned long long ino)
{
    const char *leaf = strrchr(famdir, '/');
    unsigned long long dino;

    return famdir[0] == '/' && leaf &&
           sscanf(leaf + 1, "fam-%llu-", &dino) == 1 && dino == ino;
}

/* Adopts the family named in SHMKIT_TRACKER if its lifeline was inherited:
 * "<fd>:<pipe inode>:<tracker pid>:<family dir>". Anything else (a value
 * inherited without its lifeline, or malformed) is ignored. */
static void tracker_load_env(void)
{
    const char *env = getenv(TRACKER_ENV);
    unsigned long long ino;
    long fd, pid;
    int off = 0;

    T.loaded = true;
    if (!env || sscanf(env, "%ld:%llu:%ld:%n", &fd, &ino, &pid, &off) != 3 ||
        off == 0 || strlen(env + off) >= sizeof T.famdir || pid <= 0 ||
        !famdir_valid(env + off, ino))
        return;
    if (fd < 3 || fd > 1 << 20 || !lifeline_valid((int)fd, ino))
        return;
    T.lifeline = (int)fd;
    T.lifeline_ino = ino;
    T.tracker_pid = (pid_t)pid;
    strcpy(T.famdir, env + off);
}

/* True if the family's tracker still reads the lifeline: a pipe with no
 * reader polls as an error on its write end. */
static bool tracker_alive(void)
{
    struct pollfd p = {.fd = T.lifeline, .events = POLLOUT};

    if (poll(&p, 1, 0) < 0)
        return true;
    return !(p.revents & (POLLERR | POLLNVAL));
}

static void family_forget(void)
{
    T.checks = 0;
    if (T.lifeline >= 0)
        close(T.lifeline);
    T.lifeline = -1;
    T.tracker_pid = -1;
    T.famdir[0] = 0;
    shmkit__journal_close(&T.j);
    shmkit__nset_clear(&T.names);
}

/* Makes the lifeline inheritable and tells exec'd members about it. */
static int family_publish(void)
{
    char env[SHMKIT__DIR_MAX + 96];
    int fl = fcntl(T.lifeline, F_GETFD);

    if (fl < 0 || fcntl(T.lifeline, F_SETFD, fl & ~FD_CLOEXEC) < 0)
        return -errno;
    snprintf(env, sizeof env, "%d:%" PRIu64 ":%ld:%s", T.lifeline,
             T.lifeline_ino, (long)T.tracker_pid, T.famdir);
    return setenv(TRACKER_ENV, env, 1) < 0 ? -errno : 0;
}

/* Creates the family directory for lifeline inode ino. */
static int family_mkdir(const char *rundir, uint64_t ino)
{
    uint32_t rnd;
    int r = shmkit__os.random(&rnd, sizeof rnd);

    if (r < 0)
        return r;
    char leaf[64];

    snprintf(leaf, sizeof leaf, "fam-%" PRIu64 "-%08x", ino, rnd);
    if (!shmkit__path_join(T.famdir, rundir, leaf))
        return -ENAMETOOLONG;
    return mkdir(T.famdir, 0700) < 0 ? -errno : 0;
}

/* Forks the tracker and waits until it reports its pid. */
static int tracker_spawn(int life[2], const char *rundir)
{
    int ready[2], r;
    pid_t tpid;
    ssize_t n;

    if (pipe2(ready, O_CLOEXEC) < 0)
        return -errno;
    spawning = true;
    r = shmkit__daemon_fork();
    spawning = false;
    if (r == 0)
        tracker_main(life[0], ready[1], T.famdir, rundir);
    close(ready[1]);
    if (r < 0) {
        close(ready[0]);
        return r;
    }
    do
        n = read(ready[0], &tpid, sizeof tpid);
    while (n < 0 && errno == EINTR);
    close(ready[0]);
    if (n != sizeof tpid || tpid == 0)
        return SHMKIT_ETRACKER;
    if (tpid < 0)
        return tpid;    /* the tracker's own failure, and it has exited */
    T.tracker_pid = tpid;
    return 0;
}

/* Starts a new family rooted at this process. */
static int family_start(void)
{
    char rundir[SHMKIT__DIR_MAX];
    int life[2], fd, r;
    struct stat st;

    r = shmkit_runtime_dir(rundir, sizeof rundir - 64);
    if (r < 0)
        return r;
    if (pipe2(life, O_CLOEXEC) < 0)
        return -errno;
    /* Keep the lifeline off 0-2, where a child's redirection would
     * silently replace it. */
    fd = fcntl(life[1], F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        r = -errno;
        goto fail_pipe;
    }
    close(life[1]);
    life[1] = fd;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto fail_pipe;
    }
    r = family_mkdir(rundir, (uint64_t)st.st_ino);
    if (r < 0)
        goto fail_pipe;
    r = tracker_spawn(life, rundir);
    close(life[0]);
    if (r < 0) {
        rmdir(T.famdir);
        close(life[1]);
        T.famdir[0] = 0;
        return r;
    }
    T.lifeline = life[1];
    T.lifeline_ino = (uint64_t)st.st_ino;
    r = family_publish();
    if (r < 0)
        family_forget();
    return r;
fail_pipe:
    close(life[0]);
    close(life[1]);
    return r;
}

/* Makes sure this process is in a family with a live tracker. T.mu held. */
static int family_ensure(void)
{
    pthread_once(&atfork_once, atfork_register);
    if (!T.loaded)
        tracker_load_env();
    /* Polling the lifeline costs a system call per create: do it on the
     * first and then every TRACKER_CHECK_EVERY-th registration. A tracker
     * killed alone is thus replaced within that many creates; what was
     * registered meanwhile waits for gc. */
    if (T.lifeline >= 0 && (T.checks++ % TRACKER_CHECK_EVERY != 0 ||
                            tracker_alive()))
        return 0;
    /* The tracker died without the family: what was registered stays in
     * the old journals for gc; new blocks go to a new family. */
    family_forget();
    return family_start();
}

/* Opens this process's journal in the family directory. T.mu held. */
static int journal_ensure(void)
{
    char path[SHMKIT__DIR_MAX], leaf[64];
    uint64_t start = 0;
    int r;

    if (T.j.fd >= 0)
        return 0;
    r = shmkit__proc_start(getpid(), &start);
    if (r < 0)
        return r;
    snprintf(leaf, sizeof leaf, "%ld-%" PRIu64 ".j", (long)getpid(), start);
    if (!shmkit__path_join(path, T.famdir, leaf))
        return -ENAMETOOLONG;
    return shmkit__journal_open_mapped(&T.j, path);
}

/* ---- the hooks block.c calls ---------------------------------------------- */

/* Called before the object gets its name (see internal.h): the record
 * is an intent. If the creator dies before the name appears, the record
 * names an object that is not there (or another inode), which the
 * tracker and gc leave alone. */
int shmkit__track_register(const char *name, uint64_t ino)
{
    struct shmkit__nent *e;
    int r;

    pthread_mutex_lock(&T.mu);
    /* A create under a name whose tracked block is still there will fail
     * -EEXIST: fail now, before its undo drops that block's registration. */
    e = shmkit__nset_get(&T.names, name);
    if (e && e->ino != ino && shmkit__shm_ino(name) == e->ino) {
        r = -EEXIST;
        goto out;
    }
    r = family_ensure();
    if (r == 0)
        r = journal_ensure();
    if (r < 0)
        goto out;
    r = shmkit__journal_add(&T.j, name, ino);
    if (r == 0)
        r = shmkit__nset_put(&T.names, name, ino);
    if (r == 0) {
        __atomic_store_n(&T.active, true, __ATOMIC_RELAXED);
        shmkit__journal_compact(&T.j, &T.names);
    }
out:
    pthread_mutex_unlock(&T.mu);
    if (r < 0)
        return shmkit__fail(NULL, r, "tracking \"%s\"", name);
    return 0;
}

/* Called on every unlink: free unless this process registered something. */
void shmkit__track_unregister(const char *name)
{
    if (!__atomic_load_n(&T.active, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&T.mu);
    if (T.j.fd >= 0 && shmkit__nset_del(&T.names, name, NULL)) {
        shmkit__journal_del(&T.j, name);
        shmkit__journal_compact(&T.j, &T.names);
    }
    pthread_mutex_unlock(&T.mu);
}

/* Moves a registration with its object (the inode stays the same). */
static void move_entry(const char *from, const char *to, bool had,
                       uint64_t ino)
{
    if (!had)
        return;
    shmkit__journal_add(&T.j, to, ino);
    shmkit__nset_put(&T.names, to, ino);
}

void shmkit__track_rename(const char *from, const char *to, bool exchange)
{
    uint64_t ino_from = 0, ino_to = 0;
    bool had_from, had_to;

    if (!__atomic_load_n(&T.active, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&T.mu);
    if (T.j.fd < 0)
        goto out;
    had_from = shmkit__nset_del(&T.names, from, &ino_from);
    had_to = shmkit__nset_del(&T.names, to, &ino_to);
    if (had_from)
        shmkit__journal_del(&T.j, from);
    if (had_to)
        shmkit__journal_del(&T.j, to);
    /* Without exchange the object at `to` was replaced, so it is gone. */
    move_entry(from, to, had_from, ino_from);
    if (exchange)
        move_entry(to, from, had_to, ino_to);
out:
    pthread_mutex_unlock(&T.mu);
}

/* ---- public ----------------------------------------------------------------- */

int shmkit_track_start(void)
{
    int r;

    pthread_mutex_lock(&T.mu);
    r = family_ensure();
    pthread_mutex_unlock(&T.mu);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_track_start");
    return 0;
}

int shmkit_track(const char *name)
{
    int r = shmkit_name_check(name), fd;
    struct stat st;

    if (r < 0)
        return r;
    while (*name == '/')
        name++;
    /* The registration records the object's inode, read from a descriptor
     * (the name's object now, not a later one). */
    fd = shmkit__os.shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    r = shmkit__os.fstat(fd, &st);
    shmkit__os.close(fd);
    if (r < 0)
        return r;
    if (!S_ISREG(st.st_mode))
        return -ENOENT;
    return shmkit__track_register(name, (uint64_t)st.st_ino);
}

int shmkit_untrack(const char *name)
{
    bool had = false;
    int r = shmkit_name_check(name);

    if (r < 0)
        return r;
    while (*name == '/')
        name++;
    pthread_mutex_lock(&T.mu);
    if (T.j.fd >= 0 && shmkit__nset_del(&T.names, name, NULL)) {
        had = true;
        shmkit__journal_del(&T.j, name);
        shmkit__journal_compact(&T.j, &T.names);
    }
    pthread_mutex_unlock(&T.mu);
    return had ? 0 : -ENOENT;
}

int shmkit_track_fd(void)
{
    int fd;

    pthread_mutex_lock(&T.mu);
    if (!T.loaded)
        tracker_load_env();
    fd = T.lifeline;
    pthread_mutex_unlock(&T.mu);
    return fd;
}

pid_t shmkit_track_pid(void)
{
    pid_t pid;

    pthread_mutex_lock(&T.mu);
    if (!T.loaded)
        tracker_load_env();
    pid = T.lifeline >= 0 ? T.tracker_pid : -1;
    pthread_mutex_unlock(&T.mu);
    return pid;
}
