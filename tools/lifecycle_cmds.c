/*
 * lifecycle_cmds.c - `shmkit gc`, `shmkit manager` and the LIFECYCLE
 * column of `ls`/`info`. Thin: the library does the work.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void gc_print(const char *what, const char *name, void *arg)
{
    const char *verb = arg;

    printf("%s %-8s %s\n", verb, what, name);
}

int cli_gc(int argc, char **argv)
{
    unsigned flags = 0;
    int i, n;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0)
            flags |= SHMKIT_GC_DRY_RUN;
        else
            return cli_usage_error("gc: unexpected argument '%s'", argv[i]);
    }
    n = shmkit_gc(flags, gc_print,
                  (flags & SHMKIT_GC_DRY_RUN) ? "would remove" : "removed");
    if (n < 0)
        return cli_error("gc", n);
    printf("%d block%s %s\n", n, n == 1 ? "" : "s",
           (flags & SHMKIT_GC_DRY_RUN) ? "would be removed" : "removed");
    return 0;
}

/* Reads the shared key: the file's bytes, at most SHMKIT_MANAGER_KEY_MAX,
 * from a file only its owner may read. */
static int read_key(const char *path, unsigned char *key, size_t *len)
{
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        fprintf(stderr, "shmkit: %s: key file readable by others\n", path);
        return -EACCES;
    }
    n = read(fd, key, SHMKIT_MANAGER_KEY_MAX + 1);
    close(fd);
    if (n <= 0 || n > SHMKIT_MANAGER_KEY_MAX)
        return -EINVAL;
    *len = (size_t)n;
    return 0;
}

int cli_manager(int argc, char **argv)
{
    unsigned char key[SHMKIT_MANAGER_KEY_MAX + 1];
    const char *sock = NULL, *keyfile = NULL;
    size_t keylen = 0;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            sock = argv[++i];
        else if (strcmp(argv[i], "--authkey-file") == 0 && i + 1 < argc)
            keyfile = argv[++i];
        else
            return cli_usage_error("manager: unexpected argument '%s'",
                                   argv[i]);
    }
    if (keyfile && (r = read_key(keyfile, key, &keylen)) < 0)
        return cli_error(keyfile, r);
    r = shmkit_manager_serve(sock, keylen ? key : NULL, keylen, -1, -1);
    memset(key, 0, sizeof key);
    if (r < 0)
        return cli_error("manager", r);
    return 0;
}

void cli_lifecycle_of(const char *name, char *buf, size_t len)
{
    shmkit_lifecycle_describe(name, buf, len);
}
