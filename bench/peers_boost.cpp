/*
 * peers_boost.cpp - Boost.Interprocess doing the same work as shmkit, for
 * the C benchmarks to time side by side (see peers.h). Built only when
 * CMake finds Boost's headers (Debian: libboost-dev); the benchmarks then
 * define SHMKIT_BENCH_BOOST.
 *
 * Every function catches Boost's exceptions and returns -1 instead, so the
 * C callers never see C++.
 */
#include <cstdint>
#include <cstring>
#include <new>

#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include "peers.h"

namespace bip = boost::interprocess;

extern "C" int peer_boost_create_cycle(const char *name, size_t size)
{
    try {
        bip::shared_memory_object shm(bip::create_only, name, bip::read_write);
        shm.truncate((bip::offset_t)size);
        bip::mapped_region region(shm, bip::read_write);
        std::memset(region.get_address(), 1, 64);
        bip::shared_memory_object::remove(name);
        return 0;
    } catch (...) {
        bip::shared_memory_object::remove(name);
        return -1;
    }
}

extern "C" int peer_boost_attach_cycle(const char *name, volatile char *sink)
{
    try {
        bip::shared_memory_object shm(bip::open_only, name, bip::read_write);
        bip::mapped_region region(shm, bip::read_write);
        *sink = *static_cast<char *>(region.get_address());
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" int peer_boost_create_touch(const char *name, size_t size)
{
    try {
        bip::shared_memory_object shm(bip::create_only, name, bip::read_write);
        shm.truncate((bip::offset_t)size);
        bip::mapped_region region(shm, bip::read_write);
        char *p = static_cast<char *>(region.get_address());
        for (size_t off = 0; off < size; off += 4096)
            p[off] = 1;
        bip::shared_memory_object::remove(name);
        return 0;
    } catch (...) {
        bip::shared_memory_object::remove(name);
        return -1;
    }
}

extern "C" size_t peer_boost_mutex_size(void)
{
    return sizeof(bip::interprocess_mutex);
}

extern "C" int peer_boost_mutex_init(void *mem)
{
    try {
        new (mem) bip::interprocess_mutex();
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" void peer_boost_mutex_destroy(void *mem)
{
    static_cast<bip::interprocess_mutex *>(mem)->~interprocess_mutex();
}

extern "C" void peer_boost_mutex_lock(void *mem)
{
    static_cast<bip::interprocess_mutex *>(mem)->lock();
}

extern "C" void peer_boost_mutex_unlock(void *mem)
{
    static_cast<bip::interprocess_mutex *>(mem)->unlock();
}

extern "C" int peer_boost_value_cycle(const char *name)
{
    try {
        bip::managed_shared_memory made(bip::create_only, name, 4096);
        made.construct<std::int64_t>("value")(0);
        bip::managed_shared_memory seen(bip::open_only, name);
        std::pair<std::int64_t *, std::size_t> v =
            seen.find<std::int64_t>("value");
        if (!v.first)
            throw std::bad_alloc();
        *v.first += 1;
        bip::shared_memory_object::remove(name);
        return 0;
    } catch (...) {
        bip::shared_memory_object::remove(name);
        return -1;
    }
}
