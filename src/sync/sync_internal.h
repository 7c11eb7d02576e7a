/*
 * sync_internal.h - what lock.c, sync_named.c and typed.c share: layout
 * constants of the shared lock objects, the PID-namespace check, and
 * publishing a block whole under its final name.
 */
#ifndef SHMKIT_SYNC_INTERNAL_H
#define SHMKIT_SYNC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/internal.h"

/* Layout version of shmkit_mutex and shmkit_cond (sync_inline.h): 1 was
 * the C library's mutex and condition behind our header, 2 owns the lock
 * word (futex) and a sequence-counter condition. */
#define SYNC_VERSION SHMKIT__SYNC_VERSION
#define SYNC_MUTEX_MAGIC SHMKIT__MUTEX_MAGIC
#define SYNC_COND_MAGIC SHMKIT__COND_MAGIC

/* The inside of a shmkit_cond (lock.c; the tests read `tickets`). */
struct shmkit__cond_layout {
    uint32_t magic;     /* SYNC_COND_MAGIC */
    uint16_t version;   /* SYNC_VERSION */
    uint16_t flags;     /* none yet, 0 */
    uint64_t pid_ns;    /* initialiser's PID namespace inode, 0 unknown */
    uint32_t seq;       /* futex: bumped by every signal and broadcast */
    uint32_t reserved0;
    uint64_t tickets;   /* waiters (low half) and wake tickets (high half):
                           a signal gives one ticket to one registered
                           waiter, a broadcast one to each */
    uint64_t reserved[4];
};
#define COND_WAITERS(t) ((uint32_t)(t))
#define COND_TICKETS(t) ((uint32_t)((t) >> 32))

/* Inode of this process's PID namespace, or 0 if unknown (no /proc). */
SHMKIT__HIDDEN uint64_t shmkit__pid_ns(void);

/* 0 if an object made in PID namespace `ns` may be used here, else
 * SHMKIT_ENAMESPACE. An unknown namespace (0) on either side passes. */
SHMKIT__HIDDEN int shmkit__pid_ns_check(uint64_t ns);

/* True if the SHMKIT_MUTEX_SIZE / SHMKIT_COND_SIZE bytes at p carry an
 * initialised mutex / condition header of a version we know. p need not
 * be aligned; the bytes are copied first. */
SHMKIT__HIDDEN bool shmkit__mutex_valid(const void *p);
SHMKIT__HIDDEN bool shmkit__cond_valid(const void *p);
/* The same as an answer: 0, SHMKIT_EVERSION (a mutex / condition of
 * another layout version) or SHMKIT_ECORRUPT. */
SHMKIT__HIDDEN int shmkit__mutex_header(const void *p);
SHMKIT__HIDDEN int shmkit__cond_header(const void *p);

/* lock.c: true if this process holds a shmkit lock in [p, p + len).
 * The block layer asks it through its hook table (core/hooks.h). */
SHMKIT__HIDDEN bool shmkit__locks_held_in(const void *p, size_t len);

/* Fills a new block's bytes (zero-filled, `size` long) with a layout. */
typedef int (*shmkit__fill_fn)(void *data, size_t size, void *arg);

/*
 * Creates a block of `size` bytes under a temporary name, lets fill()
 * build its contents, then renames it to `name` (NULL: a generated "psm_"
 * name) without replacing anything, so nobody ever sees it half made and
 * a crash mid-way leaves nothing at the real name. On any failure the
 * temporary object is removed. `what` names the caller in messages.
 */
SHMKIT__HIDDEN int shmkit__publish(shmkit_block **out, const char *name,
                                   size_t size, unsigned flags,
                                   shmkit__fill_fn fill, void *arg,
                                   const char *what);

/* True if time a is before time b (both normalised timespecs). */
/* Atomics on 32-bit words in shared memory (the queue's record states
 * and sequence words, the liveness slots' words): acquire loads, release
 * stores, sequentially consistent compare-and-swap. */
static inline uint32_t shmkit__load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void shmkit__store32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline bool shmkit__cas32(uint32_t *p, uint32_t old, uint32_t val)
{
    return __atomic_compare_exchange_n(p, &old, val, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

static inline bool shmkit__ts_before(const struct timespec *a,
                                     const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* One step of a spin-wait: tells the CPU this thread is waiting (the
 * lock's adaptive spin, the queue's wait before its futex). */
static inline void shmkit__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Asks for p's cache line in exclusive state, without waiting for it: a
 * store or lock soon after then finds it here. x86-64: PREFETCHW (a NOP
 * where the CPU lacks it); GCC's __builtin_prefetch(p, 1) emits it only
 * with -mprfchw, and a read prefetch there otherwise. */
static inline void shmkit__prefetch_write(const void *p)
{
#if defined(__x86_64__)
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const volatile char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

#endif
