/* shmkit/list.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * ShareableList: a fixed-length list of int, float, bool, str, bytes and
 * None in one named block, laid out byte for byte as CPython 3.9+'s
 * multiprocessing.shared_memory.ShareableList, so a C program and a Python
 * program (CPython's own class or shmkit's) share one list: either creates,
 * the other reads and writes.
 *
 * Layout (native byte order, all fields 8-byte aligned):
 *   int64  N                        item count
 *   int64  off[N + 1]               cumulative slot offsets, off[0] = 0,
 *                                   relative to the data area
 *   bytes  data[off[N]]             slot i is data[off[i] .. off[i+1])
 *   char   fmt[N][8]                struct format of item i, NUL-padded
 *   int8   code[N]                  back-transform: 0 value as is,
 *                                   1 str, 2 bytes, 3 None
 * Formats: "q" int64, "d" double, "xxxxxxx?" bool, "xxxxxx?x" None,
 * "<n>s" str/bytes (CPython strips trailing NULs when reading it).
 *
 * Where shmkit differs from CPython, without breaking CPython's readers or
 * writers:
 *   - str slots are sized by UTF-8 bytes, not code points, so non-ASCII
 *     text is never truncated (CPython gh-88336). Slot size for a value of
 *     L bytes is 8 * (L / 8 + 1), as CPython computes it.
 *   - a str or bytes value that ends in NUL bytes is recorded with its
 *     exact length, format "<n>sx" ("<n>s0x" when it fills the slot). Such
 *     a format still reads in CPython (which strips the NULs, as it always
 *     does), and a CPython writer replaces it by a whole-slot "<n>s", so
 *     CPython keeps working; shmkit reads the value back exactly, trailing
 *     NULs included (CPython gh-106939). Values not ending in NUL are
 *     written exactly as CPython writes them.
 *   - a list is created under a private name, filled, then renamed into
 *     place, so no attacher ever sees it half written (where the system
 *     cannot rename atomically, it is built under its name, as CPython's).
 *   - attach validates the whole layout before use and every access
 *     re-validates what it reads from shared memory (a peer may change it
 *     at any time): a corrupt or hostile block gives an error, never a
 *     read outside the block.
 *
 * Concurrency. Without locking, what a reader sees while another process
 * writes the same item:
 *   - an int, float, bool or None item rewritten by shmkit with the same
 *     type is read whole: shmkit stores and loads the aligned 8-byte slot
 *     word in one access;
 *   - a type change, and any str or bytes write, can be seen half done
 *     (CPython gh-81833): the old value, the new value, a mix of the two
 *     (e.g. a new format over old data), or SHMKIT_ECORRUPT when the mix is
 *     not a valid item. Never a crash or an out-of-bounds access.
 *   - CPython's own writers copy with memcpy and order nothing, so the same
 *     holds for items CPython writes, whatever shmkit does.
 * For consistent access, every shmkit process that reads or writes wraps
 * the access in shmkit_list_lock()/shmkit_list_unlock(): a robust
 * process-shared mutex kept beside the list in a small block named
 * "<name>.lock" (created on first use, published whole). CPython's
 * ShareableList knows nothing of it, so CPython writers stay unsynchronised.
 */
#ifndef SHMKIT_LIST_H
#define SHMKIT_LIST_H

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmkit_list shmkit_list;

/* The type of a list item. */
typedef enum shmkit_type {
    SHMKIT_NONE = 0,
    SHMKIT_INT,   /* int64_t (CPython int within 64 bits) */
    SHMKIT_FLOAT, /* double */
    SHMKIT_BOOL,
    SHMKIT_STR,   /* UTF-8 text, may contain NULs */
    SHMKIT_BYTES
} shmkit_type;

/* A tagged value. For SHMKIT_STR and SHMKIT_BYTES, v.s is a pointer and a
 * length (never NUL-terminated by shmkit; may contain NULs). */
typedef struct shmkit_item {
    shmkit_type type;
    union {
        int64_t i;
        double f;
        bool b;
        struct {
            const char *ptr;
            size_t len;
        } s;
    } v;
} shmkit_item;

/* Longest str/bytes value (in bytes) any slot can take: CPython's format
 * record "<n>s" has 8 characters, so a slot is at most 9999992 bytes. */
#define SHMKIT_LIST_VALUE_MAX 9999991u

/* Longest str/bytes value ending in NUL that keeps its trailing NULs
 * (format "<n>sx" must fit 8 characters; a value that fills its slot
 * exactly needs "<n>s0x", so there the limit is 99999). Longer ones are
 * refused with SHMKIT_ESTORAGE rather than silently stripped. */
#define SHMKIT_LIST_EXACT_MAX 999999u

/* Item constructors (no copies: str/bytes items point at your memory). */
static inline shmkit_item shmkit_item_none(void)
{
    shmkit_item it;
    it.type = SHMKIT_NONE;
    it.v.i = 0;
    return it;
}
static inline shmkit_item shmkit_item_int(int64_t i)
{
    shmkit_item it;
    it.type = SHMKIT_INT;
    it.v.i = i;
    return it;
}
static inline shmkit_item shmkit_item_float(double f)
{
    shmkit_item it;
    it.type = SHMKIT_FLOAT;
    it.v.f = f;
    return it;
}
static inline shmkit_item shmkit_item_bool(bool b)
{
    shmkit_item it;
    it.type = SHMKIT_BOOL;
    it.v.i = 0;
    it.v.b = b;
    return it;
}
/* str from UTF-8 bytes [ptr, ptr + len) */
static inline shmkit_item shmkit_item_strn(const char *ptr, size_t len)
{
    shmkit_item it;
    it.type = SHMKIT_STR;
    it.v.s.ptr = ptr;
    it.v.s.len = len;
    return it;
}
static inline shmkit_item shmkit_item_bytes(const void *ptr, size_t len)
{
    shmkit_item it;
    it.type = SHMKIT_BYTES;
    it.v.s.ptr = (const char *)ptr;
    it.v.s.len = len;
    return it;
}
/* str from a NUL-terminated UTF-8 string */
SHMKIT_API shmkit_item shmkit_item_str(const char *s);

/* Returns "None", "int", "float", "bool", "str", "bytes" (Python's names),
 * or "?" for a value outside the enum. Static string. */
SHMKIT_API const char *shmkit_type_name(shmkit_type t);

/*
 * Python's `a == b` for two items: 1 == 1.0 == True, 0 == -0.0 == False,
 * nan != nan, None only equals None, str never equals bytes, and an int
 * equals a float only if the float is exactly that integer.
 */
SHMKIT_API bool shmkit_item_equal(const shmkit_item *a, const shmkit_item *b);

/*
 * Creates a list holding copies of items[0..n) (n may be 0) in a new block
 * named `name` (NULL generates "psm_..." as shmkit_block_create does).
 * `flags` are block flags (SHMKIT_TRACK, SHMKIT_REFCOUNT, SHMKIT_POPULATE,
 * ...). Slots are sized as CPython sizes them, by UTF-8 bytes for str. The
 * list is built with no name (or a private one), written whole through its
 * descriptor, and then given its name (or a generated one), so attachers
 * never see it half made. The memory is always reserved (SHMKIT_RESERVE is
 * implied): the writes allocate all of it, so a full /dev/shm is -ENOSPC
 * here and no later touch can SIGBUS for want of memory; the creator's
 * page tables start empty (no page faults at create).
 * Errors: -EEXIST (name taken), -EINVAL (bad name, NULL items with n > 0,
 * bad flags), SHMKIT_ETYPE (an item's type is not a shmkit_type),
 * -EILSEQ (a str that is not valid UTF-8),
 * SHMKIT_ESTORAGE (a str/bytes longer than SHMKIT_LIST_VALUE_MAX, or one
 * ending in NUL longer than SHMKIT_LIST_EXACT_MAX), and the errors of
 * shmkit_block_create. On failure no object is left behind.
 * On success *out owns the handle; release it with shmkit_list_close().
 */
SHMKIT_API int shmkit_list_create(shmkit_list **out, const char *name,
                                  const shmkit_item *items, size_t n,
                                  unsigned flags);

/*
 * Attaches to an existing list (ours or CPython's) by name. `flags` are
 * block attach flags (SHMKIT_RDONLY, SHMKIT_ANYUSER, SHMKIT_REFCOUNT...).
 * The header is copied out of shared memory, then validated against the
 * block size with overflow-safe arithmetic: count, offsets (starting at 0,
 * increasing by multiples of 8), every format record and back-transform
 * code, every length within its slot, and the block size equal to what
 * the layout needs (Linux sizes are exact). Errors: the errors of
 * shmkit_block_attach; SHMKIT_ETRUNCATED when the block is smaller than
 * its layout says; SHMKIT_ECORRUPT for anything else invalid (also the
 * transient state of a list CPython is still filling).
 * On success *out owns the handle; release it with shmkit_list_close().
 */
SHMKIT_API int shmkit_list_attach(shmkit_list **out, const char *name,
                                  unsigned flags);

/*
 * Opens a list over a block you already attached (e.g. one that
 * shmkit_block_kind() called SHMKIT_KIND_LIST), with the same validation
 * as shmkit_list_attach. The handle borrows b: b must outlive it, and
 * shmkit_list_close() leaves b open. A block attached SHMKIT_RDONLY gives
 * a read-only list. Errors: those of shmkit_list_attach after the attach.
 */
SHMKIT_API int shmkit_list_open_block(shmkit_list **out, shmkit_block *b);

/* Number of items (fixed at creation). */
SHMKIT_API size_t shmkit_list_len(const shmkit_list *l);

/*
 * Reads item i into *out; negative i counts from the end (-1 is the last).
 * Reads exactly as CPython does: a CPython-written str/bytes loses its
 * trailing NULs (its slot cannot tell them from padding); one written by
 * shmkit with its exact length keeps them. Code 3 is None whatever the
 * format; code 0 over an s format is the raw bytes (SHMKIT_BYTES, not
 * stripped), over the None format a bool; these pairs only come from
 * hand-made blocks, and CPython reads them the same way. str bytes are returned as
 * stored, not checked for UTF-8 (CPython raises UnicodeDecodeError for an
 * invalid one, which only CPython's own gh-88336 truncation produces).
 *
 * For str and bytes, out->v.s.ptr points into the block's mapping (zero
 * copy), is not NUL-terminated, and stays addressable until
 * shmkit_list_close(); its bytes, however, are live shared memory: any
 * process's write to this item changes (or tears) them. If others may
 * write, hold shmkit_list_lock() and copy the bytes before unlocking.
 *
 * Errors: SHMKIT_EINDEX (i out of range); SHMKIT_ECORRUPT (the item's
 * format record, code or length is invalid now, e.g. torn by a concurrent
 * writer or hostile); *out is then unchanged.
 */
SHMKIT_API int shmkit_list_get(const shmkit_list *l, ptrdiff_t i,
                               shmkit_item *out);

/*
 * Writes *value into item i (negative i counts from the end). The type may
 * change; a str/bytes value must fit the slot (see shmkit_list_capacity).
 * Written as CPython writes it (format record, code, data; padding zeroed),
 * except for the two fixes described at the top of this file.
 * Errors: SHMKIT_EINDEX; SHMKIT_ESTORAGE (str/bytes longer than the slot,
 * or ending in NUL and longer than SHMKIT_LIST_EXACT_MAX) with the item
 * left unchanged; SHMKIT_ETYPE (type not a shmkit_type); -EILSEQ (a str
 * that is not valid UTF-8, which CPython could not decode); -EBADF
 * (attached SHMKIT_RDONLY); -EINVAL (NULL value, or NULL ptr with
 * len > 0). On every error the item is unchanged.
 * Does not lock: wrap it in shmkit_list_lock() when others read.
 */
SHMKIT_API int shmkit_list_set(shmkit_list *l, ptrdiff_t i,
                               const shmkit_item *value);

/* Stores in *cap how many bytes of str/bytes item i's slot can hold (its
 * slot size). Errors: SHMKIT_EINDEX. */
SHMKIT_API int shmkit_list_capacity(const shmkit_list *l, ptrdiff_t i,
                                    size_t *cap);

/* Stores in *count how many items equal *value (shmkit_item_equal).
 * Errors: those of shmkit_list_get for any item (count not stored). */
SHMKIT_API int shmkit_list_count(const shmkit_list *l,
                                 const shmkit_item *value, size_t *count);

/* Stores in *index the position of the first item equal to *value.
 * Errors: SHMKIT_ENOTFOUND if none is; those of shmkit_list_get. */
SHMKIT_API int shmkit_list_index(const shmkit_list *l,
                                 const shmkit_item *value, size_t *index);

/*
 * CPython's `format`: the concatenation of every item's format record,
 * e.g. "qd16sxxxxxxx?". Writes it NUL-terminated into buf (size bytes) and
 * its length (without the NUL) into *len if len is not NULL. The full
 * length is at most 8 * shmkit_list_len(l). Errors: -ERANGE if size is too
 * small (*len still set to the length needed); SHMKIT_ECORRUPT if a record
 * is invalid. buf may be NULL when size is 0 (to ask for the length).
 */
SHMKIT_API int shmkit_list_format(const shmkit_list *l, char *buf,
                                  size_t size, size_t *len);

/*
 * Acquires the list's lock, a robust process-shared mutex in the block
 * "<name>.lock" beside the list, creating that block on first use (any
 * process may; the first one to publish wins). Blocks until acquired.
 * Returns 0; SHMKIT_EOWNERDEAD if acquired after its previous holder died
 * holding it — the lock is held, the item that holder was writing may be
 * half written: re-set what it protects, then call shmkit_list_consistent()
 * before unlocking; unlocked without that, the lock answers
 * SHMKIT_ENOTRECOVERABLE to every later locker, forever (the list itself
 * stays readable); -EDEADLK if this handle already
 * holds it; -ENAMETOOLONG if "<name>.lock" is too long a name; the errors
 * of shmkit_block_create/attach, and SHMKIT_ECORRUPT if "<name>.lock" is
 * not a list lock.
 */
SHMKIT_API int shmkit_list_lock(shmkit_list *l);

/* After shmkit_list_lock() returned SHMKIT_EOWNERDEAD and the caller
 * repaired the items, marks the lock usable again. SHMKIT_ENOTOWNER if
 * this handle does not hold it; -EINVAL if it was not left by a dead
 * holder. */
SHMKIT_API int shmkit_list_consistent(shmkit_list *l);

/* Releases the lock taken through this handle. SHMKIT_ENOTOWNER if this
 * handle does not hold it. */
SHMKIT_API int shmkit_list_unlock(shmkit_list *l);

/*
 * Removes the list's name and its lock block "<name>.lock" if there is
 * one (a list created by CPython and unlinked by CPython leaves the lock
 * block behind: remove it with this call or shmkit_unlink). The handle
 * stays usable. Rename a list (shmkit_block_rename on its block) only
 * before anyone locks it: the lock block keeps the old name.
 * Errors: those of shmkit_block_unlink for the list.
 */
SHMKIT_API int shmkit_list_unlink(shmkit_list *l);

/*
 * Releases the lock if this handle holds it, unmaps and frees the handle
 * (never unlinks, unless the block is reference-counted and this was its
 * last attacher). Strings returned by get are invalid afterwards.
 * NULL is fine. Returns 0.
 */
SHMKIT_API int shmkit_list_close(shmkit_list *l);

/*
 * The list's block, owned by the list handle (do not close it). Use it for
 * the name (shmkit_block_name), unlink, rename, fd. Do not resize, shrink
 * or refresh it: the list's layout is fixed and its handle caches the
 * mapping. Neither shmkit nor CPython ever shrinks a list's block; a peer
 * that truncates one anyway makes later accesses fault (SIGBUS), as with
 * any shared mapping.
 */
SHMKIT_API shmkit_block *shmkit_list_block(const shmkit_list *l);

#ifdef __cplusplus
}
#endif

#endif
