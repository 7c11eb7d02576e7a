/*
 * peers.h - the peer libraries' side of the C benchmarks, with C linkage.
 * Boost.Interprocess (peers_boost.cpp) is there when the build defines
 * SHMKIT_BENCH_BOOST. Every function returns 0, or -1 when Boost threw.
 */
#ifndef SHMKIT_BENCH_PEERS_H
#define SHMKIT_BENCH_PEERS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* shared_memory_object create + truncate + mapped_region + write 64 bytes
 * + unmap + remove. */
int peer_boost_create_cycle(const char *name, size_t size);
/* shared_memory_object open_only + mapped_region of all of it + read one
 * byte into *sink + unmap. */
int peer_boost_attach_cycle(const char *name, volatile char *sink);
/* As the create cycle, writing one byte in every 4 KiB page instead. */
int peer_boost_create_touch(const char *name, size_t size);

/* interprocess_mutex (process-shared, not robust) placed at mem, which
 * has peer_boost_mutex_size() bytes. */
size_t peer_boost_mutex_size(void);
int peer_boost_mutex_init(void *mem);
void peer_boost_mutex_destroy(void *mem);
void peer_boost_mutex_lock(void *mem);
void peer_boost_mutex_unlock(void *mem);

/* managed_shared_memory create_only (4 KiB) + construct<int64_t>("value")
 * + a second managed_shared_memory open_only + find + increment + remove:
 * a named typed value made, found by name from another handle, used. */
int peer_boost_value_cycle(const char *name);

#ifdef __cplusplus
}
#endif

#endif
