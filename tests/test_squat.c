/*
 * test_squat.c - hostile things planted at a name, and a full /dev/shm.
 *
 * Attaching must refuse a FIFO, a symlink, a directory, an empty object and
 * another user's object at once (never hang, never hand out another user's
 * memory); creating over any of them is -EEXIST. A full /dev/shm is
 * -ENOSPC at create with SHMKIT_RESERVE, never a SIGBUS later.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(squat, .init = tu_setup, .fini = tu_cleanup, .timeout = 30);

static const char *path_of(const char *name)
{
    static char path[2][512];
    static int next;
    char *p = path[next++ % 2];

    snprintf(p, sizeof path[0], "/dev/shm/%s", name);
    return p;
}

static void expect_refused(const char *name, int code)
{
    shmkit_block *b;
    int before = tu_fd_count();

    cr_assert_eq(shmkit_block_attach(&b, name, 0), code, "%s: %s", name,
                 shmkit_last_error());
    cr_assert_eq(shmkit_block_attach(&b, name, SHMKIT_RDONLY), code);
    cr_assert_eq(shmkit_block_create(&b, name, 10, 0), -EEXIST);
    cr_assert_eq(tu_fd_count(), before, "no descriptor left open");
}

Test(squat, fifo_is_refused_without_hanging)
{
    const char *name = tu_name("fifo");

    cr_assert_eq(mkfifo(path_of(name), 0600), 0);
    expect_refused(name, SHMKIT_ENOTREG);
}

Test(squat, symlink_is_not_followed)
{
    const char *name = tu_name("link"), *target = tu_name("target");
    shmkit_block *t;

    cr_assert_eq(shmkit_block_create(&t, target, 10, 0), 0);
    cr_assert_eq(symlink(path_of(target), path_of(name)), 0);
    expect_refused(name, SHMKIT_ENOTREG);
    shmkit_block_close(t);
}

Test(squat, directory_is_refused)
{
    const char *name = tu_name("dir");

    cr_assert_eq(mkdir(path_of(name), 0700), 0);
    expect_refused(name, SHMKIT_ENOTREG);
    cr_assert_eq(shmkit_unlink(name), -EISDIR);
    rmdir(path_of(name));
}

Test(squat, empty_object_is_eempty)
{
    const char *name = tu_name("empty");
    int fd = open(path_of(name), O_CREAT | O_EXCL | O_RDWR, 0600);

    cr_assert_geq(fd, 0);
    close(fd);
    expect_refused(name, SHMKIT_EEMPTY);
}

Test(squat, another_users_object_is_refused)
{
    const char *name = tu_name("other");
    shmkit_block *b;
    int fd;

    if (geteuid() != 0)
        cr_skip_test("needs root to plant an object owned by another user");
    fd = open(path_of(name), O_CREAT | O_EXCL | O_RDWR, 0666);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    cr_assert_eq(fchown(fd, 65534, 65534), 0);
    close(fd);
    expect_refused(name, SHMKIT_EOWNER);
    cr_assert_eq(shmkit_block_attach(&b, name, SHMKIT_ANYUSER | SHMKIT_RDONLY), 0,
                 "explicitly accepted");
    cr_assert_eq(shmkit_block_size(b), 4096);
    shmkit_block_close(b);
}

static int full_with_reserve(void)
{
    shmkit_block *b;
    DIR *d;
    int r = shmkit_block_create(&b, "big", 4 << 20, SHMKIT_RESERVE);

    if (r != -ENOSPC)
        return 1;
    if (shmkit_block_create(&b, NULL, 4 << 20, SHMKIT_RESERVE) != -ENOSPC)
        return 2;
    /* Nothing may be left: the directory holds only . and .. */
    d = opendir("/dev/shm");
    for (r = 0; d && readdir(d);)
        r++;
    if (d)
        closedir(d);
    if (r != 2)
        return 3;
    /* What does fit still works. */
    if (shmkit_block_create(&b, "small", 64 << 10, SHMKIT_RESERVE) != 0)
        return 4;
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    return 0;
}

Test(squat, full_dev_shm_is_enospc_with_reserve)
{
    int st = tu_in_small_shm(full_with_reserve);

    if (st == -1)
        cr_skip_test("cannot mount a private tmpfs here");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

/* Without SHMKIT_RESERVE the same create succeeds and touching the pages
 * past the space the file system has is SIGBUS: the trap RESERVE avoids. */
static int full_without_reserve(void)
{
    shmkit_block *b;
    size_t i;

    if (shmkit_block_create(&b, "big", 4 << 20, 0) != 0)
        return 1;
    for (i = 0; i < 4 << 20; i += 4096)
        ((volatile char *)shmkit_block_data(b))[i] = 1;
    return 2; /* not reached: SIGBUS */
}

Test(squat, full_dev_shm_without_reserve_is_sigbus)
{
    int st = tu_in_small_shm(full_without_reserve);

    if (st == -1)
        cr_skip_test("cannot mount a private tmpfs here");
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
}
