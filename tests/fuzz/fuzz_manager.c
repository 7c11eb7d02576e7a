/*
 * fuzz_manager.c - libFuzzer target over the manager protocol: framing and
 * every payload decoder the server and client run on bytes from a peer,
 * plus the journal parser (journals are replayed after crashes, so they
 * may be torn). Pure functions: no sockets, no shm.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manager/manager.h"

static int count_name(const char *name, void *arg)
{
    (*(size_t *)arg) += strlen(name);
    return 0;
}

static void decode_all(const struct shmkit__mgr_msg *m)
{
    char name[SHMKIT_NAME_MAX + 1];
    shmkit_item *items;
    uint64_t size, cap, max;
    uint32_t u, total;
    size_t off = 0, n, sum = 0, i;

    shmkit__mgr_decode_create(m, &size, name);
    shmkit__mgr_decode_queue_create(m, &cap, &max, name);
    shmkit__mgr_get_name(m, &off, name, false);
    shmkit__mgr_decode_u32(m, &u);
    shmkit__mgr_decode_list(m, &total, count_name, &sum);
    if (shmkit__mgr_decode_list_create(m, name, &items, &n) == 0) {
        /* Every string must lie inside the payload. */
        for (i = 0; i < n; i++)
            if (items[i].type == SHMKIT_STR || items[i].type == SHMKIT_BYTES)
                if ((const uint8_t *)items[i].v.s.ptr < m->payload ||
                    (const uint8_t *)items[i].v.s.ptr + items[i].v.s.len >
                        m->payload + m->len)
                    abort();
        free(items);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shmkit__mgr_msg m;
    struct shmkit__nset s = {0};
    size_t pos = 0;

    while (pos < size) {
        ssize_t k = shmkit__mgr_parse(data + pos, size - pos, &m);
        if (k <= 0)
            break;
        if ((size_t)k > size - pos || m.len > SHMKIT__MGR_MAX_PAYLOAD)
            abort();
        decode_all(&m);
        pos += (size_t)k;
    }
    shmkit__journal_parse((const char *)data, size, &s);
    shmkit__nset_clear(&s);
    return 0;
}
