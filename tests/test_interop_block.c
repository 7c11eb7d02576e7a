/*
 * test_interop_block.c - shmkit blocks against CPython's own
 * multiprocessing.shared_memory.SharedMemory, both ways.
 *
 * CPython 3.11's resource tracker registers on attach too and would unlink
 * our block when the attaching interpreter exits (gh-82300); the Python
 * side below unregisters after attaching so the test checks our bytes, and
 * a separate test shows the block outlives a CPython attacher that does.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

TestSuite(interop_block, .init = tu_setup, .fini = tu_cleanup, .timeout = 60);

static void assert_python_ok(int st, const char *out)
{
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "python failed (status %#x), stdout: %s", st, out);
}

Test(interop_block, cpython_attaches_to_shmkit_block)
{
    static const char code[] =
        "import sys\n"
        "from multiprocessing import shared_memory, resource_tracker\n"
        "s = shared_memory.SharedMemory(name=sys.argv[1])\n"
        "resource_tracker.unregister(s._name, 'shared_memory')\n"
        "assert s.name == sys.argv[1], s.name\n"
        "assert s.size == 1000, s.size\n"
        "assert bytes(s.buf[:6]) == b'shmkit', bytes(s.buf[:6])\n"
        "assert all(s.buf[i] == i % 251 for i in range(6, 1000))\n"
        "s.buf[0:7] = b'CPython'\n"
        "print(s.size)\n"
        "s.close()\n";
    shmkit_block *b;
    char out[256];
    unsigned char *p;
    int i, st;

    cr_assert_eq(shmkit_block_create(&b, tu_name("py1"), 1000, 0), 0);
    p = shmkit_block_data(b);
    for (i = 0; i < 1000; i++)
        p[i] = (unsigned char)(i % 251);
    memcpy(p, "shmkit", 6);
    st = tu_python(code, shmkit_block_name(b), NULL, out, sizeof out);
    assert_python_ok(st, out);
    cr_assert_str_eq(out, "1000\n");
    cr_assert_eq(memcmp(p, "CPython", 7), 0, "CPython's write is seen");
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

Test(interop_block, shmkit_attaches_to_cpython_block)
{
    static const char code[] =
        "import sys\n"
        "from multiprocessing import shared_memory, resource_tracker\n"
        "s = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=5000)\n"
        "resource_tracker.unregister(s._name, 'shared_memory')\n"
        "s.buf[:7] = b'CPython'\n"
        "s.buf[4999] = 42\n"
        "s.close()\n";
    static const char check[] =
        "import sys\n"
        "from multiprocessing import shared_memory, resource_tracker\n"
        "s = shared_memory.SharedMemory(name=sys.argv[1])\n"
        "resource_tracker.unregister(s._name, 'shared_memory')\n"
        "print(bytes(s.buf[:6]).decode(), s.size)\n"
        "s.close()\n"
        "s.unlink()\n";
    shmkit_block *b;
    char out[256];
    int st;

    st = tu_python(code, tu_name("py2"), NULL, out, sizeof out);
    assert_python_ok(st, out);
    cr_assert_eq(shmkit_block_attach(&b, tu_name("py2"), 0), 0);
    cr_assert_eq(shmkit_block_size(b), 5000, "exact size on Linux");
    cr_assert_eq(memcmp(shmkit_block_data(b), "CPython", 7), 0);
    cr_assert_eq(((unsigned char *)shmkit_block_data(b))[4999], 42);
    memcpy(shmkit_block_data(b), "shmkit", 6);
    shmkit_block_close(b);
    st = tu_python(check, tu_name("py2"), NULL, out, sizeof out);
    assert_python_ok(st, out);
    cr_assert_str_eq(out, "shmkit 5000\n");
    cr_assert_eq(tu_count_leftovers(), 0, "CPython unlinked it");
}

Test(interop_block, leading_slash_names_match_cpython)
{
    static const char code[] =
        "import sys\n"
        "from multiprocessing import shared_memory, resource_tracker\n"
        "s = shared_memory.SharedMemory(name=sys.argv[1])\n"
        "resource_tracker.unregister(s._name, 'shared_memory')\n"
        "print(s._name, s.name)\n"
        "s.close()\n";
    char slashed[300], out[600], expect[620];
    shmkit_block *b;
    int st;

    snprintf(slashed, sizeof slashed, "/%s", tu_name("py3"));
    cr_assert_eq(shmkit_block_create(&b, slashed, 10, 0), 0);
    st = tu_python(code, shmkit_block_name(b), NULL, out, sizeof out);
    assert_python_ok(st, out);
    snprintf(expect, sizeof expect, "%s %s\n", slashed, slashed + 1);
    cr_assert_str_eq(out, expect, "the POSIX name is '/' + our name");
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}

/* The sequence CPython users are bitten by (gh-82300): an unrelated process
 * attaches and exits, and the block it never created is gone. shmkit's
 * attachers never do that, whether they close or just exit. */
Test(interop_block, attach_and_exit_never_unlinks_with_shmkit)
{
    shmkit_block *b;
    char path[512];
    struct stat st;
    int i;

    cr_assert_eq(shmkit_block_create(&b, tu_name("keep"), 4096, 0), 0);
    snprintf(path, sizeof path, "/dev/shm/%s", tu_name("keep"));
    for (i = 0; i < 20; i++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            shmkit_block *c;
            if (shmkit_block_attach(&c, tu_name("keep"), 0) != 0)
                _exit(1);
            _exit(i % 2 ? 0 : (shmkit_block_close(c) == 0 ? 0 : 2));
        }
        tu_wait_ok(pid);
        cr_assert_eq(stat(path, &st), 0, "block gone after attacher %d", i);
    }
    shmkit_block_unlink(b);
    shmkit_block_close(b);
}
