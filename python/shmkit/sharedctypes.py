"""Value and Array: multiprocessing's shared ctypes, in self-describing
named blocks.

``Value(typecode_or_type, *args, lock=True)`` and
``Array(typecode_or_type, size_or_initializer, *, lock=True)`` behave as
multiprocessing's (``.value``, items and slices, ``get_lock()``,
``get_obj()``, ``acquire()``/``release()``, ``with``; ``Array('c')`` has
``.value`` and ``.raw``). Beyond them:

* ``name=`` gives the block a name; ``Value(name=n)``/``Array(name=n)`` (or
  ``Value.attach(n)``) attach to an existing one from any process. They
  pickle by name to any process at any time.
* The buffer protocol carries format and shape: ``numpy.asarray(arr)`` is a
  zero-copy view with the right dtype and shape. ``Array(..., shape=(3, 4))``
  makes an N-dimensional array (items are then indexed flat, C order).
* Integer items have lock-free atomics: ``add``, ``fetch_add``,
  ``compare_exchange``, ``load``, ``store`` (``v.value += 1`` is not atomic,
  here as in CPython).
* ``lock=True`` uses the recursive lock embedded in the block (it travels
  with the name); ``lock=False`` has none; any shmkit Lock/RLock may be
  passed instead.
* Created with ``track=True`` (the default), a block is removed when the
  creating process family is gone; ``unlink()`` removes it earlier.
"""

from . import _shmkit

__all__ = ['Value', 'Array', 'RawValue', 'RawArray']


def _typecode(typecode_or_type):
    if isinstance(typecode_or_type, str):
        return typecode_or_type
    code = getattr(typecode_or_type, '_type_', None)
    if isinstance(code, str) and len(code) == 1:
        return code
    raise TypeError(f"unsupported type for a shared Value/Array: {typecode_or_type!r}")


def _setup_lock(obj, lock):
    if lock is True or lock is None:
        from .synchronize import RLock
        obj._lock = obj._embedded_lock(RLock)
    elif lock is False:
        obj._lock = None
    elif hasattr(lock, 'acquire') and hasattr(lock, 'release'):
        obj._lock = lock
    else:
        raise AttributeError(f"{lock!r} has no method 'acquire'")


def _lock_spec(obj):
    lock = obj._lock
    if lock is None:
        return False
    if getattr(lock, '_embedded', False) and lock.name == obj.name:
        return True
    return lock


def _rebuild(cls, name, lock):
    obj = cls._attach(name)
    _setup_lock(obj, lock)
    return obj


def _attach_any(name):
    "Attach a Value or an Array block, whichever name is."
    cls = Value if _Typed._attach(name).ndim == 0 else Array
    obj = cls._attach(name)
    _setup_lock(obj, True)
    return obj


class _Typed(_shmkit.TypedBase):
    __slots__ = ('__weakref__',)

    @classmethod
    def attach(cls, name, *, lock=True):
        "Attach to the existing Value/Array block called name."
        obj = cls._attach(name)
        if cls is Value and obj.ndim != 0:
            raise TypeError(f"{name!r} is an Array, not a Value")
        _setup_lock(obj, lock)
        return obj

    def __reduce__(self):
        return (_rebuild, (self.__class__, self.name, _lock_spec(self)))


class Value(_Typed):
    """Value(typecode_or_type, *args, lock=True, name=None, track=True)"""

    __slots__ = ()

    def __new__(cls, typecode_or_type=None, *args, lock=True, name=None,
                track=True, ctx=None):
        if typecode_or_type is None:
            if name is None:
                raise TypeError("Value() needs a type code (or name= to attach)")
            return cls.attach(name, lock=lock)
        obj = cls._create(_typecode(typecode_or_type), (), name, track)
        if args:
            obj.value = args[0]
        _setup_lock(obj, lock)
        return obj

    def __repr__(self):
        return f'<Synchronized wrapper for {self.typecode}({self.value!r}) name={self.name!r}>'


class Array(_Typed):
    """Array(typecode_or_type, size_or_initializer, *, lock=True, name=None,
    track=True, shape=None)"""

    __slots__ = ()

    def __new__(cls, typecode_or_type=None, size_or_initializer=None, *,
                lock=True, name=None, track=True, shape=None, ctx=None):
        if typecode_or_type is None:
            if name is None:
                raise TypeError("Array() needs a type code (or name= to attach)")
            return cls.attach(name, lock=lock)
        code = _typecode(typecode_or_type)
        init = None
        if isinstance(size_or_initializer, int):
            size = size_or_initializer
        else:
            init = size_or_initializer
            size = len(init)
        if shape is None:
            shape = (size,)
        else:
            shape = tuple(shape)
            n = 1
            for e in shape:
                n *= e
            if n != size:
                raise ValueError(f"shape {shape} does not hold {size} items")
        obj = cls._create(code, shape, name, track)
        if init is not None:
            obj[:] = init
        _setup_lock(obj, lock)
        return obj

    def __repr__(self):
        return f'<SynchronizedArray wrapper for {self.typecode}{list(self[:])!r} name={self.name!r}>'


def RawValue(typecode_or_type, *args, name=None, track=True):
    "A Value without a lock."
    return Value(typecode_or_type, *args, lock=False, name=name, track=track)


def RawArray(typecode_or_type, size_or_initializer, *, name=None, track=True, shape=None):
    "An Array without a lock."
    return Array(typecode_or_type, size_or_initializer, lock=False, name=name,
                 track=track, shape=shape)
