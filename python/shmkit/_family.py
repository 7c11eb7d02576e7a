"""Keeps the children of a process that imported shmkit in its tracked
family, as CPython keeps multiprocessing's children with one resource
tracker.

A tracked block is removed once every process of its creator's family has
exited; members hold the family's lifeline descriptor. Forked children
inherit it, but spawn and forkserver start fresh interpreters through
multiprocessing.util.spawnv_passfds, which closes every descriptor not
listed. This wraps that function so that the lifeline is listed too (at the
same number; the child finds it through SHMKIT_TRACKER). The forkserver
process then belongs to the family and so do the children it forks: a
child that creates a tracked block and exits leaves it to its parent,
whatever the start method.

The tracker is started (once) before the first os.fork() too, so that a
forked child that creates a tracked block and exits also leaves it to its
parent instead of rooting a family of its own.

subprocess is not touched: pass ``pass_fds=[shmkit.track_fd()]`` to keep a
child started that way in the family.
"""

import os

from multiprocessing import util as _util

from . import _shmkit


def _lifeline():
    fd = _shmkit.track_fd()
    if fd < 0:
        try:
            _shmkit.track_start()
        except OSError:
            return -1
        fd = _shmkit.track_fd()
    return fd


def _install():
    orig = _util.spawnv_passfds
    if getattr(orig, '_shmkit_family', False):
        return

    def spawnv_passfds(path, args, passfds):
        fd = _lifeline()
        if fd >= 0 and fd not in passfds:
            passfds = list(passfds) + [fd]
        return orig(path, args, passfds)

    spawnv_passfds._shmkit_family = True
    spawnv_passfds.__wrapped__ = orig
    _util.spawnv_passfds = spawnv_passfds
    os.register_at_fork(before=_lifeline)


_install()
