/*
 * shmkit.h - named shared memory for the processes of one host.
 *
 * This is the whole public C API. Include it and link with -lshmkit
 * (pkg-config: shmkit; CMake: find_package(shmkit), target shmkit::shmkit).
 *
 * Conventions, everywhere:
 *   - Every function that can fail returns int: 0 on success, a negative
 *     code on failure. System errors are -errno (-ENOENT, -EEXIST, ...);
 *     shmkit's own errors are the SHMKIT_E* codes below, in a range no errno
 *     reaches. shmkit_errname() and shmkit_strerror() name and explain any
 *     code. Predicates return bool.
 *   - Handles are opaque and belong to the process that made them. Do not
 *     share a handle between threads without your own locking; do share the
 *     memory it points to.
 *   - Names are 1 to 255 bytes, one leading '/' accepted and dropped, no
 *     other '/', no NUL, not "." or "..". A block named "foo" is the POSIX
 *     shared memory object "/foo" (on Linux the file /dev/shm/foo), so
 *     CPython's SharedMemory("foo") is the same block.
 *   - After a failure, shmkit_last_error() gives a detailed message for the
 *     calling thread (which call, which name, why); a handle also keeps the
 *     message of its own last failure (shmkit_block_errmsg()).
 *
 * The sub-headers included at the end (lists, locks, typed objects,
 * lifecycle) are part of this one interface; include only this file.
 */
#ifndef SHMKIT_H
#define SHMKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(SHMKIT_STATIC_ONLY)
#define SHMKIT_API __attribute__((visibility("default")))
#else
#define SHMKIT_API
#endif

#define SHMKIT_VERSION_MAJOR 0
#define SHMKIT_VERSION_MINOR 2
#define SHMKIT_VERSION_PATCH 0
#define SHMKIT_VERSION_STRING "0.2.0"

/* Returns the library's version string, e.g. "0.2.0". */
SHMKIT_API const char *shmkit_version(void);

/* ------------------------------------------------------------------------
 * Errors
 *
 * shmkit's own codes. System errors keep their errno (negated); these lie
 * below -5000 so they never collide with one.
 * ---------------------------------------------------------------------- */
#define SHMKIT_EBASE            (-5000)
#define SHMKIT_ENOTREG          (-5001) /* name is a FIFO, directory, device... */
#define SHMKIT_EOWNER           (-5002) /* object belongs to another user */
#define SHMKIT_ECORRUPT         (-5003) /* layout in the block is corrupt or hostile */
#define SHMKIT_ESTORAGE         (-5004) /* value exceeds available storage */
#define SHMKIT_EKIND            (-5005) /* block is not of the kind asked for */
#define SHMKIT_EVERSION         (-5006) /* layout version not supported */
#define SHMKIT_EOWNERDEAD       (-5007) /* lock acquired; previous owner died */
#define SHMKIT_ENOTRECOVERABLE  (-5008) /* lock unusable: owner died, never repaired */
#define SHMKIT_ELOCKHELD        (-5009) /* this process holds a lock in the block */
#define SHMKIT_ESHRINK          (-5010) /* shrinking needs shmkit_block_shrink() */
#define SHMKIT_ETYPE            (-5011) /* unknown or unsupported item type */
#define SHMKIT_ENAMESPACE       (-5012) /* lock shared across PID namespaces */
#define SHMKIT_EPROTO           (-5013) /* malformed manager message */
#define SHMKIT_EAUTH            (-5014) /* authentication refused */
#define SHMKIT_ETRUNCATED       (-5015) /* block is smaller than its layout says */
#define SHMKIT_EINDEX           (-5016) /* index out of range */
#define SHMKIT_ENOTFOUND        (-5017) /* value not in the list */
#define SHMKIT_EEMPTY           (-5018) /* object has size 0: nothing to map */
#define SHMKIT_ETOOMANYLOCKS    (-5019) /* this thread holds too many robust locks */
#define SHMKIT_ENOTOWNER        (-5020) /* unlocking a lock this thread does not hold */
#define SHMKIT_ETRACKER         (-5021) /* the lifetime tracker is unavailable */
#define SHMKIT_ESHAPE           (-5022) /* bad shape or dimension count */
#define SHMKIT_EBUSYNAME        (-5023) /* no free generated name after many tries */
#define SHMKIT_ECLOSED          (-5024) /* handle or connection already closed */
#define SHMKIT_ELAST            (-5024)

/* Returns the symbolic name of a code ("ENOENT", "SHMKIT_ECORRUPT", ...),
 * "OK" for 0, "EUNKNOWN" for a code nobody defined. Never NULL; the string
 * is static. */
SHMKIT_API const char *shmkit_errname(int code);

/* Returns a one-line human message for a code. Never NULL; static. */
SHMKIT_API const char *shmkit_strerror(int code);

/* Returns the calling thread's detailed message for the last failure of a
 * shmkit call ("shmkit_block_attach(\"foo\"): no such block (ENOENT)"),
 * or "" if none failed yet. Valid until the thread's next shmkit call. */
SHMKIT_API const char *shmkit_last_error(void);

/* ------------------------------------------------------------------------
 * Blocks
 * ---------------------------------------------------------------------- */
typedef struct shmkit_block shmkit_block;

/* Flags for create and attach. */
#define SHMKIT_RDONLY    0x0001u /* attach: map read-only */
#define SHMKIT_POPULATE  0x0002u /* prefault every page: create reserves
                                    first (as SHMKIT_RESERVE); attach
                                    fails -ENOSPC (or SHMKIT_ETRUNCATED)
                                    if a page cannot be had, never
                                    reporting memory that is not there */
#define SHMKIT_RESERVE   0x0004u /* reserve the memory now (posix_fallocate):
                                    a full /dev/shm is -ENOSPC here, never a
                                    SIGBUS later; resize reserves too */
#define SHMKIT_HUGEPAGES 0x0008u /* ask for transparent huge pages; -ENOTSUP
                                    where the system's shmem setting denies */
#define SHMKIT_TRACK     0x0010u /* create: unlink when the creator's process
                                    family is gone (see shmkit/lifecycle.h) */
#define SHMKIT_REFCOUNT  0x0020u /* create/attach: unlink when the last
                                    shmkit attacher detaches or dies (the
                                    count lives in a sidecar object; an
                                    attach past its first 232 attachers
                                    reserves a page: -ENOSPC on a full
                                    /dev/shm, never a SIGBUS) */
#define SHMKIT_ANYUSER   0x0040u /* attach: accept an object owned by another
                                    user (default: refuse, SHMKIT_EOWNER) */

/* Flags for shmkit_block_rename. */
#define SHMKIT_NOREPLACE 0x0001u /* fail with -EEXIST if new name exists */
#define SHMKIT_EXCHANGE  0x0002u /* atomically swap the two names */

#define SHMKIT_NAME_MAX  255     /* bytes, without the leading '/' */
#define SHMKIT_DEFAULT_MODE 0600

/*
 * Creates a new block of exactly `size` bytes, zero-filled, mode 0600, and
 * maps it read-write. `name` NULL generates "psm_" + 8 hex digits (retried
 * on collision, as CPython does). Fails with -EEXIST if the name exists,
 * -EINVAL for a bad name or size 0, -ENOSPC/-ENOMEM when the system cannot
 * give the size; on every failure no object is left behind.
 * On success *out owns the handle; release it with shmkit_block_close().
 *
 * The object is built with no name (Linux: O_TMPFILE), sized, and its
 * lifetime recorded (SHMKIT_TRACK, SHMKIT_REFCOUNT) before it gets its
 * name in one step, which fails -EEXIST if the name is taken: nobody ever
 * sees it empty or half made, and a creator killed at any instant leaves
 * nothing, or something its tracker or shmkit_gc() removes. (Where the
 * system has no nameless objects, a temporary name carrying the creator's
 * pid stands in, renamed into place.)
 *
 * When a touch of the memory can SIGBUS: the pages of a raw block are
 * allocated when first touched, so without SHMKIT_RESERVE (or
 * SHMKIT_POPULATE) a read or write of a page not touched before kills the
 * process with SIGBUS if /dev/shm has no room left for it. Lists, arrays,
 * values, named locks, queues and the manager's blocks always reserve
 * (their create fails -ENOSPC instead). Whatever the flags, a page past
 * the end of a block that another process shrank (shmkit_block_shrink,
 * ftruncate) faults with SIGBUS on any access: shmkit's own attach, kind
 * and refresh read headers with pread and never fault; your accesses to
 * the data can (shmkit_block_refresh picks up the new size).
 */
SHMKIT_API int shmkit_block_create(shmkit_block **out, const char *name,
                                   size_t size, unsigned flags);

/* As shmkit_block_create, with the permission bits of the new object (only
 * 0777 bits count; the umask applies as for open(2)). */
SHMKIT_API int shmkit_block_create_mode(shmkit_block **out, const char *name,
                                        size_t size, unsigned flags,
                                        mode_t mode);

/*
 * Attaches to an existing block and maps all of it (read-only with
 * SHMKIT_RDONLY). The object is opened without following symlinks, without
 * blocking, close-on-exec, and must be a regular file (SHMKIT_ENOTREG
 * otherwise) owned by this user (SHMKIT_EOWNER otherwise, unless
 * SHMKIT_ANYUSER). -ENOENT if there is no such block, SHMKIT_EEMPTY if it
 * has size 0. Attaching, and failing to, never unlinks anything.
 */
SHMKIT_API int shmkit_block_attach(shmkit_block **out, const char *name,
                                   unsigned flags);

/* Start of the mapping. Valid until close, resize, shrink or refresh (those
 * may move it). */
SHMKIT_API void *shmkit_block_data(const shmkit_block *b);

/* Exact size in bytes (not page-rounded), as of the last create, attach,
 * resize or refresh through this handle. */
SHMKIT_API size_t shmkit_block_size(const shmkit_block *b);

/* Name without the leading '/'. Valid while the handle lives; a rename
 * through this handle changes it. */
SHMKIT_API const char *shmkit_block_name(const shmkit_block *b);

/* The flags the handle was made with. */
SHMKIT_API unsigned shmkit_block_flags(const shmkit_block *b);

/* The descriptor of the open object (close-on-exec), owned by the handle. */
SHMKIT_API int shmkit_block_fd(const shmkit_block *b);

/* Detailed message of this handle's last failure, or "". */
SHMKIT_API const char *shmkit_block_errmsg(const shmkit_block *b);

/*
 * Unmaps and closes this handle and frees it. Never unlinks (unless the
 * block is reference-counted and this was its last attacher). NULL is fine.
 * Refuses with SHMKIT_ELOCKHELD, leaving the handle open, while this process
 * holds a shmkit lock inside the block.
 */
SHMKIT_API int shmkit_block_close(shmkit_block *b);

/* Removes the block's name (the memory lives on while anyone maps it). The
 * handle stays usable. -ENOENT if the name is already gone. */
SHMKIT_API int shmkit_block_unlink(shmkit_block *b);

/* Removes the block with this name; -ENOENT if there is none. If the
 * block is a ShareableList, its lock ("<name>.lock") goes too. */
SHMKIT_API int shmkit_unlink(const char *name);

/* As shmkit_unlink, for a name the caller knows is a raw block (e.g. one
 * it created as such): does not look for a list's lock, so it is one
 * system call. A list unlinked this way leaves its lock to shmkit_gc(). */
SHMKIT_API int shmkit_unlink_block(const char *name);

/*
 * Renames the block atomically (Linux: renameat2 in /dev/shm). Flags 0
 * replaces an existing `new_name` as rename(2) does; SHMKIT_NOREPLACE fails
 * with -EEXIST instead; SHMKIT_EXCHANGE swaps the two names (-ENOENT if
 * `new_name` does not exist). The handle stays valid and takes the new name.
 * -ENOTSUP/-EINVAL where the OS or file system cannot do it atomically.
 */
SHMKIT_API int shmkit_block_rename(shmkit_block *b, const char *new_name,
                                   unsigned flags);

/*
 * Grows the block to `new_size` bytes (zero-filled; reserved first if the
 * handle has SHMKIT_RESERVE) and remaps it; the data pointer may move.
 * Other attachers see the new size after shmkit_block_refresh(). A smaller
 * size is refused with SHMKIT_ESHRINK: use shmkit_block_shrink().
 * Equal size is a no-op. On failure the block keeps its old size.
 */
SHMKIT_API int shmkit_block_resize(shmkit_block *b, size_t new_size);

/*
 * Shrinks the block to `new_size` bytes. Any other process still mapping
 * the cut-off pages gets SIGBUS when it touches them: call this only when
 * you know no one does. SHMKIT_ELOCKHELD if this process holds a lock in
 * the part cut off.
 */
SHMKIT_API int shmkit_block_shrink(shmkit_block *b, size_t new_size);

/*
 * Picks up a size change made by another process: remaps to the object's
 * current size (the data pointer may move). If a peer shrank the block the
 * mapping shrinks too and SHMKIT_ETRUNCATED is returned, so no access past
 * the new end can fault; size and data are then valid for the new size.
 */
SHMKIT_API int shmkit_block_refresh(shmkit_block *b);

/*
 * Prefaults `len` bytes from `offset` of this handle's mapping (for writing
 * unless the handle is read-only), so the accesses that follow take no page
 * faults. Use it to map only the range a worker touches, where
 * SHMKIT_POPULATE would prefault the whole block. The range is clipped to
 * the block; -EINVAL if offset is past its end.
 */
SHMKIT_API int shmkit_block_populate(shmkit_block *b, size_t offset,
                                     size_t len);
/* (Where a page cannot be had, shmkit_block_populate fails with -ENOSPC,
 * or SHMKIT_ETRUNCATED if the block shrank, rather than succeed: the
 * kernel's MADV_POPULATE_* reports what MAP_POPULATE hides. Kernels before
 * 5.14 lack it; there the pages are touched one by one, and a page that
 * cannot be had is SIGBUS.) */

/* What a block holds, judged from its bytes. */
typedef enum shmkit_kind {
    SHMKIT_KIND_RAW = 0,  /* plain bytes (also anything unrecognised) */
    SHMKIT_KIND_LIST,     /* a ShareableList (ours or CPython's layout) */
    SHMKIT_KIND_ARRAY,    /* a self-describing Array */
    SHMKIT_KIND_VALUE,    /* a self-describing Value (Array, 0 dims) */
    SHMKIT_KIND_LOCK,     /* a stand-alone named lock or condition */
    SHMKIT_KIND_SIDECAR,  /* shmkit's bookkeeping beside another block */
    SHMKIT_KIND_QUEUE     /* a message queue (shmkit/queue.h) */
} shmkit_kind;

/* Returns the kind of the block's contents. Never fails; a block too small
 * or malformed for any layout is SHMKIT_KIND_RAW. */
SHMKIT_API shmkit_kind shmkit_block_kind(const shmkit_block *b);

/* Returns "raw", "list", "array", "value", "lock", "sidecar" or "queue". */
SHMKIT_API const char *shmkit_kind_name(shmkit_kind k);

/* Checks a block name: 0 if valid, -EINVAL (too long: -ENAMETOOLONG)
 * otherwise. A leading '/' is accepted. */
SHMKIT_API int shmkit_name_check(const char *name);

/* Says in words why shmkit_name_check() refuses name: "empty name",
 * "name longer than 255 bytes", "name contains '/' ...", "name is '.' or
 * '..'"; NULL if the name is valid. A static string, never freed. (A C
 * string cannot hold a NUL; bindings refuse an embedded NUL themselves,
 * as the Python module does with ValueError.) */
SHMKIT_API const char *shmkit_name_problem(const char *name);

#ifdef __cplusplus
}
#endif

#include "shmkit/list.h"
#include "shmkit/sync.h"
#include "shmkit/sync_inline.h"
#include "shmkit/typed.h"
#include "shmkit/lifecycle.h"
#include "shmkit/queue.h"

#endif /* SHMKIT_H */
