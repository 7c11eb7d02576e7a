/* shmkit/sync_inline.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * The uncontended paths of the lock calls, inline, and typed atomics.
 *
 * shmkit_mutex_lock_fast(), _trylock_fast() and _unlock_fast() do exactly
 * what shmkit_mutex_lock(), _trylock() and _unlock() do (same results,
 * same promises: owner death reported once, recursion, the per-thread
 * bound, SHMKIT_ELOCKHELD on close), but take a free lock and release the
 * lock taken last without a call: a compare-and-swap on the lock word,
 * the kernel's robust list and this thread's record of held locks. Every
 * other case (contention, recursion, owner death, a lock that is not
 * recoverable, a header that fails its check, the first lock of a thread)
 * goes through the called function. Mix them freely with the called ones.
 *
 * The atomics are plain sequentially consistent operations on an item
 * pointer, for callers that validated the array once (shmkit_array_i64()
 * and friends in typed.h give that pointer); the checked calls
 * (shmkit_array_fetch_add, ...) stay for everyone else.
 *
 * Everything named shmkit__ here is the library's private layout, visible
 * only so that the compiler can inline these paths: do not use it, and
 * rebuild against the headers of the library you run with (the mutex
 * layout carries a version; a mismatch only sends every call down the
 * called path, which refuses the lock with -EINVAL).
 */
#ifndef SHMKIT_SYNC_INLINE_H
#define SHMKIT_SYNC_INLINE_H

#include <stdint.h>

#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- private layout (see the comment above) ------------------------- */

#define SHMKIT__MUTEX_MAGIC 0x584d4b53u /* "SKMX" read as little-endian */
#define SHMKIT__COND_MAGIC 0x43434b53u  /* "SKCC" */
#define SHMKIT__SYNC_VERSION 2          /* of the mutex and cond layouts */

/* The lock word (a futex, with the kernel's robust-futex bits). */
#define SHMKIT__FUTEX_WAITERS 0x80000000u
#define SHMKIT__FUTEX_OWNER_DIED 0x40000000u
#define SHMKIT__FUTEX_TID 0x3fffffffu
/* A word no thread id can make: the lock is not recoverable. */
#define SHMKIT__FUTEX_NOTREC 0x3fffffffu

/* The inside of a shmkit_mutex. The robust-list entry (`next`, with `prev`
 * before it) sits 32 bytes after the lock word, which is where the C
 * library's robust mutexes keep theirs, so our locks and its locks share
 * one per-thread list that the kernel walks when a thread dies. */
struct shmkit__mutex_layout {
    uint32_t magic;    /* SHMKIT__MUTEX_MAGIC */
    uint16_t version;  /* SHMKIT__SYNC_VERSION */
    uint16_t flags;    /* SHMKIT_MUTEX_RECURSIVE */
    uint64_t pid_ns;   /* initialiser's PID namespace inode, 0 unknown */
    uint32_t word;     /* owner's thread id | WAITERS | OWNER_DIED */
    uint32_t reserved0;
    uint64_t reserved1[2];
    void *prev;        /* robust list: the previous entry's `next` */
    void *next;        /* robust list: the entry the kernel walks */
    uint64_t reserved2;
};

/* One lock this thread holds (or waits for). */
struct shmkit__held {
    const void *m;    /* the shmkit_mutex */
    void *next;       /* what m's robust-list `next` was set to */
    uint32_t again;   /* times locked beyond the first */
    uint32_t pad;
};

/* This thread's view, set up by its first called lock operation. */
struct shmkit__thread {
    uint32_t tid;            /* 0: not set up yet (use the called path) */
    uint32_t n;              /* entries in h[0..n) */
    uint64_t ns;             /* this process's PID namespace, or 0 */
    void **robust;           /* this thread's robust list head */
    struct shmkit__held *h;  /* SHMKIT_LOCKS_PER_THREAD entries */
    uint32_t *n_shared;      /* n, where other threads read it */
};

SHMKIT_API extern __thread struct shmkit__thread shmkit__self
    __attribute__((tls_model("initial-exec")));

/* The rest of an unlock whose inline part already took m off the robust
 * list and found a waiter to wake. */
SHMKIT_API int shmkit__mutex_unlock_unlinked(shmkit_mutex *m);

/* The lock word and its list entry for the fast paths; NULL if the
 * header does not say "an initialised shmkit mutex usable here". */
static inline struct shmkit__mutex_layout *
shmkit__mutex_fast_check(shmkit_mutex *m, const struct shmkit__thread *t)
{
    struct shmkit__mutex_layout *s = (struct shmkit__mutex_layout *)(void *)m;

    if (__builtin_expect(s->magic != SHMKIT__MUTEX_MAGIC ||
                             s->version != SHMKIT__SYNC_VERSION ||
                             s->pid_ns != t->ns,
                         0))
        return (struct shmkit__mutex_layout *)0;
    return s;
}

/* Takes s for this thread if its word is 0; the robust list and the
 * record follow the order the kernel's owner-death walk relies on. */
static inline int shmkit__mutex_take_fast(struct shmkit__mutex_layout *s,
                                          struct shmkit__thread *t)
{
    void **robust = t->robust;
    void *first;
    uint32_t zero = 0, n = t->n;

    robust[2] = &s->next; /* list_op_pending: a death now still counts */
    /* A SIGKILL may land between any two instructions: the kernel must
     * see these stores in program order, so the compiler may not move
     * them across the word's update (acquire/release would let it). */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(!__atomic_compare_exchange_n(&s->word, &zero, t->tid,
                                                      0, __ATOMIC_ACQUIRE,
                                                      __ATOMIC_RELAXED),
                         0)) {
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        robust[2] = (void *)0;
        return -1;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    first = robust[0];
    s->prev = (void *)robust;
    s->next = first;
    ((void **)((uintptr_t)first & ~(uintptr_t)1))[-1] = &s->next;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    robust[0] = &s->next;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    robust[2] = (void *)0;
    t->h[n].m = s;
    t->h[n].next = first;
    __atomic_store_n(t->n_shared, n + 1, __ATOMIC_RELEASE);
    t->n = n + 1;
    return 0;
}

/* ---- the fast paths --------------------------------------------------- */

/* As shmkit_mutex_lock(m). */
static inline int shmkit_mutex_lock_fast(shmkit_mutex *m)
{
    struct shmkit__thread *t = &shmkit__self;
    struct shmkit__mutex_layout *s;

    if (__builtin_expect(t->tid == 0 || t->n >= SHMKIT_LOCKS_PER_THREAD, 0))
        return shmkit_mutex_lock(m);
    s = shmkit__mutex_fast_check(m, t);
    if (__builtin_expect(!s || shmkit__mutex_take_fast(s, t) != 0, 0))
        return shmkit_mutex_lock(m);
    return 0;
}

/* As shmkit_mutex_trylock(m). */
static inline int shmkit_mutex_trylock_fast(shmkit_mutex *m)
{
    struct shmkit__thread *t = &shmkit__self;
    struct shmkit__mutex_layout *s;

    if (__builtin_expect(t->tid == 0 || t->n >= SHMKIT_LOCKS_PER_THREAD, 0))
        return shmkit_mutex_trylock(m);
    s = shmkit__mutex_fast_check(m, t);
    if (__builtin_expect(!s || shmkit__mutex_take_fast(s, t) != 0, 0))
        return shmkit_mutex_trylock(m);
    return 0;
}

/* As shmkit_mutex_unlock(m). Inline when m is the lock this thread took
 * last, held once, nobody waits for it and nothing else touched the
 * robust list since. */
static inline int shmkit_mutex_unlock_fast(shmkit_mutex *m)
{
    struct shmkit__thread *t = &shmkit__self;
    struct shmkit__mutex_layout *s = (struct shmkit__mutex_layout *)(void *)m;
    struct shmkit__held *h;
    void **robust = t->robust;
    uint32_t n = t->n, tid = t->tid;
    void *next;

    if (__builtin_expect(n == 0, 0))
        return shmkit_mutex_unlock(m);
    h = &t->h[n - 1];
    next = h->next;
    if (__builtin_expect(h->m != s || h->again != 0 ||
                             robust[0] != (void *)&s->next ||
                             s->next != next ||
                             __atomic_load_n(&s->word, __ATOMIC_RELAXED) != tid,
                         0))
        return shmkit_mutex_unlock(m);
    robust[2] = &s->next;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    robust[0] = next;
    ((void **)((uintptr_t)next & ~(uintptr_t)1))[-1] = (void *)robust;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(!__atomic_compare_exchange_n(&s->word, &tid, 0, 0,
                                                      __ATOMIC_RELEASE,
                                                      __ATOMIC_RELAXED),
                         0))
        return shmkit__mutex_unlock_unlinked(m); /* a waiter came */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    robust[2] = (void *)0;
    __atomic_store_n(t->n_shared, n - 1, __ATOMIC_RELEASE);
    t->n = n - 1;
    return 0;
}

/* ---- typed atomics ---------------------------------------------------- */

/* Sequentially consistent, like the checked calls in typed.h. */
#define SHMKIT__ATOMIC_OPS(T, name)                                           \
    static inline T shmkit_atomic_load_##name(const T *p)                     \
    {                                                                         \
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);                          \
    }                                                                         \
    static inline void shmkit_atomic_store_##name(T *p, T v)                  \
    {                                                                         \
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);                             \
    }                                                                         \
    static inline T shmkit_atomic_fetch_add_##name(T *p, T d)                 \
    {                                                                         \
        return __atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);                    \
    }                                                                         \
    static inline bool shmkit_atomic_compare_exchange_##name(T *p, T *e, T d) \
    {                                                                         \
        return __atomic_compare_exchange_n(p, e, d, 0, __ATOMIC_SEQ_CST,      \
                                           __ATOMIC_SEQ_CST);                 \
    }

SHMKIT__ATOMIC_OPS(int64_t, i64)
SHMKIT__ATOMIC_OPS(uint64_t, u64)
SHMKIT__ATOMIC_OPS(int32_t, i32)
SHMKIT__ATOMIC_OPS(uint32_t, u32)

#undef SHMKIT__ATOMIC_OPS

#ifdef __cplusplus
}
#endif

#endif
