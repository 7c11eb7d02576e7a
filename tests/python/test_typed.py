"""shmkit.Value and shmkit.Array: multiprocessing's API, by name, NumPy."""
import ctypes
import os
import pickle
import signal

import numpy as np
import pytest

import shmkit

from conftest import join_ok, run, start


def _mk(names, obj):
    names.add(obj.name)
    return obj


def test_value_basics(names):
    v = _mk(names, shmkit.Value('d', 0.0, track=False))
    assert v.value == 0.0
    v.value = 3.1415926
    assert v.value == 3.1415926
    assert v.shape == () and v.typecode == 'd'
    obj = v.get_obj()                   # a ctypes object over the block
    assert type(obj) is ctypes.c_double and obj.value == v.value
    obj.value = 2.5
    assert v.value == 2.5 and ctypes.sizeof(obj) == 8
    v.value = 3.1415926
    del obj
    with v:
        v.value += 1
    assert v.acquire() is True
    v.release()
    with v.get_lock():
        v.value -= 1
    with pytest.raises(ValueError):
        v.get_lock().unlink()       # the lock is part of v's block
    v.unlink()


@pytest.mark.parametrize("code,val", [
    ('b', -5), ('B', 250), ('h', -300), ('H', 65000), ('i', -2 ** 31), ('I', 2 ** 32 - 1),
    ('l', -2 ** 63), ('L', 2 ** 64 - 1), ('q', 2 ** 63 - 1), ('Q', 2 ** 64 - 1),
    ('f', 1.5), ('d', -2.25), ('?', True), ('c', b'x'), ('u', 'é')])
def test_value_types(names, code, val):
    v = _mk(names, shmkit.Value(code, val, track=False))
    assert v.value == val
    w = shmkit.Value(name=v.name)
    assert w.value == val and w.typecode == code
    v.unlink()


def test_ctypes_types_accepted(names):
    v = _mk(names, shmkit.Value(ctypes.c_int, 7, track=False))
    assert v.typecode == 'i' and v.value == 7
    a = _mk(names, shmkit.Array(ctypes.c_double, [1.0, 2.0], track=False))
    assert a[:] == [1.0, 2.0]
    v.unlink(), a.unlink()


def test_int_truncates_like_ctypes(names):
    v = _mk(names, shmkit.Value('B', track=False))
    v.value = 257
    assert v.value == ctypes.c_ubyte(257).value == 1
    with pytest.raises(TypeError):
        v.value = 1.5
    v.unlink()


def test_array_basics(names):
    a = _mk(names, shmkit.Array('i', 5, track=False))
    assert len(a) == 5 and a[:] == [0] * 5
    for i in range(len(a)):
        a[i] = i
    assert a[:] == [0, 1, 2, 3, 4] and list(a) == [0, 1, 2, 3, 4]
    assert a[-1] == 4 and a[1:4] == [1, 2, 3] and a[::2] == [0, 2, 4]
    a[1:3] = [10, 20]
    assert a[:] == [0, 10, 20, 3, 4]
    with pytest.raises(ValueError):
        a[1:3] = [1]
    with pytest.raises(IndexError):
        a[5]
    b = _mk(names, shmkit.Array('d', range(3), track=False))
    assert b[:] == [0.0, 1.0, 2.0]
    a.unlink(), b.unlink()


def test_char_array(names):
    s = _mk(names, shmkit.Array('c', b'hello world', track=False))
    assert s.value == b'hello world' and s.raw == b'hello world'
    s.value = b'hi'
    assert s.value == b'hi' and s.raw[:3] == b'hi\x00'
    s.raw = b'HELLO'
    assert s.raw == b'HELLO world'
    assert s[0] == b'H' and s[0:5] == b'HELLO'
    s[0:2] = b'ab'
    assert s[:2] == b'ab'
    with pytest.raises(ValueError):
        s.value = b'x' * 12
    s.unlink()


def test_numpy_zero_copy_dtype_and_shape(names):
    a = _mk(names, shmkit.Array('d', 12, shape=(3, 4), track=False))
    x = np.asarray(a)
    assert x.shape == (3, 4) and x.dtype == np.float64
    x[1, 2] = 5.0
    assert a[6] == 5.0
    y = np.asarray(shmkit.Array(name=a.name))
    assert y.shape == (3, 4) and y[1, 2] == 5.0
    for code, dt in [('b', np.int8), ('H', np.uint16), ('i', np.int32), ('q', np.int64),
                     ('f', np.float32), ('?', np.bool_)]:
        arr = _mk(names, shmkit.Array(code, 4, track=False))
        assert np.asarray(arr).dtype == dt
        arr.unlink()
    v = _mk(names, shmkit.Value('i', 3, track=False))
    assert np.asarray(v).shape == () and np.asarray(v) == 3
    assert memoryview(a).format == 'd' and memoryview(a).shape == (3, 4)
    a.unlink(), v.unlink()


def test_data_is_aligned(names):
    a = _mk(names, shmkit.Array('d', 3, track=False))
    assert np.asarray(a).ctypes.data % 64 == 0
    a.unlink()


def test_atomics(names):
    v = _mk(names, shmkit.Value('i', 5, lock=False, track=False))
    assert v.add(3) == 8
    assert v.fetch_add(2) == 8 and v.value == 10
    assert v.compare_exchange(10, 11) == (True, 10)
    assert v.compare_exchange(10, 12) == (False, 11)
    assert v.load() == 11
    v.store(-1)
    assert v.value == -1
    b = _mk(names, shmkit.Value('B', 255, track=False))
    assert b.add(1) == 0                 # wraps at the item's width
    d = _mk(names, shmkit.Value('d', track=False))
    with pytest.raises(TypeError):
        d.add(1)
    arr = _mk(names, shmkit.Array('q', 4, track=False))
    assert arr.add(5, index=3) == 5 and arr[3] == 5
    with pytest.raises(IndexError):
        arr.add(1, index=4)
    for o in (v, b, d, arr):
        o.unlink()


def test_lock_false_and_external_lock(names):
    v = _mk(names, shmkit.Value('i', lock=False, track=False))
    with pytest.raises(AttributeError):
        v.get_lock()
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    w = _mk(names, shmkit.Value('i', lock=lk, track=False))
    assert w.get_lock() is lk
    with w:
        assert lk.acquire(False) is False
    w2 = pickle.loads(pickle.dumps(w))
    assert w2.get_lock().name == lk.name
    v.unlink(), w.unlink(), lk.unlink()


def test_errors(names):
    with pytest.raises(TypeError):
        shmkit.Value('z', track=False)
    with pytest.raises(FileNotFoundError):
        shmkit.Value(name=names.new())
    s = shmkit.SharedMemory(names.new(), create=True, size=4096, track=False)
    with pytest.raises(shmkit.CorruptError):
        shmkit.Array(name=s.name)
    s.close()
    s.unlink()
    a = _mk(names, shmkit.Array('i', 3, track=False))
    with pytest.raises(TypeError):
        shmkit.Value(name=a.name)
    a.unlink()


# ---- processes (the seed's examples, and beyond) -------------------------------

def _seed_f_value(n):
    n.value = 3.1415926


def _seed_f_array(arr):
    for i in range(len(arr)):
        arr[i] = i


def test_seed_value_and_array(names, ctx):
    num = _mk(names, shmkit.Value('d', 0.0, track=False))
    run(ctx, _seed_f_value, num)
    assert num.value == 3.1415926
    arr = _mk(names, shmkit.Array('i', 5, track=False))
    run(ctx, _seed_f_array, arr)
    assert arr[:] == [0, 1, 2, 3, 4]
    num.unlink(), arr.unlink()


def _child_locked_incr(a, n):
    for _ in range(n):
        with a.get_lock():
            a[0] += 1


def _child_atomic_incr(name, n):
    a = shmkit.Array(name=name)
    for _ in range(n):
        a.add(1, index=1)


def test_counters_exact_across_processes(names, ctx):
    # Locked read-modify-write and lock-free adds, concurrently, on two
    # items (the atomics do not take the lock: on one item they would race
    # with the locked increments, by design).
    a = _mk(names, shmkit.Array('i', 2, track=False))
    ps = [start(ctx, _child_locked_incr, a, 1000) for _ in range(3)]
    ps += [start(ctx, _child_atomic_incr, a.name, 1000) for _ in range(3)]
    for p in ps:
        join_ok(p)
    assert a[:] == [3000, 3000]
    a.unlink()


def _child_from_queue(q):
    arr = q.get()
    x = np.asarray(arr)
    x += 1


def test_pickle_through_queue_after_start(names, ctx):
    q = ctx.Queue()
    p = start(ctx, _child_from_queue, q)
    a = _mk(names, shmkit.Array('l', 6, shape=(2, 3), track=False))
    q.put(a)              # multiprocessing's own would refuse this
    join_ok(p)
    assert a[:] == [1] * 6
    a.unlink()


def _child_die_holding_value_lock(v, conn):
    v.acquire()
    v.value = -1
    conn.send("held")
    os.kill(os.getpid(), signal.SIGKILL)


def test_value_lock_dead_holder(names, ctx):
    v = _mk(names, shmkit.Value('i', 1, track=False))
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_die_holding_value_lock, v, w)
    assert r.recv() == "held"
    join_ok(p, expect=-signal.SIGKILL)
    lk = v.get_lock()
    assert lk.acquire(timeout=60)
    assert lk.owner_died
    v.value = 1                  # repair
    lk.consistent()
    lk.release()
    with v:
        assert v.value == 1
    v.unlink()


def test_cleared_value_raises_value_error(names):
    """A Value the collector has cleared (tp_clear, run here through
    ctypes as the cyclic collector runs it) has no block: reading or
    writing it and unlink() raise ValueError "typed object is not
    initialised"."""
    from test_sync import _tp_clear
    v = shmkit.Value('i', 5)
    names.add(v.name)
    name = v.name
    _tp_clear(shmkit._shmkit.TypedBase, v)
    def store():
        v.value = 6

    for use in (lambda: v.value, store, v.unlink):
        with pytest.raises(ValueError, match="typed object is not initialised"):
            use()
    assert os.path.exists("/dev/shm/" + name)
    shmkit.Value.attach(name).unlink()


def test_add_argument_errors():
    """add/fetch_add(delta=1, index=0): the TypeErrors name the method
    called, and a value given both by position and by name is refused
    as such (one parser with acquire: ext_fastcall_args)."""
    v = shmkit.Array('i', 3)
    try:
        for fn in ("add", "fetch_add"):
            m = getattr(v, fn)
            with pytest.raises(TypeError, match=rf"^{fn}\(\) takes at most 2 "
                               r"arguments \(3 given\)$"):
                m(1, 0, 0)
            with pytest.raises(TypeError, match=rf"^'step' is an invalid "
                               rf"keyword argument for {fn}\(\)$"):
                m(step=1)
            with pytest.raises(TypeError, match=rf"^argument for {fn}\(\) given"
                               r" by name \('delta'\) and position \(1\)$"):
                m(1, delta=2)
        assert v.add(index=2, delta=5) == 5
        assert v.fetch_add(2, 2) == 5
        assert v.add() == 1 and v[:] == [1, 0, 7]
    finally:
        v.unlink()
