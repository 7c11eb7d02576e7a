/* shmkit/typed.h - part of shmkit.h; include <shmkit.h>, not this file. */
#ifndef SHMKIT_TYPED_H
#define SHMKIT_TYPED_H

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
