/*
 * shmkit.c - the shmkit command: dispatch, shared output helpers, and the
 * inspection subcommands ls, info and rm.
 *
 * The command is a client of the public API only (plus reading /proc to
 * find which processes map a block).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define SHM_DIR "/dev/shm"

int cli_error(const char *what, int code)
{
    fprintf(stderr, "shmkit: %s: %s (%s)\n", what, shmkit_strerror(code),
            shmkit_errname(code));
    return 1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("shmkit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'shmkit help')\n", stderr);
    return 2;
}

static sigjmp_buf fault_jmp;

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(fault_jmp, 1);
}

int cli_guarded(int (*fn)(void *arg), void *arg)
{
    struct sigaction sa = {.sa_handler = on_fault}, old_bus, old_segv;
    volatile int r = SHMKIT_ETRUNCATED;

    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus);
    sigaction(SIGSEGV, &sa, &old_segv);
    if (sigsetjmp(fault_jmp, 1) == 0)
        r = fn(arg);
    sigaction(SIGBUS, &old_bus, NULL);
    sigaction(SIGSEGV, &old_segv, NULL);
    return r;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t c;

    if (s[0] < 0x80)
        return 1;
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
    return len;
}

void cli_json_string(FILE *f, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    fputc('"', f);
    while (i < len) {
        size_t k = utf8_len(s + i, len - i);
        if (k == 0) {
            fputs("\\ufffd", f);
            i++;
        } else if (k > 1) {
            fwrite(s + i, 1, k, f);
            i += k;
        } else {
            unsigned char c = s[i++];
            if (c == '"' || c == '\\')
                fprintf(f, "\\%c", c);
            else if (c == '\n')
                fputs("\\n", f);
            else if (c == '\t')
                fputs("\\t", f);
            else if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void cli_base64(FILE *f, const void *data, size_t len)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        fputc(tab[v >> 18], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(tab[(v >> 6) & 63], f);
        fputc(tab[v & 63], f);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        fprintf(f, "%c%c==", tab[v >> 18], tab[(v >> 12) & 63]);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        fprintf(f, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63],
                tab[(v >> 6) & 63]);
    }
}

/* ---- which processes map which object ------------------------------------ */

struct mapper {
    char *name;
    long pid;
};

struct mappers {
    struct mapper *v;
    size_t n, cap;
};

static void mappers_add(struct mappers *m, const char *name, long pid)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        if (m->v[i].pid == pid && strcmp(m->v[i].name, name) == 0)
            return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct mapper *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n].name = strdup(name);
    if (m->v[m->n].name)
        m->v[m->n++].pid = pid;
}

/* Reads /proc/PID/maps of every process we may read and records each
 * mapping of an object in /dev/shm. */
static void mappers_scan(struct mappers *m)
{
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[300], line[4096];
        FILE *f;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/maps", e->d_name);
        if (!(f = fopen(path, "re")))
            continue;
        while (fgets(line, sizeof line, f)) {
            char *p = strstr(line, " " SHM_DIR "/"), *end;
            if (!p)
                continue;
            p += sizeof SHM_DIR + 1;
            end = p + strcspn(p, "\n");
            if (end - p > 10 && strcmp(end - 10, " (deleted)") == 0)
                continue; /* unlinked: not the object now at that name */
            *end = 0;
            mappers_add(m, p, atol(e->d_name));
        }
        fclose(f);
    }
    closedir(d);
}

static void mappers_free(struct mappers *m)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        free(m->v[i].name);
    free(m->v);
}

/* ---- ls and info ---------------------------------------------------------- */

struct entry {
    const char *name;
    struct stat st;
    const char *kind;
    char owner[64];
    char life[128];
};

static int probe_kind(void *b)
{
    return (int)shmkit_block_kind(b);
}

static void entry_fill(struct entry *e)
{
    struct passwd *pw = getpwuid(e->st.st_uid);
    shmkit_block *b;
    int r;

    if (pw)
        snprintf(e->owner, sizeof e->owner, "%s", pw->pw_name);
    else
        snprintf(e->owner, sizeof e->owner, "%ld", (long)e->st.st_uid);
    cli_lifecycle_of(e->name, e->life, sizeof e->life);
    if (!S_ISREG(e->st.st_mode)) {
        e->kind = "not-shm";
        return;
    }
    if (e->st.st_size == 0) {
        e->kind = "empty";
        return;
    }
    if (shmkit_block_attach(&b, e->name, SHMKIT_RDONLY | SHMKIT_ANYUSER) < 0) {
        e->kind = "?";
        return;
    }
    r = cli_guarded(probe_kind, b);
    e->kind = r < 0 ? "?" : shmkit_kind_name((shmkit_kind)r);
    shmkit_block_close(b);
}

static void print_pids(FILE *f, const struct mappers *m, const char *name,
                       bool json)
{
    size_t i;
    bool first = true;

    for (i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].name, name) != 0)
            continue;
        fprintf(f, json ? "%s%ld" : "%s%ld", first ? "" : ",", m->v[i].pid);
        first = false;
    }
    if (first && !json)
        fputc('-', f);
}

static void print_entry(const struct entry *e, const struct mappers *m,
                        bool json, bool first)
{
    char when[32];
    struct tm tm;

    localtime_r(&e->st.st_mtime, &tm);
    strftime(when, sizeof when, json ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M",
             &tm);
    if (!json) {
        printf("%-24s %12lld %-8s %04o %s %-7s %-20s ", e->name,
               (long long)e->st.st_size, e->owner,
               (unsigned)(e->st.st_mode & 07777), when, e->kind, e->life);
        print_pids(stdout, m, e->name, false);
        putchar('\n');
        return;
    }
    printf("%s\n  {\"name\": ", first ? "" : ",");
    cli_json_string(stdout, e->name, strlen(e->name));
    printf(", \"size\": %lld, \"owner\": ", (long long)e->st.st_size);
    cli_json_string(stdout, e->owner, strlen(e->owner));
    printf(", \"uid\": %ld, \"mode\": \"%04o\", \"mtime\": \"%s\", "
           "\"kind\": \"%s\", \"lifecycle\": ",
           (long)e->st.st_uid, (unsigned)(e->st.st_mode & 07777), when,
           e->kind);
    cli_json_string(stdout, e->life, strlen(e->life));
    printf(", \"pids\": [");
    print_pids(stdout, m, e->name, true);
    printf("]}");
}

static bool want_json(int argc, char **argv, int *rest)
{
    bool json = false;
    int i, j = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            argv[j++] = argv[i];
    }
    *rest = j;
    return json;
}

int cli_ls(int argc, char **argv)
{
    struct mappers m = {0};
    struct dirent *de;
    DIR *d;
    int n;
    bool json = want_json(argc, argv, &n), first = true;

    if (n > 1)
        return cli_usage_error("ls: unexpected argument '%s'", argv[1]);
    if (!(d = opendir(SHM_DIR)))
        return cli_error(SHM_DIR, -errno);
    mappers_scan(&m);
    if (json)
        printf("[");
    else
        printf("%-24s %12s %-8s %-4s %-16s %-7s %-20s %s\n", "NAME", "SIZE",
               "OWNER", "MODE", "MODIFIED", "KIND", "LIFECYCLE", "PIDS");
    while ((de = readdir(d))) {
        struct entry e = {.name = de->d_name};
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        entry_fill(&e);
        print_entry(&e, &m, json, first);
        first = false;
    }
    if (json)
        printf("%s]\n", first ? "" : "\n");
    closedir(d);
    mappers_free(&m);
    return 0;
}

int cli_info(int argc, char **argv)
{
    struct mappers m = {0};
    struct entry e = {0};
    char path[sizeof SHM_DIR + SHMKIT_NAME_MAX + 2];
    int n, r;
    bool json = want_json(argc, argv, &n);

    if (n != 2)
        return cli_usage_error("info: expected one NAME");
    e.name = argv[1][0] == '/' ? argv[1] + 1 : argv[1];
    if ((r = shmkit_name_check(e.name)) < 0)
        return cli_error(argv[1], r);
    snprintf(path, sizeof path, SHM_DIR "/%s", e.name);
    if (lstat(path, &e.st) < 0)
        return cli_error(e.name, -errno);
    entry_fill(&e);
    mappers_scan(&m);
    if (json) {
        print_entry(&e, &m, true, true);
        putchar('\n');
    } else {
        printf("name:      %s\npath:      %s\nsize:      %lld bytes\n"
               "owner:     %s (uid %ld)\nmode:      %04o\nkind:      %s\n"
               "lifecycle: %s\nmapped by: ",
               e.name, path, (long long)e.st.st_size, e.owner,
               (long)e.st.st_uid, (unsigned)(e.st.st_mode & 07777), e.kind,
               e.life);
        print_pids(stdout, &m, e.name, false);
        putchar('\n');
    }
    mappers_free(&m);
    return 0;
}

int cli_rm(int argc, char **argv)
{
    int i, status = 0;

    if (argc < 2)
        return cli_usage_error("rm: expected NAME...");
    for (i = 1; i < argc; i++) {
        int r = shmkit_unlink(argv[i]);
        if (r < 0)
            status = cli_error(argv[i], r);
    }
    return status;
}

/* ---- dispatch ------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} commands[] = {
    {"ls", cli_ls, "ls [--json]              list shared memory objects"},
    {"info", cli_info, "info NAME [--json]       one object in detail"},
    {"show", cli_show, "show NAME [--json]       decode a list, Value or Array"},
    {"rm", cli_rm, "rm NAME...               unlink objects"},
    {"gc", cli_gc, "gc [--dry-run]           remove what dead owners left"},
    {"manager", cli_manager, "manager [--socket P] [--authkey-file F]  run the manager daemon"},
    {"demo", cli_demo, "demo [--workers N] [--size N]  the parallel demo"},
};

static int usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: shmkit COMMAND [ARGS]\n\ncommands:\n");
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fprintf(f, "  version                  print the version\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2)
        return usage(stderr);
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h"))
        return usage(stdout);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("shmkit %s\n", shmkit_version());
        return 0;
    }
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    return cli_usage_error("unknown command '%s'", argv[1]);
}
