/*
 * os_linux.c - the OS contract of os.h for Linux (glibc or musl).
 *
 * Named objects are files in /dev/shm, exactly where glibc's shm_open puts
 * them, so CPython (which calls shm_open) and shmkit meet at the same path.
 * We open the path ourselves rather than through shm_open so that we can
 * add O_NOFOLLOW and O_NONBLOCK: a symlink or FIFO planted at the name must
 * be refused at once, not followed or waited on.
 */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <poll.h>
#include <signal.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sched.h>
#include <stdint.h>
#include <limits.h>
#include <unistd.h>

#include "os_linux.h"
#include "shmkit.h"

#define SHM_DIR "/dev/shm"

static int sys_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

static void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags)
{
    return mremap(old, old_len, new_len, flags);
}

/* The real calls; a macro because C wants a constant initializer for both
 * the live table and the copy that shmkit__os_reset() restores. */
#define REAL_SYS                                                              \
    {                                                                         \
        .open = sys_open, .close = close, .fstat = fstat,                    \
        .ftruncate = ftruncate, .posix_fallocate = posix_fallocate,          \
        .mmap = mmap, .munmap = munmap, .mremap = sys_mremap,                \
        .madvise = madvise, .unlink = unlink, .renameat2 = renameat2,        \
        .linkat = linkat, .pread = pread, .pwrite = pwrite,                   \
        .getrandom = getrandom,                                              \
    }

static const shmkit__linux_sys real_sys = REAL_SYS;
shmkit__linux_sys shmkit__sys = REAL_SYS;

void shmkit__os_shm_path(char *buf, const char *name)
{
    size_t n = strlen(name);

    memcpy(buf, SHM_DIR "/", sizeof SHM_DIR);
    memcpy(buf + sizeof SHM_DIR, name, n + 1);
}

const char *shmkit__os_shm_dir(void)
{
    return SHM_DIR;
}

static int linux_shm_open(const char *name, int oflag, mode_t mode)
{
    char path[SHMKIT__PATH_MAX];
    int fd;

    shmkit__os_shm_path(path, name);
    do
        fd = shmkit__sys.open(path, oflag | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

/* O_TMPFILE: an object in the shm directory's file system that has no
 * name yet (Linux 3.11; tmpfs supports it). */
static int linux_shm_open_anon(mode_t mode)
{
    int fd;

    do
        fd = shmkit__sys.open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

/* Set once linkat(AT_EMPTY_PATH) was refused: some kernels allow it only
 * with CAP_DAC_READ_SEARCH, and say -ENOENT otherwise. */
static int empty_path_refused;

/*
 * Links the nameless object fd under name; linkat never replaces, so
 * publishing is an exclusive create (-EEXIST). linkat(fd, "",
 * AT_EMPTY_PATH) is one lookup of the new name; where it is refused, the
 * link goes through /proc/self/fd, which also resolves the descriptor's
 * path in procfs (about 2 us more per create here).
 */
static int linux_shm_link(int fd, const char *name)
{
    char path[SHMKIT__PATH_MAX], proc[32];

    shmkit__os_shm_path(path, name);
    if (!__atomic_load_n(&empty_path_refused, __ATOMIC_RELAXED)) {
        if (shmkit__sys.linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
            return 0;
        if (errno != ENOENT)
            return -errno;
        __atomic_store_n(&empty_path_refused, 1, __ATOMIC_RELAXED);
    }
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (shmkit__sys.linkat(AT_FDCWD, proc, AT_FDCWD, path,
                           AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    return 0;
}

static ssize_t linux_pread(int fd, void *buf, size_t len, off_t off)
{
    ssize_t n;

    do
        n = shmkit__sys.pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t linux_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;

    do
        n = shmkit__sys.pwrite(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int linux_shm_unlink(const char *name)
{
    char path[SHMKIT__PATH_MAX];

    shmkit__os_shm_path(path, name);
    return shmkit__sys.unlink(path) < 0 ? -errno : 0;
}

static int linux_shm_rename(const char *from, const char *to, unsigned flags)
{
    char a[SHMKIT__PATH_MAX], b[SHMKIT__PATH_MAX];
    unsigned rf = 0;

    if (flags & SHMKIT_NOREPLACE)
        rf |= RENAME_NOREPLACE;
    if (flags & SHMKIT_EXCHANGE)
        rf |= RENAME_EXCHANGE;
    shmkit__os_shm_path(a, from);
    shmkit__os_shm_path(b, to);
    return shmkit__sys.renameat2(AT_FDCWD, a, AT_FDCWD, b, rf) < 0 ? -errno : 0;
}

static int linux_close(int fd)
{
    /* Linux releases the descriptor even when close reports EINTR, so a
     * retry could close someone else's new descriptor: never retry. */
    if (shmkit__sys.close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

static int linux_fstat(int fd, struct stat *st)
{
    return shmkit__sys.fstat(fd, st) < 0 ? -errno : 0;
}

static int linux_ftruncate(int fd, off_t len)
{
    int r;

    do
        r = shmkit__sys.ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int linux_fallocate(int fd, off_t len)
{
    int r;

    do
        r = shmkit__sys.posix_fallocate(fd, 0, len);
    while (r == EINTR);
    return -r;
}

static int linux_mmap(void **addr, size_t len, bool writable, bool populate,
                      int fd)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    int fl = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    void *p = shmkit__sys.mmap(NULL, len, prot, fl, fd, 0);

    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

static int linux_mmap_anon(void **addr, size_t len)
{
    void *p = shmkit__sys.mmap(NULL, len, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

static int linux_munmap(void *addr, size_t len)
{
    return shmkit__sys.munmap(addr, len) < 0 ? -errno : 0;
}

static int linux_mremap(void **addr, size_t old_len, size_t new_len)
{
    void *p = shmkit__sys.mremap(*addr, old_len, new_len, MREMAP_MAYMOVE);

    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

/* MADV_POPULATE_* (Linux 5.14) fills the page tables in one call; older
 * kernels answer EINVAL, and there touching each page does the same. */
static int linux_populate(void *addr, size_t len, bool write)
{
    size_t page = shmkit__os_page_size(), i;
    volatile const char *p = addr;

    if (shmkit__sys.madvise(addr, len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    for (i = 0; i < len; i += page)
        (void)p[i];
    return 0;
}

/* Transparent huge pages for shmem are governed by one system setting:
 * "never" and "deny" refuse them whatever we ask, so say so. */
static int linux_hugepages(void *addr, size_t len)
{
    char s[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

    if (!f)
        return -ENOTSUP;
    if (!fgets(s, sizeof s, f))
        s[0] = 0;
    fclose(f);
    if (!strstr(s, "[always]") && !strstr(s, "[within_size]") &&
        !strstr(s, "[advise]") && !strstr(s, "[force]"))
        return -ENOTSUP;
    return shmkit__sys.madvise(addr, len, MADV_HUGEPAGE) < 0 ? -errno : 0;
}

static int linux_random(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = shmkit__sys.getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint64_t linux_pid_namespace(void)
{
    struct stat st;

    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Futexes on shared memory: no FUTEX_PRIVATE_FLAG, the word is shared
 * between processes. FUTEX_WAIT_BITSET takes an absolute deadline, on
 * CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME is given. */
static int linux_futex_wait(uint32_t *addr, uint32_t val,
                            const struct timespec *deadline)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, deadline, NULL,
                     FUTEX_BITSET_MATCH_ANY);

    return r < 0 ? -errno : 0;
}

static int linux_futex_wake(uint32_t *addr, int n)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);

    return r < 0 ? -errno : (int)r;
}

/* A zombie leader is gone only when its whole thread group has exited: a
 * process whose main thread called pthread_exit shows 'Z' in
 * /proc/PID/stat while its other threads run. A pidfd polls readable
 * exactly when the group is empty; without one, Threads: in /proc/PID/status
 * says. -ESRCH if gone, 0 if it runs, another code if this cannot be told
 * (no descriptor left for either). */
static int zombie_gone(pid_t pid)
{
    struct pollfd p;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0), r;
    char path[64], buf[2048], *t;
    ssize_t n;

    if (fd < 0 && errno != ESRCH) {
        /* No pidfd (Linux < 5.3, or a sandbox that refuses pidfd_open
         * with EPERM, or no descriptor left): the leader counts itself
         * in Threads: until the group is empty. */
        snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT ? -ESRCH : -errno;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            return -EIO;
        buf[n] = 0;
        t = strstr(buf, "\nThreads:");
        if (!t)
            return -EIO;
        return strtol(t + 9, NULL, 10) > 1 ? 0 : -ESRCH;
    }
    if (fd < 0)
        return -ESRCH;
    p.fd = fd;
    p.events = POLLIN;
    r = poll(&p, 1, 0);
    r = r < 0 ? -errno : r > 0 ? -ESRCH : 0;
    close(fd);
    return r;
}

/* /proc/PID/stat field 22 (start time in clock ticks since boot). The
 * command name (field 2) may hold spaces and ')': parse after the last
 * ')'. A zombie whose threads have all exited counts as gone: it will
 * never touch memory again. -ESRCH only when the process is known to be
 * gone; a /proc that cannot be read or parsed (EMFILE, EACCES, EIO) is
 * another code: callers must take that as "maybe alive". */
static int linux_proc_start(pid_t pid, uint64_t *start)
{
    char path[64], buf[1024], *p;
    ssize_t n;
    int fd, field, e;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        /* ENOENT is also what hidepid=2 answers for a live process of
         * another user: kill(pid, 0) tells (EPERM: it exists). */
        if (e == ENOENT)
            return kill(pid, 0) < 0 && errno == ESRCH ? -ESRCH : -EACCES;
        return -e;
    }
    n = read(fd, buf, sizeof buf - 1);
    e = errno;
    close(fd);
    if (n < 0)
        return e == ESRCH ? -ESRCH : -e;
    if (n == 0)
        return -EIO;
    buf[n] = 0;
    p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -EIO;
    if (p[2] == 'X')
        return -ESRCH;
    if (p[2] == 'Z' && (e = zombie_gone(pid)) != 0)
        return e;
    for (field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return -EIO;
    *start = strtoull(p + 1, NULL, 10);
    return 0;
}

/* futex_waitv on shared words (no FUTEX_PRIVATE_FLAG), with an absolute
 * CLOCK_MONOTONIC deadline. */
static int linux_futex_waitv(uint32_t *const *addrs, const uint32_t *vals,
                             int n, const struct timespec *deadline)
{
#ifdef SYS_futex_waitv
    struct futex_waitv w[8];
    long r;
    int i;

    if (n < 1 || n > 8)
        return -EINVAL;
    memset(w, 0, sizeof w);
    for (i = 0; i < n; i++) {
        w[i].uaddr = (uint64_t)(uintptr_t)addrs[i];
        w[i].val = vals[i];
        w[i].flags = FUTEX_32;
    }
    r = syscall(SYS_futex_waitv, w, (unsigned)n, 0u, deadline,
                CLOCK_MONOTONIC);
    return r < 0 ? -errno : (int)r;
#else
    (void)addrs, (void)vals, (void)n, (void)deadline;
    return -ENOSYS;
#endif
}

/* A pidfd opened first, then the start time checked, so the pidfd is
 * known to name that process and not a later one with its pid. A pidfd
 * polls readable once the whole thread group has exited. */
static int linux_proc_wait_gone(pid_t pid, uint32_t start,
                                const struct timespec *deadline)
{
    struct pollfd p;
    struct timespec now, left, *tp = NULL;
    uint64_t st;
    int fd, r;

    fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return errno == ESRCH ? 0 : -errno;
    r = linux_proc_start(pid, &st);
    if (r == -ESRCH || (r == 0 && (uint32_t)st != start && st != 0)) {
        close(fd);
        return 0;
    }
    p.fd = fd;
    p.events = POLLIN;
    if (deadline) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        left.tv_sec = deadline->tv_sec - now.tv_sec;
        left.tv_nsec = deadline->tv_nsec - now.tv_nsec;
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        if (left.tv_sec < 0)
            left.tv_sec = left.tv_nsec = 0;
        tp = &left;
    }
    r = ppoll(&p, 1, tp, NULL);
    r = r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
    close(fd);
    return r;
}

static int linux_thread_of(pid_t pid, int tid)
{
    if (pid <= 0 || tid <= 0)
        return 0;
    if (syscall(SYS_tgkill, pid, tid, 0) == 0)
        return 1;
    return errno == EPERM ? 1 : 0;
}

static int linux_robust_list_get(void **head, size_t *len)
{
    return syscall(SYS_get_robust_list, 0, head, len) < 0 ? -errno : 0;
}

static int linux_robust_list_set(void *head, size_t len)
{
    return syscall(SYS_set_robust_list, head, len) < 0 ? -errno : 0;
}

static int linux_gettid(void)
{
    return (int)syscall(SYS_gettid);
}

/* sched_getscheduler takes any thread's id (kill() wants a process's)
 * and needs no permission. */
static int linux_thread_exists(int tid)
{
    if (tid <= 0)
        return 0;
    if (syscall(SYS_sched_getscheduler, tid) >= 0)
        return 1;
    return errno == ESRCH ? 0 : -errno;
}

/* process_vm_readv on ourselves reports EFAULT for unmapped memory on
 * either side instead of a SIGSEGV. */
static int linux_mem_copy_checked(void *dst, const void *src, size_t len)
{
    struct iovec local = {dst, len}, remote = {(void *)src, len};
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);

    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EFAULT;
}

/* sysconf reads /sys on each call: ask once. CPUs rarely come and go,
 * and a stale answer only changes whether waiters spin. */
static int linux_cpus_online(void)
{
    static int n;
    int v = __atomic_load_n(&n, __ATOMIC_RELAXED);

    if (v == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        v = c < 1 ? 1 : c > INT_MAX ? INT_MAX : (int)c;
        __atomic_store_n(&n, v, __ATOMIC_RELAXED);
    }
    return v;
}

#define LINUX_OPS                                                             \
    {                                                                         \
        .shm_open = linux_shm_open,                                           \
        .shm_open_anon = linux_shm_open_anon,                                 \
        .shm_link = linux_shm_link,                                           \
        .shm_unlink = linux_shm_unlink,                                       \
        .shm_rename = linux_shm_rename,                                       \
        .close = linux_close,                                                 \
        .fstat = linux_fstat,                                                 \
        .pread = linux_pread,                                                 \
        .pwrite = linux_pwrite,                                               \
        .ftruncate = linux_ftruncate,                                         \
        .fallocate = linux_fallocate,                                         \
        .mmap = linux_mmap,                                                   \
        .mmap_anon = linux_mmap_anon,                                         \
        .munmap = linux_munmap,                                               \
        .mremap = linux_mremap,                                               \
        .populate = linux_populate,                                           \
        .hugepages = linux_hugepages,                                         \
        .random = linux_random,                                               \
        .pid_namespace = linux_pid_namespace,                                 \
        .futex_wait = linux_futex_wait,                                       \
        .futex_wake = linux_futex_wake,                                       \
        .futex_waitv = linux_futex_waitv,                                     \
        .proc_start = linux_proc_start,                                       \
        .proc_wait_gone = linux_proc_wait_gone,                               \
        .thread_of = linux_thread_of,                                         \
        .robust_list_get = linux_robust_list_get,                             \
        .robust_list_set = linux_robust_list_set,                             \
        .gettid = linux_gettid,                                               \
        .thread_exists = linux_thread_exists,                                 \
        .mem_copy_checked = linux_mem_copy_checked,                           \
        .cpus_online = linux_cpus_online,                                     \
    }

static const shmkit__os_ops linux_ops = LINUX_OPS;
shmkit__os_ops shmkit__os = LINUX_OPS;

void shmkit__os_reset(void)
{
    shmkit__os = linux_ops;
    shmkit__sys = real_sys;
}

const char *shmkit__os_errno_name(int err)
{
    return strerrorname_np(err);
}

const char *shmkit__os_errno_desc(int err)
{
    return strerrordesc_np(err);
}

size_t shmkit__os_page_size(void)
{
    static size_t page;

    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}
