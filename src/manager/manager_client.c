/*
 * manager_client.c - the manager's client side: start a daemon, connect,
 * and the requests. Every wait is bounded (TIMEOUT_MS), so a wedged or
 * hostile server gives -ETIMEDOUT, never a hang; every reply is parsed
 * with the same checks the server applies to requests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "manager.h"
#include "core/os.h"

#define TIMEOUT_MS 30000

struct shmkit_manager {
    int fd;               /* connection; -1 once closed */
    pid_t pid;            /* the daemon's, from HELLO */
    unsigned revision;    /* what it serves, from HELLO (manager.h) */
    int lifeline;         /* write end held for a daemon we started, or -1 */
    bool started;
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint8_t buf[SHMKIT__MGR_FRAME_MAX];  /* last frame received */
    uint8_t obuf[SHMKIT__MGR_FRAME_MAX]; /* frame being sent */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to become ready for `events` before the deadline. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int64_t left;
    int r;

    for (;;) {
        left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int send_all(shmkit_manager *m, const uint8_t *p, size_t len)
{
    int64_t deadline = now_ms() + TIMEOUT_MS;
    int r;

    while (len > 0) {
        ssize_t n = send(m->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return errno == EPIPE || errno == ECONNRESET ? SHMKIT_ECLOSED
                                                         : -errno;
        r = wait_fd(m->fd, POLLOUT, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Reads exactly len bytes into p. */
static int recv_all(shmkit_manager *m, uint8_t *p, size_t len,
                    int64_t deadline)
{
    int r;

    while (len > 0) {
        ssize_t n = recv(m->fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return SHMKIT_ECLOSED;
        if (errno != EAGAIN && errno != EINTR)
            return errno == ECONNRESET ? SHMKIT_ECLOSED : -errno;
        r = wait_fd(m->fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Receives one frame into m->buf. */
static int recv_frame(shmkit_manager *m, struct shmkit__mgr_msg *msg)
{
    int64_t deadline = now_ms() + TIMEOUT_MS;
    ssize_t k;
    int r;

    r = recv_all(m, m->buf, SHMKIT__MGR_HDR, deadline);
    if (r < 0)
        return r;
    k = shmkit__mgr_parse(m->buf, SHMKIT__MGR_HDR, msg);
    if (k < 0)
        return (int)k;
    if (k == 0) {
        r = recv_all(m, m->buf + SHMKIT__MGR_HDR, shmkit__le32(m->buf + 8),
                     deadline);
        if (r < 0)
            return r;
        k = shmkit__mgr_parse(m->buf, SHMKIT__MGR_HDR + shmkit__le32(m->buf + 8),
                              msg);
    }
    return k > 0 ? 0 : SHMKIT_EPROTO;
}

static bool valid_status(int32_t s)
{
    return s == 0 || (s < 0 && s >= -4095) ||
           (s < SHMKIT_EBASE && s >= SHMKIT_ELAST);
}

/* Sends a request and receives its reply; returns the reply's status. */
static int request(shmkit_manager *m, uint16_t type, const void *payload,
                   uint32_t len, struct shmkit__mgr_msg *rep)
{
    size_t n;
    int r;

    if (m->fd < 0)
        return SHMKIT_ECLOSED;
    /* payload may already sit in place (obuf + header): put moves it. */
    n = shmkit__mgr_put(m->obuf, type, 0, payload, len);
    r = send_all(m, m->obuf, n);
    if (r == 0)
        r = recv_frame(m, rep);
    if (r < 0)
        return r;
    if (rep->type != (SHMKIT__MGR_REPLY | type))
        return rep->status < 0 ? rep->status : SHMKIT_EPROTO;
    /* Only codes we know may come back: a hostile server cannot make us
     * report a success or a garbage value. */
    if (!valid_status(rep->status))
        return SHMKIT_EPROTO;
    return rep->status;
}

/* ---- connecting ---------------------------------------------------------- */

/* The server must be our own user (or root): a socket planted by someone
 * else at the path would otherwise be handed our key's MAC and requests. */
static bool peer_trusted(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return false;
    return cr.uid == geteuid() || cr.uid == 0;
}

static int sock_connect(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    if (!peer_trusted(fd)) {
        close(fd);
        return SHMKIT_EAUTH;
    }
    *out = fd;
    return 0;
}

/* Answers the server's challenge. */
static int handshake(shmkit_manager *m, const void *key, size_t keylen)
{
    struct shmkit__mgr_msg msg;
    uint8_t mac[SHMKIT__MGR_MAC];
    uint32_t maclen = 0;
    int r;

    /* A hang-up before the greeting is no verdict on who we are (the
     * server says SHMKIT_EAUTH when it means it): SHMKIT_ECLOSED. */
    r = recv_frame(m, &msg);
    if (r < 0)
        return r;
    if (msg.type == (SHMKIT__MGR_REPLY | SHMKIT__MGR_HELLO))
        return msg.status < 0 ? msg.status : SHMKIT_EPROTO;
    if (msg.type != SHMKIT__MGR_HELLO || msg.len != SHMKIT__MGR_HELLO_LEN)
        return SHMKIT_EPROTO;
    m->pid = (pid_t)shmkit__le32(msg.payload);
    m->revision = msg.payload[5];
    if (msg.payload[4]) {
        if (keylen == 0)
            return SHMKIT_EAUTH;
        r = shmkit__mgr_mac(key, keylen, msg.payload + 8, mac);
        if (r < 0)
            return r;
        maclen = sizeof mac;
    }
    r = request(m, SHMKIT__MGR_AUTH, mac, maclen, &msg);
    OPENSSL_cleanse(mac, sizeof mac);
    return r == SHMKIT_ECLOSED ? SHMKIT_EAUTH : r;
}

int shmkit_manager_connect(shmkit_manager **out, const char *socket_path,
                           const void *authkey, size_t authkey_len)
{
    shmkit_manager *m;
    int r;

    if (!out || !socket_path || authkey_len > SHMKIT_MANAGER_KEY_MAX ||
        (authkey_len && !authkey))
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_connect");
    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return shmkit__fail(NULL, -ENOMEM, "shmkit_manager_connect");
    m->fd = m->lifeline = -1;
    snprintf(m->sock, sizeof m->sock, "%s", socket_path);
    r = sock_connect(socket_path, &m->fd);
    if (r == 0)
        r = handshake(m, authkey, authkey_len);
    if (r < 0) {
        /* The version the peer's frame carried (bytes 4-5 of what came). */
        unsigned peer = (unsigned)(m->buf[4] | m->buf[5] << 8);

        if (m->fd >= 0)
            close(m->fd);
        free(m);
        if (r == SHMKIT_EVERSION)
            return shmkit__fail(NULL, r, "shmkit_manager_connect(\"%s\"): "
                                "the manager speaks protocol version %u, this "
                                "client %u: run the same shmkit on both sides",
                                socket_path, peer, SHMKIT__MGR_VERSION);
        if (r == -EMFILE || r == -ENFILE || r == -EUSERS)
            return shmkit__fail(NULL, r, "shmkit_manager_connect(\"%s\"): "
                                "the manager is busy (%s); try again later",
                                socket_path, r == -EUSERS
                                                 ? "every client slot is taken"
                                                 : "out of descriptors");
        return shmkit__fail(NULL, r, "shmkit_manager_connect(\"%s\")",
                            socket_path);
    }
    *out = m;
    return 0;
}

/* ---- starting a daemon ---------------------------------------------------- */

/* A fresh socket path in the runtime directory. */
static int default_socket(char *buf, size_t len)
{
    char rundir[SHMKIT__DIR_MAX];
    uint32_t rnd;
    int r;

    r = shmkit_runtime_dir(rundir, sizeof rundir);
    if (r == 0)
        r = shmkit__os.random(&rnd, sizeof rnd);
    if (r < 0)
        return r;
    if (snprintf(buf, len, "%s/m-%ld-%08x.sock", rundir, (long)getpid(), rnd) >=
        (int)len)
        return -ENAMETOOLONG;
    return 0;
}

/* The daemon: serves until told to stop, or until the starter's lifeline
 * ends. Never returns. */
static void daemon_main(const char *sock, const void *key, size_t keylen,
                        int ready, int life)
{
    int keep[2] = {ready, life};

    shmkit__daemon_detach(keep, 2);
    _exit(shmkit_manager_serve(sock, key, keylen, keep[0], keep[1]) < 0);
}

/* Forks the daemon and waits for its verdict on start-up. */
static int daemon_start(const char *sock, const void *key, size_t keylen,
                        int *lifeline)
{
    int ready[2], life[2], status = 0, r;
    ssize_t n;

    if (pipe2(ready, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(life, O_CLOEXEC) < 0) {
        r = -errno;
        goto out_ready;
    }
    r = shmkit__daemon_fork();
    if (r == 0)
        daemon_main(sock, key, keylen, ready[1], life[0]);
    close(ready[1]);
    close(life[0]);
    ready[1] = -1;
    if (r >= 0) {
        do
            n = read(ready[0], &status, sizeof status);
        while (n < 0 && errno == EINTR);
        r = n == sizeof status ? status : -ECHILD;
    }
    if (r < 0)
        close(life[1]);
    else
        *lifeline = life[1];
out_ready:
    close(ready[0]);
    if (ready[1] >= 0)
        close(ready[1]);
    return r;
}

int shmkit_manager_start(shmkit_manager **out, const char *socket_path,
                         const void *authkey, size_t authkey_len)
{
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int life = -1, r;

    if (!out || authkey_len > SHMKIT_MANAGER_KEY_MAX ||
        (authkey_len && !authkey))
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_start");
    *out = NULL;
    /* Absolute before the fork: the daemon works from "/". */
    if (socket_path)
        r = shmkit__path_abs(socket_path, sock, sizeof sock);
    else
        r = default_socket(sock, sizeof sock);
    if (r == 0)
        r = daemon_start(sock, authkey, authkey_len, &life);
    if (r == 0)
        r = shmkit_manager_connect(out, sock, authkey, authkey_len);
    if (r < 0) {
        /* The daemon sees its lifeline end and shuts down. */
        if (life >= 0)
            close(life);
        return shmkit__fail(NULL, r, "shmkit_manager_start(\"%s\")", sock);
    }
    (*out)->started = true;
    (*out)->lifeline = life;
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

const char *shmkit_manager_socket(const shmkit_manager *m)
{
    return m->sock;
}

pid_t shmkit_manager_pid(const shmkit_manager *m)
{
    return m->pid;
}

/* Reads a reply carrying a block name into name_out. */
static int reply_name(const struct shmkit__mgr_msg *rep, char *name_out)
{
    if (rep->len == 0 || rep->len > SHMKIT_NAME_MAX)
        return SHMKIT_EPROTO;
    memcpy(name_out, rep->payload, rep->len);
    name_out[rep->len] = 0;
    return shmkit_name_check(name_out) < 0 ? SHMKIT_EPROTO : 0;
}

/* Checks the arguments every create request has: -EINVAL without a
 * handle or an output, the name's problem if it is given and bad. */
static int create_args(const shmkit_manager *m, const char *name,
                       const char *name_out, const char *what)
{
    int r;

    if (!m || !name_out)
        return shmkit__fail(NULL, -EINVAL, "%s", what);
    if (name && (r = shmkit_name_check(name)) < 0)
        return shmkit__fail(NULL, r, "%s(\"%s\")", what, name);
    return 0;
}

/* A name as a request carries it: without its leading '/'; "" asks the
 * manager to generate one. */
static const char *wire_name(const char *name)
{
    return !name ? "" : name[0] == '/' ? name + 1 : name;
}

/* Sends a create request (payload p, len bytes) and reads the name of
 * what was made into name_out. */
static int create_request(shmkit_manager *m, uint16_t type, const void *p,
                          size_t len, char *name_out)
{
    struct shmkit__mgr_msg rep;
    int r = request(m, type, p, (uint32_t)len, &rep);

    return r < 0 ? r : reply_name(&rep, name_out);
}

int shmkit_manager_create_block(shmkit_manager *m, const char *name,
                                size_t size, char *name_out)
{
    uint8_t p[8 + 2 + SHMKIT_NAME_MAX];
    size_t off = 8;
    int r = create_args(m, name, name_out, "shmkit_manager_create_block");

    if (r < 0)
        return r;
    shmkit__put64(p, size);
    shmkit__mgr_put_name(p, sizeof p, &off, wire_name(name));
    r = create_request(m, SHMKIT__MGR_CREATE, p, off, name_out);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_create_block(%zu)", size);
    return 0;
}

int shmkit_manager_create_list(shmkit_manager *m, const char *name,
                               const shmkit_item *items, size_t n,
                               char *name_out)
{
    uint8_t *p = m ? m->obuf + SHMKIT__MGR_HDR : NULL;
    size_t off = 0;
    int r;

    if (n && !items)
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_create_list");
    r = create_args(m, name, name_out, "shmkit_manager_create_list");
    if (r < 0)
        return r;
    r = shmkit__mgr_put_name(p, SHMKIT__MGR_MAX_PAYLOAD, &off, wire_name(name));
    if (r == 0)
        r = shmkit__mgr_put_items(p, SHMKIT__MGR_MAX_PAYLOAD, &off, items, n);
    if (r == -ENOSPC)
        r = -EMSGSIZE;
    if (r == 0)
        r = create_request(m, SHMKIT__MGR_CREATE_LIST, p, off, name_out);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_create_list(%zu items)",
                            n);
    return 0;
}

/* Fails, before asking, a request that the server's revision lacks: an
 * older server would only answer SHMKIT_EPROTO and hang up. */
static int need_revision(shmkit_manager *m, unsigned rev, const char *what)
{
    if (m->revision >= rev)
        return 0;
    return shmkit__fail(NULL, -EOPNOTSUPP,
                        "%s: the manager at %s (pid %ld) is older than this "
                        "client: it speaks protocol revision %u, %s needs "
                        "revision %u; restart it with this shmkit",
                        what, m->sock, (long)m->pid, m->revision, what, rev);
}

int shmkit_manager_create_queue(shmkit_manager *m, const char *name,
                                size_t capacity, size_t max_messages,
                                char *name_out)
{
    uint8_t p[16 + 2 + SHMKIT_NAME_MAX];
    size_t off = 0;
    int r = create_args(m, name, name_out, "shmkit_manager_create_queue");

    if (r < 0)
        return r;
    if (m->fd >= 0 && (r = need_revision(m, 1, "shmkit_manager_create_queue")) < 0)
        return r;
    shmkit__mgr_put_queue_create(p, sizeof p, &off, capacity, max_messages,
                                 wire_name(name));
    r = create_request(m, SHMKIT__MGR_CREATE_QUEUE, p, off, name_out);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_create_queue(%zu, %zu)",
                            capacity, max_messages);
    return 0;
}

int shmkit_manager_release(shmkit_manager *m, const char *name)
{
    uint8_t p[2 + SHMKIT_NAME_MAX];
    struct shmkit__mgr_msg rep;
    size_t off = 0;
    int r;

    if (!m || (r = shmkit_name_check(name)) < 0)
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_release");
    shmkit__mgr_put_name(p, sizeof p, &off, wire_name(name));
    r = request(m, SHMKIT__MGR_RELEASE, p, (uint32_t)off, &rep);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_release(\"%s\")", name);
    return 0;
}

struct list_acc {
    char **v;
    size_t n, cap;
};

static int list_add(const char *name, void *arg)
{
    struct list_acc *a = arg;

    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(name)))
        return -ENOMEM;
    a->n++;
    return 0;
}

void shmkit_manager_list_free(char **names, size_t count)
{
    size_t i;

    for (i = 0; names && i < count; i++)
        free(names[i]);
    free(names);
}

/* Fetches names page by page; a page that adds nothing ends the walk
 * (the set may shrink meanwhile), so a lying server cannot loop us. */
int shmkit_manager_list(shmkit_manager *m, char ***names, size_t *count)
{
    struct list_acc a = {NULL, 0, 0};
    struct shmkit__mgr_msg rep;
    uint32_t total = 0;
    uint8_t p[4];
    int r;

    if (!m || !names || !count)
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_list");
    do {
        shmkit__put32(p, (uint32_t)a.n);
        r = request(m, SHMKIT__MGR_LIST, p, sizeof p, &rep);
        if (r == 0)
            r = shmkit__mgr_decode_list(&rep, &total, list_add, &a);
    } while (r > 0 && a.n < total);
    if (r < 0) {
        shmkit_manager_list_free(a.v, a.n);
        return shmkit__fail(NULL, r, "shmkit_manager_list");
    }
    *names = a.v;
    *count = a.n;
    return 0;
}

/* Waits until the server closes the connection (it has exited). */
static void wait_eof(shmkit_manager *m)
{
    int64_t deadline = now_ms() + TIMEOUT_MS;
    uint8_t b[64];

    while (wait_fd(m->fd, POLLIN, deadline) == 0) {
        ssize_t n = recv(m->fd, b, sizeof b, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            break;
    }
}

int shmkit_manager_shutdown(shmkit_manager *m)
{
    struct shmkit__mgr_msg rep;
    int r;

    if (!m)
        return shmkit__fail(NULL, -EINVAL, "shmkit_manager_shutdown");
    r = request(m, SHMKIT__MGR_SHUTDOWN, NULL, 0, &rep);
    if (r == 0)
        wait_eof(m);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_manager_shutdown");
    return 0;
}

int shmkit_manager_close(shmkit_manager *m)
{
    int r = 0;

    if (!m)
        return 0;
    if (m->started && m->fd >= 0)
        r = shmkit_manager_shutdown(m);
    if (m->fd >= 0)
        close(m->fd);
    if (m->lifeline >= 0)
        close(m->lifeline);
    free(m);
    return r;
}
