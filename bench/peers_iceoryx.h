/*
 * peers_iceoryx.h - iceoryx (Debian's 2.0.3 C binding) as a peer of the
 * queue benchmark: ping-pong handoff with its RouDi daemon, which this
 * benchmark starts (see peers_iceoryx.c).
 */
#ifndef SHMKIT_BENCH_PEERS_ICEORYX_H
#define SHMKIT_BENCH_PEERS_ICEORYX_H

#include <stddef.h>

struct peer_iox;

/* Starts RouDi (once) and a consumer process for messages of `size`
 * bytes; NULL (with a message on stderr) if iceoryx cannot run here. */
struct peer_iox *peer_iox_start(size_t size);

/* n round trips: loan + memcpy + publish, wait for the 8-byte answer. */
void peer_iox_run(void *ctx, long n);

/* Stops the consumer and frees the peer. */
void peer_iox_stop(struct peer_iox *p);

/* Stops RouDi (at the end of the benchmark). */
void peer_iox_shutdown(void);

/* The consumer's and the producer's mains, when the benchmark is run as
 * `bench_queue --iox-consumer SIZE` / `--iox-producer SIZE` (the producer
 * reads round-trip counts on fd 3 and answers on fd 4): return the
 * exit status. */
int peer_iox_consumer_main(size_t size);
int peer_iox_producer_main(size_t size);

#endif
