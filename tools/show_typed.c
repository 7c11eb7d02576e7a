/* show_typed.c - `shmkit show` for Values and Arrays (not yet implemented). */
#include <errno.h>

#include "cli.h"

int cli_show_typed(shmkit_block *b, shmkit_kind kind, bool json)
{
    (void)kind;
    (void)json;
    return cli_error(shmkit_block_name(b), -ENOTSUP);
}
