/*
 * fuzz_lock.c - libFuzzer target over hostile bytes in a live mutex and
 * condition: a freshly initialised pair (optionally locked by this
 * thread) has the input's first 128 bytes xor'ed into it, then the rest
 * of the input picks operations. Every call must answer one of its
 * documented codes; never a crash, never a hang (timed calls only: a
 * blocking lock on a word that names a live thread waits for it, as for
 * any holder). Works on private memory, no /dev/shm objects.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DSHMKIT_FUZZ=ON
 * Run:   build-fuzz/tests/fuzz_lock tests/fuzz/corpus/fuzz_lock
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "../lock_answers.h"

struct pair {
    shmkit_mutex m;
    shmkit_cond c;
};

static _Alignas(64) struct pair P;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *p = (unsigned char *)&P;
    struct timespec dl;
    size_t i;

    if (size < 2)
        return 0;
    shmkit_mutex_init(&P.m, data[0] & 1 ? SHMKIT_MUTEX_RECURSIVE : 0);
    shmkit_cond_init(&P.c);
    if (data[0] & 2)
        shmkit_mutex_lock(&P.m);
    data++, size--;
    for (i = 0; i < sizeof P && i < size; i++)
        p[i] ^= data[i];
    for (; i < size; i++) {
        shmkit_mutex_info info;
        int r;

        switch (data[i] % 10) {
        case 0: r = shmkit_mutex_trylock(&P.m); break;
        case 1:
            shmkit_deadline(&dl, 0.0005);
            r = shmkit_mutex_timedlock(&P.m, &dl);
            break;
        case 2: r = shmkit_mutex_unlock(&P.m); break;
        case 3: r = shmkit_mutex_consistent(&P.m); break;
        case 4:
            shmkit_deadline(&dl, 0.0005);
            r = shmkit_cond_timedwait(&P.c, &P.m, &dl);
            break;
        case 5: r = shmkit_cond_signal(&P.c); break;
        case 6: r = shmkit_cond_broadcast(&P.c); break;
        case 7: r = shmkit_mutex_inspect(&P.m, &info); break;
        case 8: r = shmkit_mutex_destroy(&P.m); break;
        default: r = shmkit_cond_destroy(&P.c); break;
        }
        if (!lock_answer_defined(r))
            abort();
    }
    /* Leave nothing held for the next input (a recursive mutex may be
     * held once per operation, plus the first lock). */
    for (i = 0; i < size + 2 && shmkit_mutex_held(&P.m); i++)
        shmkit_mutex_unlock(&P.m);
    if (shmkit_mutex_held(&P.m))
        abort();
    return 0;
}
