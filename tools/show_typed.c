/*
 * show_typed.c - `shmkit show` for Values, Arrays and named locks.
 *
 * The block is attached read-only, so nothing here takes a lock: values
 * are a snapshot that a writer may be changing meanwhile. Text shows an
 * array nested by its shape and elided in the middle when large, as NumPy
 * does; JSON shows it flat with its shape, the first JSON_MAX_ITEMS items,
 * then "truncated": true.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "cli.h"

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
static void print_float(FILE *f, double v, bool json)
{
    char buf[40];
    int prec;

    if (json && !isfinite(v)) {
        fputs("null", f);
        return;
    }
    if (!isfinite(v)) {
        fputs(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", f);
        return;
    }
    for (prec = 1; prec < 17; prec++) { /* shortest that reads back */
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (prec == 17)
        snprintf(buf, sizeof buf, "%.17g", v);
    if (!json && !strpbrk(buf, ".e"))
        strcat(buf, ".0"); /* a float looks like one, as in Python */
    fputs(buf, f);
}

/* Prints a character item: c is a byte (CPython shows b'x'), u a code
 * point. */
static void print_char(FILE *f, uint32_t c, bool wide, bool json)
{
    char buf[5];
    size_t n = wide ? utf8_encode(c, buf) : 1;
    char *shown;

    if (!wide)
        buf[0] = (char)c;
    if (json) {
        cli_json_string(f, buf, n);
    } else if (wide && n > 0 && c != '\'') {
        buf[n] = 0;
        shown = cli_escape(buf, NULL); /* no control codes to the terminal */
        fprintf(f, "'%s'", shown ? shown : "?");
        free(shown);
    } else if (wide) {
        fprintf(f, "'\\U%08x'", (unsigned)c);
    } else if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
        fprintf(f, "b'%c'", (int)c);
    } else {
        fprintf(f, "b'\\x%02x'", c & 0xff);
    }
}

/* Prints item i of the array. Loads are memcpy: the data is aligned, but
 * a read-only snapshot needs no atomicity beyond the item's own. */
static void print_item(FILE *f, const shmkit_array *a, size_t i, bool json)
{
    const unsigned char *p = (const unsigned char *)shmkit_array_data(a) +
                             i * shmkit_array_itemsize(a);
    char tc = shmkit_array_typecode(a);
    int64_t v;

    switch (tc) {
    case 'f': { float x; memcpy(&x, p, sizeof x); print_float(f, x, json); return; }
    case 'd': { double d; memcpy(&d, p, sizeof d); print_float(f, d, json); return; }
    case '?': fputs(*p ? (json ? "true" : "True") : (json ? "false" : "False"),
                    f);
              return;
    case 'c': print_char(f, *p, false, json); return;
    case 'u': { wchar_t w; memcpy(&w, p, sizeof w);
                print_char(f, (uint32_t)w, true, json); return; }
    default: break;
    }
    shmkit_array_load(a, i, &v);
    if (tc == 'Q' || tc == 'L')
        fprintf(f, "%" PRIu64, (uint64_t)v);
    else
        fprintf(f, "%" PRId64, v);
}

static void print_shape(const shmkit_array *a)
{
    unsigned i, n = shmkit_array_ndim(a);

    putchar('[');
    for (i = 0; i < n; i++)
        printf("%s%zu", i ? ", " : "", shmkit_array_shape(a)[i]);
    putchar(']');
}

/* Prints the values flat, in C order, the first JSON_MAX_ITEMS. */
static void print_values_json(const shmkit_array *a)
{
    size_t n = shmkit_array_length(a), i;

    putchar('[');
    for (i = 0; i < n && i < JSON_MAX_ITEMS; i++) {
        if (i)
            fputs(", ", stdout);
        print_item(stdout, a, i, true);
    }
    putchar(']');
}

/* ---- text: nested rows, as NumPy prints an array ------------------------ */

/* Like NumPy's defaults: above THRESHOLD items, every axis longer than
 * 2 * EDGE_ITEMS shows its first and last EDGE_ITEMS and "..." between. */
#define THRESHOLD 1000
#define EDGE_ITEMS 3
#define LINE_WIDTH 75

enum nd_phase { PH_SCAN, PH_MEASURE, PH_PRINT };

struct nd {
    const shmkit_array *a;
    unsigned ndim;
    size_t shape[SHMKIT_ARRAY_MAXDIM], stride[SHMKIT_ARRAY_MAXDIM];
    bool cut;             /* summarize: elide the middle of long axes */
    enum nd_phase phase;  /* walks: scan floats' range, measure, print */
    size_t width;         /* the widest shown item */
    /* Floats, as NumPy prints them when no exponent is needed: the
     * decimal points aligned, at most 8 decimals, integral values as
     * "2.". `fixed` is false when NumPy would switch to exponents; they
     * are then right-aligned shortest reprs. */
    bool isfloat, fixed;
    double max, min;      /* of the shown finite nonzero magnitudes */
    size_t intw, fracw;   /* widest part before / after the point */
    int sci_prec, sci_exp; /* with exponents: most decimals, exponent digits */
};

/* Loads item i of a float array as a double. */
static double nd_load(const struct nd *s, size_t i)
{
    const unsigned char *p = (const unsigned char *)shmkit_array_data(s->a) +
                             i * shmkit_array_itemsize(s->a);
    float f;
    double d;

    if (shmkit_array_typecode(s->a) == 'f') {
        memcpy(&f, p, sizeof f);
        return f;
    }
    memcpy(&d, p, sizeof d);
    return d;
}

/* v with the fewest decimals (at most 8) that read back as v (as a float
 * for 'f'), trailing zeros dropped: "0.25", "2.", "0.33333333". Returns
 * the length of the part before the point. */
static size_t fixed_format(const struct nd *s, double v, char *buf, size_t len)
{
    bool single = shmkit_array_typecode(s->a) == 'f';
    char *dot;
    int prec;

    for (prec = 0; prec <= 8; prec++) {
        snprintf(buf, len, "%.*f", prec, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    if (prec > 8)
        snprintf(buf, len, "%.8f", v);
    if (!(dot = strchr(buf, '.'))) {
        strcat(buf, ".");
        dot = strchr(buf, '.');
    }
    for (prec = (int)strlen(buf) - 1; buf + prec > dot && buf[prec] == '0'; prec--)
        buf[prec] = 0;
    return (size_t)(dot - buf);
}

/* Scans or measures item i, or (printing) writes it padded into out. */
/* Decimals (at most 8) v needs in exponent form to read back; writes
 * it so formatted, exponent at least 2 digits, into buf. */
static int sci_format(const struct nd *s, double v, int prec, char *buf,
                      size_t len)
{
    bool single = shmkit_array_typecode(s->a) == 'f';

    if (prec >= 0) {
        snprintf(buf, len, "%#.*e", prec, v);
        return prec;
    }
    for (prec = 0; prec < 8; prec++) {
        snprintf(buf, len, "%#.*e", prec, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    return prec;
}

/* NumPy's exponent form: all with the same decimals and exponent digits
 * ("1.5e-05", "1.0e+00"). */
static void sci_item(const struct nd *s, double v, char *buf, size_t len)
{
    char *e;
    int x;

    sci_format(s, v, s->sci_prec, buf, len);
    if ((e = strchr(buf, 'e'))) {
        x = atoi(e + 1);
        snprintf(e, len - (size_t)(e - buf), "e%c%0*d", x < 0 ? '-' : '+',
                 s->sci_exp, x < 0 ? -x : x);
    }
}

static void nd_item(struct nd *s, size_t i, char *out, size_t cap)
{
    char buf[400], *e;
    FILE *f;
    size_t len, ip;
    double v = s->isfloat ? nd_load(s, i) : 0;
    int p;

    if (s->phase == PH_SCAN) {
        if (isfinite(v)) {
            p = sci_format(s, v, -1, buf, sizeof buf);
            s->sci_prec = p > s->sci_prec ? p : s->sci_prec;
            e = strchr(buf, 'e');
            p = e ? (int)strlen(e + 2) : 2;
            s->sci_exp = p > s->sci_exp ? p : s->sci_exp;
        }
        v = fabs(v);
        if (isfinite(v) && v != 0) {
            s->max = v > s->max ? v : s->max;
            s->min = s->min == 0 || v < s->min ? v : s->min;
        }
        return;
    }
    if (s->isfloat && !s->fixed && isfinite(v)) {
        sci_item(s, v, buf, sizeof buf);
        len = strlen(buf);
        if (s->phase == PH_MEASURE)
            s->width = len > s->width ? len : s->width;
        else
            snprintf(out, cap, "%*s", (int)s->width, buf);
        return;
    }
    if (s->fixed && isfinite(v)) {
        ip = fixed_format(s, v, buf, sizeof buf);
        len = strlen(buf);
        if (s->phase == PH_MEASURE) {
            s->intw = ip > s->intw ? ip : s->intw;
            s->fracw = len - ip - 1 > s->fracw ? len - ip - 1 : s->fracw;
        } else {
            snprintf(out, cap, "%*s%-*s", (int)(s->intw - ip), "",
                     (int)(s->intw + 1 + s->fracw - (s->intw - ip)), buf);
        }
        return;
    }
    if (!(f = fmemopen(buf, sizeof buf, "w")))
        return;
    print_item(f, s->a, i, false);
    len = (size_t)ftell(f);
    fclose(f);
    buf[len < sizeof buf ? len : sizeof buf - 1] = 0;
    len = strlen(buf);
    if (s->phase == PH_MEASURE)
        s->width = len > s->width ? len : s->width;
    else
        snprintf(out, cap, "%*s", (int)s->width, buf);
}

/* A row being printed: its length so far (with the separator after the
 * previous word) and the spaces owed before the next word (the previous
 * word's right padding and the separator). */
struct nd_row {
    size_t col, owed;
};

/* Prints the next word of a row (an item, or "..."), wrapping as NumPy
 * does at LINE_WIDTH: a wrapped line loses its trailing spaces, and the
 * next starts at the row's indent. */
static void nd_word(struct nd *s, unsigned d, struct nd_row *r,
                    const char *dots, size_t i)
{
    size_t indent = d + 1, limit = LINE_WIDTH - d - 1, w, core;
    char buf[400];

    if (dots)
        snprintf(buf, sizeof buf, "%s", dots);
    else
        nd_item(s, i, buf, sizeof buf);
    w = strlen(buf);
    for (core = w; core > 0 && buf[core - 1] == ' '; core--)
        ;
    if (r->col + w > limit && r->col > indent) {
        printf("\n%*s", (int)indent, "");
        r->col = indent;
    } else {
        printf("%*s", (int)r->owed, "");
    }
    printf("%.*s", (int)core, buf);
    r->owed = w - core + 1;
    r->col += w + 1;
}

/* Prints the sub-array of axis d that starts at item base. */
static void nd_walk(struct nd *s, unsigned d, size_t base)
{
    struct nd_row row = {d + 1, 0};
    size_t n = s->shape[d], i;
    bool cut = s->cut && n > 2 * EDGE_ITEMS, last = d + 1 == s->ndim;
    bool print = s->phase == PH_PRINT;
    unsigned k;

    if (print)
        putchar('[');
    for (i = 0; i < n; i++) {
        if (cut && i == EDGE_ITEMS) {
            if (print && last) {
                nd_word(s, d, &row, "...", 0);
            } else if (print) {
                for (k = d + 1; k < s->ndim; k++)
                    putchar('\n'); /* a blank line between 2-D blocks */
                printf("%*s...", (int)d + 1, "");
            }
            i = n - EDGE_ITEMS;
        }
        if (print && !last && i) {
            for (k = d + 1; k < s->ndim; k++)
                putchar('\n');
            printf("%*s", (int)d + 1, "");
        }
        if (last && print)
            nd_word(s, d, &row, NULL, base + i);
        else if (last)
            nd_item(s, base + i, NULL, 0);
        else
            nd_walk(s, d + 1, base + i * s->stride[d]);
    }
    if (print && last && row.owed > 1)
        printf("%*s", (int)row.owed - 1, ""); /* the last item's padding */
    if (print)
        putchar(']');
}

/* Prints the values nested by the array's shape, NumPy style. */
static void print_values_text(const shmkit_array *a)
{
    struct nd s = {.a = a, .ndim = shmkit_array_ndim(a)};
    unsigned d;

    if (s.ndim == 0) {
        print_item(stdout, a, 0, false);
        return;
    }
    for (d = 0; d < s.ndim; d++)
        s.shape[d] = shmkit_array_shape(a)[d];
    s.stride[s.ndim - 1] = 1;
    for (d = s.ndim - 1; d > 0; d--)
        s.stride[d - 1] = s.stride[d] * s.shape[d];
    s.cut = shmkit_array_length(a) > THRESHOLD;
    s.isfloat = strchr("fd", shmkit_array_typecode(a)) != NULL;
    s.sci_exp = 2;
    if (s.isfloat) {
        s.phase = PH_SCAN;
        nd_walk(&s, 0, 0);
        /* NumPy's rule for exponents: a large or tiny magnitude, or a
         * wide range. */
        s.fixed = s.max < 1e8 && (s.min == 0 || (s.min >= 1e-4 &&
                                                 s.max / s.min <= 1e3));
    }
    s.phase = PH_MEASURE;
    nd_walk(&s, 0, 0);
    if (s.fixed && s.intw + 1 + s.fracw > s.width)
        s.width = s.intw + 1 + s.fracw; /* nan and inf pad to it */
    else if (s.fixed)
        s.intw = s.width - 1 - s.fracw; /* numbers pad to a wider nan */
    s.phase = PH_PRINT;
    nd_walk(&s, 0, 0);
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
        char *shown = cli_escape(name, NULL);
        printf("%s: %s of '%c' (%zu bytes each), shape ", shown ? shown : "?",
               shmkit_kind_name(kind), tc, shmkit_array_itemsize(a));
        free(shown);
        print_shape(a);
        fputs(kind == SHMKIT_KIND_VALUE ? "\nvalue: " : "\nvalues:\n", stdout);
    }
    if (kind == SHMKIT_KIND_VALUE)
        print_item(stdout, a, 0, json);
    else if (json)
        print_values_json(a);
    else
        print_values_text(a);
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
        char *shown = cli_escape(name, NULL);
        printf("%s: %slock with condition\nstate: %s", shown ? shown : "?",
               in.recursive ? "recursive " : "", lock_state(&in));
        free(shown);
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
