/*
 * cli.h - what the shmkit command's subcommand files share.
 *
 * Each subcommand is `int cli_NAME(int argc, char **argv)` (argv[0] is the
 * subcommand) returning the process exit status. Errors are one line on
 * stderr naming the object and the reason, via cli_error().
 */
#ifndef SHMKIT_CLI_H
#define SHMKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shmkit.h"

/* Prints "shmkit: <what>: <reason> (<ERRNAME>)" to stderr; returns 1. */
int cli_error(const char *what, int code);

/* Like cli_error() for a NAME the user gave: a name the library refuses
 * says why ("shmkit: a/b: name contains '/' ...: Invalid argument
 * (EINVAL)"). Returns 1. */
int cli_name_error(const char *name, int code);

/* Prints "shmkit: <what>: [<detail>: ]<reason> (<ERRNAME>)", what escaped
 * for the terminal. */
void cli_print_error_detail(const char *what, int code, const char *detail);

/* Prints "shmkit: <message>" to stderr; returns 2 (usage errors). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes s (len bytes, may hold NULs or invalid UTF-8) as a JSON string
 * literal, quotes included; invalid UTF-8 bytes become U+FFFD. */
void cli_json_string(FILE *f, const char *s, size_t len);

/* Writes len bytes as standard base64 (no quotes). */
void cli_base64(FILE *f, const void *data, size_t len);

/* Runs fn(arg) with SIGBUS caught: a peer may truncate a block while we
 * read it, and `ls`/`show` read blocks of other processes (even other
 * users'). SIGSEGV is not caught: it would be a bug of ours. Returns fn's
 * result, or SHMKIT_ETRUNCATED if a fault interrupted it. Not reentrant;
 * for the CLI's single thread. */
int cli_guarded(int (*fn)(void *arg), void *arg);

/* Parses argv[1..argc): an argument equal to flags[f] (a NULL-ended
 * list, or NULL for none) sets set[f]; other arguments starting with '-'
 * are usage errors; the rest (and everything after "--") go to pos, at
 * most maxpos of them. Returns how many positionals, or -1 after printing
 * a usage error (exit status 2). */
int cli_args(int argc, char **argv, const char *cmd, const char *const flags[],
             bool set[], char **pos, int maxpos);

/* Writes bytes for people: "512 B", "1.5 KiB", "385 MiB". */
void cli_format_size(char *buf, size_t len, unsigned long long bytes);

/* A malloc'd copy of s safe to print on a terminal: valid UTF-8 kept,
 * backslash, \n, \t, \r as two-character escapes, other control bytes
 * and invalid UTF-8 as \xHH, C1/bidi/separator code points as \uHHHH.
 * *width (if not NULL) gets its display width in columns. NULL if out of
 * memory. */
char *cli_escape(const char *s, size_t *width);

/* Length of the valid UTF-8 sequence at s (at most n bytes, n >= 1), its
 * code point in *cp; 0 if it is not valid UTF-8 (overlong, surrogate, past
 * U+10FFFF, cut short). */
size_t cli_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Columns s takes on a terminal (wide East Asian characters take two,
 * combining marks none). */
size_t cli_display_width(const char *s);

/* Cuts an escaped string to at most width columns, the last one an
 * ellipsis, if it is wider. */
void cli_truncate(char *s, size_t width);

/* Prints s (width columns wide) padded to `to` columns, on the left if
 * right-aligned. */
void cli_print_padded(const char *s, size_t width, size_t to, bool right);

/* Columns of the terminal on stdout, or 0 if stdout is not a terminal. */
int cli_terminal_width(void);

/* A status line on stderr, rewritten in place, only when stderr is a
 * terminal; at most ten updates a second unless force. */
void cli_progress(bool force, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Erases the status line, if one is shown. */
void cli_progress_done(void);

/* Subcommands. */
int cli_ls(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_manager(int argc, char **argv);

/* ---- the command table and its documentation (help.c) ------------------ */

#define CLI_MAX_OPTS 4

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* NULL: handled by main() */
    const char *args;                  /* synopsis after the name */
    const char *summary;               /* one line for the command list */
    const char *text;                  /* description, plain text */
    struct {
        const char *flag, *text;
    } opts[CLI_MAX_OPTS];              /* ends at a NULL flag */
};

/* Every command, ending with a NULL name. */
extern const struct cli_command cli_commands[];

/* The command called name, or NULL. */
const struct cli_command *cli_command_find(const char *name);

/* True if -h or --help comes before any "--" in argv[1..argc). */
bool cli_wants_help(int argc, char **argv);

/* Prints the list of commands; returns 0 for stdout, 2 otherwise. */
int cli_usage(FILE *f);

/* Prints one command's help; returns 0, or 2 for an unknown command. */
int cli_help(FILE *f, const char *name);

/* Prints the manual page shmkit(1) in roff; returns 0. */
int cli_man(FILE *f);

/* Kind-specific printers for `show`, each in its own file. They print the
 * block's decoded contents to stdout (JSON object if json) and return the
 * exit status. */
int cli_show_list(shmkit_block *b, bool json);
int cli_show_typed(shmkit_block *b, shmkit_kind kind, bool json);
int cli_show_queue(shmkit_block *b, bool json);

/* A queue's figures (shmkit_queue_parse over b's mapping: run it under
 * cli_guarded). 0, or the parse's error (SHMKIT_ECORRUPT, ...). The one
 * source of what show, ls and info print about a queue. */
int cli_queue_figures(shmkit_block *b, shmkit_queue_info *in);

/* Writes a queue's figures as JSON object members (no braces): version,
 * capacity, max_message, max_messages, depth, reserved, loaned,
 * bytes_used, waiting_producers, waiting_consumers. */
void cli_queue_json_members(FILE *f, const shmkit_queue_info *in);

/* One line for `ls`: "3 msgs, 4.0 KiB/16 MiB, waiting: 0 put 1 get"
 * (depth, bytes used / capacity, producers blocked in put and consumers
 * blocked in get); sizes exact if bytes. */
void cli_queue_summary(char *buf, size_t len, const shmkit_queue_info *in,
                       bool bytes);

/* The queue's lines of `info` (depth, used, waiting) on stdout. */
void cli_queue_info_lines(const shmkit_queue_info *in, bool bytes);

/* Lifecycle of a block for `ls`/`info`: writes e.g. "tracked by pid 123",
 * "refcount 2", "manager 456" or "-" into buf. */
void cli_lifecycle_of(const char *name, char *buf, size_t len);

#endif
