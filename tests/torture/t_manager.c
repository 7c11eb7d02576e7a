/*
 * t_manager.c - the manager under attack: 2,000 connections held at once
 * (every refusal must be a "busy" code, never SHMKIT_EAUTH), malformed
 * frames (the manager must survive and keep serving), SIGKILL while a
 * client creates blocks, then a restart on the same socket (nothing of the
 * dead manager's may be left 1 s after the restart), and the time a
 * shutdown and a restart sweep take for many blocks.
 *
 * The server runs in a child of ours (shmkit_manager_serve), so that it
 * can be SIGKILLed and restarted at will.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmkit.h"
#include "torture.h"

static char sock[108];
static rlim_t serve_nofile; /* the server's descriptor limit, 0: as ours */

static int serve(void *arg)
{
    int ready = (int)(intptr_t)arg;
    struct rlimit rl;

    if (serve_nofile && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = serve_nofile;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    return shmkit_manager_serve(sock, NULL, 0, ready, -1) < 0 ? 1 : 0;
}

/* Starts a server child and waits until it listens (or failed). The time
 * it took goes to *ns if not NULL. */
static pid_t server_start(int64_t *ns)
{
    int64_t t0 = now_ns();
    int p[2], status = -1;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid = child_run(serve, (void *)(intptr_t)p[1]);
    close(p[1]);
    if (read(p[0], &status, sizeof status) != sizeof status || status != 0) {
        close(p[0]);
        if (pid > 0) {
            kill(pid, SIGKILL);
            child_wait(pid, -1, NULL);
        }
        return -1;
    }
    close(p[0]);
    if (ns)
        *ns = now_ns() - t0;
    return pid;
}

static int raw_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A manager that answers a LIST is alive and serving. */
static bool serving(void)
{
    shmkit_manager *m;
    char **names;
    size_t n;
    int r = -EUSERS, i;

    /* Right after many hang-ups the manager may not have seen them all:
     * busy is an answer, retried a bounded number of times. */
    for (i = 0; i < 1000 && (r == -EUSERS || r == -EMFILE); i++)
        r = shmkit_manager_connect(&m, sock, NULL, 0);
    if (r < 0)
        return false;
    r = shmkit_manager_list(m, &names, &n);
    if (r == 0)
        shmkit_manager_list_free(names, n);
    shmkit_manager_close(m);
    return r == 0;
}

static void many_connections(struct row *r, long n)
{
    shmkit_manager **m = calloc((size_t)n, sizeof *m);
    long i, ok = 0, busy = 0, auth = 0, other = 0;
    int last_other = 0;

    if (!m) {
        r->bad++;
        return;
    }
    for (i = 0; i < n; i++) {
        int rc = shmkit_manager_connect(&m[i], sock, NULL, 0);
        r->runs++;
        if (rc == 0)
            ok++;
        else if (rc == -EMFILE || rc == -ENFILE || rc == -EUSERS ||
                 rc == -EAGAIN)
            busy++;
        else if (rc == SHMKIT_EAUTH)
            auth++;
        else
            other++, last_other = rc;
    }
    for (i = 0; i < n; i++)
        shmkit_manager_close(m[i]);
    free(m);
    r->bad += auth + other;
    if (!serving())
        r->bad++;
    snprintf(r->note, sizeof r->note,
             "%ld accepted, %ld busy, %ld EAUTH, %ld other (%s)", ok, busy,
             auth, other, other ? shmkit_errname(last_other) : "-");
}

static void malformed(struct row *r, long n)
{
    long i;

    for (i = 0; i < n; i++) {
        unsigned char buf[256];
        size_t len = 1 + rnd_below(sizeof buf), k;
        int fd = raw_connect();
        if (fd < 0) {
            r->bad++;
            continue;
        }
        for (k = 0; k < len; k++)
            buf[k] = (unsigned char)rnd();
        if (rnd_below(2)) { /* a well-formed header with hostile fields */
            memcpy(buf, "SKMG\x01\x00", 6);
            if (len < 16)
                len = 16;
        }
        if (send(fd, buf, len, MSG_NOSIGNAL) < 0 && errno != EPIPE &&
            errno != ECONNRESET)
            r->bad++;
        close(fd);
        r->mutations++;
    }
    if (!serving())
        r->bad++;
}

struct load {
    long n;
};

/* A client that creates blocks and queues (every third object) until
 * told to stop (or the manager dies). */
static int creator(void *arg)
{
    struct load *l = arg;
    shmkit_manager *m;
    char name[SHMKIT_NAME_MAX + 1];
    long i;
    int r;

    if (shmkit_manager_connect(&m, sock, NULL, 0) < 0)
        return 2;
    for (i = 0; i < l->n; i++) {
        if (i % 3 == 2)
            r = shmkit_manager_create_queue(m, NULL, 4096, 0, name);
        else
            r = shmkit_manager_create_block(m, NULL, 4096, name);
        if (r < 0)
            break;
    }
    shmkit_manager_close(m);
    return 0;
}

/* Time until no "psm_" object is left, at most limit_ms; -1 if some are. */
static double until_clean(int limit_ms)
{
    int64_t t0 = now_ns(), end = t0 + (int64_t)limit_ms * 1000000;

    while (shm_count("psm_") > 0) {
        if (now_ns() > end)
            return -1;
        sleep_ns(1000000);
    }
    return (double)(now_ns() - t0) / 1e6;
}

/* SIGKILL under load and restart; with all=true the kill waits until the
 * client has created everything (sweep timing for n blocks). */
static void kill_restart(struct row *r, pid_t *server, long n, bool all,
                         double *sweep_ms)
{
    struct load l = {n};
    pid_t c = child_run(creator, &l);
    int64_t t_ready;
    int code;
    double ms;

    if (all)
        child_wait(c, 600000, &code);
    else
        sleep_ns(10000000 + (int64_t)rnd_below(40000000)); /* random instant */
    kill(*server, SIGKILL);
    child_wait(*server, -1, &code);
    r->kills++;
    if (!all)
        child_wait(c, 60000, &code);
    *server = server_start(&t_ready);
    if (*server < 0) {
        r->bad++;
        return;
    }
    ms = until_clean(1000);
    if (ms < 0) {
        r->leaks += shm_count("psm_");
        shm_clear("psm_");
        ms = 1000;
    }
    *sweep_ms = ms + (double)t_ready / 1e6;
}

void attack_manager(void)
{
    struct row *lowfd = row_new("manager: 2,000 connections, 64 fds", "manager");
    struct row *conn = row_new("manager: 2,000 connections", "manager");
    struct row *bad = row_new("manager: malformed frames", "manager");
    struct row *kr = row_new("manager: SIGKILL under load, restart", "manager");
    struct row *sd = row_new("manager: shutdown/restart sweep", "manager");
    char rundir[4096];
    struct rlimit rl;
    long i, kills = scaled(5, 50), nsweep = scaled(1000, 10000);
    double worst = 0, ms, restart_ms = 0, shut_ms;
    pid_t server;
    int code;

    if (shmkit_runtime_dir(rundir, sizeof rundir) < 0 ||
        strlen(rundir) + sizeof "/tt.sock" > sizeof sock) {
        conn->bad++;
        return;
    }
    strcpy(sock, rundir);
    strcat(sock, "/tt.sock");
    /* Room for 2,000 client descriptors on our side. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Out of descriptors first (-EMFILE), then out of client slots. */
    serve_nofile = 64;
    server = server_start(NULL);
    if (server < 0) {
        lowfd->bad++;
        return;
    }
    many_connections(lowfd, 2000);
    kill(server, SIGTERM);
    child_wait(server, 10000, &code);
    serve_nofile = 0;
    server = server_start(NULL);
    if (server < 0) {
        conn->bad++;
        return;
    }
    many_connections(conn, 2000);
    malformed(bad, scaled(500, 5000));
    bad->runs = bad->mutations;
    for (i = 0; i < kills && server > 0; i++) {
        kill_restart(kr, &server, 200, false, &ms);
        kr->runs++;
        if (ms > worst)
            worst = ms;
    }
    snprintf(kr->note, sizeof kr->note, "worst restart+sweep %.0f ms", worst);
    if (server > 0) {
        kill_restart(sd, &server, nsweep, true, &restart_ms);
        sd->runs++;
    }
    if (server > 0) {
        /* Shutdown time with nsweep blocks and queues owned. */
        struct load l = {nsweep};
        shmkit_manager *m;
        pid_t c = child_run(creator, &l);
        int64_t t0;
        child_wait(c, 600000, &code);
        t0 = now_ns();
        if (shmkit_manager_connect(&m, sock, NULL, 0) == 0) {
            shmkit_manager_shutdown(m);
            shmkit_manager_close(m);
        }
        child_wait(server, 30000, &code);
        shut_ms = (double)(now_ns() - t0) / 1e6;
        sd->runs++;
        if (shm_count("psm_") > 0) {
            sd->leaks += shm_count("psm_");
            shm_clear("psm_");
        }
        snprintf(sd->note, sizeof sd->note,
                 "%ld blocks and queues: restart+sweep %.0f ms, shutdown %.0f ms",
                 nsweep,
                 restart_ms, shut_ms);
        if (restart_ms > 1000 || shut_ms > 1000)
            sd->bad++;
    }
}
