/*
 * list.c - ShareableList in CPython 3.9+'s layout: format records,
 * validation, attach, get (item decoding), count, index, format.
 * Writing is in list_write.c, the lock in list_lock.c.
 *
 * The layout (see shmkit/list.h) has no magic and no lock; it is exactly
 * what Lib/multiprocessing/shared_memory.py writes. Every word the hot
 * paths read from shared memory is an aligned 8-byte (or 1-byte) atomic
 * load into a local, so the compiler cannot read a field twice and see two
 * values; bounds always come from the handle's private, validated copy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list_internal.h"

#define ALIGN 8u           /* CPython's _alignment */
#define FMT_LEN 8u         /* bytes per format record */

enum code { CODE_VALUE = 0, CODE_STR = 1, CODE_BYTES = 2, CODE_NONE = 3 };

/* What a format record describes. */
enum fkind { F_INT, F_FLOAT, F_BOOL, F_NONE, F_STRIP, F_EXACT };

struct fmt {
    enum fkind kind;
    size_t len;   /* value bytes (s forms) */
    size_t span;  /* bytes the format covers from the slot start */
};

/* ---- shared-memory access ------------------------------------------ */

static inline uint64_t ld64(const unsigned char *p)
{
    return __atomic_load_n((const uint64_t *)(const void *)p,
                           __ATOMIC_RELAXED);
}

static inline uint8_t ld8(const unsigned char *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#define W_INT   shmkit__word8("q\0\0\0\0\0\0")
#define W_FLOAT shmkit__word8("d\0\0\0\0\0\0")
#define W_BOOL  shmkit__word8("xxxxxxx?")
#define W_NONE  shmkit__word8("xxxxxx?x")

_Static_assert(sizeof(int64_t) == 8 && sizeof(double) == 8,
               "CPython's q and d are 8 bytes");

/* ---- format records ------------------------------------------------ */

/* Parses a decimal count at r[*i]: 1-7 digits, no leading zero unless it
 * is "0" (CPython's "%d" never writes one). */
static bool parse_count(const char *r, size_t *i, size_t *out)
{
    size_t v = 0, start = *i;

    while (*i < FMT_LEN && r[*i] >= '0' && r[*i] <= '9' && *i - start < 7)
        v = v * 10 + (size_t)(r[(*i)++] - '0');
    if (*i == start || (r[start] == '0' && *i - start > 1))
        return false;
    *out = v;
    return true;
}

/* Parses the s forms: "<n>s" (CPython's: value stripped of trailing NULs
 * when read), "<n>sx" and "<n>s<m>x" (shmkit's exact length n), each
 * followed only by NUL padding. */
static bool parse_sform(const char *r, struct fmt *f)
{
    size_t i = 0, n, m = 0;

    if (!parse_count(r, &i, &n) || i >= FMT_LEN || r[i++] != 's')
        return false;
    f->kind = F_STRIP;
    if (i < FMT_LEN && r[i] == 'x') {
        m = 1;
        i++;
        f->kind = F_EXACT;
    } else if (i < FMT_LEN && r[i] != 0) {
        if (!parse_count(r, &i, &m) || i >= FMT_LEN || r[i++] != 'x')
            return false;
        f->kind = F_EXACT;
    }
    for (; i < FMT_LEN; i++)
        if (r[i] != 0)
            return false;
    f->len = n;
    f->span = n + m;
    return true;
}

/* Parses one 8-byte format record; false if it is not in the known set. */
static bool fmt_parse(uint64_t w, struct fmt *f)
{
    char r[FMT_LEN];

    f->len = 0;
    f->span = 8;
    if (w == W_INT || w == W_FLOAT || w == W_BOOL || w == W_NONE) {
        f->kind = w == W_INT ? F_INT : w == W_FLOAT ? F_FLOAT
                : w == W_BOOL ? F_BOOL : F_NONE;
        return true;
    }
    memcpy(r, &w, FMT_LEN);
    return parse_sform(r, f);
}

/* Length of a record's text: the record without its trailing NULs. */
static size_t fmt_text_len(uint64_t w)
{
    const char *r = (const char *)&w;
    size_t k = FMT_LEN;

    while (k > 0 && r[k - 1] == 0)
        k--;
    return k;
}

/* ---- validation ----------------------------------------------------- */

/* Validation reads a private copy of a block (a pread image, or caller
 * memory), never the shared mapping: plain loads, which the compiler may
 * combine, are safe there. */
static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t w;

    memcpy(&w, p, 8);
    return w;
}

/* Two words at once (GCC/Clang vector extension: SSE2 on x86-64). */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

/* Reads and checks the n + 1 offsets (relative to the data area); stores
 * them made absolute into slots. */
static int check_offsets(const unsigned char *p, size_t size, size_t n,
                         size_t *slots, const char **why)
{
    size_t data_off = (n + 2) * 8, prev = 0, k;
    uint64_t o, last = 0, limit = size - data_off, bad = 0;

    if (rd64(p + 8) != 0)
        return *why = "first offset is not 0", SHMKIT_ECORRUPT;
    slots[0] = data_off;
    /* One pass without branches for a good table (size - data_off is
     * below INT64_MAX, so "within the block" covers "not negative"); a
     * bad one is gone through again below to say what is wrong. */
    /* With every offset below 2^62 (bits 62-63 of their OR clear), each
     * step o - last is exact as a signed number: it is at least 8 (and
     * the offsets increase) iff step - 8 is not negative (bit 63 clear).
     * Then the last offset is the largest. */
    k = 1;
#if SIZE_MAX == UINT64_MAX
    {   /* two at a time (plain SSE2 on x86-64) */
        const v2u64 eight = {8, 8}, base = {data_off, data_off};
        v2u64 acc = {0, 0}, v, prv;

        for (; k + 1 <= n; k += 2) {
            memcpy(&v, p + 8 + 8 * k, 16);      /* offsets k, k + 1 */
            memcpy(&prv, p + 8 * k, 16);        /* offsets k - 1, k */
            acc |= v | (v - prv - eight);
            v += base;
            memcpy(&slots[k], &v, 16);
        }
        bad = acc[0] | acc[1];
        last = rd64(p + 8 * k);                 /* offset k - 1 */
    }
#endif
    for (; k <= n; k++) {
        o = rd64(p + 8 + 8 * k);
        bad |= o | (o - last - 8);
        last = o;
        slots[k] = data_off + (size_t)o;
    }
    if (!(bad & (UINT64_C(3) << 62 | (ALIGN - 1))) && last <= limit)
        return 0;
    for (k = 1; k <= n; k++) {
        o = rd64(p + 8 + 8 * k);
        if (o > (uint64_t)INT64_MAX)
            return *why = "negative offset", SHMKIT_ECORRUPT;
        if (o > size - data_off)
            return *why = "offset beyond the block", SHMKIT_ETRUNCATED;
        if (o <= prev || o % ALIGN)
            return *why = "offsets not increasing in steps of 8",
                   SHMKIT_ECORRUPT;
        slots[k] = data_off + (size_t)o;
        prev = (size_t)o;
    }
    return 0;
}

/* Checks the total size the layout needs against the block size. */
static int check_size(size_t size, size_t n, const size_t *slots,
                      const char **why)
{
    size_t need;

    /* slots[n] <= size was checked; 9n <= size too (see check_count). */
    if (shmkit__add_overflow(slots[n], 9 * n, &need) || need > size)
        return *why = "block smaller than its layout", SHMKIT_ETRUNCATED;
    if (need < size)
        return *why = "bytes beyond the layout's end", SHMKIT_ECORRUPT;
    return 0;
}

/* Checks every item's format record and code, and that the format's span
 * fits its slot. Which code goes with which format is checked at get:
 * CPython writes the format before the code, so a peer changing an item's
 * type passes through mismatched pairs. */
static int check_items(const unsigned char *p, size_t n, const size_t *slots,
                       const char **why)
{
    const uint64_t w_int = W_INT, w_float = W_FLOAT, w_bool = W_BOOL,
                   w_none = W_NONE;
    const unsigned char *fmts = p + slots[n], *codes = fmts + 8 * n;
    uint64_t other = 0;
    unsigned bad = 0;
    struct fmt f;
    size_t k;

    /* The fixed formats span 8 bytes, which every slot holds (the offsets
     * grow by 8 at least), so a list of them with codes 0-3 is valid. The
     * common list has one format throughout: that, and the codes, are
     * checked a word at a time with no branches; anything else is gone
     * through item by item below. */
    if (n > 0) {
        uint64_t w0 = rd64(fmts), d0 = 0, c = 0;
        v2u64 w0v = {w0, w0}, dv = {0, 0}, cv = {0, 0}, v;

        for (k = 0; k + 2 <= n; k += 2) {
            memcpy(&v, fmts + 8 * k, 16);
            dv |= v ^ w0v;
        }
        if (k < n)
            d0 |= rd64(fmts + 8 * k) ^ w0;
        for (k = 0; k + 16 <= n; k += 16) {
            memcpy(&v, codes + k, 16);
            cv |= v;
        }
        for (c = cv[0] | cv[1]; k < n; k++)
            c |= codes[k];
        other = (d0 | dv[0] | dv[1]) != 0 ||
                (w0 != w_int && w0 != w_float && w0 != w_bool &&
                 w0 != w_none);
        bad = (c & 0xfcfcfcfcfcfcfcfcu) != 0; /* a code above 3 */
    }
    if (!other && !bad)
        return 0;
    for (k = 0; k < n; k++) {
        uint64_t w = rd64(fmts + 8 * k);

        if (w != w_int && w != w_float && w != w_bool && w != w_none) {
            if (!fmt_parse(w, &f))
                return *why = "unknown format record", SHMKIT_ECORRUPT;
            if (f.span > slots[k + 1] - slots[k])
                return *why = "format longer than its slot", SHMKIT_ECORRUPT;
        }
        if (codes[k] > CODE_NONE)
            return *why = "back-transform code not 0-3", SHMKIT_ECORRUPT;
    }
    return 0;
}

/* Reads the count and bounds it by the block size: each item needs at
 * least its offset (8), a slot (8), a format record (8) and a code (1). */
static int check_count(const unsigned char *p, size_t size, size_t *n,
                       const char **why)
{
    uint64_t v;

    if (size < 16)
        return *why = "block smaller than a list header", SHMKIT_ETRUNCATED;
    v = rd64(p);
    if (v > (uint64_t)INT64_MAX)
        return *why = "negative item count", SHMKIT_ECORRUPT;
    if (v > (size - 16) / 25)
        return *why = "item count larger than the block", SHMKIT_ETRUNCATED;
    *n = (size_t)v;
    return 0;
}

int shmkit__list_validate(const void *data, size_t size, size_t **slots_out,
                          size_t *n_out, const char **why)
{
    const unsigned char *p = data;
    size_t *slots = NULL, n = 0;
    const char *dummy;
    int r;

    if (!why)
        why = &dummy;
    *why = "";
    if ((uintptr_t)p % ALIGN)
        return *why = "memory not 8-byte aligned", -EINVAL;
    r = check_count(p, size, &n, why);
    if (r < 0)
        return r;
    slots = malloc((n + 1) * sizeof *slots);
    if (!slots)
        return *why = "out of memory", -ENOMEM;
    r = check_offsets(p, size, n, slots, why);
    if (r == 0)
        r = check_size(size, n, slots, why);
    if (r == 0)
        r = check_items(p, n, slots, why);
    if (r < 0 || !slots_out) {
        free(slots);
        slots = NULL;
    }
    if (r == 0) {
        if (slots_out)
            *slots_out = slots;
        if (n_out)
            *n_out = n;
    }
    return r;
}

bool shmkit__list_probe(const void *data, size_t size)
{
    return shmkit__list_validate(data, size, NULL, NULL, NULL) == 0;
}

int shmkit__list_image(const shmkit_block *b, size_t head, unsigned char **img)
{
    size_t size = shmkit_block_size(b), n, hdr, fmt;
    uint64_t v, o;
    int r;

    r = shmkit__block_image(b, head, img);
    if (r < 0 || size < 16)
        return r;
    /* Only what validation reads: a count or last offset out of bounds
     * stops here, and validation rejects the image on that. */
    v = ld64(*img);
    if (v > (size - 16) / 25)
        return 0;
    n = (size_t)v;
    hdr = 8 * (n + 2);
    /* Read only what the head did not cover. */
    if (hdr > head)
        r = shmkit__block_pread(b, head, *img + head, hdr - head);
    if (r == 0) {
        o = ld64(*img + 8 + 8 * n);
        if (o <= (uint64_t)(size - hdr)) {
            fmt = hdr + (size_t)o;
            if (fmt < head)
                fmt = head;
            if (fmt < size)
                r = shmkit__block_pread(b, fmt, *img + fmt, size - fmt);
        }
    }
    if (r < 0) {
        free(*img);
        *img = NULL;
    }
    return r;
}

/* ---- handles -------------------------------------------------------- */

#define LIST_READ_WHOLE (64u << 10)

static const char *list_name(const shmkit_list *l)
{
    return l->block ? shmkit_block_name(l->block) : "(memory)";
}

/* Builds a handle over data once `check` (data itself, or a copy of it
 * read without the mapping) validates. */
static int list_open(shmkit_list **out, void *data, const void *check,
                     size_t size, bool rdonly, shmkit_block *b,
                     const char **why)
{
    shmkit_list *l = calloc(1, sizeof *l);
    int r;

    if (!l)
        return *why = "out of memory", -ENOMEM;
    r = shmkit__list_validate(check, size, &l->slot, &l->n, why);
    if (r < 0) {
        free(l);
        return r;
    }
    l->base = data;
    l->size = size;
    l->fmt_off = l->slot[l->n];
    l->code_off = l->fmt_off + 8 * l->n;
    l->rdonly = rdonly;
    l->block = b;
    *out = l;
    return 0;
}

int shmkit__list_view(shmkit_list **out, void *data, size_t size, bool rdonly)
{
    const char *why;

    *out = NULL;
    return list_open(out, data, data, size, rdonly, NULL, &why);
}

int shmkit_list_open_block(shmkit_list **out, shmkit_block *b)
{
    unsigned char *img = NULL;
    const char *why = "";
    int r;

    if (!out || !b)
        return shmkit__fail(NULL, -EINVAL, "shmkit_list_open_block: NULL");
    *out = NULL;
    /* Validate a pread copy: a peer truncating the block meanwhile makes
     * this SHMKIT_ETRUNCATED, not SIGBUS. A list of up to 64 KiB (about
     * 2,600 ints) is read in one call; a larger one in three (the head,
     * the rest of the offsets, the formats and codes), skipping the data. */
    r = shmkit__list_image(b, LIST_READ_WHOLE, &img);
    if (r < 0)
        why = "block shorter than its size";
    else
        r = list_open(out, shmkit_block_data(b), img, shmkit_block_size(b),
                      shmkit_block_flags(b) & SHMKIT_RDONLY, b, &why);
    free(img);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_list_open_block(\"%s\"): %s",
                            shmkit_block_name(b), why);
    return 0;
}

int shmkit_list_attach(shmkit_list **out, const char *name, unsigned flags)
{
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_list_attach: out is NULL");
    *out = NULL;
    r = shmkit_block_attach(&b, name, flags);
    if (r < 0)
        return r;
    r = shmkit_list_open_block(out, b);
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_list_attach(\"%s\"): %s", name,
                     shmkit_block_errmsg(b));
        shmkit_block_close(b);
        return r;
    }
    (*out)->own_block = true;
    return 0;
}

size_t shmkit_list_len(const shmkit_list *l)
{
    return l->n;
}

shmkit_block *shmkit_list_block(const shmkit_list *l)
{
    return l->block;
}

int shmkit_list_close(shmkit_list *l)
{
    if (!l)
        return 0;
    shmkit__list_lock_close(l);
    if (l->own_block)
        shmkit_block_close(l->block);
    free(l->slot);
    free(l);
    return 0;
}

int shmkit_list_unlink(shmkit_list *l)
{
    int r;

    if (!l->block)
        return shmkit__fail(NULL, -EINVAL, "shmkit_list_unlink: memory view");
    r = shmkit_block_unlink(l->block);
    if (r == 0)
        shmkit__list_lock_drop(shmkit_block_name(l->block));
    return r;
}

/* ---- indices -------------------------------------------------------- */

/* Resolves a Python-style index; false if out of range. */
static inline bool resolve(const shmkit_list *l, ptrdiff_t i, size_t *k)
{
    if (i < 0)
        i += (ptrdiff_t)l->n;
    if (i < 0 || (size_t)i >= l->n)
        return false;
    *k = (size_t)i;
    return true;
}

static int index_error(const shmkit_list *l, const char *fn, ptrdiff_t i)
{
    return shmkit__fail(l->block, SHMKIT_EINDEX,
                        "%s(\"%s\", %td): index out of range (len %zu)", fn,
                        list_name(l), i, l->n);
}

int shmkit_list_capacity(const shmkit_list *l, ptrdiff_t i, size_t *cap)
{
    size_t k;

    if (!resolve(l, i, &k))
        return index_error(l, "shmkit_list_capacity", i);
    *cap = l->slot[k + 1] - l->slot[k];
    return 0;
}

/* ---- reading items -------------------------------------------------- */

/* Strips trailing NULs, as CPython's back-transforms 1 and 2 do. */
static size_t rstrip_nul(const unsigned char *p, size_t len)
{
    while (len > 0 && p[len - 1] == 0)
        len--;
    return len;
}

/* Decodes item k from a format and code read once from shared memory,
 * the way CPython's __getitem__ combines them: code 3 is None whatever the
 * format, code 0 returns the unpacked value as is (raw bytes for an s
 * form, a bool for the None format), codes 1 and 2 need an s form. */
static bool decode(const shmkit_list *l, size_t k, const struct fmt *f,
                   uint8_t code, shmkit_item *out)
{
    const unsigned char *p = l->base + l->slot[k];
    uint64_t w;

    if (code == CODE_NONE) {
        out->type = SHMKIT_NONE;
        out->v.i = 0;
        return true;
    }
    if (f->kind == F_STRIP || f->kind == F_EXACT) {
        if (code > CODE_BYTES)
            return false;
        out->type = code == CODE_STR ? SHMKIT_STR : SHMKIT_BYTES;
        out->v.s.ptr = (const char *)p;
        out->v.s.len = (f->kind == F_STRIP && code != CODE_VALUE)
                           ? rstrip_nul(p, f->len) : f->len;
        return true;
    }
    if (code != CODE_VALUE)
        return false;
    w = ld64(p);
    if (f->kind == F_INT) {
        out->type = SHMKIT_INT;
        out->v.i = (int64_t)w;
    } else if (f->kind == F_FLOAT) {
        out->type = SHMKIT_FLOAT;
        memcpy(&out->v.f, &w, sizeof w);
    } else {
        out->type = SHMKIT_BOOL;
        out->v.b = p[f->kind == F_BOOL ? 7 : 6] != 0;
    }
    return true;
}

static int get_corrupt(const shmkit_list *l, size_t k, uint64_t w,
                       uint8_t code)
{
    char text[FMT_LEN * 4 + 1];
    const unsigned char *r = (const unsigned char *)&w;
    size_t i, used = 0;

    for (i = 0; i < fmt_text_len(w); i++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 r[i] >= 0x20 && r[i] < 0x7f ? "%c" : "\\x%02x",
                                 r[i]);
    text[used] = 0;
    return shmkit__fail(l->block, SHMKIT_ECORRUPT,
                        "shmkit_list_get(\"%s\", %zu): invalid item "
                        "(format \"%s\", code %u)",
                        list_name(l), k, text, code);
}

int shmkit_list_get(const shmkit_list *l, ptrdiff_t i, shmkit_item *out)
{
    shmkit_item tmp;
    struct fmt f;
    uint64_t w;
    uint8_t code;
    size_t k;

    if (!resolve(l, i, &k))
        return index_error(l, "shmkit_list_get", i);
    w = ld64(l->base + l->fmt_off + 8 * k);
    code = ld8(l->base + l->code_off + k);
    if (code == CODE_VALUE && (w == W_INT || w == W_FLOAT)) { /* fast */
        uint64_t v = ld64(l->base + l->slot[k]);
        out->type = w == W_INT ? SHMKIT_INT : SHMKIT_FLOAT;
        memcpy(&out->v, &v, sizeof v);
        return 0;
    }
    if (!fmt_parse(w, &f) || f.span > l->slot[k + 1] - l->slot[k] ||
        !decode(l, k, &f, code, &tmp))
        return get_corrupt(l, k, w, code);
    *out = tmp;
    return 0;
}

/* ---- whole-list queries --------------------------------------------- */

int shmkit_list_count(const shmkit_list *l, const shmkit_item *value,
                      size_t *count)
{
    shmkit_item it;
    size_t k, c = 0;
    int r;

    for (k = 0; k < l->n; k++) {
        r = shmkit_list_get(l, (ptrdiff_t)k, &it);
        if (r < 0)
            return r;
        c += shmkit_item_equal(&it, value);
    }
    *count = c;
    return 0;
}

int shmkit_list_index(const shmkit_list *l, const shmkit_item *value,
                      size_t *index)
{
    shmkit_item it;
    size_t k;
    int r;

    for (k = 0; k < l->n; k++) {
        r = shmkit_list_get(l, (ptrdiff_t)k, &it);
        if (r < 0)
            return r;
        if (shmkit_item_equal(&it, value)) {
            *index = k;
            return 0;
        }
    }
    return shmkit__fail(l->block, SHMKIT_ENOTFOUND,
                        "shmkit_list_index(\"%s\"): %s value not in list",
                        list_name(l), shmkit_type_name(value->type));
}

int shmkit_list_format(const shmkit_list *l, char *buf, size_t size,
                       size_t *len)
{
    size_t k, used = 0, t;
    struct fmt f;
    uint64_t w;

    for (k = 0; k < l->n; k++) {
        w = ld64(l->base + l->fmt_off + 8 * k);
        if (!fmt_parse(w, &f))
            return get_corrupt(l, k, w, ld8(l->base + l->code_off + k));
        t = fmt_text_len(w);
        if (used + t < size)
            memcpy(buf + used, &w, t);
        used += t;
    }
    if (len)
        *len = used;
    if (used >= size)
        return shmkit__fail(l->block, -ERANGE,
                            "shmkit_list_format(\"%s\"): needs %zu bytes",
                            list_name(l), used + 1);
    buf[used] = 0;
    return 0;
}
