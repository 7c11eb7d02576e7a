/* show_list.c - `shmkit show` for ShareableLists (not yet implemented). */
#include <errno.h>

#include "cli.h"

int cli_show_list(shmkit_block *b, bool json)
{
    (void)json;
    return cli_error(shmkit_block_name(b), -ENOTSUP);
}
