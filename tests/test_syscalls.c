/*
 * test_syscalls.c - the system calls of the hot paths, counted under the
 * OS layer (the replaceable table in os_linux.h), so that a change that
 * adds one to a path promised to be at the floor fails here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/os.h"
#include "core/os_linux.h"
#include "testutil.h"

static int opens, unlinks;

static int counting_open(const char *path, int flags, mode_t mode)
{
    opens++;
    return open(path, flags, mode);
}

static int counting_unlink(const char *path)
{
    unlinks++;
    return unlink(path);
}

static void setup(void)
{
    tu_setup();
    shmkit__os_reset();
}

static void reset(void)
{
    shmkit__os_reset();
    tu_cleanup();
}

TestSuite(syscalls, .init = setup, .fini = reset);

static void count_from_now(void)
{
    opens = unlinks = 0;
    shmkit__sys.open = counting_open;
    shmkit__sys.unlink = counting_unlink;
}

/* A raw block's unlink by name is one system call: no probe for a list's
 * lock (Python's SharedMemory.unlink() after close() relies on it). */
Test(syscalls, unlink_block_by_name_is_one_call)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("u"), 4096, 0), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    count_from_now();
    cr_assert_eq(shmkit_unlink_block(tu_name("u")), 0);
    cr_assert_eq(unlinks, 1);
    cr_assert_eq(opens, 0, "opened %d objects", opens);
    cr_assert_eq(shmkit_unlink_block(tu_name("u")), -ENOENT);
}

/* shmkit_unlink, which does not know the kind, still looks for a list's
 * lock (and removes it: see test_list.c). */
Test(syscalls, unlink_by_name_looks_for_a_list_lock)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("l"), 4096, 0), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    count_from_now();
    cr_assert_eq(shmkit_unlink(tu_name("l")), 0);
    cr_assert_eq(unlinks, 1);
    cr_assert_eq(opens, 1, "opened %d objects", opens);
}

/* A block's own unlink (through its handle) is one system call too. */
Test(syscalls, block_unlink_is_one_call)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("h"), 4096, 0), 0);
    count_from_now();
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(unlinks, 1);
    cr_assert_eq(opens, 0);
    shmkit__os_reset();
    cr_assert_eq(shmkit_block_close(b), 0);
}
