/*
 * list_write.c - ShareableList writes: encoding items as CPython encodes
 * them (with shmkit's two fixes), set, and create.
 *
 * Fix 1 (gh-88336): a str whose UTF-8 does not fit the slot CPython sizes
 * by code points gets a slot sized by its UTF-8 bytes, so non-ASCII text
 * fits (when it fits CPython's slot, the slot is CPython's). Fix 2 (gh-106939): a value ending in NUL is recorded with its
 * exact length, "<n>sx" (or "<n>s0x" when it fills the slot). CPython
 * reads such a record (unpacking n bytes and one pad byte, then stripping
 * NULs as always) and, because the record does not end in 's', a CPython
 * writer replaces it by the whole-slot "<slot>s" instead of reusing it, so
 * CPython can still store a longer value there. Values without a trailing
 * NUL get exactly CPython's record, so lists stay byte-identical to
 * CPython's in every case CPython gets right.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list_internal.h"

/* How one item is written into its slot. */
struct enc {
    uint64_t fmt;       /* the 8-byte format record */
    uint8_t code;       /* back-transform code */
    bool is_word;       /* data is one 8-byte word, else bytes */
    uint64_t word;
    const char *ptr;    /* str/bytes value */
    size_t len;
};

_Static_assert(SHMKIT_LIST_VALUE_MAX + 8 <= SHMKIT__LIST_SLOT_MAX,
               "a slot for the longest value has an 8-character record");

/* Slot size CPython gives a str/bytes of len bytes: always room for at
 * least one NUL after it, in steps of 8. */
static inline size_t slot_for(size_t len)
{
    return 8 * (len / 8 + 1);
}

/* Slot size for a str of UTF-8 bytes s[0..len): CPython's (by code
 * points) whenever its UTF-8 fits there, so that lists stay byte-identical
 * to CPython's; else by bytes (gh-88336, where CPython would truncate). */
static size_t str_slot_for(const char *s, size_t len)
{
    size_t chars = 0, k, cpy;

    for (k = 0; k < len; k++)
        chars += ((unsigned char)s[k] & 0xC0) != 0x80;
    cpy = slot_for(chars);
    return len <= cpy ? cpy : slot_for(len);
}

/* True if s[0..len) is valid UTF-8 as Python's strict codec decodes it
 * (no overlong forms, no surrogates, nothing above U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0, k, need;
    uint32_t c, min;

    while (i < len) {
        c = s[i++];
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, c &= 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, c &= 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, c &= 0x07, min = 0x10000;
        else
            return false;
        if (len - i < need)
            return false;
        for (k = 0; k < need; k++, i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
    }
    return true;
}

/* Appends the decimal digits of v at r[*k], if they fit before r[8]. */
static bool put_count(char *r, size_t *k, size_t v)
{
    char d[20];
    size_t n = 0;

    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    if (*k + n > 8)
        return false;
    while (n > 0)
        r[(*k)++] = d[--n];
    return true;
}

/* Appends text at r[*k], if it fits before r[8]. */
static bool put_text(char *r, size_t *k, const char *t)
{
    size_t n = strlen(t);

    if (*k + n > 8)
        return false;
    memcpy(r + *k, t, n);
    *k += n;
    return true;
}

/* Chooses the format record of a str/bytes value for a slot of cap:
 * CPython's "<cap>s", or "<len>sx" / "<len>s0x" for a value ending in NUL.
 * (Hand-formatted: snprintf would triple the cost of a short set.) */
static int sform(const shmkit_item *v, size_t cap, uint64_t *fmt,
                 const char **why)
{
    size_t len = v->v.s.len, k = 0;
    bool nul_end = len > 0 && v->v.s.ptr[len - 1] == 0, ok;
    char r[8] = {0};

    if (len > cap)
        return *why = "exceeds available storage", SHMKIT_ESTORAGE;
    if (!nul_end)
        ok = put_count(r, &k, cap) && put_text(r, &k, "s");
    else
        ok = put_count(r, &k, len) &&
             put_text(r, &k, len < cap ? "sx" : "s0x");
    if (!ok)
        return *why = nul_end ? "too long to keep its trailing NULs"
                              : "slot too large for a format record",
               SHMKIT_ESTORAGE;
    memcpy(fmt, r, 8);
    return 0;
}

static int encode_s(const shmkit_item *v, size_t cap, struct enc *e,
                    const char **why)
{
    if (!v->v.s.ptr && v->v.s.len)
        return *why = "NULL pointer with a length", -EINVAL;
    if (v->type == SHMKIT_STR &&
        !utf8_valid((const unsigned char *)v->v.s.ptr, v->v.s.len))
        return *why = "str is not valid UTF-8", -EILSEQ;
    e->is_word = false;
    e->ptr = v->v.s.ptr;
    e->len = v->v.s.len;
    e->code = v->type == SHMKIT_STR ? 1 : 2;
    return sform(v, cap, &e->fmt, why);
}

/* Encodes *v for a slot of cap bytes, as CPython's __setitem__ would. */
static int encode(const shmkit_item *v, size_t cap, struct enc *e,
                  const char **why)
{
    e->is_word = true;
    e->code = 0;
    switch (v->type) {
    case SHMKIT_INT:
        e->fmt = shmkit__word8("q\0\0\0\0\0\0");
        e->word = (uint64_t)v->v.i;
        return 0;
    case SHMKIT_FLOAT:
        e->fmt = shmkit__word8("d\0\0\0\0\0\0");
        memcpy(&e->word, &v->v.f, 8);
        return 0;
    case SHMKIT_BOOL:
    case SHMKIT_NONE: {
        unsigned char d[8] = {0};
        d[7] = v->type == SHMKIT_BOOL && v->v.b; /* None packs as False */
        bool is_bool = v->type == SHMKIT_BOOL;
        e->fmt = shmkit__word8(is_bool ? "xxxxxxx?" : "xxxxxx?x");
        e->code = is_bool ? 0 : 3;
        e->word = is_bool ? shmkit__word8((const char *)d) : 0;
        return 0;
    }
    case SHMKIT_STR:
    case SHMKIT_BYTES:
        return encode_s(v, cap, e, why);
    }
    return *why = "unknown item type", SHMKIT_ETYPE;
}

/* Writes an encoded item in CPython's order: format, code, data. The data
 * word is one aligned store, so a reader never sees half of it; str/bytes
 * data is moved (the value may point into this very slot) and the rest of
 * the slot zeroed, as CPython's struct.pack_into zeroes the pad. */
static void item_write(shmkit_list *l, size_t k, const struct enc *e)
{
    unsigned char *p = l->base + l->slot[k];
    size_t cap = l->slot[k + 1] - l->slot[k];

    __atomic_store_n((uint64_t *)(void *)(l->base + l->fmt_off + 8 * k),
                     e->fmt, __ATOMIC_RELAXED);
    __atomic_store_n(l->base + l->code_off + k, e->code, __ATOMIC_RELAXED);
    if (e->is_word) {
        __atomic_store_n((uint64_t *)(void *)p, e->word, __ATOMIC_RELAXED);
        return;
    }
    if (e->len)
        memmove(p, e->ptr, e->len);
    memset(p + e->len, 0, cap - e->len);
}

int shmkit_list_set(shmkit_list *l, ptrdiff_t i, const shmkit_item *value)
{
    const char *why = "";
    struct enc e;
    ptrdiff_t j = i < 0 ? i + (ptrdiff_t)l->n : i;
    size_t k;
    int r;

    if (j < 0 || (size_t)j >= l->n)
        return shmkit__fail(l->block, SHMKIT_EINDEX,
                            "shmkit_list_set(%td): index out of range (len %zu)",
                            i, l->n);
    k = (size_t)j;
    if (!value)
        return shmkit__fail(l->block, -EINVAL, "shmkit_list_set: NULL value");
    if (l->rdonly)
        return shmkit__fail(l->block, -EBADF, "shmkit_list_set: read-only");
    r = encode(value, l->slot[k + 1] - l->slot[k], &e, &why);
    if (r < 0)
        return shmkit__fail(l->block, r, "shmkit_list_set(%zu, %s of %zu): %s",
                            k, shmkit_type_name(value->type),
                            value->type >= SHMKIT_STR ? value->v.s.len : 8,
                            why);
    item_write(l, k, &e);
    return 0;
}

/* ---- create --------------------------------------------------------- */

/* What plan() decides for a new list: slots, format records and codes. */
struct layout {
    size_t total;      /* block size */
    size_t *rel;       /* n + 1 slot offsets, relative to the data area */
    uint64_t *fmt;     /* n format records, in the block's byte order */
    uint8_t *code;     /* n back-transform codes */
};

static int layout_alloc(struct layout *lay, size_t n)
{
    size_t words;

    /* rel and fmt are 8-byte words (n + 1 and n), then n code bytes */
    if (n > (SIZE_MAX - 8) / 17)
        return -ENOMEM;
    words = 2 * n + 1;
    lay->rel = malloc(8 * words + n);
    if (!lay->rel)
        return -ENOMEM;
    lay->fmt = (uint64_t *)(void *)(lay->rel + n + 1);
    lay->code = (uint8_t *)(lay->fmt + n);
    return 0;
}

_Static_assert(sizeof(size_t) <= 8 && sizeof(uint64_t) == 8,
               "a relative offset fits its 8-byte word");

/* Computes every slot, format record and code, and the total size,
 * checking that every item can be encoded (encoding happens once). */
static int plan(const shmkit_item *items, size_t n, struct layout *lay,
                size_t *bad, const char **why)
{
    size_t k, cap, t, *rel = lay->rel;
    struct enc e;
    int r;

    rel[0] = 0;
    for (k = 0; k < n; k++) {
        cap = 8;
        if (items[k].type == SHMKIT_INT) {      /* the common case */
            lay->fmt[k] = shmkit__word8("q\0\0\0\0\0\0");
            lay->code[k] = 0;
            if (shmkit__add_overflow(rel[k], 8, &rel[k + 1]))
                break;                  /* reported below */
            continue;
        }
        *bad = k;
        if (items[k].type == SHMKIT_STR || items[k].type == SHMKIT_BYTES) {
            if (items[k].v.s.len > SHMKIT_LIST_VALUE_MAX)
                return *why = "longer than a slot can be", SHMKIT_ESTORAGE;
            cap = items[k].type == SHMKIT_STR
                      ? str_slot_for(items[k].v.s.ptr, items[k].v.s.len)
                      : slot_for(items[k].v.s.len);
        }
        r = encode(&items[k], cap, &e, why);
        if (r < 0)
            return r;
        lay->fmt[k] = e.fmt;
        lay->code[k] = e.code;
        if (shmkit__add_overflow(rel[k], cap, &rel[k + 1]))
            break;
    }
    if (k < n)
        return *bad = k, *why = "list too large", -EINVAL;
    /* 8 (count) + 8 (n + 1) offsets + data + 8 n formats + n codes */
    if (shmkit__mul_overflow(n, 17, &t) || shmkit__add_overflow(t, 16, &t) ||
        shmkit__add_overflow(t, rel[n], &t) || t > (size_t)INT64_MAX)
        return *why = "list too large", -EINVAL;
    lay->total = t;
    return 0;
}

/* ---- writing a new block through its descriptor ---------------------- */

/* The image of a new list is written in order, in chunks, with pwrite:
 * the writes allocate the block's memory (a full /dev/shm is -ENOSPC) and
 * the creator's page tables stay empty, where writing through the mapping
 * cost a page fault per page (about 2 us each here, more than the rest of
 * a 1,000-item create). */
#define CHUNK (64u << 10)

struct sink {
    const shmkit_block *b;
    unsigned char *buf;
    size_t cap;     /* bytes buf holds */
    size_t used;    /* bytes in buf */
    size_t off;     /* block offset of buf[0] */
    int err;        /* first write error; later writes are skipped */
};

static void sink_flush(struct sink *s)
{
    if (s->used && s->err == 0)
        s->err = shmkit__block_pwrite(s->b, s->off, s->buf, s->used);
    s->off += s->used;
    s->used = 0;
}

/* Appends len bytes from p, or len zero bytes if p is NULL. */
static void sink_put(struct sink *s, const void *p, size_t len)
{
    const unsigned char *q = p;
    size_t k;

    if (q && len >= s->cap) {   /* a long value: write it from where it is */
        sink_flush(s);
        if (s->err == 0)
            s->err = shmkit__block_pwrite(s->b, s->off, q, len);
        s->off += len;
        return;
    }
    while (len > 0) {
        k = s->cap - s->used < len ? s->cap - s->used : len;
        if (q) {
            memcpy(s->buf + s->used, q, k);
            q += k;
        } else {
            memset(s->buf + s->used, 0, k);
        }
        s->used += k;
        len -= k;
        if (s->used == s->cap)
            sink_flush(s);
    }
}

static inline void sink_word(struct sink *s, uint64_t w)
{
    if (s->cap - s->used < 8) {
        sink_put(s, &w, 8);
        return;
    }
    memcpy(s->buf + s->used, &w, 8);
    s->used += 8;
    if (s->used == s->cap)
        sink_flush(s);
}

/* Room for up to `want` (>= 1) 8-byte words at *at, flushing first if
 * there is none: returns how many fit (>= 1). The caller writes them and
 * adds 8 per word to s->used. The words before the codes all start at a
 * multiple of 8, and the buffer holds a multiple of 8 bytes or the whole
 * block, so a word never straddles a flush. */
static size_t sink_words(struct sink *s, size_t want, unsigned char **at)
{
    size_t room;

    if (s->cap - s->used < 8)
        sink_flush(s);
    room = (s->cap - s->used) / 8;
    *at = s->buf + s->used;
    return room < want ? room : want;
}

/* The 8 data bytes of an int, float, bool or None item. */
static uint64_t fixed_word(const shmkit_item *v)
{
    uint64_t w = 0;
    unsigned char d[8] = {0};

    switch (v->type) {
    case SHMKIT_INT:
        w = (uint64_t)v->v.i;
        break;
    case SHMKIT_FLOAT:
        memcpy(&w, &v->v.f, 8);
        break;
    case SHMKIT_BOOL:
        d[7] = v->v.b;
        memcpy(&w, d, 8);
        break;
    default:            /* None packs as False */
        break;
    }
    return w;
}

/* Writes the whole list, as planned, into l's fresh block (every byte of
 * it, in CPython's layout: count, offsets, item data, formats, codes) and
 * fills in the handle's slot table. */
static int write_image(shmkit_list *l, const shmkit_item *items,
                       const struct layout *lay)
{
    size_t n = l->n, data_off = 8 * (n + 2), k, j, m, len;
    struct sink s = {.b = l->block};
    unsigned char *at;

    s.cap = lay->total < CHUNK ? lay->total : CHUNK;
    s.buf = malloc(s.cap);
    if (!s.buf)
        return -ENOMEM;
    sink_word(&s, (uint64_t)n);
    for (k = 0; k <= n;) {              /* the offsets, as many at a time
                                           as the buffer takes */
        m = sink_words(&s, n + 1 - k, &at);
        for (j = 0; j < m; j++, k++) {
            uint64_t o = (uint64_t)lay->rel[k];

            memcpy(at + 8 * j, &o, 8);
            l->slot[k] = data_off + lay->rel[k];
        }
        s.used += 8 * m;
    }
    for (k = 0; k < n;) {               /* the items' data */
        const shmkit_item *v = &items[k];

        if (v->type != SHMKIT_STR && v->type != SHMKIT_BYTES) {
            m = sink_words(&s, n - k, &at);
            for (j = 0; j < m && items[k].type != SHMKIT_STR &&
                        items[k].type != SHMKIT_BYTES; j++, k++) {
                uint64_t w = fixed_word(&items[k]);

                memcpy(at + 8 * j, &w, 8);
            }
            s.used += 8 * j;
            continue;
        }
        len = v->v.s.len;
        if (len)
            sink_put(&s, v->v.s.ptr, len);
        sink_put(&s, NULL, lay->rel[k + 1] - lay->rel[k] - len); /* pad */
        k++;
    }
    sink_put(&s, lay->fmt, 8 * n);
    sink_put(&s, lay->code, n);
    sink_flush(&s);
    free(s.buf);
    if (s.err == 0 && s.off != lay->total)
        s.err = -EIO;               /* cannot happen: plan sized it */
    return s.err;
}

/* Creates the block (empty: write_image sizes and allocates it) and the
 * handle over it: unpublished if `temp` (see shmkit__block_publish), else
 * under `name`, or a generated name if NULL (visible while it is
 * filled). */
static int make(shmkit_list **out, size_t n, size_t total, unsigned flags,
                const char *name, bool temp)
{
    shmkit_list *l = calloc(1, sizeof *l);
    int r = -ENOMEM;

    if (!l)
        return r;
    l->slot = malloc((n + 1) * sizeof *l->slot);
    if (l->slot)
        r = temp ? shmkit__block_create_temp_unsized(&l->block, total, flags)
                 : shmkit_block_create(&l->block, name, total,
                                       flags & ~SHMKIT_RESERVE);
    if (r < 0) {
        free(l->slot);
        free(l);
        return r;
    }
    l->own_block = true;
    l->base = shmkit_block_data(l->block);
    l->size = total;
    l->n = n;
    l->fmt_off = 8 * (n + 2) + (total - 16 - 17 * n);
    l->code_off = l->fmt_off + 8 * n;
    *out = l;
    return 0;
}

/* make() and write_image(); on failure nothing is left (a name given to
 * the block is removed). */
static int make_written(shmkit_list **out, size_t n, unsigned flags,
                        const char *name, bool temp,
                        const shmkit_item *items, const struct layout *lay)
{
    int r = make(out, n, lay->total, flags, name, temp);

    if (r < 0)
        return r;
    r = write_image(*out, items, lay);
    if (r < 0) {
        shmkit_block_unlink((*out)->block);
        shmkit_list_close(*out);
        *out = NULL;
    }
    return r;
}

static int create_fail(const char *name, int r, size_t k, const char *why)
{
    return shmkit__fail(NULL, r, "shmkit_list_create(\"%s\"): item %zu: %s",
                        name ? name : "(generated)", k, why);
}

/* Publishes the filled list *lp under name (a generated one if NULL),
 * without replacing anything. Where the system cannot publish atomically
 * (-ENOTSUP, -ENOSYS: not Linux), builds it again under its own name
 * instead, visible while it is filled, as CPython's is. On failure *lp is
 * gone and nothing is left. */
static int publish(shmkit_list **lp, const char *name, unsigned flags,
                   const shmkit_item *items, const struct layout *lay)
{
    size_t n = (*lp)->n;
    int r = shmkit__block_publish((*lp)->block, name);

    if (r == 0)
        return 0;
    shmkit_block_unlink((*lp)->block);
    shmkit_list_close(*lp);
    *lp = NULL;
    if (r != -ENOTSUP && r != -ENOSYS)
        return r;
    return make_written(lp, n, flags, name, false, items, lay);
}

int shmkit_list_create(shmkit_list **out, const char *name,
                       const shmkit_item *items, size_t n, unsigned flags)
{
    const char *why = "";
    shmkit_list *l = NULL;
    struct layout lay = {0};
    size_t bad = 0;
    int r;

    if (!out || (n && !items) || (name && shmkit_name_check(name) < 0))
        return shmkit__fail(NULL, -EINVAL, "shmkit_list_create(\"%s\"): "
                            "bad arguments", name ? name : "(generated)");
    *out = NULL;
    if (layout_alloc(&lay, n) < 0)
        return create_fail(name, -ENOMEM, 0, "out of memory");
    r = plan(items, n, &lay, &bad, &why);
    if (r < 0) {
        create_fail(name, r, bad, why);
        goto out;
    }
    /* Built nameless (or under a temporary name) and published whole,
     * under its name or a generated one. */
    r = make_written(&l, n, flags, NULL, true, items, &lay);
    if (r == 0)
        r = publish(&l, name, flags, items, &lay);
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_list_create(\"%s\", %zu items, %zu "
                     "bytes)", name ? name : "(generated)", n, lay.total);
        goto out;
    }
    *out = l;
out:
    free(lay.rel);
    return r;
}
