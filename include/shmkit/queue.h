/* shmkit/queue.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * A named, bounded, multi-producer multi-consumer queue of variable-size
 * messages in one block.
 *
 * Layout (kind "queue", magic "SKQU", version 2; version 1 is still
 * attached and used, see "Killed peers"):
 *
 *   offset 0    header: magic, version, capacity (ring bytes), most
 *               messages, ring offset, creator's PID namespace, where the
 *               liveness slots are and how many (version 2)
 *   offset 64   the queue's robust shmkit_mutex
 *   offset 128  ring state (head, tail, live records), under the mutex
 *   offset 192  futex words and waiter counts (atomics, no lock)
 *   offset 256  version 2: 120 liveness slots of 32 bytes (a robust futex
 *               word, the holder's pid and start time, its robust list
 *               entry); version 1: the ring
 *   offset 4096 version 2: the ring: records of a 16-byte header (length,
 *               state, owner pid, owner start time) and the message,
 *               padded to 16 bytes; a message never wraps, so it is
 *               contiguous and can be written and read in place.
 * Queues are created as version 2; a library that knows only version 1
 * refuses them with SHMKIT_EVERSION.
 *
 * Order. Consumers take the oldest committed message in the ring, and a
 * message still being written (reserved, not committed) holds back only
 * the later messages of the same process: one producer's messages leave
 * in the order it reserved them, and a slow producer does not stall the
 * others. (So a thread that reserves two messages and commits the second
 * first will not see the second taken before the first is committed.)
 *
 * The ring is reserved (posix_fallocate: a full /dev/shm is -ENOSPC at
 * create, never a SIGBUS later) and prefaulted at create and at attach,
 * so no message pays a page fault. A forked child, which inherits the
 * handle but not its page table entries, maps the ring a chunk at a time
 * (1/512 of the ring, at least 64 KiB) the first time a record it writes
 * or reads lies in one, before touching it: no message pays a page fault
 * there either, its first call pays for a chunk or two (~20 us), not the
 * whole ring (~4 ms for 16 MiB), and its first lap round the ring pays
 * for the rest as it goes.
 *
 * Waiting. Blocking calls sleep on a futex in the block (no polling: a
 * wake-up is what ends a sleep, except in the cases "Waking on a death"
 * lists, which re-check in slices; a sleep of a call that moves messages
 * - all but join - also ends once a second to look for dead peers, a net
 * under those wake-ups) and
 * take an absolute CLOCK_MONOTONIC deadline (shmkit_deadline()): NULL
 * waits for ever; SHMKIT_NOWAIT (or any deadline already past when the
 * call starts) never sleeps and fails with -EAGAIN when it would have to;
 * a deadline that passes while sleeping gives -ETIMEDOUT. A signal does
 * not end the wait (EINTR is retried) unless the handle was made
 * interruptible (shmkit_queue_set_interruptible()), then -EINTR. Closing
 * the handle wakes its sleepers in this process with SHMKIT_ECLOSED.
 * The deadline bounds the wait for the queue's mutex too: a call with a
 * deadline waits for it until the deadline, but at least 0.1 s (holders
 * keep it for microseconds), then gives -EAGAIN (NOWAIT) or -ETIMEDOUT;
 * so a stopped holder, or a mutex word a hostile peer wrote naming a live
 * thread, cannot keep such a call for ever. Calls without a deadline
 * (commit, cancel, release, a NULL deadline) wait as long as it is held.
 *
 * Killed peers (the rules):
 *   - a producer killed between reserve and commit: its message was never
 *     visible and is dropped; its space is reclaimed. Nothing torn is ever
 *     delivered.
 *   - a consumer killed between peek and release (also inside get or
 *     get_many, before the whole batch is in its buffer): its message is
 *     given back to the queue and delivered again (at-least-once for
 *     killed consumers, exactly once otherwise). It keeps its place in
 *     the ring, but consumers take the messages ready after it first and
 *     give it back only when nothing else is ready (or a waiter learns of
 *     the death), so it may come after messages that were behind it. Once get or get_many has
 *     copied its batch out and frees it, the messages it freed are the
 *     caller's, as after the call returned. Only a process known to
 *     be gone gives its records back: one whose main thread exited while
 *     others run is alive, and so is one whose /proc entry cannot be read
 *     (EMFILE, EACCES).
 *   - a process killed holding the queue's mutex: the next locker repairs
 *     the counters from the ring (owner-death protocol of shmkit_mutex).
 *   Dead owners are found by pid plus process start time (a reused pid
 *   does not count as alive) when a waiter finds a record of another
 *   process in flight in its way. Records of this process are never
 *   reaped: a thread of it still owns them.
 *
 * Waking on a death (version 2). Before a handle makes its first record
 * (reserve, put, peek, get...), the process takes a liveness slot in the
 * queue for it: a robust futex word held by a library thread,
 * "shmkit-live", one per process, started then (all signals blocked; it
 * holds the slots of every handle and frees each at close, before the
 * unmap; once the process holds no slot - its last such handle closed -
 * the next fork stops it first, and a later record starts it again). When the process dies (SIGKILL included) or
 * execs, the kernel marks the word OWNER_DIED and wakes a waiter. A
 * waiter blocked by another process's record sleeps on the queue's
 * futex and on the owners' slot words at once (futex_waitv, Linux 5.16+)
 * with its own deadline: woken by a death, it waits until that
 * process is gone with all its threads (a pidfd), reaps, and wakes the
 * other waiters of that slot. Such a sleep still ends once a second to
 * look at its owners the slow way (/proc), a net under the wake for a
 * death the kernel could not mark (a process killed while it was linking
 * its slot); a live owner costs one look a second. Every sleeping
 * waiter looks so once a second even with no owner to watch: a message
 * may be lent after its look (the one in a producer's way, or the one a
 * put's wake-up took to another consumer) and the borrower die.
 * Re-checking in slices (1 ms doubling to
 * 100 ms, reaping when a slice ends) is left only where no slot can tell:
 * a version-1 queue, an owner that found the table full (120 slots: one
 * per process that made a record, shared by its handles of the queue;
 * processes with no record hold none), an
 * owner that holds its record after closing its handle, one whose slot a
 * peer scribbled on (a slot is not trusted unless its word names a thread
 * of its pid), Linux before 5.16 or a sandbox that refuses futex_waitv
 * (any error: the handle waits in slices from then on), and an owner that
 * exec'd (re-checked every 0.5 s). The
 * owner's liveness is checked once at the start of such a wait, so an
 * owner already dead is reaped at once.
 * Fork: a child has no "shmkit-live" thread and takes its own slots for
 * its records (the parent's stay the parent's); the thread appears only
 * in processes that called reserve, put, peek or get (even one that found
 * the queue empty) on a version-2 queue: create and attach start none.
 *
 * Hostile bytes. Every position, length and state read from the block is
 * checked against the ring before use; an impossible value gives
 * SHMKIT_ECORRUPT, never a crash, an access outside the block or an
 * unbounded loop.
 *
 * Python (shmkit.Queue) on the same queue: its get decodes a message that
 * starts with the 4 bytes "SKV1" (its plain-value codec) or "SKP5" (a
 * pickle frame) and is well formed; any other message comes back to
 * Python as bytes. A C producer whose messages must reach Python as bytes
 * must not start one with either (Python's peek() reads messages raw).
 *
 * Threads: a handle may be used by several threads at once (each call
 * takes the queue's mutex); close it only when no other thread uses it
 * except those blocked in waits (they are woken with SHMKIT_ECLOSED).
 * The library starts one thread of its own, "shmkit-live" (see "Waking on
 * a death"): programs that fork while a handle that made a record is open
 * are multi-threaded (CPython 3.12+ warns at os.fork() then, a
 * DeprecationWarning); once those handles are closed, fork stops and joins
 * the idle thread in its prepare handler, and CPython, which counts
 * threads after the fork, does not warn.
 */
#ifndef SHMKIT_QUEUE_H
#define SHMKIT_QUEUE_H

#include <sys/uio.h>
#include <time.h>

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmkit_queue shmkit_queue;

#define SHMKIT_QUEUE_HEADER 256  /* bytes of the fixed header; the ring's
                                    offset in a version-1 queue */
#define SHMKIT_QUEUE_RING_V2 4096 /* the ring's offset in a version-2 queue
                                     (liveness slots in between) */
#define SHMKIT_QUEUE_RECORD 16   /* bytes of a record's header */
#define SHMKIT_QUEUE_ALIGN 16    /* records and messages are so aligned */

/* A deadline that has always passed: never sleep. */
SHMKIT_API extern const struct timespec shmkit_nowait;
#define SHMKIT_NOWAIT (&shmkit_nowait)

/* A deadline for a first, cheap attempt (put, put_many, reserve, get,
 * get_many, peek): like SHMKIT_NOWAIT, -EAGAIN when the call would have
 * to wait, but also when another thread or process holds the queue's
 * mutex at that moment, and without re-checking dead owners. For bindings
 * that try a call before giving up a lock of their own (Python's GIL) and
 * wait, with a real deadline, only when the attempt fails. Its -EAGAIN
 * records no error message (shmkit_last_error() keeps the previous one). */
SHMKIT_API extern const struct timespec shmkit_queue_try;
#define SHMKIT_QUEUE_TRY (&shmkit_queue_try)

/* A snapshot of a queue, for tools and qsize(). */
typedef struct shmkit_queue_info {
    unsigned version;          /* layout version */
    size_t capacity;           /* ring bytes */
    size_t max_message;        /* largest message that can ever fit */
    size_t max_messages;       /* most messages at once; 0: bytes only */
    size_t depth;              /* committed messages waiting for a consumer */
    size_t reserved;           /* reservations not yet committed */
    size_t loaned;             /* peeked messages not yet released */
    size_t bytes_used;         /* ring bytes in use (headers, padding too) */
    unsigned waiting_producers;
    unsigned waiting_consumers;
    uint64_t unfinished;       /* task count (shmkit_queue_task_add) */
    uint64_t pid_ns;           /* creator's PID namespace, or 0 */
    unsigned slots;            /* liveness slots (0: a version-1 queue) */
    unsigned slots_held;       /* slots held by live processes' handles */
    unsigned attached;         /* processes holding them (those that made
                                  a record: producers and consumers) */
} shmkit_queue_info;

/* One liveness slot in use, as shmkit_queue_slots() reports it. */
typedef struct shmkit_queue_slot {
    unsigned index;            /* in the table */
    int pid;                   /* holding process (0: being taken) */
    unsigned tid;              /* its "shmkit-live" thread */
    bool died;                 /* the holder died; not yet reused */
    bool waiters;              /* a waiter asked to be woken at its death */
} shmkit_queue_slot;

/*
 * Creates the queue `name` (NULL: a generated "psm_" name) holding up to
 * `capacity` bytes of ring (rounded up to 16; each message takes its
 * length rounded up to 16 plus a 16-byte record header) and, if
 * `max_messages` is not 0, at most that many messages at once. The
 * largest message is capacity - 16 bytes (shmkit_queue_max_message()).
 * A message never wraps: when it does not fit before the ring's end, the
 * rest of the ring is padded and it goes to the start. A put into an
 * empty ring also starts over at the ring's start (so a consumer that
 * keeps up uses the first messages' worth of a big ring); never while any
 * record is being written, waits or is loaned, so a producer may keep as
 * many reservations, and a consumer as many loans, as the ring holds
 * messages.
 * `flags` as for shmkit_block_create (SHMKIT_TRACK, SHMKIT_REFCOUNT,
 * SHMKIT_HUGEPAGES, ...); SHMKIT_RESERVE is always implied and the ring
 * is prefaulted (by attach too; a forked child maps it a chunk at a time
 * as its records reach each chunk, see above). Published whole (built under a temporary name, renamed
 * into place). Returns 0, -EEXIST (name taken), -EINVAL (capacity below
 * 32 bytes or above 2^48, SHMKIT_RDONLY, bad name), -ENOSPC, or the block
 * layer's errors; nothing is left behind on failure. On success *out owns
 * the handle.
 */
SHMKIT_API int shmkit_queue_create(shmkit_queue **out, const char *name,
                                   size_t capacity, size_t max_messages,
                                   unsigned flags);

/*
 * Attaches to the queue `name` and prefaults its ring. SHMKIT_EKIND if
 * the block is not a queue, SHMKIT_EVERSION, SHMKIT_ECORRUPT,
 * SHMKIT_ETRUNCATED for a bad header or a block a peer truncated (the
 * header is read with pread, never through the mapping, so that is a
 * refusal, not a SIGBUS), SHMKIT_ENAMESPACE if it was made in
 * another PID namespace, -EINVAL with SHMKIT_RDONLY (taking a message
 * writes to the ring), and the block layer's errors (-ENOENT, ...).
 * SHMKIT_REFCOUNT and SHMKIT_ANYUSER work as for blocks.
 */
SHMKIT_API int shmkit_queue_attach(shmkit_queue **out, const char *name,
                                   unsigned flags);

/*
 * Closes the handle: wakes this handle's sleeping callers (they return
 * SHMKIT_ECLOSED), waits for them to leave, unmaps. Never unlinks (except
 * as SHMKIT_REFCOUNT says). Reservations and loans this process still
 * holds stay in the ring until the process exits, then are reaped by the
 * rules above. NULL is fine.
 */
SHMKIT_API int shmkit_queue_close(shmkit_queue *q);

/*
 * Wakes this handle's sleeping callers (they return SHMKIT_ECLOSED),
 * waits until they have left, and makes every later blocking call on the
 * handle fail with SHMKIT_ECLOSED; the handle stays allocated (non-blocking
 * calls such as commit and release still work) until shmkit_queue_close.
 * For bindings that must stop waiters before the last user lets go.
 */
SHMKIT_API void shmkit_queue_shutdown(shmkit_queue *q);

/*
 * Gives back the liveness slot the handle's first record took ("Waking on
 * a death" above), as shmkit_queue_close does before it unmaps, and keeps
 * the handle open: for a binding whose handle will make no more records
 * but still counts tasks (task_done, join) and reads stat. Call it with
 * none of the handle's records in flight (reservations, loans) and no
 * call making one; once the process holds no slot, the next fork stops
 * "shmkit-live". A later record takes a slot again. Nothing if the handle
 * holds none (a version-1 queue, no record yet, or given back already).
 */
SHMKIT_API void shmkit_queue_leave(shmkit_queue *q);

/* Removes the queue's name (as shmkit_block_unlink). */
SHMKIT_API int shmkit_queue_unlink(shmkit_queue *q);

/* The underlying block (owned by the queue handle). */
SHMKIT_API shmkit_block *shmkit_queue_block(shmkit_queue *q);

/* The largest message this queue can hold. */
SHMKIT_API size_t shmkit_queue_max_message(const shmkit_queue *q);

/* With `on`, a signal ends a blocking call with -EINTR (for callers that
 * must run signal handlers, as Python does); off (the default) retries.
 * Only a signal that lands while the call sleeps ends it: one handled just
 * before the sleep begins (as with read(2) and a handler that sets a
 * flag) does not, and the call sleeps on. A caller that must react to
 * such a flag promptly waits in slices: a deadline some tens of
 * milliseconds away, then its flag checked after each -ETIMEDOUT (the
 * Python binding does so, 50 ms at a time). */
SHMKIT_API void shmkit_queue_set_interruptible(shmkit_queue *q, bool on);

/* ---- copy in, copy out ----------------------------------------------- */

/*
 * Copies len bytes (0 allowed) into the queue as one message, waiting
 * for room until `deadline`. -EMSGSIZE if len exceeds the largest
 * message (never waits then), -EAGAIN / -ETIMEDOUT / -EINTR /
 * SHMKIT_ECLOSED as in "Waiting", SHMKIT_ECORRUPT for a hostile block,
 * and the mutex's SHMKIT_ENOTRECOVERABLE.
 */
SHMKIT_API int shmkit_queue_put(shmkit_queue *q, const void *data,
                                size_t len, const struct timespec *deadline);

/*
 * Takes the oldest committed message, copying it into buf (buflen bytes)
 * and its length into *len, waiting until `deadline`. -EMSGSIZE if it
 * does not fit: the message stays in the queue and *len says how much
 * room it needs. SHMKIT_ECORRUPT if a peer gave the message back to the
 * queue while it was being copied (only a peer that wrongly judged this
 * process dead, or a hostile one, does): it stays queued. Other errors as
 * for put.
 */
SHMKIT_API int shmkit_queue_get(shmkit_queue *q, void *buf, size_t buflen,
                                size_t *len, const struct timespec *deadline);

/* The most messages a batch call (put_many's pass, get_many, peek_many)
 * moves under one hold of the queue's mutex. */
#define SHMKIT_QUEUE_BATCH 256

/*
 * Puts msgs[0..n) in order, taking the queue's mutex once for as many as
 * fit at a time (at most SHMKIT_QUEUE_BATCH) and waking consumers once
 * per batch. *done (may be NULL)
 * receives how many were put; they are committed even when the call
 * fails part-way (by the deadline: -EAGAIN/-ETIMEDOUT). -EMSGSIZE (none
 * put) if any message exceeds the largest message.
 */
SHMKIT_API int shmkit_queue_put_many(shmkit_queue *q, const struct iovec *msgs,
                                     size_t n, size_t *done,
                                     const struct timespec *deadline);

/*
 * Takes up to `max` messages at once (at most SHMKIT_QUEUE_BATCH), waiting
 * until `deadline` only for the first: copies them one after another (each 16-byte aligned) into
 * buf, and sets msgs[i] to where message i landed and its length, *got to
 * how many. -EMSGSIZE if even the first does not fit in buflen (it stays
 * queued; msgs[0].iov_len says its length). The batch's first 16 KiB are
 * copied under the queue's mutex; a batch that ends there has its space
 * freed there and then. Any further messages are taken (as loans),
 * copied after the unlock, then freed together with the first ones. A
 * process killed inside the call, before the last copy, gives the whole
 * batch back (see "Killed peers").
 */
SHMKIT_API int shmkit_queue_get_many(shmkit_queue *q, void *buf,
                                     size_t buflen, struct iovec *msgs,
                                     size_t max, size_t *got,
                                     const struct timespec *deadline);

/* ---- zero copy --------------------------------------------------------- */

/*
 * Reserves room for a message of up to len bytes in the ring and sets
 * *ptr to it (16-byte aligned, prefaulted), waiting until `deadline`.
 * Write the message in place, then shmkit_queue_commit() it (or
 * shmkit_queue_cancel()). Until then no consumer sees it; if this
 * process dies first, the reservation is dropped. Errors as for put.
 */
SHMKIT_API int shmkit_queue_reserve(shmkit_queue *q, size_t len, void **ptr,
                                    const struct timespec *deadline);

/*
 * Publishes the reserved message at ptr with its final length len (at
 * most what was reserved; the rest goes back to the ring). -EINVAL if ptr
 * is not a reservation of this process or len is larger.
 */
SHMKIT_API int shmkit_queue_commit(shmkit_queue *q, void *ptr, size_t len);

/* Drops the reservation at ptr unpublished. -EINVAL as for commit. */
SHMKIT_API int shmkit_queue_cancel(shmkit_queue *q, void *ptr);

/*
 * Takes the oldest committed message without copying: *ptr points at it
 * in the ring, *len is its length; read it in place, then
 * shmkit_queue_release() it. Until then its space is not reused; if this
 * process dies first (all its threads), the message is given back to the
 * queue. Waits until `deadline`; errors as for get.
 */
SHMKIT_API int shmkit_queue_peek(shmkit_queue *q, const void **ptr,
                                 size_t *len, const struct timespec *deadline);

/* Frees the peeked message at ptr. -EINVAL if ptr is not a message this
 * process peeked, or no longer is (a peer gave it back meanwhile: it is
 * left as it is, never freed under its new reader). */
SHMKIT_API int shmkit_queue_release(shmkit_queue *q, const void *ptr);

/*
 * shmkit_queue_peek for up to `max` messages at once (at most
 * SHMKIT_QUEUE_BATCH), waiting until `deadline` only for the first:
 * msgs[i] points at message i in the ring and says its length, *got says
 * how many. Each is a loan as from peek (read it in place, remembering
 * that a hostile peer may change it meanwhile; give it back with
 * shmkit_queue_release or shmkit_queue_release_many). Errors as for get.
 * Give loans back promptly: until the oldest one is released, every
 * consumer's take walks past the records after it (Python's get_many
 * copies its batch out for that reason: 2 -> 2 consumers holding 100
 * loans while decoding paid 125-195 ns a message instead of ~80).
 */
SHMKIT_API int shmkit_queue_peek_many(shmkit_queue *q, struct iovec *msgs,
                                      size_t max, size_t *got,
                                      const struct timespec *deadline);

/* Frees the n peeked messages msgs[0..n) (their iov_base as peek_many set
 * it), waking producers once per SHMKIT_QUEUE_BATCH. -EINVAL, after
 * freeing the others, if one of them is not (or no longer) a message this
 * process peeked, as for shmkit_queue_release. */
SHMKIT_API int shmkit_queue_release_many(shmkit_queue *q,
                                         const struct iovec *msgs, size_t n);

/* ---- task counting (what JoinableQueue needs) ---------------------------- */

/* Adds n unfinished tasks (a producer calls it before putting). */
SHMKIT_API int shmkit_queue_task_add(shmkit_queue *q, size_t n);

/* Marks one task done; when none is left, wakes shmkit_queue_join()
 * callers. -EOVERFLOW if there was none (Python: ValueError). */
SHMKIT_API int shmkit_queue_task_done(shmkit_queue *q);

/* Waits until the task count is 0 (deadline and errors as in "Waiting").
 * A consumer killed between get and task_done leaves its task counted:
 * join then waits for its deadline. */
SHMKIT_API int shmkit_queue_join(shmkit_queue *q,
                                 const struct timespec *deadline);

/* ---- state ------------------------------------------------------------- */

/* Fills *info under the queue's mutex (exact at that moment); -EAGAIN if
 * the mutex stays held for 0.1 s (see "Waiting"). */
SHMKIT_API int shmkit_queue_stat(shmkit_queue *q, shmkit_queue_info *info);

/*
 * Recognises a queue in the bytes [data, data + size) (a mapped block,
 * read-only is fine) and fills *info (may be NULL) without taking the
 * mutex: a best-effort snapshot. SHMKIT_EKIND (not a queue),
 * SHMKIT_EVERSION, SHMKIT_ECORRUPT, SHMKIT_ETRUNCATED. Copies before it
 * checks; safe on hostile bytes.
 */
SHMKIT_API int shmkit_queue_parse(const void *data, size_t size,
                                  shmkit_queue_info *info);

/*
 * Lists the liveness slots in use of the queue in [data, data + size)
 * (as shmkit_queue_parse: no lock, copies, safe on hostile bytes): fills
 * out[0..max) and returns how many are in use (more than max: only max
 * filled), 0 for a version-1 queue, or the codes of shmkit_queue_parse.
 */
SHMKIT_API int shmkit_queue_slots(const void *data, size_t size,
                                  shmkit_queue_slot *out, size_t max);

#ifdef __cplusplus
}
#endif

#endif
