/*
 * block_lifetime.c - a program that links libshmkit.a statically and calls
 * nothing but the block API must still get reference-counted lifetimes.
 *
 * The lifetime layer plugs into the block layer from a constructor
 * (src/core/hooks.h), and nothing here names a symbol of that layer. If
 * libshmkit.a were a plain archive of one object per source, the linker
 * would leave the lifetime objects out, and the create below would fail
 * with SHMKIT_ETRACKER. The library is one prelinked object so that it
 * cannot, and registers with a constructor priority so that it is ready
 * before the program's own constructors run. No Criterion and no test helpers: they would pull in the rest
 * of the library by themselves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmkit.h"

static char name[64];
static int early = 1;   /* what a create from a constructor returned */

/* A program's own constructor runs before main too: the layers must have
 * registered already (theirs have a higher priority). */
__attribute__((constructor)) static void create_before_main(void)
{
    shmkit_block *a;
    char early_name[64];

    snprintf(early_name, sizeof early_name, "sktest_link_early_%ld",
             (long)getpid());
    early = shmkit_block_create(&a, early_name, 4096, SHMKIT_REFCOUNT);
    if (early == 0)
        shmkit_block_close(a);  /* the last reference: removes the name */
}

static void fail(const char *what, int r)
{
    char slashed[66];

    fprintf(stderr, "block_lifetime: %s: %s (%d)\n", what, shmkit_strerror(r),
            r);
    snprintf(slashed, sizeof slashed, "/%s", name);
    shm_unlink(slashed);  /* not shmkit_unlink: it would pull in more */
    exit(1);
}

int main(void)
{
    shmkit_block *a, *b, *c;
    int r;

    snprintf(name, sizeof name, "sktest_link_%ld", (long)getpid());
    if (early != 0)
        fail("create with SHMKIT_REFCOUNT from a constructor", early);
    r = shmkit_block_create(&a, name, 4096, SHMKIT_REFCOUNT);
    if (r != 0)
        fail("create with SHMKIT_REFCOUNT", r);
    r = shmkit_block_attach(&b, name, SHMKIT_REFCOUNT);
    if (r != 0)
        fail("attach with SHMKIT_REFCOUNT", r);
    /* One of two references closed: the block stays. */
    shmkit_block_close(a);
    r = shmkit_block_attach(&c, name, 0);
    if (r != 0)
        fail("attach after the first close", r);
    shmkit_block_close(c);
    /* The last reference closed: the lifetime layer removes the name. */
    shmkit_block_close(b);
    r = shmkit_block_attach(&c, name, 0);
    if (r == 0) {
        shmkit_block_close(c);
        fail("the last close left the block", 0);
    }
    if (r != -ENOENT)
        fail("attach after the last close", r);
    return 0;
}
