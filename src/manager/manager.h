/*
 * manager.h - the manager's wire protocol, shared by server, client and
 * the fuzz target.
 *
 * Every message is one frame: a 16-byte header, then `len` payload bytes,
 * all integers little-endian:
 *     u32 magic "SKMG" | u16 version | u16 type | u32 len | i32 status
 * len is at most SHMKIT__MGR_MAX_PAYLOAD, so a reader's buffer has a fixed
 * size that no sender chooses. Requests carry status 0; a reply has type
 * SHMKIT__MGR_REPLY | request type and the request's result as status.
 *
 * Conversation: the server sends HELLO (u32 pid, u8 auth required, u8
 * revision, 2 pad bytes, 32-byte nonce); the client answers AUTH (empty,
 * or HMAC-SHA256 of
 * "shmkit-manager-v1" + nonce under the shared key); the server replies
 * with the verdict and, if refused, hangs up. Then any number of:
 *     CREATE   u64 size, name     -> reply payload: the block's name
 *     RELEASE  name               -> status only
 *     LIST     u32 offset         -> u32 total, u32 n, n names
 *     SHUTDOWN                    -> status, after everything is unlinked
 *     CREATE_LIST name, u32 n, n items -> reply payload: the list's name
 *     CREATE_QUEUE u64 capacity, u64 max messages, name
 *                                 -> reply payload: the queue's name
 *                                    (revision 1 and later)
 * where an item is u8 type (shmkit_type), then int/float: 8 bytes, bool:
 * 1 byte, None: nothing, str/bytes: u32 length + bytes.
 * where a name is u16 length + bytes (length 0 in CREATE: generate one).
 *
 * Versions. `version` in every frame changes only when the framing or the
 * meaning of an existing request changes; a peer whose frames carry
 * another version is refused with SHMKIT_EVERSION. New requests do not
 * change it: they raise the server's *revision* (HELLO byte 5; servers
 * from before revisions sent 0 there), so an older client keeps working
 * with a newer server, and a newer client asks an older server only for
 * what it has (a request the server lacks fails in the client with
 * -EOPNOTSUPP and a message naming both revisions, never reaches it).
 *   revision 0: CREATE, RELEASE, LIST, SHUTDOWN, CREATE_LIST
 *   revision 1: CREATE_QUEUE
 */
#ifndef SHMKIT_MANAGER_H
#define SHMKIT_MANAGER_H

#include <stdint.h>
#include <sys/types.h>

#include "life/life.h"

#define SHMKIT__MGR_MAGIC 0x474d4b53u /* "SKMG" read little-endian */
#define SHMKIT__MGR_VERSION 1u
#define SHMKIT__MGR_REVISION 1u /* what this server serves (see above) */
#define SHMKIT__MGR_HDR 16u
#define SHMKIT__MGR_MAX_PAYLOAD 65536u
#define SHMKIT__MGR_FRAME_MAX (SHMKIT__MGR_HDR + SHMKIT__MGR_MAX_PAYLOAD)
#define SHMKIT__MGR_NONCE 32u
#define SHMKIT__MGR_MAC 32u
#define SHMKIT__MGR_HELLO_LEN (8u + SHMKIT__MGR_NONCE)

enum {
    SHMKIT__MGR_HELLO = 1,
    SHMKIT__MGR_AUTH = 2,
    SHMKIT__MGR_CREATE = 3,
    SHMKIT__MGR_RELEASE = 4,
    SHMKIT__MGR_LIST = 5,
    SHMKIT__MGR_SHUTDOWN = 6,
    SHMKIT__MGR_CREATE_LIST = 7,
    SHMKIT__MGR_CREATE_QUEUE = 8,
    SHMKIT__MGR_REPLY = 0x8000
};

struct shmkit__mgr_msg {
    uint16_t type;
    int32_t status;
    uint32_t len;
    const uint8_t *payload; /* points into the parsed buffer */
};

/* Parses one frame at the start of buf (n bytes). Returns the frame's
 * length when complete, 0 if more bytes are needed, SHMKIT_EPROTO (bad
 * magic, version or length) or SHMKIT_EVERSION. */
SHMKIT__HIDDEN ssize_t shmkit__mgr_parse(const uint8_t *buf, size_t n,
                                         struct shmkit__mgr_msg *m);

/* Writes a frame into out (SHMKIT__MGR_FRAME_MAX bytes); returns its
 * length. len must be <= SHMKIT__MGR_MAX_PAYLOAD. */
SHMKIT__HIDDEN size_t shmkit__mgr_put(uint8_t *out, uint16_t type,
                                      int32_t status, const void *payload,
                                      uint32_t len);

/* Reads a length-prefixed name at payload offset *off into name (room for
 * SHMKIT_NAME_MAX + 1), advancing *off. An empty name is "" (allowed only
 * if allow_empty). SHMKIT_EPROTO if it overruns; -EINVAL if invalid. */
SHMKIT__HIDDEN int shmkit__mgr_get_name(const struct shmkit__mgr_msg *m,
                                        size_t *off, char *name,
                                        bool allow_empty);
/* Appends a length-prefixed name at *off of buf (cap bytes); -ENOSPC if
 * it does not fit. */
SHMKIT__HIDDEN int shmkit__mgr_put_name(uint8_t *buf, size_t cap, size_t *off,
                                        const char *name);

SHMKIT__HIDDEN int shmkit__mgr_decode_create(const struct shmkit__mgr_msg *m,
                                             uint64_t *size, char *name);
/* Encodes / decodes a CREATE_QUEUE request (name may be "": generate). */
SHMKIT__HIDDEN int shmkit__mgr_put_queue_create(uint8_t *buf, size_t cap,
                                                size_t *off, uint64_t capacity,
                                                uint64_t max_messages,
                                                const char *name);
SHMKIT__HIDDEN int shmkit__mgr_decode_queue_create(const struct shmkit__mgr_msg *m,
                                                   uint64_t *capacity,
                                                   uint64_t *max_messages,
                                                   char *name);
SHMKIT__HIDDEN int shmkit__mgr_decode_u32(const struct shmkit__mgr_msg *m,
                                          uint32_t *v);
/* Decodes a LIST reply, calling fn for each name (fn returns <0 to stop). */
SHMKIT__HIDDEN int shmkit__mgr_decode_list(const struct shmkit__mgr_msg *m,
                                           uint32_t *total,
                                           int (*fn)(const char *name,
                                                     void *arg),
                                           void *arg);

/* Appends n items at *off of buf (cap bytes); -EMSGSIZE if they do not
 * fit, SHMKIT_ETYPE for an unknown type. */
SHMKIT__HIDDEN int shmkit__mgr_put_items(uint8_t *buf, size_t cap, size_t *off,
                                         const shmkit_item *items, size_t n);
/* Decodes a CREATE_LIST request: name (may be ""), and a malloc'd array
 * of *n items whose str/bytes point into m's payload. The count is checked
 * against the bytes present before anything is allocated. */
SHMKIT__HIDDEN int shmkit__mgr_decode_list_create(const struct shmkit__mgr_msg *m,
                                                  char *name,
                                                  shmkit_item **items,
                                                  size_t *n);

/* The MAC of a nonce under key (SHMKIT__MGR_MAC bytes into mac). */
SHMKIT__HIDDEN int shmkit__mgr_mac(const void *key, size_t keylen,
                                   const uint8_t *nonce, uint8_t *mac);

static inline uint32_t shmkit__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t shmkit__le64(const uint8_t *p)
{
    return (uint64_t)shmkit__le32(p) | (uint64_t)shmkit__le32(p + 4) << 32;
}
static inline void shmkit__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void shmkit__put64(uint8_t *p, uint64_t v)
{
    shmkit__put32(p, (uint32_t)v);
    shmkit__put32(p + 4, (uint32_t)(v >> 32));
}

#endif
