/*
 * gc.c - removing what dead owners left behind, and describing who owns
 * a block.
 *
 * Three kinds of records live in the runtime directory or /dev/shm:
 *   fam-<pipe inode>-<rnd>/   a tracked family: "tracker" (pid start) and
 *                             one journal per creating member
 *   mgr-<hash>/               a manager: "lock" (flock held while it runs),
 *                             "info" (pid start, socket path), "journal"
 *   /dev/shm/shmkit.ref.*     refcount sidecars (see refcount.c)
 * A family is dead when its tracker is not alive (pid + start time) and no
 * process of ours still holds its lifeline pipe; a manager is dead when its
 * lock can be taken. Only then are their journals replayed, and only our
 * own objects with the recorded inode are removed.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "life.h"
#include "core/os.h"

/* ---- which pipes our processes hold -------------------------------------- */

struct inos {
    uint64_t *v;
    size_t n, cap;
    bool scanned;
    bool incomplete; /* the scan missed something: every pipe counts as held */
};

static void inos_add(struct inos *s, uint64_t ino)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->incomplete = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ino;
}

/* True if some process holds pipe `ino`. A scan that could not complete
 * answers true: gc must fail towards keeping a family's blocks. */
static bool inos_has(const struct inos *s, uint64_t ino)
{
    size_t i;

    if (s->incomplete)
        return true;
    for (i = 0; i < s->n; i++)
        if (s->v[i] == ino)
            return true;
    return false;
}

/* Records the inode of every pipe open in process `pid`. */
static void scan_fds(struct inos *s, const char *pid)
{
    char path[300], link[64];
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    if (!(d = opendir(path)))
        return;
    while ((e = readdir(d))) {
        ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
        unsigned long long ino;
        if (n <= 0)
            continue;
        link[n] = 0;
        if (sscanf(link, "pipe:[%llu]", &ino) == 1)
            inos_add(s, ino);
    }
    closedir(d);
}

/* Scans /proc once. Processes we cannot read (other users) are not seen:
 * a lifeline held only by another user's process does not count. */
static void inos_scan(struct inos *s)
{
    struct dirent *e;
    DIR *d;

    s->scanned = true;
    if (!(d = opendir("/proc"))) {
        s->incomplete = true;
        return;
    }
    while ((e = readdir(d)))
        if (isdigit((unsigned char)e->d_name[0]))
            scan_fds(s, e->d_name);
    closedir(d);
}

/* ---- families -------------------------------------------------------------- */

/* Reads "pid start" from path. */
static bool read_pid_file(const char *path, pid_t *pid, uint64_t *start)
{
    char buf[128];
    ssize_t n;
    long p;
    unsigned long long s;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    if (sscanf(buf, "%ld %llu", &p, &s) != 2 || p <= 0)
        return false;
    *pid = (pid_t)p;
    *start = s;
    return true;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);

    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Replays every journal (*.j) of a family directory into *live. */
static int family_replay(const char *famdir, struct shmkit__nset *live)
{
    char path[SHMKIT__DIR_MAX];
    struct dirent *e;
    DIR *d = opendir(famdir);
    int r = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d)) && r == 0) {
        if (!has_suffix(e->d_name, ".j"))
            continue;
        shmkit__path_join(path, famdir, e->d_name);
        r = shmkit__journal_replay(path, live);
    }
    closedir(d);
    return r;
}

struct sweep {
    unsigned flags;
    shmkit_gc_report rep;
    void *arg;
    const char *what;
    int removed;
    int err;
};

static void sweep_one(const char *name, uint64_t ino, void *arg)
{
    struct sweep *s = arg;
    int r = shmkit__shm_unlink_if(name, ino, s->flags & SHMKIT_GC_DRY_RUN);

    if (r < 0)
        s->err = r;
    if (r <= 0)
        return;
    s->removed++;
    if (s->rep)
        s->rep(s->what, name, s->arg);
}

/* Removes what a journal set still holds; returns the count removed. */
static int sweep_set(const struct shmkit__nset *live, const char *what,
                     unsigned flags, shmkit_gc_report rep, void *arg)
{
    struct sweep s = {flags, rep, arg, what, 0, 0};

    shmkit__nset_each(live, sweep_one, &s);
    return s.removed;
}

int shmkit__family_clean(const char *famdir, unsigned flags,
                         shmkit_gc_report rep, void *arg)
{
    struct shmkit__nset live = {0};
    int r, n;

    r = family_replay(famdir, &live);
    if (r < 0 && r != -ENOENT) {
        shmkit__nset_clear(&live);
        return r;
    }
    n = sweep_set(&live, "tracked", flags, rep, arg);
    shmkit__nset_clear(&live);
    if (!(flags & SHMKIT_GC_DRY_RUN)) {
        shmkit__rmtree1(famdir);
        if (rep)
            rep("state", strrchr(famdir, '/') + 1, arg);
    }
    return n;
}

/* True if the family in famdir (lifeline inode ino) may still have members. */
static bool family_alive(const char *famdir, uint64_t ino, struct inos *held)
{
    char path[SHMKIT__DIR_MAX];
    uint64_t start;
    pid_t pid;

    shmkit__path_join(path, famdir, "tracker");
    if (read_pid_file(path, &pid, &start) && shmkit__proc_alive(pid, start, 64))
        return true;
    if (!held->scanned)
        inos_scan(held);
    return inos_has(held, ino);
}

int shmkit__gc_families(const char *rundir, const char *skip, unsigned flags,
                        shmkit_gc_report rep, void *arg)
{
    char famdir[SHMKIT__DIR_MAX];
    struct inos held = {0};
    struct dirent *e;
    DIR *d = opendir(rundir);
    int n = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        unsigned long long ino;
        if (sscanf(e->d_name, "fam-%llu-", &ino) != 1 ||
            (skip && strcmp(e->d_name, skip) == 0))
            continue;
        shmkit__path_join(famdir, rundir, e->d_name);
        if (family_alive(famdir, ino, &held))
            continue;
        int r = shmkit__family_clean(famdir, flags, rep, arg);
        if (r > 0)
            n += r;
    }
    closedir(d);
    free(held.v);
    return n;
}

/* ---- managers -------------------------------------------------------------- */

/* Removes the socket named on line 2 of a manager's info file, if it is a
 * socket of ours. */
static void manager_unlink_socket(const char *dir)
{
    char path[SHMKIT__DIR_MAX], buf[SHMKIT__DIR_MAX + 64], *nl;
    struct stat st;
    ssize_t n;
    int fd;

    shmkit__path_join(path, dir, "info");
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    nl = strchr(buf, '\n');
    if (!nl || !nl[1])
        return;
    nl++;
    nl[strcspn(nl, "\n")] = 0;
    if (lstat(nl, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == geteuid())
        unlink(nl);
}

/* Cleans a dead manager's state directory whose lock we hold. */
static int manager_clean(const char *dir, unsigned flags, shmkit_gc_report rep,
                         void *arg)
{
    char path[SHMKIT__DIR_MAX];
    struct shmkit__nset live = {0};
    int n;

    shmkit__path_join(path, dir, "journal");
    shmkit__journal_replay(path, &live);
    n = sweep_set(&live, "manager", flags, rep, arg);
    shmkit__nset_clear(&live);
    if (!(flags & SHMKIT_GC_DRY_RUN)) {
        manager_unlink_socket(dir);
        shmkit__rmtree1(dir);
        if (rep)
            rep("state", strrchr(dir, '/') + 1, arg);
    }
    return n;
}

int shmkit__gc_managers(const char *rundir, const char *skip, unsigned flags,
                        shmkit_gc_report rep, void *arg)
{
    char dir[SHMKIT__DIR_MAX], lock[SHMKIT__DIR_MAX];
    struct dirent *e;
    DIR *d = opendir(rundir);
    int n = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        int fd, r;
        if (strncmp(e->d_name, "mgr-", 4) != 0 ||
            (skip && strcmp(e->d_name, skip) == 0))
            continue;
        shmkit__path_join(dir, rundir, e->d_name);
        shmkit__path_join(lock, dir, "lock");
        fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        /* The kernel drops a dead manager's flock: taking it proves death. */
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        r = manager_clean(dir, flags, rep, arg);
        close(fd);
        if (r > 0)
            n += r;
    }
    closedir(d);
    return n;
}

/* ---- half-built objects of dead creators ------------------------------------ */

/* How old a temporary must be before gc takes it: its creator's pid is
 * read in our PID namespace, which may not be the creator's, so a young
 * object is left to a creator we cannot see. */
#define TMP_MIN_AGE_S 10

/* True if `name` is a temporary of ours whose creator is gone. */
static bool temp_orphaned(int dirfd, const char *name)
{
    const char *p = name + sizeof SHMKIT__TMP_PREFIX - 1;
    struct stat st;
    char *end;
    long pid = strtol(p, &end, 10);

    if (end == p || *end != '-' || pid <= 0 || pid > INT32_MAX)
        return false;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        time(NULL) - st.st_mtime < TMP_MIN_AGE_S)
        return false;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* Decides the fate of one object in the shm directory that is not a
 * tracked or manager-owned block: a refcount sidecar, an object a creator
 * died building (SHMKIT__TMP_PREFIX), or a companion whose owner is gone
 * (a list's lock: src/life/kind.c tells).
 * Returns the number of objects removed (or, dry, that would be). */
static int gc_entry(int dirfd, const char *name, unsigned flags,
                    shmkit_gc_report rep, void *arg)
{
    const char *what;
    int r;

    if (strncmp(name, SHMKIT__REF_PREFIX, sizeof SHMKIT__REF_PREFIX - 1) == 0) {
        r = shmkit__ref_gc_one(name, flags, rep, arg);
        return r > 0 ? r : 0;
    }
    if (strncmp(name, SHMKIT__TMP_PREFIX, sizeof SHMKIT__TMP_PREFIX - 1) == 0 &&
        temp_orphaned(dirfd, name))
        what = "temporary";
    else if (shmkit__kind_orphaned(name))
        what = "sidecar";
    else
        return 0;
    if (!(flags & SHMKIT_GC_DRY_RUN) && shmkit_unlink(name) < 0)
        return 0;
    if (rep)
        rep(what, name, arg);
    return 1;
}

/* One pass over the shm directory for what gc_entry() handles. */
static int gc_shm_dir(unsigned flags, shmkit_gc_report rep, void *arg)
{
    const char *dir = shmkit__os_shm_dir();
    struct dirent *e;
    DIR *d;
    int n = 0;

    if (!dir || !(d = opendir(dir)))
        return 0;
    while ((e = readdir(d)))
        n += gc_entry(dirfd(d), e->d_name, flags, rep, arg);
    closedir(d);
    return n;
}

int shmkit_gc(unsigned flags, shmkit_gc_report rep, void *arg)
{
    char rundir[SHMKIT__DIR_MAX];
    int r, n = 0;

    r = shmkit_runtime_dir(rundir, sizeof rundir);
    if (r < 0)
        return r;
    r = shmkit__gc_families(rundir, NULL, flags, rep, arg);
    if (r > 0)
        n += r;
    r = shmkit__gc_managers(rundir, NULL, flags, rep, arg);
    if (r > 0)
        n += r;
    n += gc_shm_dir(flags, rep, arg);
    return n;
}

/* ---- describing a block ------------------------------------------------------ */

/*
 * An index name -> owner, rebuilt at most once a second: `shmkit ls` asks
 * for every block in turn. The owner is packed into the set's inode slot:
 * kind << 32 | pid.
 */
enum { OWN_TRACKED = 1, OWN_TRACKED_ORPHAN, OWN_MANAGER };

static struct {
    pthread_mutex_t mu;
    struct shmkit__nset idx;
    time_t built;
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct idx_ctx {
    uint64_t owner;
};

static void idx_add(const char *name, uint64_t ino, void *arg)
{
    const struct idx_ctx *c = arg;

    if (ino != 0 && shmkit__shm_ino(name) == ino)
        shmkit__nset_put(&D.idx, name, c->owner);
}

static void index_family(const char *famdir)
{
    char path[SHMKIT__DIR_MAX];
    struct shmkit__nset live = {0};
    struct idx_ctx c = {(uint64_t)OWN_TRACKED_ORPHAN << 32};
    uint64_t start;
    pid_t pid;

    shmkit__path_join(path, famdir, "tracker");
    if (read_pid_file(path, &pid, &start) && shmkit__proc_alive(pid, start, 64))
        c.owner = (uint64_t)OWN_TRACKED << 32 | (uint32_t)pid;
    family_replay(famdir, &live);
    shmkit__nset_each(&live, idx_add, &c);
    shmkit__nset_clear(&live);
}

static void index_manager(const char *dir)
{
    char path[SHMKIT__DIR_MAX];
    struct shmkit__nset live = {0};
    struct idx_ctx c;
    uint64_t start;
    pid_t pid;

    shmkit__path_join(path, dir, "info");
    if (!read_pid_file(path, &pid, &start) ||
        !shmkit__proc_alive(pid, start, 64))
        pid = 0;
    c.owner = (uint64_t)OWN_MANAGER << 32 | (uint32_t)pid;
    shmkit__path_join(path, dir, "journal");
    shmkit__journal_replay(path, &live);
    shmkit__nset_each(&live, idx_add, &c);
    shmkit__nset_clear(&live);
}

static void index_build(void)
{
    char rundir[SHMKIT__DIR_MAX], sub[SHMKIT__DIR_MAX];
    struct dirent *e;
    DIR *d;

    shmkit__nset_clear(&D.idx);
    D.built = time(NULL);
    if (shmkit_runtime_dir(rundir, sizeof rundir) < 0 || !(d = opendir(rundir)))
        return;
    while ((e = readdir(d))) {
        shmkit__path_join(sub, rundir, e->d_name);
        if (strncmp(e->d_name, "fam-", 4) == 0)
            index_family(sub);
        else if (strncmp(e->d_name, "mgr-", 4) == 0)
            index_manager(sub);
    }
    closedir(d);
}

static void describe_owner(uint64_t owner, char *buf, size_t len)
{
    unsigned kind = (unsigned)(owner >> 32);
    long pid = (long)(uint32_t)owner;

    if (kind == OWN_TRACKED)
        snprintf(buf, len, "tracked by pid %ld", pid);
    else if (kind == OWN_TRACKED_ORPHAN)
        snprintf(buf, len, "tracked (no tracker)");
    else if (pid)
        snprintf(buf, len, "manager %ld", pid);
    else
        snprintf(buf, len, "manager (dead)");
}

void shmkit_lifecycle_describe(const char *name, char *buf, size_t len)
{
    char n[SHMKIT_NAME_MAX + 1];
    struct shmkit__nent *e;
    int k;

    if (!buf || len == 0)
        return;
    snprintf(buf, len, "-");
    if (shmkit__name_normalize(name, n) < 0)
        return;
    if (strncmp(n, SHMKIT__REF_PREFIX, sizeof SHMKIT__REF_PREFIX - 1) == 0) {
        snprintf(buf, len, "sidecar");
        return;
    }
    k = shmkit__ref_count(n);
    if (k >= 0) {
        snprintf(buf, len, "refcount %d", k);
        return;
    }
    if (k == -ETIMEDOUT) {
        snprintf(buf, len, "refcount (busy)");
        return;
    }
    pthread_mutex_lock(&D.mu);
    if (!D.built || time(NULL) != D.built)
        index_build();
    e = shmkit__nset_get(&D.idx, n);
    if (e)
        describe_owner(e->ino, buf, len);
    pthread_mutex_unlock(&D.mu);
}
