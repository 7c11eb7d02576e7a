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
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define SHM_DIR "/dev/shm"

int cli_error(const char *what, int code)
{
    cli_print_error_detail(what, code, NULL);
    return 1;
}

int cli_name_error(const char *name, int code)
{
    const char *why = NULL;

    if (code == -EINVAL || code == -ENAMETOOLONG)
        why = shmkit_name_problem(name);
    cli_print_error_detail(name, code, why);
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
    struct sigaction sa = {.sa_handler = on_fault}, old_bus;
    volatile int r = SHMKIT_ETRUNCATED;

    /* SIGBUS only: that is what touching a page a peer truncated away
     * raises. A SIGSEGV would be a bug of ours and must stay visible. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus);
    if (sigsetjmp(fault_jmp, 1) == 0)
        r = fn(arg);
    sigaction(SIGBUS, &old_bus, NULL);
    return r;
}

void cli_json_string(FILE *f, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    fputc('"', f);
    while (i < len) {
        uint32_t cp;
        size_t k = cli_utf8_decode(s + i, len - i, &cp);
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
    unsigned long ino;
    unsigned int dev_major, dev_minor;
    long pid;
};

struct mappers {
    struct mapper *v;
    size_t n, cap;
};

static void mappers_add(struct mappers *m, const struct mapper *x)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        if (m->v[i].pid == x->pid && m->v[i].ino == x->ino &&
            m->v[i].dev_major == x->dev_major &&
            m->v[i].dev_minor == x->dev_minor)
            return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct mapper *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = *x;
}

/* Reads /proc/PID/maps of every process we may read and records each
 * mapping of an object in /dev/shm by device and inode, not by path: a
 * creator maps its block before publishing it (a nameless file linked into
 * place), so its maps line names "/dev/shm/#N (deleted)" although the
 * object is the one at the name now. */
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
            struct mapper x = {0, 0, 0, atol(e->d_name)};
            if (!strstr(line, " " SHM_DIR "/"))
                continue;
            if (sscanf(line, "%*s %*s %*s %x:%x %lu", &x.dev_major,
                       &x.dev_minor, &x.ino) != 3 || x.ino == 0)
                continue;
            mappers_add(m, &x);
        }
        fclose(f);
    }
    closedir(d);
}

static int mapper_is(const struct mapper *x, const struct stat *st)
{
    return x->ino == (unsigned long)st->st_ino &&
           x->dev_major == major(st->st_dev) &&
           x->dev_minor == minor(st->st_dev);
}

static void mappers_free(struct mappers *m)
{
    free(m->v);
}

/* ---- ls and info ---------------------------------------------------------- */

struct entry {
    char *name;
    struct stat st;
    const char *kind;
    char owner[64];
    char life[128];
    char *pids; /* "123,456", or "" */
    int qerr;   /* a queue: 0 if q holds its figures, else why not */
    shmkit_queue_info q;
};

struct probe {
    shmkit_block *b;
    struct entry *e;
};

/* The block's kind and, for a queue, its figures; under cli_guarded. */
static int probe_kind(void *arg)
{
    struct probe *p = arg;
    shmkit_kind k = shmkit_block_kind(p->b);

    if (k == SHMKIT_KIND_QUEUE)
        p->e->qerr = cli_queue_figures(p->b, &p->e->q);
    return (int)k;
}

static void entry_fill(struct entry *e, const struct mappers *m)
{
    struct passwd *pw = getpwuid(e->st.st_uid);
    shmkit_block *b;
    struct probe p = {NULL, e};
    size_t i, used = 0, cap = 1;
    int r;

    if (pw)
        snprintf(e->owner, sizeof e->owner, "%s", pw->pw_name);
    else
        snprintf(e->owner, sizeof e->owner, "%ld", (long)e->st.st_uid);
    cli_lifecycle_of(e->name, e->life, sizeof e->life);
    for (i = 0; i < m->n; i++)
        cap += mapper_is(&m->v[i], &e->st) ? 22 : 0;
    if ((e->pids = malloc(cap)))
        e->pids[0] = 0;
    for (i = 0; i < m->n && e->pids; i++)
        if (mapper_is(&m->v[i], &e->st))
            used += (size_t)snprintf(e->pids + used, cap - used, "%s%ld",
                                     used ? "," : "", m->v[i].pid);
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
    p.b = b;
    e->qerr = SHMKIT_ETRUNCATED; /* if a fault ends the probe half way */
    r = cli_guarded(probe_kind, &p);
    e->kind = r < 0 ? "?" : shmkit_kind_name((shmkit_kind)r);
    shmkit_block_close(b);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name,
                  ((const struct entry *)b)->name);
}

static void entry_free(struct entry *e)
{
    free(e->name);
    free(e->pids);
}

/* ISO 8601 with the UTC offset as +hh:mm (JSON), or local time for
 * people. */
static void format_time(char *buf, size_t len, time_t t, bool iso)
{
    struct tm tm;
    size_t n;

    localtime_r(&t, &tm);
    n = strftime(buf, len, iso ? "%Y-%m-%dT%H:%M:%S%z" : "%Y-%m-%d %H:%M",
                 &tm);
    if (iso && n >= 5 && n + 2 <= len) { /* +0100 -> +01:00 */
        memmove(buf + n - 1, buf + n - 2, 3);
        buf[n - 2] = ':';
    }
}

static bool is_queue(const struct entry *e)
{
    return strcmp(e->kind, shmkit_kind_name(SHMKIT_KIND_QUEUE)) == 0;
}

/* What ls shows in CONTENTS: a queue's figures, "?" if they could not be
 * read, "-" for other kinds. */
static void contents_text(const struct entry *e, bool bytes, char *buf,
                          size_t len)
{
    if (!is_queue(e))
        snprintf(buf, len, "-");
    else if (e->qerr < 0)
        snprintf(buf, len, "? (%s)", shmkit_errname(e->qerr));
    else
        cli_queue_summary(buf, len, &e->q, bytes);
}

static void json_entry(const struct entry *e)
{
    char when[40];

    format_time(when, sizeof when, e->st.st_mtime, true);
    fputs("{\"name\": ", stdout);
    cli_json_string(stdout, e->name, strlen(e->name));
    printf(", \"size\": %lld, \"owner\": ", (long long)e->st.st_size);
    cli_json_string(stdout, e->owner, strlen(e->owner));
    printf(", \"uid\": %ld, \"mode\": \"%04o\", \"mtime\": \"%s\", "
           "\"kind\": \"%s\", \"lifecycle\": ",
           (long)e->st.st_uid, (unsigned)(e->st.st_mode & 07777), when,
           e->kind);
    cli_json_string(stdout, e->life, strlen(e->life));
    printf(", \"pids\": [%s]", e->pids ? e->pids : "");
    if (is_queue(e)) {
        fputs(", \"queue\": ", stdout);
        if (e->qerr == 0) {
            putchar('{');
            cli_queue_json_members(stdout, &e->q);
            putchar('}');
        } else {
            fputs("null", stdout);
        }
    }
    putchar('}');
}

/* The columns of `ls`, in order; the last is not padded. */
enum {
    C_NAME, C_SIZE, C_OWNER, C_MODE, C_TIME, C_KIND, C_LIFE, C_PIDS,
    C_CONTENTS, NCOL
};

static const char *const col_title[NCOL] = {
    "NAME", "SIZE", "OWNER", "MODE", "MODIFIED", "KIND", "LIFECYCLE", "PIDS",
    "CONTENTS"};

/* One row's cells, escaped for the terminal. */
static void row_cells(const struct entry *e, bool bytes, char *cell[NCOL])
{
    char buf[128];

    cell[C_NAME] = cli_escape(e->name, NULL);
    if (bytes)
        snprintf(buf, sizeof buf, "%lld", (long long)e->st.st_size);
    else
        cli_format_size(buf, sizeof buf, (unsigned long long)e->st.st_size);
    cell[C_SIZE] = strdup(buf);
    cell[C_OWNER] = cli_escape(e->owner, NULL);
    snprintf(buf, sizeof buf, "%04o", (unsigned)(e->st.st_mode & 07777));
    cell[C_MODE] = strdup(buf);
    format_time(buf, sizeof buf, e->st.st_mtime, false);
    cell[C_TIME] = strdup(buf);
    cell[C_KIND] = strdup(e->kind);
    cell[C_LIFE] = cli_escape(e->life, NULL);
    cell[C_PIDS] = strdup(e->pids && e->pids[0] ? e->pids : "-");
    contents_text(e, bytes, buf, sizeof buf);
    cell[C_CONTENTS] = strdup(buf);
}

/* Prints the table: every column as wide as its widest cell; on a
 * terminal narrower than the rows, names are cut with an ellipsis. */
static void print_table(char *(*cells)[NCOL], size_t rows)
{
    size_t w[NCOL], r, c, rest = 0;
    int term = cli_terminal_width();

    for (c = 0; c < NCOL; c++)
        w[c] = strlen(col_title[c]);
    for (r = 0; r < rows; r++)
        for (c = 0; c < NCOL; c++)
            if (cells[r][c] && cli_display_width(cells[r][c]) > w[c])
                w[c] = cli_display_width(cells[r][c]);
    for (c = C_SIZE; c < NCOL; c++)
        rest += w[c] + 1;
    if (term > 0 && w[C_NAME] + rest > (size_t)term) {
        size_t room = (size_t)term > rest + 12 ? (size_t)term - rest : 12;
        for (r = 0; r < rows; r++)
            if (cells[r][C_NAME])
                cli_truncate(cells[r][C_NAME], room);
        w[C_NAME] = room;
    }
    for (r = 0; r <= rows; r++) {
        for (c = 0; c < NCOL; c++) {
            const char *s = r == 0 ? col_title[c] : cells[r - 1][c];
            if (!s)
                s = "?";
            if (c == NCOL - 1)
                printf("%s\n", s);
            else
                cli_print_padded(s, cli_display_width(s), w[c], c == C_SIZE), putchar(' ');
        }
    }
}

int cli_ls(int argc, char **argv)
{
    static const char *const flags[] = {"--json", "--bytes", NULL};
    struct mappers m = {0};
    struct entry *v = NULL;
    char *(*cells)[NCOL] = NULL;
    bool set[2] = {false, false};
    size_t n = 0, cap = 0, i, c;
    struct dirent *de;
    DIR *d;

    if (cli_args(argc, argv, "ls", flags, set, NULL, 0) < 0)
        return 2;
    if (!(d = opendir(SHM_DIR)))
        return cli_error(SHM_DIR, -errno);
    mappers_scan(&m);
    while ((de = readdir(d))) {
        struct entry e = {0};
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (n == cap) {
            struct entry *nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        if (!(e.name = strdup(de->d_name)))
            break;
        entry_fill(&e, &m);
        v[n++] = e;
    }
    closedir(d);
    mappers_free(&m);
    if (n > 1)
        qsort(v, n, sizeof *v, entry_cmp); /* by name, as ls(1) */
    if (set[0]) {
        printf("[");
        for (i = 0; i < n; i++) {
            printf("%s\n  ", i ? "," : "");
            json_entry(&v[i]);
        }
        printf("%s]\n", n ? "\n" : "");
    } else if ((cells = calloc(n ? n : 1, sizeof *cells))) {
        for (i = 0; i < n; i++)
            row_cells(&v[i], set[1], cells[i]);
        print_table(cells, n);
        for (i = 0; i < n; i++)
            for (c = 0; c < NCOL; c++)
                free(cells[i][c]);
        free(cells);
    }
    for (i = 0; i < n; i++)
        entry_free(&v[i]);
    free(v);
    return cells || set[0] ? 0 : cli_error("ls", -ENOMEM);
}

int cli_info(int argc, char **argv)
{
    static const char *const flags[] = {"--json", "--bytes", NULL};
    struct mappers m = {0};
    struct entry e = {0};
    char path[sizeof SHM_DIR + SHMKIT_NAME_MAX + 2], when[40], size[32];
    char *name = NULL, *shown, *owner, *life;
    bool set[2] = {false, false};
    int r;

    r = cli_args(argc, argv, "info", flags, set, &name, 1);
    if (r < 0)
        return 2;
    if (r == 0)
        return cli_usage_error("info: expected one NAME");
    if ((r = shmkit_name_check(name)) < 0)
        return cli_name_error(name, r);
    snprintf(path, sizeof path, SHM_DIR "/%s", name[0] == '/' ? name + 1 : name);
    e.name = strdup(path + sizeof SHM_DIR);
    if (!e.name)
        return cli_error(name, -ENOMEM);
    if (lstat(path, &e.st) < 0) {
        r = cli_error(e.name, -errno);
        free(e.name);
        return r;
    }
    mappers_scan(&m);
    entry_fill(&e, &m);
    mappers_free(&m);
    if (set[0]) {
        json_entry(&e);
        putchar('\n');
        entry_free(&e);
        return 0;
    }
    shown = cli_escape(e.name, NULL);
    owner = cli_escape(e.owner, NULL);
    life = cli_escape(e.life, NULL);
    format_time(when, sizeof when, e.st.st_mtime, true);
    when[10] = ' ';
    cli_format_size(size, sizeof size, (unsigned long long)e.st.st_size);
    printf("name:      %s\npath:      " SHM_DIR "/%s\n", shown ? shown : "?",
           shown ? shown : "?");
    if (set[1])
        printf("size:      %lld bytes\n", (long long)e.st.st_size);
    else
        printf("size:      %s (%lld bytes)\n", size, (long long)e.st.st_size);
    printf("owner:     %s (uid %ld)\nmode:      %04o\nmodified:  %s\n"
           "kind:      %s\nlifecycle: %s\nmapped by: %s\n",
           owner ? owner : "?", (long)e.st.st_uid,
           (unsigned)(e.st.st_mode & 07777), when, e.kind, life ? life : "?",
           e.pids && e.pids[0] ? e.pids : "-");
    if (is_queue(&e) && e.qerr == 0)
        cli_queue_info_lines(&e.q, set[1]);
    else if (is_queue(&e))
        printf("contents:  ? (%s)\n", shmkit_errname(e.qerr));
    free(shown);
    free(owner);
    free(life);
    entry_free(&e);
    return 0;
}

int cli_rm(int argc, char **argv)
{
    char **names = calloc((size_t)argc, sizeof *names);
    int i, n, status = 0;

    if (!names)
        return cli_error("rm", -ENOMEM);
    n = cli_args(argc, argv, "rm", NULL, NULL, names, argc);
    if (n == 0)
        status = cli_usage_error("rm: expected NAME...");
    for (i = 0; i < n; i++) {
        int r = shmkit_unlink(names[i]);
        if (r < 0)
            status = cli_name_error(names[i], r);
    }
    free(names);
    return n < 0 ? 2 : status;
}

/* ---- dispatch ------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const struct cli_command *c;

    if (argc < 2)
        return cli_usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cli_usage(stdout);
    if (!strcmp(argv[1], "--version"))
        argv[1] = "version";
    if (!(c = cli_command_find(argv[1])))
        return cli_usage_error("unknown command '%s'", argv[1]);
    if (cli_wants_help(argc - 1, argv + 1))
        return cli_help(stdout, c->name);
    if (!strcmp(c->name, "help")) {
        if (argc == 2)
            return cli_usage(stdout);
        if (argc == 3 && !strcmp(argv[2], "--man"))
            return cli_man(stdout);
        if (argc == 3)
            return cli_help(stdout, argv[2]);
        return cli_usage_error("help: expected one COMMAND");
    }
    if (!strcmp(c->name, "version")) {
        if (argc > 2)
            return cli_usage_error("version: unexpected argument '%s'",
                                   argv[2]);
        printf("shmkit %s\n", shmkit_version());
        return 0;
    }
    return c->run(argc - 1, argv + 1);
}
