/*
 * test_gc.c - `shmkit gc` and shmkit_gc(): what dead families leave when
 * their tracker dies with them is found and removed, only when they are
 * really dead, and only the caller's own objects.
 */
#include "lifeutil.h"

#include <inttypes.h>

#include "life/life.h"

TestSuite(gc, .init = lu_setup, .fini = lu_cleanup, .timeout = 60);

/*
 * Forks a process group leader that creates `n` tracked blocks, reports
 * their names, the tracker's pid and its other member's, and waits. Then
 * kills the tracker and the whole group with SIGKILL: nobody gets to clean
 * up. Returns once every one of them has exited: the family is dead.
 */
static int kill_family_with_tracker(const char *tag, int n, char names[][300])
{
    int p[2], i;
    pid_t pid, tracker, member;

    cr_assert_eq(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        pid_t m;
        setpgid(0, 0);
        close(p[0]);
        for (i = 0; i < n; i++) {
            char t[64];
            shmkit_block *b;
            snprintf(t, sizeof t, "%s%d", tag, i);
            if (shmkit_block_create(&b, tu_name(t), 128, SHMKIT_TRACK) < 0)
                _exit(10);
            lu_send(p[1], shmkit_block_name(b));
            shmkit_block_close(b);
        }
        m = fork();
        if (m == 0) /* a member of the group, too */
            for (;;)
                pause();
        if (m < 0)
            _exit(11);
        lu_send_int(p[1], shmkit_track_pid());
        lu_send_int(p[1], m);
        for (;;)
            pause();
    }
    close(p[1]);
    for (i = 0; i < n; i++)
        cr_assert(lu_recv(p[0], names[i], 300));
    tracker = (pid_t)lu_recv_int(p[0]);
    member = (pid_t)lu_recv_int(p[0]);
    close(p[0]);
    cr_assert_eq(kill(tracker, SIGKILL), 0);
    cr_assert_eq(kill(-pid, SIGKILL), 0);
    tu_wait_signaled(pid, SIGKILL);
    cr_assert(lu_wait_pid_gone(tracker), "tracker still running");
    cr_assert(lu_wait_pid_gone(member), "group member still running");
    return n;
}

static int count_existing(char names[][300], int n)
{
    int i, k = 0;

    for (i = 0; i < n; i++)
        k += lu_exists(names[i]);
    return k;
}

Test(gc, whole_group_and_tracker_killed_nothing_left_after_gc)
{
    tu_require_private_shm();
    char names[3][300];

    kill_family_with_tracker("grp", 3, names);
    cr_assert_eq(tu_gc(SHMKIT_GC_DRY_RUN), 3, "dry run: the dead family's 3");
    cr_assert_eq(count_existing(names, 3), 3, "dry run removed something");
    cr_assert_eq(tu_gc(0), 3);
    cr_assert_eq(count_existing(names, 3), 0, "gc left blocks behind");
    cr_assert_eq(tu_gc(0), 0, "second gc found more");
}

Test(gc, cli_gc_dry_run_then_gc)
{
    char names[2][300], out[4096];
    char *dry[] = {(char *)tu_cli(), "gc", "--dry-run", NULL};
    char *real[] = {(char *)tu_cli(), "gc", NULL};
    int st;

    if (!tu_private_shm())
        tu_skip("`shmkit gc` would act on the host's whole /dev/shm: "
                "run the suite through scripts/private-shm.sh");
    kill_family_with_tracker("cli", 2, names);
    st = tu_run(dry, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gc --dry-run: %#x", st);
    cr_assert_not_null(strstr(out, names[0]), "dry run output: %s", out);
    cr_assert_not_null(strstr(out, names[1]), "dry run output: %s", out);
    cr_assert_eq(count_existing(names, 2), 2);
    st = tu_run(real, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_not_null(strstr(out, "2 blocks removed"), "gc output: %s", out);
    cr_assert_eq(count_existing(names, 2), 0);
}

Test(gc, next_tracker_start_sweeps_dead_families)
{
    char names[2][300];
    pid_t pid;
    int i;

    if (!tu_private_shm())
        tu_skip("a tracker's start-up sweep acts on the host's whole "
                "/dev/shm: run the suite through scripts/private-shm.sh");
    kill_family_with_tracker("next", 2, names);
    cr_assert_eq(tu_gc(SHMKIT_GC_DRY_RUN), 2, "the family is not dead yet");
    pid = fork();
    if (pid == 0) {
        /* A new family in another process: its tracker sweeps. */
        _exit(shmkit_track_start() == 0 ? 0 : 1);
    }
    tu_wait_ok(pid);
    for (i = 0; i < 2; i++)
        cr_expect(lu_wait_gone(names[i]), "%s left", names[i]);
}

/* A family whose tracker died but whose creator lives is not dead. */
Test(gc, live_family_with_dead_tracker_is_left_alone)
{
    tu_require_private_shm();
    struct lu_holder h;

    lu_spawn_holder(&h, "livefam", NULL, false);
    kill(h.tracker, SIGKILL);
    cr_assert(lu_wait_pid_gone(h.tracker));
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(h.name), "gc removed a live family's block");
    close(h.hold);
    tu_wait_ok(h.pid);
    cr_assert_eq(tu_gc(0), 1);
    cr_assert_not(lu_exists(h.name));
}

/* A journal naming another user's object: gc must not touch it. */
Test(gc, never_removes_another_users_object)
{
    tu_require_private_shm();
    char dir[400], path[500], rec[400];
    shmkit_block *b;
    struct stat st;
    int fd, n;

    if (geteuid() != 0)
        cr_skip_test("needs root to make an object owned by another user");
    cr_assert_eq(shmkit_block_create(&b, tu_name("foreign"), 64, 0), 0);
    cr_assert_eq(fchown(shmkit_block_fd(b), 65534, 65534), 0);
    cr_assert_eq(fstat(shmkit_block_fd(b), &st), 0);
    /* A dead family: a pipe inode nobody holds, no tracker file. */
    snprintf(dir, sizeof dir, "%s/fam-1-deadbeef", lu_rundir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/1-1.j", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    n = snprintf(rec, sizeof rec, "+%llu %zu:%s\n",
                 (unsigned long long)st.st_ino, strlen(shmkit_block_name(b)),
                 shmkit_block_name(b));
    cr_assert_eq(write(fd, rec, (size_t)n), n);
    close(fd);
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(shmkit_block_name(b)), "gc removed another user's block");
    cr_assert_eq(access(dir, F_OK), -1, "dead family state not removed");
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* A recorded name now held by a different object (other inode) stays. */
Test(gc, never_removes_a_different_object_under_a_recorded_name)
{
    tu_require_private_shm();
    char dir[400], path[500], rec[400];
    shmkit_block *b;
    int fd, n;

    cr_assert_eq(shmkit_block_create(&b, tu_name("otherino"), 64, 0), 0);
    snprintf(dir, sizeof dir, "%s/fam-2-deadbeef", lu_rundir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/1-1.j", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    n = snprintf(rec, sizeof rec, "+1 %zu:%s\n", strlen(shmkit_block_name(b)),
                 shmkit_block_name(b));
    cr_assert_eq(write(fd, rec, (size_t)n), n);
    close(fd);
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(shmkit_block_name(b)));
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

Test(gc, torn_and_hostile_journals_are_harmless)
{
    static const char *const junk[] = {
        "+", "+1", "+1 ", "+1 5:", "+1 5:abc", "-999999999999999999999:x\n",
        "+1 300:", "+1 3:a/b\n", "+1 1:.\n", "garbage\n\n\n", "+18446744073709551616 1:a\n",
    };
    struct shmkit__nset s = {0};
    size_t i;

    for (i = 0; i < sizeof junk / sizeof junk[0]; i++)
        cr_assert_eq(shmkit__journal_parse(junk[i], strlen(junk[i]), &s), 0);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(shmkit__journal_parse("+7 3:abc\n+8 2:de\n-3:abc\n+9 1:", 30, &s), 0);
    cr_assert_eq(s.count, 1);
    cr_assert_not_null(shmkit__nset_get(&s, "de"));
    shmkit__nset_clear(&s);
}

/* The tracker formats its records by hand (life_util.c): byte for byte
 * what "+<ino> <len>:<name>\n" / "-<len>:<name>\n" printed with snprintf
 * gives, for the extreme inodes and name lengths, and they replay. */
Test(gc, journal_records_are_written_exactly)
{
    char path[] = "/tmp/shmkit-test-journal-XXXXXX", longest[SHMKIT_NAME_MAX + 2];
    char want[4096], got[4096];
    struct shmkit__journal j = {.fd = -1};
    struct shmkit__nset live = {0};
    struct shmkit__nent *e;
    int fd, n;
    ssize_t len;

    memset(longest, 'x', SHMKIT_NAME_MAX);
    longest[SHMKIT_NAME_MAX] = 0;
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(shmkit__journal_open(&j, path), 0);
    cr_assert_eq(shmkit__journal_add(&j, "a", 0), 0);
    cr_assert_eq(shmkit__journal_add(&j, longest, UINT64_MAX), 0);
    cr_assert_eq(shmkit__journal_add(&j, "psm_0123abcd", 1234567890123ULL), 0);
    cr_assert_eq(shmkit__journal_del(&j, "a"), 0);
    cr_assert_eq(shmkit__journal_del(&j, longest), 0);
    longest[SHMKIT_NAME_MAX] = 'x';     /* one byte too long: refused */
    longest[SHMKIT_NAME_MAX + 1] = 0;
    cr_assert_eq(shmkit__journal_add(&j, longest, 1), -ENAMETOOLONG);
    cr_assert_eq(shmkit__journal_del(&j, longest), -ENAMETOOLONG);
    longest[SHMKIT_NAME_MAX] = 0;
    shmkit__journal_close(&j);
    n = snprintf(want, sizeof want, "+0 1:a\n+%" PRIu64 " %d:%s\n"
                 "+1234567890123 12:psm_0123abcd\n-1:a\n-%d:%s\n",
                 UINT64_MAX, SHMKIT_NAME_MAX, longest, SHMKIT_NAME_MAX, longest);
    fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    len = read(fd, got, sizeof got);
    close(fd);
    cr_assert_eq(len, n, "journal is %zd bytes, want %d", len, n);
    cr_assert(memcmp(got, want, (size_t)n) == 0, "journal: %.*s", (int)len, got);
    cr_assert_eq(shmkit__journal_replay(path, &live), 0);
    unlink(path);
    cr_assert_eq(live.count, 1);
    e = shmkit__nset_get(&live, "psm_0123abcd");
    cr_assert(e && e->ino == 1234567890123ULL);
    shmkit__nset_clear(&live);
}

Test(gc, ls_shows_tracked_lifecycle)
{
    char out[8192], *argv[] = {(char *)tu_cli(), "info", NULL, NULL};
    char want[64];
    shmkit_block *b;
    int st;

    cr_assert_eq(shmkit_block_create(&b, tu_name("lsrow"), 64, SHMKIT_TRACK), 0);
    argv[2] = (char *)shmkit_block_name(b);
    st = tu_run(argv, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(want, sizeof want, "tracked by pid %d", (int)shmkit_track_pid());
    cr_assert_not_null(strstr(out, want), "info said: %s", out);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}
