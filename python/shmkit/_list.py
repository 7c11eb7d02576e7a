"""ShareableList: CPython's list-like object in one shared memory block.

The item access, len, count, index, format and shm are C
(ShareableListBase, over libshmkit's list API); this subclass adds repr,
pickling and the context manager. Byte for byte CPython's layout: CPython's own
ShareableList attaches to ours and the other way round.
"""

from functools import partial
import sys
import types

from . import _shmkit


class ShareableList(_shmkit.ShareableListBase):
    """Pattern for a mutable list-like object shareable via a shared
    memory block. It differs from the built-in list type in that these
    lists can not change their overall length (i.e. no append, insert,
    etc.)

    ShareableList(sequence=None, *, name=None, track=True): with a
    sequence, create a new list (named name, or a generated name); with
    only a name, attach to an existing one. Unlike CPython, str and bytes
    items keep trailing NULs, and non-ASCII str items are never truncated.
    """

    __slots__ = ('__weakref__',)

    # shm (ShareableListBase, C) is made on first use as an instance of
    # this class, as SharedMemory._from_mapping would make it. It is set
    # when shared_memory (which imports this module) has defined it.
    _shm_class = None

    def __reduce__(self):
        return partial(self.__class__, name=self.shm.name), ()

    def __repr__(self):
        return f'{self.__class__.__name__}({list(self)}, name={self.shm.name!r})'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shm.close()

    def _get_packing_format(self, position):
        """The struct format of the item at position, as stored in the
        block's format table (CPython's layout: list length, n + 1 end
        offsets, the items, then 8 bytes of format per item)."""
        n = len(self)
        if position < 0:
            position += n
        if not 0 <= position < n:
            raise IndexError("Requested position out of range.")
        buf = self.shm.buf
        data_size = int.from_bytes(buf[8 + 8 * n:16 + 8 * n], sys.byteorder, signed=True)
        at = (n + 2) * 8 + data_size + 8 * position
        if data_size < 0 or at + 8 > len(buf):
            raise ValueError("corrupt ShareableList layout")
        return bytes(buf[at:at + 8]).rstrip(b'\x00').decode('utf-8')

    def locked(self):
        """A context manager holding the list's process-shared lock (a
        small block '<name>.lock' beside the list, removed by
        shm.unlink()). Use it in every shmkit process that writes str or
        bytes items or changes an item's type while others read."""
        return _ListLock(self)

    __class_getitem__ = classmethod(types.GenericAlias)


class _ListLock:
    __slots__ = ('_list', 'owner_died')

    def __init__(self, sl):
        self._list = sl
        self.owner_died = False

    def __enter__(self):
        self.owner_died = self._list._lock()
        return self

    def consistent(self):
        """After owner_died, mark the repaired list usable again. Leaving
        the block without it makes every later lock raise
        NotRecoverableError (the list stays readable)."""
        self._list._consistent()
        self.owner_died = False

    def __exit__(self, *exc):
        self._list._unlock()


# Last: shared_memory imports this module at its end, after SharedMemory.
from .shared_memory import SharedMemory as _SharedMemory  # noqa: E402
ShareableList._shm_class = _SharedMemory
