/*
 * life.h - what the lifecycle modules (tracker, refcount, manager, gc)
 * share: process identity, name sets, journals of owned names, checked
 * removal of objects, and turning a forked process into a daemon.
 *
 * Journals are append-only text files of records
 *     "+<ino> <len>:<name>\n"   name registered, object inode <ino>
 *     "-<len>:<name>\n"         name no longer registered
 * Length-prefixed because a shm name may contain '\n'. One write(2) per
 * record, so a SIGKILL leaves at most one torn record at the end, which
 * replay ignores.
 */
#ifndef SHMKIT_LIFE_H
#define SHMKIT_LIFE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/internal.h"

#define SHMKIT__DIR_MAX 4096

/* ---- processes ------------------------------------------------------------ */

/* Start time of process pid (field 22 of /proc/PID/stat, clock ticks since
 * boot) into *start. -ESRCH if there is no such process. */
SHMKIT__HIDDEN int shmkit__proc_start(pid_t pid, uint64_t *start);

/* This process's start time, read once per process (a forked child reads
 * its own: the cache is keyed by pid), and its pid into *pid (if not
 * NULL): the one getpid() the call makes. */
SHMKIT__HIDDEN int shmkit__self_start(uint64_t *start, pid_t *pid);


/* ---- name sets ------------------------------------------------------------ */

struct shmkit__nent {
    struct shmkit__nent *next;
    uint64_t ino;
    char name[];
};

/* A set of names, each with an inode number. Zero-initialised is empty. */
struct shmkit__nset {
    struct shmkit__nent **tab;
    size_t nbuckets, count;
};

/* Adds or updates name. -ENOMEM on failure. */
SHMKIT__HIDDEN int shmkit__nset_put(struct shmkit__nset *s, const char *name,
                                    uint64_t ino);
/* Removes name; true if it was there (its inode into *ino if not NULL). */
SHMKIT__HIDDEN bool shmkit__nset_del(struct shmkit__nset *s, const char *name,
                                     uint64_t *ino);
/* The entry for name, or NULL. */
SHMKIT__HIDDEN struct shmkit__nent *shmkit__nset_get(const struct shmkit__nset *s,
                                                     const char *name);
SHMKIT__HIDDEN void shmkit__nset_clear(struct shmkit__nset *s);
/* Calls fn for every entry (fn must not change the set). */
SHMKIT__HIDDEN void shmkit__nset_each(const struct shmkit__nset *s,
                                      void (*fn)(const char *name, uint64_t ino,
                                                 void *arg),
                                      void *arg);

/* ---- journals ------------------------------------------------------------- */

struct shmkit__journal {
    int fd;              /* close-on-exec; -1 when closed */
    unsigned records;    /* records written since open or compaction */
    char *map;           /* mapped journal: the file, zero-filled past used */
    size_t cap, used;
    char path[SHMKIT__DIR_MAX];
};

/* Opens (creating 0600) the journal at path for appending, one write(2)
 * per record. */
SHMKIT__HIDDEN int shmkit__journal_open(struct shmkit__journal *j,
                                        const char *path);
/* The same, appending by storing into a shared mapping of the file: no
 * system call per record, and the page cache keeps every completed record
 * however the process dies. For one writer (the tracker's members each
 * have their own file). Replay stops at the zero fill. */
SHMKIT__HIDDEN int shmkit__journal_open_mapped(struct shmkit__journal *j,
                                               const char *path);
SHMKIT__HIDDEN void shmkit__journal_close(struct shmkit__journal *j);
SHMKIT__HIDDEN int shmkit__journal_add(struct shmkit__journal *j,
                                       const char *name, uint64_t ino);
SHMKIT__HIDDEN int shmkit__journal_del(struct shmkit__journal *j,
                                       const char *name);
/* Rewrites the journal to hold exactly the entries of `live` if it has
 * grown well past them (publishing the new file by rename). */
SHMKIT__HIDDEN int shmkit__journal_compact(struct shmkit__journal *j,
                                           const struct shmkit__nset *live);
/* Reads the journal at path and puts what is still registered into *live
 * (which it does not clear first). A missing file is an empty journal. */
SHMKIT__HIDDEN int shmkit__journal_replay(const char *path,
                                          struct shmkit__nset *live);

/* Parses journal text (for the fuzz target too): applies every complete,
 * well-formed record of buf to *live; stops at the first malformed one. */
SHMKIT__HIDDEN int shmkit__journal_parse(const char *buf, size_t len,
                                         struct shmkit__nset *live);

/* ---- objects --------------------------------------------------------------- */

/* Inode of object `name` if it is a regular file of this user, else 0. */
SHMKIT__HIDDEN uint64_t shmkit__shm_ino(const char *name);
/* True if something holds `name` in the shm directory (any kind, any
 * owner) or its lstat fails otherwise than ENOENT: a create under that
 * name cannot publish. */
SHMKIT__HIDDEN bool shmkit__shm_taken(const char *name);

/* Writes `path` made absolute (a relative one is taken from the working
 * directory) into out (cap bytes); -ENAMETOOLONG if it does not fit. The
 * daemons work from "/": every path they are handed must be absolute. */
SHMKIT__HIDDEN int shmkit__path_abs(const char *path, char *out, size_t cap);

/* Creates directory `path` 0700 if missing; SHMKIT_EOWNER unless it is a
 * directory (not a symlink) of this user with no group or other access. */
SHMKIT__HIDDEN int shmkit__dir_private(const char *path);
/* The same for a user id the caller already has (geteuid() once for
 * several names). */
SHMKIT__HIDDEN uint64_t shmkit__shm_ino_as(const char *name, uid_t uid);

/* Unlinks object `name` only if it is a regular file owned by this user
 * and (ino != 0) still has inode ino. Returns 1 if it removed it (or, with
 * dry, would have), 0 if there was nothing to remove, or -errno. What the
 * object's kind keeps beside it (a list's lock) goes with it. */
SHMKIT__HIDDEN int shmkit__shm_unlink_if(const char *name, uint64_t ino,
                                         bool dry);

/* Removes every regular file in dir, then dir itself. */
SHMKIT__HIDDEN void shmkit__rmtree1(const char *dir);

/* Writes a + "/" + b into out (SHMKIT__DIR_MAX bytes); false if too long. */
SHMKIT__HIDDEN bool shmkit__path_join(char *out, const char *a, const char *b);

/* 64-bit FNV-1a of a string, for names derived from names. */
SHMKIT__HIDDEN uint64_t shmkit__hash64(const char *s);

/* ---- daemons -------------------------------------------------------------- */

/*
 * Forks a daemon that is no child of ours (fork, fork, the middle one
 * exits). Returns 0 in the daemon, 1 in the caller, or -errno. The daemon
 * should then call shmkit__daemon_detach.
 */
SHMKIT__HIDDEN int shmkit__daemon_fork(void);

/*
 * Makes the calling (just forked) process hold nothing of its parent's: a
 * new session, SIGINT/SIGHUP/SIGPIPE ignored, no signals blocked, every
 * shared mapping unmapped (a daemon must not keep blocks alive), every
 * descriptor closed except the n in keep (renumbered to >= 3, new numbers
 * written back), 0-2 on /dev/null, cwd "/".
 */
SHMKIT__HIDDEN void shmkit__daemon_detach(int *keep, int n);

/* ---- block lifetimes (block_life.c plugs these into core/hooks.h) -------- */

/* tracker.c: family tracking of created blocks (SHMKIT_TRACK). */
/* Records `name` (object inode `ino`) in this process's journal, before
 * the name is given to the object (see core/hooks.h). */
SHMKIT__HIDDEN int shmkit__track_register(const char *name, uint64_t ino);
SHMKIT__HIDDEN void shmkit__track_unregister(const char *name);
SHMKIT__HIDDEN void shmkit__track_rename(const char *from, const char *to,
                                         bool exchange);

/* refcount.c: reference-counted lifetime (SHMKIT_REFCOUNT). attach is
 * called once the block is mapped (ino: the block's inode if the caller
 * knows it, else 0: attach asks fstat); detach before it is unmapped:
 * when this was the last attacher it unlinks the block (if its name still
 * holds it) and what its kind keeps beside it, and returns true if it
 * did. rename moves the bookkeeping with the block. */
SHMKIT__HIDDEN int shmkit__ref_attach(shmkit_block *b, uint64_t ino);
SHMKIT__HIDDEN bool shmkit__ref_detach(shmkit_block *b);
/* Undoes shmkit__ref_attach of a block whose publishing failed: leaves
 * the sidecar (removing it if nobody else is in it); never touches the
 * block's name, which was never ours. */
SHMKIT__HIDDEN void shmkit__ref_abandon(shmkit_block *b);
SHMKIT__HIDDEN void shmkit__ref_rename(shmkit_block *b, const char *to,
                                       bool exchange);

/* ---- kinds of object (kind.c, above every kind) -------------------------- */

/* Object `name` was just removed: removes what its kind keeps beside it
 * (a list's lock), whatever kind it was. */
SHMKIT__HIDDEN void shmkit__kind_unlinked(const char *name);
/* True if `name` is a companion of some kind (a list's lock) whose owner
 * is gone, for gc to collect. */
SHMKIT__HIDDEN bool shmkit__kind_orphaned(const char *name);

/* ---- module entry points -------------------------------------------------- */

/* gc.c: removes dead families' leftovers in rundir (skipping `skip`, a
 * family directory name or NULL). Counts blocks removed. */
SHMKIT__HIDDEN int shmkit__gc_families(const char *rundir, const char *skip,
                                       unsigned flags, shmkit_gc_report rep,
                                       void *arg);
/* gc.c: the same for dead managers' state directories. */
SHMKIT__HIDDEN int shmkit__gc_managers(const char *rundir, const char *skip,
                                       unsigned flags, shmkit_gc_report rep,
                                       void *arg);
/* gc.c: cleans one dead family directory (all journals in it). */
SHMKIT__HIDDEN int shmkit__family_clean(const char *famdir, unsigned flags,
                                        shmkit_gc_report rep, void *arg);

/* refcount.c: sidecar name for a block name (room for SHMKIT_NAME_MAX+1). */
#define SHMKIT__REF_PREFIX "shmkit.ref."
SHMKIT__HIDDEN void shmkit__ref_sidecar_name(const char *name, char *out);
/* refcount.c: reaps one sidecar; removes block and sidecar if no attacher
 * lives or the block is gone. Counts blocks removed. */
SHMKIT__HIDDEN int shmkit__ref_gc_one(const char *sidecar, unsigned flags,
                                      shmkit_gc_report rep, void *arg);
/* refcount.c: live attacher count for block name, or -errno (-ENOENT if
 * it is not reference-counted). */
SHMKIT__HIDDEN int shmkit__ref_count(const char *name);
/* refcount.c: true if data looks like a sidecar (for kind probing). */
SHMKIT__HIDDEN bool shmkit__life_probe(const void *data, size_t size);

#endif
