/*
 * test_track.c - tracked blocks (SHMKIT_TRACK): removed when the creator's
 * family is gone however it dies, never because an attacher came and went.
 * Real processes, SIGKILL, hand-shakes through pipes; the only waits are
 * bounded polls for an expected end state.
 */
#include "lifeutil.h"

#include <spawn.h>
#include <sys/resource.h>

extern char **environ;

TestSuite(track, .init = lu_setup, .fini = lu_cleanup, .timeout = 60);

Test(track, creator_killed_block_goes_with_its_family)
{
    struct lu_holder h;

    lu_spawn_holder(&h, "killed", NULL, false);
    cr_assert(lu_exists(h.name));
    cr_assert_eq(kill(h.pid, SIGKILL), 0);
    cr_assert(WIFSIGNALED(tu_wait_status(h.pid)));
    cr_expect(lu_wait_gone(h.name), "block outlived its family");
    cr_expect(lu_wait_pid_gone(h.tracker), "tracker did not exit");
    close(h.hold);
}

Test(track, family_member_keeps_block_alive)
{
    tu_require_private_shm();
    int p[2], hold[2], ghold[2];
    char name[300];
    pid_t pid, grand;

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(hold), 0);
    cr_assert_eq(pipe(ghold), 0);
    pid = fork();
    if (pid == 0) {
        pid_t g;
        close(p[0]);
        close(hold[1]);
        if (shmkit_track_start() != 0)
            _exit(20); /* children report through their status only */
        g = fork();
        if (g == 0) {
            close(hold[0]);
            close(ghold[1]);
            lu_wait_eof(ghold[0]);
            _exit(0);
        }
        close(ghold[0]);
        close(ghold[1]);
        lu_send_int(p[1], g);
        lu_holder_body("member", NULL, false, p[1], hold[0]);
    }
    close(p[1]);
    close(hold[0]);
    close(ghold[0]);
    grand = (pid_t)lu_recv_int(p[0]);
    cr_assert(lu_recv(p[0], name, sizeof name));
    lu_recv_int(p[0]);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    tu_wait_signaled(pid, SIGKILL);
    /* The grandchild still holds the lifeline: the family lives. Ask the
     * tracker's view through gc too: nothing may go. */
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(name), "removed while a family member lived");
    close(ghold[1]);
    cr_expect(lu_wait_pid_gone(grand));
    cr_expect(lu_wait_gone(name), "block outlived its family");
    close(hold[1]);
    close(p[0]);
}

/* Runs `n` processes that are not in our family (they drop the lifeline)
 * and attach, some closing properly, some killed while attached. */
static void unrelated_attachers(const char *name, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            shmkit_block *b;
            close(shmkit_track_fd());
            if (shmkit_block_attach(&b, name, 0) < 0)
                _exit(3);
            ((volatile char *)shmkit_block_data(b))[0]++;
            if (i % 4 == 0)
                raise(SIGKILL);
            shmkit_block_close(b);
            _exit(0);
        }
        if (i % 4 == 0)
            tu_wait_signaled(pid, SIGKILL);
        else
            tu_wait_ok(pid);
    }
}

Test(track, thousand_unrelated_attach_exit_cycles_leave_block)
{
    tu_require_private_shm();
    shmkit_block *b;
    pid_t tracker;

    cr_assert_eq(shmkit_block_create(&b, tu_name("survivor"), 4096,
                                     SHMKIT_TRACK), 0);
    tracker = shmkit_track_pid();
    unrelated_attachers(shmkit_block_name(b), 1000);
    cr_assert(lu_exists(shmkit_block_name(b)), "an attacher destroyed it");
    cr_assert_eq(kill(tracker, 0), 0, "tracker died");
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(shmkit_block_name(b)));
    cr_assert_eq(shmkit_block_unlink(b), 0);
    shmkit_block_close(b);
}

Test(track, cpython_attach_and_exit_leaves_block)
{
    shmkit_block *b;
    char out[64];
    int st;

    cr_assert_eq(shmkit_block_create(&b, tu_name("pyattach"), 64,
                                     SHMKIT_TRACK), 0);
    st = tu_python("import sys\n"
                   "from multiprocessing import shared_memory as s\n"
                   "from multiprocessing import resource_tracker as rt\n"
                   "m = s.SharedMemory(sys.argv[1])\n"
                   "rt.unregister(m._name, 'shared_memory')\n"
                   "m.buf[0] = 7; m.close(); print('ok')\n",
                   shmkit_block_name(b), NULL, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python: %#x", st);
    cr_assert(lu_exists(shmkit_block_name(b)));
    cr_assert_eq(((char *)shmkit_block_data(b))[0], 7);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* A parent that started the tracker forks a child; the child creates,
 * sends the name and exits; the parent attaches; the block goes with the
 * parent. */
Test(track, child_creates_exits_parent_attaches)
{
    int p[2], hold[2];
    char name[300];
    pid_t parent;

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(hold), 0);
    parent = fork();
    if (parent == 0) {
        int q[2];
        pid_t child;
        shmkit_block *b;
        close(p[0]);
        close(hold[1]);
        if (shmkit_track_start() < 0 || pipe(q) < 0)
            _exit(10);
        child = fork();
        if (child == 0) {
            if (shmkit_block_create(&b, tu_name("fromchild"), 32,
                                    SHMKIT_TRACK) < 0)
                _exit(11);
            lu_send(q[1], shmkit_block_name(b));
            shmkit_block_close(b);
            _exit(0);
        }
        close(q[1]);
        if (!lu_recv(q[0], name, sizeof name))
            _exit(12);
        int st;
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            _exit(13);
        if (shmkit_block_attach(&b, name, 0) < 0)
            _exit(14);
        shmkit_block_close(b);
        lu_send(p[1], name);
        lu_wait_eof(hold[0]);
        _exit(0);
    }
    close(p[1]);
    close(hold[0]);
    cr_assert(lu_recv(p[0], name, sizeof name), "parent failed");
    cr_assert(lu_exists(name));
    close(hold[1]);
    tu_wait_ok(parent);
    cr_expect(lu_wait_gone(name), "block outlived its family");
    close(p[0]);
}

/* An exec'd child inherits the lifeline and keeps the family alive. */
Test(track, exec_child_stays_in_family)
{
    tu_require_private_shm();
    int p[2], in[2];
    char name[300];
    pid_t pid;

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    pid = fork();
    if (pid == 0) {
        posix_spawn_file_actions_t fa;
        char *argv[] = {"/bin/sh", "-c", "read x", NULL};
        shmkit_block *b;
        pid_t sh;
        close(p[0]);
        if (shmkit_block_create(&b, tu_name("execd"), 32, SHMKIT_TRACK) < 0)
            _exit(10);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        if (posix_spawn(&sh, "/bin/sh", &fa, NULL, argv, environ) != 0)
            _exit(11);
        lu_send(p[1], shmkit_block_name(b));
        lu_send_int(p[1], sh);
        _exit(0); /* the creator goes; its exec'd child remains */
    }
    close(p[1]);
    close(in[0]);
    cr_assert(lu_recv(p[0], name, sizeof name));
    pid_t sh = (pid_t)lu_recv_int(p[0]);
    tu_wait_ok(pid);
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(name), "removed while the exec'd member lived");
    close(in[1]); /* sh reads EOF and exits */
    cr_expect(lu_wait_pid_gone(sh));
    cr_expect(lu_wait_gone(name), "block outlived its family");
    close(p[0]);
}

/* Unlinked early, then the name reused by an untracked block: the family's
 * end must not remove the newcomer. */
Test(track, early_unlink_and_name_reuse_are_respected)
{
    struct lu_holder h;
    shmkit_block *b;

    lu_spawn_holder(&h, "reused", NULL, true);
    cr_assert_not(lu_exists(h.name));
    cr_assert_eq(shmkit_block_create(&b, h.name, 32, 0), 0);
    close(h.hold);
    tu_wait_ok(h.pid);
    /* The tracker's turn: it exits once it has cleaned up. */
    cr_assert(lu_wait_pid_gone(h.tracker), "tracker did not finish");
    cr_assert(lu_exists(h.name), "the newcomer was removed");
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* The tracker maps no block and holds nothing but its lifeline. */
Test(track, tracker_holds_no_mappings_or_descriptors)
{
    char path[64], line[512];
    shmkit_block *b;
    DIR *d;
    FILE *f;
    int fds = 0;
    pid_t t;

    cr_assert_eq(shmkit_block_create(&b, tu_name("nomap"), 1 << 20,
                                     SHMKIT_TRACK), 0);
    t = shmkit_track_pid();
    snprintf(path, sizeof path, "/proc/%d/maps", (int)t);
    f = fopen(path, "re");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        cr_expect_null(strstr(line, "/dev/shm/"), "tracker maps %s", line);
    fclose(f);
    /* Right after start-up it may still be sweeping old families: poll
     * for its steady state. */
    snprintf(path, sizeof path, "/proc/%d/fd", (int)t);
    long end = lu_now_ms() + LU_BOUND_MS;
    do {
        struct dirent *e;
        fds = 0;
        d = opendir(path);
        cr_assert_not_null(d);
        while ((e = readdir(d)))
            fds += e->d_name[0] != '.';
        closedir(d);
    } while (fds != 4 && lu_now_ms() < end);
    cr_expect_eq(fds, 4, "stdio on /dev/null plus the lifeline, got %d", fds);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

Test(track, attach_with_track_is_refused)
{
    shmkit_block *b, *a;

    cr_assert_eq(shmkit_block_create(&b, tu_name("attachtrack"), 32, 0), 0);
    cr_assert_eq(shmkit_block_attach(&a, tu_name("attachtrack"), SHMKIT_TRACK),
                 -EINVAL);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

Test(track, rename_moves_registration)
{
    struct lu_holder h;

    lu_spawn_holder(&h, "before", tu_name("after"), false);
    cr_assert_str_eq(h.name, tu_name("after"));
    cr_assert_eq(kill(h.pid, SIGKILL), 0);
    tu_wait_signaled(h.pid, SIGKILL);
    cr_expect(lu_wait_gone(h.name), "renamed block outlived");
    close(h.hold);
}

/* Enough create/unlink churn to compact the journal several times: what
 * is still registered survives compaction and goes with the family. */
Test(track, journal_compaction_keeps_live_entries)
{
    int p[2];
    char keep[2][300];
    pid_t pid;
    int i;

    cr_assert_eq(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        shmkit_block *b;
        close(p[0]);
        for (i = 0; i < 1000; i++) {
            char t[32];
            snprintf(t, sizeof t, "churn%d", i % 7);
            if (shmkit_block_create(&b, tu_name(t), 32, SHMKIT_TRACK) < 0)
                _exit(10);
            if (i >= 998)
                lu_send(p[1], shmkit_block_name(b));
            else if (shmkit_block_unlink(b) < 0)
                _exit(11);
            shmkit_block_close(b);
        }
        raise(SIGKILL);
    }
    close(p[1]);
    for (i = 0; i < 2; i++)
        cr_assert(lu_recv(p[0], keep[i], sizeof keep[i]));
    tu_wait_signaled(pid, SIGKILL);
    for (i = 0; i < 2; i++)
        cr_expect(lu_wait_gone(keep[i]), "%s outlived", keep[i]);
    cr_assert_eq(tu_count_leftovers(), 0);
    close(p[0]);
}

/* Child bodies for run_in_own_family: each does its part with names a
 * and b and exits non-zero if a call answers otherwise than expected. */

/* Creates a tracked block a and untracks it. */
static void release_body(const char *a, const char *b)
{
    shmkit_block *blk;

    (void)b;
    if (shmkit_block_create(&blk, a, 64, SHMKIT_TRACK) < 0)
        _exit(10);
    shmkit_block_close(blk);
    if (shmkit_untrack(a) != 0)
        _exit(11);
    if (shmkit_untrack(a) != -ENOENT)    /* no longer ours */
        _exit(12);
}

/* Adopts the existing block a with shmkit_track. */
static void adopt_body(const char *a, const char *b)
{
    (void)b;
    if (shmkit_track(a) != 0)
        _exit(13);
}

/* Runs body(a, b) in a forked child with a family of its own, which ends
 * when the child exits; returns that family's tracker pid. */
static pid_t run_in_own_family(void (*body)(const char *, const char *),
                               const char *a, const char *b)
{
    pid_t pid, tracker;
    int p[2];

    cr_assert_eq(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        /* A family of its own: forget the test process's tracker. */
        unsetenv("SHMKIT_TRACKER");
        close(p[0]);
        body(a, b);
        lu_send_int(p[1], shmkit_track_pid());
        _exit(0);
    }
    close(p[1]);
    tracker = (pid_t)lu_recv_int(p[0]);
    close(p[0]);
    cr_assert_eq(tu_wait_status(pid), 0, "child failed");
    cr_assert_gt(tracker, 0);
    return tracker;
}

Test(track, untracked_block_outlives_its_family)
{
    const char *name = tu_name("untracked");
    pid_t tracker;

    tracker = run_in_own_family(release_body, name, NULL);
    cr_assert(lu_wait_pid_gone(tracker), "tracker did not exit");
    cr_assert(lu_exists(name), "an untracked block went with the family");
    cr_assert_eq(shmkit_unlink(name), 0);
}

Test(track, adopted_block_goes_with_the_adopters_family)
{
    const char *name = tu_name("adopted");
    shmkit_block *b;
    pid_t tracker;

    cr_assert_eq(shmkit_block_create(&b, name, 64, 0), 0);
    shmkit_block_close(b);
    tracker = run_in_own_family(adopt_body, name, NULL);
    cr_expect(lu_wait_gone(name), "an adopted block outlived the family");
    cr_expect(lu_wait_pid_gone(tracker), "tracker did not exit");
}

Test(track, track_and_untrack_errors)
{
    cr_assert_eq(shmkit_track(tu_name("nosuch")), -ENOENT);
    cr_assert_eq(shmkit_untrack(tu_name("nosuch")), -ENOENT);
    cr_assert_eq(shmkit_track("a/b"), -EINVAL);
    cr_assert_eq(shmkit_untrack(""), -EINVAL);
}

/* A tracker that cannot read its own start time used to write "pid 0"
 * and run on: liveness checks then could not tell it from a later process
 * given its pid (before d8873d6 they took it for dead: `shmkit ls` said
 * "tracked (no tracker)"). Now the tracked create fails with the
 * tracker's error and leaves nothing; the next create, with /proc
 * readable, works. */
Test(track, tracker_without_its_start_time_is_a_clear_error)
{
    const char *name = tu_name("nostart");
    char owner[64], want[64];
    shmkit_block *b;

    lu_proc_start_fails_elsewhere(-ENOMEM);
    cr_assert_eq(shmkit_block_create(&b, name, 64, SHMKIT_TRACK), -ENOMEM,
                 "%s", shmkit_last_error());
    cr_assert_not(lu_exists(name));
    cr_assert_eq(shmkit_track_pid(), -1);
    cr_assert_eq(lu_rundir_count("fam-"), 0, "a family directory was left");
    shmkit__os_reset();

    cr_assert_eq(shmkit_block_create(&b, name, 64, SHMKIT_TRACK), 0, "%s",
                 shmkit_last_error());
    shmkit_block_close(b);
    cr_assert_gt(shmkit_track_pid(), 0);
    shmkit_lifecycle_describe(name, owner, sizeof owner);
    snprintf(want, sizeof want, "tracked by pid %ld", (long)shmkit_track_pid());
    cr_assert_str_eq(owner, want);
    cr_assert_eq(shmkit_unlink(name), 0);
}

/* Runs body(a, b) in a family of its own and expects the tracker to exit
 * and block a to go with the family. */
static void expect_gone_with_family(void (*body)(const char *, const char *),
                                    const char *a, const char *b)
{
    pid_t tracker = run_in_own_family(body, a, b);

    cr_assert(lu_wait_pid_gone(tracker), "tracker did not exit");
    cr_expect_not(lu_exists(a), "the block outlived its family");
}

/* Creates tracked block a, then tries to create it again (-EEXIST). */
static void create_twice_body(const char *a, const char *b)
{
    shmkit_block *blk, *again;

    (void)b;
    if (shmkit_block_create(&blk, a, 64, SHMKIT_TRACK) < 0)
        _exit(10);
    if (shmkit_block_create(&again, a, 64, SHMKIT_TRACK) != -EEXIST)
        _exit(11);
    shmkit_block_close(blk);
}

/* A tracked create that finds the name taken by a block this process
 * tracks fails -EEXIST and keeps that block tracked: it used to drop the
 * name's registration when it gave up, so the block outlived the family. */
Test(track, create_on_a_taken_name_keeps_the_registration)
{
    expect_gone_with_family(create_twice_body, tu_name("twice"), NULL);
}

/* Creates tracked block t and untracked block u, swaps their names
 * (SHMKIT_EXCHANGE). */
static void exchange_body(const char *t, const char *u)
{
    shmkit_block *bt, *bu;

    if (shmkit_block_create(&bt, t, 64, SHMKIT_TRACK) < 0 ||
        shmkit_block_create(&bu, u, 128, 0) < 0)
        _exit(10);
    if (shmkit_block_rename(bt, u, SHMKIT_EXCHANGE) < 0)
        _exit(11);
    shmkit_block_close(bt);
    shmkit_block_close(bu);
}

/* The registration follows the tracked object through an exchange: when
 * the family is gone, the tracked block (now under u's name) goes and the
 * untracked one (now under t's name) stays. */
Test(track, exchange_moves_the_registration_with_the_block)
{
    char t[SHMKIT_NAME_MAX + 1], u[SHMKIT_NAME_MAX + 1];
    shmkit_block *b;
    pid_t tracker;

    strcpy(t, tu_name("xt"));
    strcpy(u, tu_name("xu"));
    tracker = run_in_own_family(exchange_body, t, u);
    cr_assert(lu_wait_pid_gone(tracker), "tracker did not exit");
    cr_expect_not(lu_exists(u), "the tracked block outlived its family");
    cr_assert(lu_exists(t), "the untracked block went with the family");
    cr_assert_eq(shmkit_block_attach(&b, t, 0), 0);
    cr_assert_eq(shmkit_block_size(b), 128);
    shmkit_block_close(b);
    cr_assert_eq(shmkit_unlink(t), 0);
}

/* The runtime directory must be this user's alone: one others can enter,
 * a symlink, a file, or a path too long is refused with a clear error,
 * and so is a tracked create that needs it (nothing made). Without
 * SHMKIT_RUNTIME_DIR it is $XDG_RUNTIME_DIR/shmkit, created 0700. */
Test(track, runtime_dir_problems_are_clear_errors)
{
    char dir[300], buf[400], want[400], longp[600];
    const char *name = tu_name("rtdir");
    shmkit_block *b;
    struct stat st;
    int fd;

    snprintf(dir, sizeof dir, "%s/open", lu_rundir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chmod(dir, 0755), 0);
    setenv("SHMKIT_RUNTIME_DIR", dir, 1);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), SHMKIT_EOWNER);
    cr_assert_eq(shmkit_block_create(&b, name, 64, SHMKIT_TRACK), SHMKIT_EOWNER);
    cr_assert_not(lu_exists(name));

    snprintf(dir, sizeof dir, "%s/link", lu_rundir);
    cr_assert_eq(symlink(lu_rundir, dir), 0);
    setenv("SHMKIT_RUNTIME_DIR", dir, 1);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), SHMKIT_EOWNER);

    snprintf(dir, sizeof dir, "%s/file", lu_rundir);
    fd = open(dir, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    setenv("SHMKIT_RUNTIME_DIR", dir, 1);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), SHMKIT_EOWNER);

    memset(longp, 'd', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    setenv("SHMKIT_RUNTIME_DIR", longp, 1);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), -ENAMETOOLONG);

    unsetenv("SHMKIT_RUNTIME_DIR");
    snprintf(dir, sizeof dir, "%s/xdg", lu_rundir);
    setenv("XDG_RUNTIME_DIR", dir, 1);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), -ENOENT, "no such XDG dir");
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(shmkit_runtime_dir(buf, sizeof buf), 0, "%s", shmkit_last_error());
    snprintf(want, sizeof want, "%s/shmkit", dir);
    cr_assert_str_eq(buf, want);
    cr_assert_eq(stat(want, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    setenv("SHMKIT_RUNTIME_DIR", lu_rundir, 1);
}

/* A tracked create in a process out of descriptors (h free, h = 0..15:
 * each descriptor the create and the tracker's start need is the one
 * refused in turn) is -EMFILE or succeeds; either way nothing outlives
 * the family: no block, no family directory, no tracker. */
Test(track, create_out_of_descriptors_leaves_nothing)
{
    char name[SHMKIT_NAME_MAX + 1], tag[16];
    int h, made = 0, refused = 0;

    for (h = 0; h <= 15; h++) {
        int p[2], st;
        pid_t pid, tracker;

        snprintf(tag, sizeof tag, "fd%d", h);
        strcpy(name, tu_name(tag));
        cr_assert_eq(pipe(p), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            shmkit_block *b;
            int r;

            unsetenv("SHMKIT_TRACKER");
            close(p[0]);
            if (tu_fds_leave(h) < 0)
                _exit(2);
            r = shmkit_block_create(&b, name, 64, SHMKIT_TRACK);
            tu_fds_release();
            lu_send_int(p[1], shmkit_track_pid());
            _exit(r == 0 ? 0 : r == -EMFILE || r == -ENFILE ? 3 : 1);
        }
        close(p[1]);
        tracker = (pid_t)lu_recv_int(p[0]);
        close(p[0]);
        st = tu_wait_status(pid);
        cr_assert(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3),
                  "%d free descriptors: status %#x", h, st);
        made += WEXITSTATUS(st) == 0;
        refused += WEXITSTATUS(st) == 3;
        if (tracker > 0)
            cr_assert(lu_wait_pid_gone(tracker), "tracker did not exit");
        cr_assert_not(lu_exists(name), "%d free descriptors: the block "
                      "outlived its family", h);
        cr_assert_eq(lu_rundir_count("fam-"), 0, "%d free descriptors: a "
                     "family directory was left", h);
    }
    cr_assert_gt(refused, 0, "no create was refused");
    cr_assert_gt(made, 0, "no create succeeded");
}

/* Creates tracked block a with SHMKIT_TRACKER set to b, which does not
 * name a lifeline this process holds: the process starts a family of its
 * own (a new tracker, not b's pid 1) instead of joining one. */
static void stale_env_body(const char *a, const char *b)
{
    shmkit_block *blk;

    setenv("SHMKIT_TRACKER", b, 1);
    if (shmkit_block_create(&blk, a, 64, SHMKIT_TRACK) < 0)
        _exit(10);
    shmkit_block_close(blk);
    if (shmkit_track_pid() <= 1)
        _exit(11);
}

/* An SHMKIT_TRACKER inherited without its lifeline (a process started by
 * one that closed its descriptors, or a hand-made value) is ignored, never
 * trusted: malformed, a descriptor below 3, one that is no pipe, a pipe's
 * read end, a pipe of another inode; and with the right pipe, a family
 * directory that is not that pipe's (empty, another inode's) or a tracker
 * pid of 0. Those last three used to be adopted: the create then failed in
 * a journal it could not open, or the family's tracker was "pid 0". */
Test(track, stale_tracker_environment_is_ignored)
{
    char bad[8][400], name[SHMKIT_NAME_MAX + 1], tag[16];
    struct stat st;
    int pfd[2], file;
    size_t i;

    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(fstat(pfd[1], &st), 0);
    file = open("/dev/null", O_WRONLY);
    cr_assert_geq(file, 3);
    snprintf(bad[0], sizeof bad[0], "garbage");
    snprintf(bad[1], sizeof bad[1], "2:%llu:1:%s", (unsigned long long)st.st_ino,
             lu_rundir);
    snprintf(bad[2], sizeof bad[2], "%d:%llu:1:%s", file,
             (unsigned long long)st.st_ino, lu_rundir);
    snprintf(bad[3], sizeof bad[3], "%d:%llu:1:%s", pfd[0],
             (unsigned long long)st.st_ino, lu_rundir);
    snprintf(bad[4], sizeof bad[4], "%d:%llu:1:%s", pfd[1],
             (unsigned long long)st.st_ino + 1, lu_rundir);
    snprintf(bad[5], sizeof bad[5], "%d:%llu:1:", pfd[1],
             (unsigned long long)st.st_ino);
    snprintf(bad[6], sizeof bad[6], "%d:%llu:1:%s/fam-%llu-0", pfd[1],
             (unsigned long long)st.st_ino, lu_rundir,
             (unsigned long long)st.st_ino + 1);
    snprintf(bad[7], sizeof bad[7], "%d:%llu:0:%s/fam-%llu-0", pfd[1],
             (unsigned long long)st.st_ino, lu_rundir,
             (unsigned long long)st.st_ino);
    for (i = 0; i < 8; i++) {
        pid_t tracker;

        snprintf(tag, sizeof tag, "env%zu", i);
        strcpy(name, tu_name(tag));
        tracker = run_in_own_family(stale_env_body, name, bad[i]);
        cr_assert(lu_wait_pid_gone(tracker), "case %zu: tracker did not exit", i);
        cr_assert_not(lu_exists(name), "case %zu: the block outlived its family", i);
    }
    close(pfd[0]);
    close(pfd[1]);
    close(file);
}

/* From directory b, with SHMKIT_RUNTIME_DIR relative ("rel"): the
 * runtime directory is b/rel, absolute; creates tracked block a. */
static void relative_rundir_body(const char *a, const char *b)
{
    char buf[400], want[400];
    shmkit_block *blk;

    if (chdir(b) != 0)
        _exit(20);
    setenv("SHMKIT_RUNTIME_DIR", "rel", 1);
    snprintf(want, sizeof want, "%s/rel", b);
    if (shmkit_runtime_dir(buf, sizeof buf) != 0 || strcmp(buf, want) != 0)
        _exit(21);
    if (shmkit_block_create(&blk, a, 64, SHMKIT_TRACK) < 0)
        _exit(10);
    shmkit_block_close(blk);
}

/* A relative SHMKIT_RUNTIME_DIR is taken from the working directory and
 * made absolute: the tracker, which works from "/", used to miss its
 * family's directory, so the family's blocks outlived it. */
Test(track, relative_runtime_dir_works)
{
    expect_gone_with_family(relative_rundir_body, tu_name("relrt"),
                            lu_rundir);
}
