/*
 * demo.c - `shmkit demo`: shmkit's main job, shown end to end.
 *
 * Part 1 is the program of seed 003 done in C: a uint32 array in one named
 * block, split into disjoint ranges over worker processes that attach by
 * name and transform their range in place, then verified. It runs once with
 * one worker and once with N, and compares the bytes moved per second with
 * memcpy's bandwidth measured in the same run.
 *
 * Part 2 is the comparison of seed 002: handing 1/256, 1/16 and all of
 * part 1's bytes (1 MiB, 16 MiB and 256 MiB by default) to another process
 * by value (through a pipe) and by name (the child attaches and reads the
 * same bytes), timed side by side.
 *
 * On a terminal, a status line on stderr shows which step runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The block the demo made, removed if the demo is interrupted. */
static char cleanup_path[sizeof "/dev/shm/" + SHMKIT_NAME_MAX + 1];

static void on_signal(int sig)
{
    if (cleanup_path[0])
        unlink(cleanup_path); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_name(const char *name)
{
    struct sigaction sa = {.sa_handler = on_signal};

    if (name)
        snprintf(cleanup_path, sizeof cleanup_path, "/dev/shm/%s", name);
    else
        cleanup_path[0] = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Waits for every pid; returns 0 if all exited with status 0. */
static int wait_all(const pid_t *pids, int n)
{
    int i, bad = 0;

    for (i = 0; i < n; i++) {
        int st;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "shmkit: demo: worker %d failed (status %#x)\n",
                    (int)pids[i], st);
            bad = 1;
        }
    }
    return bad;
}

/* ---- part 1: transform in place ----------------------------------------- */

static inline uint32_t transform(uint32_t v)
{
    return v * 2 + ((v & 1) ^ 1);
}

/* Worker body: attach by name, prefault its own range, transform
 * [start, end) in place, detach. Reports the seconds its loop took on
 * `report`, so the demo can show the work apart from process set-up. */
static int worker(const char *name, size_t start, size_t end, int report)
{
    shmkit_block *b;
    uint32_t *p;
    double t0;
    size_t i;
    int r;

    r = shmkit_block_attach(&b, name, 0);
    if (r == 0)
        r = shmkit_block_populate(b, start * sizeof *p,
                                  (end - start) * sizeof *p);
    if (r < 0)
        return cli_error(name, r);
    p = shmkit_block_data(b);
    t0 = now_s();
    for (i = start; i < end; i++)
        p[i] = transform(p[i]);
    t0 = now_s() - t0;
    shmkit_block_close(b);
    return write(report, &t0, sizeof t0) == sizeof t0 ? 0 : 1;
}

#define STEP (1u << 20) /* items between progress updates */

static void fill(uint32_t *p, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i += STEP) {
        cli_progress(false, "   filling %zu%%", i * 100 / n);
        for (j = i; j < n && j < i + STEP; j++)
            p[j] = (uint32_t)j;
    }
}

static size_t verify(const uint32_t *p, size_t n)
{
    size_t i, j, bad = 0;

    for (i = 0; i < n; i += STEP) {
        cli_progress(false, "   verifying %zu%%", i * 100 / n);
        for (j = i; j < n && j < i + STEP; j++)
            bad += p[j] != transform((uint32_t)j);
    }
    return bad;
}

struct timing {
    double total; /* first fork to last exit */
    double work;  /* the slowest worker's loop */
};

/* Runs the transform over n items with `workers` processes. */
static int run_workers(const char *name, size_t n, int workers,
                       struct timing *t)
{
    pid_t *pids = calloc((size_t)workers, sizeof *pids);
    size_t chunk = (n + (size_t)workers - 1) / (size_t)workers;
    double t0 = now_s(), w;
    int i, started = 0, bad, rep[2];

    if (!pids || pipe2(rep, O_CLOEXEC) < 0) {
        free(pids);
        return -1;
    }
    for (i = 0; i < workers; i++) {
        size_t start = (size_t)i * chunk;
        size_t end = start + chunk < n ? start + chunk : n;
        pid_t pid;
        if (start >= end)
            break;
        pid = fork();
        if (pid == 0)
            _exit(worker(name, start, end, rep[1]));
        if (pid < 0)
            break;
        pids[started++] = pid;
    }
    close(rep[1]);
    cli_progress(true, "   %d worker%s running", started, started == 1 ? "" : "s");
    bad = wait_all(pids, started) || started == 0;
    t->total = now_s() - t0;
    t->work = 0;
    for (i = 0; i < started && !bad; i++) {
        bad = read(rep[0], &w, sizeof w) != sizeof w;
        if (w > t->work)
            t->work = w;
    }
    close(rep[0]);
    free(pids);
    return bad ? -1 : 0;
}

/* memcpy bandwidth over `bytes`, in bytes moved (read + written) per s. */
static double memcpy_bandwidth(void *dst, const void *src, size_t bytes)
{
    double best = 1e9;
    int i;

    for (i = 0; i < 3; i++) {
        double t0 = now_s();
        memcpy(dst, src, bytes);
        __asm__ volatile("" : : "r"(dst) : "memory");
        double t = now_s() - t0;
        if (t < best)
            best = t;
    }
    return 2.0 * (double)bytes / best;
}

/* Prints one run end to end (first fork to last exit: process start,
 * attach, mapping and first touch included) against memcpy's time for the
 * same bytes; then the loops alone, labelled as such: they leave out the
 * mapping and the first touch, so their rate can exceed memcpy's. */
static void print_timing(const char *who, const struct timing *t,
                         double bytes, double bw_memcpy)
{
    double e2e = 2 * bytes / t->total; /* read + written per second */
    double loop = 2 * bytes / t->work;

    printf("   %-10s end to end %7.3f s: %5.2f GB/s moved, %.2fx memcpy's "
           "time\n", who, t->total, e2e / 1e9, bw_memcpy / e2e);
    printf("   %-10s loops only %7.3f s: %5.2f GB/s (no mapping, no first "
           "touch)\n", "", t->work, loop / 1e9);
}

static int part_transform(size_t n, int workers)
{
    struct timing t1 = {0}, tn = {0};
    shmkit_block *b;
    size_t bytes = n * sizeof(uint32_t), bad = n;
    double bw_memcpy = 0;
    void *scratch;
    char who[32], size[32];
    int r;

    r = shmkit_block_create(&b, NULL, bytes, SHMKIT_RESERVE);
    if (r < 0)
        return cli_error(shmkit_last_error(), r);
    guard_name(shmkit_block_name(b));
    cli_format_size(size, sizeof size, bytes);
    printf("1. Transform in place: %zu uint32 (%s) in block \"%s\"\n", n, size,
           shmkit_block_name(b));
    fflush(stdout);
    fill(shmkit_block_data(b), n);
    r = run_workers(shmkit_block_name(b), n, 1, &t1);
    fill(shmkit_block_data(b), n);
    if (r == 0)
        r = run_workers(shmkit_block_name(b), n, workers, &tn);
    if (r == 0)
        bad = verify(shmkit_block_data(b), n);
    cli_progress(true, "   measuring memcpy");
    if ((scratch = malloc(bytes))) {
        bw_memcpy = memcpy_bandwidth(scratch, shmkit_block_data(b), bytes);
        free(scratch);
    }
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    guard_name(NULL);
    cli_progress_done();
    if (r < 0)
        return 1;
    print_timing("1 worker", &t1, (double)bytes, bw_memcpy);
    snprintf(who, sizeof who, "%d workers", workers);
    print_timing(who, &tn, (double)bytes, bw_memcpy);
    printf("   speedup %.2fx end to end, %.2fx in the loops; memcpy here "
           "moves %.2f GB/s\n",
           t1.total / tn.total, t1.work / tn.work, bw_memcpy / 1e9);
    printf("   verification: %s\n\n", bad ? "FAILED" : "ok");
    if (bad)
        fprintf(stderr, "shmkit: demo: %zu items wrong\n", bad);
    return bad ? 1 : 0;
}

/* ---- part 2: by value against by name ------------------------------------ */

/* Reads (or, if `out`, writes) all len bytes; 0, or -1 on error or EOF. */
static int io_full(int fd, void *buf, size_t len, bool out)
{
    char *p = buf;

    while (len) {
        ssize_t k = out ? write(fd, p, len) : read(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
    return io_full(fd, buf, len, false);
}

static int write_full(int fd, const void *buf, size_t len)
{
    return io_full(fd, (void *)buf, len, true);
}

static uint64_t checksum(const uint64_t *p, size_t bytes)
{
    uint64_t s = 0;
    size_t i;

    for (i = 0; i < bytes / 8; i++)
        s += p[i];
    return s;
}

/* The receiving process. Commands on `in`: 'V' + size then the bytes (by
 * value), or 'N' + name length + name (by name). Replies the checksum. */
static int receiver(int in, int out)
{
    char op;
    uint64_t len, sum;

    while (read_full(in, &op, 1) == 0) {
        if (read_full(in, &len, sizeof len) < 0)
            return 1;
        if (op == 'V') {
            void *buf = malloc(len);
            if (!buf || read_full(in, buf, len) < 0)
                return 1;
            sum = checksum(buf, len);
            free(buf);
        } else {
            char name[SHMKIT_NAME_MAX + 1] = "";
            shmkit_block *b;
            if (len > SHMKIT_NAME_MAX || read_full(in, name, len) < 0)
                return 1;
            if (shmkit_block_attach(&b, name, SHMKIT_RDONLY) < 0)
                return 1;
            sum = checksum(shmkit_block_data(b), shmkit_block_size(b));
            shmkit_block_close(b);
        }
        if (write_full(out, &sum, sizeof sum) < 0)
            return 1;
    }
    return 0;
}

static double hand_over(int to, int from, char op, const void *payload,
                        uint64_t len, uint64_t expect)
{
    double t0 = now_s();
    uint64_t sum;

    if (write_full(to, &op, 1) < 0 || write_full(to, &len, sizeof len) < 0 ||
        write_full(to, payload, len) < 0 || read_full(from, &sum, sizeof sum) < 0)
        return -1;
    return sum == expect ? now_s() - t0 : -1;
}

/* Times one size both ways; returns 0 on success. */
static int compare_size(int to, int from, size_t bytes)
{
    shmkit_block *b;
    double tv, tn;
    uint64_t sum;
    char size[32];
    size_t i;
    int r;

    cli_format_size(size, sizeof size, bytes);
    cli_progress(true, "   handing over %s", size);
    r = shmkit_block_create(&b, NULL, bytes, SHMKIT_RESERVE);
    if (r < 0)
        return cli_error(shmkit_last_error(), r);
    guard_name(shmkit_block_name(b));
    for (i = 0; i < bytes / 8; i++)
        ((uint64_t *)shmkit_block_data(b))[i] = i * 2654435761u;
    sum = checksum(shmkit_block_data(b), bytes);
    tv = hand_over(to, from, 'V', shmkit_block_data(b), bytes, sum);
    tn = hand_over(to, from, 'N', shmkit_block_name(b),
                   strlen(shmkit_block_name(b)), sum);
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    guard_name(NULL);
    cli_progress_done();
    if (tv < 0 || tn < 0)
        return cli_error("demo: hand-over", -EIO);
    printf("   %8s   by value %9.3f ms   by name %9.3f ms   %6.1fx\n",
           size, tv * 1e3, tn * 1e3, tv / tn);
    fflush(stdout);
    return 0;
}

/* Hands over 1/256, 1/16 and all of part 1's bytes (1 MiB, 16 MiB and
 * 256 MiB by default), each a whole number of 8-byte words. */
static int part_handover(size_t bytes)
{
    const size_t sizes[] = {bytes / 256 & ~(size_t)7, bytes / 16 & ~(size_t)7,
                            bytes & ~(size_t)7};
    int down[2], up[2], status = 0;
    size_t i;
    pid_t pid;

    if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
        return cli_error("pipe", -errno);
    fcntl(down[1], F_SETPIPE_SZ, 1 << 20); /* give the pipe its best case */
    pid = fork();
    if (pid < 0)
        return cli_error("fork", -errno);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        _exit(receiver(down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);
    printf("2. Handing data to another process: by value (pipe) vs by name\n");
    fflush(stdout);
    for (i = 0; i < sizeof sizes / sizeof sizes[0] && status == 0; i++)
        status = compare_size(down[1], up[0], sizes[i]);
    close(down[1]);
    close(up[0]);
    return wait_all(&pid, 1) | status;
}

/* ---- command ------------------------------------------------------------- */

#define SIZE_MIN (1ull << 20) /* items: below 4 MiB the timings are noise */
#define SIZE_MAX_ITEMS (1ull << 32)

/* Parses a count with an optional suffix: K, M, G (powers of 1000), Ki,
 * Mi, Gi (powers of 1024). Returns false if s is not one. */
static bool parse_count(const char *s, unsigned long long *out)
{
    static const struct { const char *sfx; unsigned long long mul; } sfx[] = {
        {"", 1}, {"K", 1000}, {"M", 1000000}, {"G", 1000000000},
        {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30}};
    unsigned long long v;
    char *end;
    size_t i;

    if (!*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (strcmp(end, sfx[i].sfx) == 0) {
            if (v > ~0ull / sfx[i].mul)
                return false;
            *out = v * sfx[i].mul;
            return true;
        }
    return false;
}

int cli_demo(int argc, char **argv)
{
    long workers = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long long n = 64ull << 20;
    int i, r;

    for (i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            workers = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end)
                return cli_usage_error("demo: --workers '%s' is not a number",
                                       argv[i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], &n))
                return cli_usage_error("demo: --size '%s' is not a count of "
                                       "items (e.g. 1048576, 16Mi, 100M)",
                                       argv[i]);
        } else {
            return cli_usage_error("demo: unexpected argument '%s'", argv[i]);
        }
    }
    if (workers < 1 || workers > 1024)
        return cli_usage_error("demo: --workers must be 1 to 1024");
    if (n < SIZE_MIN || n > SIZE_MAX_ITEMS)
        return cli_usage_error("demo: --size %llu is out of range: at least "
                               "1Mi items (4 MiB; less is too short to time), "
                               "at most 4Gi items (16 GiB)", n);
    printf("shmkit %s demo: %ld workers\n\n", shmkit_version(), workers);
    fflush(stdout);
    r = part_transform((size_t)n, (int)workers);
    if (r == 0)
        r = part_handover((size_t)n * sizeof(uint32_t));
    return r;
}
