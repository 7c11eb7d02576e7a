/*
 * show_typed.c - `shmkit show` for Values, Arrays and named locks.
 *
 * The block is attached read-only, so nothing here takes a lock: values
 * are a snapshot that a writer may be changing meanwhile. Long arrays are
 * abbreviated: text shows the first and last few items, JSON the first
 * JSON_MAX_ITEMS with "truncated": true.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#include "cli.h"

#define TEXT_HEAD 10
#define TEXT_TAIL 5
#define JSON_MAX_ITEMS 1000

/* Writes code point c as UTF-8 into buf (>= 4 bytes); returns its length,
 * 0 for a value that is no code point. */
static size_t utf8_encode(uint32_t c, char *buf)
{
    if (c < 0x80) {
        buf[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        buf[0] = (char)(0xc0 | c >> 6);
        buf[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        if (c >= 0xd800 && c < 0xe000)
            return 0;
        buf[0] = (char)(0xe0 | c >> 12);
        buf[1] = (char)(0x80 | (c >> 6 & 0x3f));
        buf[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    if (c > 0x10ffff)
        return 0;
    buf[0] = (char)(0xf0 | c >> 18);
    buf[1] = (char)(0x80 | (c >> 12 & 0x3f));
    buf[2] = (char)(0x80 | (c >> 6 & 0x3f));
    buf[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Prints a floating item; JSON has no NaN or infinity, so null there. */
static void print_float(double v, bool json)
{
    if (json && !isfinite(v))
        fputs("null", stdout);
    else
        printf("%.17g", v);
}

/* Prints a character item: c is a byte (CPython shows b'x'), u a code
 * point. */
static void print_char(uint32_t c, bool wide, bool json)
{
    char buf[4];
    size_t n = wide ? utf8_encode(c, buf) : 1;

    if (!wide)
        buf[0] = (char)c;
    if (json)
        cli_json_string(stdout, buf, n);
    else if (wide)
        printf("'%.*s'", (int)n, buf);
    else if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
        printf("b'%c'", (int)c);
    else
        printf("b'\\x%02x'", c & 0xff);
}

/* Prints item i of the array. Loads are memcpy: the data is aligned, but
 * a read-only snapshot needs no atomicity beyond the item's own. */
static void print_item(const shmkit_array *a, size_t i, bool json)
{
    const unsigned char *p = (const unsigned char *)shmkit_array_data(a) +
                             i * shmkit_array_itemsize(a);
    char tc = shmkit_array_typecode(a);
    int64_t v;

    switch (tc) {
    case 'f': { float f; memcpy(&f, p, sizeof f); print_float(f, json); return; }
    case 'd': { double d; memcpy(&d, p, sizeof d); print_float(d, json); return; }
    case '?': fputs(*p ? (json ? "true" : "True") : (json ? "false" : "False"),
                    stdout);
              return;
    case 'c': print_char(*p, false, json); return;
    case 'u': { wchar_t w; memcpy(&w, p, sizeof w);
                print_char((uint32_t)w, true, json); return; }
    default: break;
    }
    shmkit_array_load(a, i, &v);
    if (tc == 'Q' || tc == 'L')
        printf("%" PRIu64, (uint64_t)v);
    else
        printf("%" PRId64, v);
}

static void print_shape(const shmkit_array *a)
{
    unsigned i, n = shmkit_array_ndim(a);

    putchar('[');
    for (i = 0; i < n; i++)
        printf("%s%zu", i ? ", " : "", shmkit_array_shape(a)[i]);
    putchar(']');
}

/* Prints the values flat, in C order, abbreviated past the limits. */
static void print_values(const shmkit_array *a, bool json)
{
    size_t n = shmkit_array_length(a), i;
    bool cut = json ? n > JSON_MAX_ITEMS : n > TEXT_HEAD + TEXT_TAIL;

    putchar('[');
    for (i = 0; i < n; i++) {
        if (cut && json && i == JSON_MAX_ITEMS)
            break;
        if (cut && !json && i == TEXT_HEAD) {
            fputs(", ...", stdout);
            i = n - TEXT_TAIL;
        }
        if (i)
            fputs(", ", stdout);
        print_item(a, i, json);
    }
    putchar(']');
}

static int show_array(shmkit_block *b, shmkit_kind kind, bool json)
{
    const char *name = shmkit_block_name(b);
    shmkit_array *a;
    char tc;
    int r;

    r = shmkit_array_view(&a, b);
    if (r < 0)
        return cli_error(name, r);
    tc = shmkit_array_typecode(a);
    if (json) {
        fputs("{\"name\": ", stdout);
        cli_json_string(stdout, name, strlen(name));
        printf(", \"kind\": \"%s\", \"typecode\": ", shmkit_kind_name(kind));
        cli_json_string(stdout, &tc, 1);
        printf(", \"itemsize\": %zu, \"shape\": ", shmkit_array_itemsize(a));
        print_shape(a);
        printf(", \"length\": %zu, \"%s\": ", shmkit_array_length(a),
               kind == SHMKIT_KIND_VALUE ? "value" : "values");
    } else {
        printf("%s: %s of '%c' (%zu bytes each), shape ", name,
               shmkit_kind_name(kind), tc, shmkit_array_itemsize(a));
        print_shape(a);
        fputs(kind == SHMKIT_KIND_VALUE ? "\nvalue: " : "\nvalues: ", stdout);
    }
    if (kind == SHMKIT_KIND_VALUE)
        print_item(a, 0, json);
    else
        print_values(a, json);
    if (json)
        printf("%s}", shmkit_array_length(a) > JSON_MAX_ITEMS &&
                              kind != SHMKIT_KIND_VALUE
                          ? ", \"truncated\": true"
                          : "");
    putchar('\n');
    shmkit_array_close(a);
    return 0;
}

/* One word for a lock's state. */
static const char *lock_state(const shmkit_mutex_info *in)
{
    if (in->not_recoverable)
        return "not recoverable";
    if (in->inconsistent)
        return "held, owner died, not yet repaired";
    if (in->owner_died)
        return "owner died; next locker repairs";
    return in->locked ? "held" : "free";
}

static int show_lock(shmkit_block *b, bool json)
{
    const char *name = shmkit_block_name(b);
    shmkit_mutex_info in;
    int r;

    r = shmkit_lock_parse(shmkit_block_data(b), shmkit_block_size(b), &in);
    if (r < 0)
        return cli_error(name, r);
    if (json) {
        fputs("{\"name\": ", stdout);
        cli_json_string(stdout, name, strlen(name));
        printf(", \"kind\": \"lock\", \"recursive\": %s, \"state\": \"%s\", "
               "\"owner_tid\": %ld, \"pid_ns\": %" PRIu64 "}\n",
               in.recursive ? "true" : "false", lock_state(&in),
               (long)in.owner_tid, in.pid_ns);
    } else {
        printf("%s: %slock with condition\nstate: %s", name,
               in.recursive ? "recursive " : "", lock_state(&in));
        if (in.owner_tid)
            printf(" (thread %ld)", (long)in.owner_tid);
        putchar('\n');
    }
    return 0;
}

int cli_show_typed(shmkit_block *b, shmkit_kind kind, bool json)
{
    if (kind == SHMKIT_KIND_LOCK)
        return show_lock(b, json);
    if (kind == SHMKIT_KIND_ARRAY || kind == SHMKIT_KIND_VALUE)
        return show_array(b, kind, json);
    return cli_error(shmkit_block_name(b), SHMKIT_EKIND);
}
