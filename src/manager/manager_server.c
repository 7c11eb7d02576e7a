/*
 * manager_server.c - the manager daemon: owns blocks for its clients.
 *
 * One process, one poll loop, no threads. Each client has a fixed buffer
 * of one maximal frame; a client that leaves a frame (or the handshake)
 * unfinished for CLIENT_STALL_MS is dropped, and so is one that does not
 * read its replies (sends never block). State, in the runtime directory
 * under mgr-<hash of the socket path>/:
 *     lock     flock()ed for the manager's whole life: the kernel drops it
 *              when the manager dies, however it dies
 *     info     "pid start\nsocket path\n"
 *     journal  the names it owns (life.h records)
 * A manager starting on the same socket path takes the lock, removes what
 * its dead predecessor's journal lists, and starts a fresh journal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "manager.h"
#include "core/hooks.h"
#include "core/os.h"

#define MAX_CLIENTS 256
#define MAX_OWNED 65536
#define CLIENT_STALL_MS 5000
#define ACCEPT_PAUSE_MS 100

struct client {
    int fd;
    bool authed;
    int64_t deadline;    /* ms; 0 = none */
    size_t used;
    uint8_t nonce[SHMKIT__MGR_NONCE];
    uint8_t buf[SHMKIT__MGR_FRAME_MAX];
};

struct server {
    int lfd, sigfd, lifeline, lockfd;
    int spare;             /* a descriptor kept free to refuse clients
                              when out of descriptors (-1 if none) */
    bool stop;
    int64_t accept_pause;  /* ms; listen socket not polled until then */
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char dir[SHMKIT__DIR_MAX];
    unsigned char key[SHMKIT_MANAGER_KEY_MAX];
    size_t keylen;
    struct shmkit__journal j;
    struct shmkit__nset owned;
    uint64_t intent_ino;   /* inode of the object being created (journal_intent) */
    struct client *c[MAX_CLIENTS];
    size_t nc;
    uint8_t out[SHMKIT__MGR_FRAME_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- socket path and state directory ------------------------------------- */

/* The socket's directory must be ours alone (created 0700 if missing). */
static int sock_dir_check(const char *sock)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;

    snprintf(dir, sizeof dir, "%s", sock);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return -EINVAL;
    *slash = 0;
    return shmkit__dir_private(dir);
}

/* Takes the state directory's lock; -EADDRINUSE if a live manager has it. */
static int state_lock(struct server *s)
{
    char path[SHMKIT__DIR_MAX];
    struct stat a, b;
    int tries, fd;

    for (tries = 0; tries < 8; tries++) {
        if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
            return -errno;
        shmkit__path_join(path, s->dir, "lock");
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            return errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
        }
        /* gc may have removed the directory of a dead manager between
         * our open and our flock: then lock what is there now. */
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino) {
            s->lockfd = fd;
            return 0;
        }
        close(fd);
    }
    return -EAGAIN;
}

/* Writes "pid start\nsocket\n". Without its own start time the manager
 * does not start: with "start 0" every reader (`shmkit ls`, gc's index)
 * would take any later process given its pid for this manager. */
static int state_write_info(struct server *s)
{
    char path[SHMKIT__DIR_MAX], buf[sizeof s->sock + 64];
    uint64_t start;
    int fd, n, r;

    r = shmkit__proc_start(getpid(), &start);
    if (r < 0)
        return r;
    n = snprintf(buf, sizeof buf, "%ld %" PRIu64 "\n%s\n", (long)getpid(),
                 start, s->sock);
    shmkit__path_join(path, s->dir, "info");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return -errno;
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -EIO;
    }
    close(fd);
    return 0;
}

static void sweep_one(const char *name, uint64_t ino, void *arg)
{
    (void)arg;
    shmkit__shm_unlink_if(name, ino, false);
}

/* Removes what a dead predecessor on this state left; starts afresh. */
static int state_open(struct server *s, const char *rundir)
{
    char path[SHMKIT__DIR_MAX];
    struct shmkit__nset old = {0};
    int r;

    r = state_lock(s);
    if (r < 0)
        return r;
    shmkit__path_join(path, s->dir, "journal");
    shmkit__journal_replay(path, &old);
    shmkit__nset_each(&old, sweep_one, NULL);
    shmkit__nset_clear(&old);
    unlink(path);
    r = shmkit__journal_open(&s->j, path);
    if (r == 0)
        r = state_write_info(s);
    /* Dead managers elsewhere leak nothing for long either. */
    shmkit__gc_managers(rundir, strrchr(s->dir, '/') + 1, 0, NULL, NULL);
    return r;
}

/* ---- listening ------------------------------------------------------------- */

/* Refuses to take over a socket path where a manager still answers. */
static int sock_claim(const char *path, struct sockaddr_un *sa)
{
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    r = connect(fd, (struct sockaddr *)sa, sizeof *sa);
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    return unlink(path) < 0 ? -errno : 0;
}

static int sock_listen(struct server *s)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd, r;

    memcpy(sa.sun_path, s->sock, strlen(s->sock) + 1);
    r = sock_claim(s->sock, &sa);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (chmod(s->sock, 0600) < 0 || listen(fd, 64) < 0) {
        r = -errno;
        close(fd);
        unlink(s->sock);
        return r;
    }
    s->lfd = fd;
    return 0;
}

/* SIGTERM arrives as a readable descriptor; SIGINT is ignored (a Ctrl-C
 * meant for the program that started us must not drop everyone's blocks:
 * CPython bpo-36368). */
static int signals_setup(struct server *s)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigset_t set;

    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return s->sigfd < 0 ? -errno : 0;
}

/* ---- clients --------------------------------------------------------------- */

static void client_drop(struct server *s, size_t i)
{
    close(s->c[i]->fd);
    OPENSSL_cleanse(s->c[i]->nonce, sizeof s->c[i]->nonce);
    free(s->c[i]);
    s->c[i] = s->c[--s->nc];
}

/* Sends a whole frame without blocking; false if the client cannot take
 * it (then it is dropped: a client that does not read gets no more). */
static bool client_send(struct client *c, const uint8_t *frame, size_t len)
{
    ssize_t n = send(c->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);

    return n == (ssize_t)len;
}

static bool reply(struct server *s, struct client *c, uint16_t type,
                  int32_t status, const void *payload, uint32_t len)
{
    size_t n = shmkit__mgr_put(s->out, SHMKIT__MGR_REPLY | type, status,
                               payload, len);

    return client_send(c, s->out, n);
}

/* Tells a connection why it is not served, in place of the greeting, and
 * hangs up. The client reports the code (shmkit_manager_connect). */
static void refuse(struct server *s, int fd, int code)
{
    size_t len = shmkit__mgr_put(s->out, SHMKIT__MGR_REPLY | SHMKIT__MGR_HELLO,
                                 code, NULL, 0);

    send(fd, s->out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
}

/* Out of descriptors, a pending connection would wait unanswered (and a
 * client would time out): give up the spare descriptor to accept it, tell
 * it -EMFILE, and take the spare back. True if one was refused (there may
 * be more); false if none was pending or there is no spare. */
static bool refuse_for_lack_of_fds(struct server *s, int err)
{
    int fd;

    if (s->spare < 0)
        return false;
    close(s->spare);
    s->spare = -1;
    fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
        refuse(s, fd, -err);
    s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

/* Greets a new connection: only our own user gets in (the kernel vouches
 * for the peer's uid), and it must answer the challenge in time. */
static void client_accept(struct server *s, int fd)
{
    uint8_t hello[SHMKIT__MGR_HELLO_LEN] = {0};
    struct ucred cr;
    socklen_t crlen = sizeof cr;
    struct client *c;
    size_t len;

    if (s->nc >= MAX_CLIENTS || !(c = calloc(1, sizeof *c))) {
        /* Busy, not a refusal of who they are: say so before hanging up
         * (-EUSERS: every client slot taken; -ENOMEM). */
        refuse(s, fd, s->nc >= MAX_CLIENTS ? -EUSERS : -ENOMEM);
        return;
    }
    c->fd = fd;
    c->deadline = now_ms() + CLIENT_STALL_MS;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
        cr.uid != geteuid() ||
        shmkit__os.random(c->nonce, sizeof c->nonce) < 0) {
        reply(s, c, SHMKIT__MGR_HELLO, SHMKIT_EAUTH, NULL, 0);
        close(fd);
        free(c);
        return;
    }
    shmkit__put32(hello, (uint32_t)getpid());
    hello[4] = s->keylen > 0;
    hello[5] = SHMKIT__MGR_REVISION;
    memcpy(hello + 8, c->nonce, SHMKIT__MGR_NONCE);
    s->c[s->nc++] = c;
    len = shmkit__mgr_put(s->out, SHMKIT__MGR_HELLO, 0, hello, sizeof hello);
    if (!client_send(c, s->out, len))
        client_drop(s, s->nc - 1);
}

static void accept_all(struct server *s)
{
    int fd, err;

    for (;;) {
        fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            client_accept(s, fd);
            continue;
        }
        err = errno;
        /* Out of descriptors: refuse every pending connection with
         * -EMFILE through the spare descriptor. */
        if ((err == EMFILE || err == ENFILE) && refuse_for_lack_of_fds(s, err))
            continue;
        break;
    }
    /* Without a spare the pending connection stays readable: stop
     * polling the socket for a moment rather than spin on it. */
    if ((err == EMFILE || err == ENFILE) && s->spare < 0)
        s->accept_pause = now_ms() + ACCEPT_PAUSE_MS;
}

/* ---- requests -------------------------------------------------------------- */

static int auth_check(struct server *s, struct client *c,
                      const struct shmkit__mgr_msg *m)
{
    uint8_t mac[SHMKIT__MGR_MAC];

    if (m->type != SHMKIT__MGR_AUTH)
        return SHMKIT_EPROTO;
    if (s->keylen == 0)
        return 0;
    if (m->len != SHMKIT__MGR_MAC ||
        shmkit__mgr_mac(s->key, s->keylen, c->nonce, mac) < 0 ||
        CRYPTO_memcmp(mac, m->payload, SHMKIT__MGR_MAC) != 0)
        return SHMKIT_EAUTH;
    return 0;
}

/* Journals a name this manager is about to own, before the name exists
 * (core/hooks.h): a manager killed at any instant leaves only objects its
 * journal lists, which the next manager on this state sweeps. Keeps the
 * object's inode for own() (every name tried is the same object's). */
static int journal_intent(const char *name, uint64_t ino, void *arg)
{
    struct server *s = arg;

    s->intent_ino = ino;
    return shmkit__journal_add(&s->j, name, ino);
}

/* Until intent_end(), every name this thread publishes is journaled
 * before it appears. */
static void intent_begin(struct server *s)
{
    s->intent_ino = 0;
    shmkit__publish_intent.fn = journal_intent;
    shmkit__publish_intent.arg = s;
}

static void intent_end(void)
{
    shmkit__publish_intent.fn = NULL;
    shmkit__publish_intent.arg = NULL;
}

/* Takes a new, already journaled object into the owned set, under the
 * inode its publishing journaled (no second fstat). */
static int own(struct server *s, const char *name)
{
    int r = s->intent_ino ? shmkit__nset_put(&s->owned, name, s->intent_ino)
                          : -EIO; /* published without an intent: cannot be */

    if (r < 0) {
        shmkit__os.shm_unlink(name);
        shmkit__journal_del(&s->j, name);
        return r;
    }
    shmkit__journal_compact(&s->j, &s->owned);
    return 0;
}

/* A new object made for a client: its block, and the list or queue
 * handle over it if it is one (closed once the object is owned). */
struct made {
    shmkit_block *b;
    shmkit_list *l;
    shmkit_queue *q;
};

/* The makers below decode a CREATE* message, refuse it when the manager
 * owns MAX_OWNED objects already, and create the object (the caller has
 * begun the publish intent). */

static int make_block(struct server *s, const struct shmkit__mgr_msg *m,
                      char *name, struct made *o)
{
    shmkit_block *b;
    uint64_t size;
    int r;

    r = shmkit__mgr_decode_create(m, &size, name);
    if (r < 0)
        return r;
    if (s->owned.count >= MAX_OWNED)
        return -ENOSPC;
    if (size > SIZE_MAX)
        return -EINVAL;
    /* Reserved: a client's write to a block the manager made cannot
     * SIGBUS on a full /dev/shm (the create fails with -ENOSPC). */
    r = shmkit_block_create(&b, name[0] ? name : NULL, (size_t)size,
                            SHMKIT_RESERVE);
    if (r == 0)
        *o = (struct made){b, NULL, NULL};
    return r;
}

static int make_list(struct server *s, const struct shmkit__mgr_msg *m,
                     char *name, struct made *o)
{
    shmkit_item *items = NULL;
    shmkit_list *l;
    size_t n;
    int r;

    r = shmkit__mgr_decode_list_create(m, name, &items, &n);
    if (r < 0)
        return r;
    if (s->owned.count >= MAX_OWNED)
        r = -ENOSPC;
    if (r == 0)
        r = shmkit_list_create(&l, name[0] ? name : NULL, items, n, 0);
    free(items);
    if (r == 0)
        *o = (struct made){shmkit_list_block(l), l, NULL};
    return r;
}

static int make_queue(struct server *s, const struct shmkit__mgr_msg *m,
                      char *name, struct made *o)
{
    uint64_t capacity, max_messages;
    shmkit_queue *q;
    int r;

    r = shmkit__mgr_decode_queue_create(m, &capacity, &max_messages, name);
    if (r < 0)
        return r;
    if (s->owned.count >= MAX_OWNED)
        return -ENOSPC;
    if (capacity > SIZE_MAX || max_messages > SIZE_MAX)
        return -EINVAL;
    /* Untracked: the manager's journal is its lifetime. Reserved and
     * prefaulted by shmkit_queue_create itself. */
    r = shmkit_queue_create(&q, name[0] ? name : NULL, (size_t)capacity,
                            (size_t)max_messages, 0);
    if (r == 0)
        *o = (struct made){shmkit_queue_block(q), NULL, q};
    return r;
}

/* CREATE, CREATE_LIST, CREATE_QUEUE: makes the object with its name
 * journaled before it appears, owns it, and leaves its name in `name`. */
static int do_create(struct server *s, const struct shmkit__mgr_msg *m,
                     char *name)
{
    struct made o = {NULL, NULL, NULL};
    int r;

    intent_begin(s);
    r = m->type == SHMKIT__MGR_CREATE_LIST    ? make_list(s, m, name, &o)
        : m->type == SHMKIT__MGR_CREATE_QUEUE ? make_queue(s, m, name, &o)
                                              : make_block(s, m, name, &o);
    intent_end();
    if (r < 0)
        return r;
    strcpy(name, shmkit_block_name(o.b));
    r = own(s, name);
    if (o.l)
        shmkit_list_close(o.l);
    else if (o.q)
        shmkit_queue_close(o.q);
    else
        shmkit_block_close(o.b);
    return r;
}

static int do_release(struct server *s, const struct shmkit__mgr_msg *m)
{
    char name[SHMKIT_NAME_MAX + 1];
    size_t off = 0;
    uint64_t ino;
    int r;

    r = shmkit__mgr_get_name(m, &off, name, false);
    if (r < 0)
        return r;
    if (off != m->len)
        return SHMKIT_EPROTO;
    if (!shmkit__nset_del(&s->owned, name, &ino))
        return -ENOENT;
    shmkit__shm_unlink_if(name, ino, false);
    shmkit__journal_del(&s->j, name);
    shmkit__journal_compact(&s->j, &s->owned);
    return 0;
}

struct list_ctx {
    const char **v;
    size_t n;
};

static void list_collect(const char *name, uint64_t ino, void *arg)
{
    struct list_ctx *l = arg;

    (void)ino;
    l->v[l->n++] = name;
}

/* Fills a LIST reply with names from `offset` on, as many as fit. */
static int do_list(struct server *s, const struct shmkit__mgr_msg *m,
                   uint8_t *p, uint32_t *plen)
{
    struct list_ctx l = {NULL, 0};
    size_t off = 8, i;
    uint32_t from, n = 0;
    int r;

    r = shmkit__mgr_decode_u32(m, &from);
    if (r < 0)
        return r;
    l.v = malloc((s->owned.count + 1) * sizeof *l.v);
    if (!l.v)
        return -ENOMEM;
    shmkit__nset_each(&s->owned, list_collect, &l);
    for (i = from; i < l.n; i++, n++)
        if (shmkit__mgr_put_name(p, SHMKIT__MGR_MAX_PAYLOAD, &off, l.v[i]) < 0)
            break;
    shmkit__put32(p, (uint32_t)l.n);
    shmkit__put32(p + 4, n);
    *plen = (uint32_t)off;
    free(l.v);
    return 0;
}

static void unlink_owned(const char *name, uint64_t ino, void *arg)
{
    (void)arg;
    shmkit__shm_unlink_if(name, ino, false);
}

/* Unlinks everything owned and forgets it; the journal goes last so a
 * crash half way still leaves a record of the rest. */
static void release_all(struct server *s)
{
    shmkit__nset_each(&s->owned, unlink_owned, NULL);
    shmkit__nset_clear(&s->owned);
    shmkit__journal_close(&s->j);
    unlink(s->j.path);
}

/* Handles one complete frame; false means drop the client. */
static bool handle(struct server *s, struct client *c,
                   const struct shmkit__mgr_msg *m)
{
    static uint8_t payload[SHMKIT__MGR_MAX_PAYLOAD];
    char name[SHMKIT_NAME_MAX + 1];
    uint32_t plen = 0;
    int r;

    if (!c->authed) {
        r = auth_check(s, c, m);
        c->authed = r == 0;
        return reply(s, c, SHMKIT__MGR_AUTH, r, NULL, 0) && r == 0;
    }
    switch (m->type) {
    case SHMKIT__MGR_CREATE:
    case SHMKIT__MGR_CREATE_LIST:
    case SHMKIT__MGR_CREATE_QUEUE:
        r = do_create(s, m, name);
        if (r == 0)
            return reply(s, c, m->type, 0, name, (uint32_t)strlen(name));
        break;
    case SHMKIT__MGR_RELEASE:
        r = do_release(s, m);
        break;
    case SHMKIT__MGR_LIST:
        r = do_list(s, m, payload, &plen);
        if (r == 0)
            return reply(s, c, m->type, 0, payload, plen);
        break;
    case SHMKIT__MGR_SHUTDOWN:
        release_all(s);
        s->stop = true;
        r = 0;
        break;
    default:
        reply(s, c, m->type, SHMKIT_EPROTO, NULL, 0);
        return false;
    }
    return reply(s, c, m->type, r, NULL, 0) && r != SHMKIT_EPROTO;
}

/* Reads what the client sent and handles every complete frame; false
 * means drop it. */
static bool client_read(struct server *s, struct client *c)
{
    struct shmkit__mgr_msg m;
    ssize_t n, k;

    n = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return false;
    if (n < 0)
        return true;
    c->used += (size_t)n;
    while (c->used > 0 && !s->stop) {
        k = shmkit__mgr_parse(c->buf, c->used, &m);
        if (k < 0) {
            reply(s, c, 0, (int32_t)k, NULL, 0);
            return false;
        }
        if (k == 0)
            break;
        if (!handle(s, c, &m))
            return false;
        memmove(c->buf, c->buf + k, c->used - (size_t)k);
        c->used -= (size_t)k;
    }
    /* A partial frame, or a missing handshake, must finish in time. */
    if (c->used == 0 && c->authed)
        c->deadline = 0;
    else if (c->deadline == 0)
        c->deadline = now_ms() + CLIENT_STALL_MS;
    return true;
}

/* ---- the loop -------------------------------------------------------------- */

static int poll_timeout(const struct server *s)
{
    int64_t first = s->accept_pause, now = now_ms();
    size_t i;

    for (i = 0; i < s->nc; i++)
        if (s->c[i]->deadline && (!first || s->c[i]->deadline < first))
            first = s->c[i]->deadline;
    if (!first)
        return -1;
    return first <= now ? 0 : (int)(first - now);
}

static void expire(struct server *s)
{
    int64_t now = now_ms();
    size_t i = 0;

    while (i < s->nc) {
        if (s->c[i]->deadline && s->c[i]->deadline <= now)
            client_drop(s, i);
        else
            i++;
    }
}

/* True if a stop was asked for by a signal or by the lifeline's end. */
static bool control_ready(struct server *s, const struct pollfd *p)
{
    struct signalfd_siginfo si;
    char ch;

    if (p[1].revents && read(s->sigfd, &si, sizeof si) == sizeof si)
        return true;
    if (s->lifeline >= 0 && p[2].revents) {
        ssize_t n = read(s->lifeline, &ch, 1);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}

static void serve_loop(struct server *s)
{
    struct pollfd p[3 + MAX_CLIENTS];
    size_t i, n;

    while (!s->stop) {
        p[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        if (s->accept_pause > now_ms())
            p[0].fd = -1;
        else
            s->accept_pause = 0;
        p[1] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
        p[2] = (struct pollfd){.fd = s->lifeline, .events = POLLIN};
        n = s->nc;
        for (i = 0; i < n; i++)
            p[3 + i] = (struct pollfd){.fd = s->c[i]->fd, .events = POLLIN};
        if (poll(p, 3 + n, poll_timeout(s)) < 0 && errno != EINTR)
            break;
        if (control_ready(s, p)) {
            release_all(s);
            break;
        }
        /* Walk backwards: dropping client i moves the last one into i. */
        for (i = n; i-- > 0;)
            if (p[3 + i].revents && !client_read(s, s->c[i]))
                client_drop(s, i);
        if (p[0].revents)
            accept_all(s);
        expire(s);
    }
}

/* ---- start and stop --------------------------------------------------------- */

static int server_open(struct server *s, const char *sock, const char *rundir)
{
    char leaf[32];
    int r;

    /* The state key must not depend on the working directory. */
    r = shmkit__path_abs(sock, s->sock, sizeof s->sock);
    if (r == 0)
        r = sock_dir_check(s->sock);
    if (r < 0)
        return r;
    snprintf(leaf, sizeof leaf, "mgr-%016" PRIx64, shmkit__hash64(s->sock));
    if (!shmkit__path_join(s->dir, rundir, leaf))
        return -ENAMETOOLONG;
    s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    r = state_open(s, rundir);
    if (r == 0)
        r = sock_listen(s);
    if (r == 0)
        r = signals_setup(s);
    return r;
}

/* Clients are dropped last: a client that sees the connection end (as
 * shmkit_manager_shutdown waits to) may rely on everything being gone. */
static void server_close(struct server *s)
{
    if (s->lfd >= 0) {
        close(s->lfd);
        unlink(s->sock);
    }
    if (s->sigfd >= 0)
        close(s->sigfd);
    if (s->spare >= 0)
        close(s->spare);
    shmkit__journal_close(&s->j);
    shmkit__nset_clear(&s->owned);
    if (s->lockfd >= 0) {
        /* Remove the state before letting go of its lock. */
        shmkit__rmtree1(s->dir);
        close(s->lockfd);
    }
    while (s->nc)
        client_drop(s, s->nc - 1);
    OPENSSL_cleanse(s->key, sizeof s->key);
}

static void ready_report(int fd, int status)
{
    if (fd < 0)
        return;
    if (write(fd, &status, sizeof status) != sizeof status)
        status = -EIO;
    close(fd);
}

int shmkit_manager_serve(const char *socket_path, const void *authkey,
                         size_t authkey_len, int ready_fd, int lifeline_fd)
{
    char rundir[SHMKIT__DIR_MAX], defsock[SHMKIT__DIR_MAX];
    struct server *s;
    int r;

    if (authkey_len > SHMKIT_MANAGER_KEY_MAX || (authkey_len && !authkey)) {
        ready_report(ready_fd, -EINVAL);
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_serve: key");
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        ready_report(ready_fd, -ENOMEM);
        return -ENOMEM;
    }
    *s = (struct server){.lfd = -1, .sigfd = -1, .lockfd = -1, .spare = -1,
                         .lifeline = lifeline_fd, .j = {.fd = -1}};
    if (authkey_len)
        memcpy(s->key, authkey, authkey_len);
    s->keylen = authkey_len;
    r = shmkit_runtime_dir(rundir, sizeof rundir);
    if (r == 0 && !socket_path) {
        shmkit__path_join(defsock, rundir, "manager.sock");
        socket_path = defsock;
    }
    if (r == 0)
        r = server_open(s, socket_path, rundir);
    /* A failed start cleans up before it answers: the starter, told, may
     * rely on no state, socket or journal being left. */
    if (r < 0)
        server_close(s);
    ready_report(ready_fd, r);
    if (r == 0) {
        serve_loop(s);
        server_close(s);
    }
    free(s);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_serve(\"%s\")",
                            socket_path ? socket_path : "(default)");
    return 0;
}
