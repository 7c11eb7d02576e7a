/*
 * life_util.c - see life.h: process identity, name sets, journals, checked
 * removal, the runtime directory and daemon start-up shared by the
 * lifecycle modules.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "life.h"
#include "core/os.h"

#define JOURNAL_MAX_BYTES (256u << 20) /* refuse to replay more than this */

/* ---- processes ------------------------------------------------------------ */

/* The OS layer reads /proc/PID/stat (a zombie counts as gone). */
int shmkit__proc_start(pid_t pid, uint64_t *start)
{
    return shmkit__os.proc_start(pid, start);
}

int shmkit__self_start(uint64_t *start, pid_t *pid)
{
    static __thread pid_t cached_pid;
    static __thread uint64_t cached_start;
    pid_t me = getpid();
    int r;

    if (cached_pid != me) {
        r = shmkit__proc_start(me, &cached_start);
        if (r < 0)
            return r;
        cached_pid = me;
    }
    *start = cached_start;
    if (pid)
        *pid = me;
    return 0;
}

/* ---- name sets ------------------------------------------------------------ */

uint64_t shmkit__hash64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 0x100000001b3ull;
    }
    return h;
}

static int nset_grow(struct shmkit__nset *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 16, i;
    struct shmkit__nent **tab = calloc(nb, sizeof *tab);

    if (!tab)
        return -ENOMEM;
    for (i = 0; i < s->nbuckets; i++) {
        struct shmkit__nent *e = s->tab[i], *next;
        for (; e; e = next) {
            size_t k = shmkit__hash64(e->name) & (nb - 1);
            next = e->next;
            e->next = tab[k];
            tab[k] = e;
        }
    }
    free(s->tab);
    s->tab = tab;
    s->nbuckets = nb;
    return 0;
}

static struct shmkit__nent **nset_slot(const struct shmkit__nset *s,
                                       const char *name)
{
    struct shmkit__nent **pp;

    if (!s->nbuckets)
        return NULL;
    pp = &s->tab[shmkit__hash64(name) & (s->nbuckets - 1)];
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

struct shmkit__nent *shmkit__nset_get(const struct shmkit__nset *s,
                                      const char *name)
{
    struct shmkit__nent **pp = nset_slot(s, name);

    return pp ? *pp : NULL;
}

int shmkit__nset_put(struct shmkit__nset *s, const char *name, uint64_t ino)
{
    struct shmkit__nent **pp, *e;
    size_t len = strlen(name);

    e = shmkit__nset_get(s, name);
    if (e) {
        e->ino = ino;
        return 0;
    }
    if (s->count >= s->nbuckets && nset_grow(s) < 0)
        return -ENOMEM;
    e = malloc(sizeof *e + len + 1);
    if (!e)
        return -ENOMEM;
    memcpy(e->name, name, len + 1);
    e->ino = ino;
    pp = &s->tab[shmkit__hash64(name) & (s->nbuckets - 1)];
    e->next = *pp;
    *pp = e;
    s->count++;
    return 0;
}

bool shmkit__nset_del(struct shmkit__nset *s, const char *name, uint64_t *ino)
{
    struct shmkit__nent **pp = nset_slot(s, name), *e;

    if (!pp || !*pp)
        return false;
    e = *pp;
    *pp = e->next;
    if (ino)
        *ino = e->ino;
    free(e);
    s->count--;
    return true;
}

void shmkit__nset_each(const struct shmkit__nset *s,
                       void (*fn)(const char *, uint64_t, void *), void *arg)
{
    size_t i;

    for (i = 0; i < s->nbuckets; i++) {
        const struct shmkit__nent *e;
        for (e = s->tab[i]; e; e = e->next)
            fn(e->name, e->ino, arg);
    }
}

void shmkit__nset_clear(struct shmkit__nset *s)
{
    size_t i;

    for (i = 0; i < s->nbuckets; i++) {
        struct shmkit__nent *e = s->tab[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(s->tab);
    s->tab = NULL;
    s->nbuckets = s->count = 0;
}

/* ---- journals ------------------------------------------------------------- */

int shmkit__journal_open(struct shmkit__journal *j, const char *path)
{
    int fd;

    if (path != j->path) { /* compaction reopens j->path itself */
        if (strlen(path) >= sizeof j->path)
            return -ENAMETOOLONG;
        strcpy(j->path, path);
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return -errno;
    j->fd = fd;
    j->records = 0;
    return 0;
}

#define JOURNAL_MAP_MIN (64u << 10)

/* Where a mapped journal's records end: its first NUL (names have none). */
static size_t journal_end(const char *map, size_t size)
{
    const char *z = memchr(map, 0, size);

    return z ? (size_t)(z - map) : size;
}

/* Maps the journal file fd with room for at least `need` bytes. */
static int journal_map(struct shmkit__journal *j, size_t need)
{
    size_t cap = JOURNAL_MAP_MIN;
    void *p;

    while (cap < need * 2)
        cap *= 2;
    if (ftruncate(j->fd, (off_t)cap) < 0)
        return -errno;
    if (j->map)
        p = mremap(j->map, j->cap, cap, MREMAP_MAYMOVE);
    else
        p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, j->fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    j->map = p;
    j->cap = cap;
    return 0;
}

int shmkit__journal_open_mapped(struct shmkit__journal *j, const char *path)
{
    struct stat st;
    int r;

    if (path != j->path) {
        if (strlen(path) >= sizeof j->path)
            return -ENAMETOOLONG;
        strcpy(j->path, path);
    }
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (j->fd < 0)
        return -errno;
    j->map = NULL;
    j->records = 0;
    j->used = 0;
    r = fstat(j->fd, &st) < 0 ? -errno : 0;
    if (r == 0 && !S_ISREG(st.st_mode))
        r = -EINVAL;
    if (r == 0)
        r = journal_map(j, (size_t)st.st_size);
    if (r < 0) {
        shmkit__journal_close(j);
        return r;
    }
    /* An exec'd image of the same process continues its journal. */
    j->used = journal_end(j->map, (size_t)st.st_size);
    return 0;
}

void shmkit__journal_close(struct shmkit__journal *j)
{
    if (j->map)
        munmap(j->map, j->cap);
    j->map = NULL;
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
}

/* One record, one write: the kernel appends it whole or not at all. A
 * mapped journal stores it instead; a store torn by SIGKILL leaves a
 * malformed last record, which replay drops. */
static int journal_write(struct shmkit__journal *j, const char *rec,
                         size_t len)
{
    ssize_t n;
    int fd = j->fd, r;

    if (j->map) {
        if (j->used + len >= j->cap && (r = journal_map(j, j->used + len)) < 0)
            return r;
        memcpy(j->map + j->used, rec, len);
        j->used += len;
        return 0;
    }

    do
        n = write(fd, rec, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* Writes the decimal digits of v at p; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char d[20];
    int n = 0;

    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        *p++ = d[--n];
    return p;
}

/* "<len>:<name>\n" at p; returns the end. */
static char *put_name(char *p, const char *name)
{
    size_t len = strlen(name);

    p = put_u64(p, len);
    *p++ = ':';
    memcpy(p, name, len);
    p += len;
    *p++ = '\n';
    return p;
}

/* Records are written on every tracked create and unlink: formatted by
 * hand, not by snprintf (which was half of the tracker's own time). buf
 * has room for a name of up to SHMKIT_NAME_MAX bytes (every name here is
 * normalized or parsed with that bound; a longer one is refused: -1) and
 * two 20-digit numbers. */
static int record_add(char *buf, const char *name, uint64_t ino)
{
    char *p = buf;

    if (strnlen(name, SHMKIT_NAME_MAX + 1) > SHMKIT_NAME_MAX)
        return -1;

    *p++ = '+';
    p = put_u64(p, ino);
    *p++ = ' ';
    return (int)(put_name(p, name) - buf);
}

static int record_del(char *buf, const char *name)
{
    if (strnlen(name, SHMKIT_NAME_MAX + 1) > SHMKIT_NAME_MAX)
        return -1;
    buf[0] = '-';
    return (int)(put_name(buf + 1, name) - buf);
}

/* Appends one record of n bytes (n < 0: it did not fit its buffer). */
static int journal_record(struct shmkit__journal *j, const char *rec, int n)
{
    int r;

    if (n < 0)
        return -ENAMETOOLONG;
    r = journal_write(j, rec, (size_t)n);
    if (r == 0)
        j->records++;
    return r;
}

int shmkit__journal_add(struct shmkit__journal *j, const char *name,
                        uint64_t ino)
{
    char rec[SHMKIT_NAME_MAX + 48];

    return journal_record(j, rec, record_add(rec, name, ino));
}

int shmkit__journal_del(struct shmkit__journal *j, const char *name)
{
    char rec[SHMKIT_NAME_MAX + 32];

    return journal_record(j, rec, record_del(rec, name));
}

struct compact_ctx {
    FILE *f;
    int err;
};

static void compact_one(const char *name, uint64_t ino, void *arg)
{
    struct compact_ctx *c = arg;
    char rec[SHMKIT_NAME_MAX + 48];
    int n = record_add(rec, name, ino);

    if (n < 0)
        c->err = -ENAMETOOLONG;
    else if (fwrite(rec, 1, (size_t)n, c->f) != (size_t)n)
        c->err = -EIO;
}

int shmkit__journal_compact(struct shmkit__journal *j,
                            const struct shmkit__nset *live)
{
    char tmp[SHMKIT__DIR_MAX + 8];
    struct compact_ctx c = {NULL, 0};
    bool mapped;
    int fd, r;

    if (j->records < 2 * live->count + 256)
        return 0;
    /* Nothing live in a mapped journal: zero it from the start. A crash
     * half way leaves a zero prefix, which replays as empty: right. */
    if (j->map && live->count == 0) {
        memset(j->map, 0, j->used);
        j->used = 0;
        j->records = 0;
        return 0;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", j->path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    c.f = fdopen(fd, "w");
    if (!c.f) {
        close(fd);
        r = -ENOMEM;
        goto fail;
    }
    shmkit__nset_each(live, compact_one, &c);
    r = fclose(c.f) != 0 ? -EIO : c.err;
    if (r < 0)
        goto fail;
    /* Publish whole: a reader sees the old journal or the new, never half. */
    if (rename(tmp, j->path) < 0) {
        r = -errno;
        goto fail;
    }
    mapped = j->map != NULL;
    shmkit__journal_close(j);
    return mapped ? shmkit__journal_open_mapped(j, j->path)
                  : shmkit__journal_open(j, j->path);
fail:
    unlink(tmp);
    return r;
}

/* Parses "<digits><end>" at *p (no more than 20 digits), advancing *p. */
static bool parse_num(const char **p, const char *end, char stop,
                      uint64_t *out)
{
    uint64_t v = 0;
    int digits = 0;

    while (*p < end && **p >= '0' && **p <= '9' && digits < 20) {
        uint64_t d = (uint64_t)(**p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        (*p)++;
        digits++;
    }
    if (digits == 0 || *p >= end || **p != stop)
        return false;
    (*p)++;
    *out = v;
    return true;
}

/* Parses one record at p; returns its length, or 0 if malformed/torn. */
static size_t parse_record(const char *p, const char *end,
                           struct shmkit__nset *live, int *err)
{
    const char *q = p + 1;
    char name[SHMKIT_NAME_MAX + 1];
    uint64_t ino = 0, len;

    if (p >= end || (*p != '+' && *p != '-'))
        return 0;
    if (*p == '+' && !parse_num(&q, end, ' ', &ino))
        return 0;
    if (!parse_num(&q, end, ':', &len) || len == 0 || len > SHMKIT_NAME_MAX)
        return 0;
    if ((size_t)(end - q) < len + 1 || q[len] != '\n')
        return 0;
    memcpy(name, q, len);
    name[len] = 0;
    if (strlen(name) != len || shmkit_name_check(name) < 0)
        return 0;
    if (*p == '+')
        *err = shmkit__nset_put(live, name, ino);
    else
        shmkit__nset_del(live, name, NULL);
    return (size_t)(q + len + 1 - p);
}

int shmkit__journal_parse(const char *buf, size_t len,
                          struct shmkit__nset *live)
{
    const char *p = buf, *end = buf + len;
    int err = 0;

    while (p < end && err == 0) {
        size_t n = parse_record(p, end, live, &err);
        if (n == 0)
            break;
        p += n;
    }
    return err;
}

int shmkit__journal_replay(const char *path, struct shmkit__nset *live)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > JOURNAL_MAX_BYTES) {
        r = -EINVAL;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    r = shmkit__journal_parse(buf, got, live);
out:
    free(buf);
    close(fd);
    return r;
}

/* ---- objects --------------------------------------------------------------- */

uint64_t shmkit__shm_ino_as(const char *name, uid_t uid)
{
    char path[SHMKIT__PATH_MAX];
    struct stat st;

    shmkit__os_shm_path(path, name);
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != uid)
        return 0;
    return (uint64_t)st.st_ino;
}

uint64_t shmkit__shm_ino(const char *name)
{
    return shmkit__shm_ino_as(name, geteuid());
}

bool shmkit__shm_taken(const char *name)
{
    char path[SHMKIT__PATH_MAX];
    struct stat st;

    shmkit__os_shm_path(path, name);
    return lstat(path, &st) == 0 || errno != ENOENT;
}

int shmkit__shm_unlink_if(const char *name, uint64_t ino, bool dry)
{
    uint64_t now = shmkit__shm_ino(name);
    int r;

    if (now == 0 || (ino != 0 && now != ino))
        return 0;
    if (dry)
        return 1;
    r = shmkit__os.shm_unlink(name);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        shmkit__kind_unlinked(name);
    return r < 0 ? r : 1;
}

bool shmkit__path_join(char *out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la + lb + 2 > SHMKIT__DIR_MAX)
        return false;
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
    return true;
}

void shmkit__rmtree1(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 &&
                                        strcmp(e->d_name, "..") != 0))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

/* ---- runtime directory ---------------------------------------------------- */

int shmkit__path_abs(const char *path, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    int n;

    if (path[0] == '/')
        n = snprintf(out, cap, "%s", path);
    else if (getcwd(cwd, sizeof cwd))
        n = snprintf(out, cap, "%s/%s", cwd, path);
    else
        return -errno;
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int shmkit__dir_private(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0)
        return SHMKIT_EOWNER;
    return 0;
}

/* Absolute: the tracker and the manager work from "/" (a relative
 * SHMKIT_RUNTIME_DIR made the tracker miss its family's directory, and
 * the family's blocks outlived it). */
int shmkit_runtime_dir(char *buf, size_t len)
{
    const char *env = getenv("SHMKIT_RUNTIME_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char dir[PATH_MAX];
    int n, r;

    if (env && *env)
        n = snprintf(dir, sizeof dir, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(dir, sizeof dir, "%s/shmkit", xdg);
    else
        n = snprintf(dir, sizeof dir, "/tmp/shmkit-%lu",
                     (unsigned long)geteuid());
    r = n < 0 || (size_t)n >= sizeof dir ? -ENAMETOOLONG
                                         : shmkit__path_abs(dir, buf, len);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_runtime_dir");
    r = shmkit__dir_private(buf);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_runtime_dir(\"%s\")", buf);
    return 0;
}

/* ---- daemons -------------------------------------------------------------- */

int shmkit__daemon_fork(void)
{
    pid_t mid, r;
    int st;

    mid = fork();
    if (mid < 0)
        return -errno;
    if (mid == 0) {
        pid_t d = fork();
        if (d != 0)
            _exit(d < 0 ? 1 : 0);
        return 0;
    }
    do
        r = waitpid(mid, &st, 0);
    while (r < 0 && errno == EINTR);
    /* ECHILD: the caller reaps children itself (or ignores SIGCHLD); the
     * readiness pipe, not this status, says whether the daemon runs. */
    return 1;
}

/* Parses one /proc/self/maps line; true if the mapping must go: shared,
 * or (even private) of a /dev/shm object, whose memory it would pin. */
static bool maps_shared(const char *line, uintptr_t *lo, uintptr_t *hi)
{
    char perms[8];

    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", lo, hi, perms) != 3)
        return false;
    return perms[3] == 's' || strstr(line, " /dev/shm/") != NULL;
}

/* Unmaps every shared mapping inherited from the parent, in batches
 * (unmapping while reading maps would skip lines). */
static void unmap_shared(void)
{
    enum { BATCH = 128 };
    uintptr_t lo[BATCH], hi[BATCH];
    int rounds;

    for (rounds = 0; rounds < 1000; rounds++) {
        FILE *f = fopen("/proc/self/maps", "re");
        char line[512];
        int n = 0, i;
        if (!f)
            return;
        while (n < BATCH && fgets(line, sizeof line, f)) {
            size_t l = strlen(line);
            if (maps_shared(line, &lo[n], &hi[n]))
                n++;
            /* Skip the rest of an over-long line. */
            while (l > 0 && line[l - 1] != '\n' && fgets(line, sizeof line, f))
                l = strlen(line);
        }
        fclose(f);
        for (i = 0; i < n; i++)
            munmap((void *)lo[i], hi[i] - lo[i]);
        if (n < BATCH)
            return;
    }
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Closes every descriptor except keep[0..n) (which are >= 3 and sorted). */
static void close_others(const int *keep, int n)
{
    unsigned lo = 0;
    int i;

    for (i = 0; i < n; i++) {
        if ((unsigned)keep[i] > lo)
            close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    close_range(lo, ~0u, 0);
}

void shmkit__daemon_detach(int *keep, int n)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    int sorted[8], i, fd;
    sigset_t all;

    setsid();
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    unmap_shared();
    for (i = 0; i < n && i < 8; i++) {
        /* Renumber above stdio so /dev/null can take 0-2. */
        fd = fcntl(keep[i], F_DUPFD_CLOEXEC, 3);
        if (fd >= 0)
            keep[i] = fd;
        sorted[i] = keep[i];
    }
    qsort(sorted, (size_t)i, sizeof sorted[0], cmp_int);
    close_others(sorted, i);
    fd = open("/dev/null", O_RDWR);
    if (fd == 0) {
        dup2(0, 1);
        dup2(0, 2);
    }
    if (chdir("/") < 0)
        return;
}
