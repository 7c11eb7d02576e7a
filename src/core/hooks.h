/*
 * hooks.h - how the layers above attach behaviour to blocks.
 *
 * The block layer (block.c) never names a function of a higher layer. Where
 * a block operation must involve one - a lifetime (family tracking, reference
 * counting) or the check that this process holds no lock inside a mapping -
 * it calls through the table below, which the layer that implements the
 * behaviour fills in:
 *
 *   life  (src/life/block_life.c) sets .life   - tracked/refcounted blocks
 *   sync  (src/sync/lock.c)       sets .locks_held_in
 *
 * Each layer registers from a constructor (SHMKIT__REGISTER: before main,
 * single-threaded, before the program's own constructors), so nothing
 * needs an init call. A static link pulls in an archive member only when
 * something uses one of its symbols, which a registering constructor alone
 * does not: libshmkit.a is therefore built from one prelinked object
 * (CMakeLists.txt), so that linking any part of it links every layer and
 * every registration. An entry still NULL means its layer
 * is not in the program: no lock can then be held, and a create or attach
 * that asks for a lifetime fails with SHMKIT_ETRACKER.
 */
#ifndef SHMKIT_HOOKS_H
#define SHMKIT_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Marks a layer's registration function: a constructor of the highest
 * priority a program may use (101), so that it has run before any
 * constructor of default priority - the program's own included, which may
 * already create blocks - whatever the link order. */
#define SHMKIT__REGISTER __attribute__((constructor(101)))

/* Flags that ask for a lifetime. */
#define SHMKIT__LIFE_FLAGS (SHMKIT_TRACK | SHMKIT_REFCOUNT)

/* A lifetime policy, chosen per block by its flags. */
struct shmkit__life_ops {
    /* b was just created, sized and mapped, b->flags has
     * SHMKIT__LIFE_FLAGS bits, and b is about to be published under
     * b->name; its object has inode `ino`. Start its lifetime now, before
     * the name appears (a journal records the intent), so that no instant
     * exists where the name is there and nobody accounts for it. A
     * negative return fails the create. */
    int (*created)(shmkit_block *b, uint64_t ino);
    /* Publishing b after created() failed (the name was taken, ...): undo
     * created(), never touching b->name, which is not b's. */
    void (*abandoned)(shmkit_block *b);
    /* b was just attached and mapped with SHMKIT_REFCOUNT. A negative
     * return fails the attach. */
    int (*attached)(shmkit_block *b);
    /* b, which has lifetime state (b->life), is being closed: end this
     * handle's part; if it was the last, remove the name. Called while b is
     * still mapped; must leave b->life NULL. */
    void (*closing)(shmkit_block *b);
    /* b's name was just removed by shmkit_block_unlink(): forget it. Called
     * on every unlink, so it must be cheap when nothing is tracked. */
    void (*unlinked)(const char *name);
    /* b was just renamed from b->name (still the old name) to `to`, by
     * exchange if `exchange`: move its bookkeeping along. */
    void (*renamed)(shmkit_block *b, const char *to, bool exchange);
};

struct shmkit__block_hooks {
    const struct shmkit__life_ops *life;
    /* True if this process holds a shmkit lock in [p, p + len): closing or
     * shrinking such a mapping is refused (SHMKIT_ELOCKHELD). */
    bool (*locks_held_in)(const void *p, size_t len);
};

/*
 * Per thread, set by a layer around a create it makes for someone else
 * (the manager): called when a new object is about to get its name (after
 * its lifetime started, before the name appears) with that name and the
 * object's inode, so the caller can journal what it will own before it
 * exists. A negative return fails the publishing. Called once per name
 * tried (a generated name may be retried): a record for a name that never
 * appeared names no object of that inode and is harmless.
 */
struct shmkit__publish_intent {
    int (*fn)(const char *name, uint64_t ino, void *arg);
    void *arg;
};
SHMKIT__HIDDEN extern __thread struct shmkit__publish_intent
    shmkit__publish_intent;

/* Filled by the layers above at load time; read by block.c. */
SHMKIT__HIDDEN extern struct shmkit__block_hooks shmkit__block_hooks;

#endif
