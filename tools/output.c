/*
 * output.c - what the subcommands share for talking to people: argument
 * parsing, sizes for humans, names escaped for the terminal, widths, and
 * a progress line on stderr when it is a terminal.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_args(int argc, char **argv, const char *cmd, const char *const flags[],
             bool set[], char **pos, int maxpos)
{
    bool flags_done = false;
    int i, n = 0, f;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!flags_done && strcmp(a, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (!flags_done && a[0] == '-' && a[1]) {
            for (f = 0; flags && flags[f]; f++)
                if (strcmp(a, flags[f]) == 0)
                    break;
            if (!flags || !flags[f]) {
                cli_usage_error("%s: unknown option '%s' (a NAME starting "
                                "with '-' goes after --)", cmd, a);
                return -1;
            }
            set[f] = true;
            continue;
        }
        if (n == maxpos) {
            cli_usage_error("%s: unexpected argument '%s'", cmd, a);
            return -1;
        }
        pos[n++] = argv[i];
    }
    return n;
}

void cli_format_size(char *buf, size_t len, unsigned long long bytes)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB",
                                       "EiB"};
    double v = (double)bytes;
    int u = -1;

    if (bytes < 1024) {
        snprintf(buf, len, "%llu B", bytes);
        return;
    }
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    /* 1.5 KiB, 12 MiB, 385 MiB: two or three significant digits. */
    if (v < 9.95)
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    else if (v < 1023.5 || u == 5)
        snprintf(buf, len, "%.0f %s", v, unit[u]);
    else
        snprintf(buf, len, "1.0 %s", unit[u + 1]);
}

/* See cli.h. */
size_t cli_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len, i;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
        (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* Code points a terminal may act on rather than show: C1 controls, line
 * and paragraph separators, bidirectional overrides and isolates. */
static bool cp_is_control(uint32_t c)
{
    return (c >= 0x80 && c < 0xa0) || c == 0x200e || c == 0x200f ||
           (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* Columns a terminal gives code point c: 0 for combining marks and
 * zero-width joiners, 2 for East Asian wide and fullwidth forms and most
 * emoji, else 1. A small table of the common ranges, not all of Unicode's. */
static size_t cp_width(uint32_t c)
{
    static const uint32_t zero[][2] = {
        {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x1ab0, 0x1aff},
        {0x1dc0, 0x1dff}, {0x200b, 0x200d}, {0x20d0, 0x20ff}, {0xfe00, 0xfe0f},
        {0xfe20, 0xfe2f}};
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f}, {0x2e80, 0x303e}, {0x3041, 0x33ff}, {0x3400, 0x4dbf},
        {0x4e00, 0x9fff}, {0xa000, 0xa4cf}, {0xac00, 0xd7a3}, {0xf900, 0xfaff},
        {0xfe30, 0xfe4f}, {0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x2fffd}, {0x30000, 0x3fffd}};
    size_t i;

    for (i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (c >= zero[i][0] && c <= zero[i][1])
            return 0;
    for (i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (c >= wide[i][0] && c <= wide[i][1])
            return 2;
    return 1;
}

size_t cli_display_width(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str), i = 0, w = 0, k;
    uint32_t c;

    while (i < len) {
        k = cli_utf8_decode(s + i, len - i, &c);
        w += k ? cp_width(c) : 1;
        i += k ? k : 1;
    }
    return w;
}

char *cli_escape(const char *str, size_t *width)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str), i = 0, w = 0, o = 0;
    char *out = malloc(len * 6 + 1);
    uint32_t c;

    if (!out)
        return NULL;
    while (i < len) {
        size_t k = cli_utf8_decode(s + i, len - i, &c);
        if (k == 0) {
            o += (size_t)sprintf(out + o, "\\x%02x", s[i]);
            w += 4;
            i++;
            continue;
        }
        if (k > 1 && cp_is_control(c)) {
            o += (size_t)sprintf(out + o, "\\u%04x", (unsigned)c);
            w += 6;
        } else if (k > 1) {
            memcpy(out + o, s + i, k);
            o += k;
            w += cp_width(c);
        } else if (c == '\\' || c == '\n' || c == '\t' || c == '\r') {
            out[o++] = '\\';
            out[o++] = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
            w += 2;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)sprintf(out + o, "\\x%02x", (unsigned)c);
            w += 4;
        } else {
            out[o++] = (char)c;
            w++;
        }
        i += k;
    }
    out[o] = 0;
    if (width)
        *width = w;
    return out;
}

void cli_truncate(char *str, size_t width)
{
    unsigned char *s = (unsigned char *)str;
    size_t len = strlen(str), i = 0, w = 0, cut = 0, k, cw;
    uint32_t c;

    if (width == 0 || cli_display_width(str) <= width)
        return;
    while (i < len) {
        k = cli_utf8_decode(s + i, len - i, &c);
        cw = k ? cp_width(c) : 1;
        if (w + cw > width - 1)
            break; /* one column stays for the ellipsis */
        w += cw;
        i += k ? k : 1;
        cut = i;
    }
    strcpy(str + cut, "\xe2\x80\xa6"); /* U+2026, one column */
}

void cli_print_padded(const char *s, size_t width, size_t to, bool right)
{
    size_t pad = to > width ? to - width : 0;

    if (right)
        printf("%*s%s", (int)pad, "", s);
    else
        printf("%s%*s", s, (int)pad, "");
}

int cli_terminal_width(void)
{
    struct winsize ws;
    const char *c;

    if (!isatty(STDOUT_FILENO))
        return 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    c = getenv("COLUMNS");
    return c && atoi(c) > 0 ? atoi(c) : 80;
}

void cli_print_error_detail(const char *what, int code, const char *detail)
{
    char *w = cli_escape(what, NULL);

    fprintf(stderr, "shmkit: %s: %s%s%s (%s)\n", w ? w : "?",
            detail ? detail : "", detail ? ": " : "", shmkit_strerror(code),
            shmkit_errname(code));
    free(w);
}

/* ---- progress ---------------------------------------------------------------- */

static struct {
    int on;  /* -1 unknown, 0 no (stderr not a terminal), 1 yes */
    bool shown;
    double last;
} progress = {-1, false, 0};

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress(bool force, const char *fmt, ...)
{
    va_list ap;
    double now;

    if (progress.on < 0)
        progress.on = isatty(STDERR_FILENO);
    if (!progress.on)
        return;
    now = mono_now();
    if (!force && progress.shown && now - progress.last < 0.1)
        return; /* ten updates a second are plenty */
    progress.last = now;
    progress.shown = true;
    fputs("\r\033[K", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

void cli_progress_done(void)
{
    if (progress.on > 0 && progress.shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    progress.shown = false;
}
