/*
 * testutil.h - what the C tests share: per-run names that are always
 * cleaned up, child processes whose exit status is checked in full, and
 * running a CPython peer.
 */
#ifndef SHMKIT_TESTUTIL_H
#define SHMKIT_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "shmkit.h"

/* Every name a test makes starts with this prefix ("sktest_<tag><pid>_",
 * <tag> from SHMKIT_TEST_TAG: test.sh's run, so that a run sharing the
 * host's /dev/shm knows its own names), so tu_cleanup() can remove
 * whatever a failing test left behind. */
const char *tu_prefix(void);

/* Returns prefix + tag in a rotating static buffer (8 slots). */
const char *tu_name(const char *tag);

/* Criterion fixtures: .init = tu_setup, .fini = tu_cleanup. */
void tu_setup(void);
void tu_cleanup(void);

/* Skips the running test after cleaning up as its .fini would: Criterion
 * does not run .fini for a test skipped midway. The cleanup is tu_cleanup,
 * or what the suite's setup named with tu_on_skip. */
void tu_skip(const char *why);
void tu_on_skip(void (*cleanup)(void));

/* Counts the objects in /dev/shm that start with tu_prefix(). */
int tu_count_leftovers(void);

/* Waits for pid and asserts that it exited normally with status 0. */
void tu_wait_ok(pid_t pid);

/* Waits for pid and asserts that signal sig killed it. */
void tu_wait_signaled(pid_t pid, int sig);

/* A kill point of the crash tests: counts itself in *count and, at the
 * stop_at-th point (from 0), writes that number (one byte) to fd and
 * waits to be killed. */
void tu_kill_point(int *count, int stop_at, int fd);

/* Waits for pid and returns its raw wait status. */
int tu_wait_status(pid_t pid);

/* Runs argv (argv[0] looked up in PATH) with stdin from /dev/null and
 * stdout captured into out (NUL-terminated, truncated to outlen - 1).
 * Returns the raw wait status. */
int tu_run(char *const argv[], char *out, size_t outlen);

/* The CPython the tests use: SHMKIT_PYTHON, default /usr/bin/python3. */
const char *tu_python_path(void);

/* Runs CPython (SHMKIT_PYTHON, default /usr/bin/python3) with `code` as
 * the program and extra arguments; captures stdout like tu_run. */
int tu_python(const char *code, const char *arg1, const char *arg2,
              char *out, size_t outlen);

/* Path of the shmkit command (SHMKIT_CLI), asserted present. */
const char *tu_cli(void);

/* True when the suite runs in its own /dev/shm (scripts/private-shm.sh
 * sets SHMKIT_PRIVATE_SHM=1): then every object there is the suite's, and
 * counts over the whole directory are exact. */
bool tu_private_shm(void);

/* Skips the test unless the suite runs in its own /dev/shm: for a test
 * that runs a real gc, called first, before it starts processes that a
 * skip halfway would leave behind. */
void tu_require_private_shm(void);

/* shmkit_gc(flags) as a test may run it. In a private /dev/shm it returns
 * shmkit_gc's own count. Elsewhere a real gc would act on the host's whole
 * /dev/shm, so the test is skipped; a dry run there counts only the
 * objects whose names start with tu_prefix(). */
int tu_gc(unsigned flags);

/* Waits until thread `tid` (a pid for a single-threaded child) sleeps in
 * the futex system call, as /proc/<tid>/syscall shows; asserts it does
 * within 30 s. Proves a waiter is blocked in a lock, not on its way. */
void tu_wait_in_futex(pid_t tid);

/* unshare(flags) (CLONE_NEWNS, CLONE_NEWPID...): directly where allowed
 * (root), else together with a new user namespace in which this process
 * keeps its own uid and gid (so ownership checks see the same ids) and has
 * the capabilities the new namespaces need. False if neither works. */
bool tu_unshare(int flags);

/* In a forked child (which must not use Criterion's asserts): _exit with
 * `code`, naming the failed step, unless cond holds. The parent checks
 * the status. */
#define CHILD_CHECK(cond, code) \
    do {                        \
        if (!(cond))            \
            _exit(code);        \
    } while (0)

/* A new block named tu_name(tag), zero-filled, its data at *pp. */
shmkit_block *tu_make_block(const char *tag, size_t size, void **pp);

/* Unlinks and closes b, asserting both work. */
void tu_drop_block(shmkit_block *b);

/* CLOCK_MONOTONIC in seconds. */
double tu_now_s(void);

/* True once CLOCK_MONOTONIC has reached t. */
bool tu_reached(const struct timespec *t);

/* Runs body() in a child with a private 1 MiB tmpfs over /dev/shm (as
 * root, or through a user namespace), so a test can fill /dev/shm without
 * touching the host's. The child's wait status, or -1 if it could not set
 * that up: the caller then skips. */
int tu_in_small_shm(int (*body)(void));

/* Number of open descriptors of this process. */
int tu_fd_count(void);

/* In a child about to run out of descriptors: caps them at 64 and opens
 * /dev/null until only `free_left` are left; -1 if the cap could not be
 * set. tu_fds_release() closes what it opened. */
int tu_fds_leave(int free_left);
void tu_fds_release(void);

/* Number of mappings of /dev/shm objects in this process. */
int tu_shm_mapping_count(void);

#endif
