/*
 * live.c - liveness slots and the "shmkit-live" thread that holds them
 * (see live.h for what they are and the rules of a slot).
 *
 * The thread has its own robust list head (registered with
 * set_robust_list from the thread itself, replacing the C library's for
 * that thread, which never takes a C library robust mutex). Its entries
 * are the `next` fields of the slots it holds, kept in the order of the
 * private array `held` (head -> held[n-1] -> ... -> held[0] -> head), so
 * that linking and unlinking are one pointer store each and the list is
 * whole at every instant a SIGKILL may land. Pointers in shared memory are
 * written, never followed: the list is rebuilt from `held` alone. The
 * kernel's protocol is the C library's: list_op_pending names the entry
 * around each change.
 *
 * A process holds one slot per queue: a handle whose table already has
 * our slot (seen through another mapping of the same queue: our thread's
 * word, our pid and start, and the list link of one of our entries) joins
 * that entry's holders; the slot stays linked through a holder's mapping,
 * relinked through another's before the one it was linked through is
 * unmapped. A peer that forges such a slot (it can read our links in a
 * queue it shares with us) could make a handle share the wrong entry: its
 * records then have no slot of their own, and the other queue's slot may
 * end up linked through the forged one, so that its waiters are not woken
 * by our death and find it only by their once-a-second look at the
 * owners - as with a forged slot.
 *
 * The thread only lends its robust list and its thread id: once it has
 * registered the list and said its id, the callers take and drop slots
 * themselves, one at a time (`call_mu` serialises them, and fork), with
 * no round trip to the thread (two of them, one at the first record and
 * one at close, took ~10 us each here, most of an attach + put + close).
 * The kernel walks the list when the thread exits, which, for a process
 * killed while a caller is in the middle of a change, may be a moment
 * before that caller stops: so every change is one pointer store at a
 * time behind a full fence, and list_op_pending names the entry around
 * it, as the C library does for its own thread. The one order the old
 * requests ruled out and this does not: a caller whose CPU still runs its
 * claim after the kill has reached the thread and the kernel has walked
 * the list (the kill interrupts the caller at once, by an interrupt to
 * its CPU, while the thread's exit takes several microseconds to reach
 * the walk, so this needs the caller's CPU stalled in between, e.g. a
 * preempted virtual CPU). The slot then names a thread that no longer
 * exists, unmarked: a waiter arming after that trusts no such word
 * (live_arm checks that the thread is one of the pid's) and takers
 * reclaim the slot (pass 2 of take); a waiter that armed in the few
 * microseconds before the thread was gone is not woken by the slot, and
 * finds the death at its next look at the owners, at most a second later
 * (ARMED_RECHECK_S in src/objects/queue.c). `mu` and `cv` carry the thread's start-up handshake and
 * its stop.
 *
 * A thread that holds no slot (every handle that made a record closed,
 * or the only take found the table full) is stopped and joined by fork's
 * prepare handler, under call_mu (so no take can come in between), before
 * the fork: the parent forks single-threaded as far as we are concerned,
 * and CPython 3.12+, which counts the threads after fork returns in the
 * parent, does not warn ("This process is multi-threaded"); the next take
 * starts a thread again (~40-60 us). Not at the last close: a process that
 * opens, uses and closes a queue in a loop would pay a thread start and a
 * join each time (attach + put + get + close: ~50 -> ~130 us here).
 * pthread_join returns when the kernel clears the thread's id, a moment
 * before the process stops counting the thread (/proc/self/stat's
 * num_threads, which CPython reads); for that the handler re-checks with
 * tgkill(pid, tid, 0), which fails exactly when it has, yielding in
 * between, for at most 10 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/os.h"
#include "sync/live.h"
#include "sync/sync_internal.h"

#define W_WAITERS SHMKIT__FUTEX_WAITERS
#define W_DIED SHMKIT__FUTEX_OWNER_DIED
#define W_TID SHMKIT__FUTEX_TID

/* Most slots one process holds (one per queue it made a record in);
 * the kernel walks at most 2048 entries of a robust list. */
#define HELD_MAX 1024

/* Between the stores of a list change: the kernel reads the list from
 * the helper thread's exit, maybe on another CPU than the changer's. */
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* The kernel's struct robust_list_head. */
struct robust_head {
    void *list;
    long futex_offset;
    void *list_op_pending;
};

static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int state;      /* under call_mu: 0 none, 1 up, -1 broken */
static int helper_tid; /* set by the thread, under mu, once its list is in */
static pthread_t helper;  /* under call_mu, while state > 0 */
static bool helper_stop;  /* under mu: the thread returns */

/* The thread's robust list (registered by it) and the slots on it:
 * changed under call_mu only (and reset in a fork child). */
static struct robust_head head;
static struct shmkit__live_slot *held[HELD_MAX];
static unsigned nheld;
/* Each held slot's holders (handles of one queue, each with its own
 * mapping; held[k] is one of theirs), listed through hold->next. */
static struct shmkit__live_hold *holders[HELD_MAX];

void shmkit__live_wake_all(uint32_t *word)
{
    shmkit__os.futex_wake(word, INT_MAX);
}

/* ---- the list (under call_mu) -------------------------------------- */

/* The entry that held[k] follows (what its `next` holds). */
static void *after(unsigned k)
{
    return k ? (void *)&held[k - 1]->u.next : (void *)&head;
}

/* Turns a free slot into ours: word 0 -> our tid, then start, then pid
 * (readers that see the pid see the rest), then linked first. */
static bool claim(struct shmkit__live_slot *s, pid_t pid, uint32_t start)
{
    head.list_op_pending = &s->u.next;
    FENCE();
    if (!shmkit__cas32(&s->word, 0, (uint32_t)helper_tid)) {
        head.list_op_pending = NULL;
        return false;
    }
    __atomic_store_n(&s->start, start, __ATOMIC_RELAXED);
    __atomic_store_n(&s->pid, pid, __ATOMIC_RELEASE);
    s->u.next = after(nheld);
    FENCE();
    held[nheld++] = s;
    head.list = &s->u.next;
    FENCE();
    head.list_op_pending = NULL;
    return true;
}

/* Frees a slot whose holder is gone (its word read w): pid first, by
 * compare and swap (a slot taken again meanwhile keeps its new pid), then
 * the word; wakes its sleepers. True if the word is now 0. */
static bool clear_dead(struct shmkit__live_slot *s, uint32_t w)
{
    int32_t p = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);

    if (shmkit__load32(&s->word) != w)
        return false;
    __atomic_compare_exchange_n(&s->pid, &p, 0, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    if (!shmkit__cas32(&s->word, w, 0))
        return false;
    if (w & W_WAITERS)
        shmkit__live_wake_all(&s->word);
    return true;
}

/* Pass 0 takes a free slot, pass 1 one whose holder the kernel marked
 * dead, pass 2 one whose process is gone without that mark (its list was
 * lost: a scribbled entry, or a crash inside the list code). */
static struct shmkit__live_slot *take(struct shmkit__live_slot *slots,
                                      unsigned n, pid_t pid, uint32_t start)
{
    unsigned pass, i;
    uint64_t st;

    if (nheld == HELD_MAX)
        return NULL;
    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < n; i++) {
            struct shmkit__live_slot *s = &slots[i];
            uint32_t w = shmkit__load32(&s->word);
            int32_t p;

            if (pass == 1 && !(w & W_DIED))
                continue;
            if (pass == 2) {
                p = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
                if (w == 0 || (w & W_DIED) || p <= 0 || p == pid ||
                    shmkit__os.proc_start(p, &st) != -ESRCH)
                    continue;
            }
            if (pass > 0 && !clear_dead(s, w))
                continue;
            if (claim(s, pid, start))
                return s;
        }
    }
    return NULL;
}

/* Unlinks and frees held slot j: one store unlinks it, then pid and the
 * word are cleared, waking a waiter that armed meanwhile. */
static void drop(unsigned j)
{
    struct shmkit__live_slot *s = held[j];
    unsigned k;
    uint32_t w;

    head.list_op_pending = &s->u.next;
    FENCE();
    if (j == nheld - 1)
        head.list = after(j);
    else
        held[j + 1]->u.next = after(j);
    FENCE();
    for (k = j; k + 1 < nheld; k++) {
        held[k] = held[k + 1];
        holders[k] = holders[k + 1];
    }
    nheld--;
    w = shmkit__load32(&s->word);
    if ((w & W_TID) == (uint32_t)helper_tid) {
        /* A scribbled word naming another thread is left alone. */
        __atomic_store_n(&s->pid, 0, __ATOMIC_SEQ_CST);
        while (!shmkit__cas32(&s->word, w, 0)) {
            w = shmkit__load32(&s->word);
            if ((w & W_TID) != (uint32_t)helper_tid)
                break;
        }
        if (w & W_WAITERS)
            shmkit__live_wake_all(&s->word);
    }
    FENCE();
    head.list_op_pending = NULL;
}

/* Still (pid, start)'s? Read after the word: a taker writes pid after
 * the word, the kernel's death mark leaves pid as it was. */
static bool names(const struct shmkit__live_slot *s, pid_t pid, uint32_t start)
{
    return __atomic_load_n(&s->pid, __ATOMIC_SEQ_CST) == pid &&
           __atomic_load_n(&s->start, __ATOMIC_RELAXED) == start;
}

/* The slot of slots[0..n) this process holds already, seen through
 * another mapping of the same queue: our thread's word, our pid and
 * start, and the list link of one of our entries (each entry's link
 * differs: it names its own predecessor). Its entry, or -1; *out gets
 * its address in this mapping. */
static int shared_entry(struct shmkit__live_slot *slots, unsigned n,
                        pid_t pid, uint32_t start,
                        struct shmkit__live_slot **out)
{
    unsigned i, j;

    for (i = 0; i < n; i++) {
        struct shmkit__live_slot *s = &slots[i];
        uint32_t w = shmkit__load32(&s->word);
        void *link;

        if ((w & W_TID) != (uint32_t)helper_tid || (w & W_DIED) ||
            !names(s, pid, start))
            continue;
        link = __atomic_load_n(&s->u.next, __ATOMIC_RELAXED);
        for (j = 0; j < nheld; j++)
            if (held[j]->u.next == link) {
                *out = s;
                return (int)j;
            }
    }
    return -1;
}

/* Held slot j is linked through a mapping about to go: links it through
 * ns, the same slot in another holder's mapping. Its own link is the same
 * memory, already right; one store moves its predecessor's. */
static void relink(unsigned j, struct shmkit__live_slot *ns)
{
    head.list_op_pending = &ns->u.next;
    FENCE();
    if (j == nheld - 1)
        head.list = &ns->u.next;
    else
        held[j + 1]->u.next = &ns->u.next;
    FENCE();
    held[j] = ns;
    head.list_op_pending = NULL;
}

/* hold lets go of its slot: the last holder frees it; one through whose
 * mapping it is linked hands the link to another. */
static void let_go(struct shmkit__live_hold *hold)
{
    struct shmkit__live_hold **p;
    unsigned j;

    for (j = 0; j < nheld; j++)
        for (p = &holders[j]; *p; p = &(*p)->next)
            if (*p == hold) {
                *p = hold->next;
                if (!holders[j])
                    drop(j);
                else if (held[j] == hold->slot)
                    relink(j, holders[j]->slot);
                return;
            }
}

/* The thread: registers its robust list, says its id, and sleeps (all
 * signals blocked), holding whatever slots the callers link onto its
 * list, until told to stop (with none linked). */
static void *helper_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "shmkit-live");
    head.list = &head;
    head.futex_offset = (long)offsetof(struct shmkit__live_slot, word) -
                        (long)offsetof(struct shmkit__live_slot, u.next);
    head.list_op_pending = NULL;
    pthread_mutex_lock(&mu);
    helper_tid = shmkit__os.gettid();
    if (shmkit__os.robust_list_set(&head, sizeof head) < 0)
        helper_tid = -1;
    pthread_cond_broadcast(&cv);
    while (!helper_stop)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ---- the callers' side --------------------------------------------- */

static void stop_if_idle(void);

/* Takes both mutexes for the fork, after stopping a thread that holds no
 * slot (see the top of the file). */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&call_mu);
    stop_if_idle();
    pthread_mutex_lock(&mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&call_mu);
}

/* The child has no helper thread and holds none of the parent's slots. */
static void atfork_child(void)
{
    pthread_mutex_init(&call_mu, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&cv, NULL);
    state = 0;
    helper_tid = 0;
    helper_stop = false;
    nheld = 0;
    memset(&head, 0, sizeof head);
}

static void atfork_once(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Takes call_mu, the fork handlers registered first: a fork while a
 * caller holds call_mu must find them (a child that inherited call_mu
 * locked, with no handler to reset it, hung at its first record). */
static void call_lock(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, atfork_once);
    pthread_mutex_lock(&call_mu);
}

/* Under call_mu: starts the thread (signals blocked: it must never run a
 * handler of the program's) and waits until it serves. */
static int start_thread(void)
{
    sigset_t all, old;
    int e;

    if (state)
        return state > 0 ? 0 : -EAGAIN;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&helper, NULL, helper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        state = -1;
        return -e;
    }
    pthread_mutex_lock(&mu);
    while (!helper_tid)
        pthread_cond_wait(&cv, &mu);
    if (helper_tid < 0) /* no robust list: of no use, and never again */
        helper_stop = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (helper_tid < 0) {
        pthread_join(helper, NULL);
        helper_stop = false;
        state = -1;
        return -EAGAIN;
    }
    state = 1;
    return 0;
}

/* Under call_mu (fork's prepare handler): stops and joins the thread if
 * it holds no slot, so the process has no thread of ours left; the next
 * take starts one again. */
static void stop_if_idle(void)
{
    struct timespec t0, now;
    pid_t me;
    int tid;

    if (state <= 0 || nheld)
        return;
    pthread_mutex_lock(&mu);
    helper_stop = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(helper, NULL);
    tid = helper_tid;
    state = 0;
    helper_tid = 0;
    helper_stop = false;
    /* Joined: gone from the process's thread count a moment later. */
    me = getpid();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (shmkit__os.thread_of(me, tid) == 1) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000000000L + now.tv_nsec -
                t0.tv_nsec > 10000000L)
            break; /* its id reused meanwhile: nothing to wait for */
        sched_yield();
    }
}

void shmkit__live_hold(struct shmkit__live_hold *hold,
                       struct shmkit__live_slot *slots, unsigned n, pid_t pid,
                       uint32_t start)
{
    call_lock();
    if (__atomic_load_n(&hold->pid, __ATOMIC_ACQUIRE) != pid) {
        struct shmkit__live_slot *s = NULL;
        int j = -1;

        if (start_thread() == 0) {
            j = shared_entry(slots, n, pid, start, &s);
            if (j < 0 && (s = take(slots, n, pid, start)) != NULL)
                j = (int)nheld - 1, holders[j] = NULL;
        }
        if (s) {
            hold->next = holders[j];
            holders[j] = hold;
        }
        hold->slot = s;
        __atomic_store_n(&hold->pid, pid, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&call_mu);
}

void shmkit__live_release(struct shmkit__live_hold *hold, pid_t pid)
{
    call_lock();
    if (__atomic_load_n(&hold->pid, __ATOMIC_ACQUIRE) == pid && hold->slot &&
        state > 0)
        let_go(hold);
    hold->slot = NULL;
    __atomic_store_n(&hold->pid, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&call_mu);
}

int shmkit__live_thread_id(void)
{
    int t;

    call_lock();
    t = state > 0 ? helper_tid : 0;
    pthread_mutex_unlock(&call_mu);
    return t;
}

/* ---- the waiters' side ---------------------------------------------- */

static struct shmkit__live_slot *find(struct shmkit__live_slot *slots,
                                      unsigned n, pid_t pid, uint32_t start)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (__atomic_load_n(&slots[i].pid, __ATOMIC_ACQUIRE) == pid &&
            __atomic_load_n(&slots[i].start, __ATOMIC_RELAXED) == start)
            return &slots[i];
    return NULL;
}

bool shmkit__live_died(const uint32_t *word, pid_t pid, uint32_t start)
{
    const struct shmkit__live_slot *s =
        (const struct shmkit__live_slot *)((const char *)word -
                                           offsetof(struct shmkit__live_slot,
                                                    word));

    return (__atomic_load_n(word, __ATOMIC_SEQ_CST) & W_DIED) &&
           names(s, pid, start);
}

enum shmkit__live_state shmkit__live_arm(struct shmkit__live_slot *slots,
                                         unsigned n, pid_t pid,
                                         uint32_t start, uint32_t **word,
                                         uint32_t *val)
{
    struct shmkit__live_slot *s;
    unsigned tries;
    uint32_t w;

    if (pid <= 0)
        return SHMKIT__LIVE_NONE;
    for (tries = 0; tries < 4; tries++) {
        s = find(slots, n, pid, start);
        if (!s)
            return SHMKIT__LIVE_NONE;
        w = shmkit__load32(&s->word);
        if (w & W_DIED) {
            if (!names(s, pid, start))
                continue; /* another's death, in a slot taken again */
            *word = &s->word; /* whose other waiters to wake */
            return SHMKIT__LIVE_DIED;
        }
        if (w == 0 || !shmkit__os.thread_of(pid, (int)(w & W_TID)))
            return SHMKIT__LIVE_NONE;
        if (!(w & W_WAITERS)) {
            if (!shmkit__cas32(&s->word, w, w | W_WAITERS))
                continue;
            w |= W_WAITERS;
        }
        /* Still pid's? (freed and taken again between find and the CAS:
         * the taker's pid follows its word, see live.h) */
        if (!names(s, pid, start))
            continue;
        *word = &s->word;
        *val = w;
        return SHMKIT__LIVE_ARMED;
    }
    return SHMKIT__LIVE_NONE;
}
