/*
 * test_full_shm.c - a full /dev/shm: creating any kind of object (queues
 * too) that
 * does not fit is a clean -ENOSPC (OSError(ENOSPC) in Python), never a
 * SIGBUS, and leaves nothing behind.
 *
 * Each case runs in a child with a private 1 MiB tmpfs over /dev/shm (as
 * root, or through a user namespace), so the host's /dev/shm is never
 * filled. Cases that need less than 1 MiB fill the tmpfs first with one
 * reserved block.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit.h"
#include "testutil.h"

TestSuite(full_shm, .init = tu_setup, .fini = tu_cleanup, .timeout = 120);

#define BIG (4u << 20)

/* Objects in /dev/shm (the private tmpfs). */
static int shm_entries(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Fills the tmpfs with the largest reserved block that fits. */
static shmkit_block *fill_up(void)
{
    shmkit_block *b;
    size_t size;

    for (size = 1u << 20; size >= 4096; size -= 4096)
        if (shmkit_block_create(&b, "filler", size, SHMKIT_RESERVE) == 0)
            return b;
    return NULL;
}

static void unfill(shmkit_block *b)
{
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* Exit codes of a case: 0 clean ENOSPC and nothing left; 1 it succeeded;
 * 2 another error; 3 something left; 4 no filler. */
static int verdict(int r, shmkit_block *filler)
{
    if (filler)
        unfill(filler);
    if (r == 0)
        return 1;
    if (r != -ENOSPC)
        return 2;
    return shm_entries() == 0 ? 0 : 3;
}

static int c_list(void)
{
    static char big[2u << 20];
    shmkit_item it[2];
    shmkit_list *l;

    memset(big, 'x', sizeof big);
    it[0] = shmkit_item_strn(big, sizeof big);
    it[1] = shmkit_item_int(1);
    return verdict(shmkit_list_create(&l, "l", it, 2, SHMKIT_TRACK), NULL);
}

static int c_list_generated(void)
{
    shmkit_block *f = fill_up();
    shmkit_item it[1] = {shmkit_item_str("small")};
    shmkit_list *l;

    return f ? verdict(shmkit_list_create(&l, NULL, it, 1, 0), f) : 4;
}

static int c_array(void)
{
    size_t shape[1] = {500000};
    shmkit_array *a;

    return verdict(shmkit_array_create(&a, "a", 'q', 1, shape, 0), NULL);
}

static int c_value(void)
{
    shmkit_block *f = fill_up();
    shmkit_array *a;

    return f ? verdict(shmkit_value_create(&a, "v", 'q', SHMKIT_TRACK), f) : 4;
}

static int c_lock(void)
{
    shmkit_block *f = fill_up();
    shmkit_lock *l;

    return f ? verdict(shmkit_lock_create(&l, "k", 0, 0), f) : 4;
}

static int c_queue(void)
{
    shmkit_queue *q;

    return verdict(shmkit_queue_create(&q, "q", 2u << 20, 0, SHMKIT_TRACK),
                   NULL);
}

static int c_queue_generated(void)
{
    shmkit_block *f = fill_up();
    shmkit_queue *q;

    return f ? verdict(shmkit_queue_create(&q, NULL, 4096, 0, 0), f) : 4;
}

static int c_populate(void)
{
    shmkit_block *b;

    return verdict(shmkit_block_create(&b, "p", BIG, SHMKIT_POPULATE), NULL);
}

static int c_refcount(void)
{
    shmkit_block *f = fill_up();
    shmkit_block *b;

    return f ? verdict(shmkit_block_create(&b, "r", 4096, SHMKIT_REFCOUNT), f)
             : 4;
}

/* A sidecar reserves only its head page at create (233 slots): the joins
 * that fit there succeed on a full /dev/shm, the next one is -ENOSPC
 * (it reserves its slot's page first: never a SIGBUS writing it), and
 * closing everything leaves nothing. Exit codes as verdict(), and 5: the
 * head did not hold 232 joiners besides the creator. */
static int c_refcount_join(void)
{
    enum { N = 300 };
    static shmkit_block *a[N];
    shmkit_block *c, *f;
    int i, n = 0, r = 0;

    if (shmkit_block_create(&c, "rj", 4096, SHMKIT_REFCOUNT) != 0)
        return 2;
    f = fill_up();
    if (!f)
        return 4;
    for (i = 0; i < N && r == 0; i++) {
        r = shmkit_block_attach(&a[i], "rj", SHMKIT_REFCOUNT);
        n += r == 0;
    }
    while (n > 0)
        shmkit_block_close(a[--n]);
    shmkit_block_close(c);
    if (r == 0)
        return verdict(0, f);
    if (i - 1 != 232) {
        unfill(f);
        return 5;
    }
    return verdict(r, f);
}

/* Python: each statement must raise OSError(ENOSPC) and leave nothing. */
static const char py_code[] =
    "import errno, os, sys\n"
    "import shmkit\n"
    "from shmkit import shared_memory, sharedctypes, synchronize\n"
    "def filler():\n"
    "    size = 1 << 20\n"
    "    while size >= 4096:\n"
    "        try:\n"
    "            return shared_memory.SharedMemory('filler', create=True,\n"
    "                                              size=size, track=False)\n"
    "        except OSError:\n"
    "            size -= 4096\n"
    "cases = {\n"
    " 'SharedMemory': lambda: shared_memory.SharedMemory('s', create=True,\n"
    "                                                    size=4 << 20),\n"
    " 'ShareableList': lambda: shmkit.ShareableList(['x' * (2 << 20)],\n"
    "                                               name='l'),\n"
    " 'Array': lambda: sharedctypes.Array('q', 500000, name='a'),\n"
    " 'Value': lambda: sharedctypes.Value('q', 1, name='v'),\n"
    " 'Lock': lambda: synchronize.Lock(name='k'),\n"
    " 'Queue': lambda: shmkit.Queue(name='q', create=True, capacity=2 << 20),\n"
    "}\n"
    "bad = []\n"
    "for what, make in cases.items():\n"
    "    f = filler() if what in ('Value', 'Lock') else None\n"
    "    try:\n"
    "        make()\n"
    "        bad.append(what + ': no error')\n"
    "    except OSError as e:\n"
    "        if e.errno != errno.ENOSPC:\n"
    "            bad.append(what + ': ' + repr(e))\n"
    "    finally:\n"
    "        if f is not None:\n"
    "            f.close(); f.unlink()\n"
    "    if os.listdir('/dev/shm'):\n"
    "        bad.append(what + ': left ' + repr(os.listdir('/dev/shm')))\n"
    "print('; '.join(bad) or 'ok')\n";

static char py_out[4096];

static int python_cases(void)
{
    int st = tu_python(py_code, NULL, NULL, py_out, sizeof py_out);

    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && strncmp(py_out, "ok", 2) == 0)
        return 0;
    /* This runs in tu_in_small_shm's child: the parent never sees py_out
     * (the interpreter's stdout), so print it here; a sanitizer's report
     * went to the inherited stderr (or to SHMKIT_SANITIZER_LOG_DIR). */
    fprintf(stderr, "Python on a full /dev/shm, status %#x, stdout:\n%s\n",
            st, py_out);
    /* 10: the interpreter failed or a signal (SIGBUS) killed it; 11: a case failed */
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 11 : 10;
}

static void expect_enospc(int (*body)(void), const char *what)
{
    int st = tu_in_small_shm(body);

    if (st == -1)
        cr_skip_test("cannot mount a private tmpfs here");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s on a full /dev/shm: %s %d (exit 1: no error, 2: another "
              "error, 3: left something)", what,
              WIFSIGNALED(st) ? "signal" : "exit",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

Test(full_shm, list) { expect_enospc(c_list, "tracked list"); }
Test(full_shm, list_generated_name) { expect_enospc(c_list_generated, "list"); }
Test(full_shm, array) { expect_enospc(c_array, "array"); }
Test(full_shm, value) { expect_enospc(c_value, "tracked value"); }
Test(full_shm, lock) { expect_enospc(c_lock, "named lock"); }
Test(full_shm, queue) { expect_enospc(c_queue, "tracked queue"); }
Test(full_shm, queue_generated_name) { expect_enospc(c_queue_generated, "queue"); }
Test(full_shm, populate) { expect_enospc(c_populate, "SHMKIT_POPULATE block"); }
Test(full_shm, refcount_sidecar) { expect_enospc(c_refcount, "refcounted"); }
Test(full_shm, refcount_join_past_the_head)
{
    expect_enospc(c_refcount_join, "refcounted joins");
}

Test(full_shm, python_every_kind)
{
    const char *have = getenv("SHMKIT_HAVE_EXTENSION");
    int st;

    /* A build without the extension (SHMKIT_PYTHON_MODULE=OFF, or a
     * sanitized build whose runtime cannot be preloaded into Python)
     * says so by leaving SHMKIT_HAVE_EXTENSION unset or "0" (tests/CMakeLists.txt);
     * where it is set, SHMKIT_PYTHON can import it (in a sanitized build
     * through python-sanitized) and must pass. */
    if (!have || strcmp(have, "1") != 0)
        cr_skip_test("this build has no extension module SHMKIT_PYTHON can import");
    st = tu_in_small_shm(python_cases);

    if (st == -1)
        cr_skip_test("cannot mount a private tmpfs here");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "Python on a full /dev/shm: status %#x (exit 10: the interpreter "
              "failed, 11: a case failed; its output is above)", st);
}
