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

static int opens, unlinks, fstats;

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

static int counting_fstat(int fd, struct stat *st)
{
    fstats++;
    return fstat(fd, st);
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
    opens = unlinks = fstats = 0;
    shmkit__sys.open = counting_open;
    shmkit__sys.unlink = counting_unlink;
    shmkit__sys.fstat = counting_fstat;
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
 * lock and removes it; where there is none, the look is an lstat, no
 * open. */
Test(syscalls, unlink_by_name_looks_for_a_list_lock)
{
    shmkit_item one = shmkit_item_int(1);
    shmkit_block *b;
    shmkit_list *l;

    cr_assert_eq(shmkit_block_create(&b, tu_name("l"), 4096, 0), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    count_from_now();
    cr_assert_eq(shmkit_unlink(tu_name("l")), 0);
    cr_assert_eq(unlinks, 1);
    cr_assert_eq(opens, 0, "opened %d objects", opens);
    shmkit__os_reset();
    cr_assert_eq(shmkit_list_create(&l, tu_name("k"), &one, 1, 0), 0);
    cr_assert_eq(shmkit_list_lock(l), 0);
    cr_assert_eq(shmkit_list_unlock(l), 0);
    cr_assert_eq(shmkit_list_close(l), 0);
    count_from_now();
    cr_assert_eq(shmkit_unlink(tu_name("k")), 0);
    cr_assert_eq(unlinks, 2, "the list and its lock: %d unlinks", unlinks);
    cr_assert_eq(opens, 1, "opened %d objects", opens);
    cr_assert_eq(tu_count_leftovers(), 0);
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

/* A plain create (no lifetime) does not stat its new object: only a
 * tracked or refcounted one records the inode. */
Test(syscalls, plain_create_makes_no_fstat)
{
    shmkit_block *b;

    count_from_now();
    cr_assert_eq(shmkit_block_create(&b, tu_name("c"), 4096, 0), 0);
    cr_assert_eq(fstats, 0, "%d fstat calls", fstats);
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    count_from_now();
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), 0);
    cr_assert_eq(fstats, 0, "generated name: %d fstat calls", fstats);
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
}

static int linkats;

static int counting_linkat(int od, const char *op, int nd, const char *np,
                           int fl)
{
    linkats++;
    return linkat(od, op, nd, np, fl);
}

static int refusing_empty_path(int od, const char *op, int nd,
                               const char *np, int fl)
{
    linkats++;
    if (fl & AT_EMPTY_PATH) /* as a kernel that wants CAP_DAC_READ_SEARCH */
        return errno = ENOENT, -1;
    return linkat(od, op, nd, np, fl);
}

static void create_drop(const char *name)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, name, 4096, 0), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
}

/* Publishing a created block under its name is one link, once the first
 * create found which way of linking the kernel allows. */
Test(syscalls, publish_is_one_link)
{
    create_drop(tu_name("p"));
    shmkit__sys.linkat = counting_linkat;
    linkats = 0;
    create_drop(tu_name("p"));
    cr_assert_eq(linkats, 1, "%d linkat calls", linkats);
}

/* Where linkat(AT_EMPTY_PATH) is refused, create links through
 * /proc/self/fd instead, and stops asking the refused way. */
Test(syscalls, publish_falls_back_when_empty_path_is_refused)
{
    shmkit__sys.linkat = refusing_empty_path;
    linkats = 0;
    create_drop(tu_name("f"));
    cr_assert_eq(linkats, 2, "refused, then through /proc");
    linkats = 0;
    create_drop(tu_name("f"));
    cr_assert_eq(linkats, 1, "%d linkat calls", linkats);
}

static int preads, pwrites, fallocates;

static ssize_t counting_pread(int fd, void *buf, size_t len, off_t off)
{
    preads++;
    return pread(fd, buf, len, off);
}

static ssize_t counting_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    pwrites++;
    return pwrite(fd, buf, len, off);
}

static int counting_fallocate(int fd, off_t off, off_t len)
{
    fallocates++;
    return posix_fallocate(fd, off, len);
}

static int ftruncates;

static int counting_ftruncate(int fd, off_t len)
{
    ftruncates++;
    return ftruncate(fd, len);
}

/* A list attach validates a pread copy of the block: a list of up to
 * 64 KiB is read in one call; a larger one as its first 64 KiB, the rest
 * of the offsets if any, and the formats and codes: never its data. */
Test(syscalls, list_attach_reads_a_small_list_in_one_call)
{
    static shmkit_item items[10000];
    size_t counts[] = {0, 1000, 5000, 10000}, i, k;
    int want[] = {1, 1, 2, 3};
    shmkit_list *l, *m;

    for (k = 0; k < 10000; k++)
        items[k] = shmkit_item_int((int64_t)k);
    for (i = 0; i < 4; i++) {
        cr_assert_eq(shmkit_list_create(&l, tu_name("a"), items, counts[i], 0),
                     0);
        preads = 0;
        shmkit__sys.pread = counting_pread;
        cr_assert_eq(shmkit_list_attach(&m, tu_name("a"), 0), 0);
        shmkit__os_reset();
        cr_assert_eq(preads, want[i], "%zu items: %d preads", counts[i],
                     preads);
        cr_assert_eq(shmkit_list_len(m), counts[i]);
        cr_assert_eq(shmkit_list_close(m), 0);
        cr_assert_eq(shmkit_list_unlink(l), 0);
        cr_assert_eq(shmkit_list_close(l), 0);
    }
}

/* A list create writes its bytes with pwrite (64 KiB at a time), which
 * sizes the object and allocates the memory: no ftruncate, no fallocate,
 * whatever flags ask for reserving, named or generated. */
Test(syscalls, list_create_is_pwrite_without_fallocate)
{
    static shmkit_item items[5000];
    size_t k;
    shmkit_list *l;

    for (k = 0; k < 5000; k++)
        items[k] = shmkit_item_int((int64_t)k);
    pwrites = fallocates = ftruncates = 0;
    shmkit__sys.pwrite = counting_pwrite;
    shmkit__sys.posix_fallocate = counting_fallocate;
    shmkit__sys.ftruncate = counting_ftruncate;
    cr_assert_eq(shmkit_list_create(&l, tu_name("w"), items, 1000,
                                    SHMKIT_RESERVE), 0);
    cr_assert_eq(pwrites, 1, "1,000 items (25 KB): %d pwrites", pwrites);
    cr_assert_eq(fallocates, 0);
    cr_assert_eq(shmkit_list_unlink(l), 0);
    cr_assert_eq(shmkit_list_close(l), 0);
    pwrites = 0;
    cr_assert_eq(shmkit_list_create(&l, NULL, items, 5000, 0), 0);
    cr_assert_eq(pwrites, 2, "5,000 items (125 KB): %d pwrites", pwrites);
    cr_assert_eq(fallocates, 0);
    cr_assert_eq(ftruncates, 0, "%d ftruncate calls", ftruncates);
    shmkit__os_reset();
    cr_assert_eq(shmkit_list_unlink(l), 0);
    cr_assert_eq(shmkit_list_close(l), 0);
}

static long long fallocated;
static int opens_tmp, links;

static int summing_fallocate(int fd, off_t off, off_t len)
{
    fallocates++;
    fallocated += (long long)len;
    return posix_fallocate(fd, off, len);
}

static int counting_open_tmp(const char *path, int flags, mode_t mode)
{
    opens_tmp += (flags & O_TMPFILE) == O_TMPFILE;
    return counting_open(path, flags, mode);
}

static int counting_link(int od, const char *op, int nd, const char *np,
                         int fl)
{
    links++;
    return linkat(od, op, nd, np, fl);
}

static void count_life_from_now(void)
{
    count_from_now();
    fallocates = 0;
    fallocated = 0;
    opens_tmp = links = 0;
    shmkit__sys.open = counting_open_tmp;
    shmkit__sys.posix_fallocate = summing_fallocate;
    shmkit__sys.linkat = counting_link;
}

/* A reference-counted create cycle: the create makes the block and its
 * sidecar (two nameless objects, two links), reserves one page of the
 * sidecar (not its 256 KiB: that was most of the cycle's time) and
 * stats each object once (the block for its inode, the sidecar for its
 * inode and owner); the last close unlinks both and stats nothing (the
 * block's inode is the sidecar's record, checked by name). */
Test(syscalls, refcounted_create_cycle)
{
    long page = sysconf(_SC_PAGESIZE);
    shmkit_block *b;

    create_drop(tu_name("warm")); /* link's first-use probe, not counted */
    count_life_from_now();
    cr_assert_eq(shmkit_block_create(&b, tu_name("r"), 4096, SHMKIT_REFCOUNT),
                 0, "%s", shmkit_last_error());
    cr_assert_eq(opens_tmp, 2, "%d nameless objects made", opens_tmp);
    cr_assert_eq(opens, 2, "%d opens", opens);
    cr_assert_eq(links, 2, "%d linkat calls", links);
    cr_assert_eq(fallocates, 1, "%d fallocate calls", fallocates);
    cr_assert_leq(fallocated, page, "reserved %lld bytes at create",
                  fallocated);
    cr_assert_eq(fstats, 2, "%d fstat calls at create", fstats);
    cr_assert_eq(unlinks, 0);
    count_life_from_now();
    cr_assert_eq(shmkit_block_close(b), 0);
    cr_assert_eq(unlinks, 2, "%d unlinks at the last close", unlinks);
    cr_assert_eq(fstats, 0, "%d fstat calls at the last close", fstats);
    cr_assert_eq(opens, 0, "%d opens at the last close", opens);
    cr_assert_eq(fallocates, 0);
    shmkit__os_reset();
    cr_assert_eq(tu_count_leftovers(), 0);
}
