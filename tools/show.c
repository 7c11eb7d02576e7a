/* show.c - `shmkit show NAME [--json]`: decodes a block by its kind. */
#include <string.h>

#include "cli.h"

struct show {
    shmkit_block *b;
    bool json;
};

/* Decodes the block by its kind; run under cli_guarded(). */
static int show_block(void *arg)
{
    struct show *s = arg;
    shmkit_kind k = shmkit_block_kind(s->b);

    switch (k) {
    case SHMKIT_KIND_LIST:
        return cli_show_list(s->b, s->json);
    case SHMKIT_KIND_ARRAY:
    case SHMKIT_KIND_VALUE:
    case SHMKIT_KIND_LOCK:
        return cli_show_typed(s->b, k, s->json);
    default:
        cli_error(shmkit_block_name(s->b), SHMKIT_EKIND);
        fprintf(stderr, "shmkit: %s holds raw bytes (%zu); nothing to decode\n",
                shmkit_block_name(s->b), shmkit_block_size(s->b));
        return 1;
    }
}

int cli_show(int argc, char **argv)
{
    const char *name = NULL;
    struct show s;
    shmkit_block *b;
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
    s.b = b;
    s.json = json;
    r = cli_guarded(show_block, &s);
    if (r < 0) {
        fflush(stdout);
        r = cli_error(name, r); /* shrunk under us while we read it */
    }
    shmkit_block_close(b);
    return r;
}
