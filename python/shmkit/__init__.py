"""shmkit: named shared memory for the processes of one host.

A drop-in for :mod:`multiprocessing.shared_memory` (``shmkit.shared_memory``),
:class:`multiprocessing.managers.SharedMemoryManager` (``shmkit.managers``)
and multiprocessing's ``Value``, ``Array``, ``Lock``, ``RLock`` and
``Condition``, written in C over libshmkit.

Exceptions: CPython's where CPython raises one (FileNotFoundError,
FileExistsError, ValueError, IndexError, ...); otherwise :class:`Error`
(an OSError whose ``errno`` is the negative shmkit code) or one of its
subclasses :class:`CorruptError` (also a ValueError),
:class:`OwnerDeadError` and :class:`NotRecoverableError`; a ShareableList
item shmkit cannot hold raises :class:`ItemTypeError` (a TypeError and a
KeyError) or :class:`ItemRangeError` (an OverflowError and a struct.error).
"""

from . import _shmkit
from ._shmkit import (Error, CorruptError, OwnerDeadError,
                      NotRecoverableError, ItemTypeError, ItemRangeError,
                      unlink, errname, block_kind, track_start, track_fd,
                      track_pid, track, untrack, gc)
from .shared_memory import SharedMemory, ShareableList
from .queues import Queue, SimpleQueue, JoinableQueue
from . import _family  # noqa: F401  (spawn/forkserver children stay in the family)
from . import resource_tracker  # noqa: F401  (CPython's tracker idioms)

__version__ = _shmkit.LIB_VERSION

__all__ = ['SharedMemory', 'ShareableList', 'SharedMemoryManager', 'Value',
           'Array', 'RawValue', 'RawArray', 'Lock', 'RLock', 'Condition',
           'Error', 'CorruptError', 'OwnerDeadError', 'NotRecoverableError',
           'ItemTypeError', 'ItemRangeError', 'unlink', 'errname',
           'block_kind', 'track_start', 'track_fd', 'track_pid', 'track',
           'untrack', 'gc', 'Queue', 'SimpleQueue', 'JoinableQueue']


def __getattr__(name):
    # Imported lazily: the manager pulls in multiprocessing machinery.
    if name == 'SharedMemoryManager':
        from .managers import SharedMemoryManager
        return SharedMemoryManager
    if name in ('Value', 'Array', 'RawValue', 'RawArray'):
        from . import sharedctypes
        return getattr(sharedctypes, name)
    if name in ('Lock', 'RLock', 'Condition'):
        from . import synchronize
        return getattr(synchronize, name)
    raise AttributeError(f"module 'shmkit' has no attribute {name!r}")
