/* lifecycle_cmds.c - `shmkit gc`, `shmkit manager` and the lifecycle column
 * of `ls` (not yet implemented). */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

int cli_gc(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("gc", -ENOTSUP);
}

int cli_manager(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("manager", -ENOTSUP);
}

void cli_lifecycle_of(const char *name, char *buf, size_t len)
{
    (void)name;
    snprintf(buf, len, "-");
}
