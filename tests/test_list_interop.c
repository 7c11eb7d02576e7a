/*
 * test_list_interop.c - shmkit's ShareableList against CPython's own
 * multiprocessing.shared_memory.ShareableList, both ways: C creates and
 * CPython reads and writes, CPython creates and C reads and writes, the
 * bytes are identical where CPython is right, and the CLI decodes both.
 *
 * The Python side disables the resource tracker (3.11 registers on attach
 * and would unlink the C side's list at exit, gh-82300): the C side owns
 * every list's lifetime here.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listutil.h"
#include "testutil.h"

TestSuite(list_interop, .init = tu_setup, .fini = tu_cleanup, .timeout = 60);

static const char prelude[] =
    "import sys, os, json, subprocess\n"
    "from multiprocessing import shared_memory, resource_tracker\n"
    "resource_tracker.register = lambda *a, **k: None\n"
    "resource_tracker.unregister = lambda *a, **k: None\n"
    "SL = shared_memory.ShareableList\n"
    "name = sys.argv[1]\n";

/* Runs prelude + body with argv[1] = name; asserts success; stdout in out. */
static void py(const char *body, const char *name, char *out, size_t len)
{
    char *code;
    int st;

    cr_assert_geq(asprintf(&code, "%s%s", prelude, body), 0);
    st = tu_python(code, name, NULL, out, len);
    free(code);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "python failed (status %#x), stdout: %s", st, out);
}

static void drop(shmkit_list *l)
{
    cr_assert_eq(shmkit_list_unlink(l), 0);
    shmkit_list_close(l);
}

#define E5 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" /* ééééé */
#define JP "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"    /* 日本語 */

Test(list_interop, c_creates_cpython_reads_every_type)
{
    shmkit_item in[] = {
        shmkit_item_none(),          shmkit_item_int(0),
        shmkit_item_int(-1),         shmkit_item_int(INT64_MAX),
        shmkit_item_int(INT64_MIN),  shmkit_item_float(-273.154),
        shmkit_item_float(-0.0),     shmkit_item_float(INFINITY),
        shmkit_item_float(-INFINITY), shmkit_item_float(NAN),
        shmkit_item_bool(true),      shmkit_item_bool(false),
        shmkit_item_str(""),         shmkit_item_str("a"),
        shmkit_item_str("12345678"), shmkit_item_str(E5),
        shmkit_item_str(JP),         shmkit_item_bytes("a\0b", 3),
        shmkit_item_bytes("", 0),    shmkit_item_strn("?\0", 2),
        shmkit_item_bytes("\x03\x02\x01\0\0\0", 6),
    };
    shmkit_list *l;
    char out[2048];

    cr_assert_eq(shmkit_list_create(&l, tu_name("c2py"), in,
                                    sizeof in / sizeof in[0], 0), 0);
    py("sl = SL(name=name)\n"
       "print(ascii(list(sl)))\n"
       "print(sl.format)\n"
       "print(len(sl), [type(x).__name__ for x in sl][:6])\n",
       tu_name("c2py"), out, sizeof out);
    cr_assert_str_eq(out,
        "[None, 0, -1, 9223372036854775807, -9223372036854775808, -273.154, "
        "-0.0, inf, -inf, nan, True, False, '', 'a', '12345678', "
        "'\\xe9\\xe9\\xe9\\xe9\\xe9', '\\u65e5\\u672c\\u8a9e', b'a\\x00b', b'', "
        "'?', b'\\x03\\x02\\x01']\n"
        "xxxxxx?xqqqqdddddxxxxxxx?xxxxxxx?8s8s16s16s16s8s8s2sx6sx\n"
        "21 ['NoneType', 'int', 'int', 'int', 'int', 'float']\n");
    /* CPython strips the NULs (its reader cannot know); shmkit keeps them */
    assert_s(get(l, 19), SHMKIT_STR, "?\0", 2);
    assert_s(get(l, 20), SHMKIT_BYTES, "\x03\x02\x01\0\0\0", 6);
    drop(l);
}

/* Where CPython is right (ASCII text, no trailing NULs), the bytes of a
 * shmkit list are exactly CPython's. */
Test(list_interop, bytes_identical_to_cpython)
{
    shmkit_item in[] = {shmkit_item_str("howdy"), shmkit_item_bytes("HoWdY", 5),
                        shmkit_item_float(-273.154), shmkit_item_int(100),
                        shmkit_item_none(), shmkit_item_bool(true),
                        shmkit_item_int(42), shmkit_item_str(""),
                        shmkit_item_str("exactly16bytes!!"),
                        shmkit_item_bytes("a\0b", 3), shmkit_item_bool(false),
                        shmkit_item_float(NAN)};
    shmkit_list *l;
    char out[256];

    cr_assert_eq(shmkit_list_create(&l, tu_name("same"), in,
                                    sizeof in / sizeof in[0], 0), 0);
    py("ours = SL(name=name)\n"
       "theirs = SL(['howdy', b'HoWdY', -273.154, 100, None, True, 42, '',\n"
       "             'exactly16bytes!!', b'a\\x00b', False, float('nan')])\n"
       "a, b = bytes(ours.shm.buf), bytes(theirs.shm.buf)\n"
       "theirs.shm.close(); theirs.shm.unlink()\n"
       "print(len(a), len(b), a == b)\n",
       tu_name("same"), out, sizeof out);
    cr_assert_str_eq(out, "332 332 True\n");
    drop(l);
}

/* Seed 001's examples done from C, checked by CPython. */
Test(list_interop, seed_examples_from_c)
{
    shmkit_item in[] = {shmkit_item_str("howdy"), shmkit_item_bytes("HoWdY", 5),
                        shmkit_item_float(-273.154), shmkit_item_int(100),
                        shmkit_item_none(), shmkit_item_bool(true),
                        shmkit_item_int(42)};
    shmkit_item v = shmkit_item_str("dry ice");
    shmkit_list *l;
    char out[512];

    cr_assert_eq(shmkit_list_create(&l, tu_name("seed"), in, 7, 0), 0);
    cr_assert_eq(shmkit_list_set(l, 2, &v), 0);
    v = shmkit_item_str("larger than previously allocated storage space");
    cr_assert_eq(shmkit_list_set(l, 2, &v), SHMKIT_ESTORAGE);
    py("a = SL(name=name)\n"
       "print([type(e).__name__ for e in a])\n"
       "print(a, a.index(42), a.count(b'howdy'), a.count(b'HoWdY'))\n"
       "a[-1] = -999\n",
       tu_name("seed"), out, sizeof out);
    cr_assert_eq(strncmp(out,
        "['str', 'bytes', 'str', 'int', 'NoneType', 'bool', 'int']\n"
        "ShareableList(['howdy', b'HoWdY', 'dry ice', 100, None, True, 42], "
        "name=", 120), 0, "%s", out);
    cr_assert(strstr(out, "') 6 0 1\n"), "%s", out);
    cr_assert_eq(get(l, -1).v.i, -999);
    drop(l);
}

/* The seed's nul_bug_demo and its padded work-around, created from C. */
Test(list_interop, seed_nul_demo)
{
    shmkit_item in[] = {shmkit_item_strn("?\0", 2),
                        shmkit_item_bytes("\x03\x02\x01\0\0\0", 6),
                        shmkit_item_strn("?\0\x07", 3),
                        shmkit_item_bytes("\x03\x02\x01\0\0\0\x07", 7)};
    shmkit_list *l;
    char out[512];

    cr_assert_eq(shmkit_list_create(&l, tu_name("nul"), in, 4, 0), 0);
    py("d = SL(name=name)\n"
       "print(ascii([d[0], d[1], d[2][:-1], d[3][:-1]]))\n",
       tu_name("nul"), out, sizeof out);
    cr_assert_str_eq(out, "['?', b'\\x03\\x02\\x01', '?\\x00', "
                          "b'\\x03\\x02\\x01\\x00\\x00\\x00']\n");
    assert_s(get(l, 0), SHMKIT_STR, "?\0", 2);
    assert_s(get(l, 1), SHMKIT_BYTES, "\x03\x02\x01\0\0\0", 6);
    assert_s(get(l, 3), SHMKIT_BYTES, "\x03\x02\x01\0\0\0\x07", 7);
    drop(l);
}

/* CPython writes into a shmkit list: every type, type changes, and a
 * longer str into a slot whose record is shmkit's exact-length one (CPython
 * must replace the record, not keep it and truncate). */
Test(list_interop, cpython_writes_c_reads)
{
    shmkit_item in[] = {shmkit_item_int(1), shmkit_item_int(2),
                        shmkit_item_int(3), shmkit_item_int(4),
                        shmkit_item_int(5), shmkit_item_str("abcdefghijk"),
                        shmkit_item_bytes("ab\0", 3), shmkit_item_str("x"),
                        shmkit_item_str("0123456789")};
    shmkit_list *l;
    shmkit_item it;
    char out[512];

    cr_assert_eq(shmkit_list_create(&l, tu_name("py2c"), in, 9, 0), 0);
    py("sl = SL(name=name)\n"
       "sl[0] = None; sl[1] = -2**63; sl[2] = float('-inf'); sl[3] = True\n"
       "sl[4] = 'abcdefgh'; sl[5] = b'\\x00\\x01'; sl[6] = b'1234567'\n"
       "sl[7] = 2.5; sl[8] = '\\xe9\\xe9'\n"
       "print(sl.format)\n",
       tu_name("py2c"), out, sizeof out);
    cr_assert_str_eq(out, "xxxxxx?xqdxxxxxxx?8s16s8sd16s\n");
    cr_assert_eq(get(l, 0).type, SHMKIT_NONE);
    cr_assert_eq(get(l, 1).v.i, INT64_MIN);
    it = get(l, 2);
    cr_assert(it.type == SHMKIT_FLOAT && isinf(it.v.f) && it.v.f < 0);
    it = get(l, 3);
    cr_assert(it.type == SHMKIT_BOOL && it.v.b);
    assert_s(get(l, 4), SHMKIT_STR, "abcdefgh", 8);
    assert_s(get(l, 5), SHMKIT_BYTES, "\0\x01", 2);
    assert_s(get(l, 6), SHMKIT_BYTES, "1234567", 7);
    cr_assert_eq(get(l, 7).v.f, 2.5);
    assert_s(get(l, 8), SHMKIT_STR, "\xc3\xa9\xc3\xa9", 4);
    drop(l);
}

/* CPython creates; C reads everything as CPython does, writes every type
 * back; CPython reads C's writes. */
Test(list_interop, cpython_creates_c_reads_and_writes)
{
    shmkit_item w[] = {shmkit_item_str("C!"), shmkit_item_float(-0.0),
                       shmkit_item_bytes("z\0\0", 3), shmkit_item_none(),
                       shmkit_item_bool(false), shmkit_item_int(INT64_MAX),
                       shmkit_item_str(""), shmkit_item_str(E5)};
    shmkit_list *l;
    shmkit_item it;
    char out[1024];
    size_t k;

    py("sl = SL([7, -1.5, True, None, 'x' * 8, b'n\\x00\\x00', '', "
       "'\\xe9' * 8, 'a\\xe9\\xe9\\xe9\\xe9'], name=name)\n",
       tu_name("py"), out, sizeof out);
    cr_assert_eq(shmkit_list_attach(&l, tu_name("py"), 0), 0,
                 "%s", shmkit_last_error());
    cr_assert_eq(get(l, 0).v.i, 7);
    cr_assert_eq(get(l, 1).v.f, -1.5);
    it = get(l, 2);
    cr_assert(it.type == SHMKIT_BOOL && it.v.b);
    cr_assert_eq(get(l, 3).type, SHMKIT_NONE);
    assert_s(get(l, 4), SHMKIT_STR, "xxxxxxxx", 8);
    assert_s(get(l, 5), SHMKIT_BYTES, "n", 1); /* as CPython reads it */
    assert_s(get(l, 6), SHMKIT_STR, "", 0);
    /* CPython sized these by code points (gh-88336): 8 x é fits its 16
     * bytes exactly; 'aéééé' (9 bytes) was cut to 8, mid-character, which
     * CPython itself cannot decode. shmkit returns the stored bytes. */
    assert_s(get(l, 7), SHMKIT_STR, E5 "\xc3\xa9\xc3\xa9\xc3\xa9", 16);
    assert_s(get(l, 8), SHMKIT_STR, "a\xc3\xa9\xc3\xa9\xc3\xa9\xc3", 8);
    for (k = 0; k < 8; k++)
        cr_assert_eq(shmkit_list_set(l, (ptrdiff_t)k, &w[k]), 0,
                     "set %zu: %s", k, shmkit_last_error());
    py("sl = SL(name=name)\n"
       "print(ascii([sl[i] for i in range(8)]))\n",
       tu_name("py"), out, sizeof out);
    cr_assert_str_eq(out, "['C!', -0.0, b'z', None, False, "
                          "9223372036854775807, '', '\\xe9\\xe9\\xe9\\xe9\\xe9']\n");
    assert_s(get(l, 2), SHMKIT_BYTES, "z\0\0", 3);
    drop(l);
}

/* Format/code pairs CPython never writes together but reads anyway: shmkit
 * decodes them the way CPython's __getitem__ does. */
Test(list_interop, odd_pairs_read_as_cpython)
{
    static const struct { char fmt[9]; signed char code; } pairs[] = {
        {"q", 3}, {"16s", 0}, {"xxxxxx?x", 0}, {"16s", 2}, {"3sx", 1},
        {"d", 3}, {"3s4x", 2},
    };
    shmkit_item in[7];
    shmkit_list *l;
    unsigned char *p;
    size_t k, fmt_off;
    char out[512];

    for (k = 0; k < 7; k++)
        in[k] = shmkit_item_str("0123456789"); /* slots of 16 */
    cr_assert_eq(shmkit_list_create(&l, tu_name("odd"), in, 7, 0), 0);
    p = shmkit_block_data(shmkit_list_block(l));
    fmt_off = 8 * 9 + 16 * 7;
    for (k = 0; k < 7; k++) {
        memset(p + 72 + 16 * k, 0, 16);
        memcpy(p + 72 + 16 * k, "ab\0c", 4);
        p[72 + 16 * k + 6] = 1; /* the None format's '?' byte */
        memset(p + fmt_off + 8 * k, 0, 8);
        memcpy(p + fmt_off + 8 * k, pairs[k].fmt, strlen(pairs[k].fmt));
        p[fmt_off + 56 + k] = (unsigned char)pairs[k].code;
    }
    py("sl = SL(name=name)\n"
       "print(ascii(list(sl)))\n",
       tu_name("odd"), out, sizeof out);
    cr_assert_str_eq(out, "[None, b'ab\\x00c\\x00\\x00\\x01\\x00\\x00\\x00"
                          "\\x00\\x00\\x00\\x00\\x00\\x00', True, b'ab\\x00c\\x00\\x00\\x01', "
                          "'ab', None, b'ab']\n");
    cr_assert_eq(get(l, 0).type, SHMKIT_NONE);
    assert_s(get(l, 1), SHMKIT_BYTES, "ab\0c\0\0\x01\0\0\0\0\0\0\0\0\0", 16);
    cr_assert(get(l, 2).type == SHMKIT_BOOL && get(l, 2).v.b);
    assert_s(get(l, 3), SHMKIT_BYTES, "ab\0c\0\0\x01", 7);
    assert_s(get(l, 4), SHMKIT_STR, "ab\0", 3); /* exact length */
    cr_assert_eq(get(l, 5).type, SHMKIT_NONE);
    assert_s(get(l, 6), SHMKIT_BYTES, "ab\0", 3);
    drop(l);
}

/* `shmkit show --json` of a CPython list and of a shmkit list, parsed by
 * Python's json module; `shmkit ls` marks both as lists. */
Test(list_interop, cli_show_json)
{
    static const char body[] =
        "cli = os.environ['SHMKIT_CLI']\n"
        "sl = SL(['howdy', b'Ho\\x00', -273.154, 100, None, True, 1.0,\n"
        "         float('inf'), float('-inf'), float('nan'), -0.0, '\\xe9'],\n"
        "        name=name + 'py')\n"
        "try:\n"
        "    for n in (name + 'py', name):\n"
        "        j = json.loads(subprocess.check_output([cli, 'show', n, '--json']))\n"
        "        assert j['name'] == n and j['kind'] == 'list', j\n"
        "        print(ascii(j['items']))\n"
        "    t = subprocess.check_output([cli, 'show', name]).decode()\n"
        "    assert \"[1] bytes b'Ho\\\\x00'\" in t, t\n"
        "    ls = json.loads(subprocess.check_output([cli, 'ls', '--json']))\n"
        "    kinds = {e['name']: e['kind'] for e in ls}\n"
        "    print(kinds[name + 'py'], kinds[name])\n"
        "finally:\n"
        "    sl.shm.close(); sl.shm.unlink()\n";
    shmkit_item in[] = {shmkit_item_str("howdy"), shmkit_item_bytes("Ho\0", 3),
                        shmkit_item_float(-273.154), shmkit_item_int(100),
                        shmkit_item_none(), shmkit_item_bool(true),
                        shmkit_item_float(1.0), shmkit_item_float(INFINITY),
                        shmkit_item_float(-INFINITY), shmkit_item_float(NAN),
                        shmkit_item_float(-0.0), shmkit_item_str("\xc3\xa9")};
    shmkit_list *l;
    char out[2048];

    setenv("SHMKIT_CLI", tu_cli(), 1);
    cr_assert_eq(shmkit_list_create(&l, tu_name("cli"), in, 12, 0), 0);
    py(body, tu_name("cli"), out, sizeof out);
    cr_assert_str_eq(out,
        "['howdy', {'bytes': 'SG8='}, -273.154, 100, None, True, 1.0, "
        "{'float': 'inf'}, {'float': '-inf'}, {'float': 'nan'}, -0.0, '\\xe9']\n"
        "['howdy', {'bytes': 'SG8A'}, -273.154, 100, None, True, 1.0, "
        "{'float': 'inf'}, {'float': '-inf'}, {'float': 'nan'}, -0.0, '\\xe9']\n"
        "list list\n");
    drop(l);
}

/* A value that fills its slot and ends in NUL gets "<n>s0x": CPython reads
 * and overwrites it; shmkit reads it exactly. */
Test(list_interop, full_slot_exact_record)
{
    shmkit_item in[] = {shmkit_item_bytes("abc", 3)}, v;
    shmkit_list *l;
    char out[256];

    cr_assert_eq(shmkit_list_create(&l, tu_name("s0x"), in, 1, 0), 0);
    v = shmkit_item_bytes("xyz\0\0\0\0\0", 8);
    cr_assert_eq(shmkit_list_set(l, 0, &v), 0);
    py("sl = SL(name=name)\n"
       "print(sl.format, sl[0])\n"
       "sl[0] = b'12345678'\n",
       tu_name("s0x"), out, sizeof out);
    cr_assert_str_eq(out, "8s0x b'xyz'\n");
    assert_s(get(l, 0), SHMKIT_BYTES, "12345678", 8);
    drop(l);
}

/* CPython rewrites one item with changing types while shmkit reads it
 * without a lock (gh-81833): every read is a whole valid item or
 * SHMKIT_ECORRUPT, never a crash, an out-of-slot length or a wrong type. */
Test(list_interop, torn_reads_under_cpython_writer)
{
    static const char body[] =
        "sl = SL(name=name)\n"
        "vals = [12345, 'abcdefghijklmnopqrstuvw', None, b'\\x00' * 20, 2.5,\n"
        "        True, '', 'x\\xe9' * 7, b'zz']\n"
        "sys.stdout.write('g'); sys.stdout.flush()\n"
        "for i in range(200000):\n"
        "    sl[0] = vals[i % len(vals)]\n";
    shmkit_item in[] = {shmkit_item_str("0123456789abcdefghijklm")}; /* 24 */
    shmkit_list *l;
    char *code, go[1];
    int out[2], st;
    long reads = 0, corrupt = 0;
    pid_t pid;

    cr_assert_eq(shmkit_list_create(&l, tu_name("torn"), in, 1, 0), 0);
    cr_assert_geq(asprintf(&code, "%s%s", prelude, body), 0);
    cr_assert_eq(pipe(out), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(out[1], 1);
        execl(tu_python_path(), "python3", "-c", code, tu_name("torn"),
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    cr_assert_eq(read(out[0], go, 1), 1, "CPython writer did not start");
    while (waitpid(pid, &st, WNOHANG) == 0) {
        shmkit_item it;
        int r = shmkit_list_get(l, 0, &it);
        reads++;
        if (r == SHMKIT_ECORRUPT) {
            corrupt++;
            continue;
        }
        cr_assert_eq(r, 0);
        if (it.type == SHMKIT_STR || it.type == SHMKIT_BYTES)
            cr_assert_leq(it.v.s.len, 24);
        else
            cr_assert(it.type <= SHMKIT_BOOL);
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer status %#x", st);
    cr_assert_gt(reads, 0);
    cr_log_info("%ld unlocked reads, %ld reported torn", reads, corrupt);
    free(code);
    close(out[0]);
    drop(l);
}

/* The empty list, both ways: 16 bytes, count 0 and one offset. */
Test(list_interop, empty_list_both_ways)
{
    shmkit_list *l;
    char out[256];

    cr_assert_eq(shmkit_list_create(&l, tu_name("e1"), NULL, 0, 0), 0);
    py("sl = SL(name=name)\n"
       "print(len(sl), list(sl), repr(sl.format), sl.shm.size)\n"
       "e = SL([], name=name + 'py')\n",
       tu_name("e1"), out, sizeof out);
    cr_assert_str_eq(out, "0 [] '' 16\n");
    drop(l);
    cr_assert_eq(shmkit_list_attach(&l, tu_name("e1py"), 0), 0);
    cr_assert_eq(shmkit_list_len(l), 0);
    cr_assert_eq(shmkit_block_kind(shmkit_list_block(l)), SHMKIT_KIND_LIST);
    drop(l);
}
