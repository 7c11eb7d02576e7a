/*
 * fuzz_list.c - libFuzzer target for ShareableList attach, get and set.
 *
 * It runs the library's own validation and accessors over an in-memory
 * image (shmkit__list_view), the same code attach and get run over a
 * mapping, so the fuzzer creates no /dev/shm objects. The image sits in a
 * heap buffer of its exact size: any read past the end is an ASan report.
 *
 * Input:  byte 0      op: bit 0 read everything, bit 1 write every item
 *                     and check it reads back exactly, bits 2-7 pick the
 *                     values written
 *         bytes 1-2   image length L (little endian, clamped)
 *         L bytes     the block's bytes
 *         rest        peer writes after attach: (offset lo, offset hi,
 *                     byte) triples, offset taken modulo L
 * Properties checked (abort on violation): probe and attach agree; a
 * list stays valid after shmkit's own writes; a value written is read
 * back exactly, type and bytes (trailing NULs included).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "objects/list_internal.h"

static volatile unsigned sink;

/* Touches every byte an item points at, so ASan checks the whole range. */
static void touch(const shmkit_item *it)
{
    size_t i;

    if (it->type == SHMKIT_STR || it->type == SHMKIT_BYTES)
        for (i = 0; i < it->v.s.len; i++)
            sink += (unsigned char)it->v.s.ptr[i];
}

static void read_all(const shmkit_list *l)
{
    size_t n = shmkit_list_len(l), k, c;
    shmkit_item it;
    char buf[64];

    for (k = 0; k < n; k++)
        if (shmkit_list_get(l, (ptrdiff_t)k, &it) == 0) {
            touch(&it);
            shmkit_list_count(l, &it, &c);
            shmkit_list_index(l, &it, &c);
        }
    shmkit_list_get(l, -1, &it);
    shmkit_list_get(l, (ptrdiff_t)n, &it);
    shmkit_list_format(l, buf, sizeof buf, &c);
}

/* A value to write into item k, chosen by sel, at most cap bytes. */
static shmkit_item pick(unsigned sel, size_t cap, char *buf, size_t bufcap)
{
    size_t len = cap < bufcap ? cap : bufcap;

    switch (sel % 8) {
    case 0: return shmkit_item_int((int64_t)sel * -1234567891011LL);
    case 1: return shmkit_item_float(sel & 8 ? NAN : -0.0);
    case 2: return shmkit_item_bool(sel & 8);
    case 3: return shmkit_item_none();
    case 4: /* bytes ending in NULs, filling the slot */
        memset(buf, 0, len);
        if (len)
            buf[0] = 'b';
        return shmkit_item_bytes(buf, len);
    case 5: /* str with trailing NUL, shorter than the slot */
        len = len ? (len - 1) % 7 : 0;
        memset(buf, 'x', len);
        if (len)
            buf[len - 1] = 0;
        return shmkit_item_strn(buf, len);
    case 6:
        return shmkit_item_str("");
    default:
        memset(buf, 0xee, len);
        return shmkit_item_bytes(buf, len);
    }
}

static bool same(const shmkit_item *a, const shmkit_item *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SHMKIT_INT: return a->v.i == b->v.i;
    case SHMKIT_FLOAT: return memcmp(&a->v.f, &b->v.f, 8) == 0;
    case SHMKIT_BOOL: return a->v.b == b->v.b;
    case SHMKIT_NONE: return true;
    default:
        return a->v.s.len == b->v.s.len &&
               (a->v.s.len == 0 ||
                memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0);
    }
}

static void write_all(shmkit_list *l, unsigned op)
{
    static char buf[4096];
    size_t n = shmkit_list_len(l), k, cap;
    shmkit_item v, back;
    int r;

    for (k = 0; k < n; k++) {
        if (shmkit_list_capacity(l, (ptrdiff_t)k, &cap) != 0)
            abort();
        v = pick((op >> 2) + (unsigned)k, cap, buf, sizeof buf);
        r = shmkit_list_set(l, (ptrdiff_t)k, &v);
        if (r == SHMKIT_ESTORAGE)
            continue;
        if (r != 0 || shmkit_list_get(l, (ptrdiff_t)k, &back) != 0 ||
            !same(&v, &back))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmkit_list *l = NULL;
    unsigned char *img;
    size_t len, i;
    unsigned op;
    bool probe;
    int r;

    if (size < 3)
        return 0;
    op = data[0];
    len = (size_t)data[1] | (size_t)data[2] << 8;
    if (len > size - 3)
        len = size - 3;
    img = malloc(len ? len : 1);
    if (!img)
        return 0;
    memcpy(img, data + 3, len);
    probe = shmkit__list_probe(img, len);
    r = shmkit__list_view(&l, img, len, false);
    if ((r == 0) != probe)
        abort();
    if (r == 0) {
        read_all(l);
        for (i = 3 + len; len && i + 3 <= size; i += 3)
            img[((size_t)data[i] | (size_t)data[i + 1] << 8) % len] = data[i + 2];
        if (op & 1)
            read_all(l);
        if (op & 2) {
            write_all(l, op);
            if (i == 3 + len && !shmkit__list_probe(img, len))
                abort(); /* our writes broke an untouched list */
        }
        shmkit_list_close(l);
    }
    free(img);
    return 0;
}
