/*
 * fuzz_queue_slots.c - libFuzzer target over a version-2 queue's liveness
 * slots and the records that make waiters arm them.
 *
 * fuzz_queue runs the queue with SHMKIT_NOWAIT over any image; its views
 * never arm a slot, so none of the slot code runs there. Here the image
 * is always a version-2 queue (the shape fields are written over the
 * input: version 2, ring at 4096, 120 slots at 256, the ring size from
 * bytes 1-2), the table and the ring are the fuzzer's, and:
 *   - shmkit_queue_slots and shmkit_queue_parse read the table;
 *   - the view arms the image's slots (shmkit__queue_view_arm, never
 *     takes one), and blocking get/put/peek with a deadline 200 us away
 *     wait behind the fuzzer's records: owners_arm, shmkit__live_arm,
 *     futex_waitv on the armed words, owners_check, owners_died, reaping;
 *   - shmkit__live_arm and shmkit__live_died directly, for the owner of
 *     the first record.
 * A real live owner is needed for a slot to arm (its word must name one
 * of the owner's threads): every aligned word of the table and ring that
 * holds PID_MARK is replaced by this process's parent's pid (alive, its
 * leader's tid is its pid) and START_MARK by its start time's low bits.
 *
 * Input:  byte 0      which operations run (bits), slots listed (>> 4)
 *         bytes 1-2   ring bytes R (little endian, modulo 8192; >= 32)
 *         rest        the image, zero-padded to 4096 + R bytes
 * Properties (abort on violation): every call returns 0 or a negative
 * code (get/put/peek: 0, -EAGAIN, -ETIMEDOUT or a code); listed slots
 * are at most 120 with indexes inside the table; a word live_arm hands
 * back is a slot's word of the table; a message handed out lies inside
 * the ring.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/os.h"
#include "objects/queue_internal.h"
#include "sync/live.h"

#define RING_AT 4096
#define SLOTS_AT 256
#define NSLOTS 120
#define PID_MARK 0x3ffffffeu
#define START_MARK 0x3ffffffdu

static unsigned char out[1 << 14];

static void check(int r)
{
    if (r > 0)
        abort();
}

static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static void soon(struct timespec *d)
{
    clock_gettime(CLOCK_MONOTONIC, d);
    d->tv_nsec += 200000;
    if (d->tv_nsec >= 1000000000L) {
        d->tv_sec++;
        d->tv_nsec -= 1000000000L;
    }
}

static void arm_first_owner(unsigned char *img, size_t ring)
{
    struct shmkit__live_slot *slots =
        (struct shmkit__live_slot *)(img + SLOTS_AT);
    uint32_t *word = NULL, val = 0;
    int32_t pid;
    uint32_t start;
    enum shmkit__live_state st;
    uintptr_t w, lo = (uintptr_t)slots, hi = (uintptr_t)(slots + NSLOTS);

    if (ring < 16)
        return;
    memcpy(&pid, img + RING_AT + 8, 4);
    memcpy(&start, img + RING_AT + 12, 4);
    st = shmkit__live_arm(slots, NSLOTS, pid, start, &word, &val);
    if (st == SHMKIT__LIVE_NONE)
        return;
    w = (uintptr_t)word;
    if (w < lo || w >= hi ||
        (w - lo) % sizeof *slots != offsetof(struct shmkit__live_slot, word))
        abort();
    (void)shmkit__live_died(word, pid, start);
}

static void run(shmkit_queue *q, unsigned ops, const unsigned char *ring,
                size_t ringlen)
{
    struct timespec d;
    const void *p;
    size_t len;
    int r;

    if (ops & 1) {
        soon(&d);
        check(shmkit_queue_get(q, out, sizeof out, &len, &d));
    }
    if (ops & 2) {
        soon(&d);
        check(shmkit_queue_put(q, out, 24 + (ops >> 4) * 97, &d));
    }
    if (ops & 4) {
        soon(&d);
        r = shmkit_queue_peek(q, &p, &len, &d);
        check(r);
        if (r == 0) {
            if ((const unsigned char *)p < ring ||
                (const unsigned char *)p + len > ring + ringlen)
                abort();
            check(shmkit_queue_release(q, p));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t magic = 0x55514b53u;
    shmkit_queue_slot listed[16];
    shmkit_queue_info info;
    unsigned char *img;
    shmkit_queue *q;
    size_t ring, n, i;
    uint64_t pst = 0;
    pid_t ppid = getppid();
    int r, k;

    if (size < 3)
        return 0;
    ring = ((size_t)(data[1] | data[2] << 8) % 8192) & ~(size_t)15;
    if (ring < 32)
        ring = 32;
    n = RING_AT + ring;
    img = calloc(1, n);
    if (!img)
        return 0;
    memcpy(img, data + 3, size - 3 < n ? size - 3 : n);
    shmkit__os.proc_start(ppid, &pst);
    for (i = SLOTS_AT; i + 4 <= n; i += 4) {
        uint32_t v;

        memcpy(&v, img + i, 4);
        if (v == PID_MARK)
            put32(img + i, (uint32_t)ppid);
        else if (v == START_MARK)
            put32(img + i, (uint32_t)pst);
    }
    memcpy(img, &magic, sizeof magic);
    put16(img + 4, 2);
    put64(img + 16, RING_AT);
    put64(img + 24, ring);
    put32(img + 40, SLOTS_AT);
    put32(img + 44, NSLOTS);
    if (shmkit_mutex_init((shmkit_mutex *)(img + 64), 0) != 0)
        abort();
    k = (int)(data[0] >> 4);
    r = shmkit_queue_slots(img, n, k ? listed : NULL, (size_t)k);
    if (r > NSLOTS)
        abort();
    for (i = 0; r > 0 && i < (size_t)(r < k ? r : k); i++)
        if (listed[i].index >= NSLOTS)
            abort();
    r = shmkit_queue_parse(img, n, &info);
    check(r);
    if (r == 0 && info.slots_held > NSLOTS)
        abort();
    if (data[0] & 8)
        arm_first_owner(img, ring);
    if (shmkit__queue_view(&q, img, n) == 0) {
        shmkit__queue_view_arm(q);
        run(q, data[0], img + RING_AT, ring);
        shmkit__queue_view_free(q);
    }
    shmkit_mutex_destroy((shmkit_mutex *)(img + 64));
    free(img);
    return 0;
}
