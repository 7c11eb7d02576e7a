/*
 * proc.c - whether a process recorded as (pid, start time) may still run:
 * the one rule the lifecycle modules (refcount slots, trackers, managers)
 * and the queue's reaping of dead owners share (see os.h).
 */
#include <errno.h>

#include "core/os.h"

bool shmkit__proc_alive(pid_t pid, uint64_t start, unsigned bits)
{
    uint64_t now = 0, mask = bits >= 64 ? ~UINT64_C(0)
                                        : (UINT64_C(1) << bits) - 1;
    int r;

    if (pid <= 0)
        return false;
    r = shmkit__os.proc_start(pid, &now);
    /* Only a process known to be gone is dead. When /proc cannot be read
     * (this process out of descriptors, out of memory, hidepid), the
     * answer must keep what a live owner holds. */
    if (r == -ESRCH)
        return false;
    if (r < 0)
        return true;
    now &= mask;
    start &= mask;
    return now == start || now == 0 || start == 0;
}
