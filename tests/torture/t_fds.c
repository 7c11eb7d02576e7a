/*
 * t_fds.c - descriptor exhaustion: for each kind, a process uses up its
 * descriptors but `h` (h = 0..15, so every open of create and attach gets
 * its turn to fail) and then creates one object of the kind and attaches
 * an existing one. Each call must succeed (a whole object) or fail with
 * -EMFILE/-ENFILE, never crash, and a failed create must leave nothing:
 * no name, no temporary, no sidecar (the tracked kinds' trackers settled
 * and one gc run first).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "shmkit.h"
#include "shmkit/queue.h"
#include "torture.h"

#define HEADROOM 16

static const char *const kinds[] = {"block", "tracked", "refblock", "list",
                                    "array", "value", "lock", "queue"};

struct job {
    const char *kind;
    int headroom;
};

/* Creates (make) or attaches one object of the kind; closes the handle
 * again if `close_it`. */
static int open_kind(const char *kind, const char *name, bool make,
                     bool close_it)
{
    shmkit_item it[2] = {shmkit_item_int(1), shmkit_item_str("two")};
    size_t shape[1] = {512};
    unsigned flags = strcmp(kind, "tracked") == 0    ? SHMKIT_TRACK
                     : strcmp(kind, "refblock") == 0 ? SHMKIT_REFCOUNT
                                                     : 0;
    int r;

    if (strcmp(kind, "list") == 0) {
        shmkit_list *l;
        r = make ? shmkit_list_create(&l, name, it, 2, 0)
                 : shmkit_list_attach(&l, name, 0);
        if (r == 0 && close_it)
            shmkit_list_close(l);
    } else if (strcmp(kind, "array") == 0 || strcmp(kind, "value") == 0) {
        shmkit_array *a;
        r = !make                       ? shmkit_array_attach(&a, name, 0)
            : strcmp(kind, "value") == 0 ? shmkit_value_create(&a, name, 'd', 0)
                : shmkit_array_create(&a, name, 'q', 1, shape, 0);
        if (r == 0 && close_it)
            shmkit_array_close(a);
    } else if (strcmp(kind, "lock") == 0) {
        shmkit_lock *k;
        r = make ? shmkit_lock_create(&k, name, 0, 0)
                 : shmkit_lock_attach(&k, name, 0);
        if (r == 0 && close_it)
            shmkit_lock_close(k);
    } else if (strcmp(kind, "queue") == 0) {
        shmkit_queue *q;
        r = make ? shmkit_queue_create(&q, name, 4096, 0, 0)
                 : shmkit_queue_attach(&q, name, 0);
        if (r == 0 && close_it)
            shmkit_queue_close(q);
    } else {
        shmkit_block *b;
        r = make ? shmkit_block_create(&b, name, 8192, flags)
                 : shmkit_block_attach(&b, name, flags & SHMKIT_REFCOUNT);
        if (r == 0 && close_it)
            shmkit_block_close(b);
    }
    return r;
}

static bool out_of_fds(int r)
{
    return r == -EMFILE || r == -ENFILE;
}

/* In the child. Exit: 0 every answer right; 2 create, 3 attach gave
 * another error (printed). The objects it made stay for the parent. */
static int exhausted(void *arg)
{
    const struct job *j = arg;
    char made[64], there[64];
    struct rlimit rl = {64, 64};
    int fds[64], n = 0, r;

    snprintf(made, sizeof made, "tx_%s_%d", j->kind, j->headroom);
    snprintf(there, sizeof there, "ty_%s", j->kind);
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 4;
    while (n < 64 && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        n++;
    if (n < j->headroom)
        return 4;
    for (r = 0; r < j->headroom; r++)
        close(fds[--n]);
    r = open_kind(j->kind, made, true, false);
    if (r < 0 && !out_of_fds(r)) {
        fprintf(stderr, "torture: fds %s (%d free): create: %s\n", j->kind,
                j->headroom, shmkit_last_error());
        return 2;
    }
    r = open_kind(j->kind, there, false, false);
    if (r < 0 && !out_of_fds(r)) {
        fprintf(stderr, "torture: fds %s (%d free): attach: %s\n", j->kind,
                j->headroom, shmkit_last_error());
        return 3;
    }
    return 0;
}

static void attack_kind(const char *kind, long rounds)
{
    struct row *r = row_new("descriptors exhausted: create, attach", kind);
    char there[64];
    long made = 0, refused = 0, i;
    int h, code;

    snprintf(there, sizeof there, "ty_%s", kind);
    /* Kept open: a refcounted block would go with its last handle. Made
     * untracked: this process must stay out of every family. */
    if (open_kind(strcmp(kind, "tracked") ? kind : "block", there, true,
                  false) < 0) {
        r->bad++;
        return;
    }
    for (i = 0; i < rounds; i++)
        for (h = 0; h < HEADROOM; h++) {
            struct job j = {kind, h};
            char name[64];
            enum outcome o;
            pid_t pid = child_run(exhausted, &j);
            o = child_wait(pid, 30000, &code);
            r->runs++;
            if (o != OUT_OK) {
                row_count(r, o);
                if (o == OUT_EXIT || o == OUT_KILLED)
                    r->bad++;
            }
            snprintf(name, sizeof name, "tx_%s_%d", kind, h);
            /* Made whole, or not at all. */
            if (open_kind(kind, name, false, true) == 0) {
                made++;
                shmkit_unlink(name);
            } else if (shm_count(name) > 0) {
                fprintf(stderr, "torture: fds %s (%d free): a half-made "
                                "object is left\n", kind, h);
                r->bad++;
                shmkit_unlink(name);
            } else {
                refused++;
            }
        }
    shmkit_unlink(there);
    trackers_settle(20000);

    shmkit_gc(0, NULL, NULL);
    r->leaks = shm_count("tx_") + shm_count("ty_") + shm_count("shmkit-tmp-") +
               shm_count("psm_") + shm_count("shmkit.ref.");
    if (r->leaks)
        shm_print("torture: fds: left: ");
    /* Tracked and refcounted objects go with their creator (the child):
     * for them "absent" is the lifetime working, not a refusal. */
    snprintf(r->note, sizeof r->note, "%ld whole after the child, %ld absent",
             made, refused);
    shm_clear("tx_");
}

void attack_fds(void)
{
    size_t k;
    long rounds = scaled(1, 10);

    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        attack_kind(kinds[k], rounds);
}
