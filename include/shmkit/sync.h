/* shmkit/sync.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * Robust, process-shared locks and condition variables.
 *
 * shmkit_mutex and shmkit_cond are fixed-size objects you may put anywhere
 * in shared memory (inside your own structs in a block): 64 bytes each,
 * 8-byte aligned, the same on every platform shmkit supports. They are
 * initialised once, by one process, before any other process uses them;
 * zero-filled memory is NOT an initialised lock (every call on one returns
 * -EINVAL).
 *
 * Owner death. When a process (or thread) dies holding a shmkit_mutex, the
 * next locker is never blocked forever: it acquires the lock and gets
 * SHMKIT_EOWNERDEAD instead of 0. It then holds the lock, must repair the
 * data the lock protects, and call shmkit_mutex_consistent() before
 * unlocking. If it unlocks without calling consistent, the lock becomes
 * not recoverable: every later lock attempt, by anyone, fails with
 * SHMKIT_ENOTRECOVERABLE, forever (re-initialise the memory to reuse it).
 *
 * Guard rails.
 *   - A thread may hold at most SHMKIT_LOCKS_PER_THREAD locks at once; one
 *     more fails with SHMKIT_ETOOMANYLOCKS. (The kernel releases a dead
 *     thread's robust locks by walking a list of at most 2048 entries;
 *     locks beyond it would never be released.)
 *   - shmkit_block_close() and shmkit_block_shrink() refuse with
 *     SHMKIT_ELOCKHELD while a thread of this process holds a lock inside
 *     the part that would go away (the kernel's walk at death reads the
 *     lock's memory; unmapped, it would stop and strand every later lock).
 *     A thread blocked in a lock call or in shmkit_cond_wait() counts as
 *     holding the mutex (closing would pull the memory from under it).
 *   - PID namespaces. Robust locks record the owner's thread id as the
 *     kernel sees it in the owner's PID namespace; processes in different
 *     PID namespaces could read a live owner's id as dead and both enter
 *     the critical section. shmkit_mutex_init() and shmkit_cond_init()
 *     record the initialising process's PID namespace (the inode of
 *     /proc/self/ns/pid); every lock, wait and attach from a process in
 *     another namespace fails with SHMKIT_ENAMESPACE. Where /proc is not
 *     mounted the namespace is unknown and the check is skipped.
 *   - After fork(), the child holds none of the parent's locks (robust
 *     mutexes belong to threads) and may close blocks freely.
 *
 * Time. Timed calls take an absolute deadline on CLOCK_MONOTONIC (so that
 * a loop around spurious wake-ups keeps one deadline and setting the wall
 * clock changes nothing); shmkit_deadline() builds one from a relative
 * timeout.
 *
 * Hostile peers. Anyone who can write the memory can write the lock. No
 * bytes there make a call crash or wait forever on a thread that does not
 * exist: a bad header is -EINVAL (or SHMKIT_ENAMESPACE), a lock word naming
 * no live thread is taken as an owner death (after a probe every 50 ms of
 * waiting), list pointers overwritten while this thread holds the lock make
 * its unlock return SHMKIT_ECORRUPT (the lock is released all the same). A
 * lock word naming a live thread is indistinguishable from that thread
 * holding the lock: a blocking lock waits for it, so with peers you do not
 * trust, use the timed calls.
 *
 * Fast paths. sync_inline.h has inline versions of lock, trylock and
 * unlock (shmkit_mutex_lock_fast(), ...) with the same results; the
 * functions here take the same path first.
 *
 * Layout. Version 2 (this one) owns its lock word, a futex on the kernel's
 * robust list; version 1 wrapped the C library's mutex and condition. A
 * mutex or condition of the other version is -EINVAL here and
 * SHMKIT_EVERSION when a named lock or a typed block is attached.
 */
#ifndef SHMKIT_SYNC_H
#define SHMKIT_SYNC_H

#include <time.h>

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of an embeddable mutex or condition variable. */
#define SHMKIT_MUTEX_SIZE 64
#define SHMKIT_COND_SIZE 64

/* Most locks one thread can hold at once (well below the kernel's 2048). */
#define SHMKIT_LOCKS_PER_THREAD 256

/* Flags for shmkit_mutex_init. */
#define SHMKIT_MUTEX_RECURSIVE 0x0001u /* the owner may lock it again; it is
                                          free after as many unlocks */

/* A robust process-shared mutex; put it in shared memory. The layout
 * inside is private (magic, version, flags, PID namespace, the lock word
 * and a robust-list entry; sync_inline.h shows it for inlining). */
typedef struct shmkit_mutex {
    uint64_t opaque[SHMKIT_MUTEX_SIZE / 8];
} shmkit_mutex;

/* A process-shared condition variable; put it in shared memory. */
typedef struct shmkit_cond {
    uint64_t opaque[SHMKIT_COND_SIZE / 8];
} shmkit_cond;

#ifndef __cplusplus
_Static_assert(sizeof(shmkit_mutex) == SHMKIT_MUTEX_SIZE, "shmkit_mutex size");
_Static_assert(sizeof(shmkit_cond) == SHMKIT_COND_SIZE, "shmkit_cond size");
#endif

/* Sets *out to now + `seconds` on CLOCK_MONOTONIC (negative counts as 0;
 * huge or NaN values saturate to "never"). */
SHMKIT_API void shmkit_deadline(struct timespec *out, double seconds);

/* ---- mutex ---------------------------------------------------------- */

/*
 * Initialises the mutex at m (in shared memory, writable, 8-byte aligned)
 * as robust and process-shared; `flags` 0 or SHMKIT_MUTEX_RECURSIVE.
 * Call it exactly once, before other processes use m, and never on a
 * mutex someone may hold. Returns 0 or -EINVAL (bad flags or alignment).
 */
SHMKIT_API int shmkit_mutex_init(shmkit_mutex *m, unsigned flags);

/*
 * Acquires m, blocking as long as it takes. Returns:
 *   0                       acquired;
 *   SHMKIT_EOWNERDEAD       acquired, but the previous owner died holding
 *                           it: repair the data, shmkit_mutex_consistent(),
 *                           then unlock (owner death is reported once);
 *   SHMKIT_ENOTRECOVERABLE  not acquired: an earlier owner-death was never
 *                           repaired; it stays so forever;
 *   -EDEADLK                not acquired: this thread already holds it (and
 *                           it is not recursive), or holds it through
 *                           another mapping of the same memory;
 *   SHMKIT_ETOOMANYLOCKS    not acquired: this thread holds too many;
 *   SHMKIT_ENAMESPACE       not acquired: initialised in another PID
 *                           namespace;
 *   -EINVAL                 not an initialised shmkit mutex;
 *   -EAGAIN                 a recursive mutex's count would overflow;
 *   -ENOMEM, -ENOTSUP       this thread's record could not be made, or the
 *                           C library's robust list has another shape.
 */
SHMKIT_API int shmkit_mutex_lock(shmkit_mutex *m);

/* As shmkit_mutex_lock, without blocking: -EBUSY if another thread holds
 * it. */
SHMKIT_API int shmkit_mutex_trylock(shmkit_mutex *m);

/* As shmkit_mutex_lock, giving up at `deadline` (absolute,
 * CLOCK_MONOTONIC, see shmkit_deadline) with -ETIMEDOUT. A deadline in the
 * past still acquires a free lock. */
SHMKIT_API int shmkit_mutex_timedlock(shmkit_mutex *m,
                                      const struct timespec *deadline);

/*
 * Releases m (one level of a recursive mutex). SHMKIT_ENOTOWNER if this
 * thread does not hold it (or the lock word says another thread does: it
 * was re-initialised or overwritten; this thread forgets it).
 * SHMKIT_ECORRUPT if a peer overwrote the lock while this thread held it
 * (it is released all the same). Unlocking after SHMKIT_EOWNERDEAD without
 * shmkit_mutex_consistent() makes m not recoverable, for everyone.
 */
SHMKIT_API int shmkit_mutex_unlock(shmkit_mutex *m);

/* Marks m consistent again after SHMKIT_EOWNERDEAD and repair; the caller
 * keeps holding it. -EINVAL if m is not in the owner-died state or this
 * thread does not hold it. */
SHMKIT_API int shmkit_mutex_consistent(shmkit_mutex *m);

/* Destroys m; -EBUSY if someone holds it. Nothing else is needed before
 * unmapping an unheld mutex; this only makes later use fail with -EINVAL. */
SHMKIT_API int shmkit_mutex_destroy(shmkit_mutex *m);

/* How many times this thread holds m (0 if it does not; 1 for a plain
 * mutex it holds). */
SHMKIT_API unsigned shmkit_mutex_held(const shmkit_mutex *m);

/* True if m was initialised with SHMKIT_MUTEX_RECURSIVE. */
SHMKIT_API bool shmkit_mutex_is_recursive(const shmkit_mutex *m);

/* A snapshot of a mutex's state, for tools and diagnostics. */
typedef struct shmkit_mutex_info {
    bool recursive;        /* initialised with SHMKIT_MUTEX_RECURSIVE */
    bool locked;           /* someone holds it (or held it and died) */
    bool owner_died;       /* its holder died; the next locker gets
                              SHMKIT_EOWNERDEAD */
    bool inconsistent;     /* held after owner death, not yet repaired */
    bool not_recoverable;  /* SHMKIT_ENOTRECOVERABLE for everyone */
    pid_t owner_tid;       /* holder's thread id (in the initialiser's PID
                              namespace), 0 if free */
    uint64_t pid_ns;       /* inode of the initialiser's PID namespace, or 0 */
} shmkit_mutex_info;

/*
 * Reads m's state without taking it (works on a read-only mapping). The
 * answer may be stale as soon as it returns. -EINVAL if m is not an
 * initialised shmkit mutex.
 */
SHMKIT_API int shmkit_mutex_inspect(const shmkit_mutex *m,
                                    shmkit_mutex_info *info);

/* ---- condition variable --------------------------------------------- */

/* Initialises the condition at c (in shared memory) as process-shared,
 * timing on CLOCK_MONOTONIC. Once, before other processes use it. */
SHMKIT_API int shmkit_cond_init(shmkit_cond *c);

/*
 * Atomically releases m (which this thread must hold; all levels of a
 * recursive mutex) and waits for a signal on c, then reacquires m (to the
 * same depth) before returning. Wake-ups may be spurious: wait in a loop
 * around your predicate. Returns 0, or:
 *   SHMKIT_EOWNERDEAD       woken, and m reacquired, but a holder of m died
 *                           meanwhile: repair, consistent, as for lock;
 *   SHMKIT_ENOTRECOVERABLE  m became not recoverable; m is NOT held;
 *   SHMKIT_ENOTOWNER        this thread does not hold m;
 *   SHMKIT_ENAMESPACE, -EINVAL as for lock.
 *
 * Wake-ups are counted: a signal wakes one waiter that was waiting when it
 * came, a broadcast each of them, never one that came later; a timed wait
 * whose deadline passes as a signal comes returns 0 and takes it.
 *
 * When processes die: a condition is a sequence counter that waiters sleep
 * on (a futex) and a count of waiters and wake tickets, with no lock
 * inside, so a process killed anywhere in wait, signal or broadcast leaves
 * nothing that blocks anyone (a waiter killed while waiting costs, at
 * most, one later waiter a spurious wake-up). If the
 * holder of m dies, waiters sleep until someone signals c or their
 * deadline passes; the one that then takes m back gets SHMKIT_EOWNERDEAD.
 * A timed wait returns when its deadline passes, after taking m back
 * (which waits for m's holder, as any lock does).
 */
SHMKIT_API int shmkit_cond_wait(shmkit_cond *c, shmkit_mutex *m);

/* As shmkit_cond_wait, giving up at `deadline` (absolute, CLOCK_MONOTONIC)
 * with -ETIMEDOUT; m is held again on -ETIMEDOUT as well. */
SHMKIT_API int shmkit_cond_timedwait(shmkit_cond *c, shmkit_mutex *m,
                                     const struct timespec *deadline);

/* Wakes at least one waiter of c (if any). Need not hold the mutex. */
SHMKIT_API int shmkit_cond_signal(shmkit_cond *c);

/* Wakes every waiter of c. */
SHMKIT_API int shmkit_cond_broadcast(shmkit_cond *c);

/* Destroys c; only when nobody waits. */
SHMKIT_API int shmkit_cond_destroy(shmkit_cond *c);

/* ---- named stand-alone locks ---------------------------------------- */

/*
 * A named lock is a small block of its own holding a header (magic,
 * version, flags, PID namespace), a shmkit_mutex and a shmkit_cond: a Lock,
 * an RLock (SHMKIT_MUTEX_RECURSIVE) and a Condition over it in one. It is
 * published whole: built under a temporary name and renamed into place,
 * so an attacher never sees it half made and a crash mid-create leaves
 * nothing at the real name. `shmkit ls` shows it as kind "lock".
 */
typedef struct shmkit_lock shmkit_lock;

/*
 * Creates the named lock `name` (NULL: a generated "psm_" name) with
 * `lock_flags` (0 or SHMKIT_MUTEX_RECURSIVE) and block `flags` (as for
 * shmkit_block_create: SHMKIT_TRACK, SHMKIT_REFCOUNT, ...). -EEXIST if the
 * name exists. On success *out owns the handle.
 */
SHMKIT_API int shmkit_lock_create(shmkit_lock **out, const char *name,
                                  unsigned lock_flags, unsigned flags);

/*
 * Attaches to the named lock `name`. SHMKIT_EKIND if the block is not a
 * named lock, SHMKIT_EVERSION / SHMKIT_ECORRUPT / SHMKIT_ETRUNCATED for a
 * bad header, SHMKIT_ENAMESPACE if it was made in another PID namespace.
 * SHMKIT_RDONLY is refused (-EINVAL): locking writes to the memory.
 */
SHMKIT_API int shmkit_lock_attach(shmkit_lock **out, const char *name,
                                  unsigned flags);

/* The lock's mutex and condition (valid until close). */
SHMKIT_API shmkit_mutex *shmkit_lock_mutex(shmkit_lock *l);
SHMKIT_API shmkit_cond *shmkit_lock_cond(shmkit_lock *l);

/* The underlying block (owned by the lock handle; do not close it). */
SHMKIT_API shmkit_block *shmkit_lock_block(shmkit_lock *l);

/* Closes the handle (never unlinks, except as SHMKIT_REFCOUNT says).
 * SHMKIT_ELOCKHELD, leaving the handle open, while this process holds the
 * lock. NULL is fine. */
SHMKIT_API int shmkit_lock_close(shmkit_lock *l);

/* Removes the lock's name (as shmkit_block_unlink). */
SHMKIT_API int shmkit_lock_unlink(shmkit_lock *l);

/*
 * Recognises a named lock's header in the bytes [data, data + size) (a
 * mapped block): 0 and *info filled (if info is not NULL) from the mutex,
 * or SHMKIT_EKIND / SHMKIT_EVERSION / SHMKIT_ECORRUPT / SHMKIT_ETRUNCATED.
 * Safe on hostile bytes and on read-only mappings.
 */
SHMKIT_API int shmkit_lock_parse(const void *data, size_t size,
                                 shmkit_mutex_info *info);

#ifdef __cplusplus
}
#endif

#endif
