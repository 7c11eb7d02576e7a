/*
 * live.h - liveness slots: robust futex words in shared memory that a
 * process holds for as long as it lives, so that its death wakes whoever
 * waits for it (the queue's waiters blocked by its in-flight records).
 *
 * A slot's word is a robust futex (the owner thread's id | WAITERS |
 * OWNER_DIED). One library thread per process, "shmkit-live" (created the
 * first time the process takes a slot, all signals blocked; a fork finding
 * it holding no slot stops it first, and the next take starts it again),
 * holds every slot the process takes: the slots are entries of that
 * thread's own robust list (its own set_robust_list head), so when the
 * process dies - SIGKILL included - or execs, the kernel marks each word
 * OWNER_DIED and wakes one of its waiters. Callers link and unlink slots
 * on that list themselves, one at a time, under a process-wide mutex (no
 * round trip to the thread, which only sleeps); a slot is dropped before
 * the memory holding it is unmapped, so the list never names unmapped
 * memory.
 *
 * Rules of a slot (any process may read it, so nothing in it is trusted):
 *   - pid is 0 whenever the word is 0, and a slot is taken only by turning
 *     its word from 0 to a thread id (so a reader that finds pid P after
 *     it read a live word knows the word was P's when it read pid);
 *   - the owner clears pid, then the word; the next taker finds it free;
 *   - a slot whose owner died (OWNER_DIED set, or pid gone) is cleared by
 *     a taker that runs out of free slots: pid first (by compare and swap,
 *     so a new owner's pid is never wiped), then the word.
 *
 * After fork the child has no helper thread and holds no slot: the
 * parent's slots stay the parent's; a child takes its own when it needs
 * them (pthread_atfork resets the state).
 */
#ifndef SHMKIT_LIVE_H
#define SHMKIT_LIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/internal.h"

/* One slot, in shared memory. */
struct shmkit__live_slot {
    uint32_t word;      /* robust futex: holder TID | WAITERS | OWNER_DIED */
    int32_t pid;        /* owning process, 0 while free */
    uint32_t start;     /* its start time (low 32 bits of proc_start) */
    uint32_t reserved0; /* zero */
    union {
        void *next;     /* robust list entry: written by the holder only */
        uint64_t next64;
    } u;
    uint64_t reserved1; /* zero */
};
_Static_assert(sizeof(struct shmkit__live_slot) == 32, "live slot");

/* A handle's claim on a slot, kept in process memory (one per handle).
 * The handles of one process on one queue share one slot: each holds it
 * through its own mapping (`slot`), and it stays linked while any does. */
struct shmkit__live_hold {
    struct shmkit__live_slot *slot; /* NULL: none (full table, no thread) */
    pid_t pid;                      /* process that tried; 0 never tried */
    struct shmkit__live_hold *next; /* the slot's other holders (live.c) */
};

/*
 * Makes sure this process (pid, start) holds a slot of slots[0..n) for
 * `hold`: nothing if it already tried (hold->pid == pid); else shares the
 * slot this process holds in that table through another handle (another
 * mapping of the same queue), or takes a free one (or one whose owner
 * died) onto the helper thread's robust list, starting the thread if
 * need be. Afterwards hold->pid == pid; hold->slot is NULL if the
 * table was full or the thread could not start (the caller's records then
 * wake nobody when it dies: waiters fall back to timed re-checks). Safe
 * from any thread.
 */
SHMKIT__HIDDEN void shmkit__live_hold(struct shmkit__live_hold *hold,
                                      struct shmkit__live_slot *slots,
                                      unsigned n, pid_t pid, uint32_t start);

/* Drops `hold`'s share of its slot, if this process took it (not a
 * parent before fork): the last holder's slot is unlinked from the helper
 * thread's robust list and freed when this returns; a slot linked
 * through `hold`'s mapping but still held by another handle is relinked
 * through that one's. Call before unmapping the slot's memory. */
SHMKIT__HIDDEN void shmkit__live_release(struct shmkit__live_hold *hold,
                                         pid_t pid);

/* What a waiter finds for the owner (pid, start) of a record. */
enum shmkit__live_state {
    SHMKIT__LIVE_NONE = 0, /* no slot names it: check liveness otherwise */
    SHMKIT__LIVE_ARMED,    /* sleep on *word while it holds *val */
    SHMKIT__LIVE_DIED,     /* its slot (*word) says it died (OWNER_DIED) */
};

/*
 * Finds the slot of (pid, start) in slots[0..n), and, if its holder
 * lives, sets WAITERS in its word so that the kernel wakes a sleeper when
 * the holder dies: then *word and *val are what to sleep on. Re-checks
 * pid and start after that, so a slot freed and taken again meanwhile is
 * not mistaken for the owner's. A word whose thread is not one of pid's
 * (a scribbled slot) is not trusted: NONE.
 */
SHMKIT__HIDDEN enum shmkit__live_state
shmkit__live_arm(struct shmkit__live_slot *slots, unsigned n, pid_t pid,
                 uint32_t start, uint32_t **word, uint32_t *val);

/*
 * After a sleep on a word shmkit__live_arm gave for (pid, start): true if
 * the slot says that owner died (OWNER_DIED while it still names pid and
 * start). A mark on a slot that was freed and taken again by another
 * process, which died since, is not the owner's death.
 */
SHMKIT__HIDDEN bool shmkit__live_died(const uint32_t *word, pid_t pid,
                                      uint32_t start);

/* Wakes every sleeper of a slot word (after an owner death: the kernel
 * wakes one). */
SHMKIT__HIDDEN void shmkit__live_wake_all(uint32_t *word);

/* The helper thread's id in this process, 0 if none runs (tests). */
SHMKIT__HIDDEN int shmkit__live_thread_id(void);

#endif
