/* Creates, attaches and removes one block through an installed shmkit. */
#include <shmkit.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    shmkit_block *a, *b;
    char name[64];
    int r;

    snprintf(name, sizeof name, "sktest_install_%ld", (long)getpid());
    if ((r = shmkit_block_create(&a, name, 100, 0)) < 0) {
        fprintf(stderr, "%s\n", shmkit_last_error());
        return 1;
    }
    memcpy(shmkit_block_data(a), "ok", 3);
    r = shmkit_block_attach(&b, name, SHMKIT_RDONLY);
    if (r == 0) {
        printf("%s %s\n", shmkit_version(), (char *)shmkit_block_data(b));
        shmkit_block_close(b);
    }
    shmkit_block_unlink(a);
    shmkit_block_close(a);
    return r < 0;
}
