/*
 * manager_proto.c - framing and payload codecs of the manager protocol
 * (see manager.h). Pure functions over byte buffers: no I/O, no
 * allocation, so the fuzz target exercises exactly what the server runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "manager.h"

#define MAC_CONTEXT "shmkit-manager-v1"

ssize_t shmkit__mgr_parse(const uint8_t *buf, size_t n,
                          struct shmkit__mgr_msg *m)
{
    uint32_t len;

    /* Judge the header as soon as its fields arrive, so garbage is
     * refused at once rather than waited on. */
    if (n >= 4 && shmkit__le32(buf) != SHMKIT__MGR_MAGIC)
        return SHMKIT_EPROTO;
    if (n >= 6 && (buf[4] | buf[5] << 8) != SHMKIT__MGR_VERSION)
        return SHMKIT_EVERSION;
    if (n >= 12 && shmkit__le32(buf + 8) > SHMKIT__MGR_MAX_PAYLOAD)
        return SHMKIT_EPROTO;
    if (n < SHMKIT__MGR_HDR)
        return 0;
    len = shmkit__le32(buf + 8);
    if (n - SHMKIT__MGR_HDR < len)
        return 0;
    m->type = (uint16_t)(buf[6] | buf[7] << 8);
    m->len = len;
    m->status = (int32_t)shmkit__le32(buf + 12);
    m->payload = buf + SHMKIT__MGR_HDR;
    return (ssize_t)(SHMKIT__MGR_HDR + len);
}

size_t shmkit__mgr_put(uint8_t *out, uint16_t type, int32_t status,
                       const void *payload, uint32_t len)
{
    shmkit__put32(out, SHMKIT__MGR_MAGIC);
    out[4] = (uint8_t)SHMKIT__MGR_VERSION;
    out[5] = (uint8_t)(SHMKIT__MGR_VERSION >> 8);
    out[6] = (uint8_t)type;
    out[7] = (uint8_t)(type >> 8);
    shmkit__put32(out + 8, len);
    shmkit__put32(out + 12, (uint32_t)status);
    if (len)
        memmove(out + SHMKIT__MGR_HDR, payload, len);
    return SHMKIT__MGR_HDR + len;
}

int shmkit__mgr_get_name(const struct shmkit__mgr_msg *m, size_t *off,
                         char *name, bool allow_empty)
{
    size_t len;

    if (*off > m->len || m->len - *off < 2)
        return SHMKIT_EPROTO;
    len = (size_t)(m->payload[*off] | m->payload[*off + 1] << 8);
    *off += 2;
    if (len > m->len - *off)
        return SHMKIT_EPROTO;
    if (len > SHMKIT_NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(name, m->payload + *off, len);
    name[len] = 0;
    *off += len;
    if (len == 0)
        return allow_empty ? 0 : -EINVAL;
    if (memchr(name, 0, len))
        return -EINVAL;
    return shmkit_name_check(name);
}

int shmkit__mgr_put_name(uint8_t *buf, size_t cap, size_t *off,
                         const char *name)
{
    size_t len = strlen(name);

    if (len > SHMKIT_NAME_MAX || cap < *off || cap - *off < 2 + len)
        return -ENOSPC;
    buf[*off] = (uint8_t)len;
    buf[*off + 1] = (uint8_t)(len >> 8);
    memcpy(buf + *off + 2, name, len);
    *off += 2 + len;
    return 0;
}

int shmkit__mgr_decode_create(const struct shmkit__mgr_msg *m, uint64_t *size,
                              char *name)
{
    size_t off = 8;
    int r;

    if (m->len < 8)
        return SHMKIT_EPROTO;
    *size = shmkit__le64(m->payload);
    r = shmkit__mgr_get_name(m, &off, name, true);
    if (r < 0)
        return r;
    return off == m->len ? 0 : SHMKIT_EPROTO;
}

int shmkit__mgr_put_queue_create(uint8_t *buf, size_t cap, size_t *off,
                                 uint64_t capacity, uint64_t max_messages,
                                 const char *name)
{
    if (cap < *off || cap - *off < 16)
        return -ENOSPC;
    shmkit__put64(buf + *off, capacity);
    shmkit__put64(buf + *off + 8, max_messages);
    *off += 16;
    return shmkit__mgr_put_name(buf, cap, off, name);
}

int shmkit__mgr_decode_queue_create(const struct shmkit__mgr_msg *m,
                                    uint64_t *capacity, uint64_t *max_messages,
                                    char *name)
{
    size_t off = 16;
    int r;

    if (m->len < 16)
        return SHMKIT_EPROTO;
    *capacity = shmkit__le64(m->payload);
    *max_messages = shmkit__le64(m->payload + 8);
    r = shmkit__mgr_get_name(m, &off, name, true);
    if (r < 0)
        return r;
    return off == m->len ? 0 : SHMKIT_EPROTO;
}

int shmkit__mgr_decode_u32(const struct shmkit__mgr_msg *m, uint32_t *v)
{
    if (m->len != 4)
        return SHMKIT_EPROTO;
    *v = shmkit__le32(m->payload);
    return 0;
}

int shmkit__mgr_decode_list(const struct shmkit__mgr_msg *m, uint32_t *total,
                            int (*fn)(const char *, void *), void *arg)
{
    char name[SHMKIT_NAME_MAX + 1];
    uint32_t n, i;
    size_t off = 8;
    int r;

    if (m->len < 8)
        return SHMKIT_EPROTO;
    *total = shmkit__le32(m->payload);
    n = shmkit__le32(m->payload + 4);
    /* Each name takes at least 3 bytes: a count beyond that is a lie. */
    if (n > (m->len - 8) / 3 || n > *total)
        return SHMKIT_EPROTO;
    for (i = 0; i < n; i++) {
        r = shmkit__mgr_get_name(m, &off, name, false);
        if (r < 0)
            return r == -EINVAL || r == -ENAMETOOLONG ? SHMKIT_EPROTO : r;
        r = fn(name, arg);
        if (r < 0)
            return r;
    }
    return off == m->len ? (int)n : SHMKIT_EPROTO;
}

static int put_item(uint8_t *buf, size_t cap, size_t *off,
                    const shmkit_item *it)
{
    size_t need = 1;

    if (it->type == SHMKIT_INT || it->type == SHMKIT_FLOAT)
        need += 8;
    else if (it->type == SHMKIT_BOOL)
        need += 1;
    else if (it->type == SHMKIT_STR || it->type == SHMKIT_BYTES) {
        if (it->v.s.len > UINT32_MAX || (it->v.s.len && !it->v.s.ptr))
            return -EMSGSIZE;
        need += 4 + it->v.s.len;
    } else if (it->type != SHMKIT_NONE)
        return SHMKIT_ETYPE;
    if (cap < *off || cap - *off < need)
        return -EMSGSIZE;
    buf[(*off)++] = (uint8_t)it->type;
    if (it->type == SHMKIT_INT)
        shmkit__put64(buf + *off, (uint64_t)it->v.i);
    else if (it->type == SHMKIT_FLOAT)
        memcpy(buf + *off, &it->v.f, 8); /* same byte order both ends */
    else if (it->type == SHMKIT_BOOL)
        buf[*off] = it->v.b;
    else if (it->type == SHMKIT_STR || it->type == SHMKIT_BYTES) {
        shmkit__put32(buf + *off, (uint32_t)it->v.s.len);
        if (it->v.s.len)
            memcpy(buf + *off + 4, it->v.s.ptr, it->v.s.len);
    }
    *off += need - 1;
    return 0;
}

int shmkit__mgr_put_items(uint8_t *buf, size_t cap, size_t *off,
                          const shmkit_item *items, size_t n)
{
    size_t i;
    int r;

    if (cap < *off || cap - *off < 4 || n > UINT32_MAX)
        return -EMSGSIZE;
    shmkit__put32(buf + *off, (uint32_t)n);
    *off += 4;
    for (i = 0; i < n; i++)
        if ((r = put_item(buf, cap, off, &items[i])) < 0)
            return r;
    return 0;
}

/* Decodes one item at *off; SHMKIT_EPROTO if it overruns. */
static int get_item(const struct shmkit__mgr_msg *m, size_t *off,
                    shmkit_item *it)
{
    const uint8_t *p = m->payload;
    size_t left = m->len - *off;
    uint32_t len;

    if (left < 1)
        return SHMKIT_EPROTO;
    it->type = (shmkit_type)p[*off];
    (*off)++;
    left--;
    switch (p[*off - 1]) {
    case SHMKIT_NONE:
        it->v.i = 0;
        return 0;
    case SHMKIT_INT:
    case SHMKIT_FLOAT:
        if (left < 8)
            return SHMKIT_EPROTO;
        if (it->type == SHMKIT_INT)
            it->v.i = (int64_t)shmkit__le64(p + *off);
        else
            memcpy(&it->v.f, p + *off, 8);
        *off += 8;
        return 0;
    case SHMKIT_BOOL:
        if (left < 1 || p[*off] > 1)
            return SHMKIT_EPROTO;
        it->v.i = 0;
        it->v.b = p[(*off)++];
        return 0;
    case SHMKIT_STR:
    case SHMKIT_BYTES:
        if (left < 4 || (len = shmkit__le32(p + *off)) > left - 4)
            return SHMKIT_EPROTO;
        it->v.s.ptr = (const char *)p + *off + 4;
        it->v.s.len = len;
        *off += 4 + len;
        return 0;
    default:
        return SHMKIT_EPROTO;
    }
}

int shmkit__mgr_decode_list_create(const struct shmkit__mgr_msg *m, char *name,
                                   shmkit_item **items, size_t *n)
{
    size_t off = 0, i, count;
    shmkit_item *v;
    int r;

    r = shmkit__mgr_get_name(m, &off, name, true);
    if (r < 0)
        return r;
    if (m->len - off < 4)
        return SHMKIT_EPROTO;
    count = shmkit__le32(m->payload + off);
    off += 4;
    /* Every item takes at least one byte: a larger count is a lie, and
     * refusing it first bounds the allocation by the frame size. */
    if (count > m->len - off)
        return SHMKIT_EPROTO;
    v = malloc((count ? count : 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (i = 0; i < count; i++)
        if ((r = get_item(m, &off, &v[i])) < 0)
            break;
    if (r == 0 && off != m->len)
        r = SHMKIT_EPROTO;
    if (r < 0) {
        free(v);
        return r;
    }
    *items = v;
    *n = count;
    return 0;
}

int shmkit__mgr_mac(const void *key, size_t keylen, const uint8_t *nonce,
                    uint8_t *mac)
{
    uint8_t msg[sizeof MAC_CONTEXT - 1 + SHMKIT__MGR_NONCE];
    unsigned int len = 0;

    memcpy(msg, MAC_CONTEXT, sizeof MAC_CONTEXT - 1);
    memcpy(msg + sizeof MAC_CONTEXT - 1, nonce, SHMKIT__MGR_NONCE);
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, sizeof msg, mac, &len) ||
        len != SHMKIT__MGR_MAC)
        return SHMKIT_EAUTH;
    return 0;
}
