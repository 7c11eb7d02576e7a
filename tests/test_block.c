/*
 * test_block.c - named blocks: every function of the block API and every
 * error it names, in one process and across processes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(block, .init = tu_setup, .fini = tu_cleanup);

static bool shm_exists(const char *name)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return lstat(path, &st) == 0;
}

static off_t shm_file_size(const char *name)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof path, "/dev/shm/%s", name);
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

Test(block, create_attach_roundtrip)
{
    shmkit_block *a, *b;
    const char *name = tu_name("rt");

    cr_assert_eq(shmkit_block_create(&a, name, 1000, 0), 0);
    cr_assert_str_eq(shmkit_block_name(a), name);
    cr_assert_eq(shmkit_block_size(a), 1000);
    cr_assert_eq(shm_file_size(name), 1000, "exact size, not page-rounded");
    memcpy(shmkit_block_data(a), "hello", 5);

    cr_assert_eq(shmkit_block_attach(&b, name, 0), 0);
    cr_assert_eq(shmkit_block_size(b), 1000);
    cr_assert_eq(memcmp(shmkit_block_data(b), "hello", 5), 0);
    ((char *)shmkit_block_data(b))[999] = 'z';
    cr_assert_eq(((char *)shmkit_block_data(a))[999], 'z');
    cr_assert_eq(((char *)shmkit_block_data(a))[500], 0, "zero-filled");
    cr_assert_eq(shmkit_block_close(b), 0);
    cr_assert(shm_exists(name), "closing an attacher never unlinks");
    cr_assert_eq(shmkit_block_unlink(a), 0);
    cr_assert_not(shm_exists(name));
    cr_assert_eq(shmkit_block_close(a), 0);
}

Test(block, leading_slash_is_dropped)
{
    char slashed[300];
    shmkit_block *a, *b;

    snprintf(slashed, sizeof slashed, "/%s", tu_name("slash"));
    cr_assert_eq(shmkit_block_create(&a, slashed, 64, 0), 0);
    cr_assert_str_eq(shmkit_block_name(a), slashed + 1);
    cr_assert_eq(shmkit_block_attach(&b, slashed + 1, 0), 0);
    shmkit_block_close(b);
    cr_assert_eq(shmkit_unlink(slashed), 0);
    shmkit_block_close(a);
}

Test(block, generated_names)
{
    shmkit_block *b[16];
    int i, j;

    for (i = 0; i < 16; i++) {
        const char *n;
        cr_assert_eq(shmkit_block_create(&b[i], NULL, 4096, 0), 0);
        n = shmkit_block_name(b[i]);
        cr_assert_eq(strlen(n), 12, "psm_ + 8 hex: %s", n);
        cr_assert_eq(strncmp(n, "psm_", 4), 0);
        for (j = 4; j < 12; j++)
            cr_assert(strchr("0123456789abcdef", n[j]), "%s", n);
        for (j = 0; j < i; j++)
            cr_assert_str_neq(n, shmkit_block_name(b[j]));
    }
    for (i = 0; i < 16; i++) {
        cr_assert_eq(shmkit_block_unlink(b[i]), 0);
        shmkit_block_close(b[i]);
    }
}

Test(block, create_existing_is_eexist_and_leaves_it_alone)
{
    shmkit_block *a, *b = (void *)1;
    const char *name = tu_name("exist");

    cr_assert_eq(shmkit_block_create(&a, name, 100, 0), 0);
    memcpy(shmkit_block_data(a), "keep", 4);
    cr_assert_eq(shmkit_block_create(&b, name, 200, 0), -EEXIST);
    cr_assert_null(b, "out is NULL after a failure");
    cr_assert_eq(shm_file_size(name), 100);
    cr_assert_eq(memcmp(shmkit_block_data(a), "keep", 4), 0);
    cr_assert(strstr(shmkit_last_error(), name), "%s", shmkit_last_error());
    cr_assert(strstr(shmkit_last_error(), "EEXIST"), "%s", shmkit_last_error());
    shmkit_block_unlink(a);
    shmkit_block_close(a);
}

Test(block, attach_missing_is_enoent_and_creates_nothing)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_attach(&b, tu_name("missing"), 0), -ENOENT);
    cr_assert_null(b);
    cr_assert_not(shm_exists(tu_name("missing")));
}

Test(block, bad_names)
{
    static const char *const bad[] = {"", "/", "a/b", "/a/b", ".", "..",
                                      "/.", "/..", "x/"};
    char long_name[300];
    shmkit_block *b;
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(shmkit_block_create(&b, bad[i], 10, 0), -EINVAL, "%s",
                     bad[i]);
        cr_assert_eq(shmkit_block_attach(&b, bad[i], 0), -EINVAL, "%s", bad[i]);
        cr_assert_eq(shmkit_unlink(bad[i]), -EINVAL, "%s", bad[i]);
        cr_assert_eq(shmkit_name_check(bad[i]), -EINVAL, "%s", bad[i]);
    }
    cr_assert_eq(shmkit_block_attach(&b, NULL, 0), -EINVAL);
    cr_assert_eq(shmkit_unlink(NULL), -EINVAL);
    cr_assert_eq(shmkit_block_create(NULL, "x", 10, 0), -EINVAL);
    /* The words for each (the CLI prints them). */
    cr_assert_str_eq(shmkit_name_problem(NULL), "no name (NULL)");
    cr_assert_str_eq(shmkit_name_problem("/"), "empty name");
    cr_assert_str_eq(shmkit_name_problem("a/b"),
                     "name contains '/' (only one leading '/' is allowed)");
    cr_assert_str_eq(shmkit_name_problem("/.."), "name is '.' or '..'");
    cr_assert_null(shmkit_name_problem("/ok"));

    memset(long_name, 'n', 256);
    long_name[256] = 0;
    cr_assert_str_eq(shmkit_name_problem(long_name),
                     "name longer than 255 bytes");
    cr_assert_eq(shmkit_block_create(&b, long_name, 10, 0), -ENAMETOOLONG);
    cr_assert_eq(shmkit_name_check(long_name), -ENAMETOOLONG);
    long_name[255] = 0; /* 255 bytes: the limit, accepted */
    cr_assert_eq(shmkit_name_check(long_name), 0);
    memcpy(long_name, tu_prefix(), strlen(tu_prefix()));
    cr_assert_eq(shmkit_block_create(&b, long_name, 10, 0), 0);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* Every public entry point refuses a NULL out pointer and flags it does
 * not take with -EINVAL, before it touches anything. */
Test(block, null_out_and_bad_flags_are_einval)
{
    size_t shape[1] = {1};
    shmkit_mutex_info info;
    shmkit_block *made, *b;
    shmkit_list *l;
    shmkit_array *a;
    shmkit_lock *k;
    shmkit_cond *unaligned;
    uint64_t cbuf[SHMKIT_COND_SIZE / 8 + 1];

    cr_assert_eq(shmkit_block_create(&made, tu_name("arg"), 64, 0), 0);
    cr_assert_eq(shmkit_block_attach(NULL, tu_name("arg"), 0), -EINVAL);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("arg"), SHMKIT_TRACK), -EINVAL,
                 "only the creator tracks");
    cr_assert_null(b);
    cr_assert_eq(shmkit_list_attach(NULL, tu_name("arg"), 0), -EINVAL);
    cr_assert_eq(shmkit_list_open_block(NULL, NULL), -EINVAL);
    cr_assert_eq(shmkit_list_open_block(&l, NULL), -EINVAL);
    cr_assert_eq(shmkit_array_create(NULL, tu_name("arr"), 'i', 1, shape, 0),
                 -EINVAL);
    cr_assert_eq(shmkit_array_attach(NULL, tu_name("arg"), 0), -EINVAL);
    cr_assert_eq(shmkit_array_view(&a, NULL), -EINVAL);
    cr_assert_eq(shmkit_lock_create(NULL, tu_name("lk"), 0, 0), -EINVAL);
    cr_assert_eq(shmkit_lock_create(&k, tu_name("lk"), 0x80, 0), -EINVAL,
                 "unknown lock flag");
    cr_assert_null(k);
    cr_assert_eq(shmkit_lock_create(&k, tu_name("lk"), 0, SHMKIT_RDONLY),
                 -EINVAL);
    cr_assert_eq(shmkit_lock_attach(NULL, tu_name("lk"), 0), -EINVAL);
    cr_assert_eq(shmkit_cond_init(NULL), -EINVAL);
    unaligned = (shmkit_cond *)(void *)((char *)cbuf + 4);
    cr_assert_eq(shmkit_cond_init(unaligned), -EINVAL);
    cr_assert_eq(shmkit_mutex_inspect(NULL, &info), -EINVAL);
    cr_assert_eq(tu_count_leftovers(), 1, "only the block made first");
    tu_drop_block(made);
}

Test(block, bad_sizes_leave_nothing)
{
    shmkit_block *b;

    cr_assert_eq(shmkit_block_create(&b, tu_name("zero"), 0, 0), -EINVAL);
    cr_assert_eq(shmkit_block_create(&b, tu_name("huge"), SIZE_MAX, 0), -EINVAL);
    /* Larger than the machine: refused by the file system or mmap. */
    cr_assert_lt(shmkit_block_create(&b, tu_name("big"), (size_t)1 << 60,
                                     SHMKIT_RESERVE), 0);
    cr_assert_lt(shmkit_block_create(&b, tu_name("big"), (size_t)1 << 62, 0), 0);
    cr_assert_eq(tu_count_leftovers(), 0, "a failed create leaves no object");
    cr_assert_eq(shmkit_block_create(&b, tu_name("rd"), 10, SHMKIT_RDONLY),
                 -EINVAL);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("rd"), SHMKIT_TRACK), -EINVAL);
}

Test(block, mode_default_and_explicit)
{
    shmkit_block *a, *b;
    char path[512];
    struct stat st;
    mode_t old = umask(022);

    cr_assert_eq(shmkit_block_create(&a, tu_name("m1"), 10, 0), 0);
    snprintf(path, sizeof path, "/dev/shm/%s", tu_name("m1"));
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(shmkit_block_create_mode(&b, tu_name("m2"), 10, 0, 0640), 0);
    snprintf(path, sizeof path, "/dev/shm/%s", tu_name("m2"));
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640);
    umask(old);
    shmkit_block_unlink(a);
    shmkit_block_unlink(b);
    shmkit_block_close(a);
    shmkit_block_close(b);
}

Test(block, accessors_and_close_null)
{
    shmkit_block *a;

    cr_assert_eq(shmkit_block_close(NULL), 0);
    cr_assert_eq(shmkit_block_create(&a, tu_name("acc"), 10,
                                     SHMKIT_POPULATE | SHMKIT_RESERVE), 0);
    cr_assert_eq(shmkit_block_flags(a), SHMKIT_POPULATE | SHMKIT_RESERVE);
    cr_assert_geq(shmkit_block_fd(a), 0);
    cr_assert(fcntl(shmkit_block_fd(a), F_GETFD) & FD_CLOEXEC);
    cr_assert_str_eq(shmkit_block_errmsg(a), "");
    cr_assert_eq(shmkit_block_kind(a), SHMKIT_KIND_RAW);
    cr_assert_str_eq(shmkit_kind_name(shmkit_block_kind(a)), "raw");
    cr_assert_str_eq(shmkit_kind_name((shmkit_kind)99), "raw");
    cr_assert_str_eq(shmkit_version(), SHMKIT_VERSION_STRING);
    shmkit_block_unlink(a);
    cr_assert_eq(shmkit_block_unlink(a), -ENOENT);
    cr_assert(strstr(shmkit_block_errmsg(a), "ENOENT"), "%s",
              shmkit_block_errmsg(a));
    cr_assert_eq(shmkit_unlink(tu_name("acc")), -ENOENT);
    shmkit_block_close(a);
}

Test(block, readonly_attach_cannot_write, .signal = SIGSEGV)
{
    shmkit_block *a, *b;

    cr_assert_eq(shmkit_block_create(&a, tu_name("ro"), 4096, 0), 0);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("ro"), SHMKIT_RDONLY), 0);
    cr_assert_eq(shmkit_block_resize(b, 8192), -EBADF);
    cr_assert_eq(shmkit_block_shrink(b, 10), -EBADF);
    shmkit_block_unlink(a); /* the fixture would too; the write below faults */
    ((volatile char *)shmkit_block_data(b))[0] = 1;
}

Test(block, populate_ranges)
{
    shmkit_block *a;

    cr_assert_eq(shmkit_block_create(&a, tu_name("pop"), 3 * 4096 + 7, 0), 0);
    cr_assert_eq(shmkit_block_populate(a, 0, SIZE_MAX), 0, "clipped");
    cr_assert_eq(shmkit_block_populate(a, 4097, 100), 0, "unaligned start");
    cr_assert_eq(shmkit_block_populate(a, 3 * 4096 + 7, 1), -EINVAL);
    shmkit_block_unlink(a);
    shmkit_block_close(a);
}

Test(block, rename_plain_noreplace_exchange)
{
    shmkit_block *a, *b, *c;
    const char *na = tu_name("ra"), *nb = tu_name("rb"), *nc = tu_name("rc");

    cr_assert_eq(shmkit_block_create(&a, na, 10, 0), 0);
    cr_assert_eq(shmkit_block_create(&b, nb, 20, 0), 0);
    memcpy(shmkit_block_data(a), "A", 1);
    memcpy(shmkit_block_data(b), "B", 1);

    cr_assert_eq(shmkit_block_rename(a, nb, SHMKIT_NOREPLACE), -EEXIST);
    cr_assert_str_eq(shmkit_block_name(a), na, "name unchanged on failure");
    cr_assert_eq(shm_file_size(nb), 20);

    cr_assert_eq(shmkit_block_rename(a, nb, SHMKIT_EXCHANGE), 0);
    cr_assert_str_eq(shmkit_block_name(a), nb);
    cr_assert_eq(shm_file_size(nb), 10);
    cr_assert_eq(shm_file_size(na), 20);

    cr_assert_eq(shmkit_block_rename(a, nc, 0), 0);
    cr_assert_str_eq(shmkit_block_name(a), nc);
    cr_assert_not(shm_exists(nb));
    cr_assert_eq(shmkit_block_attach(&c, nc, 0), 0);
    cr_assert_eq(((char *)shmkit_block_data(c))[0], 'A', "same bytes");
    shmkit_block_close(c);

    cr_assert_eq(shmkit_block_rename(a, tu_name("nope"), SHMKIT_EXCHANGE),
                 -ENOENT);
    cr_assert_eq(shmkit_block_rename(a, "bad/name", 0), -EINVAL);
    cr_assert_eq(shmkit_block_rename(a, na, SHMKIT_EXCHANGE | SHMKIT_NOREPLACE),
                 -EINVAL);
    cr_assert_eq(shmkit_block_rename(a, na, 0x100), -EINVAL);
    /* Plain rename replaces, as rename(2) does. */
    cr_assert_eq(shmkit_block_rename(a, na, 0), 0);
    cr_assert_eq(shm_file_size(na), 10);
    cr_assert_eq(shmkit_block_unlink(a), 0);
    cr_assert_eq(shmkit_block_unlink(b), -ENOENT, "b's object was replaced");
    shmkit_block_close(a);
    shmkit_block_close(b);
}

Test(block, resize_refresh_shrink)
{
    shmkit_block *a, *b;
    const char *name = tu_name("rs");
    char *p;

    cr_assert_eq(shmkit_block_create(&a, name, 100, SHMKIT_RESERVE), 0);
    cr_assert_eq(shmkit_block_attach(&b, name, 0), 0);
    memset(shmkit_block_data(a), 'x', 100);
    cr_assert_eq(shmkit_block_resize(a, 100), 0);
    cr_assert_eq(shmkit_block_resize(a, 1 << 20), 0);
    cr_assert_eq(shmkit_block_size(a), 1 << 20);
    cr_assert_eq(shm_file_size(name), 1 << 20);
    p = shmkit_block_data(a);
    cr_assert_eq(p[99], 'x', "contents kept");
    cr_assert_eq(p[100], 0, "growth zero-filled");
    p[(1 << 20) - 1] = 'e';

    cr_assert_eq(shmkit_block_size(b), 100, "peer sees the old size until refresh");
    cr_assert_eq(shmkit_block_refresh(b), 0);
    cr_assert_eq(shmkit_block_size(b), 1 << 20);
    cr_assert_eq(((char *)shmkit_block_data(b))[(1 << 20) - 1], 'e');
    cr_assert_eq(shmkit_block_refresh(b), 0, "no change is fine");

    cr_assert_eq(shmkit_block_resize(a, 50), SHMKIT_ESHRINK);
    cr_assert_eq(shmkit_block_size(a), 1 << 20, "refused shrink changes nothing");
    cr_assert_eq(shmkit_block_shrink(a, 0), -EINVAL);
    cr_assert_eq(shmkit_block_shrink(a, 2 << 20), -EINVAL);
    cr_assert_eq(shmkit_block_shrink(a, 4096), 0);
    cr_assert_eq(shmkit_block_size(a), 4096);
    cr_assert_eq(shmkit_block_refresh(b), SHMKIT_ETRUNCATED);
    cr_assert_eq(shmkit_block_size(b), 4096, "peer's mapping follows the shrink");
    cr_assert_eq(((char *)shmkit_block_data(b))[99], 'x');

    cr_assert_eq(ftruncate(shmkit_block_fd(a), 0), 0); /* a hostile peer */
    cr_assert_eq(shmkit_block_refresh(b), SHMKIT_ETRUNCATED);
    cr_assert_eq(shmkit_block_size(b), 0);
    cr_assert_null(shmkit_block_data(b));
    cr_assert_eq(shmkit_block_resize(a, 8192), 0, "grow from what a peer left");
    cr_assert_eq(shmkit_block_refresh(b), 0);
    cr_assert_eq(shmkit_block_size(b), 8192);
    cr_assert_not_null(shmkit_block_data(b));
    shmkit_block_close(b);
    shmkit_block_unlink(a);
    shmkit_block_close(a);
}

Test(block, across_processes)
{
    shmkit_block *a;
    const char *name = tu_name("xproc");
    int i;
    pid_t pid[4];

    cr_assert_eq(shmkit_block_create(&a, name, 4 * 4096, 0), 0);
    for (i = 0; i < 4; i++) {
        pid[i] = fork();
        cr_assert_geq(pid[i], 0);
        if (pid[i] == 0) {
            shmkit_block *b;
            if (shmkit_block_attach(&b, name, 0) != 0)
                _exit(1);
            memset((char *)shmkit_block_data(b) + i * 4096, 'a' + i, 4096);
            _exit(shmkit_block_close(b) == 0 ? 0 : 2);
        }
    }
    for (i = 0; i < 4; i++)
        tu_wait_ok(pid[i]);
    for (i = 0; i < 4; i++)
        cr_assert_eq(((char *)shmkit_block_data(a))[i * 4096 + 4095], 'a' + i);
    cr_assert(shm_exists(name), "exiting attachers never unlink");
    shmkit_block_unlink(a);
    shmkit_block_close(a);
}

Test(block, hugepages_follow_the_system_setting)
{
    char s[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
    bool allowed;
    shmkit_block *a;
    int r;

    if (f) {
        if (!fgets(s, sizeof s, f))
            s[0] = 0;
        fclose(f);
    }
    allowed = strstr(s, "[always]") || strstr(s, "[within_size]") ||
              strstr(s, "[advise]") || strstr(s, "[force]");
    r = shmkit_block_create(&a, tu_name("huge"), 4 << 20, SHMKIT_HUGEPAGES);
    if (!allowed) {
        cr_assert_eq(r, -ENOTSUP, "setting '%s'", s);
        cr_assert_eq(tu_count_leftovers(), 0);
        return;
    }
    cr_assert_eq(r, 0);
    shmkit_block_unlink(a);
    shmkit_block_close(a);
}

Test(block, errors_table)
{
    int c;

    cr_assert_str_eq(shmkit_errname(0), "OK");
    cr_assert_str_eq(shmkit_strerror(0), "success");
    cr_assert_str_eq(shmkit_errname(-ENOENT), "ENOENT");
    cr_assert_str_eq(shmkit_errname(-EEXIST), "EEXIST");
    cr_assert_str_eq(shmkit_errname(SHMKIT_ESTORAGE), "SHMKIT_ESTORAGE");
    cr_assert_str_eq(shmkit_strerror(SHMKIT_ESTORAGE), "exceeds available storage");
    cr_assert_str_eq(shmkit_errname(-4999), "EUNKNOWN");
    cr_assert_str_eq(shmkit_errname(SHMKIT_ELAST - 1), "EUNKNOWN");
    cr_assert_str_eq(shmkit_errname(SHMKIT_EBASE), "EUNKNOWN");
    cr_assert_str_eq(shmkit_errname(12345), "EUNKNOWN");
    cr_assert_str_eq(shmkit_strerror(-99999), "unknown error");
    for (c = SHMKIT_EBASE - 1; c >= SHMKIT_ELAST; c--) {
        cr_assert_eq(strncmp(shmkit_errname(c), "SHMKIT_E", 8), 0, "%d", c);
        cr_assert_gt(strlen(shmkit_strerror(c)), 5, "%d", c);
    }
}

/* ---- promises of the header, measured ------------------------------- */

/* Minor page faults this thread has taken so far. */
static long minor_faults(void)
{
    struct rusage ru;

    cr_assert_eq(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_minflt;
}

/* Writes one byte in each page of [off, off + len); returns the faults
 * that took. Not instrumented: under AddressSanitizer each store would
 * also touch (and fault in) shadow memory, which is not what is counted. */
__attribute__((no_sanitize_address))
static long faults_touching(char *data, size_t off, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    long before = minor_faults();

    for (size_t i = off; i < off + len; i += page)
        ((volatile char *)data)[i] = 1;
    return minor_faults() - before;
}

/* "shmkit_block_populate: the accesses that follow take no page faults":
 * counted with getrusage. The unpopulated rest of the same mapping, touched
 * the same way, does fault (the count can see faults at all). */
Test(block, populate_means_no_page_faults)
{
    enum { PAGES = 64 };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    shmkit_block *b, *w;
    long hot, cold;

    cr_assert_eq(shmkit_block_create(&b, tu_name("prefault"), PAGES * page, 0), 0);
    cr_assert_eq(shmkit_block_attach(&w, tu_name("prefault"), 0), 0);
    minor_faults(); /* warm getrusage itself */
    cr_assert_eq(shmkit_block_populate(w, 0, PAGES / 2 * page), 0);
    hot = faults_touching(shmkit_block_data(w), 0, PAGES / 2 * page);
    cold = faults_touching(shmkit_block_data(w), PAGES / 2 * page,
                           PAGES / 2 * page);
    cr_log_info("populated half: %ld faults; the other half: %ld", hot, cold);
    cr_assert_eq(hot, 0, "%ld page faults in a populated range", hot);
    cr_assert_geq(cold, PAGES / 2, "the count sees faults (%ld)", cold);
    shmkit_block_close(w);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* "shmkit_last_error() gives a detailed message for the calling thread":
 * two threads fail differently at the same time; each reads its own
 * message afterwards, and a third thread that failed nothing reads "". */
struct err_thread {
    pthread_barrier_t *bar;
    const char *name;     /* what this thread fails to attach */
    char seen[512];       /* its shmkit_last_error() after both failed */
};

static void *fail_then_read(void *arg)
{
    struct err_thread *t = arg;
    shmkit_block *b;

    if (t->name && shmkit_block_attach(&b, t->name, 0) != -ENOENT)
        return (void *)1;
    pthread_barrier_wait(t->bar); /* both have failed */
    snprintf(t->seen, sizeof t->seen, "%s", shmkit_last_error());
    return NULL;
}

Test(block, last_error_is_per_thread)
{
    pthread_barrier_t bar;
    struct err_thread t[3] = {
        {&bar, tu_name("missing_one"), ""},
        {&bar, tu_name("missing_two"), ""},
        {&bar, NULL, ""},
    };
    pthread_t th[3];
    void *ret;

    cr_assert_eq(pthread_barrier_init(&bar, NULL, 3), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, fail_then_read, &t[i]), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pthread_join(th[i], &ret), 0);
        cr_assert_null(ret, "thread %d: attach did not fail with ENOENT", i);
    }
    pthread_barrier_destroy(&bar);
    cr_assert(strstr(t[0].seen, tu_name("missing_one")), "%s", t[0].seen);
    cr_assert_null(strstr(t[0].seen, tu_name("missing_two")), "%s", t[0].seen);
    cr_assert(strstr(t[1].seen, tu_name("missing_two")), "%s", t[1].seen);
    cr_assert_null(strstr(t[1].seen, tu_name("missing_one")), "%s", t[1].seen);
    cr_assert_str_eq(t[2].seen, "", "a thread that failed nothing");
}
