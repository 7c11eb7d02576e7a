/* show.c - `shmkit show NAME [--json]`: decodes a block by its kind. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct show {
    shmkit_block *b;
    bool json;
};

/* A raw block has no layout: one line that says what it is instead. */
static int show_raw(shmkit_block *b)
{
    char *shown = cli_escape(shmkit_block_name(b), NULL), size[32];

    cli_format_size(size, sizeof size, shmkit_block_size(b));
    fprintf(stderr, "shmkit: %s: raw bytes (%s), not a list, array, value, "
                    "lock or queue: nothing to decode (SHMKIT_EKIND)\n",
            shown ? shown : "?", size);
    free(shown);
    return 1;
}

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
    case SHMKIT_KIND_QUEUE:
        return cli_show_queue(s->b, s->json);
    default:
        return show_raw(s->b);
    }
}

int cli_show(int argc, char **argv)
{
    static const char *const flags[] = {"--json", NULL};
    char *name = NULL;
    bool json = false;
    struct show s;
    shmkit_block *b;
    int r;

    r = cli_args(argc, argv, "show", flags, &json, &name, 1);
    if (r < 0)
        return 2;
    if (r == 0)
        return cli_usage_error("show: expected NAME");
    r = shmkit_block_attach(&b, name, SHMKIT_RDONLY);
    if (r < 0)
        return cli_name_error(name, r);
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
