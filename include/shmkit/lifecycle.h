/* shmkit/lifecycle.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * Who removes a block, and when. Four lifetimes, chosen per block:
 *
 * Untracked (the C default). The caller unlinks; nothing else ever touches
 * the name.
 *
 * Tracked (SHMKIT_TRACK at create). Only the creator registers, attachers
 * never do. The block is unlinked once every process of the creator's
 * *family* has exited, by any means (SIGKILL included), unless it was
 * unlinked earlier. The family is rooted where the tracker starts: the
 * process that starts it (its first tracked create, or shmkit_track_start())
 * and every process that descends from it afterwards through fork, exec or
 * posix_spawn. Members hold one inherited descriptor, the *lifeline* (a
 * pipe's write end, not close-on-exec; an exec'd member finds it through
 * the environment variable SHMKIT_TRACKER). A small tracker process, not a
 * child of anyone in the family, reads the other end; end-of-file means the
 * family is gone and it unlinks what is still registered. So:
 *   - a child that creates a tracked block and exits leaves it to the
 *     family: the parent can attach it, provided the parent started the
 *     tracker before forking (call shmkit_track_start() early);
 *   - a process that closes every inherited descriptor (Python's
 *     subprocess with close_fds=True) leaves the family and, on its first
 *     tracked create, roots a family of its own; pass shmkit_track_fd() in
 *     pass_fds to keep it in;
 *   - registrations are written to a journal in the runtime directory
 *     before create returns, so if the tracker is killed along with the
 *     family, shmkit_gc() (or the next tracker to start) removes the
 *     leftovers. A family counts as dead only when its tracker is not
 *     alive and no process of this user still holds its lifeline;
 *   - a tracker killed on its own is replaced by the family's next tracked
 *     create that checks (the first, then every 64th, of each process);
 *     blocks registered with the dead one wait for shmkit_gc() once the
 *     family has gone;
 *   - starting the tracker sets SHMKIT_TRACKER with setenv(3): start it
 *     (shmkit_track_start) before other threads read the environment;
 *   - the tracker is a forked copy of the starting process that first
 *     unmaps every shared or /dev/shm mapping and closes every other
 *     descriptor, so it keeps no block's memory and no pipe or socket of
 *     the family alive.
 *
 * Reference-counted (SHMKIT_REFCOUNT at create or attach). The block stays
 * header-free; a sidecar object beside it ("shmkit.ref." + 16 hex digits,
 * kind SHMKIT_KIND_SIDECAR, magic "SKRF") records (pid, process start time)
 * per attaching handle under a robust process-shared mutex. Dead attachers
 * are reaped on every refcounted attach and detach and by shmkit_gc(). The
 * block and its sidecar are unlinked:
 *   - at once when the last attacher closes its handle (shmkit_block_close);
 *   - when the last attacher dies without closing: at the next refcounted
 *     attach (which then fails with -ENOENT: the block's lifetime is over)
 *     or the next shmkit_gc(), whichever comes first.
 * Attaching without SHMKIT_REFCOUNT neither counts nor keeps the block.
 *
 * Manager-owned. A manager daemon creates blocks for its clients and owns
 * them; clients attach by name. It unlinks them all at shutdown (request,
 * SIGTERM, or -- for a daemon from shmkit_manager_start() -- the exit of the
 * starting process), ignores SIGINT, and journals what it owns so that a
 * manager started on the same socket after a SIGKILLed one, or shmkit_gc(),
 * removes what the dead one left.
 *
 * State lives in the runtime directory: $SHMKIT_RUNTIME_DIR if set, else
 * $XDG_RUNTIME_DIR/shmkit, else /tmp/shmkit-<uid>; created 0700 and refused
 * unless it is a directory owned by this user with no group/other access.
 */
#ifndef SHMKIT_LIFECYCLE_H
#define SHMKIT_LIFECYCLE_H

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- runtime directory --------------------------------------------------- */

/* Writes the runtime directory's path into buf (creating it 0700 if
 * missing). -ENAMETOOLONG if it does not fit, SHMKIT_EOWNER if it exists
 * but is not a private directory of this user. */
SHMKIT_API int shmkit_runtime_dir(char *buf, size_t len);

/* ---- tracked blocks ------------------------------------------------------ */

/* Starts this process family's tracker now, or joins the family whose
 * lifeline this process inherited; idempotent. Call it before forking
 * workers that should belong to the family. SHMKIT_ETRACKER (or -errno) if
 * the tracker cannot be started. */
SHMKIT_API int shmkit_track_start(void);

/* The lifeline descriptor this process holds, or -1 if its family has no
 * tracker yet. Keep it open in children (pass_fds) to keep them in the
 * family; never close it yourself. */
SHMKIT_API int shmkit_track_fd(void);

/* Process id of this family's tracker, or -1 if there is none. */
SHMKIT_API pid_t shmkit_track_pid(void);

/*
 * Tracks the existing block `name` from now on, as if this process had
 * created it with SHMKIT_TRACK (starting the family's tracker if needed).
 * 0 (also if already tracked by this process), -ENOENT if there is no such
 * block, -EINVAL for a bad name, or shmkit_track_start()'s errors.
 */
SHMKIT_API int shmkit_track(const char *name);

/*
 * Stops tracking block `name`: the block then outlives the family (only
 * an unlink removes it). Only the process that registered it (created it
 * with SHMKIT_TRACK, or called shmkit_track) can; 0, or -ENOENT if this
 * process does not track `name`, -EINVAL for a bad name.
 */
SHMKIT_API int shmkit_untrack(const char *name);

/* ---- inspection and garbage collection ------------------------------------ */

/* Describes the lifetime of block `name` for people: "tracked by pid N"
 * (N is the tracker), "refcount K", "manager PID", or "-" if shmkit keeps
 * no record of it. Looks only at this user's records. Never fails; writes
 * at most len bytes, NUL-terminated. */
SHMKIT_API void shmkit_lifecycle_describe(const char *name, char *buf,
                                          size_t len);

#define SHMKIT_GC_DRY_RUN 0x1u /* report what would go, remove nothing */

/* Called by shmkit_gc for each object it removes (or would remove):
 * `what` is "tracked", "refcount", "sidecar" (also a list's "<list>.lock"
 * whose list is gone), "manager", "state" or
 * "temporary" (an object its creator died building, named
 * "shmkit-tmp-<pid>-<hex>": taken once that pid is gone and the object is
 * at least 10 s old). */
typedef void (*shmkit_gc_report)(const char *what, const char *name,
                                 void *arg);

/*
 * Removes what dead owners left behind: blocks registered by tracked
 * families that are gone, blocks of managers that died, refcounted blocks
 * whose attachers all died (and sidecars whose block is gone), and the
 * state files that recorded them. Only objects owned by the calling user
 * are touched, and a block is removed only if it is still the same object
 * (inode) that was recorded. Liveness is judged by pid plus process start
 * time, so a reused pid does not count as alive. Returns the number of
 * blocks removed (or, with SHMKIT_GC_DRY_RUN, that would be), or -errno.
 * `report` may be NULL.
 */
SHMKIT_API int shmkit_gc(unsigned flags, shmkit_gc_report report, void *arg);

/* ---- the manager ---------------------------------------------------------- */

/* A connection to a manager daemon. Process-local: after fork, connect
 * anew in the child. One request at a time per handle. */
typedef struct shmkit_manager shmkit_manager;

#define SHMKIT_MANAGER_KEY_MAX 256 /* bytes of shared key, at most */

/*
 * Starts a manager daemon of this process (a forked process running the
 * server, not a child to wait for) and connects to it once it answers.
 * `socket_path` NULL makes a private one in the runtime directory; a given
 * path (a relative one is taken from the working directory) has its
 * directory created 0700 if missing, and that directory must be private.
 * Errors: -EEXIST if something other than a socket holds the path (it is
 * left as it is), SHMKIT_EOWNER if the directory is not this user's alone,
 * -EINVAL for a path directly in /, -EADDRINUSE if a manager serves there,
 * or what kept the daemon from starting (-errno, nothing left behind).
 * `authkey` (len bytes, may be NULL/0) is the shared key clients must
 * prove they know. The daemon shuts down (unlinking all it owns) on
 * shmkit_manager_shutdown(), on shmkit_manager_close() of this handle, on
 * SIGTERM, or when this process and the children it forked have all exited.
 */
SHMKIT_API int shmkit_manager_start(shmkit_manager **out,
                                    const char *socket_path,
                                    const void *authkey, size_t authkey_len);

/* Connects to a running manager. -ENOENT/-ECONNREFUSED if none listens,
 * -EACCES if the socket's directory is not ours, SHMKIT_EAUTH if the key
 * is wrong or missing or the peer is another user, SHMKIT_EVERSION if it
 * speaks another protocol version (shmkit_last_error() names both),
 * SHMKIT_EPROTO if what it sends is malformed. A busy manager says so, and is worth retrying later:
 * -EMFILE (it is out of descriptors) or -EUSERS (every client slot is
 * taken); SHMKIT_ECLOSED if it hung up without a word (shutting down). */
SHMKIT_API int shmkit_manager_connect(shmkit_manager **out,
                                      const char *socket_path,
                                      const void *authkey, size_t authkey_len);

/* The socket path of the connection (valid while the handle lives). */
SHMKIT_API const char *shmkit_manager_socket(const shmkit_manager *m);

/* The daemon's process id. */
SHMKIT_API pid_t shmkit_manager_pid(const shmkit_manager *m);

/*
 * Asks the manager to create a block of `size` bytes that it owns, its
 * memory reserved (SHMKIT_RESERVE: a full /dev/shm is -ENOSPC here, not a
 * SIGBUS at a client's first write). `name` NULL lets the manager generate
 * one. The block's name is written to
 * name_out (room for SHMKIT_NAME_MAX + 1 bytes); attach it with
 * shmkit_block_attach(). Errors are the block layer's (-EEXIST, -EINVAL,
 * -ENOSPC, ...) as reported by the manager, or connection errors
 * (SHMKIT_ECLOSED, -ETIMEDOUT).
 */
SHMKIT_API int shmkit_manager_create_block(shmkit_manager *m,
                                           const char *name, size_t size,
                                           char *name_out);

/*
 * Asks the manager to create a ShareableList (CPython's layout) holding
 * copies of items[0..n), which it owns; attach it with shmkit_list_attach().
 * `name` NULL generates one; the name goes to name_out as above. The
 * request must fit one protocol message (64 KiB of encoded items:
 * -EMSGSIZE otherwise). Errors of shmkit_list_create as reported by the
 * manager, or connection errors.
 */
SHMKIT_API int shmkit_manager_create_list(shmkit_manager *m, const char *name,
                                          const shmkit_item *items, size_t n,
                                          char *name_out);

/*
 * Asks the manager to create a queue (shmkit_queue_create(name, capacity,
 * max_messages, 0): `capacity` ring bytes, at most `max_messages` messages
 * at once, 0 for no count limit), which it owns like its blocks: unlinked
 * at shutdown, swept after its death. Attach it with shmkit_queue_attach().
 * `name` NULL generates one; the name goes to name_out as above. Errors of
 * shmkit_queue_create as reported by the manager (-EEXIST, -EINVAL,
 * -ENOSPC, ...), connection errors, or -EOPNOTSUPP if the manager is of
 * an older shmkit that cannot make queues (nothing is sent then;
 * shmkit_last_error() names both protocol revisions).
 */
SHMKIT_API int shmkit_manager_create_queue(shmkit_manager *m, const char *name,
                                           size_t capacity,
                                           size_t max_messages,
                                           char *name_out);

/* Asks the manager to unlink one of its blocks (or lists, or queues) now.
 * -ENOENT if the manager does not own `name`. */
SHMKIT_API int shmkit_manager_release(shmkit_manager *m, const char *name);

/* Fetches the names the manager owns into a malloc'd array of malloc'd
 * strings; free it with shmkit_manager_list_free(). */
SHMKIT_API int shmkit_manager_list(shmkit_manager *m, char ***names,
                                   size_t *count);
SHMKIT_API void shmkit_manager_list_free(char **names, size_t count);

/* Asks the manager to unlink everything it owns and exit, and waits until
 * it has. The handle stays allocated (close it); further requests fail
 * with SHMKIT_ECLOSED. */
SHMKIT_API int shmkit_manager_shutdown(shmkit_manager *m);

/* Disconnects and frees the handle. For the handle that started the
 * daemon, shuts the daemon down first. NULL is fine. */
SHMKIT_API int shmkit_manager_close(shmkit_manager *m);

/*
 * Runs a manager server in this process until shutdown (what `shmkit
 * manager` does). If ready_fd >= 0, writes one int (0, or the -errno that
 * stopped start-up) to it once the socket listens, then closes it. If
 * lifeline_fd >= 0, end-of-file on it also shuts the server down. Returns
 * 0 after a clean shutdown or a negative code.
 */
SHMKIT_API int shmkit_manager_serve(const char *socket_path,
                                    const void *authkey, size_t authkey_len,
                                    int ready_fd, int lifeline_fd);

#ifdef __cplusplus
}
#endif

#endif
