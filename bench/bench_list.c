/*
 * bench_list.c - ShareableList from C beside CPython's ShareableList.
 *
 *   get / set of one item: int, float, short str (5 bytes), over a list of
 *   1000 items of that type, cycling through the indices;
 *   create: a list of 1000 ints (create + close + unlink);
 *   attach: a list of 1000 ints (attach + close).
 *
 * CPython is multiprocessing.shared_memory.ShareableList timed with
 * timeit by /usr/bin/python3 in the same run, its resource tracker
 * disabled (so its figures leave out the tracker's cost: the ratios are
 * conservative). Figures are the best of 5 rounds, in ns per operation;
 * prints times and ratios, asserts nothing.
 * Usage: bench_list [iterations]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define ITEMS 1000
#define ROUNDS 5

enum { GET_INT, GET_FLOAT, GET_STR, SET_INT, SET_FLOAT, SET_STR, CREATE,
       ATTACH, NOPS };

static const char *const op_names[NOPS] = {
    "get int", "get float", "get str", "set int", "set float", "set str",
    "create 1000 ints", "attach 1000 ints"};

static shmkit_list *lists[3]; /* int, float, str */
static char names[4][64];     /* the three lists, and create's name */
static volatile int64_t sink;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void run_get(shmkit_list *l, int n)
{
    shmkit_item it;
    int64_t acc = 0;
    int i;

    for (i = 0; i < n; i++) {
        if (shmkit_list_get(l, i % ITEMS, &it) != 0)
            abort();
        acc += it.v.i; /* for str: the pointer's bits; any use will do */
    }
    sink = acc;
}

static void run_set(shmkit_list *l, shmkit_type t, int n)
{
    shmkit_item v;
    int i;

    for (i = 0; i < n; i++) {
        if (t == SHMKIT_INT)
            v = shmkit_item_int(i);
        else if (t == SHMKIT_FLOAT)
            v = shmkit_item_float(i * 0.5);
        else
            v = shmkit_item_strn("hello" + (i & 3), 5 - (size_t)(i & 3));
        if (shmkit_list_set(l, i % ITEMS, &v) != 0)
            abort();
    }
}

static void run_create(int n)
{
    shmkit_item in[ITEMS];
    shmkit_list *l;
    int i;

    for (i = 0; i < ITEMS; i++)
        in[i] = shmkit_item_int(i);
    for (i = 0; i < n; i++) {
        if (shmkit_list_create(&l, names[3], in, ITEMS, 0) != 0)
            abort();
        shmkit_list_unlink(l);
        shmkit_list_close(l);
    }
}

static void run_attach(int n)
{
    shmkit_list *l;
    int i;

    for (i = 0; i < n; i++) {
        if (shmkit_list_attach(&l, names[0], 0) != 0)
            abort();
        shmkit_list_close(l);
    }
}

static void run(int op, int n)
{
    switch (op) {
    case GET_INT: case GET_FLOAT: case GET_STR:
        run_get(lists[op - GET_INT], n);
        break;
    case SET_INT: case SET_FLOAT: case SET_STR:
        run_set(lists[op - SET_INT], op == SET_INT ? SHMKIT_INT
                : op == SET_FLOAT ? SHMKIT_FLOAT : SHMKIT_STR, n);
        break;
    case CREATE:
        run_create(n);
        break;
    default:
        run_attach(n);
    }
}

/* Best of ROUNDS rounds of n operations, ns per operation. */
static double time_op(int op, int n)
{
    double best = 1e18, t;
    int r;

    for (r = 0; r < ROUNDS; r++) {
        t = now_ns();
        run(op, n);
        t = (now_ns() - t) / n;
        if (t < best)
            best = t;
    }
    return best;
}

static const char py_code[] =
    "import sys, timeit\n"
    "from multiprocessing import shared_memory as sm, resource_tracker as rt\n"
    "rt.register = rt.unregister = lambda *a, **k: None\n"
    "names, n = sys.argv[1].split(','), int(sys.argv[2])\n"
    "ls = [sm.ShareableList(name=x) for x in names[:3]]\n"
    "def best(stmt, number):\n"
    "    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9\n"
    "out = []\n"
    "for l in ls:\n"
    "    out.append(best(lambda l=l: [l[i] for i in range(1000)], n // 1000) / 1000)\n"
    "vals = [lambda i: i, lambda i: i * 0.5, lambda i: 'hello'[i & 3:]]\n"
    "for l, v in zip(ls, vals):\n"
    "    def s(l=l, v=v):\n"
    "        for i in range(1000): l[i] = v(i)\n"
    "    out.append(best(s, n // 1000) / 1000)\n"
    "def create():\n"
    "    s = sm.ShareableList(range(1000), name=names[3])\n"
    "    s.shm.close(); s.shm.unlink()\n"
    "out.append(best(create, max(n // 2000, 10)))\n"
    "def attach():\n"
    "    sm.ShareableList(name=names[0]).shm.close()\n"
    "out.append(best(attach, max(n // 200, 10)))\n"
    "print(' '.join('%.1f' % x for x in out))\n";

/* Runs CPython's timings; fills py[] (ns per op) or returns -1. */
static int cpython_times(int n, double py[NOPS])
{
    char arg[300], count[32], buf[1024] = "";
    int fd[2], st, i, off;
    size_t used = 0;
    ssize_t r;
    pid_t pid;

    snprintf(arg, sizeof arg, "%s,%s,%s,%s", names[0], names[1], names[2],
             names[3]);
    snprintf(count, sizeof count, "%d", n);
    if (pipe(fd) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl("/usr/bin/python3", "python3", "-c", py_code, arg, count,
              (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    while (used + 1 < sizeof buf &&
           (r = read(fd[0], buf + used, sizeof buf - 1 - used)) > 0)
        used += (size_t)r;
    buf[used] = 0;
    close(fd[0]);
    if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
        return -1;
    for (i = 0, off = 0; i < NOPS; i++) {
        int k;
        if (sscanf(buf + off, "%lf%n", &py[i], &k) != 1)
            return -1;
        off += k;
    }
    return 0;
}

static int setup(void)
{
    shmkit_item in[ITEMS];
    int t, i;

    for (t = 0; t < 4; t++)
        snprintf(names[t], sizeof names[t], "bench_list_%d_%d", (int)getpid(),
                 t);
    for (t = 0; t < 3; t++) {
        for (i = 0; i < ITEMS; i++)
            in[i] = t == 0 ? shmkit_item_int(i)
                  : t == 1 ? shmkit_item_float(i) : shmkit_item_str("hello");
        if (shmkit_list_create(&lists[t], names[t], in, ITEMS, 0) != 0) {
            fprintf(stderr, "bench_list: %s\n", shmkit_last_error());
            return -1;
        }
    }
    return 0;
}

static void teardown(void)
{
    int t;

    for (t = 0; t < 3; t++) {
        if (lists[t])
            shmkit_list_unlink(lists[t]);
        shmkit_list_close(lists[t]);
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000000, op;
    double c[NOPS], py[NOPS];
    bool have_py;

    if (n < 1000)
        n = 1000;
    if (setup() < 0) {
        teardown();
        return 1;
    }
    for (op = 0; op < NOPS; op++)
        c[op] = time_op(op, op == CREATE ? n / 1000 : op == ATTACH ? n / 100 : n);
    have_py = cpython_times(n / 5, py) == 0; /* CPython: ~1 minute */
    teardown();
    printf("%-18s %12s %12s %10s\n", "ShareableList", "shmkit (C)",
           "CPython", "ratio");
    for (op = 0; op < NOPS; op++) {
        if (have_py)
            printf("%-18s %9.1f ns %9.1f ns %9.1fx\n", op_names[op], c[op],
                   py[op], py[op] / c[op]);
        else
            printf("%-18s %9.1f ns %12s\n", op_names[op], c[op], "n/a");
    }
    if (!have_py)
        fprintf(stderr, "bench_list: CPython timing failed\n");
    return 0;
}
