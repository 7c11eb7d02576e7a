/*
 * blocks.c - a raw named block: created under a generated name with its
 * memory reserved, attached by name in another process, grown (the peer
 * refreshes to see the new size), renamed atomically, unlinked.
 */
#include <shmkit.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, shmkit_last_error());
    return 1;
}

/* The peer: attaches by name, says so, waits for the go after the
 * resize, refreshes, reads. */
static int peer(const char *name, int up, int go)
{
    shmkit_block *b;
    char c;

    if (shmkit_block_attach(&b, name, SHMKIT_RDONLY) < 0)
        return fail("attach");
    printf("peer sees %zu bytes: %s\n", shmkit_block_size(b),
           (char *)shmkit_block_data(b));
    fflush(stdout);
    if (write(up, "a", 1) != 1 || read(go, &c, 1) != 1 ||
        shmkit_block_refresh(b) < 0)
        return fail("refresh");
    printf("peer sees %zu bytes after the resize: %s\n", shmkit_block_size(b),
           (char *)shmkit_block_data(b) + 4096);
    shmkit_block_close(b); /* never unlinks */
    fflush(stdout);        /* the child leaves with _exit() */
    return 0;
}

int main(void)
{
    char newname[SHMKIT_NAME_MAX + 1];
    shmkit_block *b;
    int up[2], go[2], status;
    char c;
    pid_t pid;

    /* NULL: a generated "psm_" name; RESERVE: a full /dev/shm is -ENOSPC
     * here, not a SIGBUS at the first write. */
    if (shmkit_block_create(&b, NULL, 4096, SHMKIT_RESERVE) < 0)
        return fail("create");
    strcpy(shmkit_block_data(b), "hello");
    if (pipe(up) < 0 || pipe(go) < 0)
        return 1;
    pid = fork();
    if (pid == 0)
        _exit(peer(shmkit_block_name(b), up[1], go[0]));
    if (read(up[0], &c, 1) != 1) /* the peer has attached */
        return 1;
    if (shmkit_block_resize(b, 8192) < 0)
        return fail("resize");
    strcpy((char *)shmkit_block_data(b) + 4096, "second page");
    (void)!write(go[1], "g", 1);
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return 1;

    snprintf(newname, sizeof newname, "%s_done", shmkit_block_name(b));
    if (shmkit_block_rename(b, newname, SHMKIT_NOREPLACE) < 0)
        return fail("rename");
    printf("renamed to %s\n", shmkit_block_name(b));
    shmkit_block_unlink(b); /* the name goes */
    shmkit_block_close(b);  /* the mapping goes */
    return 0;
}
