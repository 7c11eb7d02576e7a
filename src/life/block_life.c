/*
 * block_life.c - the lifetimes a block can have, plugged into the block
 * layer.
 *
 * The block layer defines the interface (core/hooks.h) and calls it when a
 * block is created or attached with lifetime flags, closed, unlinked or
 * renamed; this file implements it over the family tracker (tracker.c,
 * SHMKIT_TRACK) and reference counting (refcount.c, SHMKIT_REFCOUNT), and
 * registers it before main.
 */
#include <stdint.h>

#include "life.h"
#include "core/hooks.h"
#include "core/os.h"

/* SHMKIT_TRACK, then SHMKIT_REFCOUNT; undoes the first if the second
 * fails. Called before the block has its name (hooks.h): the journal
 * record is an intent, and a record whose name never appeared (or names
 * another inode) is left alone by the tracker and gc. */
static int life_created(shmkit_block *b, uint64_t ino)
{
    int r;

    if (b->flags & SHMKIT_TRACK) {
        r = shmkit__track_register(b->name, ino);
        if (r < 0)
            return r;
    }
    if (b->flags & SHMKIT_REFCOUNT) {
        r = shmkit__ref_attach(b, ino);
        if (r < 0) {
            if (b->flags & SHMKIT_TRACK)
                shmkit__track_unregister(b->name);
            return r;
        }
    }
    return 0;
}

/* Publishing failed after life_created: leave the sidecar (removing it
 * if we were its only member) and the family journal. */
static void life_abandoned(shmkit_block *b)
{
    if (b->life)
        shmkit__ref_abandon(b);
    if (b->flags & SHMKIT_TRACK)
        shmkit__track_unregister(b->name);
}

/* Only reference counting applies to an attach (only the creator tracks). */
static int life_attached(shmkit_block *b)
{
    return (b->flags & SHMKIT_REFCOUNT) ? shmkit__ref_attach(b, 0) : 0;
}

static void life_closing(shmkit_block *b)
{
    /* The last attacher is gone: so goes the name (if it still names this
     * block: a peer may have renamed another object into place since),
     * and what its kind keeps beside it (a list's lock). */
    if (shmkit__ref_detach(b))
        shmkit__track_unregister(b->name);
}

static void life_renamed(shmkit_block *b, const char *to, bool exchange)
{
    shmkit__track_rename(b->name, to, exchange);
    if (b->life)
        shmkit__ref_rename(b, to, exchange);
}

static const struct shmkit__life_ops life_ops = {
    .created = life_created,
    .abandoned = life_abandoned,
    .attached = life_attached,
    .closing = life_closing,
    .unlinked = shmkit__track_unregister,
    .renamed = life_renamed,
};

/* Before main and before the program's own constructors, so that every
 * block created finds its lifetime (core/hooks.h). */
SHMKIT__REGISTER static void life_register(void)
{
    shmkit__block_hooks.life = &life_ops;
}
