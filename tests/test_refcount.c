/*
 * test_refcount.c - reference-counted blocks (SHMKIT_REFCOUNT): unlinked
 * exactly when the last shmkit attacher detaches or dies, across unrelated
 * processes; the block itself stays header-free for CPython.
 */
#include "lifeutil.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "life/life.h"

TestSuite(refcount, .init = lu_setup, .fini = lu_cleanup, .timeout = 60);

static bool sidecar_exists(const char *name)
{
    char sc[SHMKIT_NAME_MAX + 1];

    shmkit__ref_sidecar_name(name, sc);
    return lu_exists(sc);
}

Test(refcount, last_close_unlinks_block_and_sidecar)
{
    shmkit_block *c, *a1, *a2, *plain;
    char name[SHMKIT_NAME_MAX + 1];

    cr_assert_eq(shmkit_block_create(&c, tu_name("rc"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    cr_assert(sidecar_exists(name));
    cr_assert_eq(shmkit_block_attach(&a1, name, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_attach(&a2, name, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_attach(&plain, name, 0), 0);
    cr_assert_eq(shmkit__ref_count(name), 3);
    shmkit_block_close(plain); /* not counted, changes nothing */
    shmkit_block_close(c);
    cr_assert(lu_exists(name));
    shmkit_block_close(a1);
    cr_assert(lu_exists(name));
    cr_assert_eq(shmkit__ref_count(name), 1);
    shmkit_block_close(a2);
    cr_assert_not(lu_exists(name), "last close left the block");
    cr_assert_not(sidecar_exists(name), "last close left the sidecar");
}

/* Forks n children that each attach `name` (refcounted) and then wait
 * to be killed; returns once every one has attached. */
static void spawn_holders(const char *name, pid_t *kids, int n)
{
    char msg[16];
    int i, p[2];

    cr_assert_eq(pipe(p), 0);
    for (i = 0; i < n; i++) {
        kids[i] = fork();
        cr_assert_geq(kids[i], 0);
        if (kids[i] == 0) {
            shmkit_block *a;

            close(p[0]);
            if (shmkit_block_attach(&a, name, SHMKIT_REFCOUNT) < 0)
                _exit(10);
            lu_send(p[1], "attached");
            for (;;)
                pause();
        }
    }
    close(p[1]);
    for (i = 0; i < n; i++)
        cr_assert(lu_recv(p[0], msg, sizeof msg), "child %d did not attach", i);
    close(p[0]);
}

/* Children attach, then are killed one by one in random order; after each
 * death gc runs: the block must live while any attacher does, and go at
 * the gc after the last death. */
Test(refcount, attachers_killed_in_random_order)
{
    tu_require_private_shm();
    enum { N = 6 };
    char name[SHMKIT_NAME_MAX + 1];
    pid_t kids[N];
    shmkit_block *c;
    unsigned seed = (unsigned)getpid();
    int i;

    cr_assert_eq(shmkit_block_create(&c, tu_name("rand"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    spawn_holders(name, kids, N);
    shmkit_block_close(c); /* the creator leaves first */
    cr_assert_eq(shmkit__ref_count(name), N);
    for (i = N - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(rand_r(&seed) % (unsigned)(i + 1));
        pid_t t = kids[i];
        kids[i] = kids[j];
        kids[j] = t;
    }
    for (i = 0; i < N; i++) {
        kill(kids[i], SIGKILL);
        cr_assert(WIFSIGNALED(tu_wait_status(kids[i])));
        int removed = tu_gc(0);
        if (i < N - 1) {
            cr_assert_eq(removed, 0, "seed %u: removed after %d deaths", seed, i + 1);
            cr_assert(lu_exists(name));
            cr_assert_eq(shmkit__ref_count(name), N - 1 - i);
        } else {
            cr_assert_eq(removed, 1, "seed %u: not removed after the last", seed);
            cr_assert_not(lu_exists(name));
            cr_assert_not(sidecar_exists(name));
        }
    }
}

/* A dead last attacher is noticed by the next refcounted attach, which
 * ends the lifetime and reports -ENOENT. */
Test(refcount, next_attach_notices_dead_last_attacher)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *a;
    pid_t pid;
    int p[2];

    cr_assert_eq(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        shmkit_block *c;
        if (shmkit_block_create(&c, tu_name("dies"), 64, SHMKIT_REFCOUNT) < 0)
            _exit(10);
        lu_send(p[1], shmkit_block_name(c));
        raise(SIGKILL);
    }
    close(p[1]);
    cr_assert(lu_recv(p[0], name, sizeof name));
    tu_wait_signaled(pid, SIGKILL);
    cr_assert(lu_exists(name));
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), -ENOENT);
    cr_assert_not(lu_exists(name));
    cr_assert_not(sidecar_exists(name));
    close(p[0]);
}

Test(refcount, cpython_attaches_header_free_block)
{
    shmkit_block *c;
    char out[64];
    int st;

    cr_assert_eq(shmkit_block_create(&c, tu_name("py"), 16, SHMKIT_REFCOUNT), 0);
    memcpy(shmkit_block_data(c), "hello", 5);
    st = tu_python("import sys\n"
                   "from multiprocessing import shared_memory as s\n"
                   "from multiprocessing import resource_tracker as rt\n"
                   "m = s.SharedMemory(sys.argv[1])\n"
                   "rt.unregister(m._name, 'shared_memory')\n"
                   "print(m.size, bytes(m.buf[:5]).decode()); m.close()\n",
                   shmkit_block_name(c), NULL, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_str_eq(out, "16 hello\n");
    shmkit_block_close(c);
    cr_assert_not(lu_exists(tu_name("py")));
}

/* Refcounting a block someone else made without it (here: plain create). */
Test(refcount, opt_in_on_attach_to_uncounted_block)
{
    shmkit_block *c, *a, *b;

    cr_assert_eq(shmkit_block_create(&c, tu_name("optin"), 64, 0), 0);
    shmkit_block_close(c);
    cr_assert_eq(shmkit_block_attach(&a, tu_name("optin"), SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("optin"), SHMKIT_REFCOUNT), 0);
    shmkit_block_close(a);
    cr_assert(lu_exists(tu_name("optin")));
    shmkit_block_close(b);
    cr_assert_not(lu_exists(tu_name("optin")));
}

Test(refcount, rename_moves_the_count)
{
    shmkit_block *c, *a;

    cr_assert_eq(shmkit_block_create(&c, tu_name("rn1"), 64, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_rename(c, tu_name("rn2"), 0), 0);
    cr_assert_not(sidecar_exists(tu_name("rn1")));
    cr_assert(sidecar_exists(tu_name("rn2")));
    cr_assert_eq(shmkit_block_attach(&a, tu_name("rn2"), SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit__ref_count(tu_name("rn2")), 2);
    shmkit_block_close(c);
    shmkit_block_close(a);
    cr_assert_not(lu_exists(tu_name("rn2")));
    cr_assert_not(sidecar_exists(tu_name("rn2")));
}

Test(refcount, lifecycle_column_and_sidecar_kind)
{
    char buf[64], sc[SHMKIT_NAME_MAX + 1];
    shmkit_block *c, *s;

    cr_assert_eq(shmkit_block_create(&c, tu_name("col"), 64, SHMKIT_REFCOUNT), 0);
    shmkit_lifecycle_describe(tu_name("col"), buf, sizeof buf);
    cr_assert_str_eq(buf, "refcount 1");
    shmkit__ref_sidecar_name(tu_name("col"), sc);
    shmkit_lifecycle_describe(sc, buf, sizeof buf);
    cr_assert_str_eq(buf, "sidecar");
    cr_assert_eq(shmkit_block_attach(&s, sc, SHMKIT_RDONLY), 0);
    cr_assert(shmkit__life_probe(shmkit_block_data(s), shmkit_block_size(s)));
    shmkit_block_close(s);
    shmkit_block_close(c);
}

Test(refcount, stale_sidecar_of_unlinked_block_is_replaced)
{
    shmkit_block *c, *d, *a;

    cr_assert_eq(shmkit_block_create(&c, tu_name("stale"), 64, SHMKIT_REFCOUNT), 0);
    /* Someone unlinks the name behind the count's back... */
    cr_assert_eq(shmkit_unlink(tu_name("stale")), 0);
    /* ...and a new block takes the name: its count starts afresh. */
    cr_assert_eq(shmkit_block_create(&d, tu_name("stale"), 64, 0), 0);
    cr_assert_eq(shmkit_block_attach(&a, tu_name("stale"), SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit__ref_count(tu_name("stale")), 1);
    shmkit_block_close(c); /* the old handle must not unlink the new block */
    cr_assert(lu_exists(tu_name("stale")));
    shmkit_block_close(a);
    cr_assert_not(lu_exists(tu_name("stale")));
    shmkit_block_close(d);
}

/* Concurrent attach/close churn from several processes while the creator
 * holds on: the count never drops to zero early, and ends exact. */
Test(refcount, concurrent_churn_keeps_exact_count)
{
    enum { KIDS = 4, LOOPS = 200 };
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *c;
    pid_t kids[KIDS];
    int i;

    cr_assert_eq(shmkit_block_create(&c, tu_name("churn"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    for (i = 0; i < KIDS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            for (int k = 0; k < LOOPS; k++) {
                shmkit_block *a;
                if (shmkit_block_attach(&a, name, SHMKIT_REFCOUNT) < 0)
                    _exit(10);
                shmkit_block_close(a);
            }
            _exit(0);
        }
    }
    for (i = 0; i < KIDS; i++)
        tu_wait_ok(kids[i]);
    cr_assert_eq(shmkit__ref_count(name), 1);
    shmkit_block_close(c);
    cr_assert_not(lu_exists(name));
    cr_assert_not(sidecar_exists(name));
}

/* A peer of the same user scribbles capacity and count in the sidecar:
 * attach refuses it, and handles mapped before never index past the
 * sidecar (count is bounded by the capacity validated at map time). */
Test(refcount, scribbled_sidecar_counts_are_never_trusted)
{
    char name[SHMKIT_NAME_MAX + 1], sc[SHMKIT_NAME_MAX + 1], path[300];
    shmkit_block *c, *a;
    uint32_t huge = 0xfffffff0u, cap = 0xffffffffu;
    int fd;

    cr_assert_eq(shmkit_block_create(&c, tu_name("scrib"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), 0);
    shmkit__ref_sidecar_name(name, sc);
    snprintf(path, sizeof path, "/dev/shm/%s", sc);
    fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    /* count sits at offset 92 of the sidecar, the capacity at 16 */
    cr_assert_eq(pwrite(fd, &huge, 4, 92), 4);
    cr_assert_eq(shmkit_block_close(a), 0, "close walks only valid slots");
    cr_assert_eq(pwrite(fd, &cap, 4, 16), 4);
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), SHMKIT_ECORRUPT);
    cr_assert_eq(shmkit_block_close(c), 0);
    close(fd);
    shmkit_unlink(name);
    shmkit_unlink(sc);
}

/* An attacher that runs out of descriptors while it attaches must not end
 * the lifetime of a block a live process holds: it cannot read /proc to
 * tell whether that holder lives, and "cannot tell" is not "dead". Each
 * child keeps only h descriptors free (h = 0..12, so each open of the
 * attach is the one refused in turn); children exit 0 for a clean answer
 * (attached, or EMFILE/ENFILE), 1 for another error. */
Test(refcount, attach_out_of_descriptors_never_ends_a_live_block)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *c;
    int h;

    cr_assert_eq(shmkit_block_create(&c, tu_name("rcfd"), 64, SHMKIT_REFCOUNT),
                 0);
    strcpy(name, shmkit_block_name(c));
    for (h = 0; h <= 12; h++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            shmkit_block *a;
            int r;

            if (tu_fds_leave(h) < 0)
                _exit(2);
            r = shmkit_block_attach(&a, name, SHMKIT_REFCOUNT);
            _exit(r == 0 || r == -EMFILE || r == -ENFILE ? 0 : 1);
        }
        tu_wait_ok(pid);
        cr_assert(lu_exists(name),
                  "an attach with %d free descriptors removed the block", h);
        cr_assert(sidecar_exists(name),
                  "an attach with %d free descriptors removed the sidecar", h);
    }
    /* The children's slots (they exited without detaching) are reaped
     * once /proc can be read: the creator's close ends the lifetime. */
    cr_assert_eq(tu_gc(0), 0);
    cr_assert_eq(shmkit__ref_count(name), 1);
    shmkit_block_close(c);
    cr_assert_not(lu_exists(name));
}

/* Bytes of memory the sidecar of `name` holds (tmpfs counts its pages). */
static long long sidecar_bytes(const char *name)
{
    char sc[SHMKIT_NAME_MAX + 1], path[SHMKIT_NAME_MAX + 16];
    struct stat st;

    shmkit__ref_sidecar_name(name, sc);
    snprintf(path, sizeof path, "/dev/shm/%s", sc);
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    return (long long)st.st_blocks * 512;
}

/* The sidecar is 256 KiB but holds only its reserved head (one page) until
 * a joiner needs a slot past it (slot 233): that join reserves the slot's
 * page, and every handle counts. */
Test(refcount, joiners_past_the_reserved_head_reserve_their_page)
{
    enum { N = 300 };
    static shmkit_block *a[N];
    long page = sysconf(_SC_PAGESIZE);
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *c;
    int i;

    cr_assert_eq(shmkit_block_create(&c, tu_name("head"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    cr_assert_eq(sidecar_bytes(name), page, "a new sidecar holds %lld bytes",
                 sidecar_bytes(name));
    for (i = 0; i < N; i++)
        cr_assert_eq(shmkit_block_attach(&a[i], name, SHMKIT_REFCOUNT), 0,
                     "attach %d: %s", i, shmkit_last_error());
    cr_assert_eq(shmkit__ref_count(name), N + 1);
    cr_assert_gt(sidecar_bytes(name), page, "slots past the head reserved");
    cr_assert_eq(shmkit_block_close(c), 0);
    for (i = 0; i < N - 1; i++)
        cr_assert_eq(shmkit_block_close(a[i]), 0);
    cr_assert_eq(shmkit__ref_count(name), 1);
    cr_assert(lu_exists(name));
    cr_assert_eq(shmkit_block_close(a[N - 1]), 0);
    cr_assert_not(lu_exists(name), "last close left the block");
    cr_assert_not(sidecar_exists(name), "last close left the sidecar");
}

/* A forked child closing its copy of a refcounted handle removes no slot
 * of its parent's: the parent's count stays, and its own close is the
 * last. */
Test(refcount, forked_child_closing_its_copy_leaves_the_parents_count)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *c;
    pid_t pid;

    cr_assert_eq(shmkit_block_create(&c, tu_name("fork"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(shmkit_block_close(c) == 0 ? 0 : 10);
    cr_assert_eq(tu_wait_status(pid), 0, "the child's close failed");
    cr_assert(lu_exists(name), "the child's close removed the block");
    cr_assert_eq(shmkit__ref_count(name), 1);
    cr_assert_eq(shmkit_block_close(c), 0);
    cr_assert_not(lu_exists(name));
    cr_assert_not(sidecar_exists(name));
}

/* Killed attachers behind a live one: the live one's close is the last
 * (it reaps them), and a join meanwhile counts only the living. */
Test(refcount, last_live_close_reaps_killed_attachers_behind_it)
{
    enum { N = 4 };
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_block *c, *a;
    pid_t kids[N];
    int i;

    cr_assert_eq(shmkit_block_create(&c, tu_name("behind"), 64, SHMKIT_REFCOUNT), 0);
    strcpy(name, shmkit_block_name(c));
    spawn_holders(name, kids, N);
    for (i = 0; i < N; i++) {
        kill(kids[i], SIGKILL);
        cr_assert(WIFSIGNALED(tu_wait_status(kids[i])));
    }
    cr_assert_eq(shmkit__ref_count(name), 1);
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit__ref_count(name), 2);
    cr_assert_eq(shmkit_block_close(a), 0);
    cr_assert(lu_exists(name));
    cr_assert_eq(shmkit_block_close(c), 0);
    cr_assert_not(lu_exists(name), "the last live close left the block");
    cr_assert_not(sidecar_exists(name), "the last live close left the sidecar");
}

/* A refcounted create that finds the name taken fails -EEXIST and leaves
 * the block there as it was: its sidecar, its count. It used to remove the
 * taken name's sidecar as stale; the next counted attacher then started a
 * new count of 1, and its close unlinked the block under its creator. The
 * same with a tracked and refcounted create, and with the name taken by a
 * plain (uncounted) block. */
Test(refcount, create_on_a_taken_name_leaves_its_count)
{
    const unsigned how[] = {SHMKIT_REFCOUNT, SHMKIT_REFCOUNT | SHMKIT_TRACK};
    const char *name = tu_name("taken");
    shmkit_block *c, *d, *a;
    size_t i;

    for (i = 0; i < 2; i++) {
        cr_assert_eq(shmkit_block_create(&c, name, 64, SHMKIT_REFCOUNT), 0);
        cr_assert_eq(shmkit_block_create(&d, name, 64, how[i]), -EEXIST);
        cr_assert_eq(shmkit__ref_count(name), 1, "the count went");
        cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), 0);
        cr_assert_eq(shmkit__ref_count(name), 2);
        shmkit_block_close(a);
        cr_assert(lu_exists(name), "an attacher's close unlinked the block "
                                   "its creator holds");
        shmkit_block_close(c);
        cr_assert_not(lu_exists(name));
        cr_assert_not(sidecar_exists(name));
    }
    cr_assert_eq(shmkit_block_create(&c, name, 64, 0), 0);
    cr_assert_eq(shmkit_block_create(&d, name, 64, SHMKIT_REFCOUNT), -EEXIST);
    cr_assert_not(sidecar_exists(name), "a failed create left a sidecar");
    cr_assert_eq(shmkit_block_unlink(c), 0);
    shmkit_block_close(c);
}

/* Maps the first page of `name`'s sidecar read-write (the header: magic
 * at 0, version at 4, capacity at 16, the robust mutex at 24). */
static char *sidecar_map(const char *name, int *fd)
{
    char sc[SHMKIT_NAME_MAX + 1], path[300];
    void *p;

    shmkit__ref_sidecar_name(name, sc);
    snprintf(path, sizeof path, "/dev/shm/%s", sc);
    *fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(*fd, 0, "open %s: %s", path, strerror(errno));
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

/* A process killed while it holds a sidecar's lock leaves it to the next
 * one (owner death): attach and close go on, the count stays exact. */
Test(refcount, sidecar_lock_holder_killed_is_recovered)
{
    const char *name = tu_name("rclk");
    shmkit_block *c, *a;
    char *h;
    pid_t pid;
    int fd;

    cr_assert_eq(shmkit_block_create(&c, name, 64, SHMKIT_REFCOUNT), 0);
    h = sidecar_map(name, &fd);
    pid = fork();
    if (pid == 0) {
        if (pthread_mutex_lock((pthread_mutex_t *)(h + 24)) != 0)
            _exit(10);
        kill(getpid(), SIGKILL);
        _exit(11);
    }
    tu_wait_signaled(pid, SIGKILL);
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit__ref_count(name), 2);
    shmkit_block_close(a);
    cr_assert(lu_exists(name));
    shmkit_block_close(c);
    cr_assert_not(lu_exists(name));
    cr_assert_not(sidecar_exists(name));
    munmap(h, 4096);
    close(fd);
}

/* A live process holding a sidecar's lock (stopped, or hostile) makes
 * neither `shmkit ls` nor gc wait for it: the lifecycle column says
 * "refcount (busy)", gc leaves that sidecar for a later run. */
Test(refcount, busy_sidecar_stalls_neither_ls_nor_gc)
{
    tu_require_private_shm();
    const char *name = tu_name("rcbusy");
    int fd, ready[2], hold[2];
    shmkit_block *c;
    char buf[64], *h, x;
    pid_t pid;

    cr_assert_eq(shmkit_block_create(&c, name, 64, SHMKIT_REFCOUNT), 0);
    h = sidecar_map(name, &fd);
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(hold), 0);
    pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        if (pthread_mutex_lock((pthread_mutex_t *)(h + 24)) != 0)
            _exit(10);
        if (write(ready[1], "x", 1) != 1)
            _exit(11);
        lu_wait_eof(hold[0]);
        pthread_mutex_unlock((pthread_mutex_t *)(h + 24));
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    cr_assert_eq(read(ready[0], &x, 1), 1, "the holder did not lock");
    shmkit_lifecycle_describe(name, buf, sizeof buf);
    cr_assert_str_eq(buf, "refcount (busy)");
    cr_assert_eq(tu_gc(0), 0);
    cr_assert(lu_exists(name));
    cr_assert(sidecar_exists(name), "gc removed a live sidecar");
    close(hold[1]);
    cr_assert_eq(tu_wait_status(pid), 0);
    close(ready[0]);
    shmkit_block_close(c);
    cr_assert_not(lu_exists(name));
    munmap(h, 4096);
    close(fd);
}

/* A sidecar whose header a peer scribbled on: a counted attach is a
 * clear error naming what is wrong, never a crash; gc removes the
 * sidecar, never the block. */
Test(refcount, hostile_sidecar_header_is_a_clear_error)
{
    tu_require_private_shm();
    static const struct {
        int off;
        uint32_t bad;
        int want;
    } cases[] = {{0, 0x21212121u, SHMKIT_ECORRUPT},    /* magic */
                 {4, 2u, SHMKIT_EVERSION},             /* version */
                 {16, 1u, SHMKIT_ECORRUPT}};           /* capacity */
    const char *name = tu_name("rchost");
    shmkit_block *c, *a;
    uint32_t keep;
    size_t i;
    char *h;
    int fd, r;

    cr_assert_eq(shmkit_block_create(&c, name, 64, SHMKIT_REFCOUNT), 0);
    h = sidecar_map(name, &fd);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(&keep, h + cases[i].off, 4);
        memcpy(h + cases[i].off, &cases[i].bad, 4);
        cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT),
                     cases[i].want, "case %zu", i);
        memcpy(h + cases[i].off, &keep, 4);
    }
    cr_assert_eq(ftruncate(fd, 4096), 0);
    cr_assert_eq(shmkit_block_attach(&a, name, SHMKIT_REFCOUNT),
                 SHMKIT_ECORRUPT, "a short sidecar");
    r = tu_gc(0);
    cr_assert_eq(r, 0, "gc: %d", r);
    cr_assert_not(sidecar_exists(name), "gc left a corrupt sidecar");
    cr_assert(lu_exists(name), "gc removed the block of a corrupt sidecar");
    munmap(h, 4096);
    close(fd);
    shmkit_block_close(c);
    shmkit_unlink(name);
}

/* Two refcounted blocks swap names (SHMKIT_EXCHANGE) through one of
 * their handles: each count goes with its block, and the last close of
 * either removes exactly that block, under its new name, also through a
 * handle that still has the old one (b's, b2's: the exchange was a's).
 * Before, those closes looked for the block under the old name, found
 * the other one, and left b's block and sidecar for gc. */
Test(refcount, exchange_swaps_the_counts_with_the_blocks)
{
    char a_name[SHMKIT_NAME_MAX + 1], b_name[SHMKIT_NAME_MAX + 1];
    shmkit_block *a, *b, *b2, *x;

    strcpy(a_name, tu_name("exa"));
    strcpy(b_name, tu_name("exb"));
    cr_assert_eq(shmkit_block_create(&a, a_name, 64, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_create(&b, b_name, 128, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_attach(&b2, b_name, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_rename(a, b_name, SHMKIT_EXCHANGE), 0, "%s",
                 shmkit_last_error());
    cr_assert_str_eq(shmkit_block_name(a), b_name);
    cr_assert_eq(shmkit__ref_count(b_name), 1, "a's count");
    cr_assert_eq(shmkit__ref_count(a_name), 2, "b's count");
    cr_assert_eq(shmkit_block_attach(&x, a_name, SHMKIT_REFCOUNT), 0);
    cr_assert_eq(shmkit_block_size(x), 128);
    cr_assert_eq(shmkit__ref_count(a_name), 3);
    shmkit_block_close(x);
    shmkit_block_close(a);
    cr_assert_not(lu_exists(b_name), "a's last close left its block");
    cr_assert(lu_exists(a_name), "a's last close removed b's block");
    shmkit_block_close(b2);
    shmkit_block_close(b);
    cr_assert_not(lu_exists(a_name));
    cr_assert_not(sidecar_exists(a_name));
    cr_assert_not(sidecar_exists(b_name));
}
