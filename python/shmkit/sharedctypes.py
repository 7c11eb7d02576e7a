"""Value and Array: multiprocessing's shared ctypes, in self-describing
named blocks.

``Value(typecode_or_type, *args, lock=True)``,
``Array(typecode_or_type, size_or_initializer, *, lock=True)``,
``RawValue``, ``RawArray`` and ``copy`` behave as
:mod:`multiprocessing.sharedctypes`'s: a type code or any ctypes type
(``ctypes.c_double``, a ``ctypes.Structure``, arrays of them);
``lock=False`` and the Raw functions return the raw ctypes object (over the
shared bytes); otherwise a synchronized wrapper with ``.value``, items and
slices, ``get_lock()``, ``get_obj()`` (a real ctypes object over the shared
bytes: ``ctypes.addressof``, ``ctypes.sizeof`` work), ``acquire()``/
``release()`` and ``with``. Beyond them:

* ``name=`` gives the block a name; ``Value(name=n)``/``Array(name=n)`` (or
  ``Value.attach(n)``) attach to an existing one from any process. They
  pickle by name to any process at any time (raw ctypes objects too).
* The buffer protocol carries format and shape: ``numpy.asarray(arr)`` is a
  zero-copy view with the right dtype and shape. ``Array(..., shape=(3, 4))``
  makes an N-dimensional array (items are then indexed flat, C order).
* Integer items have lock-free atomics: ``add``, ``fetch_add``,
  ``compare_exchange``, ``load``, ``store`` (``v.value += 1`` is not atomic,
  here as in CPython); raw objects of type codes have them too.
* ``lock=True`` uses the recursive lock embedded in the block (it travels
  with the name); any shmkit Lock/RLock may be passed instead.
* Created with ``track=True`` (the default), a block is removed when the
  creating process family is gone; ``unlink()`` removes it earlier.

A type that has no type code (a Structure, a pointer, ``c_longdouble``) is
kept as bytes: the block is an Array of ``'B'`` of the type's size, so
another process attaching by name without the class sees its bytes (the
class travels with pickling).
"""

import ctypes

from . import _shmkit

__all__ = ['Value', 'Array', 'RawValue', 'RawArray', 'copy', 'synchronized']

# The ctypes type of each type code the library knows (same C types).
_CTYPE_OF_CODE = {
    'c': ctypes.c_char, 'u': ctypes.c_wchar, 'b': ctypes.c_byte,
    'B': ctypes.c_ubyte, 'h': ctypes.c_short, 'H': ctypes.c_ushort,
    'i': ctypes.c_int, 'I': ctypes.c_uint, 'l': ctypes.c_long,
    'L': ctypes.c_ulong, 'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong,
    'f': ctypes.c_float, 'd': ctypes.c_double, '?': ctypes.c_bool,
}


def _resolve(typecode_or_type):
    """(code, ctype): code is the block's type code, or None when the type
    has none and is kept as bytes."""
    if isinstance(typecode_or_type, str):
        ctype = _CTYPE_OF_CODE.get(typecode_or_type)
        if ctype is None:
            raise TypeError(f"bad type code {typecode_or_type!r} for a shared Value/Array")
        return typecode_or_type, ctype
    if not (isinstance(typecode_or_type, type) and
            issubclass(typecode_or_type, ctypes._SimpleCData.__mro__[1])):
        raise TypeError(f"unsupported type for a shared Value/Array: {typecode_or_type!r}")
    ctype = getattr(typecode_or_type, '_shmkit_base', typecode_or_type)
    code = getattr(ctype, '_type_', None)
    if isinstance(code, str) and code in _CTYPE_OF_CODE and \
            ctypes.sizeof(ctype) == ctypes.sizeof(_CTYPE_OF_CODE[code]):
        return code, ctype
    return None, ctype


def _full_type(ctype, shape):
    for e in reversed(shape):
        ctype = ctype * e
    return ctype


# ---- raw ctypes objects over a block ---------------------------------------

class _RawShared:
    """Mixed into the ctypes type of a raw shared object: the block's name,
    unlink(), pickling by name, and the atomics of type-code blocks."""

    __slots__ = ()

    @property
    def name(self):
        return self._shm.name

    def unlink(self):
        self._shm.unlink()

    def __reduce__(self):
        return (_rebuild_raw, (self._shm.name, self._shmkit_spec))

    def __getattr__(self, attr):
        if attr in ('add', 'fetch_add', 'compare_exchange', 'load', 'store',
                    'typecode', 'shape', 'nbytes', 'close'):
            return getattr(self._shm, attr)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")


_raw_classes = {}


def _raw_class(full):
    cls = _raw_classes.get(full)
    if cls is None:
        # __reduce__ in the class itself: ctypes' own comes first otherwise.
        cls = type(full.__name__, (full, _RawShared),
                   {'_shmkit_base': full, '__reduce__': _RawShared.__reduce__})
        _raw_classes[full] = cls
    return cls


def _raw_over(typed, full, spec):
    obj = _raw_class(full).from_buffer(typed)
    obj._shm = typed
    obj._shmkit_spec = spec
    return obj


def _rebuild_raw(name, spec):
    typed = _Typed._attach(name)
    return _raw_over(typed, _spec_type(typed, spec), spec)


def _spec_type(typed, spec):
    """The full ctypes type of a block: spec is None for a type-code block
    (its header says all), else (ctype, shape) of a bytes-kept one."""
    if spec is None:
        return _full_type(_CTYPE_OF_CODE[typed.typecode], typed.shape)
    ctype, shape = spec
    full = _full_type(ctype, shape)
    if typed.typecode != 'B' or typed.nbytes != ctypes.sizeof(full):
        raise TypeError(f"block {typed.name!r} does not hold a {full.__name__}")
    return full


# ---- synchronized wrappers ---------------------------------------------------

def _check_lock(lock):
    if lock is True or lock is None or lock is False:
        return
    if not hasattr(lock, 'acquire'):
        raise AttributeError(f"{lock!r} has no method 'acquire'")


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
    __slots__ = ('__weakref__', '_ctobj')

    @classmethod
    def attach(cls, name, *, lock=True):
        "Attach to the existing Value/Array block called name."
        obj = cls._attach(name)
        if cls is Value and obj.ndim != 0:
            raise TypeError(f"{name!r} is an Array, not a Value")
        if lock is False:
            return _raw_over(obj, _spec_type(obj, None), None)
        _setup_lock(obj, lock)
        return obj

    def get_obj(self):
        """The ctypes object over the shared bytes (c_int, c_double * 10,
        ...): ctypes.addressof() and ctypes.sizeof() see the block."""
        try:
            return self._ctobj
        except AttributeError:
            pass
        self._ctobj = _spec_type(self, None).from_buffer(self)
        return self._ctobj

    def __reduce__(self):
        return (_rebuild, (self.__class__, self.name, _lock_spec(self)))


class _SynchronizedCtypes:
    """A synchronized wrapper over a ctypes type without a type code (a
    Structure, an array of them...), kept as bytes in a typed block:
    attributes and items of the object, each access under the lock."""

    def __init__(self, typed, spec, lock):
        d = self.__dict__
        d['_typed'] = typed
        d['_spec'] = spec
        d['_obj'] = _spec_type(typed, spec).from_buffer(typed)
        if lock is True or lock is None:
            from .synchronize import RLock
            lock = typed._embedded_lock(RLock)
        d['_lock'] = lock
        d['acquire'] = lock.acquire
        d['release'] = lock.release

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    @property
    def name(self):
        return self._typed.name

    def unlink(self):
        self._typed.unlink()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        lock = self._lock
        spec = True if (getattr(lock, '_embedded', False) and lock.name == self.name) else lock
        return (_rebuild_sync, (self.name, self._spec, spec))

    def __getattr__(self, attr):
        obj = self.__dict__['_obj']
        with self._lock:
            return getattr(obj, attr)

    def __setattr__(self, attr, value):
        with self._lock:
            setattr(self._obj, attr, value)

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self._lock:
            self._obj[i] = value

    def __repr__(self):
        return f'<Synchronized wrapper for {self._obj!r} name={self.name!r}>'


def _rebuild_sync(name, spec, lock):
    return _SynchronizedCtypes(_Typed._attach(name), spec, lock)


def _make_bytes_kept(ctype, shape, args, lock, name, track, init=None):
    full = _full_type(ctype, shape)
    _check_lock(lock)
    typed = _Typed._create('B', (ctypes.sizeof(full),), name, track)
    spec = (ctype, tuple(shape))
    obj = full.from_buffer(typed)
    if args:
        obj.__init__(*args)
    if init is not None:
        obj.__init__(*init)
    del obj
    if lock is False:
        return _raw_over(typed, full, spec)
    return _SynchronizedCtypes(typed, spec, lock)


class Value(_Typed):
    """Value(typecode_or_type, *args, lock=True, name=None, track=True)"""

    __slots__ = ()

    def __new__(cls, typecode_or_type=None, *args, lock=True, name=None,
                track=True, ctx=None):
        if typecode_or_type is None:
            if name is None:
                raise TypeError("Value() needs a type code (or name= to attach)")
            return cls.attach(name, lock=lock)
        code, ctype = _resolve(typecode_or_type)
        if code is None:
            return _make_bytes_kept(ctype, (), args, lock, name, track)
        _check_lock(lock)
        obj = cls._create(code, (), name, track)
        if args:
            if len(args) == 1:
                obj.value = args[0]
            else:
                obj.get_obj().__init__(*args)
        if lock is False:
            return _raw_over(obj, ctype, None)
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
        code, ctype = _resolve(typecode_or_type)
        init = None
        if isinstance(size_or_initializer, int):
            size = size_or_initializer
        else:
            init = list(size_or_initializer)
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
        if code is None:
            return _make_bytes_kept(ctype, shape, (), lock, name, track, init)
        _check_lock(lock)
        obj = cls._create(code, shape, name, track)
        if init is not None:
            obj[:] = init
        if lock is False:
            return _raw_over(obj, _full_type(ctype, shape), None)
        _setup_lock(obj, lock)
        return obj

    def __repr__(self):
        return f'<SynchronizedArray wrapper for {self.typecode}{list(self[:])!r} name={self.name!r}>'


def RawValue(typecode_or_type, *args, name=None, track=True):
    "A raw ctypes object over a new shared block (no lock)."
    return Value(typecode_or_type, *args, lock=False, name=name, track=track)


def RawArray(typecode_or_type, size_or_initializer, *, name=None, track=True, shape=None):
    "A raw ctypes array over a new shared block (no lock)."
    return Array(typecode_or_type, size_or_initializer, lock=False, name=name,
                 track=track, shape=shape)


def copy(obj):
    "A new raw shared object holding a copy of the ctypes object obj's bytes."
    t = type(obj)
    t = getattr(t, '_shmkit_base', t)
    shape = []
    while issubclass(t, ctypes.Array):
        shape.append(t._length_)
        t = t._type_
    if shape:
        n = 1
        for e in shape:
            n *= e
        new = RawArray(t, n, shape=shape)
    else:
        new = RawValue(t)
    ctypes.memmove(ctypes.addressof(new), ctypes.addressof(obj), ctypes.sizeof(obj))
    return new


def synchronized(obj, lock=None, ctx=None):
    """A synchronized wrapper over the raw shared object obj (made by
    RawValue/RawArray), with lock (None: the block's own lock)."""
    typed = getattr(obj, '_shm', None)
    if typed is None:
        raise TypeError("synchronized() needs a raw object made by shmkit "
                        "(RawValue, RawArray, lock=False)")
    spec = obj._shmkit_spec
    if spec is not None:
        return _SynchronizedCtypes(typed, spec, True if lock is None else lock)
    cls = Value if typed.ndim == 0 else Array
    w = cls._attach(typed.name)
    _setup_lock(w, True if lock is None else lock)
    return w
