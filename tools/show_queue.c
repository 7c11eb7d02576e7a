/*
 * show_queue.c - a queue's figures for `shmkit show`, `ls` and `info`:
 * capacity, depth, messages in flight, bytes used and who is waiting.
 *
 * The block is attached read-only, so the queue's mutex is not taken: the
 * figures are a snapshot that producers and consumers may be changing
 * meanwhile (shmkit_queue_parse copies and checks every field it reads).
 * Every command gets them from cli_queue_figures() and prints them with
 * the helpers below, so show, ls and info always agree. `show` also lists
 * the liveness slots in use (shmkit_queue_slots): which process holds
 * each, through which thread, and whether it died or has waiters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The liveness slots in use, one line each (version 2). */
static void show_slots(shmkit_block *b, const shmkit_queue_info *in)
{
    shmkit_queue_slot sl[128];
    int n, i;

    if (!in->slots) {
        printf("liveness:   none (a version-1 queue: waits behind a dead "
               "peer re-check in slices)\n");
        return;
    }
    n = shmkit_queue_slots(shmkit_block_data(b), shmkit_block_size(b), sl,
                           sizeof sl / sizeof *sl);
    printf("attached:   %u process%s holding %u of %u liveness slots\n",
           in->attached, in->attached == 1 ? "" : "es", in->slots_held,
           in->slots);
    for (i = 0; i < n && i < (int)(sizeof sl / sizeof *sl); i++)
        printf("  slot %3u: pid %d, thread %u%s%s\n", sl[i].index, sl[i].pid,
               sl[i].tid, sl[i].died ? ", died" : "",
               sl[i].waiters ? ", waited on" : "");
}

static void show_text(shmkit_block *b, const shmkit_queue_info *in)
{
    char *name = cli_escape(shmkit_block_name(b), NULL);
    char cap[32], used[32], largest[32];

    cli_format_size(cap, sizeof cap, in->capacity);
    cli_format_size(used, sizeof used, in->bytes_used);
    cli_format_size(largest, sizeof largest, in->max_message);
    printf("queue %s (version %u)\n", name ? name : "?", in->version);
    printf("capacity:   %s ring, largest message %s, ", cap, largest);
    if (in->max_messages)
        printf("at most %zu messages\n", in->max_messages);
    else
        printf("no message limit\n");
    printf("depth:      %zu message%s waiting\n", in->depth,
           in->depth == 1 ? "" : "s");
    printf("in flight:  %zu reserved (being written), %zu loaned "
           "(being read)\n", in->reserved, in->loaned);
    printf("bytes used: %s of %s\n", used, cap);
    printf("waiting:    %u producer%s, %u consumer%s\n", in->waiting_producers,
           in->waiting_producers == 1 ? "" : "s", in->waiting_consumers,
           in->waiting_consumers == 1 ? "" : "s");
    free(name);
    show_slots(b, in);
}

int cli_queue_figures(shmkit_block *b, shmkit_queue_info *in)
{
    return shmkit_queue_parse(shmkit_block_data(b), shmkit_block_size(b), in);
}

void cli_queue_json_members(FILE *f, const shmkit_queue_info *in)
{
    fprintf(f, "\"version\": %u, \"capacity\": %zu, \"max_message\": %zu, "
               "\"max_messages\": %zu, \"depth\": %zu, \"reserved\": %zu, "
               "\"loaned\": %zu, \"bytes_used\": %zu, "
               "\"waiting_producers\": %u, \"waiting_consumers\": %u, "
               "\"slots\": %u, \"slots_held\": %u, \"attached\": %u",
            in->version, in->capacity, in->max_message, in->max_messages,
            in->depth, in->reserved, in->loaned, in->bytes_used,
            in->waiting_producers, in->waiting_consumers, in->slots,
            in->slots_held, in->attached);
}

/* A size as `ls`/`info` print it: human, or exact bytes. */
static void size_text(char *buf, size_t len, size_t n, bool bytes)
{
    if (bytes)
        snprintf(buf, len, "%zu", n);
    else
        cli_format_size(buf, len, n);
}

void cli_queue_summary(char *buf, size_t len, const shmkit_queue_info *in,
                       bool bytes)
{
    char used[32], cap[32];

    size_text(used, sizeof used, in->bytes_used, bytes);
    size_text(cap, sizeof cap, in->capacity, bytes);
    snprintf(buf, len, "%zu msg%s, %s/%s, waiting: %u put %u get", in->depth,
             in->depth == 1 ? "" : "s", used, cap, in->waiting_producers,
             in->waiting_consumers);
}

void cli_queue_info_lines(const shmkit_queue_info *in, bool bytes)
{
    char used[32], cap[32];

    size_text(used, sizeof used, in->bytes_used, bytes);
    size_text(cap, sizeof cap, in->capacity, bytes);
    printf("depth:     %zu message%s waiting (%zu being written, %zu being "
           "read)\n", in->depth, in->depth == 1 ? "" : "s", in->reserved,
           in->loaned);
    printf("used:      %s of %s%s\n", used, cap, bytes ? " bytes" : "");
    printf("waiting:   %u producer%s, %u consumer%s\n", in->waiting_producers,
           in->waiting_producers == 1 ? "" : "s", in->waiting_consumers,
           in->waiting_consumers == 1 ? "" : "s");
}

static void show_json(shmkit_block *b, const shmkit_queue_info *in)
{
    const char *name = shmkit_block_name(b);

    fputs("{\"name\": ", stdout);
    cli_json_string(stdout, name, strlen(name));
    fputs(", \"kind\": \"queue\", ", stdout);
    cli_queue_json_members(stdout, in);
    fputs("}\n", stdout);
}

int cli_show_queue(shmkit_block *b, bool json)
{
    shmkit_queue_info in;
    int r = cli_queue_figures(b, &in);

    if (r < 0)
        return cli_error(shmkit_block_name(b), r);
    if (json)
        show_json(b, &in);
    else
        show_text(b, &in);
    return 0;
}
