/* shmkit/list.h - part of shmkit.h; include <shmkit.h>, not this file. */
#ifndef SHMKIT_LIST_H
#define SHMKIT_LIST_H

#include "../shmkit.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
