/*
 * fuzz_queue.c - libFuzzer target over a queue's header and ring.
 *
 * The input becomes an in-memory queue image in a heap buffer of its
 * exact size (any access past it is an ASan report) and the library's
 * own code runs over it through shmkit__queue_view: parse, stat, and
 * every operation with SHMKIT_NOWAIT, so nothing sleeps and no /dev/shm
 * object is made. The magic and a valid, unlocked mutex are written over
 * the input (the mutex's robustness is the lock's own fuzz target); all
 * else - version, sizes, head, tail, counts, every record - is the
 * fuzzer's.
 *
 * Input:  byte 0      which operations run, and in which order
 *         bytes 1-2   ring bytes R (little endian, modulo 8192)
 *         rest        the image, zero-padded: 256 + R bytes, or
 *                     4096 + R for a version-2 image (image byte 4 is 2:
 *                     the liveness slots lie between header and ring)
 * Properties (abort on violation): every call returns 0 or a negative
 * code; a message handed out lies inside the ring; parse and view agree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "objects/queue_internal.h"

static unsigned char out[1 << 14];

static void check(int r)
{
    if (r > 0)
        abort();
}

static void run(shmkit_queue *q, unsigned ops, const unsigned char *ring,
                size_t ringlen)
{
    struct iovec v[8], in[2] = {{out, 24}, {out, 1000}};
    shmkit_queue_info info;
    const void *p;
    size_t len, got;
    void *w;
    int r;

    check(shmkit_queue_stat(q, &info));
    if (ops & 1) {
        r = shmkit_queue_peek(q, &p, &len, SHMKIT_NOWAIT);
        check(r);
        if (r == 0) {
            if ((const unsigned char *)p < ring ||
                (const unsigned char *)p + len > ring + ringlen)
                abort();
            memcpy(out, p, len < sizeof out ? len : sizeof out);
            check(shmkit_queue_release(q, p));
        }
    }
    if (ops & 2) {
        r = shmkit_queue_reserve(q, 40 + (ops >> 4), &w, SHMKIT_NOWAIT);
        check(r);
        if (r == 0) {
            memset(w, 0xab, 40 + (ops >> 4));
            check(ops & 4 ? shmkit_queue_commit(q, w, 3)
                          : shmkit_queue_cancel(q, w));
        }
    }
    if (ops & 8)
        check(shmkit_queue_put_many(q, in, 2, &got, SHMKIT_NOWAIT));
    check(shmkit_queue_get(q, out, sizeof out, &len, SHMKIT_NOWAIT));
    check(shmkit_queue_get_many(q, out, sizeof out, v, 8, &got,
                                SHMKIT_NOWAIT));
    check(shmkit_queue_put(q, out, 100, SHMKIT_NOWAIT));
    check(shmkit_queue_stat(q, &info));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t magic = 0x55514b53u;
    unsigned char *img;
    shmkit_queue *q;
    size_t ring, n, at;
    int parsed, viewed;

    if (size < 3)
        return 0;
    ring = (size_t)(data[1] | data[2] << 8) % 8192;
    /* A version-2 image (its version byte, at 4, says 2) has the slot
     * table between the header and the ring. */
    at = size > 3 + 4 && data[3 + 4] == 2 ? SHMKIT_QUEUE_RING_V2
                                           : SHMKIT_QUEUE_HEADER;
    n = at + ring;
    img = calloc(1, n);
    if (!img)
        return 0;
    memcpy(img, data + 3, size - 3 < n ? size - 3 : n);
    memcpy(img, &magic, sizeof magic);
    if (shmkit_mutex_init((shmkit_mutex *)(img + 64), 0) != 0)
        abort();
    parsed = shmkit_queue_parse(img, n, NULL);
    viewed = shmkit__queue_view(&q, img, n);
    check(parsed);
    check(viewed);
    if (viewed == 0) {
        run(q, data[0], img + at, ring);
        shmkit__queue_view_free(q);
    }
    shmkit_mutex_destroy((shmkit_mutex *)(img + 64));
    free(img);
    return 0;
}
