/*
 * show_list.c - `shmkit show` for ShareableLists, ours or CPython's.
 *
 * Text: one line per item, values in Python's repr style. JSON:
 *   {"name": "...", "kind": "list", "format": "...", "items": [...]}
 * with str as JSON strings, bytes as {"bytes": "<base64>"}, None as null,
 * bool as true/false, int as a number, and float as a number that always
 * has a '.' or an exponent (so a reader can tell 1.0 from 1), shortest
 * round-trip digits like Python's repr. JSON has no inf or nan: those are
 * written {"float": "inf"}, {"float": "-inf"}, {"float": "nan"}, the same
 * tagged-object style as bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Shortest "%.Ng" that reads back as d, with ".0" added if it would look
 * like an int (Python's repr does the same). d must be finite. */
static void format_float(char *buf, size_t len, double d)
{
    int prec;

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strpbrk(buf, ".eE"))
        strncat(buf, ".0", len - strlen(buf) - 1);
}

static void json_float(FILE *f, double d)
{
    char buf[40];

    if (isnan(d) || isinf(d)) {
        fprintf(f, "{\"float\": \"%s\"}",
                isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
        return;
    }
    format_float(buf, sizeof buf, d);
    fputs(buf, f);
}

static void json_item(FILE *f, const shmkit_item *it)
{
    switch (it->type) {
    case SHMKIT_NONE:
        fputs("null", f);
        break;
    case SHMKIT_INT:
        fprintf(f, "%lld", (long long)it->v.i);
        break;
    case SHMKIT_FLOAT:
        json_float(f, it->v.f);
        break;
    case SHMKIT_BOOL:
        fputs(it->v.b ? "true" : "false", f);
        break;
    case SHMKIT_STR:
        cli_json_string(f, it->v.s.ptr, it->v.s.len);
        break;
    case SHMKIT_BYTES:
        fputs("{\"bytes\": \"", f);
        cli_base64(f, it->v.s.ptr, it->v.s.len);
        fputs("\"}", f);
        break;
    }
}

/* Python-style repr of str (UTF-8 passed through) or bytes. */
static void repr_s(FILE *f, const shmkit_item *it)
{
    const unsigned char *p = (const unsigned char *)it->v.s.ptr;
    size_t i;

    fputs(it->type == SHMKIT_BYTES ? "b'" : "'", f);
    for (i = 0; i < it->v.s.len; i++) {
        unsigned c = p[i];
        if (c == '\'' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n' || c == '\t' || c == '\r')
            fputs(c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\r", f);
        else if (c < 0x20 || c == 0x7f ||
                 (c >= 0x80 && it->type == SHMKIT_BYTES))
            fprintf(f, "\\x%02x", c);
        else
            fputc((int)c, f);
    }
    fputc('\'', f);
}

static void text_item(FILE *f, const shmkit_item *it)
{
    char buf[40];

    switch (it->type) {
    case SHMKIT_NONE:
        fputs("None", f);
        break;
    case SHMKIT_INT:
        fprintf(f, "%lld", (long long)it->v.i);
        break;
    case SHMKIT_FLOAT:
        if (isnan(it->v.f) || isinf(it->v.f))
            fputs(isnan(it->v.f) ? "nan" : it->v.f > 0 ? "inf" : "-inf", f);
        else
            format_float(buf, sizeof buf, it->v.f), fputs(buf, f);
        break;
    case SHMKIT_BOOL:
        fputs(it->v.b ? "True" : "False", f);
        break;
    case SHMKIT_STR:
    case SHMKIT_BYTES:
        repr_s(f, it);
        break;
    }
}

/* Reads every item first, so a corrupt item fails the command before any
 * output (no half-written JSON). *items is the caller's to free, also on
 * error. */
static int read_all(shmkit_list *l, shmkit_item **items)
{
    size_t n = shmkit_list_len(l), k;
    int r;

    *items = calloc(n ? n : 1, sizeof **items);
    if (!*items)
        return -ENOMEM;
    for (k = 0; k < n; k++) {
        r = shmkit_list_get(l, (ptrdiff_t)k, &(*items)[k]);
        if (r < 0)
            return r; /* the caller frees *items, once */
    }
    return 0;
}

static void print_json(const char *name, const char *fmt,
                       const shmkit_item *items, size_t n)
{
    size_t k;

    fputs("{\"name\": ", stdout);
    cli_json_string(stdout, name, strlen(name));
    fputs(", \"kind\": \"list\", \"format\": ", stdout);
    cli_json_string(stdout, fmt, strlen(fmt));
    fputs(", \"items\": [", stdout);
    for (k = 0; k < n; k++) {
        if (k)
            fputs(", ", stdout);
        json_item(stdout, &items[k]);
    }
    fputs("]}\n", stdout);
}

static void print_text(const char *name, const char *fmt,
                       const shmkit_item *items, size_t n)
{
    char *shown = cli_escape(name, NULL), *sfmt = cli_escape(fmt, NULL);
    size_t k;

    printf("%s: list of %zu item%s, format '%s'\n", shown ? shown : "?", n,
           n == 1 ? "" : "s", sfmt ? sfmt : "?");
    free(shown);
    free(sfmt);
    for (k = 0; k < n; k++) {
        printf("  [%zu] %-5s ", k, shmkit_type_name(items[k].type));
        text_item(stdout, &items[k]);
        putchar('\n');
    }
}

int cli_show_list(shmkit_block *b, bool json)
{
    const char *name = shmkit_block_name(b);
    shmkit_item *items = NULL;
    shmkit_list *l = NULL;
    char *fmt = NULL;
    size_t n;
    int r;

    r = shmkit_list_open_block(&l, b);
    if (r < 0)
        return cli_error(name, r);
    n = shmkit_list_len(l);
    fmt = malloc(8 * n + 1);
    r = fmt ? shmkit_list_format(l, fmt, 8 * n + 1, NULL) : -ENOMEM;
    if (r == 0)
        r = read_all(l, &items);
    if (r < 0) {
        r = cli_error(name, r);
        goto out;
    }
    if (json)
        print_json(name, fmt, items, n);
    else
        print_text(name, fmt, items, n);
    r = 0;
out:
    free(items);
    free(fmt);
    shmkit_list_close(l);
    return r;
}
