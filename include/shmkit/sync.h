/* shmkit/sync.h - part of shmkit.h; include <shmkit.h>, not this file. */
#ifndef SHMKIT_SYNC_H
#define SHMKIT_SYNC_H

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
