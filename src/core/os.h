/*
 * os.h - the contract between shmkit and the operating system.
 *
 * Every system call shmkit makes goes through the table `shmkit__os`.
 * Each entry returns >= 0 (or a valid pointer) on success and -errno on
 * failure, never sets errno for the caller to read, and retries EINTR
 * itself where retrying is correct. One file per platform implements it
 * (os_linux.c); the build picks the file, so the core has no #ifdef.
 *
 * Tests replace entries to inject failures (ENOSPC, EINTR, EMFILE, mmap
 * failure) and check that nothing is left behind; shmkit__os_reset()
 * restores the real calls.
 */
#ifndef SHMKIT_OS_H
#define SHMKIT_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* Where the OS keeps named shared memory objects as files. */
#define SHMKIT__PATH_MAX (sizeof "/dev/shm/" + 255)

typedef struct shmkit__os_ops {
    /* Opens the shm object `name` (no leading '/'), as open(2) on its path,
     * always adding no-follow, non-blocking and close-on-exec. */
    int (*shm_open)(const char *name, int oflag, mode_t mode);
    /* Opens a new object with no name in the shm directory, read-write,
     * close-on-exec, `mode` as for shm_open. It is freed with its last
     * descriptor unless shm_link gives it a name first, so a process
     * killed while building it leaves nothing. -EOPNOTSUPP (or -EISDIR,
     * -EINVAL) where the system cannot make nameless objects. */
    int (*shm_open_anon)(mode_t mode);
    /* Gives the nameless object open at fd the name `name`, whole and at
     * once; never replaces: -EEXIST if the name is taken. */
    int (*shm_link)(int fd, const char *name);
    int (*shm_unlink)(const char *name);
    /* renameat2 semantics; flags are SHMKIT_NOREPLACE / SHMKIT_EXCHANGE. */
    int (*shm_rename)(const char *from, const char *to, unsigned flags);
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    /* pread(2): reads up to len bytes at off; returns the count (short
     * past the end of the object: no signal, unlike a mapping) or -errno. */
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    /* pwrite(2): writes up to len bytes at off, extending the object and
     * allocating its memory as it goes (a full file system is a short
     * count, then -ENOSPC); returns the count or -errno. */
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*ftruncate)(int fd, off_t len);
    /* Reserves [0, len) so later page faults cannot fail for lack of space. */
    int (*fallocate)(int fd, off_t len);
    /* Maps `len` bytes of fd at offset 0, shared; `populate` prefaults.
     * Returns 0 and sets *addr, or -errno. */
    int (*mmap)(void **addr, size_t len, bool writable, bool populate, int fd);
    /* Maps `len` bytes of private, zero-filled memory (pages allocated
     * when first touched). */
    int (*mmap_anon)(void **addr, size_t len);
    int (*munmap)(void *addr, size_t len);
    /* Grows or shrinks a shared mapping, moving it if needed. */
    int (*mremap)(void **addr, size_t old_len, size_t new_len);
    /* Prefaults [addr, addr + len) of a shared mapping, for writing if
     * `write`, so later accesses take no page faults. */
    int (*populate)(void *addr, size_t len, bool write);
    /* Asks for transparent huge pages; -ENOTSUP where the system denies. */
    int (*hugepages)(void *addr, size_t len);
    /* Fills buf with random bytes. */
    int (*random)(void *buf, size_t len);
    /* Identity of this process's PID namespace (Linux: the inode of
     * /proc/self/ns/pid), or 0 where the platform cannot tell. */
    uint64_t (*pid_namespace)(void);
    /* Sleeps while the 32-bit word at addr (shared memory) holds `val`,
     * until woken, `deadline` (absolute CLOCK_MONOTONIC; NULL: none)
     * passes (-ETIMEDOUT), or a signal arrives (-EINTR, not retried: the
     * caller re-checks its condition). 0 on a wake-up (maybe spurious),
     * -EAGAIN if the word did not hold `val`. */
    int (*futex_wait)(uint32_t *addr, uint32_t val,
                      const struct timespec *deadline);
    /* Wakes up to n sleepers on addr; returns how many it woke. */
    int (*futex_wake)(uint32_t *addr, int n);
    /* Sleeps on n (1 to 8) shared 32-bit words at once while each
     * addrs[i] holds vals[i], as futex_wait (Linux futex_waitv, 5.16+):
     * the index of the word that woke it (maybe spuriously), -EAGAIN if
     * one did not hold its value, -ETIMEDOUT, -EINTR, or -ENOSYS where
     * the system has no such call. */
    int (*futex_waitv)(uint32_t *const *addrs, const uint32_t *vals, int n,
                       const struct timespec *deadline);
    /* Start time of process `pid` (an opaque number that differs between
     * two processes that had the same pid), or -ESRCH if none runs. */
    int (*proc_start)(pid_t pid, uint64_t *start);
    /* Waits until process `pid`, started at `start` (as proc_start gives
     * it; only its low 32 bits are compared), has exited with all its
     * threads (Linux: a pidfd becoming readable), or `deadline` passes
     * (-ETIMEDOUT); 0 at once if no such process runs. -EINTR on a
     * signal; -ENOSYS where the system cannot wait for a process. */
    int (*proc_wait_gone)(pid_t pid, uint32_t start,
                          const struct timespec *deadline);
    /* 1 if thread `tid` is a thread of process `pid`, 0 if not. */
    int (*thread_of)(pid_t pid, int tid);

    /* ---- the robust list, for the locks (src/sync) ---- */
    /* The calling thread's robust futex list as registered with the
     * kernel (set_robust_list): *head NULL if none. */
    int (*robust_list_get)(void **head, size_t *len);
    int (*robust_list_set)(void *head, size_t len);
    /* The calling thread's id as the kernel knows it. */
    int (*gettid)(void);
    /* 1 if a thread with id tid exists in this PID namespace, 0 if none
     * does, -errno if the system will not tell. */
    int (*thread_exists)(int tid);
    /* Copies len bytes within this process, answering -EFAULT instead of
     * raising a signal where src or dst is not mapped (readable or
     * writable): for pointers read from memory a peer may have written. */
    int (*mem_copy_checked)(void *dst, const void *src, size_t len);
    /* CPUs online now (at least 1): waiters spin before sleeping only
     * when a peer can run at the same time. */
    int (*cpus_online)(void);
} shmkit__os_ops;

extern shmkit__os_ops shmkit__os;

/*
 * Whether process `pid`, recorded with start time `start` (as proc_start
 * gives it, compared on its low `bits` bits: 64 for the whole number, 32
 * where a record keeps only those), may still run. False only when it is
 * known gone: no such process (proc_start's -ESRCH, which a zombie whose
 * threads have all exited gives too) or another start time. A /proc that
 * cannot be read (EMFILE, EACCES, EIO) means alive, and so does a start
 * time of 0 on either side (an owner that could not read its own): what
 * a live process holds is never taken from it on a guess.
 */
__attribute__((visibility("hidden"))) bool
shmkit__proc_alive(pid_t pid, uint64_t start, unsigned bits);

/* Restores the real system calls (for tests that replaced entries). */
void shmkit__os_reset(void);

/* Builds "/dev/shm/<name>" (or the platform's equivalent) into buf, which
 * has room for SHMKIT__PATH_MAX bytes. */
void shmkit__os_shm_path(char *buf, const char *name);

/* The directory holding the objects ("/dev/shm"), or NULL if the platform
 * has no such directory (listing is then unsupported). */
const char *shmkit__os_shm_dir(void);

/* Name of an errno value ("ENOENT"), or NULL if unknown. */
const char *shmkit__os_errno_name(int err);
/* Message for an errno value, or NULL if unknown. */
const char *shmkit__os_errno_desc(int err);

/* Page size. */
size_t shmkit__os_page_size(void);

#endif
