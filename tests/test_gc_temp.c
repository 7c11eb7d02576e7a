/*
 * test_gc_temp.c - what shmkit keeps beside or before a block: objects a
 * creator died building ("shmkit-tmp-<pid>-<hex>", the names typed blocks,
 * named locks and lists are built under before they are published) and a
 * list's lock ("<list>.lock"). They go with their owner, or gc removes them
 * once it is gone; nothing else is touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lifeutil.h"

static char made[8][128];
static int nmade;

static void cleanup(void)
{
    int i;

    for (i = 0; i < nmade; i++)
        shmkit_unlink(made[i]);
    nmade = 0;
    lu_cleanup();
}

static void setup(void)
{
    lu_setup();
    tu_on_skip(cleanup); /* also the planted temporaries */
}

TestSuite(gc_temp, .init = setup, .fini = cleanup);

/* Plants a temporary of creator `pid`, `age` seconds old; returns its name. */
static const char *plant(pid_t pid, int age)
{
    char *name = made[nmade++];
    struct timespec t[2];
    shmkit_block *b;

    snprintf(name, sizeof made[0], "shmkit-tmp-%ld-%08x", (long)pid,
             (unsigned)getpid() ^ (unsigned)nmade);
    cr_assert_eq(shmkit_block_create(&b, name, 64, 0), 0);
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    cr_assert_eq(futimens(shmkit_block_fd(b), t), 0);
    shmkit_block_close(b);
    return name;
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(0);
    tu_wait_ok(pid);
    return pid;
}

static bool exists(const char *name)
{
    shmkit_block *b;

    if (shmkit_block_attach(&b, name, SHMKIT_RDONLY) != 0)
        return false;
    shmkit_block_close(b);
    return true;
}

struct seen {
    int n;
    char what[32];
};

static void report(const char *what, const char *name, void *arg)
{
    struct seen *s = arg;

    (void)name;
    s->n++;
    snprintf(s->what, sizeof s->what, "%s", what);
}

/* shmkit_gc with a report, only in the suite's private /dev/shm, where the
 * test's planted objects are the only ones and the count is exact. */
static int gc_here(unsigned flags, struct seen *s)
{
    if (!tu_private_shm())
        tu_skip("shmkit_gc() would act on the host's whole /dev/shm: "
                "run the suite through scripts/private-shm.sh");
    return shmkit_gc(flags, report, s);
}

Test(gc_temp, dead_creators_temporaries_go)
{
    tu_require_private_shm();
    const char *orphan = plant(dead_pid(), 60);
    const char *live = plant(getpid(), 60);
    const char *young = plant(dead_pid(), 0);
    struct seen s = {0};

    cr_assert_eq(gc_here(SHMKIT_GC_DRY_RUN, &s), 1, "only the orphan");
    cr_assert(exists(orphan), "a dry run removes nothing");
    s.n = 0;
    cr_assert_eq(gc_here(0, &s), 1, "only the orphan");
    cr_assert_not(exists(orphan), "the dead creator's temporary is gone");
    cr_assert_str_eq(s.what, "temporary");
    cr_assert(exists(live), "a live creator's temporary stays");
    cr_assert(exists(young), "a young temporary stays (its creator may be "
              "in another PID namespace)");
}

Test(gc_temp, another_users_temporary_stays)
{
    tu_require_private_shm();
    const char *other;
    char path[256];

    if (geteuid() != 0)
        cr_skip_test("needs root to plant another user's object");
    other = plant(dead_pid(), 60);
    snprintf(path, sizeof path, "/dev/shm/%s", other);
    cr_assert_eq(chown(path, 65534, 65534), 0);
    tu_gc(0);
    cr_assert_eq(access(path, F_OK), 0, "never another user's");
}

/* Makes a list named `name` whose lock block exists; returns the handle. */
static shmkit_list *list_with_lock(const char *name)
{
    shmkit_item it[] = {shmkit_item_int(1)};
    shmkit_list *l;

    cr_assert_eq(shmkit_list_create(&l, name, it, 1, 0), 0);
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    return l;
}

static bool lock_exists(const char *list)
{
    char path[300];

    snprintf(path, sizeof path, "/dev/shm/%s.lock", list);
    return access(path, F_OK) == 0;
}

Test(gc_temp, list_lock_goes_with_its_list)
{
    const char *name = tu_name("lst");
    shmkit_list *l = list_with_lock(name);

    cr_assert(lock_exists(name));
    cr_assert_eq(shmkit_unlink(name), 0);
    cr_assert_not(lock_exists(name), "unlinking the list removes its lock");
    shmkit_list_close(l);

    l = list_with_lock(name);
    cr_assert_eq(shmkit_list_unlink(l), 0);
    cr_assert_not(lock_exists(name), "so does unlinking through the list");
    shmkit_list_close(l);
}

Test(gc_temp, refcounted_list_lock_goes_with_the_last_attacher)
{
    shmkit_item it[] = {shmkit_item_int(1)};
    shmkit_list *l;
    shmkit_block *rc;
    const char *name = tu_name("rcl");

    cr_assert_eq(shmkit_list_create(&l, name, it, 1, 0), 0);
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    cr_assert_eq(shmkit_block_attach(&rc, name, SHMKIT_REFCOUNT), 0);
    shmkit_list_close(l);
    cr_assert(lock_exists(name));
    cr_assert_eq(shmkit_block_close(rc), 0); /* the last counted attacher */
    cr_assert_not(lock_exists(name), "the lock went with the list");
}

Test(gc_temp, orphaned_list_lock_is_collected)
{
    tu_require_private_shm();
    const char *name = tu_name("orph");
    shmkit_list *l = list_with_lock(name);
    char path[300];
    struct seen s = {0};

    /* Removed by something that knows nothing of locks (rm(1), CPython). */
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    cr_assert_eq(unlink(path), 0);
    shmkit_list_close(l);
    cr_assert(lock_exists(name));
    cr_assert_eq(gc_here(0, &s), 1, "only the orphaned lock");
    cr_assert_not(lock_exists(name));
    cr_assert_str_eq(s.what, "sidecar");

    /* A lock whose list is alive stays. */
    l = list_with_lock(tu_name("alive"));
    tu_gc(0);
    cr_assert(lock_exists(tu_name("alive")));
    shmkit_list_close(l);
}
