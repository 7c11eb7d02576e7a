/*
 * lifetimes.c - blocks that clean up after themselves: a tracked block goes
 * when its creator's process family is gone (SIGKILL included), and a
 * manager owns blocks for its clients and removes them at shutdown.
 */
#include <errno.h>
#include <shmkit.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_manager *m;
    shmkit_block *t, *b;
    int r;

    /* Tracked: no unlink needed, even if this process is killed. */
    if ((r = shmkit_block_create(&t, NULL, 4096, SHMKIT_TRACK)) < 0)
        goto fail;
    printf("tracked block %s\n", shmkit_block_name(t));
    shmkit_block_close(t);

    /* Manager-owned: clients attach by name; shutdown removes them all.
     * NULL: a private socket in the runtime directory. */
    if ((r = shmkit_manager_start(&m, NULL, NULL, 0)) < 0)
        goto fail;
    if ((r = shmkit_manager_create_block(m, NULL, 1 << 20, name)) < 0)
        goto fail;
    if ((r = shmkit_block_attach(&b, name, 0)) < 0)
        goto fail;
    printf("manager %ld owns %s (%zu bytes)\n", (long)shmkit_manager_pid(m),
           name, shmkit_block_size(b));
    shmkit_block_close(b);
    shmkit_manager_shutdown(m);
    shmkit_manager_close(m);
    r = shmkit_block_attach(&b, name, 0);
    printf("after shutdown: %s\n", shmkit_errname(r));
    return r == -ENOENT ? 0 : 1;
fail:
    fprintf(stderr, "%s\n", shmkit_last_error());
    return 1;
}
