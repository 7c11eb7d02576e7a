/*
 * queue.c - a producer hands messages to a consumer process through a
 * named shmkit queue: zero copy on both sides (reserve/commit,
 * peek/release), the consumer attaching by name.
 *
 *   example_queue                  the demo (creates, forks, cleans up)
 *   example_queue put NAME COUNT   attaches NAME, puts "message 0".."COUNT-1"
 *   example_queue get NAME COUNT   attaches NAME, gets and prints COUNT
 *
 * The last two talk to Python's shmkit.Queue(name=...) as well: its get()
 * returns these messages as bytes, and its put_bytes()/loan() write ones
 * that `get` prints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmkit.h>

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, shmkit_last_error());
    return 1;
}

static int put_n(const char *name, int count)
{
    shmkit_queue *q;
    int i;

    if (shmkit_queue_attach(&q, name, 0) < 0)
        return fail("attach");
    for (i = 0; i < count; i++) {
        char *slot;
        void *p;
        int n;

        /* Reserve room, write in place, commit the length written. */
        if (shmkit_queue_reserve(q, 64, &p, NULL) < 0)
            return fail("reserve");
        slot = p;
        n = snprintf(slot, 64, "message %d", i);
        if (shmkit_queue_commit(q, p, (size_t)n) < 0)
            return fail("commit");
    }
    return shmkit_queue_close(q) < 0 ? fail("close") : 0;
}

static int get_n(const char *name, int count)
{
    shmkit_queue *q;
    int i;

    if (shmkit_queue_attach(&q, name, 0) < 0)
        return fail("attach");
    for (i = 0; i < count; i++) {
        const void *p;
        size_t len;

        /* Read in place, then give the space back. */
        if (shmkit_queue_peek(q, &p, &len, NULL) < 0)
            return fail("peek");
        printf("%.*s\n", (int)len, (const char *)p);
        if (shmkit_queue_release(q, p) < 0)
            return fail("release");
    }
    fflush(stdout); /* the demo's consumer leaves with _exit */
    return shmkit_queue_close(q) < 0 ? fail("close") : 0;
}

int main(int argc, char **argv)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_queue *q;
    int status;
    pid_t pid;

    if (argc == 4 && strcmp(argv[1], "put") == 0)
        return put_n(argv[2], atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "get") == 0)
        return get_n(argv[2], atoi(argv[3]));
    /* 1 MiB of ring, no limit on the number of messages; NULL generates
     * a name. */
    if (shmkit_queue_create(&q, NULL, 1 << 20, 0, 0) < 0)
        return fail("create");
    snprintf(name, sizeof name, "%s", shmkit_block_name(shmkit_queue_block(q)));
    fflush(stdout);
    pid = fork();
    if (pid == 0)
        _exit(get_n(name, 3)); /* the consumer attaches by name */
    if (pid < 0 || put_n(name, 3) != 0)
        return 1;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return fprintf(stderr, "consumer failed\n"), 1;
    shmkit_queue_unlink(q);
    return shmkit_queue_close(q) < 0 ? fail("close") : 0;
}
