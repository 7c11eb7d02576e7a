/*
 * lock_answers.h - every answer a lock call may give on hostile bytes:
 * what test_lock_hostile and fuzz_lock accept (a crash, a hang or any
 * other code is a finding). Header-only: the fuzz target links no
 * Criterion.
 */
#ifndef SHMKIT_LOCK_ANSWERS_H
#define SHMKIT_LOCK_ANSWERS_H

#include <errno.h>
#include <stdbool.h>

#include "shmkit.h"

static inline bool lock_answer_defined(int r)
{
    switch (r) {
    case 0:
    case SHMKIT_EOWNERDEAD:
    case SHMKIT_ENOTRECOVERABLE:
    case SHMKIT_ENOTOWNER:
    case SHMKIT_ECORRUPT:
    case SHMKIT_ENAMESPACE:
    case SHMKIT_ETOOMANYLOCKS:
    case -EBUSY:
    case -ETIMEDOUT:
    case -EDEADLK:
    case -EINVAL:
    case -EAGAIN:
        return true;
    default:
        return false;
    }
}

#endif
