/*
 * fuzz_typed.c - libFuzzer target over the typed-block and named-lock
 * header validators: arbitrary bytes must be refused with a code or
 * accepted with a header whose every bound holds; never a crash or a read
 * outside the buffer. Works on a byte buffer only, no /dev/shm objects.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DSHMKIT_FUZZ=ON
 * Run:   build-fuzz/tests/fuzz_typed tests/fuzz/corpus/fuzz_typed
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "objects/kinds.h"

/* Checks what a successful parse promises; aborts (a finding) if not. */
static void check_info(const unsigned char *buf, size_t size,
                       const shmkit_array_info *in)
{
    size_t n = 1, i;
    volatile unsigned char sink;

    if (shmkit_typecode_size(in->typecode) != in->itemsize ||
        in->ndim > SHMKIT_ARRAY_MAXDIM || in->data_offset % 64 != 0 ||
        in->data_offset < SHMKIT_ARRAY_HEADER)
        abort();
    for (i = 0; i < in->ndim; i++)
        if (__builtin_mul_overflow(n, in->shape[i], &n))
            abort();
    if (n != in->length || n * in->itemsize != in->nbytes ||
        in->data_offset > size || in->nbytes > size - in->data_offset)
        abort();
    if (in->nbytes) /* the last data byte is inside the buffer */
        sink = buf[in->data_offset + in->nbytes - 1];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmkit_array_info info;
    shmkit_mutex_info mi;
    unsigned char *buf;
    shmkit_kind k;

    /* A mapped block is page-aligned; give the validators an aligned
     * copy of exactly `size` bytes so ASan sees any overread. */
    buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (shmkit_array_parse(buf, size, &info) == 0)
        check_info(buf, size, &info);
    shmkit_lock_parse(buf, size, &mi);
    k = shmkit__typed_probe(buf, size);
    if (k != SHMKIT_KIND_RAW && k != SHMKIT_KIND_ARRAY &&
        k != SHMKIT_KIND_VALUE && k != SHMKIT_KIND_LOCK)
        abort();
    free(buf);
    return 0;
}
