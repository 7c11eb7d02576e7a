/*
 * test_faults.c - failures injected under the OS layer.
 *
 * Each test makes one system call fail (or be interrupted) through the
 * replaceable table in os_linux.h and checks the result code and that no
 * descriptor, mapping or name is left behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/os.h"
#include "core/os_linux.h"
#include "testutil.h"

static void reset(void)
{
    shmkit__os_reset();
    tu_cleanup();
}

static void setup(void)
{
    tu_setup();
    shmkit__os_reset();
}

TestSuite(faults, .init = setup, .fini = reset);

/* How many calls pass before the injected failure, and which errno. */
static int pass_before, inject_errno, calls;

static bool should_fail(void)
{
    calls++;
    return pass_before-- == 0;
}

static int bad_open(const char *path, int flags, mode_t mode)
{
    if (should_fail())
        return errno = inject_errno, -1;
    return open(path, flags, mode);
}

static int bad_ftruncate(int fd, off_t len)
{
    if (should_fail())
        return errno = inject_errno, -1;
    return ftruncate(fd, len);
}

static int bad_fallocate(int fd, off_t off, off_t len)
{
    if (should_fail())
        return inject_errno;
    return posix_fallocate(fd, off, len);
}

static void *bad_mmap(void *a, size_t len, int prot, int fl, int fd, off_t off)
{
    if (should_fail())
        return errno = inject_errno, MAP_FAILED;
    return mmap(a, len, prot, fl, fd, off);
}

static void *bad_mremap(void *old, size_t ol, size_t nl, int fl)
{
    if (should_fail())
        return errno = inject_errno, MAP_FAILED;
    return mremap(old, ol, nl, fl);
}

static int bad_fstat(int fd, struct stat *st)
{
    if (should_fail())
        return errno = inject_errno, -1;
    return fstat(fd, st);
}

static ssize_t bad_getrandom(void *buf, size_t len, unsigned fl)
{
    if (should_fail())
        return errno = inject_errno, -1;
    return getrandom(buf, len, fl);
}

/* Fails with inject_errno, or with 0 reads nothing (returns 0, end of
 * file: the object shrank between the attacher's fstat and its read). */
static ssize_t bad_pread(int fd, void *buf, size_t len, off_t off)
{
    if (should_fail())
        return inject_errno ? (errno = inject_errno, -1) : 0;
    return pread(fd, buf, len, off);
}

static void inject(int err, int pass)
{
    inject_errno = err;
    pass_before = pass;
    calls = 0;
}

struct baseline {
    int fds, maps;
};

static struct baseline baseline(void)
{
    struct baseline b = {tu_fd_count(), tu_shm_mapping_count()};
    return b;
}

static void assert_nothing_left(struct baseline b)
{
    cr_assert_eq(tu_fd_count(), b.fds, "descriptor leaked");
    cr_assert_eq(tu_shm_mapping_count(), b.maps, "mapping leaked");
    cr_assert_eq(tu_count_leftovers(), 0, "name left in /dev/shm");
}

Test(faults, enospc_at_reserve)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.posix_fallocate = bad_fallocate;
    inject(ENOSPC, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("f"), 1 << 20, SHMKIT_RESERVE),
                 -ENOSPC);
    cr_assert_null(b);
    assert_nothing_left(base);
}

Test(faults, enospc_at_ftruncate)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.ftruncate = bad_ftruncate;
    inject(ENOSPC, 0);
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), -ENOSPC);
    assert_nothing_left(base);
}

Test(faults, emfile_at_open)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.open = bad_open;
    inject(EMFILE, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("f"), 4096, 0), -EMFILE);
    inject(EMFILE, 0);
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), -EMFILE);
    assert_nothing_left(base);
}

Test(faults, mmap_failure_at_create_and_attach)
{
    struct baseline base = baseline();
    shmkit_block *a, *b;

    shmkit__sys.mmap = bad_mmap;
    inject(ENOMEM, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("f"), 4096, 0), -ENOMEM);
    assert_nothing_left(base);

    inject(ENOMEM, 1); /* create maps fine, attach fails */
    cr_assert_eq(shmkit_block_create(&a, tu_name("f"), 4096, 0), 0);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("f"), 0), -ENOMEM);
    cr_assert_eq(tu_fd_count(), base.fds + 1, "only a's descriptor");
    cr_assert_eq(tu_count_leftovers(), 1, "a failed attach never unlinks");
    shmkit_block_unlink(a);
    shmkit_block_close(a);
    assert_nothing_left(base);
}

Test(faults, fstat_failure_at_attach)
{
    struct baseline base = baseline();
    shmkit_block *a, *b;

    cr_assert_eq(shmkit_block_create(&a, tu_name("f"), 4096, 0), 0);
    shmkit__sys.fstat = bad_fstat;
    inject(EIO, 0);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("f"), 0), -EIO);
    cr_assert_eq(tu_fd_count(), base.fds + 1);
    shmkit_block_unlink(a);
    shmkit_block_close(a);
    assert_nothing_left(base);
}

Test(faults, eintr_is_retried)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.open = bad_open;
    inject(EINTR, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("i"), 4096, 0), 0);
    cr_assert_eq(calls, 2, "open retried once");
    shmkit_block_unlink(b);
    shmkit_block_close(b);

    shmkit__sys.ftruncate = bad_ftruncate;
    inject(EINTR, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("i"), 4096, 0), 0);
    shmkit_block_unlink(b);
    shmkit_block_close(b);

    shmkit__sys.posix_fallocate = bad_fallocate;
    inject(EINTR, 0);
    cr_assert_eq(shmkit_block_create(&b, tu_name("i"), 4096, SHMKIT_RESERVE), 0);
    shmkit_block_unlink(b);
    shmkit_block_close(b);

    shmkit__sys.getrandom = bad_getrandom;
    inject(EINTR, 0);
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), 0);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    assert_nothing_left(base);
}

Test(faults, random_failure_at_generated_name)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.getrandom = bad_getrandom;
    inject(ENOSYS, 0);
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), -ENOSYS);
    assert_nothing_left(base);
}

static int exists_open(const char *path, int flags, mode_t mode)
{
    calls++;
    if ((flags & O_TMPFILE) == O_TMPFILE)
        return errno = EOPNOTSUPP, -1; /* as where O_TMPFILE is missing */
    if (flags & O_CREAT)
        return errno = EEXIST, -1;
    return open(path, flags, mode);
}

static int bad_linkat(int od, const char *op, int nd, const char *np, int fl)
{
    if (should_fail())
        return errno = inject_errno, -1;
    return linkat(od, op, nd, np, fl);
}

static int exists_linkat(int od, const char *op, int nd, const char *np,
                         int fl)
{
    (void)od, (void)op, (void)nd, (void)np, (void)fl;
    calls++;
    return errno = EEXIST, -1;
}

/* A generated name is published with linkat, which never replaces: a name
 * someone took meanwhile is -EEXIST, and create tries another. */
Test(faults, collisions_are_retried_then_reported)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.linkat = bad_linkat;
    inject(EEXIST, 0); /* the first generated name is taken */
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), 0);
    cr_assert_eq(calls, 2, "retried with a new name");
    shmkit_block_unlink(b);
    shmkit_block_close(b);

    shmkit__sys.linkat = exists_linkat; /* every name is taken */
    calls = 0;
    cr_assert_eq(shmkit_block_create(&b, NULL, 4096, 0), SHMKIT_EBUSYNAME);
    cr_assert_eq(calls, 64);
    assert_nothing_left(base);
}

/* Without nameless objects, the object is built under a temporary name
 * carrying our pid; when every temporary name is taken, create gives up
 * with SHMKIT_EBUSYNAME and leaves nothing. */
Test(faults, temporary_collisions_without_tmpfile)
{
    struct baseline base = baseline();
    shmkit_block *b;

    shmkit__sys.open = exists_open;
    calls = 0;
    cr_assert_eq(shmkit_block_create(&b, tu_name("t"), 4096, 0),
                 SHMKIT_EBUSYNAME);
    cr_assert_eq(calls, 1 + 64, "one O_TMPFILE try, then 64 names");
    assert_nothing_left(base);
}

Test(faults, mremap_failure_keeps_old_size)
{
    struct baseline base = baseline();
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("m"), 4096, 0), 0);
    memset(shmkit_block_data(b), 7, 4096);
    shmkit__sys.mremap = bad_mremap;
    inject(ENOMEM, 0);
    cr_assert_eq(shmkit_block_resize(b, 1 << 20), -ENOMEM);
    cr_assert_eq(shmkit_block_size(b), 4096);
    cr_assert_eq(((char *)shmkit_block_data(b))[4095], 7, "mapping intact");
    {
        struct stat st;
        cr_assert_eq(fstat(shmkit_block_fd(b), &st), 0);
        cr_assert_eq(st.st_size, 4096, "object rolled back to its old size");
    }
    shmkit__os_reset();
    cr_assert_eq(shmkit_block_resize(b, 1 << 20), 0);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    assert_nothing_left(base);
}

/* An attach that reads the header with pread (a list, an array, a named
 * lock) and reads nothing is SHMKIT_ETRUNCATED; a failing read is its
 * error; neither leaves a descriptor or a mapping. */
Test(faults, pread_of_nothing_or_failing_at_attach)
{
    shmkit_item items[] = {shmkit_item_int(7), shmkit_item_str("x")};
    static const int errs[] = {0, EIO};
    static const int want[] = {SHMKIT_ETRUNCATED, -EIO};
    size_t shape[1] = {4};
    struct baseline base;
    shmkit_list *l, *l2;
    shmkit_array *a, *a2;
    shmkit_lock *k, *k2;
    int i;

    cr_assert_eq(shmkit_list_create(&l, tu_name("pl"), items, 2, 0), 0);
    cr_assert_eq(shmkit_array_create(&a, tu_name("pa"), 'i', 1, shape, 0), 0);
    cr_assert_eq(shmkit_lock_create(&k, tu_name("pk"), 0, 0), 0);
    base = baseline();
    shmkit__sys.pread = bad_pread;
    for (i = 0; i < 2; i++) {
        inject(errs[i], 0);
        cr_assert_eq(shmkit_list_attach(&l2, tu_name("pl"), 0), want[i],
                     "list, errno %d", errs[i]);
        cr_assert_eq(calls, 1);
        inject(errs[i], 0);
        cr_assert_eq(shmkit_array_attach(&a2, tu_name("pa"), 0), want[i],
                     "array, errno %d", errs[i]);
        cr_assert_eq(calls, 1);
        inject(errs[i], 0);
        cr_assert_eq(shmkit_lock_attach(&k2, tu_name("pk"), 0), want[i],
                     "lock, errno %d", errs[i]);
        cr_assert_eq(calls, 1);
        cr_assert_eq(tu_fd_count(), base.fds, "descriptor leaked");
        cr_assert_eq(tu_shm_mapping_count(), base.maps, "mapping leaked");
    }
    shmkit__os_reset();
    cr_assert_eq(shmkit_list_unlink(l), 0);
    cr_assert_eq(shmkit_list_close(l), 0);
    cr_assert_eq(shmkit_array_unlink(a), 0);
    cr_assert_eq(shmkit_array_close(a), 0);
    cr_assert_eq(shmkit_lock_unlink(k), 0);
    cr_assert_eq(shmkit_lock_close(k), 0);
    cr_assert_eq(tu_count_leftovers(), 0);
}

/* A prefault (SHMKIT_POPULATE, shmkit_block_populate) that fails with
 * EFAULT means: the object shrank under us (fstat says so) ->
 * SHMKIT_ETRUNCATED, else the memory is not there (a full /dev/shm) ->
 * -ENOSPC; any other failure is itself. */
static int populate_answer, populate_shrink_fd = -1;

static int bad_populate(void *addr, size_t len, bool write)
{
    (void)addr;
    (void)len;
    (void)write;
    if (populate_shrink_fd >= 0 && ftruncate(populate_shrink_fd, 4096) != 0)
        return -EIO; /* not what the test expects: it fails */
    return populate_answer;
}

Test(faults, failed_prefault_says_why)
{
    struct baseline base;
    shmkit_block *a, *b;
    int fd;

    cr_assert_eq(shmkit_block_create(&a, tu_name("pf"), 8 * 4096, 0), 0);
    base = baseline();
    shmkit__os.populate = bad_populate;
    populate_answer = -EFAULT;
    cr_assert_eq(shmkit_block_attach(&b, tu_name("pf"), SHMKIT_POPULATE),
                 -ENOSPC, "full /dev/shm");
    cr_assert_eq(shmkit_block_populate(a, 0, 4096), -ENOSPC);
    populate_answer = -ENOMEM;
    cr_assert_eq(shmkit_block_attach(&b, tu_name("pf"), SHMKIT_POPULATE),
                 -ENOMEM, "other errors pass through");
    cr_assert_eq(tu_fd_count(), base.fds, "descriptor leaked");
    cr_assert_eq(tu_shm_mapping_count(), base.maps, "mapping leaked");

    /* A peer truncates the object during the prefault. */
    fd = shm_open(tu_name("pf"), O_RDWR, 0);
    cr_assert_geq(fd, 0);
    populate_answer = -EFAULT;
    populate_shrink_fd = fd;
    cr_assert_eq(shmkit_block_attach(&b, tu_name("pf"), SHMKIT_POPULATE),
                 SHMKIT_ETRUNCATED, "shrunk under the attach");
    cr_assert_eq(ftruncate(fd, 8 * 4096), 0);
    cr_assert_eq(shmkit_block_populate(a, 0, 4096), SHMKIT_ETRUNCATED,
                 "shrunk under shmkit_block_populate");
    populate_shrink_fd = -1;
    close(fd);
    shmkit__os_reset();
    cr_assert_eq(tu_fd_count(), base.fds, "descriptor leaked");
    cr_assert_eq(tu_shm_mapping_count(), base.maps, "mapping leaked");
    cr_assert_eq(ftruncate(shmkit_block_fd(a), 8 * 4096), 0);
    cr_assert_eq(shmkit_block_unlink(a), 0);
    cr_assert_eq(shmkit_block_close(a), 0);
}

/* shrink and refresh give the failing call's error and keep the block as
 * it was; a read-only handle cannot resize or shrink (-EBADF), a size
 * past INT64_MAX is -EINVAL, a shrink to the same size does nothing. */
Test(faults, shrink_and_refresh_failures_keep_the_block)
{
    struct baseline base = baseline();
    shmkit_block *b, *ro;
    int fd;

    cr_assert_eq(shmkit_block_create(&b, tu_name("sr"), 2 * 4096, 0), 0);
    memset(shmkit_block_data(b), 7, 2 * 4096);
    cr_assert_eq(shmkit_block_attach(&ro, tu_name("sr"), SHMKIT_RDONLY), 0);
    cr_assert_eq(shmkit_block_resize(ro, 4 * 4096), -EBADF);
    cr_assert_eq(shmkit_block_shrink(ro, 4096), -EBADF);
    cr_assert_eq(shmkit_block_close(ro), 0);
    cr_assert_eq(shmkit_block_resize(b, (size_t)INT64_MAX + 1), -EINVAL);
    cr_assert_eq(shmkit_block_shrink(b, 2 * 4096), 0, "same size");

    shmkit__sys.ftruncate = bad_ftruncate;
    inject(EIO, 0);
    cr_assert_eq(shmkit_block_shrink(b, 4096), -EIO);
    cr_assert_eq(shmkit_block_size(b), 2 * 4096);
    shmkit__os_reset();

    shmkit__sys.fstat = bad_fstat;
    inject(EIO, 0);
    cr_assert_eq(shmkit_block_refresh(b), -EIO);
    shmkit__os_reset();

    /* A peer grows it; the remap fails: the old mapping stays. */
    fd = shm_open(tu_name("sr"), O_RDWR, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 64 * 4096), 0);
    close(fd);
    shmkit__sys.mremap = bad_mremap;
    inject(ENOMEM, 0);
    cr_assert_eq(shmkit_block_refresh(b), -ENOMEM);
    cr_assert_eq(shmkit_block_size(b), 2 * 4096);
    cr_assert_eq(((char *)shmkit_block_data(b))[2 * 4096 - 1], 7,
                 "mapping intact");
    shmkit__os_reset();
    cr_assert_eq(shmkit_block_refresh(b), 0);
    cr_assert_eq(shmkit_block_size(b), 64 * 4096);
    cr_assert_eq(shmkit_block_unlink(b), 0);
    cr_assert_eq(shmkit_block_close(b), 0);
    assert_nothing_left(base);
}
