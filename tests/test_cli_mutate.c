/*
 * test_cli_mutate.c - the shmkit command on mutated images: a list, an
 * array, a value, a lock and a queue are made whole, then their bytes are changed
 * at random (header words, item records, data) and `shmkit show`, `show
 * --json` and `info` run on each image. Every run must end by exit() with
 * 0 or 1: never a signal (in the sanitizer build an ASan or UBSan report
 * aborts, so this also catches a read out of bounds or a double free that
 * glibc would let pass).
 *
 * SHMKIT_MUTATIONS sets the images per kind (default 40); the seed is
 * printed on failure and SHMKIT_MUTATE_SEED replays it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(cli_mutate, .init = tu_setup, .fini = tu_cleanup, .timeout = 280);

static uint64_t rng;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void seed(void)
{
    const char *s = getenv("SHMKIT_MUTATE_SEED");

    rng = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761u ^
                                         (uint64_t)getpid();
    if (!rng)
        rng = 1;
}

static int mutations(void)
{
    const char *s = getenv("SHMKIT_MUTATIONS");

    return s && atoi(s) > 0 ? atoi(s) : 40;
}

/* Runs `shmkit ARGS...` with all output to /dev/null; returns the raw
 * wait status. */
static int run_cli(const char *a1, const char *a2, const char *a3)
{
    char *argv[] = {(char *)tu_cli(), (char *)a1, (char *)a2, (char *)a3, NULL};
    pid_t pid = fork();

    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return tu_wait_status(pid);
}

/* One random change: a byte, or an 8-byte word set to a value chosen to
 * break arithmetic (0, all ones, huge, the block size, negative). */
static void mutate_once(unsigned char *p, size_t size)
{
    static const uint64_t words[] = {0, ~0ull, 0x7fffffffffffffffull,
                                     0x8000000000000000ull, 1, 8, 4096,
                                     0xffffffffull};
    size_t at = (next() & 1) ? next() % (size < 256 ? size : 256)
                             : next() % size; /* headers more often */
    uint64_t w;

    if ((next() & 3) == 0 && at + 8 <= size) {
        w = words[next() % (sizeof words / sizeof words[0])];
        if (w == 8)
            w = size;
        memcpy(p + (at & ~(size_t)7), &w, 8);
    } else {
        p[at] = (unsigned char)next();
    }
}

/* Mutates the object `name` (whose pristine image is `orig`) n times
 * over and runs the command on every image. */
static void mutate_and_show(const char *name, const char *what)
{
    shmkit_block *b;
    unsigned char *orig;
    size_t size;
    int i, k, c, st;
    static const char *const cmds[][3] = {
        {"show", NULL, NULL}, {"show", "--json", NULL}, {"info", NULL, NULL}};

    cr_assert_eq(shmkit_block_attach(&b, name, 0), 0, "%s", shmkit_last_error());
    size = shmkit_block_size(b);
    orig = malloc(size);
    cr_assert_not_null(orig);
    memcpy(orig, shmkit_block_data(b), size);
    for (i = 0; i < mutations(); i++) {
        uint64_t at_seed = rng;
        memcpy(shmkit_block_data(b), orig, size);
        for (k = 0, c = 1 + (int)(next() % 4); k < c; k++)
            mutate_once(shmkit_block_data(b), size);
        for (k = 0; k < 3; k++) {
            st = run_cli(cmds[k][0], name, cmds[k][1]);
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) <= 1,
                      "%s image %d (SHMKIT_MUTATE_SEED=%#llx): shmkit %s %s%s "
                      "ended with status %#x",
                      what, i, (unsigned long long)at_seed, cmds[k][0], name,
                      cmds[k][1] ? " --json" : "", st);
        }
    }
    memcpy(shmkit_block_data(b), orig, size);
    free(orig);
    shmkit_block_close(b);
}

/* The list case that freed twice (issue 11 item 5): a sound header with
 * one item whose back-transform code does not fit its format. */
Test(cli_mutate, list_item_code_mismatch_is_an_error)
{
    shmkit_item in[] = {shmkit_item_int(1), shmkit_item_int(2),
                        shmkit_item_int(3)};
    shmkit_list *l;
    shmkit_block *b;
    unsigned char *p;
    size_t size;
    int st;

    cr_assert_eq(shmkit_list_create(&l, tu_name("code"), in, 3, 0), 0);
    b = shmkit_list_block(l);
    size = shmkit_block_size(b);
    p = shmkit_block_data(b);
    p[size - 2] = 1; /* item 1's code: str, on a 'q' slot */
    st = run_cli("show", tu_name("code"), NULL);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
    st = run_cli("show", tu_name("code"), "--json");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
    shmkit_list_unlink(l);
    shmkit_list_close(l);
}

Test(cli_mutate, lists)
{
    shmkit_item in[] = {shmkit_item_int(-7), shmkit_item_str("h\xc3\xa9llo"),
                        shmkit_item_float(2.5), shmkit_item_bytes("by\0tes", 6),
                        shmkit_item_none(), shmkit_item_bool(true),
                        shmkit_item_str("")};
    shmkit_list *l;

    seed();
    cr_assert_eq(shmkit_list_create(&l, tu_name("l"), in, 7, 0), 0);
    mutate_and_show(tu_name("l"), "list");
    shmkit_list_unlink(l);
    shmkit_list_close(l);
}

Test(cli_mutate, arrays_and_values)
{
    static const char codes[] = "dqu";
    size_t shape[2] = {3, 4};
    shmkit_array *a, *v;
    char tag[8];
    int i;

    seed();
    for (i = 0; codes[i]; i++) {
        snprintf(tag, sizeof tag, "a%c", codes[i]);
        cr_assert_eq(shmkit_array_create(&a, tu_name(tag), codes[i], 2, shape,
                                         0), 0, "%s", shmkit_last_error());
        mutate_and_show(tu_name(tag), "array");
        shmkit_array_unlink(a);
        shmkit_array_close(a);
    }
    cr_assert_eq(shmkit_value_create(&v, tu_name("v"), 'q', 0), 0);
    mutate_and_show(tu_name("v"), "value");
    shmkit_array_unlink(v);
    shmkit_array_close(v);
}

Test(cli_mutate, locks)
{
    shmkit_lock *l;

    seed();
    cr_assert_eq(shmkit_lock_create(&l, tu_name("k"), 0, 0), 0);
    mutate_and_show(tu_name("k"), "lock");
    shmkit_lock_unlink(l);
    shmkit_lock_close(l);
}

Test(cli_mutate, queues)
{
    shmkit_queue *q;

    seed();
    cr_assert_eq(shmkit_queue_create(&q, tu_name("q"), 1024, 0, 0), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_queue_put(q, "first", 5, NULL), 0, "%s", shmkit_last_error());
    cr_assert_eq(shmkit_queue_put(q, "second message", 14, NULL), 0);
    mutate_and_show(tu_name("q"), "queue");
    shmkit_queue_unlink(q);
    shmkit_queue_close(q);
}
