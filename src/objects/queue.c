/*
 * queue.c - a named bounded MPMC queue of variable-size messages in one
 * block (see include/shmkit/queue.h for the layout and the rules).
 *
 * The ring holds records at 16-byte aligned positions. Positions are
 * absolute byte counts (uint64_t, never wrapping in practice); a record's
 * offset in the ring is its position modulo the ring size. head is the
 * oldest record still holding space, tail where the next one goes; every
 * byte in [head, tail) belongs to exactly one record, and a record never
 * crosses the end of the ring (a PAD record fills the gap instead).
 *
 * Record states and who moves them:
 *   RESERVED -> READY     commit (lock-free, the owner only)
 *   RESERVED -> DONE      cancel, or reaped after the owner died (locked)
 *   READY    -> TAKEN     peek/get (locked)
 *   READY    -> DONE      get/get_many, copied out under the mutex (locked);
 *                         a run of them from head is freed by moving head
 *                         past it instead, unmarked
 *   TAKEN    -> DONE      release (lock-free, the owner only)
 *   TAKEN    -> READY     reaped after the owner died: given back (locked)
 * DONE and PAD records are reclaimed when head reaches them.
 *
 * Every change under the mutex is ordered so that a process killed at any
 * point leaves a ring that a walk from head to tail can still parse; the
 * counters beside it (count) are recomputed by the next locker on owner
 * death.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/os.h"
#include "objects/kinds.h"
#include "objects/queue_internal.h"
#include "sync/live.h"
#include "sync/sync_internal.h"

#define QUEUE_MAGIC 0x55514b53u /* "SKQU" read as little-endian */
#define QUEUE_VERSION 2      /* what create writes; 1 is still read */
#define LIVE_SLOTS 120       /* liveness slots of a version-2 queue */
#define SLOTS_AT SHMKIT_QUEUE_HEADER
#define RING_AT_V2 SHMKIT_QUEUE_RING_V2
#define QUEUE_MIN_RING 32
#define QUEUE_MAX_RING (UINT64_C(1) << 48)
#define REC SHMKIT_QUEUE_RECORD
#define HELD_BACK_MAX 16 /* producers with a reservation a scan looks past */
#define MAP_CHUNKS 512   /* a forked child populates the ring in chunks */
#define MAP_CHUNK_MIN (UINT64_C(64) << 10)
#define MAP_CALM 64 /* records found mapped in a row: stop guessing ahead */
#define BATCH SHMKIT_QUEUE_BATCH /* messages a batch call moves per locked pass */
/* get and get_many copy out up to this many bytes of a batch's first
 * messages under the mutex and free their records there and then
 * (READY -> DONE, head moved past them); the rest of the batch is taken
 * as loans and copied after the unlock, as before. A copy of a few KiB
 * under the mutex costs less than what it saves: every record's TAKEN
 * marks and its compare-and-swap to DONE after, and, with two consumers,
 * the other's takes walking past this one's taken records (head stops at
 * the first record still taken). Python put_many/get_many of 100 small
 * items, 2 producers -> 2 consumers, the consumers' thread CPU per
 * message: 94 -> 78 and 103 -> 80.5 ns (/tmp/qbatch/abm.py, 13 and 17
 * interleaved rounds); 1 -> 1 unchanged (72 -> 70, 74 -> 74). A consumer
 * killed while it copies holds the mutex: the records are still READY,
 * and the owner-death repair leaves them to the next consumer. A batch
 * with loans after its copied part is freed as a whole after its last
 * copy (the copied records are taken too): a consumer killed while it
 * copies the loans gives all of it back, as before this copy existed.
 * tests/test_queue_copykill.c kills consumers inside both copies. */
#define LOCKED_COPY_MAX (16u << 10)
#define COPIED_MOVED ((size_t)1 << (sizeof(size_t) * 8 - 1))

enum rec_state {
    REC_RESERVED = 0x52u, /* 'R' */
    REC_READY = 0x59u,    /* 'Y' */
    REC_TAKEN = 0x54u,    /* 'T' */
    REC_DONE = 0x44u,     /* 'D' */
    REC_PAD = 0x50u,      /* 'P' */
};

/* A record's header in the ring. state is atomic; len, pid and start are
 * written under the mutex (or by the owner before it publishes). */
struct rec {
    uint32_t len;   /* message bytes (PAD: bytes after this header) */
    uint32_t state; /* enum rec_state */
    int32_t pid;    /* owner while RESERVED or TAKEN */
    uint32_t start; /* owner's start time, low 32 bits */
};
_Static_assert(sizeof(struct rec) == REC, "record header");

struct queue_header {
    /* Written before the block has its name, read-only afterwards. */
    uint32_t magic;        /* QUEUE_MAGIC */
    uint16_t version;      /* 1 or 2 (QUEUE_VERSION) */
    uint16_t reserved0;    /* zero */
    uint32_t flags;        /* none yet: zero */
    uint32_t max_msgs;     /* 0: bounded by bytes only */
    uint64_t ring_offset;  /* v1: SHMKIT_QUEUE_HEADER, v2: RING_AT_V2 */
    uint64_t ring_size;    /* multiple of 16, >= QUEUE_MIN_RING */
    uint64_t pid_ns;       /* creator's PID namespace inode, 0 unknown */
    uint32_t slots_offset; /* v1: 0; v2: SLOTS_AT (the liveness slots) */
    uint32_t nslots;       /* v1: 0; v2: LIVE_SLOTS */
    uint8_t reserved[16];  /* zero */
    shmkit_mutex lock;     /* at 64 */
    /* At 128, under `lock`. */
    uint64_t head;         /* oldest record's position */
    uint64_t tail;         /* next record's position */
    uint32_t count;        /* records in [head, tail) that are not PAD */
    uint32_t reserved1;
    uint8_t reserved2[40];
    /* At 192, atomics, no lock. */
    uint32_t data_seq;     /* bumped when a message becomes READY */
    uint32_t space_seq;    /* bumped when head moves */
    uint32_t wait_consumers;
    uint32_t wait_producers;
    uint64_t unfinished;   /* tasks added and not yet done (JoinableQueue) */
    uint32_t tasks_seq;    /* bumped when unfinished reaches 0 */
    uint32_t wait_joiners;
    uint8_t reserved3[32];
};
_Static_assert(offsetof(struct queue_header, lock) == 64, "lock");
_Static_assert(offsetof(struct queue_header, head) == 128, "state");
_Static_assert(offsetof(struct queue_header, data_seq) == 192, "futexes");
_Static_assert(offsetof(struct queue_header, unfinished) == 208, "tasks");
_Static_assert(sizeof(struct queue_header) == SHMKIT_QUEUE_HEADER, "size");
_Static_assert(SLOTS_AT + LIVE_SLOTS * sizeof(struct shmkit__live_slot) ==
                   RING_AT_V2, "v2: the slots fill the first page");

struct shmkit_queue {
    shmkit_block *block;
    struct queue_header *hdr;
    unsigned char *ring;
    struct shmkit__live_slot *slots; /* v2 (NULL: v1, or a view) */
    unsigned nslots;
    struct shmkit__live_hold live;   /* this process's slot for its records */
    bool no_waitv;                   /* futex_waitv failed (atomic) */
    uint64_t rs;          /* ring size, validated copy */
    uint32_t max_msgs;    /* validated copy */
    unsigned version;     /* validated copy */
    bool interruptible;
    uint32_t closing;     /* atomic: close has begun */
    uint32_t active;      /* atomic: callers inside blocking calls */
    uint32_t spin_data;   /* atomic: ns a consumer spins before sleeping */
    uint32_t spin_space;  /* atomic: ns a producer spins before sleeping */
    uint32_t spin_lock;   /* atomic: ns a caller watches a busy mutex */
    bool seq_first_data;  /* atomic: a take reads data_seq first (seq_first) */
    bool seq_first_space; /* atomic: a reserve reads space_seq first */
    pid_t mapped_for;     /* atomic: the process whose page tables map it all */
    pid_t map_pid;        /* atomic: the process map_bits are for */
    uint32_t map_done;    /* atomic: chunks of map_bits set */
    uint32_t map_chunks;  /* chunks of the ring (at most MAP_CHUNKS) */
    unsigned map_shift;   /* a chunk is 1 << map_shift bytes */
    uint64_t map_lap[2];  /* atomic: a lap's start near tail [0], head [1] */
    uint32_t map_calm;    /* atomic: records in a row found mapped */
    uint64_t map_bits[MAP_CHUNKS / 64]; /* atomic: chunk k populated */
};

const struct timespec shmkit_nowait = {0, 0};
const struct timespec shmkit_queue_try = {0, 0};

/* ---- small helpers ----------------------------------------------------- */

static inline uint64_t round16(uint64_t n)
{
    return (n + 15) & ~(uint64_t)15;
}

/* This process's pid and start time, refreshed after fork. The pid is
 * cached at the first call; the start time once it could be read. A read
 * that fails (no descriptor left, no /proc in a sandbox) leaves start 0,
 * "cannot tell", which peers take for alive, and is tried again at most
 * every SELF_RETRY_NS: without /proc every call tried (getpid, a failed
 * open, kill) several times, ~30 us a put+get pair instead of ~0.1. */
#define SELF_RETRY_NS 100000000ull /* 100 ms */

static pid_t self_pid;
static uint32_t self_start;
static int self_known;       /* self_start was read */
static uint64_t self_retry;  /* CLOCK_MONOTONIC ns: no read before this */

static void self_reset(void)
{
    self_pid = 0;
    self_known = 0;
    self_retry = 0;
}

static void self_init(void)
{
    pthread_atfork(NULL, NULL, self_reset);
}

static uint64_t mono_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void self_get(pid_t *pid, uint32_t *start)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pid_t p = __atomic_load_n(&self_pid, __ATOMIC_ACQUIRE);
    uint64_t st = 0, now;

    if (__builtin_expect(p && __atomic_load_n(&self_known, __ATOMIC_ACQUIRE),
                         1)) {
        *pid = p;
        *start = __atomic_load_n(&self_start, __ATOMIC_RELAXED);
        return;
    }
    if (!p) {
        pthread_once(&once, self_init);
        p = getpid();
    }
    now = mono_ns();
    if (now >= __atomic_load_n(&self_retry, __ATOMIC_RELAXED)) {
        if (shmkit__os.proc_start(p, &st) == 0) {
            __atomic_store_n(&self_start, (uint32_t)st, __ATOMIC_RELAXED);
            __atomic_store_n(&self_known, 1, __ATOMIC_RELEASE);
        } else {
            st = 0;
            __atomic_store_n(&self_retry, now + SELF_RETRY_NS,
                             __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&self_pid, p, __ATOMIC_RELEASE);
    *pid = p;
    *start = (uint32_t)st;
}

static bool timespec_passed(const struct timespec *d)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return !shmkit__ts_before(&now, d);
}

static int qfail(shmkit_queue *q, int r, const char *op)
{
    shmkit_block *b = q ? q->block : NULL;

    return shmkit__fail(b, r, "shmkit_queue_%s(\"%s\")", op,
                        b ? shmkit_block_name(b) : "");
}

/* qfail, except for the -EAGAIN of a SHMKIT_QUEUE_TRY attempt: that one
 * is routine (the caller waits next) and records no message. */
static int qfail_wait(shmkit_queue *q, int r, const char *op,
                      const struct timespec *deadline)
{
    if (r == -EAGAIN && deadline == SHMKIT_QUEUE_TRY)
        return r;
    return qfail(q, r, op);
}

/* ---- the ring ------------------------------------------------------------ */

/* Position pos's offset in the ring. A 64-bit divide is ~10-20 cycles on
 * the path of every record walk (the next record's place depends on this
 * one's length), so a ring whose size is a power of two (every default
 * one) takes a mask; any other size divides. */
static inline uint64_t ring_off(const shmkit_queue *q, uint64_t pos)
{
    uint64_t rs = q->rs;

    return (rs & (rs - 1)) == 0 ? pos & (rs - 1) : pos % rs;
}

/* The record at position pos, after checking it lies inside the ring and
 * inside [pos, limit); its size (header + padded message) in *size. The
 * length it checked is in *lenp (if not NULL): use that copy, never the
 * shared field again, which a peer may change meanwhile. */
static int rec_at_len(const shmkit_queue *q, uint64_t pos, uint64_t limit,
                      struct rec **out, uint64_t *size, uint32_t *lenp)
{
    uint64_t off = ring_off(q, pos), sz;
    struct rec *r = (struct rec *)(q->ring + off);
    uint32_t len = __atomic_load_n(&r->len, __ATOMIC_RELAXED);

    if (q->rs - off < REC)
        return SHMKIT_ECORRUPT;
    sz = REC + round16(len);
    if (sz > q->rs - off || sz > limit - pos)
        return SHMKIT_ECORRUPT;
    *out = r;
    *size = sz;
    if (lenp)
        *lenp = len;
    return 0;
}

static int rec_at(const shmkit_queue *q, uint64_t pos, uint64_t limit,
                  struct rec **out, uint64_t *size)
{
    return rec_at_len(q, pos, limit, out, size, NULL);
}

/* Checks head and tail (under the mutex) against the ring. */
static int state_check(const shmkit_queue *q)
{
    const struct queue_header *h = q->hdr;

    if (h->tail < h->head || h->tail - h->head > q->rs || h->head % 16 ||
        h->tail % 16 || h->tail > UINT64_MAX - 2 * q->rs)
        return SHMKIT_ECORRUPT;
    return 0;
}

/* Moves head to `to`, past `done` DONE records (and pads), in one store:
 * a holder killed before it leaves head where it was (the records stay
 * as they were), after it the count is mended by ring_repair. */
static void head_set(shmkit_queue *q, uint64_t to, uint32_t done)
{
    struct queue_header *h = q->hdr;

    __atomic_store_n(&h->head, to, __ATOMIC_RELEASE);
    h->count = h->count > done ? h->count - done : 0;
}

/* Moves head past DONE and PAD records; true if it moved. */
static bool head_advance(shmkit_queue *q)
{
    struct queue_header *h = q->hdr;
    uint64_t head = h->head, tail = h->tail, size;
    uint32_t done = 0;
    struct rec *r;

    while (head < tail && rec_at(q, head, tail, &r, &size) == 0) {
        uint32_t st = shmkit__load32(&r->state);

        if (st != REC_DONE && st != REC_PAD)
            break;
        head += size;
        done += st == REC_DONE;
    }
    if (head == h->head)
        return false;
    head_set(q, head, done);
    return true;
}

/* Tells sleeping producers that space came free. */
static void wake_space(shmkit_queue *q)
{
    __atomic_fetch_add(&q->hdr->space_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->hdr->wait_producers, __ATOMIC_SEQ_CST))
        shmkit__os.futex_wake(&q->hdr->space_seq, INT_MAX);
}

/* Tells sleeping consumers that n messages became ready. */
static void wake_data(shmkit_queue *q, int n)
{
    __atomic_fetch_add(&q->hdr->data_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->hdr->wait_consumers, __ATOMIC_SEQ_CST))
        shmkit__os.futex_wake(&q->hdr->data_seq, n);
}

/* Counts the records from head to tail; SHMKIT_ECORRUPT if they do not
 * parse. Fills the per-state counts of *info when it is not NULL, and its
 * bytes_used: from the first record that is neither DONE nor PAD (a
 * release marks its record DONE without the mutex; the next locker moves
 * head past it, but the bytes are free already). */
static int ring_walk(const shmkit_queue *q, uint64_t head, uint64_t tail,
                     uint32_t *count, shmkit_queue_info *info)
{
    uint64_t pos = head, size, live = tail;
    uint32_t n = 0;
    struct rec *r;
    int e;

    while (pos < tail) {
        e = rec_at(q, pos, tail, &r, &size);
        if (e)
            return e;
        uint32_t st = shmkit__load32(&r->state);
        if (live == tail && st != REC_DONE && st != REC_PAD)
            live = pos;
        switch (st) {
        case REC_PAD: n--; break;
        case REC_READY: if (info) info->depth++; break;
        case REC_RESERVED: if (info) info->reserved++; break;
        case REC_TAKEN: if (info) info->loaned++; break;
        case REC_DONE: break;
        default: return SHMKIT_ECORRUPT;
        }
        n++;
        pos += size;
    }
    if (count)
        *count = n;
    if (info)
        info->bytes_used = tail - live;
    return 0;
}

/* After a lock holder died: the ring itself is always parseable (see the
 * top of the file); recompute the counters and reclaim what is done. */
static int ring_repair(shmkit_queue *q)
{
    uint32_t n;
    int r = state_check(q);

    if (r == 0)
        r = ring_walk(q, q->hdr->head, q->hdr->tail, &n, NULL);
    if (r)
        return r;
    q->hdr->count = n;
    if (head_advance(q))
        wake_space(q);
    return 0;
}

/* Takes the queue's mutex and checks the ring state: only if it is free
 * at once when `try` (-EAGAIN otherwise), else waiting until `until`
 * (NULL: for ever). */
static int qlock_how(shmkit_queue *q, bool try, const struct timespec *until)
{
    int r = try     ? shmkit_mutex_trylock(&q->hdr->lock)
            : until ? shmkit_mutex_timedlock(&q->hdr->lock, until)
                    : shmkit_mutex_lock(&q->hdr->lock);

    if (r == -EBUSY && try)
        return -EAGAIN;
    if (r == SHMKIT_EOWNERDEAD) {
        r = ring_repair(q);
        if (r) {
            /* Unlocking unrepaired makes the mutex not recoverable: the
             * queue is then refused for good, as the lock protocol says. */
            shmkit_mutex_unlock(&q->hdr->lock);
            return r;
        }
        shmkit_mutex_consistent(&q->hdr->lock);
    } else if (r == -EINVAL) {
        return SHMKIT_ECORRUPT;
    } else if (r) {
        return r;
    }
    r = state_check(q);
    if (r)
        shmkit_mutex_unlock(&q->hdr->lock);
    return r;
}

static int qlock(shmkit_queue *q)
{
    return qlock_how(q, false, NULL);
}

/*
 * Waiting a moment for a busy mutex. Holders keep the queue's mutex for
 * well under a microsecond per record (the only copy made under it is
 * get_many's first LOCKED_COPY_MAX bytes), while
 * the lock's own wait sleeps on its futex after a few dozen pauses: then
 * the holder's unlock pays a FUTEX_WAKE and the waiter a context switch,
 * many times the hold (a batch of 256 holds it a few microseconds).
 * Before a blocking lock, a caller watches the word (read only, no stores
 * to its cache line) until it reads free, and only with more than one CPU
 * online. How long adapts per handle, as the waits' spin does (spin_watch):
 * doubled (up to 20 us) when the word came free, halved (down to 1 us)
 * when the time ran out, so a crowded machine, where the holder is often
 * not running, soon spins little. A word a peer wrote costs that once per
 * call; then the lock's own wait, deadline and owner-death rules apply.
 */
static bool spin_watch(shmkit_queue *q, const uint32_t *word, uint32_t mask,
                       uint32_t val, bool until_equal, uint32_t *budget);

static void qlock_spin(shmkit_queue *q)
{
    const struct shmkit__mutex_layout *s =
        (const struct shmkit__mutex_layout *)(const void *)&q->hdr->lock;

    (void)spin_watch(q, &s->word, SHMKIT__FUTEX_TID, 0, true, &q->spin_lock);
}

/* The least a call with a deadline waits for the queue's mutex. Holders
 * keep it for microseconds; only a stopped holder, or a mutex word that a
 * hostile peer wrote naming a live thread, keeps it longer. */
#define QLOCK_GRACE_S 0.1

/* qlock for a call with a deadline (NULL: for ever; SHMKIT_QUEUE_TRY:
 * only if free at once): the mutex is waited for until the deadline, but
 * at least QLOCK_GRACE_S, so that a NOWAIT call does not fail because a
 * peer holds it for a moment. A mutex held longer is -EAGAIN if the
 * deadline had passed when the wait began, else -ETIMEDOUT, as for the
 * queue's other waits. */
static int qlock_watch(shmkit_queue *q, const struct timespec *deadline,
                       bool watch);

static int qlock_by(shmkit_queue *q, const struct timespec *deadline)
{
    return qlock_watch(q, deadline, false);
}

/* qlock_by, watching a busy mutex first (qlock_spin) if `watch`: for the
 * calls that move a batch. Their peers are mostly batch calls too, which
 * hold the mutex microseconds (64 records), longer than the lock's own
 * spin (batches of 100 between Python processes: ~0.20 -> ~0.14 us a
 * message). A call for one message mostly meets holders of one message,
 * which the lock's own spin covers; there the watch showed no gain (2
 * producers, 2 consumers on 2 CPUs: equal in 15 interleaved rounds,
 * worse in 3 shorter runs, within the noise) and costs CPU that a
 * crowded machine's other processes could use. */
static int qlock_watch(shmkit_queue *q, const struct timespec *deadline,
                       bool watch)
{
    struct timespec until;
    bool passed;
    int r;

    if (deadline == SHMKIT_QUEUE_TRY)
        return qlock_how(q, true, NULL);
    if (deadline &&
        (deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L))
        return -EINVAL;
    /* The line of head and tail, which the holder reads and writes first
     * thing, is asked for beside the mutex's (whose compare-and-swap
     * must wait for its line): the two transfers from the last holder's
     * CPU overlap instead of following one another under the mutex.
     * A hand-over between CPUs far apart costs ~350 ns a line here at
     * times (bench/spells.py); put/get of small items, 2 producers -> 2
     * consumers, alternate rounds of both builds classed by the line
     * round trip around them (/tmp/lead/abmon.py): 451 -> 425 and 476 ->
     * 414 ns an item in 12 and 8 such rounds, 1 -> 1 412 -> 404,
     * batches 124 -> 111; outside spells no change (225/224, 214/210,
     * 93/95 over 258-514 rounds). */
    shmkit__prefetch_write(&q->hdr->head);
    /* Nearly always free: no clock is read unless it is not. */
    r = qlock_how(q, true, NULL);
    if (r != -EAGAIN)
        return r;
    if (watch)
        qlock_spin(q);
    if (!deadline)
        return qlock(q);
    r = qlock_how(q, true, NULL);
    if (r != -EAGAIN)
        return r;
    passed = timespec_passed(deadline);
    shmkit_deadline(&until, QLOCK_GRACE_S);
    if (shmkit__ts_before(&until, deadline))
        until = *deadline;
    r = qlock_how(q, false, &until);
    if (r == -ETIMEDOUT && passed)
        r = -EAGAIN;
    return r;
}

static void qunlock(shmkit_queue *q)
{
    shmkit_mutex_unlock(&q->hdr->lock);
}

/* ---- liveness slots -------------------------------------------------------- */

/* Before this process makes a record in q: makes sure it holds a slot of
 * q's table (version 2), so that its death wakes whoever its records
 * block. Once per handle and process (a fork child takes its own); the
 * first time starts the "shmkit-live" thread (src/sync/live.h). */
static void live_ensure(shmkit_queue *q)
{
    uint32_t start;
    pid_t me;

    if (!q->slots || !q->block) /* a view (fuzz target) takes none */
        return;
    /* The common case in two loads (self_pid is 0 until self_get has run
     * in this process: after a fork, or before anything asked). */
    me = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
    if (me && __atomic_load_n(&q->live.pid, __ATOMIC_RELAXED) == me)
        return;
    self_get(&me, &start);
    if (__atomic_load_n(&q->live.pid, __ATOMIC_ACQUIRE) != me)
        shmkit__live_hold(&q->live, q->slots, q->nslots, me, start);
}

/* ---- reaping dead owners ----------------------------------------------- */

/* The processes owning the records of other processes in flight in a
 * waiter's way (each may be dead): up to OWNERS_MAX of them, with the
 * queue's sequence word that makes at most 8 futexes for one futex_waitv. */
#define OWNERS_MAX 7

struct owners {
    unsigned n;
    bool more; /* there were others still */
    int32_t pid[OWNERS_MAX];
    uint32_t start[OWNERS_MAX];
};

static void owners_add(struct owners *o, int32_t pid, uint32_t start)
{
    unsigned i;

    for (i = 0; i < o->n; i++)
        if (o->pid[i] == pid && o->start[i] == start)
            return;
    if (o->n == OWNERS_MAX) {
        o->more = true;
        return;
    }
    o->pid[o->n] = pid;
    o->start[o->n++] = start;
}

static bool owners_any(const struct owners *o)
{
    return o->n || o->more;
}

/* A record keeps the low 32 bits of its owner's start time (os.h). */
static bool owner_alive(int32_t pid, uint32_t start)
{
    return shmkit__proc_alive(pid, start, 32);
}

/* Under the mutex: drops reservations and gives back loans of dead
 * processes. Returns how many messages were given back, or a code. */
static int reap_locked(shmkit_queue *q, bool *freed)
{
    struct queue_header *h = q->hdr;
    uint64_t pos = h->head, size;
    int given = 0, e;
    uint32_t start;
    struct rec *r;
    pid_t me;

    self_get(&me, &start);
    while (pos < h->tail) {
        e = rec_at(q, pos, h->tail, &r, &size);
        if (e)
            return e;
        uint32_t st = shmkit__load32(&r->state);
        if ((st == REC_RESERVED || st == REC_TAKEN) && r->pid != me &&
            !owner_alive(r->pid, r->start)) {
            uint32_t to = st == REC_TAKEN ? REC_READY : REC_DONE;
            if (__atomic_compare_exchange_n(&r->state, &st, to, false,
                                            __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                given += to == REC_READY;
        }
        pos += size;
    }
    *freed = head_advance(q);
    return given;
}

/* Takes the lock (by `deadline`, as qlock_by) and reaps; wakes whoever
 * the reaped records let go. */
static int reap(shmkit_queue *q, const struct timespec *deadline)
{
    bool freed = false;
    int r = qlock_by(q, deadline);

    if (r)
        return r;
    r = reap_locked(q, &freed);
    qunlock(q);
    if (r > 0)
        wake_data(q, r);
    if (freed)
        wake_space(q);
    return r < 0 ? r : 0;
}

/* ---- waiting ------------------------------------------------------------- */

/*
 * Spinning. A waiter that finds nothing to do first watches the sequence
 * word for a few microseconds: a peer that acts within that time costs
 * neither side a system call (no FUTEX_WAKE for the peer, which only wakes
 * when a waiter is counted, and no sleep and context switch for us). Only
 * when more than one CPU is online (else the peer cannot run while we
 * spin). Adaptive per handle and direction: a spin that saw the word move
 * doubles the next allowance (up to SPIN_MAX_NS), one that ended in a
 * sleep halves it (down to SPIN_MIN_NS), so a waiter whose peer is slow,
 * or not running on a crowded machine, soon spins about 1 us per wait.
 * After every 32 pauses the spin yields the CPU (sched_yield: at once
 * back when nothing else is runnable here). With more processes than CPUs
 * a spin that never yielded kept the very peer it waited for off the CPU:
 * Python put/get of small items, 2 producers -> 2 consumers on 2 CPUs,
 * rounds of 0.3 to 1.2 us an item (median ~0.6), one consumer spinning
 * ~0.8 us of CPU per message while the other slept and each put paid a
 * FUTEX_WAKE; with the yield, 0.26 to 0.43 (/tmp/lead/diag.py, 8-round
 * runs interleaved, getrusage of each child).
 * Blocking calls of the Python binding spin without the GIL.
 */
#define SPIN_MIN_NS 1000u
#define SPIN_MAX_NS 20000u

/* Watches *word for up to *budget ns, until (*word & mask) == val if
 * `until_equal`, else until it differs from val; true if that came (or the
 * handle is closing: the caller re-checks either way). The waits watch
 * their sequence word for any change; qlock_spin watches the mutex word
 * for no owner. */
static bool spin_watch(shmkit_queue *q, const uint32_t *word, uint32_t mask,
                       uint32_t val, bool until_equal, uint32_t *budget)
{
    uint32_t ns = __atomic_load_n(budget, __ATOMIC_RELAXED);
    uint64_t t0;
    int i;

    if (shmkit__os.cpus_online() < 2)
        return false;
    t0 = mono_ns();
    for (;;) {
        for (i = 0; i < 32; i++) {
            if (((__atomic_load_n(word, __ATOMIC_ACQUIRE) & mask) == val) ==
                until_equal) {
                ns = ns > SPIN_MAX_NS / 2 ? SPIN_MAX_NS : ns * 2;
                __atomic_store_n(budget, ns, __ATOMIC_RELAXED);
                return true;
            }
            shmkit__cpu_relax();
        }
        if (__atomic_load_n(&q->closing, __ATOMIC_ACQUIRE))
            return true;
        if (mono_ns() - t0 >= ns)
            break;
        sched_yield();
    }
    ns = ns / 2 < SPIN_MIN_NS ? SPIN_MIN_NS : ns / 2;
    __atomic_store_n(budget, ns, __ATOMIC_RELAXED);
    return false;
}

/* How a blocking call waits: the caller's deadline, and the back-off for
 * re-checking dead owners that no liveness slot will announce. */
struct waiter {
    const struct timespec *deadline;
    bool past;        /* the deadline had passed when the call began */
    bool slept;       /* a futex wait ran (not only a spin) */
    bool reaped;      /* a call that may not sleep has reaped once */
    bool checked;     /* owners without a slot were checked once */
    unsigned backoff_ms;
};

static void waiter_init(struct waiter *w, const struct timespec *deadline)
{
    w->deadline = deadline;
    /* Read once, at the call's start ("Waiting" in queue.h): judged at
     * the first wait instead, a deadline that passed during the call's
     * first look (a thread preempted there; two looks since seq_first)
     * gave -EAGAIN, not -ETIMEDOUT (test_queue_live
     * scribbled_slot_table_never_hangs_a_waiter, 4 of 83 loaded ASan
     * runs). A clock read for calls with a deadline only. */
    w->past = deadline && deadline != SHMKIT_QUEUE_TRY &&
              (deadline == SHMKIT_NOWAIT || timespec_passed(deadline));
    w->slept = false;
    w->reaped = false;
    w->checked = false;
    w->backoff_ms = 1;
}

struct shmkit__queue_wait_stats shmkit__queue_waits;

static void stat_add(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* The earlier of the caller's deadline and the next capped slice (which
 * then doubles, up to 100 ms); true in *capped if the slice is earlier. */
static const struct timespec *slice_until(struct waiter *w,
                                          struct timespec *cap, bool *capped)
{
    const struct timespec *until = w->deadline;

    shmkit_deadline(cap, w->backoff_ms / 1000.0);
    *capped = false;
    if (!until || shmkit__ts_before(cap, until)) {
        until = cap;
        *capped = true;
    }
    if (w->backoff_ms < 100)
        w->backoff_ms *= 2;
    return until;
}

/* How long a waiter waits for an owner whose slot says it died to be
 * gone with all its threads (normally a few ms of teardown, more under a
 * sanitizer), before it re-checks as for a slice: only an owner that
 * exec'd (the kernel marks the slots then too) lives on past that. */
#define GONE_CAP_S 0.5

/* Where this process cannot wait for a process to be gone (no pidfd: a
 * sandbox that refuses pidfd_open, no descriptor left, Linux < 5.3):
 * re-checks that (pid, start) is gone in slices of 1 ms doubling to
 * 100 ms, until it is or `until` passes. 0 either way (the caller reaps
 * what is known dead), or -EINTR for an interruptible handle. */
static int gone_by_slices(shmkit_queue *q, int32_t pid, uint32_t start,
                          const struct timespec *until)
{
    struct timespec slice;
    const struct timespec *by;
    uint32_t ms = 1;
    int r;

    while (owner_alive(pid, start)) {
        shmkit_deadline(&slice, ms / 1000.0);
        by = shmkit__ts_before(&slice, until) ? &slice : until;
        r = shmkit__os.futex_wait(&ms, ms, by);
        if (r == -EINTR && q->interruptible)
            return -EINTR;
        if (by == until && r == -ETIMEDOUT)
            break;
        if (ms < 100)
            ms *= 2;
    }
    return 0;
}

/*
 * Owners whose slots say they died: wakes the other sleepers of each slot
 * word (the kernel wakes one), waits until each process is gone with all
 * its threads (its slot is marked as its helper thread exits: until the
 * last thread has, the record must not be reaped), at most GONE_CAP_S,
 * then reaps. An owner that outlives that (it exec'd) is re-checked so
 * each time, counted as a slice. Where no pidfd can be had, the owner is
 * re-checked in short slices up to the same cap (gone_by_slices).
 */
static int owners_died(shmkit_queue *q, struct waiter *w,
                       const struct owners *dead, uint32_t *const *words,
                       bool woken)
{
    struct timespec cap;
    const struct timespec *until;
    bool capped;
    unsigned i;
    int r = 0;

    for (i = 0; i < dead->n; i++)
        shmkit__live_wake_all(words[i]);
    if (woken)
        stat_add(&shmkit__queue_waits.deaths);
    for (i = 0; i < dead->n && r == 0; i++) {
        until = w->deadline;
        shmkit_deadline(&cap, GONE_CAP_S);
        capped = !until || shmkit__ts_before(&cap, until);
        if (capped)
            until = &cap;
        r = shmkit__os.proc_wait_gone(dead->pid[i], dead->start[i], until);
        if (r == -ETIMEDOUT && capped) {
            stat_add(&shmkit__queue_waits.slices);
            r = 0;
        } else if (r == -EINTR) {
            r = q->interruptible ? -EINTR : 0;
        } else if (r != -ETIMEDOUT && r != 0) {
            /* Cannot wait for a process here: re-check in slices. */
            r = gone_by_slices(q, dead->pid[i], dead->start[i], until);
            stat_add(&shmkit__queue_waits.slices);
        }
    }
    return r ? r : reap(q, w->deadline);
}

/*
 * Arms the liveness slots of the owners in *o (foreign records in the
 * caller's way): the armed words and values go to words/vals from index
 * 1 on (0 is the sequence word), owners whose slot says they died to
 * *dead, and *unslotted tells whether some owner has no usable slot
 * (version-1 queue, full table, a scribbled slot): those are checked
 * for life once per call, then in slices. Returns how many were armed.
 */
static unsigned owners_arm(shmkit_queue *q, struct waiter *w,
                           const struct owners *o, uint32_t **words,
                           uint32_t *vals, unsigned *widx,
                           struct owners *dead, uint32_t **dead_words,
                           bool *unslotted, bool *gone)
{
    unsigned i, n = 1;
    uint32_t *word;
    uint32_t val;

    *unslotted = o->more;
    *gone = false;
    dead->n = 0;
    dead->more = false;
    for (i = 0; i < o->n; i++) {
        enum shmkit__live_state st = SHMKIT__LIVE_NONE;

        if (q->slots && !__atomic_load_n(&q->no_waitv, __ATOMIC_RELAXED))
            st = shmkit__live_arm(q->slots, q->nslots, o->pid[i], o->start[i],
                                  &word, &val);
        if (st == SHMKIT__LIVE_ARMED) {
            words[n] = word;
            widx[n] = i;
            vals[n++] = val;
        } else if (st == SHMKIT__LIVE_DIED) {
            dead_words[dead->n] = word;
            owners_add(dead, o->pid[i], o->start[i]);
        } else {
            *unslotted = true;
            if (!w->checked && !owner_alive(o->pid[i], o->start[i]))
                *gone = true;
        }
    }
    w->checked = true;
    return n - 1;
}

/* After a sleep on armed slots: the owners whose slot now says they died
 * go to *dead (a mark on a slot another process took meanwhile is not
 * theirs: the next arming finds no slot for them). */
static void owners_check(uint32_t *const *words, const unsigned *widx,
                         unsigned n, const struct owners *o,
                         struct owners *dead, uint32_t **dead_words)
{
    unsigned i;

    for (i = 1; i <= n; i++) {
        if (!shmkit__live_died(words[i], o->pid[widx[i]], o->start[widx[i]]))
            continue;
        dead_words[dead->n] = words[i];
        dead->pid[dead->n] = o->pid[widx[i]];
        dead->start[dead->n++] = o->start[widx[i]];
    }
}

/*
 * An armed sleep (below) still ends every ARMED_RECHECK_S to look at its
 * owners the slow way (reap: /proc): the slot's wake is how a death ends
 * it, this is the net under it, for a death the kernel could not mark -
 * an owner killed while one of its threads was still linking its slot
 * into the shmkit-live thread's robust list, after that thread's exit had
 * walked the list (src/sync/live.c) - so that no such death leaves a
 * waiter asleep for ever. A live owner costs one look a second.
 */
#define ARMED_RECHECK_S 1.0

/* Ends the sleep at the next ARMED_RECHECK_S unless *until comes first;
 * true if it does (the sleep then ends in a reap). */
static bool recheck_cap(struct timespec *cap, const struct timespec **until)
{
    shmkit_deadline(cap, ARMED_RECHECK_S);
    if (*until && !shmkit__ts_before(cap, *until))
        return false;
    *until = cap;
    return true;
}

/*
 * Sleeps on *word while it holds `seq`, after spinning on it (budget, if
 * not NULL: see spin_watch). `o` lists the other processes whose records in
 * flight are in the caller's way: the sleep then also ends when one of
 * them dies (futex_waitv on their liveness slots, see src/sync/live.h),
 * and the dead one's records are reaped. An owner without a usable slot
 * is checked for life at the first wait of a call, then the sleep is
 * capped (1 ms doubling to 100 ms) and dead owners are reaped when the
 * cap rather than a wake-up ends it. A sleep with an owners list but
 * nobody on it (a put's or a take's; join passes none) still ends after
 * ARMED_RECHECK_S and reaps: a message may be lent after the waiter's
 * look and its borrower die (inflight_foreign).
 * Returns 0 to try again, or -EAGAIN, -ETIMEDOUT, -EINTR, SHMKIT_ECLOSED.
 */
static int wait_on(shmkit_queue *q, struct waiter *w, uint32_t *word,
                   uint32_t *waiting, uint32_t seq, const struct owners *o,
                   uint32_t *budget)
{
    uint32_t *words[OWNERS_MAX + 1], *dead_words[OWNERS_MAX];
    uint32_t vals[OWNERS_MAX + 1];
    unsigned widx[OWNERS_MAX + 1];
    struct timespec cap;
    const struct timespec *until = w->deadline;
    struct owners dead = {0};
    bool foreign = o && owners_any(o), capped = false, unslotted = false;
    bool gone = false, recheck = false;
    unsigned armed = 0;
    int r;

    if (w->deadline == SHMKIT_QUEUE_TRY)
        return -EAGAIN;
    if (w->past) {
        /* Not allowed to sleep: still give a dead owner's record back
         * once, so polling callers make progress too. */
        if (!foreign || w->reaped)
            return -EAGAIN;
        w->reaped = true;
        return reap(q, w->deadline);
    }
    if (__atomic_load_n(&q->closing, __ATOMIC_ACQUIRE))
        return SHMKIT_ECLOSED;
    if (budget && spin_watch(q, word, ~0u, seq, false, budget))
        return 0;
    if (foreign) {
        armed = owners_arm(q, w, o, words, vals, widx, &dead, dead_words,
                           &unslotted, &gone);
        if (dead.n)
            return owners_died(q, w, &dead, dead_words, true);
        if (gone)
            return reap(q, w->deadline);
        if (unslotted) {
            until = slice_until(w, &cap, &capped);
        } else if (armed) {
            recheck = recheck_cap(&cap, &until);
        }
    } else if (o) {
        /* Nobody listed: the record in a producer's way may be lent
         * after the look, and its borrower die unwatched
         * (inflight_foreign); a consumer asleep since the ring was empty
         * misses a message that a put's one wake-up took to another
         * consumer, which lent it and died (review s22 finding 2). */
        recheck = recheck_cap(&cap, &until);
    }
    words[0] = word;
    vals[0] = seq;
    __atomic_fetch_add(waiting, 1, __ATOMIC_SEQ_CST);
    w->slept = true;
    r = armed ? shmkit__os.futex_waitv(words, vals, (int)armed + 1, until)
              : shmkit__os.futex_wait(word, seq, until);
    if (armed && r < 0 && r != -EAGAIN && r != -ETIMEDOUT && r != -EINTR) {
        /* No futex_waitv (Linux before 5.16: ENOSYS), or refused (a
         * seccomp filter's EPERM, anything else): slices from now on. */
        __atomic_store_n(&q->no_waitv, true, __ATOMIC_RELAXED);
        armed = 0;
        recheck = false;
        until = slice_until(w, &cap, &capped);
        r = shmkit__os.futex_wait(word, seq, until);
    }
    __atomic_fetch_sub(waiting, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->closing, __ATOMIC_ACQUIRE))
        return SHMKIT_ECLOSED;
    if (armed) {
        owners_check(words, widx, armed, o, &dead, dead_words);
        /* A death found only when the deadline ended the sleep is not
         * counted as a wake by it (the records are reaped all the same). */
        if (dead.n)
            return owners_died(q, w, &dead, dead_words, r != -ETIMEDOUT);
    }
    if (r == -ETIMEDOUT && capped) {
        stat_add(&shmkit__queue_waits.slices);
        return reap(q, w->deadline);
    }
    if (r == -ETIMEDOUT && recheck) {
        stat_add(&shmkit__queue_waits.rechecks);
        return reap(q, w->deadline);
    }
    if (r == -EINTR)
        return q->interruptible ? -EINTR : 0;
    if (r == -EAGAIN || r >= 0)
        return 0;
    return r;
}

/* Brackets a blocking call, so close can wait for it to leave. */
static int enter(shmkit_queue *q)
{
    __atomic_fetch_add(&q->active, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->closing, __ATOMIC_SEQ_CST)) {
        __atomic_fetch_sub(&q->active, 1, __ATOMIC_SEQ_CST);
        return SHMKIT_ECLOSED;
    }
    return 0;
}

static void leave(shmkit_queue *q)
{
    if (__atomic_sub_fetch(&q->active, 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&q->closing, __ATOMIC_SEQ_CST))
        shmkit__os.futex_wake(&q->active, INT_MAX);
}

/* ---- the mapping in a forked child ------------------------------------------ */

/*
 * A forked child inherits the mapping but none of its page table entries
 * (fork copies none for a shared file mapping): without help, its first
 * touch of every page of the ring is a page fault, ~2.5 us each here (a
 * child's first lap of a 16 MiB ring: ~4,000 faults; 12 puts of 1 MiB
 * took 651 us each instead of ~50). Populating the whole block at its
 * first call (madvise: one system call, page tables only, ~1 us a page)
 * cost that call ~4 ms for a 16 MiB ring (~30 ms for 128 MiB), which a
 * child that puts one small result and exits pays in full. So a process
 * that did not make or attach the handle itself populates the ring in
 * chunks (a power of two, at least MAP_CHUNK_MIN, at most MAP_CHUNKS of
 * them), each the first time it is about to work there: before it takes
 * the mutex, around the head or tail it read without it (a consumer: as
 * far as its batch may walk; a producer: where its batch will most
 * likely go, and the pad before it), and for certain before it touches a
 * record it reserved or took. So no message pays a page fault; a guess
 * that missed (another producer moved tail meanwhile) leaves a record
 * header or two to fault under the mutex, in the child's first lap only.
 * Its first message pays for a chunk or two (~20 us). Once every chunk is
 * in, the handle is marked mapped (mapped_for) and the check is one load;
 * until then it is one bit test per record (a child whose consumer keeps
 * up, and so the ring at its start, may never see every chunk). Threads
 * of the process may race to populate the same chunk: harmless. A
 * failure (a peer cut the block) is left to the accesses, as before.
 */

/* Sets up the chunk size of a handle of ring size rs. */
static void map_init(shmkit_queue *q)
{
    unsigned shift = 0;

    while ((UINT64_C(1) << shift) < MAP_CHUNK_MIN ||
           (UINT64_C(1) << shift) * MAP_CHUNKS < q->rs)
        shift++;
    q->map_shift = shift;
    q->map_chunks = (uint32_t)((q->rs + (UINT64_C(1) << shift) - 1) >> shift);
}

/* Starts the chunks over for process me (a fork child: the parent's
 * page tables are not its own), populating the header's pages, which
 * every call touches. One thread does (map_pid reads -me meanwhile);
 * false in the others, which take their faults until it is done. */
static bool map_reset(shmkit_queue *q, pid_t me)
{
    pid_t was = __atomic_load_n(&q->map_pid, __ATOMIC_ACQUIRE);
    unsigned i;

    if (was == me)
        return true;
    if (was == -me ||
        !__atomic_compare_exchange_n(&q->map_pid, &was, -me, false,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return false;
    for (i = 0; i < MAP_CHUNKS / 64; i++)
        __atomic_store_n(&q->map_bits[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&q->map_done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&q->map_calm, 0, __ATOMIC_RELAXED);
    if (q->ring - (unsigned char *)q->hdr >= (ptrdiff_t)shmkit__os_page_size())
        shmkit__os.populate(q->hdr, (size_t)(q->ring - (unsigned char *)q->hdr),
                            true);
    __atomic_store_n(&q->map_pid, me, __ATOMIC_RELEASE);
    return true;
}

/* Makes sure the ring's bytes [off, off + len) (within the ring) are in
 * this process's page tables. */
static void map_range(shmkit_queue *q, uint64_t off, uint64_t len)
{
    uint32_t start;
    uint64_t k, last;
    pid_t me;

    self_get(&me, &start);
    if (__atomic_load_n(&q->mapped_for, __ATOMIC_RELAXED) == me || !q->block)
        return;
    if (__atomic_load_n(&q->map_pid, __ATOMIC_ACQUIRE) != me &&
        !map_reset(q, me))
        return;
    if (off >= q->rs)
        return;
    if (len > q->rs - off)
        len = q->rs - off;
    last = (off + (len ? len - 1 : 0)) >> q->map_shift;
    for (k = off >> q->map_shift; k <= last; k++) {
        uint64_t bit = UINT64_C(1) << (k % 64), *w = &q->map_bits[k / 64];
        uint64_t end = (k + 1) << q->map_shift;
        uintptr_t from, to, page = shmkit__os_page_size();

        if (__atomic_load_n(w, __ATOMIC_RELAXED) & bit)
            continue;
        from = (uintptr_t)(q->ring + (k << q->map_shift)) & ~(page - 1);
        to = (uintptr_t)(q->ring + (end < q->rs ? end : q->rs));
        shmkit__os.populate((void *)from, to - from, true);
        if (!(__atomic_fetch_or(w, bit, __ATOMIC_RELAXED) & bit) &&
            __atomic_add_fetch(&q->map_done, 1, __ATOMIC_RELAXED) ==
                q->map_chunks)
            __atomic_store_n(&q->mapped_for, me, __ATOMIC_RELAXED);
    }
}

/* The common cases inline: the handle mapped whole in this process, or
 * the chunks of [off, off + len) (within the ring, len > 0) populated in
 * it already. self_pid is 0 until this process has asked (then the slow
 * path, which asks). */
static inline bool map_has(const shmkit_queue *q, uint64_t off, uint64_t len)
{
    pid_t me = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
    uint64_t k, last;

    if (__builtin_expect(__atomic_load_n(&q->mapped_for, __ATOMIC_RELAXED) ==
                             me,
                         1))
        return me != 0 || !q->block;
    if (!q->block)
        return true;
    if (!me || __atomic_load_n(&q->map_pid, __ATOMIC_ACQUIRE) != me ||
        off >= q->rs || len > q->rs - off)
        return false;
    last = (off + len - 1) >> q->map_shift;
    for (k = off >> q->map_shift; k <= last; k++)
        if (!((__atomic_load_n(&q->map_bits[k / 64], __ATOMIC_RELAXED) >>
               (k % 64)) & 1))
            return false;
    return true;
}

/* Maps bytes positions [pos, pos + len) of the ring, wrapping round its
 * end (at most the whole ring). */
static void map_span(shmkit_queue *q, uint64_t pos, uint64_t len)
{
    uint64_t off = pos % q->rs;

    if (len > q->rs)
        len = q->rs;
    if (len > q->rs - off) {
        if (!map_has(q, 0, len - (q->rs - off)))
            map_range(q, 0, len - (q->rs - off));
        len = q->rs - off;
    }
    if (!map_has(q, off, len ? len : 1))
        map_range(q, off, len);
}

/* The ring offset of position pos (tail: lap 0, head: lap 1) without a
 * division while pos stays in the lap it was in last time. */
static inline uint64_t map_off(shmkit_queue *q, int lap, uint64_t pos)
{
    uint64_t base = __atomic_load_n(&q->map_lap[lap], __ATOMIC_RELAXED);

    if (__builtin_expect(pos - base < q->rs, 1)) /* pos < base: huge */
        return pos - base;
    base = pos - pos % q->rs;
    __atomic_store_n(&q->map_lap[lap], base, __ATOMIC_RELAXED);
    return pos - base;
}

/* No guess before the mutex is needed in this process: every chunk is
 * mapped here, or the last MAP_CALM records were all found mapped. */
static inline bool map_settled(const shmkit_queue *q)
{
    pid_t me = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);

    return __builtin_expect(
        (__atomic_load_n(&q->map_calm, __ATOMIC_RELAXED) >= MAP_CALM &&
         __atomic_load_n(&q->map_pid, __ATOMIC_RELAXED) == me) ||
            __atomic_load_n(&q->mapped_for, __ATOMIC_RELAXED) == me,
        1);
}

/* Before a producer takes the mutex to reserve `need` bytes: maps where
 * they will most likely go, and the pad before them if they would not fit
 * before the ring's end (a guess: read without the mutex; the records are
 * mapped again, for certain, before they are written). */
static inline void map_ahead_put(shmkit_queue *q, uint64_t need)
{
    uint64_t head, tail, off;

    if (map_settled(q))
        return;
    head = __atomic_load_n(&q->hdr->head, __ATOMIC_RELAXED);
    tail = __atomic_load_n(&q->hdr->tail, __ATOMIC_RELAXED);
    off = head == tail ? 0 : map_off(q, 0, tail); /* empty: starts at 0 */
    if (need > q->rs - off) {
        map_span(q, off, REC); /* the pad's header */
        off = 0;
    }
    if (!map_has(q, off, need < q->rs ? need : q->rs))
        map_span(q, off, need);
}

/* Before a consumer takes the mutex to take up to max messages of up to
 * room bytes in all: maps the records from head as far as its walk may
 * read them (one: the first MAP_CHUNK_MIN bytes, which hold its header;
 * its message is mapped after). A guess, as above. */
static inline void map_ahead_get(shmkit_queue *q, size_t max, size_t room)
{
    uint64_t head, tail, span, off;

    if (map_settled(q))
        return;
    head = __atomic_load_n(&q->hdr->head, __ATOMIC_RELAXED);
    tail = __atomic_load_n(&q->hdr->tail, __ATOMIC_RELAXED);
    span = max > 1 ? (room < q->rs ? room + (uint64_t)max * REC : q->rs)
                   : MAP_CHUNK_MIN;
    if (tail - head < span)
        span = tail - head;
    off = map_off(q, 1, head);
    if (!map_has(q, off, span == 0 ? 1 : span < q->rs - off ? span
                                                             : q->rs - off) ||
        span > q->rs - off)
        map_span(q, off, span);
}

/* A record and its message (len bytes) in this process's page tables.
 * Called for every record a batch moves: the mapped checks are inline.
 * Counts the records in a row it found mapped (map_calm): after MAP_CALM
 * the guesses before the mutex stop (their loads of head and tail cost a
 * child whose consumer keeps up ~8 ns a put + get pair, for ever, as it
 * may never see every chunk), until a record is found unmapped. */
static inline void map_rec(shmkit_queue *q, const struct rec *r, uint64_t len)
{
    uint64_t off = (uint64_t)((const unsigned char *)r - q->ring);
    uint32_t calm;

    if (__builtin_expect(__atomic_load_n(&q->mapped_for, __ATOMIC_RELAXED) ==
                             __atomic_load_n(&self_pid, __ATOMIC_RELAXED),
                         1) &&
        __atomic_load_n(&q->mapped_for, __ATOMIC_RELAXED))
        return;
    if (map_has(q, off, REC + round16(len))) {
        calm = __atomic_load_n(&q->map_calm, __ATOMIC_RELAXED);
        if (calm < MAP_CALM)
            __atomic_store_n(&q->map_calm, calm + 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_store_n(&q->map_calm, 0, __ATOMIC_RELAXED);
    map_range(q, off, REC + round16(len));
}

/* ---- producing ----------------------------------------------------------- */

/* Writes a PAD record of `bytes` (header included) at position pos. */
static void pad_write(shmkit_queue *q, uint64_t pos, uint64_t bytes)
{
    struct rec *r = (struct rec *)(q->ring + ring_off(q, pos));

    r->len = (uint32_t)(bytes - REC);
    r->pid = 0;
    r->start = 0;
    shmkit__store32(&r->state, REC_PAD);
}

/* Lists in *o the other processes with a record in flight (RESERVED or
 * TAKEN) between head and the first READY record: any of them may be
 * dead, and keep the space. Space comes back only as head moves, and head
 * stops at the first record that is not DONE or PAD; a READY one is for
 * the consumers to take. The records past it hold nothing until head
 * reaches them, and every move of head bumps space_seq, so the waiter
 * looks again then. (Walking the whole ring, under the mutex, cost a full
 * 16 MiB ring of small messages ~0.5 ms at every wait of a producer that
 * outruns its consumer, and held the consumer off the mutex meanwhile.)
 * A READY record held back by its producer's earlier reservation lies
 * past that reservation, which is listed. But a record READY (or this
 * process's own) at this look may be lent afterwards - a take moves no
 * head and bumps no space_seq - and its borrower die: nobody listed here
 * then, and nothing wakes the producer. So its sleep is always bounded
 * (wait_on): ARMED_RECHECK_S, then a reap of the whole ring, as an armed
 * one. (Listing the whole ring had armed the sleep
 * whenever any other record was in flight, whose recheck did that:
 * review s22, /tmp/review/s22/r/loan_rescue.c.) */
static void inflight_foreign(shmkit_queue *q, pid_t me, struct owners *o)
{
    uint64_t pos = q->hdr->head, size;
    struct rec *x;

    while (pos < q->hdr->tail && rec_at(q, pos, q->hdr->tail, &x, &size) == 0) {
        uint32_t st = shmkit__load32(&x->state);
        int32_t pid = x->pid;

        if (st == REC_READY)
            break;
        if ((st == REC_TAKEN || st == REC_RESERVED) && pid != me)
            owners_add(o, pid, __atomic_load_n(&x->start, __ATOMIC_RELAXED));
        pos += size;
    }
}

/* Under the mutex: makes a RESERVED record for len bytes at tail. Returns
 * 0 and the record, or -EAGAIN if it does not fit now; *o (if o is not
 * NULL) then lists the other processes with a record in flight (they may
 * be dead). */
static int reserve_locked(shmkit_queue *q, size_t len, struct rec **out,
                          struct owners *o)
{
    struct queue_header *h = q->hdr;
    uint64_t need = REC + round16(len), off, pad = 0;
    uint64_t head = h->head, tail = h->tail; /* checked by qlock */
    uint32_t start;
    struct rec *r;
    pid_t me;

    self_get(&me, &start);
    if (q->max_msgs && h->count >= q->max_msgs)
        goto full;
    off = ring_off(q, tail);
    if (head == tail && off != 0) {
        /* Empty: start over at offset 0, so a big message fits whole. The
         * pad keeps [head, tail) parseable if we die between the stores. */
        pad_write(q, tail, q->rs - off);
        tail += q->rs - off;
        __atomic_store_n(&h->tail, tail, __ATOMIC_RELEASE);
        __atomic_store_n(&h->head, tail, __ATOMIC_RELEASE);
        head = tail;
        off = 0;
    }
    if (q->rs - off < need)
        pad = q->rs - off;
    if (tail - head + pad + need > q->rs)
        goto full;
    if (pad)
        pad_write(q, tail, pad);
    r = (struct rec *)(q->ring + ring_off(q, off + pad));
    r->len = (uint32_t)len;
    r->pid = me;
    r->start = start;
    shmkit__store32(&r->state, REC_RESERVED);
    /* Publish: the record is part of the ring from here on. */
    __atomic_store_n(&h->tail, tail + pad + need, __ATOMIC_RELEASE);
    h->count++;
    *out = r;
    return 0;
full:
    if (o)
        inflight_foreign(q, me, o);
    return -EAGAIN;
}

/*
 * seq_first: when a call reads its sequence word. A wait on the word is
 * safe only with a value read before the check that found nothing to do
 * (a change after the read then bumps it, and the futex wait returns at
 * once). But every put bumps data_seq and every get space_seq, on the
 * same cache line: a call that read its word first paid a miss on that
 * line each time, though most calls never wait. So a handle reads the word
 * first only while its calls have been waiting (seq_first_data/space, a
 * hint per handle: set when a call found nothing, cleared when one
 * succeeded at its first look); otherwise a call that finds nothing reads
 * the word then and looks once more before it waits. A call that may not
 * wait at all (SHMKIT_QUEUE_TRY) does not look twice.
 */

/* One call's looks, as seq_first says. */
struct seq_look {
    bool *hint;         /* the handle's seq_first_data or seq_first_space */
    const uint32_t *word;
    bool read;          /* the word is read before each look */
    bool missed;        /* a look of this call found nothing */
};

static void seq_look_init(struct seq_look *s, bool *hint, const uint32_t *word)
{
    s->hint = hint;
    s->word = word;
    s->read = __atomic_load_n(hint, __ATOMIC_RELAXED);
    s->missed = false;
}

/* Before a look: the word, if this call reads it first (else 0). */
static uint32_t seq_before(const struct seq_look *s)
{
    return s->read ? __atomic_load_n(s->word, __ATOMIC_SEQ_CST) : 0;
}

static void seq_hint(struct seq_look *s, bool v)
{
    if (__atomic_load_n(s->hint, __ATOMIC_RELAXED) != v)
        __atomic_store_n(s->hint, v, __ATOMIC_RELAXED);
}

/* After a look that found what it wanted. */
static void seq_found(struct seq_look *s)
{
    if (!s->missed)
        seq_hint(s, false);
}

/* After a look that found nothing: true to look again, the word read
 * first this time; false to wait on the value read before this look. */
static bool seq_missed(struct seq_look *s, const struct waiter *w)
{
    s->missed = true;
    seq_hint(s, true);
    if (s->read || w->deadline == SHMKIT_QUEUE_TRY)
        return false;
    s->read = true;
    return true;
}

/* Under the mutex, on a ring that refuses a put by its message count:
 * the count cannot exceed the records [head, tail) has room for (each
 * takes REC bytes at least). A count above that is a peer's scribble,
 * which would otherwise refuse every put for ever once the ring is empty
 * (a count at the limit on an empty ring: review s23); while any record
 * is in it, consumers bring the count down until it empties. One check,
 * not a walk: a bounded queue at its limit refuses at every put, and a
 * walk of its max_msgs records under the mutex each time would be paid
 * by every producer that outruns its consumers. */
static int count_check(const shmkit_queue *q)
{
    const struct queue_header *h = q->hdr;

    return h->count > (h->tail - h->head) / REC ? SHMKIT_ECORRUPT : 0;
}

/* Reserves up to n records (lens[i] bytes each, stride apart) in one
 * locked pass, waiting for room for the first. */
static int reserve_batch(shmkit_queue *q, const struct iovec *msgs, size_t n,
                         struct rec **recs, size_t *got, struct waiter *w)
{
    struct owners o;
    uint64_t need = 0;
    size_t k, i;
    struct seq_look sl;
    int r;

    live_ensure(q);
    for (k = 0; k < n && need < q->rs; k++)
        need += REC + round16(msgs[k].iov_len);
    seq_look_init(&sl, &q->seq_first_space, &q->hdr->space_seq);
    for (;;) {
        uint32_t seq = seq_before(&sl);

        o.n = 0;
        o.more = false;
        map_ahead_put(q, need);
        r = qlock_watch(q, w->deadline, n > 1);
        if (r)
            return r;
        head_advance(q); /* past records released without the mutex */
        /* The owners in the way are listed (a walk from head to the
         * first READY record, inflight_foreign) only on the pass that will
         * wait: for the first record, once the
         * sequence word is read (review s21 finding 1). */
        for (k = 0; k < n; k++)
            if (reserve_locked(q, msgs[k].iov_len, &recs[k],
                               k == 0 && sl.read &&
                                       w->deadline != SHMKIT_QUEUE_TRY
                                   ? &o
                                   : NULL))
                break;
        r = k == 0 && q->max_msgs && q->hdr->count >= q->max_msgs
                ? count_check(q)
                : 0;
        qunlock(q);
        if (r)
            return r;
        if (k) {
            for (i = 0; i < k; i++)
                map_rec(q, recs[i], msgs[i].iov_len);
            *got = k;
            seq_found(&sl);
            return 0;
        }
        if (seq_missed(&sl, w))
            continue;
        r = wait_on(q, w, &q->hdr->space_seq, &q->hdr->wait_producers, seq,
                    &o, &q->spin_space);
        if (r)
            return r;
    }
}

/* The largest message: the ring less one record header, and what a
 * record's 32-bit length can say once padded. Inline: put_many checks
 * each of its messages. */
static inline size_t max_message(const shmkit_queue *q)
{
    uint64_t m = q->rs - REC;

    return m > UINT32_MAX - 15 ? UINT32_MAX - 15 : (size_t)m;
}

static int size_check(const shmkit_queue *q, size_t len)
{
    return len > max_message(q) ? -EMSGSIZE : 0;
}

int shmkit_queue_reserve(shmkit_queue *q, size_t len, void **ptr,
                         const struct timespec *deadline)
{
    struct iovec one = {NULL, len};
    struct rec *rec;
    struct waiter w;
    size_t got;
    int r;

    if (!q || !ptr)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_reserve: NULL");
    r = size_check(q, len);
    if (r == 0)
        r = enter(q);
    if (r)
        return qfail(q, r, "reserve");
    waiter_init(&w, deadline);
    r = reserve_batch(q, &one, 1, &rec, &got, &w);
    if (r)
        r = qfail_wait(q, r, "reserve", deadline);
    leave(q); /* last: a closing thread may free q once we are out */
    if (r)
        return r;
    *ptr = rec + 1;
    return 0;
}

/* The record whose message starts at ptr, if ptr is one and its state is
 * `state` and it belongs to this process. */
static int own_rec(shmkit_queue *q, const void *ptr, uint32_t state,
                   struct rec **out, uint32_t *lenp)
{
    const unsigned char *p = ptr;
    struct rec *r;
    uint32_t start, len;
    pid_t me;

    if (!ptr || p < q->ring + REC || p >= q->ring + q->rs ||
        (size_t)(p - q->ring) % SHMKIT_QUEUE_ALIGN)
        return -EINVAL;
    r = (struct rec *)p - 1;
    self_get(&me, &start);
    if (shmkit__load32(&r->state) != state || r->pid != me)
        return -EINVAL;
    len = __atomic_load_n(&r->len, __ATOMIC_RELAXED);
    if (REC + round16(len) > q->rs - (size_t)((unsigned char *)r - q->ring))
        return SHMKIT_ECORRUPT;
    *out = r;
    if (lenp)
        *lenp = len;
    return 0;
}

/* Shortens a reservation to len, handing the slack back as a PAD record
 * (under the mutex: walkers must not see the record change size). */
static int shrink_locked(shmkit_queue *q, struct rec *r, uint32_t reserved,
                         size_t len)
{
    uint64_t old = round16(reserved), now = round16(len);
    struct rec *pad;

    if (old != now) {
        pad = (struct rec *)((unsigned char *)(r + 1) + now);
        pad->len = (uint32_t)(old - now - REC);
        pad->pid = 0;
        pad->start = 0;
        shmkit__store32(&pad->state, REC_PAD);
    }
    __atomic_store_n(&r->len, (uint32_t)len, __ATOMIC_RELEASE);
    return 0;
}

int shmkit_queue_commit(shmkit_queue *q, void *ptr, size_t len)
{
    uint32_t reserved;
    struct rec *r;
    int e;

    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_commit: NULL");
    e = own_rec(q, ptr, REC_RESERVED, &r, &reserved);
    if (e == 0 && len > reserved)
        e = -EINVAL;
    if (e)
        return qfail(q, e, "commit");
    if (len != reserved) {
        e = qlock(q);
        if (e)
            return qfail(q, e, "commit");
        shrink_locked(q, r, reserved, len);
        shmkit__store32(&r->state, REC_READY);
        qunlock(q);
    } else {
        shmkit__store32(&r->state, REC_READY);
    }
    wake_data(q, 1);
    return 0;
}

int shmkit_queue_cancel(shmkit_queue *q, void *ptr)
{
    struct rec *r;
    bool moved;
    int e;

    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_cancel: NULL");
    e = own_rec(q, ptr, REC_RESERVED, &r, NULL);
    if (e == 0)
        e = qlock(q);
    if (e)
        return qfail(q, e, "cancel");
    shmkit__store32(&r->state, REC_DONE);
    moved = head_advance(q);
    qunlock(q);
    if (moved)
        wake_space(q);
    return 0;
}

int shmkit_queue_put_many(shmkit_queue *q, const struct iovec *msgs, size_t n,
                          size_t *done, const struct timespec *deadline)
{
    struct rec *recs[BATCH];
    struct waiter w;
    size_t i, k, put = 0;
    int r = 0;

    if (done)
        *done = 0;
    if (!q || (!msgs && n))
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_put_many: NULL");
    for (i = 0; i < n && r == 0; i++)
        r = size_check(q, msgs[i].iov_len);
    if (r == 0)
        r = enter(q);
    if (r)
        return qfail(q, r, "put_many");
    waiter_init(&w, deadline);
    while (put < n) {
        size_t want = n - put < BATCH ? n - put : BATCH;

        r = reserve_batch(q, msgs + put, want, recs, &k, &w);
        if (r)
            break;
        for (i = 0; i < k; i++) {
            if (msgs[put + i].iov_len)
                memcpy(recs[i] + 1, msgs[put + i].iov_base,
                       msgs[put + i].iov_len);
            shmkit__store32(&recs[i]->state, REC_READY);
        }
        put += k;
        if (done)
            *done = put;
        wake_data(q, (int)k);
    }
    if (r)
        r = qfail_wait(q, r, "put_many", deadline);
    leave(q);
    return r;
}

int shmkit_queue_put(shmkit_queue *q, const void *data, size_t len,
                     const struct timespec *deadline)
{
    struct iovec one = {(void *)data, len};

    return shmkit_queue_put_many(q, &one, 1, NULL, deadline);
}

/* ---- consuming ----------------------------------------------------------- */

/* Under the mutex: takes up to max READY records, oldest first, that fit
 * in room one after another, each at a 16-byte multiple (the first must
 * fit: -EMSGSIZE with its length in *need otherwise), skipping those whose
 * producer still writes an older one. *o lists the other processes with
 * a record in flight (one may be dead: a dead producer's reservation
 * holds back its later messages until it is reaped). */
static int take_locked(shmkit_queue *q, struct rec **recs, uint32_t *lens,
                       size_t max, size_t room, size_t *got, size_t *need,
                       struct owners *o, unsigned char *copy, size_t *ncopied,
                       bool *more)
{
    struct queue_header *h = q->hdr;
    uint64_t pos = h->head, size;
    size_t k = 0, used = 0, copied = 0, kc = 0;
    uint32_t start, rlen;
    struct rec *r;
    pid_t me;
    int e;

    pid_t writing[HELD_BACK_MAX]; /* producers with a message in the works */
    size_t nwriting = 0, i;
    /* [head, run) holds only records copied here (krun of them), DONE
     * ones (ndone) and pads: head jumps to run once the copies are made,
     * without marking those records DONE and walking them again. */
    uint64_t run;
    size_t krun = 0;
    uint32_t ndone = 0;

    self_get(&me, &start);
    o->n = 0;
    o->more = false;
    if (head_advance(q)) { /* past records released without the mutex */
        pos = h->head;
        if (q->version == 1) /* the previous library's producers wait */
            wake_space(q);
    }
    run = pos;
    while (pos < h->tail && k < max) {
        e = rec_at_len(q, pos, h->tail, &r, &size, &rlen);
        if (e)
            return e;
        uint32_t st = shmkit__load32(&r->state);
        int32_t owner = r->pid;
        if (run == pos && (st == REC_PAD || st == REC_DONE)) {
            run += size;
            ndone += st == REC_DONE;
        }
        if ((st == REC_TAKEN || st == REC_RESERVED) && owner != me)
            owners_add(o, owner, __atomic_load_n(&r->start, __ATOMIC_RELAXED));
        for (i = 0; i < nwriting && writing[i] != owner; i++)
            ;
        if (st == REC_RESERVED && i == nwriting) {
            /* Its producer's later messages wait for it (one producer's
             * messages leave in its order); others' do not. Commit is
             * lock-free, so a later record of the same producer may read
             * READY while this one still reads RESERVED. */
            if (nwriting == HELD_BACK_MAX)
                break;
            writing[nwriting++] = owner;
        }
        if (st == REC_READY && i < nwriting) {
            pos += size;
            continue;
        }
        if (st == REC_READY) {
            size_t len = rlen, padded = round16(len);

            if (len > room - used) {
                if (k == 0) {
                    *need = len;
                    /* the caller takes it with a bigger buffer; what
                     * lies after it may be for another consumer */
                    *more = pos + size < h->tail;
                    return -EMSGSIZE;
                }
                break;
            }
            if (copy && kc == k && copied + len <= LOCKED_COPY_MAX) {
                map_rec(q, r, len);
                memcpy(copy + used, r + 1, len);
                copied += len;
                kc++;
                if (run == pos) {
                    run += size;
                    krun = kc;
                }
            } else {
                r->pid = me;
                r->start = start;
                shmkit__store32(&r->state, REC_TAKEN);
            }
            lens[k] = rlen;
            recs[k++] = r;
            used += padded < room - used ? padded : room - used;
        }
        pos += size;
    }
    if (kc && kc == k) {
        /* Delivered only once all are copied: a holder killed before
         * this leaves them READY (the mutex's owner-death repair). The
         * first krun go with head's one store (head_set). */
        for (i = krun; i < kc; i++)
            shmkit__store32(&recs[i]->state, REC_DONE);
        *ncopied = kc;
        if (krun)
            head_set(q, run, (uint32_t)krun + ndone);
        if (head_advance(q) || krun)
            *ncopied |= COPIED_MOVED;
    } else if (kc) {
        /* Loans follow: the copied records are taken too and freed with
         * the loans once the whole batch is out (a consumer killed before
         * then gives all of it back, not only the loans). */
        for (i = 0; i < kc; i++) {
            recs[i]->pid = me;
            recs[i]->start = start;
            shmkit__store32(&recs[i]->state, REC_TAKEN);
        }
        *ncopied = kc;
    }
    *more = pos < h->tail; /* records it did not look at or skipped */
    *got = k;
    return k ? 0 : -EAGAIN;
}

/* Takes up to max messages, waiting for the first until the deadline.
 * A call that waited and leaves records behind passes the wake-up on
 * (wake_data): the wake it got may have been one for several messages.
 * A commit wakes one consumer for its own record, but that record may
 * also free later ones that were held back behind it (one producer's
 * messages leave in its order): with two consumers asleep, the woken one
 * took one message and the other slept on with the next one ready, until
 * its armed sleep's 1 s recheck (review s21 finding 4). Only calls that
 * slept pass it on (a spin that saw the message come took no wake-up, and
 * passing one on from there cost a stream of 1 producer -> 2 consumers up
 * to ~10x the futex calls: review s21 finding 7), so a stream that never
 * sleeps pays nothing; a call
 * that found its first message too big for its buffer (-EMSGSIZE, as
 * Python's get of one over 2 KiB does before it lends it) passes it on
 * too (finding 4b). */
static int take_batch(shmkit_queue *q, struct rec **recs, uint32_t *lens,
                      size_t max, size_t room, size_t *got, size_t *need,
                      struct waiter *w, unsigned char *copy, size_t *ncopied)
{
    struct owners o;
    struct seq_look sl;
    bool more = false;
    size_t i;
    int r;

    live_ensure(q);
    seq_look_init(&sl, &q->seq_first_data, &q->hdr->data_seq);
    for (;;) {
        uint32_t seq = seq_before(&sl);

        map_ahead_get(q, max, room);
        r = qlock_watch(q, w->deadline, max > 1);
        if (r)
            return r;
        if (ncopied)
            *ncopied = 0;
        r = take_locked(q, recs, lens, max, room, got, need, &o, copy,
                        ncopied, &more);
        qunlock(q);
        if ((r == 0 || r == -EMSGSIZE) && w->slept && more)
            wake_data(q, 1);
        if (ncopied && (*ncopied & COPIED_MOVED)) {
            *ncopied &= ~COPIED_MOVED;
            wake_space(q);
        }
        if (r == 0)
            for (i = ncopied ? *ncopied : 0; i < *got; i++)
                map_rec(q, recs[i], lens[i]);
        if (r == 0)
            seq_found(&sl);
        if (r != -EAGAIN)
            return r;
        if (seq_missed(&sl, w))
            continue;
        r = wait_on(q, w, &q->hdr->data_seq, &q->hdr->wait_consumers, seq,
                    &o, &q->spin_data);
        if (r)
            return r;
    }
}

/* Frees taken records without the mutex: each becomes DONE (a final
 * state that only head_advance, under the mutex, acts on: the next locker
 * moves head past it; a producer finding the ring full does so before it
 * decides). Waiting producers are told, as for any space coming free. A
 * process killed between the stores leaves records DONE or still TAKEN,
 * both states the ring already knows. Each record goes TAKEN -> DONE by
 * compare-and-swap, and only while it names this process: a record a
 * peer reaped meanwhile (READY again, or taken by another consumer) is
 * never overwritten; -EINVAL then (it is no longer this process's). */
static int release_batch(shmkit_queue *q, struct rec **recs, size_t n)
{
    /* A version-1 queue may be shared with the previous library, whose
     * producers never move head before deciding the ring is full: there
     * the release moves head itself, under the mutex, as that library's
     * release did. */
    bool v1 = q->version == 1;
    uint32_t start, st;
    size_t i;
    pid_t me;
    int e = 0;

    if (v1 && (e = qlock(q)) != 0)
        return e;
    self_get(&me, &start);
    for (i = 0; i < n; i++) {
        st = REC_TAKEN;
        if (__atomic_load_n(&recs[i]->pid, __ATOMIC_RELAXED) != me ||
            !__atomic_compare_exchange_n(&recs[i]->state, &st, REC_DONE,
                                         false, __ATOMIC_RELEASE,
                                         __ATOMIC_RELAXED))
            e = -EINVAL;
    }
    if (v1) {
        head_advance(q);
        qunlock(q);
    }
    wake_space(q);
    return e;
}

int shmkit_queue_peek(shmkit_queue *q, const void **ptr, size_t *len,
                      const struct timespec *deadline)
{
    struct rec *rec;
    struct waiter w;
    size_t got, need;
    uint32_t rlen;
    int r;

    if (!q || !ptr || !len)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_peek: NULL");
    r = enter(q);
    if (r)
        return qfail(q, r, "peek");
    waiter_init(&w, deadline);
    r = take_batch(q, &rec, &rlen, 1, SIZE_MAX, &got, &need, &w, NULL, NULL);
    if (r)
        r = qfail_wait(q, r, "peek", deadline);
    leave(q);
    if (r)
        return r;
    *ptr = rec + 1;
    *len = rlen;
    return 0;
}

int shmkit_queue_release(shmkit_queue *q, const void *ptr)
{
    struct rec *r;
    int e;

    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_release: NULL");
    e = own_rec(q, ptr, REC_TAKEN, &r, NULL);
    if (e)
        return qfail(q, e, "release");
    e = release_batch(q, &r, 1);
    if (e)
        return qfail(q, e, "release");
    return 0;
}

int shmkit_queue_get_many(shmkit_queue *q, void *buf, size_t buflen,
                          struct iovec *msgs, size_t max, size_t *got,
                          const struct timespec *deadline)
{
    struct rec *recs[BATCH];
    uint32_t lens[BATCH];
    unsigned char *p = buf;
    size_t i, k = 0, need = 0, left, copied = 0;
    struct waiter w;
    int r;

    if (got)
        *got = 0;
    if (!q || !msgs || !got || (!buf && buflen) || !max)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_get_many: bad args");
    r = enter(q);
    if (r)
        return qfail(q, r, "get_many");
    waiter_init(&w, deadline);
    r = take_batch(q, recs, lens, max < BATCH ? max : BATCH, buflen, &k,
                   &need, &w, buf, &copied);
    if (r) {
        if (r == -EMSGSIZE)
            msgs[0].iov_len = need;
        r = qfail_wait(q, r, "get_many", deadline);
        leave(q);
        return r;
    }
    for (i = 0; i < k; i++) {
        size_t len = lens[i];

        if (i >= copied)
            memcpy(p, recs[i] + 1, len);
        msgs[i].iov_base = p;
        msgs[i].iov_len = len;
        left = buflen - (size_t)(p - (unsigned char *)buf);
        p += round16(len) < left ? round16(len) : left; /* as take_locked */
    }
    /* A batch with loans frees its copied records with them (take_locked) */
    r = copied < k ? release_batch(q, recs, k) : 0;
    leave(q); /* close waits for this: the copies above read the ring */
    if (r) /* -EINVAL: a peer gave a message of this call away meanwhile */
        return qfail(q, r == -EINVAL ? SHMKIT_ECORRUPT : r, "get_many");
    *got = k;
    return 0;
}

int shmkit_queue_peek_many(shmkit_queue *q, struct iovec *msgs, size_t max,
                           size_t *got, const struct timespec *deadline)
{
    struct rec *recs[BATCH];
    uint32_t lens[BATCH];
    size_t i, k = 0, need = 0;
    struct waiter w;
    int r;

    if (got)
        *got = 0;
    if (!q || !msgs || !got || !max)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_peek_many: bad args");
    r = enter(q);
    if (r)
        return qfail(q, r, "peek_many");
    waiter_init(&w, deadline);
    r = take_batch(q, recs, lens, max < BATCH ? max : BATCH, SIZE_MAX, &k,
                   &need, &w, NULL, NULL);
    if (r)
        r = qfail_wait(q, r, "peek_many", deadline);
    leave(q);
    if (r)
        return r;
    for (i = 0; i < k; i++) {
        msgs[i].iov_base = recs[i] + 1;
        msgs[i].iov_len = lens[i];
    }
    *got = k;
    return 0;
}

int shmkit_queue_release_many(shmkit_queue *q, const struct iovec *msgs,
                              size_t n)
{
    struct rec *recs[BATCH];
    size_t i, k;
    int e = 0, r;

    if (!q || (!msgs && n))
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_release_many: NULL");
    for (i = 0; i < n; i += k) {
        size_t m = 0;

        for (k = 0; k < BATCH && i + k < n; k++) {
            r = own_rec(q, msgs[i + k].iov_base, REC_TAKEN, &recs[m], NULL);
            if (r)
                e = e ? e : r;
            else
                m++;
        }
        r = m ? release_batch(q, recs, m) : 0;
        e = e ? e : r;
    }
    return e ? qfail(q, e, "release_many") : 0;
}

int shmkit_queue_get(shmkit_queue *q, void *buf, size_t buflen, size_t *len,
                     const struct timespec *deadline)
{
    struct iovec one;
    size_t got;
    int r;

    if (!len)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_get: len is NULL");
    r = shmkit_queue_get_many(q, buf, buflen, &one, 1, &got, deadline);
    if (r == 0 || r == -EMSGSIZE)
        *len = one.iov_len;
    return r;
}

/* ---- layout, create, attach, close --------------------------------------- */

/* The ring's offset for a header of a known version. */
static uint64_t ring_at(const struct queue_header *h)
{
    return h->version == 1 ? SHMKIT_QUEUE_HEADER : RING_AT_V2;
}

/* Checks a copy of the fixed header against the block size. Version 1
 * has no liveness slots; version 2 has LIVE_SLOTS of them right after
 * the header, and its ring at RING_AT_V2. */
static int header_check(const struct queue_header *h, size_t size)
{
    static const uint8_t zero[sizeof h->reserved];
    bool v1 = h->version == 1;

    if (h->version != 1 && h->version != 2)
        return SHMKIT_EVERSION;
    if (h->reserved0 || h->flags || memcmp(h->reserved, zero, sizeof zero) ||
        h->ring_offset != ring_at(h) ||
        h->slots_offset != (v1 ? 0 : SLOTS_AT) ||
        h->nslots != (v1 ? 0 : LIVE_SLOTS) || h->ring_size % 16 ||
        h->ring_size < QUEUE_MIN_RING || h->ring_size > QUEUE_MAX_RING ||
        !shmkit__mutex_valid(&h->lock))
        return SHMKIT_ECORRUPT;
    if (size < h->ring_offset || h->ring_size > size - h->ring_offset)
        return SHMKIT_ETRUNCATED;
    return 0;
}

/* Reads the magic, then the whole header, into *h. */
static int header_copy(const void *data, size_t size, struct queue_header *h)
{
    if (!data || size < sizeof h->magic)
        return SHMKIT_EKIND;
    memcpy(&h->magic, data, sizeof h->magic);
    if (h->magic != QUEUE_MAGIC)
        return SHMKIT_EKIND;
    if (size < sizeof *h)
        return SHMKIT_ETRUNCATED;
    memcpy(h, data, sizeof *h);
    return header_check(h, size);
}

/* Reads and checks block b's header from a pread copy, never the
 * mapping: a peer truncating the block meanwhile makes this
 * SHMKIT_ETRUNCATED (or SHMKIT_EKIND, SHMKIT_EEMPTY...), never SIGBUS. */
static int header_pread(const shmkit_block *b, struct queue_header *h)
{
    unsigned char img[sizeof *h];
    size_t size = shmkit_block_size(b);
    int r;

    r = shmkit__block_pread(b, 0, img, size < sizeof img ? size : sizeof img);
    return r < 0 ? r : header_copy(img, size, h);
}

/* Counts the slots held (word live, not marked dead) and the distinct
 * processes holding them, into in->slots_held and in->attached. */
static void live_count(const struct shmkit__live_slot *slots, unsigned n,
                       shmkit_queue_info *in)
{
    unsigned i, j, held = 0, procs = 0;

    in->slots = n;
    for (i = 0; i < n; i++) {
        uint32_t w = __atomic_load_n(&slots[i].word, __ATOMIC_RELAXED);
        int32_t p = __atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED);

        if (!w || (w & SHMKIT__FUTEX_OWNER_DIED))
            continue;
        held++;
        for (j = 0; j < i; j++) {
            uint32_t wj = __atomic_load_n(&slots[j].word, __ATOMIC_RELAXED);

            if (wj && !(wj & SHMKIT__FUTEX_OWNER_DIED) &&
                __atomic_load_n(&slots[j].pid, __ATOMIC_RELAXED) == p)
                break;
        }
        procs += j == i;
    }
    in->slots_held = held;
    in->attached = procs;
}

int shmkit_queue_slots(const void *data, size_t size, shmkit_queue_slot *out,
                       size_t max)
{
    const struct shmkit__live_slot *slots;
    struct queue_header h;
    size_t k = 0;
    unsigned i;
    int r = header_copy(data, size, &h);

    if (r)
        return r;
    slots = (const struct shmkit__live_slot *)((const char *)data +
                                               h.slots_offset);
    for (i = 0; i < h.nslots; i++) {
        uint32_t w = __atomic_load_n(&slots[i].word, __ATOMIC_RELAXED);

        if (!w)
            continue;
        if (k < max && out) {
            out[k].index = i;
            out[k].pid = __atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED);
            out[k].tid = w & SHMKIT__FUTEX_TID;
            out[k].died = (w & SHMKIT__FUTEX_OWNER_DIED) != 0;
            out[k].waiters = (w & SHMKIT__FUTEX_WAITERS) != 0;
        }
        k++;
    }
    return k > INT_MAX ? INT_MAX : (int)k;
}

int shmkit_queue_parse(const void *data, size_t size, shmkit_queue_info *info)
{
    struct queue_header h;
    shmkit_queue_info in;
    shmkit_queue q;
    int r = header_copy(data, size, &h);

    if (r)
        return r;
    memset(&in, 0, sizeof in);
    memset(&q, 0, sizeof q);
    q.ring = (unsigned char *)data + h.ring_offset;
    q.rs = h.ring_size;
    q.hdr = &h;
    if (state_check(&q) == 0)
        r = ring_walk(&q, h.head, h.tail, NULL, &in);
    else
        r = SHMKIT_ECORRUPT;
    if (r)
        return r;
    in.version = h.version;
    in.capacity = h.ring_size;
    in.max_message = h.ring_size - REC;
    in.max_messages = h.max_msgs;
    in.waiting_producers = h.wait_producers;
    in.waiting_consumers = h.wait_consumers;
    in.unfinished = h.unfinished;
    in.pid_ns = h.pid_ns;
    live_count((const struct shmkit__live_slot *)((const char *)data +
                                                  h.slots_offset),
               h.nslots, &in);
    if (info)
        *info = in;
    return 0;
}

shmkit_kind shmkit__queue_probe(const void *data, size_t size)
{
    struct queue_header h;

    return header_copy(data, size, &h) == 0 ? SHMKIT_KIND_QUEUE
                                            : SHMKIT_KIND_RAW;
}

struct queue_spec {
    uint64_t ring_size;
    uint32_t max_msgs;
};

/* Builds the header in a new, zero-filled block (see shmkit__publish). */
static int queue_fill(void *data, size_t size, void *arg)
{
    const struct queue_spec *s = arg;
    struct queue_header *h = data;
    int r;

    (void)size;
    h->version = QUEUE_VERSION;
    h->max_msgs = s->max_msgs;
    h->ring_offset = RING_AT_V2;
    h->slots_offset = SLOTS_AT;
    h->nslots = LIVE_SLOTS;
    h->ring_size = s->ring_size;
    h->pid_ns = shmkit__pid_ns();
    r = shmkit_mutex_init(&h->lock, 0);
    if (r == 0)
        __atomic_store_n(&h->magic, QUEUE_MAGIC, __ATOMIC_RELEASE);
    return r;
}

/* Makes a handle over a validated queue block and prefaults it. */
static int queue_wrap(shmkit_queue **out, shmkit_block *b,
                      const struct queue_header *h)
{
    shmkit_queue *q = calloc(1, sizeof *q);
    int r;

    if (!q)
        return -ENOMEM;
    r = shmkit_block_populate(b, 0, shmkit_block_size(b));
    if (r < 0) {
        free(q);
        return r;
    }
    q->block = b;
    q->hdr = shmkit_block_data(b);
    q->ring = (unsigned char *)q->hdr + h->ring_offset;
    q->version = h->version;
    if (h->nslots) {
        q->slots = (struct shmkit__live_slot *)((char *)q->hdr +
                                                h->slots_offset);
        q->nslots = h->nslots;
    }
    q->rs = h->ring_size;
    q->max_msgs = h->max_msgs;
    q->spin_data = SPIN_MAX_NS;
    q->spin_space = SPIN_MAX_NS;
    q->spin_lock = SPIN_MAX_NS;
    q->mapped_for = getpid(); /* prefaulted just now, by this process */
    map_init(q);
    *out = q;
    return 0;
}

int shmkit_queue_create(shmkit_queue **out, const char *name, size_t capacity,
                        size_t max_messages, unsigned flags)
{
    struct queue_spec s;
    struct queue_header h;
    shmkit_block *b;
    int r = 0;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_create: out is NULL");
    *out = NULL;
    if (capacity < QUEUE_MIN_RING || capacity > QUEUE_MAX_RING ||
        max_messages > UINT32_MAX || (flags & SHMKIT_RDONLY))
        r = -EINVAL;
    if (r)
        return shmkit__fail(NULL, r, "shmkit_queue_create(\"%s\", %zu, %zu)",
                            name ? name : "(generated)", capacity,
                            max_messages);
    s.ring_size = round16(capacity);
    s.max_msgs = (uint32_t)max_messages;
    r = shmkit__publish(&b, name, RING_AT_V2 + s.ring_size,
                        flags | SHMKIT_RESERVE, queue_fill, &s,
                        "shmkit_queue_create");
    if (r < 0)
        return r;
    r = header_pread(b, &h);
    if (r == 0)
        r = queue_wrap(out, b, &h);
    if (r < 0) {
        shmkit_block_unlink(b);
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_queue_create");
    }
    return 0;
}

int shmkit_queue_attach(shmkit_queue **out, const char *name, unsigned flags)
{
    struct queue_header h;
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_attach: out is NULL");
    *out = NULL;
    if (flags & SHMKIT_RDONLY)
        return shmkit__fail(NULL, -EINVAL,
                            "shmkit_queue_attach(\"%s\"): read-only", name);
    r = shmkit_block_attach(&b, name, flags);
    if (r < 0)
        return r;
    r = header_pread(b, &h);
    if (r == 0)
        r = shmkit__pid_ns_check(h.pid_ns);
    if (r == 0)
        r = queue_wrap(out, b, &h);
    /* Every page of a queue was allocated at create (reserved), so the
     * prefault can only fail for want of pages a peer took away: cut by a
     * truncation it may already have undone by the time the size is
     * checked (which would read as -ENOSPC). */
    if (r == -ENOSPC)
        r = SHMKIT_ETRUNCATED;
    if (r < 0) {
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_queue_attach(\"%s\")", name);
    }
    return 0;
}

int shmkit__queue_view(shmkit_queue **out, void *data, size_t size)
{
    struct queue_header h;
    shmkit_queue *q;
    int r = header_copy(data, size, &h);

    if (r)
        return r;
    q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->hdr = data;
    q->ring = (unsigned char *)data + h.ring_offset;
    q->version = h.version;
    /* No slots: a view must never hand its memory to the helper thread's
     * robust list (it is freed without a close). */
    q->rs = h.ring_size;
    q->max_msgs = h.max_msgs;
    *out = q;
    return 0;
}

void shmkit__queue_view_free(shmkit_queue *q)
{
    free(q);
}

void shmkit__queue_view_arm(shmkit_queue *q)
{
    if (q->block || q->version < 2) /* validated: slots at SLOTS_AT */
        return;
    q->slots = (struct shmkit__live_slot *)((char *)q->hdr + SLOTS_AT);
    q->nslots = LIVE_SLOTS;
}

void shmkit_queue_shutdown(shmkit_queue *q)
{
    uint32_t n;

    __atomic_store_n(&q->closing, 1, __ATOMIC_SEQ_CST);
    while ((n = __atomic_load_n(&q->active, __ATOMIC_SEQ_CST)) != 0) {
        /* Wake our sleepers (others wake spuriously and sleep again). */
        __atomic_fetch_add(&q->hdr->data_seq, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&q->hdr->space_seq, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&q->hdr->tasks_seq, 1, __ATOMIC_SEQ_CST);
        shmkit__os.futex_wake(&q->hdr->data_seq, INT_MAX);
        shmkit__os.futex_wake(&q->hdr->space_seq, INT_MAX);
        shmkit__os.futex_wake(&q->hdr->tasks_seq, INT_MAX);
        shmkit__os.futex_wait(&q->active, n, NULL);
    }
}

void shmkit_queue_leave(shmkit_queue *q)
{
    pid_t me;
    uint32_t start;

    if (!q || !q->slots || !q->block) /* a view takes none */
        return;
    self_get(&me, &start);
    shmkit__live_release(&q->live, me);
}

int shmkit_queue_close(shmkit_queue *q)
{
    int r;

    if (!q)
        return 0;
    shmkit_queue_shutdown(q);
    shmkit_queue_leave(q); /* off the helper's robust list before the unmap */
    r = shmkit_block_close(q->block);
    if (r < 0) {
        __atomic_store_n(&q->closing, 0, __ATOMIC_SEQ_CST);
        return r;
    }
    free(q);
    return 0;
}

/* ---- task counting (JoinableQueue) ---------------------------------------- */

int shmkit_queue_task_add(shmkit_queue *q, size_t n)
{
    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_task_add: NULL");
    __atomic_fetch_add(&q->hdr->unfinished, (uint64_t)n, __ATOMIC_SEQ_CST);
    return 0;
}

int shmkit_queue_task_done(shmkit_queue *q)
{
    uint64_t v;

    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_task_done: NULL");
    v = __atomic_load_n(&q->hdr->unfinished, __ATOMIC_SEQ_CST);
    do {
        if (v == 0)
            return qfail(q, -EOVERFLOW, "task_done");
    } while (!__atomic_compare_exchange_n(&q->hdr->unfinished, &v, v - 1,
                                          false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    if (v == 1) {
        __atomic_fetch_add(&q->hdr->tasks_seq, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&q->hdr->wait_joiners, __ATOMIC_SEQ_CST))
            shmkit__os.futex_wake(&q->hdr->tasks_seq, INT_MAX);
    }
    return 0;
}

int shmkit_queue_join(shmkit_queue *q, const struct timespec *deadline)
{
    struct waiter w;
    int r;

    if (!q)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_join: NULL");
    r = enter(q);
    if (r)
        return qfail(q, r, "join");
    waiter_init(&w, deadline);
    for (;;) {
        uint32_t seq = __atomic_load_n(&q->hdr->tasks_seq, __ATOMIC_SEQ_CST);

        if (__atomic_load_n(&q->hdr->unfinished, __ATOMIC_SEQ_CST) == 0)
            break;
        r = wait_on(q, &w, &q->hdr->tasks_seq, &q->hdr->wait_joiners, seq,
                    NULL, NULL);
        if (r)
            break;
    }
    if (r)
        r = qfail(q, r, "join");
    leave(q);
    return r;
}

int shmkit_queue_unlink(shmkit_queue *q)
{
    return shmkit_block_unlink(q->block);
}

shmkit_block *shmkit_queue_block(shmkit_queue *q)
{
    return q->block;
}

size_t shmkit_queue_max_message(const shmkit_queue *q)
{
    return max_message(q);
}

void shmkit_queue_set_interruptible(shmkit_queue *q, bool on)
{
    q->interruptible = on;
}

int shmkit_queue_stat(shmkit_queue *q, shmkit_queue_info *info)
{
    shmkit_queue_info in;
    int r;

    if (!q || !info)
        return shmkit__fail(NULL, -EINVAL, "shmkit_queue_stat: NULL");
    memset(&in, 0, sizeof in);
    r = qlock_by(q, SHMKIT_NOWAIT);
    if (r)
        return qfail(q, r, "stat");
    r = ring_walk(q, q->hdr->head, q->hdr->tail, NULL, &in);
    qunlock(q);
    if (r)
        return qfail(q, r, "stat");
    in.version = q->version;
    in.capacity = q->rs;
    in.max_message = shmkit_queue_max_message(q);
    in.max_messages = q->max_msgs;
    in.waiting_producers = __atomic_load_n(&q->hdr->wait_producers,
                                           __ATOMIC_RELAXED);
    in.waiting_consumers = __atomic_load_n(&q->hdr->wait_consumers,
                                           __ATOMIC_RELAXED);
    in.unfinished = __atomic_load_n(&q->hdr->unfinished, __ATOMIC_RELAXED);
    in.pid_ns = q->hdr->pid_ns;
    if (q->slots)
        live_count(q->slots, q->nslots, &in);
    *info = in;
    return 0;
}
