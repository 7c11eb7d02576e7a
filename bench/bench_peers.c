/*
 * bench_peers.c - shmkit's named values beside Boost.Interprocess, in one
 * run (see bench_util.h for how each figure is taken):
 *
 *   named int64 value         create by name + attach by name from a second
 *                             handle + increment + close + unlink: shmkit's
 *                             Value beside Boost's managed_shared_memory
 *                             construct/find
 *
 * (The locks and atomics, with the same peers, are in bench_lock.c.)
 * Usage: bench_peers [--tsv] [--quick] [--rounds N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "peers.h"
#include "shmkit.h"

static char vname[64];

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_peers: %s: %s (%s)\n", what, shmkit_strerror(r),
            shmkit_last_error());
    exit(1);
}

static void loop_value_cycle(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        shmkit_array *made, *seen;
        int r = shmkit_value_create(&made, vname, 'q', 0);

        if (r != 0)
            die("shmkit_value_create", r);
        if ((r = shmkit_array_attach(&seen, vname, 0)) != 0)
            die("shmkit_array_attach", r);
        ++*(int64_t *)shmkit_array_data(seen);
        shmkit_array_close(seen);
        shmkit_array_unlink(made);
        shmkit_array_close(made);
    }
}

#ifdef SHMKIT_BENCH_BOOST
static void loop_boost_value_cycle(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        if (peer_boost_value_cycle(vname) != 0)
            die("boost managed_shared_memory", -EIO);
}
#endif

int main(int argc, char **argv)
{
    bench_args(argc, argv);
    snprintf(vname, sizeof vname, "bench_peers_v_%ld", (long)getpid());
    {
        bench_contender c[] = {
            {"shmkit_value_create + attach", loop_value_cycle, NULL},
#ifdef SHMKIT_BENCH_BOOST
            {"Boost managed_shared_memory construct + find",
             loop_boost_value_cycle, NULL},
#endif
        };
        bench_run("c.value.named",
                  "C: named int64 value create+attach+use+unlink", c,
                  sizeof c / sizeof *c, bench_n(2000), NULL);
    }
    return 0;
}
