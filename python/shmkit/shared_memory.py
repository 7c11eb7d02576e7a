"""Shared memory for direct access across processes: a drop-in for
:mod:`multiprocessing.shared_memory`, on top of libshmkit.

Replacing ``from multiprocessing import shared_memory`` with
``from shmkit import shared_memory`` migrates a program. Differences from
CPython, all on purpose:

* Attaching never registers the block anywhere and never unlinks it; only
  the creator tracks (``track=True``), and a tracked block is removed when
  the creator's process family is gone, also after SIGKILL.
* ``close()`` never raises because a memoryview or NumPy array still uses
  the buffer: the mapping stays until the last of them is released.
* ``SharedMemory`` and ``ShareableList`` are context managers;
  ``SharedMemory`` has ``rename()``, ``resize()`` and ``refresh()``.
* ``size`` is the exact size, never rounded up to a page.
"""

import os
import secrets
import sys

from . import _shmkit
from . import resource_tracker as _tracker_shim

__all__ = ['SharedMemory', 'ShareableList']

# CPython's module-level names, which tests and programs read or patch.
_USE_POSIX = True
_O_CREX = os.O_CREAT | os.O_EXCL
_O_CREX_RDWR = _O_CREX | os.O_RDWR
# Shortest maximum name length among POSIX systems (FreeBSD's 14).
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = '/psm_'


def _make_filename():
    """A random name for a new block: _SHM_NAME_PREFIX and hex digits,
    _SHM_SAFE_NAME_LENGTH characters at most (looked up at each create, so
    a test may patch it)."""
    room = _SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)
    return _SHM_NAME_PREFIX + secrets.token_hex(room // 2)

_Mapping = _shmkit.Mapping
_TRACK = _shmkit.TRACK
_RESERVE = _shmkit.RESERVE
# Names shmkit made or attached here, for the resource_tracker shim: its
# _made(), which SharedMemoryBase (C) does on create and unlink.
_shmkit._made_names = _tracker_shim._shmkit_names
_shmkit._made_keep = _tracker_shim._KEEP

SHM_RENAME_NOREPLACE = _shmkit.RENAME_NOREPLACE
SHM_RENAME_EXCHANGE = _shmkit.RENAME_EXCHANGE


def _del_close(self):
    try:
        self.close()
    except Exception:
        pass


def _rebuild_shm(cls, name, track):
    return cls(name, False, 0, track=track)


class SharedMemory(_shmkit.SharedMemoryBase):
    """Creates a new shared memory block or attaches to an existing one.

    Every block has a unique name; another process attaches to the same
    block by that name. ``close()`` gives up this handle, ``unlink()``
    removes the block's name (once, by one process).

    ``SharedMemory(name=None, create=False, size=0, *, track=True,
    reserve=True)``. ``reserve`` (create only): allocate the block's memory
    now (posix_fallocate), so that a full /dev/shm raises
    ``OSError(ENOSPC)`` here. With ``reserve=False`` the memory is
    allocated page by page as it is first touched, as CPython does;
    touching a page when /dev/shm is full then kills the interpreter with
    SIGBUS, and so can touching a page after another process shrank the
    block. Reserving costs 0.3-0.7 ms per MiB at create and makes the
    first writes faster by as much or more: creating and filling a block
    took 648 us reserved vs 720 us not (1 MiB), 144 vs 152 ms (64 MiB)
    here (bench/reserve_cost.py). Pass ``reserve=False`` for a large block
    of which only a few pages will ever be used.

    ``__init__``, ``close()`` and ``unlink()`` are SharedMemoryBase's (C):
    the Python they replaced cost about a tenth of a 4 KiB create cycle.
    ``__init__`` hands every case but a create with a name and a size to
    ``_init()``."""

    # Defaults, so that close() and unlink() work on a half-made object.
    _mapping = None
    _buf = None
    _name = None
    _size = 0
    _track = True
    _raw = False    # this handle created the block as a raw block
    # As CPython's: open flags (a subclass may add os.O_CREAT to attach or
    # create), the mode of a new block, and the leading slash that _name
    # carries and name hides.
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    def _init(self, name, create, size, track, reserve):
        """__init__ for all but the common create (SharedMemoryBase does
        that one): a generated name, an attach, O_CREAT set by a
        subclass, and the errors."""
        m = self._open(name, create, size, track, reserve)
        if name is None:
            name = m.name
        if not track:
            self._track = False
        self._mapping = m
        self._name = '/' + name if self._prepend_leading_slash else name
        self._size = m.size
        self._buf = memoryview(m)
        _tracker_shim._made(m.name)

    def _open(self, name, create, size, track, reserve):
        """Opens or creates the block as __init__'s arguments say; returns
        the Mapping."""
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        tflags = (_TRACK if track else 0) | (_RESERVE if reserve else 0)
        if name is None:
            # Names from _make_filename until one is free, as CPython; they
            # carry their slash already.
            while True:
                name = _make_filename()
                try:
                    m = _Mapping.create(name, size, tflags, self._mode)
                    self._raw = True
                    return m
                except FileExistsError:
                    continue
        if create:
            m = _Mapping.create(name, size, tflags, self._mode)
            self._raw = True
        elif self._flags & os.O_CREAT:
            try:
                m = _Mapping.attach(name)
            except FileNotFoundError:
                if size == 0:
                    raise ValueError("cannot mmap an empty file") from None
                m = _Mapping.create(name, size, tflags, self._mode)
                self._raw = True
        else:
            m = _Mapping.attach(name)
        return m

    @classmethod
    def _from_mapping(cls, mapping, track=False):
        """Wraps an already made Mapping (used by ShareableList, managers)."""
        self = cls.__new__(cls)
        self._track = track
        self._mapping = mapping
        self._name = '/' + mapping.name
        self._size = mapping.size
        self._buf = memoryview(mapping)
        return self

    # No __del__: when a SharedMemory goes, so do its buffer and its
    # Mapping, whose own deallocation unmaps and closes the block (after
    # the last memoryview or array using it) -- what close() would do. A
    # subclass that overrides close() gets a __del__ that calls it, as
    # CPython's SharedMemory always does.
    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.close is not SharedMemory.close and '__del__' not in cls.__dict__:
            cls.__del__ = _del_close

    def __reduce__(self):
        return (_rebuild_shm, (self.__class__, self.name, self._track))

    def __repr__(self):
        return f'{self.__class__.__name__}({self.name!r}, size={self.size})'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def buf(self):
        "A memoryview of contents of the shared memory block."
        return self._buf

    @property
    def name(self):
        "Unique name that identifies the shared memory block."
        name = self._name
        if self._prepend_leading_slash and name is not None and name.startswith('/'):
            name = name[1:]
        return name

    @property
    def size(self):
        "Size in bytes (exact, as created; see resize() and refresh())."
        return self._size

    @property
    def track(self):
        "Whether the creator's family tracker removes this block."
        return self._track

    @property
    def closed(self):
        "True after close()."
        return self._mapping is None or self._mapping.closed

    def rename(self, newname, flags=0):
        """Renames the block to newname atomically. By default an existing
        newname is replaced; flags SHM_RENAME_NOREPLACE refuses
        (FileExistsError), SHM_RENAME_EXCHANGE swaps the two names."""
        self._live().rename(newname, flags)
        self._name = '/' + self._mapping.name

    def resize(self, size):
        """Grows the block to size bytes (other attachers see the new size
        after their refresh()). Buffers and arrays taken before keep the old
        mapping and size; take shm.buf again."""
        if size < self._live().size:
            raise ValueError("cannot shrink a shared memory block")
        self._remap(lambda mapping: mapping.resize(size))

    def refresh(self):
        """Picks up a size change made by another process."""
        self._remap(lambda mapping: mapping.refresh())

    def _live(self):
        m = self._mapping
        if m is None:
            raise ValueError("operation on a closed SharedMemory")
        return m

    def _remap(self, op):
        m = self._live()
        if m.handle_kind != 0:
            raise ValueError("the block of a ShareableList, Value, Array or "
                             "lock has a fixed layout: it cannot be remapped")
        self._buf = None
        # References: self._mapping, m, getrefcount's argument. Anything
        # more (a NumPy array, a memoryview, a ShareableList) may point
        # into the mapping, which a remap could move.
        if m.exports == 0 and sys.getrefcount(m) <= 3:
            try:
                op(m)
            finally:
                self._buf = memoryview(m)
                self._size = m.size
            return
        # Leave the current mapping to its users; go on with a fresh handle.
        try:
            fresh = _Mapping.attach(m.name)
            op(fresh)
        except BaseException:
            self._buf = memoryview(m)
            raise
        m.close()
        self._mapping = fresh
        self._size = fresh.size
        self._buf = memoryview(fresh)


from ._list import ShareableList  # noqa: E402  (needs SharedMemory above)
