"""`with lock:` and `v.value = x` on their fast paths keep every promise.

A shmkit lock's __enter__/__exit__ are bound once per lock (a gate the lock
keeps, python/src/sync.c), and a store to Value.value skips the generic
attribute machinery (python/src/typed.c). These tests pin down what must
not change: the same behaviour as a plain C method, owner-death reporting
through `with`, no reference cycle (a lock goes when its last reference
does), pickling, fork, and subclasses that define their own `value`.
"""
import contextlib
import gc
import os
import pickle
import signal
import weakref

import pytest

import shmkit

from conftest import join_ok, run, start


@pytest.fixture
def lock(names):
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    yield lk
    lk.unlink()


@pytest.fixture(params=["Lock", "RLock", "Value"])
def anylock(request, names):
    """A stand-alone Lock, RLock, or the RLock embedded in a Value."""
    if request.param == "Value":
        v = shmkit.Value('q', 0, track=False)
        names.add(v.name)
        yield v.get_lock()
        v.unlink()
    else:
        lk = getattr(shmkit, request.param)(track=False)
        names.add(lk.name)
        yield lk
        lk.unlink()


def test_enter_exit_are_bound_once(anylock):
    assert anylock.__enter__ is anylock.__enter__
    assert anylock.__exit__ is anylock.__exit__
    assert anylock.__enter__ is not anylock.__exit__
    assert anylock.__enter__.__self__ is anylock
    assert anylock.__exit__.__name__ == '__exit__'
    assert '__enter__' in repr(anylock.__enter__)


def test_with_takes_and_releases(anylock):
    with anylock as got:
        assert got is True                  # __enter__ returns acquire()'s result
        assert anylock._is_mine()
    assert not anylock._is_mine()
    with pytest.raises(KeyError):
        with anylock:
            assert anylock._is_mine()
            raise KeyError("propagates: __exit__ returns None")
    assert not anylock._is_mine()


def test_through_the_class_and_exit_stack(anylock):
    cls = type(anylock)
    assert cls.__enter__(anylock) is True
    assert anylock._is_mine()
    assert cls.__exit__(anylock, None, None, None) is None
    assert not anylock._is_mine()
    with contextlib.ExitStack() as stack:
        assert stack.enter_context(anylock) is True
        assert anylock._is_mine()
    assert not anylock._is_mine()
    entry = shmkit._shmkit.LockBase.__dict__['__enter__']
    assert entry.__get__(None, cls) is cls.__enter__
    with pytest.raises(TypeError):
        entry.__get__(42)


def test_arguments_as_a_c_method(anylock):
    with pytest.raises(TypeError):
        anylock.__enter__(1)
    with pytest.raises(TypeError):
        anylock.__enter__(block=False)
    assert not anylock._is_mine()
    anylock.__enter__()
    anylock.__exit__()                     # any positional arguments, or none
    anylock.__enter__()
    anylock.__exit__(None, None, None)
    with pytest.raises(TypeError):
        anylock.__exit__(exc=None)
    assert not anylock._is_mine()


def test_exit_without_holding_raises_as_cpython(names):
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    with pytest.raises(ValueError):        # multiprocessing.Lock's error
        lk.__exit__(None, None, None)
    rl = shmkit.RLock(track=False)
    names.add(rl.name)
    with pytest.raises(AssertionError):    # multiprocessing.RLock's error
        rl.__exit__(None, None, None)
    lk.unlink()
    rl.unlink()


def test_rlock_recursion_through_with(names):
    rl = shmkit.RLock(track=False)
    names.add(rl.name)
    with rl:
        with rl:
            assert rl._count() == 2
        assert rl._count() == 1
    assert rl._count() == 0
    rl.unlink()


def test_lock_goes_with_its_last_reference(names):
    # The gates refer to the lock only by a borrowed pointer: no cycle, so
    # the lock (and its mapping) go at once, with the collector off.
    gc.disable()
    try:
        lk = shmkit.Lock(track=False)
        name = names.add(lk.name)
        with lk:
            pass
        gone = []
        weakref.finalize(lk, gone.append, True)
        del lk
        assert gone == [True]
    finally:
        gc.enable()
    shmkit.unlink(name)


def test_gate_outlives_its_lock(names):
    lk = shmkit.Lock(track=False)
    name = names.add(lk.name)
    enter, exit_ = lk.__enter__, lk.__exit__
    del lk
    gc.collect()
    assert enter.__self__ is None
    assert enter() is True                 # the gate keeps the block mapped
    other = shmkit.Lock.attach(name)
    assert other.acquire(False) is False
    assert exit_(None, None, None) is None
    assert other.acquire(False) is True
    other.release()
    with pytest.raises(TypeError):
        pickle.dumps(enter)
    other.unlink()


def test_gate_pickles_as_its_bound_method(lock):
    enter, exit_ = pickle.loads(pickle.dumps((lock.__enter__, lock.__exit__)))
    assert (enter.__name__, exit_.__name__) == ('__enter__', '__exit__')
    assert enter() is True
    assert lock.acquire(False) is False    # the same lock, through its name
    exit_(None, None, None)
    assert lock.acquire(False) is True
    lock.release()


def _child_die_holding(lock, conn):
    lock.acquire()
    conn.send("held")
    os.kill(os.getpid(), signal.SIGKILL)


def test_owner_death_reported_through_with(anylock, ctx):
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_die_holding, anylock, w)
    assert r.recv() == "held"
    join_ok(p, expect=-signal.SIGKILL)
    with anylock:
        assert anylock.owner_died is True
        anylock.consistent()
        assert anylock.owner_died is False
    with anylock:
        assert anylock.owner_died is False


def _child_with_count(lock, name, n):
    v = shmkit.Value(name=name)
    enter = lock.__enter__                 # bound in the child after fork/pickle
    assert enter is lock.__enter__
    for _ in range(n):
        with lock:
            v.value += 1


def test_with_excludes_across_processes(names, ctx):
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    with lk:                               # gates made before the children start
        pass
    v = shmkit.Value('q', 0, track=False, lock=False)
    names.add(v.name)
    ps = [start(ctx, _child_with_count, lk, v.name, 3000) for _ in range(2)]
    for _ in range(3000):
        with lk:
            v.value += 1
    for p in ps:
        join_ok(p)
    assert v.value == 9000
    v.unlink()
    lk.unlink()


# ---- Value.value stores ------------------------------------------------------

def test_value_store_and_errors(names):
    v = shmkit.Value('q', 0, track=False)
    names.add(v.name)
    v.value = 5
    assert v.value == 5
    setattr(v, ''.join(['va', 'lue']), 6)  # a name that is not interned
    assert v.value == 6
    with pytest.raises(TypeError):
        v.value = "x"
    with pytest.raises(TypeError):
        del v.value
    with pytest.raises(AttributeError):
        v.no_such_attribute = 1            # other names: the generic path
    assert v.value == 6
    v.unlink()


class _Doubled(shmkit.Value):
    __slots__ = ()

    @property
    def value(self):
        return 2 * self.load()

    @value.setter
    def value(self, x):
        self.store(x + 100)


def test_subclass_value_property_is_honoured(names):
    plain = shmkit.Value('q', 0, track=False)
    names.add(plain.name)
    plain.value = 1                        # TypedBase's own descriptor first
    d = _Doubled('q', 0, track=False)
    names.add(d.name)
    d.value = 1
    assert d.load() == 101
    assert d.value == 202
    plain.value = 2
    assert plain.load() == 2
    plain.unlink()
    d.unlink()


def test_class_changed_after_first_store(names):
    class V(shmkit.Value):
        __slots__ = ()

    v = V('q', 0, track=False)
    names.add(v.name)
    v.value = 1                            # remembered as "ours" for V
    assert v.value == 1
    seen = []
    V.value = property(lambda self: -1, lambda self, x: seen.append(x))
    v.value = 7                            # the class changed: honoured
    assert seen == [7]
    assert v.load() == 1
    del V.value
    v.value = 8
    assert v.load() == 8
    v.unlink()


# ---- with v: (Value, Array) --------------------------------------------------

def test_with_value_uses_its_locks_gates(names):
    v = shmkit.Value('q', 0, track=False)
    names.add(v.name)
    lk = v.get_lock()
    assert v.__enter__ is lk.__enter__
    assert v.__exit__ is lk.__exit__
    with v:
        assert lk._is_mine()
        v.value += 1
    assert not lk._is_mine()
    assert type(v).__enter__(v) is True    # the plain methods, through the class
    assert lk._count() == 1
    type(v).__exit__(v, None, None, None)
    assert lk._count() == 0
    a = shmkit.Array('i', 3, track=False)
    names.add(a.name)
    assert a.__enter__ is a.get_lock().__enter__
    with a:
        a[0] = 1
    v.unlink()
    a.unlink()


def test_with_value_over_a_foreign_lock(names):
    import threading
    tl = threading.RLock()
    v = shmkit.Value('q', 0, lock=tl, track=False)
    names.add(v.name)
    assert v.get_lock() is tl
    with v:
        assert tl._is_owned()
    assert not tl._is_owned()
    v.unlink()


def test_with_value_without_a_lock_raises(names):
    v = shmkit.Value('q', 0, track=False)
    names.add(v.name)
    bare = shmkit.sharedctypes._Typed._attach(v.name)   # no lock set up
    with pytest.raises(AttributeError):
        with bare:
            pass
    v.unlink()


# ---- methods bound to the concrete class ---------------------------------------

def test_hot_methods_belong_to_the_concrete_class(names):
    # So that CPython specialises v.get_lock() and lock.release() (its fast
    # call path wants the exact type the method descriptor belongs to).
    assert 'get_lock' in vars(shmkit.Value) and 'add' in vars(shmkit.Array)
    assert 'release' in vars(shmkit.Lock) and 'release' in vars(shmkit.RLock)
    assert 'get_obj' not in vars(shmkit.Value)   # _Typed's own, left alone
    v = shmkit.Value('q', 0, track=False)
    names.add(v.name)
    lk = v.get_lock()
    assert v.get_lock() is lk
    assert shmkit.Value.get_lock(v) is lk
    assert v.add(2) == 2
    with pytest.raises(TypeError):
        shmkit.Value.get_lock(shmkit.Lock.release)
    v.unlink()


def test_subclass_overrides_are_honoured(names):
    class Mine(shmkit.Value):
        __slots__ = ()

        def get_lock(self):
            return 'mine'

    class Below(Mine):
        __slots__ = ()

    class Counted(shmkit.RLock):
        __slots__ = ()
        released = []

        def release(self):
            self.released.append(1)
            super().release()

    for cls in (Mine, Below):
        v = cls('q', 0, track=False)
        names.add(v.name)
        assert v.get_lock() == 'mine'
        assert v.add(1) == 1                  # the rest still works
        v.unlink()
    c = Counted(track=False)
    names.add(c.name)
    c.acquire()
    c.release()
    assert Counted.released == [1]
    c.unlink()


def test_init_subclass_takes_no_arguments():
    with pytest.raises(TypeError):
        class Bad(shmkit.Value, flavour=1):   # as object.__init_subclass__
            pass
    with pytest.raises(TypeError):
        class Bad2(shmkit.Lock, flavour=1):
            pass

    class Cooperative(shmkit.Lock):
        def __init_subclass__(cls, **kw):
            super().__init_subclass__(**kw)

    class Child(Cooperative):
        pass
    assert 'release' in vars(Child)


@pytest.mark.parametrize("kind", ["Value", "Lock", "RLock"])
def test_init_subclass_is_cooperative(kind):
    # A mixin after shmkit's class in the MRO gets its hook and the class
    # keywords, as with any Python base; the binding still happens.
    seen = []

    class Mixin:
        def __init_subclass__(cls, tag=None, **kw):
            super().__init_subclass__(**kw)
            seen.append((cls.__name__, tag))

    base = getattr(shmkit, kind)

    class Tagged(base, Mixin, tag=1):
        pass

    class Plain(base, Mixin):
        pass

    assert seen == [("Tagged", 1), ("Plain", None)]
    hot = "get_lock" if kind == "Value" else "release"
    assert hot in vars(Tagged) and hot in vars(Plain)


# ---- acquire(block=True, timeout=None), parsed by hand (METH_FASTCALL) ---------

@pytest.mark.parametrize("kind", ["Lock", "Value"])
def test_acquire_arguments(names, kind):
    if kind == "Value":
        v = shmkit.Value('q', 0, track=False)
        names.add(v.name)
        lk, other_owner = v, v.get_lock()
    else:
        lk = shmkit.Lock(track=False)
        names.add(lk.name)
        other_owner = lk
    assert lk.acquire() is True
    lk.release()
    for args, kw in [((False,), {}), ((), {'block': False}), ((True, 0.01), {}),
                     ((), {'timeout': 0.01}), ((False,), {'timeout': None}),
                     ((), {'timeout': 1, 'block': 1}), (([],), {})]:
        assert lk.acquire(*args, **kw) is True, (args, kw)
        lk.release()
    for args, kw in [((1, 2, 3), {}), ((), {'flavour': 1}), ((True,), {'block': True}),
                     ((True, None), {'timeout': None}), ((), {'timeout': 'x'}),
                     ((True, 1), {'block': 0})]:
        with pytest.raises(TypeError):
            lk.acquire(*args, **kw)
    assert not other_owner._is_mine()
    if kind == "Value":
        v.unlink()
    else:
        lk.unlink()


def test_value_acquire_forwards_to_a_foreign_lock(names):
    import threading
    tl = threading.Lock()
    v = shmkit.Value('q', 0, lock=tl, track=False)
    names.add(v.name)
    assert v.acquire(True, 1) is True
    assert tl.locked()
    assert v.acquire(False) is False
    v.release()
    assert not tl.locked()
    v.unlink()
