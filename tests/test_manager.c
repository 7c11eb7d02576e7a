/*
 * test_manager.c - the manager daemon: it owns blocks for its clients,
 * keeps them through client crashes, removes them all at shutdown (also
 * after its own SIGKILL, at the next start), and refuses strangers and
 * hostile bytes without crashing or hanging.
 */
#include "lifeutil.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "manager/manager.h"

TestSuite(manager, .init = lu_setup, .fini = lu_cleanup, .timeout = 60);

static const char *sock_path(void)
{
    static char p[300];

    snprintf(p, sizeof p, "%s/s/m.sock", lu_rundir);
    return p;
}

static int count_alive(char names[][SHMKIT_NAME_MAX + 1], int n)
{
    int i, k = 0;

    for (i = 0; i < n; i++)
        k += lu_exists(names[i]);
    return k;
}

Test(manager, create_attach_list_release_shutdown)
{
    tu_require_private_shm();
    char names[3][SHMKIT_NAME_MAX + 1], **list;
    shmkit_manager *m;
    shmkit_block *b;
    size_t n;
    pid_t pid;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0, "%s",
                 shmkit_last_error());
    pid = shmkit_manager_pid(m);
    cr_assert_gt(pid, 0);
    cr_assert_eq(shmkit_manager_create_block(m, tu_name("named"), 100, names[0]), 0);
    cr_assert_str_eq(names[0], tu_name("named"));
    for (i = 1; i < 3; i++)
        cr_assert_eq(shmkit_manager_create_block(m, NULL, 4096, names[i]), 0);
    cr_assert_eq(shmkit_block_attach(&b, names[1], 0), 0);
    cr_assert_eq(shmkit_block_size(b), 4096);
    shmkit_block_close(b);
    cr_assert_eq(shmkit_manager_create_block(m, tu_name("named"), 10, names[2]),
                 -EEXIST);
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 0, names[2]), -EINVAL);
    cr_assert_eq(shmkit_manager_list(m, &list, &n), 0);
    cr_assert_eq(n, 3);
    shmkit_manager_list_free(list, n);
    cr_assert_eq(shmkit_manager_release(m, names[0]), 0);
    cr_assert_not(lu_exists(names[0]));
    cr_assert_eq(shmkit_manager_release(m, names[0]), -ENOENT);
    cr_assert_eq(shmkit_manager_shutdown(m), 0);
    cr_assert_eq(count_alive(names, 3), 0, "shutdown left blocks");
    cr_assert(lu_wait_pid_gone(pid));
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 1, names[0]), SHMKIT_ECLOSED);
    shmkit_manager_close(m);
    cr_assert_eq(tu_gc(0), 0);
}

Test(manager, client_crash_keeps_blocks_until_shutdown)
{
    tu_require_private_shm();
    char names[2][SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    int p[2], i;
    pid_t c;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    cr_assert_eq(pipe(p), 0);
    c = fork();
    if (c == 0) {
        shmkit_manager *cm;
        char nm[SHMKIT_NAME_MAX + 1];
        if (shmkit_manager_connect(&cm, sock_path(), NULL, 0) < 0)
            _exit(10);
        for (i = 0; i < 2; i++) {
            if (shmkit_manager_create_block(cm, NULL, 64, nm) < 0)
                _exit(11);
            lu_send(p[1], nm);
        }
        raise(SIGKILL);
    }
    close(p[1]);
    for (i = 0; i < 2; i++)
        cr_assert(lu_recv(p[0], names[i], sizeof names[i]));
    cr_assert(WIFSIGNALED(tu_wait_status(c)));
    cr_assert_eq(count_alive(names, 2), 2, "client crash lost blocks");
    cr_assert_eq(tu_gc(0), 0, "gc touched a live manager's blocks");
    cr_assert_eq(count_alive(names, 2), 2);
    cr_assert_eq(shmkit_manager_close(m), 0); /* the starter's close shuts down */
    cr_assert_eq(count_alive(names, 2), 0);
    close(p[0]);
}

Test(manager, sigkilled_manager_restarted_leaves_nothing)
{
    char names[3][SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    pid_t pid;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    for (i = 0; i < 3; i++)
        cr_assert_eq(shmkit_manager_create_block(m, NULL, 64, names[i]), 0);
    pid = shmkit_manager_pid(m);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(lu_wait_pid_gone(pid));
    cr_assert_eq(count_alive(names, 3), 3);
    shmkit_manager_close(m);
    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(count_alive(names, 3), 0, "restart left the dead one's blocks");
    shmkit_manager_close(m);
}

Test(manager, sigkilled_manager_leftovers_removed_by_gc)
{
    tu_require_private_shm();
    char names[2][SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    pid_t pid;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, NULL, NULL, 0), 0);
    for (i = 0; i < 2; i++)
        cr_assert_eq(shmkit_manager_create_block(m, NULL, 64, names[i]), 0);
    pid = shmkit_manager_pid(m);
    kill(pid, SIGKILL);
    cr_assert(lu_wait_pid_gone(pid));
    shmkit_manager_close(m);
    cr_assert_eq(tu_gc(0), 2);
    cr_assert_eq(count_alive(names, 2), 0);
}

Test(manager, sigterm_shuts_down_sigint_ignored)
{
    char name[SHMKIT_NAME_MAX + 1], other[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    pid_t pid;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    pid = shmkit_manager_pid(m);
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 64, name), 0);
    cr_assert_eq(kill(pid, SIGINT), 0);
    /* Still serving after SIGINT: a request round trip proves it. */
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 64, other), 0);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert(lu_wait_pid_gone(pid));
    cr_assert_not(lu_exists(name));
    cr_assert_not(lu_exists(other));
    shmkit_manager_close(m);
}

Test(manager, starter_death_shuts_daemon_down)
{
    char name[SHMKIT_NAME_MAX + 1];
    int p[2];
    pid_t c, pid;

    cr_assert_eq(pipe(p), 0);
    c = fork();
    if (c == 0) {
        shmkit_manager *m;
        if (shmkit_manager_start(&m, NULL, NULL, 0) < 0 ||
            shmkit_manager_create_block(m, NULL, 64, name) < 0)
            _exit(10);
        lu_send(p[1], name);
        lu_send_int(p[1], shmkit_manager_pid(m));
        raise(SIGKILL);
    }
    close(p[1]);
    cr_assert(lu_recv(p[0], name, sizeof name));
    pid = (pid_t)lu_recv_int(p[0]);
    tu_wait_signaled(c, SIGKILL);
    cr_expect(lu_wait_pid_gone(pid), "daemon outlived its starter");
    cr_expect(lu_wait_gone(name));
    close(p[0]);
}

Test(manager, wrong_or_missing_key_refused)
{
    static const char key[] = "correct horse";
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m, *c;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), key, sizeof key), 0);
    cr_assert_eq(shmkit_manager_connect(&c, sock_path(), "wrong", 5), SHMKIT_EAUTH);
    cr_assert_null(c);
    cr_assert_eq(shmkit_manager_connect(&c, sock_path(), NULL, 0), SHMKIT_EAUTH);
    cr_assert_eq(shmkit_manager_connect(&c, sock_path(), key, sizeof key), 0);
    cr_assert_eq(shmkit_manager_create_block(c, NULL, 8, name), 0);
    shmkit_manager_close(c);
    shmkit_manager_close(m);
    cr_assert_not(lu_exists(name));
}

/* Another user is refused by the kernel's word on the peer (SO_PEERCRED)
 * even when the file modes would let it in. */
Test(manager, another_user_refused)
{
    char dir[300];
    shmkit_manager *m;
    pid_t c;

    if (geteuid() != 0)
        cr_skip_test("needs root to act as another user");
    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    snprintf(dir, sizeof dir, "%s/s", lu_rundir);
    /* Open the way on purpose: only the credential check stands. */
    chmod(lu_rundir, 0755);
    chmod(dir, 0755);
    chmod(sock_path(), 0777);
    c = fork();
    if (c == 0) {
        shmkit_manager *x;
        int r;
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(10);
        r = shmkit_manager_connect(&x, sock_path(), NULL, 0);
        _exit(r == SHMKIT_EAUTH ? 0 : 20);
    }
    tu_wait_ok(c);
    chmod(lu_rundir, 0700);
    shmkit_manager_close(m);
}

/* ---- hostile bytes ---------------------------------------------------------- */

static int raw_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t hello[SHMKIT__MGR_FRAME_MAX];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    strcpy(sa.sun_path, sock_path());
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(recv(fd, hello, SHMKIT__MGR_HDR + SHMKIT__MGR_HELLO_LEN,
                      MSG_WAITALL),
                 SHMKIT__MGR_HDR + SHMKIT__MGR_HELLO_LEN);
    return fd;
}

/* True if the server hangs up on fd within ms (after any error reply). */
static bool hung_up(int fd, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    uint8_t b[SHMKIT__MGR_FRAME_MAX];
    ssize_t n;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    do
        n = recv(fd, b, sizeof b, 0);
    while (n > 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void send_bytes(int fd, const void *p, size_t n)
{
    cr_assert_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

Test(manager, hostile_frames_disconnect_without_harm)
{
    uint8_t f[SHMKIT__MGR_FRAME_MAX];
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    size_t n;
    int fd;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    /* Bad magic. */
    fd = raw_connect();
    send_bytes(fd, "GET / HTTP/1.0\r\n\r\n", 18);
    cr_assert(hung_up(fd, LU_BOUND_MS));
    close(fd);
    /* A length beyond the maximum: refused from the header alone. */
    fd = raw_connect();
    n = shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
    shmkit__put32(f + 8, 0xffffffffu);
    send_bytes(fd, f, n);
    cr_assert(hung_up(fd, LU_BOUND_MS));
    close(fd);
    /* A request before authenticating. */
    fd = raw_connect();
    n = shmkit__mgr_put(f, SHMKIT__MGR_SHUTDOWN, 0, NULL, 0);
    send_bytes(fd, f, n);
    cr_assert(hung_up(fd, LU_BOUND_MS));
    close(fd);
    /* Authenticated, then a CREATE whose name length overruns. */
    fd = raw_connect();
    n = shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
    send_bytes(fd, f, n);
    cr_assert_eq(recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL), SHMKIT__MGR_HDR);
    uint8_t bad[12] = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x00};
    n = shmkit__mgr_put(f, SHMKIT__MGR_CREATE, 0, bad, sizeof bad);
    send_bytes(fd, f, n);
    cr_assert(hung_up(fd, LU_BOUND_MS));
    close(fd);
    /* Unknown request type. */
    fd = raw_connect();
    n = shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
    send_bytes(fd, f, n);
    cr_assert_eq(recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL), SHMKIT__MGR_HDR);
    n = shmkit__mgr_put(f, 0x77, 0, NULL, 0);
    send_bytes(fd, f, n);
    cr_assert(hung_up(fd, LU_BOUND_MS));
    close(fd);
    /* The manager still serves everyone else. */
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 8, name), 0);
    shmkit_manager_close(m);
}

Test(manager, client_stalling_mid_message_is_dropped)
{
    uint8_t f[SHMKIT__MGR_FRAME_MAX];
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    int fd;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    fd = raw_connect();
    shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
    send_bytes(fd, f, 7); /* half a header, then nothing */
    /* Meanwhile others are served at once. */
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 8, name), 0);
    /* The outcome, not its latency (that is the benchmark's business). */
    cr_assert(hung_up(fd, LU_BOUND_MS), "staller never dropped");
    close(fd);
    shmkit_manager_close(m);
}

Test(manager, many_clients_at_once)
{
    enum { N = 40 };
    char names[N][SHMKIT_NAME_MAX + 1];
    shmkit_manager *m, *c[N];
    char **list;
    size_t n;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    for (i = 0; i < N; i++)
        cr_assert_eq(shmkit_manager_connect(&c[i], sock_path(), NULL, 0), 0);
    for (i = 0; i < N; i++)
        cr_assert_eq(shmkit_manager_create_block(c[N - 1 - i], NULL, 16, names[i]), 0);
    for (i = 0; i < N; i++)
        shmkit_manager_close(c[i]);
    cr_assert_eq(shmkit_manager_list(m, &list, &n), 0);
    cr_assert_eq(n, N);
    shmkit_manager_list_free(list, n);
    cr_assert_eq(count_alive(names, N), N);
    shmkit_manager_close(m);
    cr_assert_eq(count_alive(names, N), 0);
}

Test(manager, list_pages_through_many_names)
{
    enum { N = 300 };
    char name[SHMKIT_NAME_MAX + 1], **list;
    shmkit_manager *m;
    size_t n;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    for (i = 0; i < N; i++) {
        char t[32];
        snprintf(t, sizeof t, "page%03d", i);
        cr_assert_eq(shmkit_manager_create_block(m, tu_name(t), 8, name), 0);
    }
    cr_assert_eq(shmkit_manager_list(m, &list, &n), 0);
    cr_assert_eq(n, N, "list returned %zu", n);
    shmkit_manager_list_free(list, n);
    shmkit_manager_close(m);
    cr_assert_eq(tu_count_leftovers(), 0);
}

Test(manager, cli_manager_serves_and_ls_names_it)
{
    char *argv[] = {(char *)tu_cli(), "manager", "--socket",
                    (char *)sock_path(), NULL};
    char name[SHMKIT_NAME_MAX + 1], block[SHMKIT_NAME_MAX + 1], out[8192];
    char want[64];
    char *info[] = {(char *)tu_cli(), "info", name, NULL};
    shmkit_manager *c = NULL;
    long end;
    pid_t pid;
    int st;

    pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    end = lu_now_ms() + 5000;
    while (shmkit_manager_connect(&c, sock_path(), NULL, 0) < 0 &&
           lu_now_ms() < end)
        ;
    cr_assert_not_null(c, "CLI manager never answered");
    cr_assert_eq(shmkit_manager_pid(c), pid);
    cr_assert_eq(shmkit_manager_create_block(c, NULL, 64, name), 0);
    st = tu_run(info, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(want, sizeof want, "manager %d", (int)pid);
    cr_assert_not_null(strstr(out, want), "info said: %s", out);
    /* A queue it owns: info names the manager and shows the queue. */
    strcpy(block, name);
    cr_assert_eq(shmkit_manager_create_queue(c, NULL, 4096, 0, name), 0);
    st = tu_run(info, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_not_null(strstr(out, want), "info said: %s", out);
    cr_assert_not_null(strstr(out, "kind:      queue\n"), "info said: %s", out);
    cr_assert_not_null(strstr(out, "depth:     0 messages waiting"), "%s", out);
    shmkit_manager_close(c); /* not the starter: the daemon stays */
    cr_assert(lu_exists(name) && lu_exists(block));
    kill(pid, SIGINT);
    kill(pid, SIGTERM);
    st = tu_wait_status(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
    cr_assert_not(lu_exists(name));
    cr_assert_not(lu_exists(block));
}

Test(manager, create_list_readable_by_shmkit_and_cpython)
{
    shmkit_item items[] = {shmkit_item_str("howdy"), shmkit_item_bytes("HoWdY", 5),
                           shmkit_item_float(-273.154), shmkit_item_int(100),
                           shmkit_item_none(), shmkit_item_bool(true)};
    char name[SHMKIT_NAME_MAX + 1], out[512];
    shmkit_manager *m;
    shmkit_list *l;
    shmkit_item it;
    int st;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    cr_assert_eq(shmkit_manager_create_list(m, NULL, items, 6, name), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_list_attach(&l, name, 0), 0);
    cr_assert_eq(shmkit_list_len(l), 6);
    cr_assert_eq(shmkit_list_get(l, 3, &it), 0);
    cr_assert_eq(it.v.i, 100);
    shmkit_list_close(l);
    st = tu_python("import sys\n"
                   "from multiprocessing import shared_memory as s\n"
                   "from multiprocessing import resource_tracker as rt\n"
                   "l = s.ShareableList(name=sys.argv[1])\n"
                   "rt.unregister(l.shm._name, 'shared_memory')\n"
                   "print(list(l)); l.shm.close()\n",
                   name, NULL, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_str_eq(out, "['howdy', b'HoWdY', -273.154, 100, None, True]\n");
    /* Too big for one message: refused cleanly, nothing left. */
    static shmkit_item big[20000];
    for (int i = 0; i < 20000; i++)
        big[i] = shmkit_item_int(i);
    cr_assert_eq(shmkit_manager_create_list(m, NULL, big, 20000, name), -EMSGSIZE);
    shmkit_manager_close(m);
    cr_assert_eq(tu_count_leftovers(), 0);
}

/* Create/release churn compacts the journal; a SIGKILL after it still
 * leaves exactly the live blocks for the next manager to remove. */
Test(manager, journal_compaction_then_sigkill_restart)
{
    char name[SHMKIT_NAME_MAX + 1], live[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    pid_t pid;
    int i;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    for (i = 0; i < 700; i++) {
        cr_assert_eq(shmkit_manager_create_block(m, NULL, 8, name), 0, "%d: %s",
                     i, shmkit_last_error());
        cr_assert_eq(shmkit_manager_release(m, name), 0);
    }
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 8, live), 0);
    pid = shmkit_manager_pid(m);
    kill(pid, SIGKILL);
    cr_assert(lu_wait_pid_gone(pid));
    shmkit_manager_close(m);
    cr_assert(lu_exists(live));
    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    cr_assert_not(lu_exists(live));
    shmkit_manager_close(m);
}

Test(manager, cli_manager_with_authkey_file)
{
    char keyfile[300], name[SHMKIT_NAME_MAX + 1];
    char *argv[] = {(char *)tu_cli(), "manager", "--socket", (char *)sock_path(),
                    "--authkey-file", keyfile, NULL};
    shmkit_manager *c = NULL;
    long end;
    pid_t pid;
    int fd;

    snprintf(keyfile, sizeof keyfile, "%s/key", lu_rundir);
    fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "sesame", 6), 6);
    close(fd);
    pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    end = lu_now_ms() + 5000;
    while (shmkit_manager_connect(&c, sock_path(), "sesame", 6) < 0 &&
           lu_now_ms() < end)
        ;
    cr_assert_not_null(c, "CLI manager with key never let us in");
    cr_assert_eq(shmkit_manager_create_block(c, NULL, 64, name), 0);
    shmkit_manager_close(c);
    cr_assert_eq(shmkit_manager_connect(&c, sock_path(), "sesamf", 6), SHMKIT_EAUTH);
    kill(pid, SIGTERM);
    tu_wait_ok(pid);
    cr_assert_not(lu_exists(name));
}

/* Out of descriptors: connections beyond the limit wait in the backlog,
 * the manager neither dies nor spins nor stops serving those it has. */
Test(manager, descriptor_exhaustion_is_survived)
{
    enum { N = 6 };
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char name[SHMKIT_NAME_MAX + 1], path[64];
    struct rlimit lim;
    shmkit_manager *m, *c;
    int fds[N], i, nfd = 0, r;
    struct dirent *e;
    DIR *d;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)shmkit_manager_pid(m));
    cr_assert_not_null(d = opendir(path));
    while ((e = readdir(d)))
        nfd += e->d_name[0] != '.';
    closedir(d);
    /* Soft limit only: raising it again needs no privilege. */
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, NULL, &lim), 0);
    lim.rlim_cur = (rlim_t)nfd + 1; /* room for one more */
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, &lim, NULL), 0,
                 "prlimit: %s", strerror(errno));
    strcpy(sa.sun_path, sock_path());
    for (i = 0; i < N; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    /* At the limit a create is refused with a reply, not a crash. */
    r = shmkit_manager_create_block(m, NULL, 8, name);
    cr_assert(r == 0 || r == -EMFILE, "create at the limit: %d", r);
    if (r == 0)
        cr_assert_eq(shmkit_manager_release(m, name), 0);
    for (i = 0; i < N; i++)
        close(fds[i]);
    lim.rlim_cur = 1024 < lim.rlim_max ? 1024 : lim.rlim_max;
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, &lim, NULL), 0);
    cr_assert_eq(shmkit_manager_connect(&c, sock_path(), NULL, 0), 0);
    cr_assert_eq(shmkit_manager_create_block(c, NULL, 8, name), 0);
    shmkit_manager_close(c);
    shmkit_manager_close(m);
    cr_assert_not(lu_exists(name));
}

/* A manager out of descriptors, or with every client slot taken, tells a
 * new client so (-EMFILE, -EUSERS: "busy"), never SHMKIT_EAUTH, and serves
 * it again once there is room. */
Test(manager, busy_is_its_own_error_never_eauth)
{
    enum { TRIES = 300 };
    shmkit_manager *m, *c, *cs[TRIES];
    struct rlimit lim;
    int i, low, ok = 0, r = 0;
    bool used[1024] = {false};
    char path[64];
    struct dirent *e;
    DIR *d;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)shmkit_manager_pid(m));
    cr_assert_not_null(d = opendir(path));
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) < 1024)
            used[atoi(e->d_name)] = true;
    closedir(d);
    for (low = 0; used[low]; low++)
        ;
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, NULL, &lim), 0);
    /* A new descriptor takes the lowest free number: below this limit
     * none is free, except the manager's spare once it lets it go. */
    lim.rlim_cur = (rlim_t)low;
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, &lim, NULL), 0);
    r = shmkit_manager_connect(&c, sock_path(), NULL, 0);
    cr_assert_eq(r, -EMFILE, "out of descriptors: %s (%s)", shmkit_errname(r),
                 shmkit_last_error());
    cr_assert_not_null(strstr(shmkit_last_error(), "busy"));
    lim.rlim_cur = 1024 < lim.rlim_max ? 1024 : lim.rlim_max;
    cr_assert_eq(prlimit(shmkit_manager_pid(m), RLIMIT_NOFILE, &lim, NULL), 0);
    for (i = 0; i < TRIES; i++) {
        r = shmkit_manager_connect(&cs[i], sock_path(), NULL, 0);
        if (r < 0)
            break;
        ok++;
    }
    cr_assert_eq(r, -EUSERS, "client table full: %s", shmkit_errname(r));
    cr_assert_gt(ok, 100);
    for (i = 0; i < ok; i++)
        shmkit_manager_close(cs[i]);
    /* Room again: served. (The manager notices the hang-ups first.) */
    for (i = 0; i < 1000 && r != 0; i++) {
        r = shmkit_manager_connect(&c, sock_path(), NULL, 0);
        cr_assert(r == 0 || r == -EUSERS, "%s", shmkit_errname(r));
    }
    cr_assert_eq(r, 0);
    shmkit_manager_close(c);
    shmkit_manager_close(m);
}

/* A "manager" socket planted by another user is refused by the client
 * before it sends anything (the kernel vouches for the server's uid). */
Test(manager, client_refuses_a_server_of_another_user)
{
    char dir[300], sock[340], c;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    shmkit_manager *m;
    int ready[2], hold[2];
    pid_t pid;

    if (geteuid() != 0)
        cr_skip_test("needs root to act as another user");
    snprintf(dir, sizeof dir, "%s/foreign", lu_rundir);
    snprintf(sock, sizeof sock, "%s/s.sock", dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chown(dir, 65534, 65534), 0);
    chmod(lu_rundir, 0755);
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(hold), 0);
    pid = fork();
    if (pid == 0) {
        int fd;
        close(hold[1]);
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(10);
        strcpy(sa.sun_path, sock);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4) < 0)
            _exit(11);
        if (write(ready[1], "r", 1) != 1)
            _exit(12);
        lu_wait_eof(hold[0]);
        _exit(0);
    }
    close(hold[0]);
    close(ready[1]);
    cr_assert_eq(read(ready[0], &c, 1), 1, "planted server did not start");
    cr_assert_eq(shmkit_manager_connect(&m, sock, "key", 3), SHMKIT_EAUTH);
    close(hold[1]);
    tu_wait_ok(pid);
    chmod(lu_rundir, 0700);
    close(ready[0]);
}

/* ---- manager-owned queues ------------------------------------------------ */

/* Child: attaches the queue and puts n numbered messages; exit status 0. */
static void queue_producer(const char *name, int n)
{
    shmkit_queue *q;
    int i;

    if (shmkit_queue_attach(&q, name, 0) < 0)
        _exit(10);
    for (i = 0; i < n; i++)
        if (shmkit_queue_put(q, &i, sizeof i, NULL) < 0)
            _exit(11);
    shmkit_queue_close(q);
    _exit(0);
}

Test(manager, queue_owned_used_by_two_processes_gone_at_shutdown)
{
    tu_require_private_shm();
    char names[2][SHMKIT_NAME_MAX + 1], life[64], want[64], **list;
    shmkit_queue_info in;
    shmkit_manager *m;
    shmkit_queue *q;
    size_t n, len;
    pid_t pid, c;
    int i, v;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0, "%s",
                 shmkit_last_error());
    pid = shmkit_manager_pid(m);
    cr_assert_eq(shmkit_manager_create_queue(m, tu_name("q"), 4096, 8, names[0]),
                 0, "%s", shmkit_last_error());
    cr_assert_str_eq(names[0], tu_name("q"));
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 1 << 20, 0, names[1]), 0);
    cr_assert_eq(strncmp(names[1], "psm_", 4), 0, "%s", names[1]);
    /* The manager owns them as it owns blocks: listed, described. */
    cr_assert_eq(shmkit_manager_list(m, &list, &n), 0);
    cr_assert_eq(n, 2);
    shmkit_manager_list_free(list, n);
    shmkit_lifecycle_describe(names[0], life, sizeof life);
    snprintf(want, sizeof want, "manager %ld", (long)pid);
    cr_assert_str_eq(life, want);
    /* Its parameters are the ones asked for. */
    cr_assert_eq(shmkit_queue_attach(&q, names[0], 0), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_queue_stat(q, &in), 0);
    cr_assert_eq(in.capacity, 4096);
    cr_assert_eq(in.max_messages, 8);
    /* Another process produces, this one consumes. */
    c = fork();
    cr_assert_geq(c, 0);
    if (c == 0)
        queue_producer(names[0], 100);
    for (i = 0; i < 100; i++) {
        cr_assert_eq(shmkit_queue_get(q, &v, sizeof v, &len, NULL), 0);
        cr_assert_eq(len, sizeof v);
        cr_assert_eq(v, i);
    }
    tu_wait_ok(c);
    shmkit_queue_close(q);
    cr_assert_eq(shmkit_manager_release(m, names[1]), 0);
    cr_assert_not(lu_exists(names[1]));
    cr_assert_eq(shmkit_manager_shutdown(m), 0);
    cr_assert_not(lu_exists(names[0]), "shutdown left the queue");
    cr_assert(lu_wait_pid_gone(pid));
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096, 0, names[0]),
                 SHMKIT_ECLOSED);
    shmkit_manager_close(m);
    cr_assert_eq(tu_gc(0), 0);
}

Test(manager, queue_bad_input_refused_manager_serves_on)
{
    char name[SHMKIT_NAME_MAX + 1], taken[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    shmkit_block *b;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    /* Below the smallest ring, above the largest, too many messages. */
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 0, 0, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 16, 0, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, SIZE_MAX, 0, name),
                 -EINVAL);
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096,
                                             (size_t)UINT32_MAX + 1, name),
                 -EINVAL);
    /* Bad names are refused by the client, taken ones by the manager. */
    cr_assert_eq(shmkit_manager_create_queue(m, "a/b", 4096, 0, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096, 0, NULL), -EINVAL);
    cr_assert_eq(shmkit_manager_create_block(m, tu_name("t"), 64, taken), 0);
    cr_assert_eq(shmkit_manager_create_queue(m, tu_name("t"), 4096, 0, name),
                 -EEXIST);
    /* A full /dev/shm: -ENOSPC from the manager, nothing left. */
    cr_assert_eq(shmkit_manager_create_queue(m, tu_name("big"),
                                             (size_t)1 << 46, 0, name),
                 -ENOSPC, "%s", shmkit_last_error());
    cr_assert_not(lu_exists(tu_name("big")));
    /* Still serving, and the block it owns is intact. */
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096, 0, name), 0);
    cr_assert_eq(shmkit_block_attach(&b, taken, 0), 0);
    shmkit_block_close(b);
    cr_assert_eq(shmkit_manager_close(m), 0);
    cr_assert_not(lu_exists(name));
    cr_assert_not(lu_exists(taken));
}

Test(manager, queue_request_with_hostile_payload_disconnects)
{
    uint8_t f[SHMKIT__MGR_FRAME_MAX];
    char name[SHMKIT_NAME_MAX + 1];
    uint8_t shortp[10] = {0}, overrun[20] = {0};
    shmkit_manager *m;
    size_t n;
    int fd, k;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    overrun[0] = 64;       /* capacity 64 */
    overrun[16] = 0xff;    /* a name length beyond the frame */
    for (k = 0; k < 2; k++) {
        fd = raw_connect();
        n = shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
        send_bytes(fd, f, n);
        cr_assert_eq(recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL), SHMKIT__MGR_HDR);
        n = k == 0 ? shmkit__mgr_put(f, SHMKIT__MGR_CREATE_QUEUE, 0, shortp,
                                     sizeof shortp)
                   : shmkit__mgr_put(f, SHMKIT__MGR_CREATE_QUEUE, 0, overrun,
                                     sizeof overrun);
        send_bytes(fd, f, n);
        cr_assert(hung_up(fd, LU_BOUND_MS));
        close(fd);
    }
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 64, 0, name), 0);
    shmkit_manager_close(m);
}

Test(manager, queue_of_sigkilled_manager_swept_by_restart_and_by_gc)
{
    tu_require_private_shm();
    char names[2][SHMKIT_NAME_MAX + 1], life[64];
    shmkit_manager *m;
    pid_t pid;
    int round;

    for (round = 0; round < 2; round++) {
        cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
        cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096, 0, names[0]), 0);
        cr_assert_eq(shmkit_manager_create_queue(m, NULL, 1 << 16, 4, names[1]),
                     0);
        pid = shmkit_manager_pid(m);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        cr_assert(lu_wait_pid_gone(pid));
        shmkit_manager_close(m);
        cr_assert_eq(count_alive(names, 2), 2);
        if (round == 0) {
            /* (describe caches its index for a second: ask once.) */
            shmkit_lifecycle_describe(names[0], life, sizeof life);
            cr_assert_str_eq(life, "manager (dead)");
            /* A manager started on the same socket sweeps them. */
            cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
            cr_assert_eq(count_alive(names, 2), 0, "restart left queues");
            shmkit_manager_close(m);
        } else {
            cr_assert_eq(tu_gc(0), 2);
            cr_assert_eq(count_alive(names, 2), 0, "gc left queues");
        }
    }
}

/* A manager of an older shmkit (protocol revision 0: HELLO byte 5 is 0,
 * and it would answer an unknown request with SHMKIT_EPROTO and hang up):
 * the client refuses to ask it for a queue, saying why, and sends
 * nothing; its blocks still work. */
static void old_server(int lfd, int ready, unsigned version)
{
    uint8_t f[SHMKIT__MGR_FRAME_MAX], hello[SHMKIT__MGR_HELLO_LEN] = {0};
    struct shmkit__mgr_msg msg;
    int fd, types = 0;
    size_t n;

    if (write(ready, "r", 1) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
        _exit(10);
    shmkit__put32(hello, (uint32_t)getpid());
    n = shmkit__mgr_put(f, SHMKIT__MGR_HELLO, 0, hello, sizeof hello);
    f[4] = (uint8_t)version; /* the frame version it speaks */
    if (send(fd, f, n, MSG_NOSIGNAL) != (ssize_t)n)
        _exit(11);
    /* Serve AUTH and CREATE (a name "old"); count what else arrives. */
    while (recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL) == SHMKIT__MGR_HDR) {
        size_t len = shmkit__le32(f + 8);
        if (len && recv(fd, f + SHMKIT__MGR_HDR, len, MSG_WAITALL) != (ssize_t)len)
            _exit(12);
        if (shmkit__mgr_parse(f, SHMKIT__MGR_HDR + len, &msg) <= 0)
            _exit(13);
        if (msg.type == SHMKIT__MGR_AUTH)
            n = shmkit__mgr_put(f, SHMKIT__MGR_REPLY | msg.type, 0, NULL, 0);
        else if (msg.type == SHMKIT__MGR_CREATE)
            n = shmkit__mgr_put(f, SHMKIT__MGR_REPLY | msg.type, 0, "old", 3);
        else
            _exit(20 + (++types)); /* a request it does not know */
        if (send(fd, f, n, MSG_NOSIGNAL) != (ssize_t)n)
            _exit(14);
    }
    _exit(0);
}

/* Starts old_server(version) on <rundir>/old.sock; its pid. */
static pid_t old_server_start(struct sockaddr_un *sa, unsigned version)
{
    int lfd, ready[2];
    pid_t pid;
    char c;

    cr_assert_lt(strlen(lu_rundir) + sizeof "/old.sock", sizeof sa->sun_path);
    strcpy(sa->sun_path, lu_rundir);
    strcat(sa->sun_path, "/old.sock");
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(lfd, (struct sockaddr *)sa, sizeof *sa), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    cr_assert_eq(pipe(ready), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        old_server(lfd, ready[1], version);
    close(lfd);
    cr_assert_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    return pid;
}

Test(manager, new_client_old_server_queue_request_is_a_clear_error)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    pid_t pid;

    pid = old_server_start(&sa, SHMKIT__MGR_VERSION);
    cr_assert_eq(shmkit_manager_connect(&m, sa.sun_path, NULL, 0), 0, "%s",
                 shmkit_last_error());
    cr_assert_eq(shmkit_manager_create_queue(m, NULL, 4096, 0, name),
                 -EOPNOTSUPP);
    cr_assert_not_null(strstr(shmkit_last_error(), "revision 0"), "%s",
                       shmkit_last_error());
    cr_assert_not_null(strstr(shmkit_last_error(), "needs revision 1"));
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 8, name), 0, "%s",
                 shmkit_last_error());
    cr_assert_str_eq(name, "old");
    shmkit_manager_close(m);
    tu_wait_ok(pid); /* exit 21 if the queue request had reached it */
    unlink(sa.sun_path);
}

/* A manager whose frames carry another protocol version: connect says
 * so, naming both versions (and sends it nothing but what it read). */
Test(manager, another_protocol_version_is_a_clear_error)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    shmkit_manager *m;
    pid_t pid;

    pid = old_server_start(&sa, SHMKIT__MGR_VERSION + 1);
    cr_assert_eq(shmkit_manager_connect(&m, sa.sun_path, NULL, 0),
                 SHMKIT_EVERSION);
    cr_assert_not_null(strstr(shmkit_last_error(), "protocol version 2, "
                                                   "this client 1"),
                       "%s", shmkit_last_error());
    tu_wait_ok(pid);
    unlink(sa.sun_path);
}

/* A client of an older shmkit reads HELLO as before (same length; it
 * ignores byte 5, which this server sets to its revision) and is served. */
Test(manager, old_client_new_server_still_served)
{
    uint8_t f[SHMKIT__MGR_FRAME_MAX], p[8 + 2] = {64};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct shmkit__mgr_msg msg;
    shmkit_manager *m;
    char name[SHMKIT_NAME_MAX + 1];
    size_t n;
    int fd;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, sock_path());
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    n = SHMKIT__MGR_HDR + SHMKIT__MGR_HELLO_LEN;
    cr_assert_eq(recv(fd, f, n, MSG_WAITALL), (ssize_t)n);
    cr_assert_eq(shmkit__mgr_parse(f, n, &msg), (ssize_t)n);
    cr_assert_eq(msg.type, SHMKIT__MGR_HELLO);
    cr_assert_eq(msg.payload[5], SHMKIT__MGR_REVISION);
    n = shmkit__mgr_put(f, SHMKIT__MGR_AUTH, 0, NULL, 0);
    send_bytes(fd, f, n);
    cr_assert_eq(recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL), SHMKIT__MGR_HDR);
    n = shmkit__mgr_put(f, SHMKIT__MGR_CREATE, 0, p, sizeof p);
    send_bytes(fd, f, n);
    cr_assert_eq(recv(fd, f, SHMKIT__MGR_HDR, MSG_WAITALL), SHMKIT__MGR_HDR);
    cr_assert_eq(shmkit__mgr_parse(f, SHMKIT__MGR_HDR, &msg), 0);
    n = shmkit__le32(f + 8);
    cr_assert_eq(recv(fd, f + SHMKIT__MGR_HDR, n, MSG_WAITALL), (ssize_t)n);
    cr_assert_gt(shmkit__mgr_parse(f, SHMKIT__MGR_HDR + n, &msg), 0);
    cr_assert_eq(msg.status, 0);
    cr_assert_eq(msg.type, SHMKIT__MGR_REPLY | SHMKIT__MGR_CREATE);
    memcpy(name, msg.payload, msg.len);
    name[msg.len] = 0;
    cr_assert(lu_exists(name));
    close(fd);
    shmkit_manager_close(m);
    cr_assert_not(lu_exists(name));
}

/* A manager that cannot read its own start time used to write "pid 0"
 * into its info file and serve on: readers could not tell it from a later
 * process given its pid (before d8873d6 they called it "manager (dead)").
 * Now it does not start: the starter gets its error and no state, socket
 * or daemon is left; a later start works. */
Test(manager, manager_without_its_start_time_is_a_clear_error)
{
    tu_require_private_shm();
    char name[SHMKIT_NAME_MAX + 1], owner[64], want[64];
    shmkit_manager *m = NULL;
    struct stat st;
    pid_t pid;

    lu_proc_start_fails_elsewhere(-ENOMEM);
    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), -ENOMEM,
                 "%s", shmkit_last_error());
    cr_assert_null(m);
    cr_assert_eq(lstat(sock_path(), &st), -1, "the socket was left");
    cr_assert_eq(lu_rundir_count("mgr-"), 0, "the state directory was left");
    shmkit__os_reset();

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0, "%s",
                 shmkit_last_error());
    pid = shmkit_manager_pid(m);
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 64, name), 0);
    shmkit_lifecycle_describe(name, owner, sizeof owner);
    snprintf(want, sizeof want, "manager %ld", (long)pid);
    cr_assert_str_eq(owner, want);
    cr_assert_eq(shmkit_manager_shutdown(m), 0);
    shmkit_manager_close(m);
    cr_assert(lu_wait_pid_gone(pid));
    cr_assert_not(lu_exists(name));
}

/* What a starter can get wrong about the socket path is a clear error,
 * and touches nothing: a file at the path (-EEXIST, the file kept), a
 * directory others can enter (SHMKIT_EOWNER), a path in / (-EINVAL), a
 * manager already serving there (-EADDRINUSE, it serves on). A relative
 * path is taken from the starter's working directory. */
Test(manager, socket_path_problems_are_clear_errors)
{
    tu_require_private_shm();
    char dir[300], path[400], name[SHMKIT_NAME_MAX + 1], cwd[300];
    shmkit_manager *m = NULL, *m2 = NULL;
    struct stat st;
    int fd;

    snprintf(dir, sizeof dir, "%s/f", lu_rundir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/m.sock", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_eq(write(fd, "keep", 4), 4);
    close(fd);
    cr_assert_eq(shmkit_manager_start(&m, path, NULL, 0), -EEXIST);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode) && st.st_size == 4, "the file was touched");

    snprintf(dir, sizeof dir, "%s/g", lu_rundir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chmod(dir, 0750), 0);
    snprintf(path, sizeof path, "%s/m.sock", dir);
    cr_assert_eq(shmkit_manager_start(&m, path, NULL, 0), SHMKIT_EOWNER);
    cr_assert_eq(shmkit_manager_start(&m, "/m.sock", NULL, 0), -EINVAL);
    cr_assert_null(m);
    cr_assert_eq(lu_rundir_count("mgr-"), 0, "a refused start left state");

    /* rel/ exists here only: a daemon that took the path from its own
     * working directory ("/") fails to make /rel/sub, and makes nothing. */
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(lu_rundir), 0);
    cr_assert_eq(mkdir("rel", 0700), 0);
    cr_assert_eq(shmkit_manager_start(&m, "rel/sub/m.sock", NULL, 0), 0,
                 "%s", shmkit_last_error());
    cr_assert_eq(chdir(cwd), 0);
    snprintf(path, sizeof path, "%s/rel/sub/m.sock", lu_rundir);
    cr_assert_eq(shmkit_manager_start(&m2, path, NULL, 0), -EADDRINUSE);
    cr_assert_null(m2);
    cr_assert_eq(shmkit_manager_connect(&m2, path, NULL, 0), 0);
    cr_assert_eq(shmkit_manager_create_block(m2, NULL, 64, name), 0);
    shmkit_manager_close(m2);
    cr_assert_eq(shmkit_manager_shutdown(m), 0);
    shmkit_manager_close(m);
    cr_assert_not(lu_exists(name));
}

/* Bad arguments to the client calls: -EINVAL, nothing sent; a list too
 * big for one message: -EMSGSIZE, and the manager serves on. */
Test(manager, client_argument_errors)
{
    tu_require_private_shm();
    char name[SHMKIT_NAME_MAX + 1], **list;
    static char big[70000];
    shmkit_item item;
    shmkit_manager *m;
    size_t n;

    cr_assert_eq(shmkit_manager_start(&m, sock_path(), NULL, 0), 0);
    cr_assert_eq(shmkit_manager_create_block(NULL, NULL, 1, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_block(m, NULL, 1, NULL), -EINVAL);
    cr_assert_eq(shmkit_manager_create_block(m, "a/b", 1, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_list(NULL, NULL, NULL, 0, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_list(m, NULL, NULL, 1, name), -EINVAL);
    cr_assert_eq(shmkit_manager_create_list(m, "", NULL, 0, name), -EINVAL);
    memset(big, 'x', sizeof big - 1);
    item = shmkit_item_str(big);
    cr_assert_eq(shmkit_manager_create_list(m, NULL, &item, 1, name), -EMSGSIZE);
    cr_assert_eq(shmkit_manager_release(m, NULL), -EINVAL);
    cr_assert_eq(shmkit_manager_release(NULL, "x"), -EINVAL);
    cr_assert_eq(shmkit_manager_list(NULL, &list, &n), -EINVAL);
    cr_assert_eq(shmkit_manager_list(m, NULL, &n), -EINVAL);
    cr_assert_eq(shmkit_manager_shutdown(NULL), -EINVAL);
    cr_assert_eq(shmkit_manager_list(m, &list, &n), 0);
    cr_assert_eq(n, 0, "a refused request made something");
    shmkit_manager_list_free(list, n);
    cr_assert_eq(shmkit_manager_shutdown(m), 0);
    shmkit_manager_close(m);
}
