/*
 * help.c - the one source of the command's documentation: each
 * subcommand's synopsis, description and options live in the table below,
 * and both `shmkit help [COMMAND]` / `shmkit COMMAND --help` and the man
 * page shmkit(1) (`shmkit help --man`, which the build runs and installs)
 * are printed from it, so they cannot disagree.
 *
 * Text is plain: paragraphs separated by an empty line, lines wrapped at
 * 76 columns. The man printer escapes it for roff.
 */
#include <string.h>

#include "cli.h"

const struct cli_command cli_commands[] = {
    {"ls", cli_ls, "[--json] [--bytes]",
     "list shared memory objects",
     "Lists every object in /dev/shm, one per line: name, size, owner,\n"
     "mode, modification time, kind (raw, list, array, value, lock,\n"
     "queue, sidecar, empty, not-shm or ? when unreadable), lifecycle (who\n"
     "removes it: tracked by a process family, a reference count, a\n"
     "manager, or - for nobody), the pids that map it, and contents: for\n"
     "a queue, the messages waiting, bytes used / capacity, and how many\n"
     "producers wait in put and consumers in get (\"3 msgs, 4.0 KiB/16 MiB,\n"
     "waiting: 0 put 1 get\"; - for other kinds). Columns are as\n"
     "wide as their content; on a terminal, names too long for the screen\n"
     "end in an ellipsis. Bytes that are not printable in a name are\n"
     "escaped (\\n, \\t, \\xHH), so a hostile name cannot send escape\n"
     "sequences to your terminal.",
     {{"--json", "one JSON array of objects: names whole and exact, sizes\n"
                 "in bytes, modification time in ISO 8601; a queue's has\n"
                 "\"queue\": {depth, bytes_used, capacity, reserved, loaned,\n"
                 "waiting_producers, waiting_consumers, ...} (null if\n"
                 "unreadable)"},
      {"--bytes", "sizes in bytes instead of KiB, MiB, GiB"}}},
    {"info", cli_info, "NAME [--json] [--bytes]",
     "one object in detail",
     "Prints what ls prints for one object, one field a line, with the\n"
     "path and the exact size; for a queue, its depth (and messages being\n"
     "written or read), bytes used of its capacity, and the producers and\n"
     "consumers waiting. NAME may start with '/'.",
     {{"--json", "one JSON object, the same fields as ls --json"},
      {"--bytes", "the size in bytes only"}}},
    {"show", cli_show, "NAME [--json]",
     "decode a ShareableList, Value, Array, lock or queue",
     "Decodes the object by its kind: a ShareableList (shmkit's or\n"
     "CPython's) item by item in Python's repr style; a Value; an Array\n"
     "with its shape, rows nested and the middle elided when large, as\n"
     "NumPy prints it; a named lock's state; a queue's capacity, depth,\n"
     "waiters, the processes attached (those that made a record) and its\n"
     "liveness slots in use (pid, thread, died, waited on). A raw block\n"
     "has no layout to decode: show says so in one\n"
     "line and exits 1. Nothing is locked: values are a snapshot a writer\n"
     "may be changing.",
     {{"--json", "one JSON object: str as strings, bytes as\n"
                 "{\"bytes\": BASE64}, arrays flat with their shape (at most\n"
                 "1000 values, then \"truncated\": true)"}}},
    {"rm", cli_rm, "[--] NAME...",
     "unlink objects",
     "Unlinks each NAME: the name goes, processes that map the object keep\n"
     "their mapping until they close it. A list's lock goes with its list.\n"
     "Use -- before a NAME that starts with '-'.",
     {{NULL, NULL}}},
    {"gc", cli_gc, "[--dry-run]",
     "remove what dead owners left behind",
     "Removes objects whose lifetime owner is gone: blocks of a tracked\n"
     "process family that no longer exists, reference-count sidecars and\n"
     "their blocks whose holders all died, temporaries of creators killed\n"
     "half way, orphaned list locks. Only your own objects. On a terminal\n"
     "it shows its progress on stderr.",
     {{"-n, --dry-run", "print what would be removed, remove nothing"}}},
    {"manager", cli_manager, "[--socket PATH] [--authkey-file FILE] [--quiet]",
     "run the manager daemon",
     "Runs a manager in the foreground until shut down (by a client, or\n"
     "SIGINT/SIGTERM): blocks, lists and queues created through it are\n"
     "removed when it shuts down, and a restarted manager removes what a\n"
     "crashed one left. It\n"
     "prints the socket path and its pid once it listens. The socket's\n"
     "directory must be private: owned by you and mode 0700 (created so if\n"
     "missing).",
     {{"--socket PATH", "listen on PATH (default: manager.sock in the\n"
                        "runtime directory, $SHMKIT_RUNTIME_DIR or\n"
                        "$XDG_RUNTIME_DIR/shmkit)"},
      {"--authkey-file FILE", "clients must prove they know the key in\n"
                              "FILE (at most 64 bytes, a file only you may\n"
                              "read)"},
      {"-q, --quiet", "print nothing when ready"}}},
    {"demo", cli_demo, "[--workers N] [--size N]",
     "the parallel demo",
     "Part 1: an array of N uint32 in one named block, transformed in place\n"
     "by worker processes that attach by name, timed with one worker and\n"
     "with --workers, beside memcpy's bandwidth, then verified. Part 2:\n"
     "hands 1/256, 1/16 and all of the array's bytes to another process\n"
     "by value (through a pipe) and by name, timed side by side (with the\n"
     "default size: 1 MiB, 16 MiB and 256 MiB). On a terminal it shows\n"
     "progress on stderr.",
     {{"--workers N", "worker processes (default: the number of CPUs)"},
      {"--size N", "items in the array, at least 1Mi (4 MiB), at most 4Gi;\n"
                   "suffixes K, M, G (powers of 1000) and Ki, Mi, Gi\n"
                   "(powers of 1024); default 64Mi (256 MiB)"}}},
    {"version", NULL, "", "print the version", "Prints \"shmkit VERSION\".",
     {{NULL, NULL}}},
    {"help", NULL, "[COMMAND | --man]", "print help",
     "Prints the list of commands, or one command's help (the same as\n"
     "shmkit COMMAND --help), or with --man this manual page in roff.",
     {{NULL, NULL}}},
    {NULL, NULL, NULL, NULL, NULL, {{NULL, NULL}}},
};

const struct cli_command *cli_command_find(const char *name)
{
    const struct cli_command *c;

    for (c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

bool cli_wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* Writes text with every line indented by `indent` spaces. */
static void put_indented(FILE *f, const char *text, int indent)
{
    const char *p = text;

    while (*p) {
        size_t n = strcspn(p, "\n");
        if (n)
            fprintf(f, "%*s%.*s", indent, "", (int)n, p);
        fputc('\n', f);
        p += n;
        if (*p)
            p++;
    }
}

int cli_usage(FILE *f)
{
    const struct cli_command *c;

    fprintf(f, "usage: shmkit COMMAND [ARGS]\n\n"
               "Named shared memory for the processes of one host: inspect,\n"
               "decode and remove objects in /dev/shm, run a manager, run the\n"
               "demo.\n\ncommands:\n");
    for (c = cli_commands; c->name; c++)
        fprintf(f, "  %-9s %s\n", c->name, c->summary);
    fprintf(f, "\n'shmkit help COMMAND' or 'shmkit COMMAND --help' for one "
               "command; 'man shmkit'.\n");
    return f == stdout ? 0 : 2;
}

int cli_help(FILE *f, const char *name)
{
    const struct cli_command *c = cli_command_find(name);
    size_t i;

    if (!c)
        return cli_usage_error("help: unknown command '%s'", name);
    fprintf(f, "usage: shmkit %s%s%s\n\n", c->name, *c->args ? " " : "",
            c->args);
    put_indented(f, c->text, 0);
    fprintf(f, "\noptions:\n");
    for (i = 0; i < CLI_MAX_OPTS && c->opts[i].flag; i++) {
        fprintf(f, "  %s\n", c->opts[i].flag);
        put_indented(f, c->opts[i].text, 6);
    }
    fprintf(f, "  -h, --help\n      print this help\n");
    return 0;
}

/* ---- the man page ---------------------------------------------------------- */

/* Writes text as roff: '-' and '\' escaped, no line starting with a
 * control character, an empty line a new paragraph. */
static void roff_text(FILE *f, const char *text)
{
    bool bol = true;
    const char *p;

    for (p = text; *p; p++) {
        if (bol && *p == '\n') {
            fputs(".PP\n", f);
            continue;
        }
        if (bol && (*p == '.' || *p == '\''))
            fputs("\\&", f);
        bol = *p == '\n';
        if (*p == '-')
            fputs("\\-", f);
        else if (*p == '\\')
            fputs("\\e", f);
        else
            fputc(*p, f);
    }
    if (!bol)
        fputc('\n', f);
}

static void roff_command(FILE *f, const struct cli_command *c)
{
    size_t i;

    fprintf(f, ".TP\n\\fBshmkit %s\\fR ", c->name);
    if (*c->args)
        roff_text(f, c->args);
    else
        fputc('\n', f);
    roff_text(f, c->text);
    for (i = 0; i < CLI_MAX_OPTS && c->opts[i].flag; i++) {
        fputs(".RS\n.TP\n.B ", f);
        roff_text(f, c->opts[i].flag);
        roff_text(f, c->opts[i].text);
        fputs(".RE\n", f);
    }
}

int cli_man(FILE *f)
{
    const struct cli_command *c;

    fprintf(f, ".\\\" Generated by 'shmkit help --man' from tools/help.c.\n"
               ".TH SHMKIT 1 \"\" \"shmkit %s\" \"User Commands\"\n"
               ".SH NAME\nshmkit \\- inspect and manage named shared memory\n"
               ".SH SYNOPSIS\n.B shmkit\n.I COMMAND\n[\\fIARGS\\fR]\n"
               ".SH DESCRIPTION\n",
            shmkit_version());
    roff_text(f,
              "shmkit is the command of the shmkit library: named shared\n"
              "memory for the processes of one host, from C (libshmkit),\n"
              "Python (import shmkit) and CPython's own\n"
              "multiprocessing.shared_memory, which it reads byte for byte.\n"
              "Every object is a POSIX shared memory object in /dev/shm.\n"
              "\n"
              "Every command takes -h or --help.\n");
    fputs(".SH COMMANDS\n", f);
    for (c = cli_commands; c->name; c++)
        roff_command(f, c);
    fputs(".SH NAMES\n", f);
    roff_text(f, "A name is 1 to 255 bytes, without '/' (one leading '/' is\n"
                 "accepted and dropped), and not . or ..; a bad name is\n"
                 "refused with the reason.\n");
    fputs(".SH EXIT STATUS\n", f);
    roff_text(f, "0 on success, 1 when an operation failed (one line on\n"
                 "stderr names the object, the reason and the error code),\n"
                 "2 for a usage error.\n");
    fputs(".SH ENVIRONMENT\n", f);
    roff_text(f, "SHMKIT_RUNTIME_DIR: where trackers, journals and the\n"
                 "default manager socket live (default\n"
                 "$XDG_RUNTIME_DIR/shmkit, else /tmp/shmkit-UID), a directory\n"
                 "of yours with mode 0700.\n");
    fputs(".SH FILES\n.TP\n.B /dev/shm\nthe objects themselves\n", f);
    fputs(".SH EXAMPLES\n.nf\n"
          "$ shmkit ls\n"
          "$ shmkit show jobs\n"
          "$ shmkit info \\-\\-json frames\n"
          "$ shmkit rm \\-\\- \\-oddly\\-named\n"
          "$ shmkit gc \\-\\-dry\\-run\n"
          ".fi\n", f);
    fputs(".SH SEE ALSO\n.BR shm_overview (7),\n.BR shm_open (3)\n", f);
    return 0;
}
