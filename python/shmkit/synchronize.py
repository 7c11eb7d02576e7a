"""Lock, RLock and Condition over shmkit's robust process-shared locks.

Drop-ins for multiprocessing's, with these differences:

* Each lock lives in a small named block (``lock.name``), so it pickles to
  any process at any time (not only to children at start-up) and can be
  attached by name (``Lock.attach(name)``). Created with ``track=True``
  (the default) the block is removed when the creating process family is
  gone; ``unlink()`` removes it earlier.
* A holder that dies never blocks the others. The next ``acquire()``
  succeeds and sets ``owner_died``: the data the lock protects may be half
  updated. Repair it, call ``consistent()``, then ``release()``. A lock
  released without ``consistent()`` becomes unusable for everyone: every
  later ``acquire()`` raises :class:`shmkit.NotRecoverableError`.
* Locks belong to the thread that acquired them (robust mutexes):
  releasing from another thread raises, where multiprocessing's
  semaphore-based Lock would allow it.
* Blocking calls release the GIL and can be interrupted by signals.
* ``lock.__enter__`` and ``lock.__exit__`` are bound once per lock, so a
  ``with`` block allocates nothing; one kept after its lock object is gone
  still works (its ``__self__`` is then None).
"""

import os
import threading

from . import _shmkit

__all__ = ['Lock', 'RLock', 'Condition']


def _holder(lock):
    """Who holds lock, in the words of CPython's repr: this process and
    thread, 'None', 'SomeOtherThread' or 'SomeOtherProcess'."""
    if lock._is_mine():
        from multiprocessing import process
        name = process.current_process().name
        if threading.current_thread().name != 'MainThread':
            name += '|' + threading.current_thread().name
        return name
    tid = lock._owner_tid()
    if tid == 0:
        return 'None'
    if tid > 0 and os.path.exists(f'/proc/self/task/{tid}'):
        return 'SomeOtherThread'
    return 'SomeOtherProcess'


def _attach(cls, name):
    return cls._attach(name)


class Lock(_shmkit.LockBase):
    """A non-recursive process-shared lock: Lock(*, name=None, track=True)."""

    __slots__ = ('__weakref__',)

    def __new__(cls, *, name=None, track=True, ctx=None):
        return cls._create(False, name, track)

    @classmethod
    def attach(cls, name):
        "Attach to the existing lock block called name."
        return cls._attach(name)

    def __reduce__(self):
        if self._embedded:
            return (_typed_lock, (self.name,))
        return (_attach, (self.__class__, self.name))

    def locked(self):
        "True if some thread of some process holds the lock (a snapshot)."
        return self._owner_tid() != 0

    def __repr__(self):
        try:
            name = _holder(self)
        except Exception:
            name = 'unknown'
        return f'<{self.__class__.__name__}(owner={name})>'


class RLock(Lock):
    """A recursive process-shared lock: RLock(*, name=None, track=True)."""

    __slots__ = ()

    def __new__(cls, *, name=None, track=True, ctx=None):
        return cls._create(True, name, track)

    def _is_owned(self):
        "True if the calling thread holds the lock."
        return self._is_mine()

    def _recursion_count(self):
        "How many times the calling thread holds the lock (0 if not)."
        return self._count()

    def __repr__(self):
        try:
            name = _holder(self)
            if self._is_mine():
                count = self._count()
            elif name == 'None':
                count = 0
            else:
                count = 'nonzero'
        except Exception:
            name, count = 'unknown', 'unknown'
        return f'<{self.__class__.__name__}({name}, {count})>'


def _typed_lock(name):
    from .sharedctypes import _attach_any
    return _attach_any(name).get_lock()


class _NoCount:
    __slots__ = ()

    def get_value(self):
        raise NotImplementedError("shmkit's condition keeps no count of sleepers")


class Condition:
    """Condition(lock=None, *, name=None, track=True): a process-shared
    condition variable over a shmkit Lock or RLock (a new RLock if None).

    The condition variable lives in the lock's block: every Condition over
    the same lock shares it (notify may then wake a waiter of another
    Condition over that lock; wait() may return early, as it may anyway)."""

    def __init__(self, lock=None, *, name=None, track=True, ctx=None):
        if lock is None:
            lock = RLock(name=name, track=track)
        if not isinstance(lock, _shmkit.LockBase):
            raise TypeError("Condition needs a shmkit Lock or RLock")
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        # What CPython's tests read (its Condition is built of semaphores).
        # The condition variable here is a futex in the lock's block that
        # keeps no count of sleepers: get_value() raises NotImplementedError,
        # as CPython's semaphores do where sem_getvalue() is missing.
        self._sleeping_count = self._woken_count = _NoCount()
        self._wait_semaphore = _NoCount()

    def __getstate__(self):
        return self._lock

    def __setstate__(self, lock):
        self.__init__(lock)

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __repr__(self):
        # As CPython's, whose waiter count is 'unknown' where its
        # semaphores cannot tell; this condition never can.
        return f'<{self.__class__.__name__}({self._lock!r}, unknown)>'

    @property
    def name(self):
        return self._lock.name

    def wait(self, timeout=None):
        """Release the lock, wait for a notify (or timeout seconds), take
        the lock again. Returns False if the timeout expired."""
        return self._lock._wait(timeout)

    def notify(self, n=1):
        self._lock._notify(n)

    def notify_all(self):
        self._lock._notify_all()

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        if timeout is not None:
            import time
            endtime = time.monotonic() + timeout
        else:
            endtime = None
            waittime = None
        while not result:
            if endtime is not None:
                import time
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def unlink(self):
        self._lock.unlink()
