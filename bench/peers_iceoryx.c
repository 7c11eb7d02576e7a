/*
 * peers_iceoryx.c - iceoryx's zero-copy publish/subscribe doing the queue
 * benchmark's handoff: the producer loans a chunk, writes the message and
 * publishes it; the consumer (a process of its own, this benchmark
 * re-executed with --iox-consumer, since an iceoryx runtime cannot be
 * forked) waits on a WaitSet, takes the chunk, reads its first and last
 * byte, releases it and publishes an 8-byte answer.
 *
 * The producer is a process of its own too ("--iox-producer"), driven by
 * the benchmark over a pipe (n round trips per command, the answer when
 * done; the pipe's cost is some microseconds per command of thousands of
 * round trips): RouDi, stopped at the end, kills every process still
 * registered with it, which must not be the benchmark.
 *
 * RouDi is started here with a configuration whose mempools hold the
 * benchmark's sizes (4 KiB and 64 MiB chunks).
 */
#define _GNU_SOURCE
#include "peers_iceoryx.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>

static pid_t roudi = -1;
static char config[64];

/* The benchmark's side: the producer process and its pipes. */
struct peer_iox {
    size_t size;
    pid_t producer;
    int cmd, ack;
};

/* The producer process's side. */
struct iox_side {
    size_t size;
    pid_t consumer;
    iox_pub_storage_t pub_storage;
    iox_sub_storage_t sub_storage;
    iox_ws_storage_t ws_storage;
    iox_pub_t pub;
    iox_sub_t sub;
    iox_ws_t ws;
};

static const unsigned char *src_of(size_t size)
{
    static unsigned char *src;
    static size_t len;

    if (len < size) {
        free(src);
        src = malloc(size);
        if (!src)
            return NULL;
        memset(src, 0x5a, size);
        len = size;
    }
    return src;
}

static int roudi_start(void)
{
    FILE *f;
    int fd;

    if (roudi > 0)
        return 0;
    snprintf(config, sizeof config, "/tmp/shmkit_bench_roudi_XXXXXX");
    fd = mkstemp(config);
    if (fd < 0 || !(f = fdopen(fd, "w")))
        return -1;
    fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n"
               "[[segment.mempool]]\nsize = 128\ncount = 1000\n\n"
               "[[segment.mempool]]\nsize = 8192\ncount = 64\n\n"
               "[[segment.mempool]]\nsize = %zu\ncount = 3\n",
            ((size_t)64 << 20) + 4096);
    fclose(f);
    fflush(stdout);
    roudi = fork();
    if (roudi == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1);
        dup2(null, 2);
        execlp("iox-roudi", "iox-roudi", "-c", config, "-l", "error",
               "-m", "off", (char *)NULL);
        _exit(127);
    }
    return roudi < 0 ? -1 : 0;
}

void peer_iox_shutdown(void)
{
    int st;

    if (roudi <= 0)
        return;
    kill(roudi, SIGTERM);
    waitpid(roudi, &st, 0);
    unlink(config);
    roudi = -1;
}

static void names(size_t size, char *ping, char *pong)
{
    snprintf(ping, 64, "ping%zu", size);
    snprintf(pong, 64, "pong%zu", size);
}

static void endpoints(iox_pub_storage_t *ps, iox_pub_t *pub,
                      iox_sub_storage_t *ss, iox_sub_t *sub,
                      iox_ws_storage_t *ws_s, iox_ws_t *ws,
                      const char *out, const char *in)
{
    iox_pub_options_t po;
    iox_sub_options_t so;

    iox_pub_options_init(&po);
    po.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
    iox_sub_options_init(&so);
    so.queueCapacity = 4;
    so.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
    *pub = iox_pub_init(ps, "shmkit", "bench", out, &po);
    *sub = iox_sub_init(ss, "shmkit", "bench", in, &so);
    *ws = iox_ws_init(ws_s);
    iox_ws_attach_subscriber_state(*ws, *sub, SubscriberState_HAS_DATA, 0,
                                   NULL);
}

/* Waits for one chunk on sub and returns it. */
static const void *take(iox_ws_t ws, iox_sub_t sub)
{
    iox_notification_info_t info[2];
    const void *chunk;
    uint64_t missed;

    while (iox_sub_take_chunk(sub, &chunk) != ChunkReceiveResult_SUCCESS)
        iox_ws_wait(ws, info, 2, &missed);
    return chunk;
}

int peer_iox_consumer_main(size_t size)
{
    iox_pub_storage_t ps;
    iox_sub_storage_t ss;
    iox_ws_storage_t wss;
    char ping[64], pong[64], me[64];
    volatile unsigned char sink;
    iox_pub_t pub;
    iox_sub_t sub;
    iox_ws_t ws;

    names(size, ping, pong);
    snprintf(me, sizeof me, "shmkit_bench_consumer%zu", size);
    iox_set_loglevel(Iceoryx_LogLevel_Error);
    iox_runtime_init(me);
    endpoints(&ps, &pub, &ss, &sub, &wss, &ws, pong, ping);
    for (;;) {
        const unsigned char *m = take(ws, sub);
        int stop = m[0] == 0;
        void *answer;

        sink = m[0] ^ m[size - 1];
        (void)sink;
        iox_sub_release_chunk(sub, m);
        if (iox_pub_loan_chunk(pub, &answer, 8) != AllocationResult_SUCCESS)
            return 2;
        memset(answer, 1, 8);
        iox_pub_publish_chunk(pub, answer);
        if (stop)
            break;
    }
    iox_ws_deinit(ws);
    iox_sub_deinit(sub);
    iox_pub_deinit(pub);
    return 0; /* the runtime unregisters at exit */
}

/* Spawns this benchmark again with `mode` and the size; with cmd/ack,
 * it reads commands on fd 3 and answers on fd 4. */
static pid_t respawn(const char *mode, size_t size, int *cmd, int *ack)
{
    int in[2], out[2];
    char arg[32];
    pid_t pid;

    if (cmd && (pipe(in) < 0 || pipe(out) < 0))
        return -1;
    snprintf(arg, sizeof arg, "%zu", size);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (cmd) { /* commands on fd 3, answers on fd 4 */
            int r = fcntl(in[0], F_DUPFD, 100), w = fcntl(out[1], F_DUPFD, 100);

            if (r < 0 || w < 0 || dup2(r, 3) < 0 || dup2(w, 4) < 0)
                _exit(126);
        }
        execl("/proc/self/exe", "bench_queue", mode, arg, (char *)NULL);
        _exit(127);
    }
    if (cmd) {
        close(in[0]);
        close(out[1]);
        *cmd = in[1];
        *ack = out[0];
    }
    return pid;
}

int peer_iox_producer_main(size_t size)
{
    const unsigned char *src = src_of(size);
    char ping[64], pong[64], me[64];
    struct iox_side p;
    long n;
    int st;

    if (!src)
        return 2;
    memset(&p, 0, sizeof p);
    p.size = size;

    snprintf(me, sizeof me, "shmkit_bench_producer%zu", size);
    iox_set_loglevel(Iceoryx_LogLevel_Error);
    iox_runtime_init(me);
    names(size, ping, pong);
    endpoints(&p.pub_storage, &p.pub, &p.sub_storage, &p.sub, &p.ws_storage,
              &p.ws, ping, pong);
    p.consumer = respawn("--iox-consumer", size, NULL, NULL);
    /* Set-up only: wait until the two sides see each other. */
    while (!iox_pub_has_subscribers(p.pub) ||
           iox_sub_get_subscription_state(p.sub) != SubscribeState_SUBSCRIBED)
        usleep(1000);
    while (read(3, &n, sizeof n) == sizeof n && n > 0) {
        for (long i = 0; i < n; i++) {
            void *chunk;

            if (iox_pub_loan_chunk(p.pub, &chunk, (uint32_t)size) !=
                AllocationResult_SUCCESS)
                return 3;
            memcpy(chunk, src, size);
            iox_pub_publish_chunk(p.pub, chunk);
            iox_sub_release_chunk(p.sub, take(p.ws, p.sub));
        }
        if (write(4, &n, sizeof n) != sizeof n)
            return 4;
    }
    {
        void *chunk;

        if (iox_pub_loan_chunk(p.pub, &chunk, (uint32_t)size) !=
            AllocationResult_SUCCESS)
            return 5;
        memset(chunk, 0, size < 64 ? size : 64); /* stop */
        iox_pub_publish_chunk(p.pub, chunk);
        iox_sub_release_chunk(p.sub, take(p.ws, p.sub));
    }
    if (waitpid(p.consumer, &st, 0) != p.consumer || st != 0)
        return 6;
    iox_ws_deinit(p.ws);
    iox_sub_deinit(p.sub);
    iox_pub_deinit(p.pub);
    return 0; /* the runtime unregisters at exit */
}

struct peer_iox *peer_iox_start(size_t size)
{
    struct peer_iox *p = calloc(1, sizeof *p);

    if (!p || roudi_start() < 0) {
        fprintf(stderr, "bench_queue: iceoryx unavailable\n");
        free(p);
        return NULL;
    }
    p->size = size;
    p->producer = respawn("--iox-producer", size, &p->cmd, &p->ack);
    if (p->producer < 0) {
        free(p);
        return NULL;
    }
    return p;
}

void peer_iox_run(void *ctx, long n)
{
    struct peer_iox *p = ctx;
    long done;

    if (write(p->cmd, &n, sizeof n) != sizeof n ||
        read(p->ack, &done, sizeof done) != sizeof done || done != n) {
        fprintf(stderr, "bench_queue: iceoryx producer failed\n");
        exit(1);
    }
}

void peer_iox_stop(struct peer_iox *p)
{
    long zero = 0;
    int st;

    if (write(p->cmd, &zero, sizeof zero) != sizeof zero)
        fprintf(stderr, "bench_queue: iceoryx producer gone\n");
    close(p->cmd);
    close(p->ack);
    if (waitpid(p->producer, &st, 0) != p->producer || st != 0)
        fprintf(stderr, "bench_queue: iceoryx producer ended with 0x%x\n", st);
    free(p);
}
