/* show.c - `shmkit show NAME [--json]`: decodes a block by its kind. */
#include <string.h>

#include "cli.h"

int cli_show(int argc, char **argv)
{
    const char *name = NULL;
    shmkit_block *b;
    shmkit_kind k;
    bool json = false;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (!name)
            name = argv[i];
        else
            return cli_usage_error("show: unexpected argument '%s'", argv[i]);
    }
    if (!name)
        return cli_usage_error("show: expected NAME");
    r = shmkit_block_attach(&b, name, SHMKIT_RDONLY);
    if (r < 0)
        return cli_error(name, r);
    k = shmkit_block_kind(b);
    switch (k) {
    case SHMKIT_KIND_LIST:
        r = cli_show_list(b, json);
        break;
    case SHMKIT_KIND_ARRAY:
    case SHMKIT_KIND_VALUE:
    case SHMKIT_KIND_LOCK:
        r = cli_show_typed(b, k, json);
        break;
    default:
        r = cli_error(name, SHMKIT_EKIND);
        fprintf(stderr, "shmkit: %s holds raw bytes (%zu); nothing to decode\n",
                name, shmkit_block_size(b));
        break;
    }
    shmkit_block_close(b);
    return r;
}
