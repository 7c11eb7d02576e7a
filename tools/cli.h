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
#include <stdio.h>

#include "shmkit.h"

/* Prints "shmkit: <what>: <reason> (<ERRNAME>)" to stderr; returns 1. */
int cli_error(const char *what, int code);

/* Prints "shmkit: <message>" to stderr; returns 2 (usage errors). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes s (len bytes, may hold NULs or invalid UTF-8) as a JSON string
 * literal, quotes included; invalid UTF-8 bytes become U+FFFD. */
void cli_json_string(FILE *f, const char *s, size_t len);

/* Writes len bytes as standard base64 (no quotes). */
void cli_base64(FILE *f, const void *data, size_t len);

/* Runs fn(arg) with SIGBUS and SIGSEGV caught: a peer may truncate a
 * block while we read it, and `ls`/`show` read blocks of other processes
 * (even other users'). Returns fn's result, or SHMKIT_ETRUNCATED if a
 * fault interrupted it. Not reentrant; for the CLI's single thread. */
int cli_guarded(int (*fn)(void *arg), void *arg);

/* Subcommands. */
int cli_ls(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_manager(int argc, char **argv);

/* Kind-specific printers for `show`, each in its own file. They print the
 * block's decoded contents to stdout (JSON object if json) and return the
 * exit status. */
int cli_show_list(shmkit_block *b, bool json);
int cli_show_typed(shmkit_block *b, shmkit_kind kind, bool json);

/* Lifecycle of a block for `ls`/`info`: writes e.g. "tracked by pid 123",
 * "refcount 2", "manager 456" or "-" into buf. */
void cli_lifecycle_of(const char *name, char *buf, size_t len);

#endif
