"""shmkit.ShareableList: CPython's API, interop both ways, processes."""
import os
import pickle
import signal
import struct
from multiprocessing import shared_memory as cpy

import pytest

import shmkit
from shmkit import shared_memory

from conftest import run, shm_exists

ITEMS = ['howdy', b'HoWdY', -273.154, 100, None, True, 42]


def test_seed_basic_use(names):
    a = shared_memory.ShareableList(ITEMS, name=names.new(), track=False)
    assert [type(e) for e in a] == [str, bytes, float, int, type(None), bool, int]
    assert a[2] == -273.154
    a[2] = -78.5
    assert a[2] == -78.5
    a[2] = 'dry ice'
    assert a[2] == 'dry ice'
    with pytest.raises(ValueError, match="exceeds available storage"):
        a[2] = 'larger than previously allocated storage space'
    assert a[2] == 'dry ice'
    assert len(a) == 7
    assert a.index(42) == 6
    assert a.count(b'howdy') == 0
    assert a.count(b'HoWdY') == 1
    a.shm.close()
    a.shm.unlink()


def test_format_and_repr_match_cpython(names):
    a = shared_memory.ShareableList(ITEMS, name=names.new(), track=False)
    c = cpy.ShareableList(name=a.shm.name)
    assert a.format == c.format
    assert repr(a) == repr(c).replace("ShareableList", "ShareableList")
    assert list(a) == list(c)
    c.shm.close()
    a.shm.close()
    a.shm.unlink()


def test_indexing(names):
    a = shared_memory.ShareableList(range(5), name=names.new(), track=False)
    assert a[-1] == 4 and a[-5] == 0
    with pytest.raises(IndexError, match="index out of range"):
        a[5]
    with pytest.raises(IndexError):
        a[-6]
    with pytest.raises(IndexError, match="assignment index out of range"):
        a[5] = 1
    with pytest.raises(IndexError):
        a[2 ** 70]
    a[-1] = -999
    assert a[4] == -999
    assert a[1:4] == [1, 2, 3]
    with pytest.raises(TypeError):
        a["x"]
    with pytest.raises(TypeError):
        del a[0]
    with pytest.raises(TypeError):
        a[0] = [1]
    with pytest.raises(OverflowError):
        a[0] = 2 ** 64
    with pytest.raises(ValueError, match="not in this container"):
        a.index(12345)
    assert 2 in a and 17 not in a
    a.shm.close()
    a.shm.unlink()


def test_python_equality_in_count_and_index(names):
    a = shared_memory.ShareableList([1, 1.0, True, 0, False, "1", b"1"],
                                    name=names.new(), track=False)
    assert a.count(1) == 3 and a.count(0) == 2 and a.count("1") == 1
    assert a.index(False) == 3
    import fractions
    assert a.count(fractions.Fraction(1)) == 3      # not an item type
    a.shm.close()
    a.shm.unlink()


def test_type_changes_and_bool_none(names):
    a = shared_memory.ShareableList([0, "abcdefgh"], name=names.new(), track=False)
    for v in (True, None, 3.5, -7, False):
        a[0] = v
        assert a[0] == v and type(a[0]) is type(v)
    a[1] = b"12345678"          # str slot takes bytes of its size
    assert a[1] == b"12345678"
    a[1] = 5
    assert a[1] == 5
    a.shm.close()
    a.shm.unlink()


def test_numpy_scalars_stored_as_python_types(names):
    import numpy as np
    a = shared_memory.ShareableList([np.int64(5), np.float64(2.5), np.int32(-3)],
                                    name=names.new(), track=False)
    assert list(a) == [5, 2.5, -3] and [type(x) for x in a] == [int, float, int]
    a[0] = np.uint8(7)
    assert a[0] == 7
    a.shm.unlink()


def test_trailing_nul_kept(names):
    a = shared_memory.ShareableList(['?\x00', b'\x03\x02\x01\x00\x00\x00'],
                                    name=names.new(), track=False)
    # shmkit keeps them (CPython gh-106939 strips them)
    assert a[0] == '?\x00' and a[1] == b'\x03\x02\x01\x00\x00\x00'
    c = cpy.ShareableList(name=a.shm.name)
    assert c[0] == '?' and c[1] == b'\x03\x02\x01'   # CPython reads as before
    c.shm.close()
    a.shm.close()
    a.shm.unlink()
    # the seed's work-around still works
    p = shared_memory.ShareableList(['?\x00\x07', b'\x03\x02\x01\x00\x00\x00\x07'],
                                    name=names.new(), track=False)
    assert p[0][:-1] == '?\x00' and p[1][:-1] == b'\x03\x02\x01\x00\x00\x00'
    p.shm.unlink()


def test_non_ascii_not_truncated(names):
    a = shared_memory.ShareableList(["héllo wörld ✓"], name=names.new(), track=False)
    assert a[0] == "héllo wörld ✓"
    a.shm.unlink()


def test_empty_and_generated_name(names):
    a = shared_memory.ShareableList(track=False)
    names.add(a.shm.name)
    assert len(a) == 0 and list(a) == [] and a.format == ""
    b = shared_memory.ShareableList(name=a.shm.name)
    assert len(b) == 0
    a.shm.unlink()


def test_attach_by_name_and_pickle(names):
    b = shared_memory.ShareableList(range(5), name=names.new(), track=False)
    c = shared_memory.ShareableList(name=b.shm.name)
    assert list(c) == [0, 1, 2, 3, 4]
    c[-1] = -999
    assert b[-1] == -999
    d = pickle.loads(pickle.dumps(b))
    b[0] = -1
    d[1] = -2
    assert list(b) == list(d) == [-1, -2, 2, 3, -999]
    b.shm.close()
    c.shm.close()
    c.shm.unlink()


def test_not_found_and_not_a_list(names):
    with pytest.raises(FileNotFoundError):
        shared_memory.ShareableList(name=names.new())
    s = shared_memory.SharedMemory(names.new(), create=True, size=64, track=False)
    s.buf[:8] = struct.pack("q", 1000)          # 1000 items in 64 bytes: no
    with pytest.raises(ValueError):
        shared_memory.ShareableList(name=s.name)
    s.close()
    s.unlink()


def test_closed_list_refuses(names):
    a = shared_memory.ShareableList([1], name=names.new(), track=False)
    a.shm.close()
    with pytest.raises(ValueError):
        a[0]
    a.shm.unlink()


def test_list_block_cannot_be_resized(names):
    a = shared_memory.ShareableList([1, 2], name=names.new(), track=False)
    with pytest.raises(ValueError):
        a.shm.resize(4096)
    assert list(a) == [1, 2]
    a.shm.unlink()


def test_context_manager(names):
    with shared_memory.ShareableList([1, 2], name=names.new(), track=False) as a:
        assert a[1] == 2
    with pytest.raises(ValueError):
        a[0]
    a.shm.unlink()


def test_generic_alias():
    assert shared_memory.ShareableList[int].__origin__ is shared_memory.ShareableList


def test_locked(names):
    a = shared_memory.ShareableList(["x" * 8], name=names.new(), track=False)
    with a.locked() as lk:
        assert lk.owner_died is False
        a[0] = "y" * 8
    assert shm_exists(a.shm.name + ".lock")
    a.shm.unlink()                     # removes the lock block too
    assert not shm_exists(a.shm.name + ".lock")
    b = shared_memory.ShareableList([1], name=names.new(), track=False)
    with b.locked():
        pass
    b.shm.close()
    b.shm.unlink()                     # also after close()
    assert not shm_exists(b.shm.name + ".lock")


# ---- interop with CPython ---------------------------------------------------

def test_cpython_creates_shmkit_reads_writes(names):
    name = names.new()
    c = cpy.ShareableList(ITEMS, name=name)
    try:
        s = shared_memory.ShareableList(name=name)
        assert list(s) == ITEMS and s.format == c.format
        s[0] = "hi"
        s[2] = 1.5
        s[3] = None
        s[4] = 7
        assert c[0] == "hi" and c[2] == 1.5 and c[3] is None and c[4] == 7
        c[1] = b"zz"
        assert s[1] == b"zz"
        s.shm.close()
    finally:
        c.shm.close()
        c.shm.unlink()


def test_shmkit_creates_cpython_reads_writes(names):
    s = shared_memory.ShareableList(ITEMS, name=names.new(), track=False)
    c = cpy.ShareableList(name=s.shm.name)
    assert list(c) == ITEMS and c.format == s.format
    c[0] = "cpy"
    c[6] = 43
    assert s[0] == "cpy" and s[6] == 43
    s[5] = False
    assert c[5] is False
    assert bytes(c.shm.buf) == bytes(s.shm.buf)
    c.shm.close()
    s.shm.close()
    s.shm.unlink()


def test_byte_identical_to_cpython(names):
    items = [1, 2.5, "abc", b"de\x01", None, True, "x" * 17, -(2 ** 63)]
    s = shared_memory.ShareableList(items, name=names.new(), track=False)
    c = cpy.ShareableList(items, name=names.new())
    assert bytes(s.shm.buf) == bytes(c.shm.buf)
    c.shm.close()
    c.shm.unlink()
    s.shm.unlink()


# ---- processes ----------------------------------------------------------------

def _child_work(sl, start, stop):
    for i in range(start, stop):
        sl[i] = i * i


def test_children_fill_halves(names, ctx):
    sl = shared_memory.ShareableList([0] * 200, name=names.new(), track=False)
    p1 = ctx.Process(target=_child_work, args=(sl, 0, 100))
    p2 = ctx.Process(target=_child_work, args=(sl, 100, 200))
    p1.start(), p2.start()
    p1.join(), p2.join()
    assert p1.exitcode == 0 and p2.exitcode == 0
    assert sum(sl) == sum(i * i for i in range(200))
    sl.shm.unlink()


def _child_pickled(data):
    sl = pickle.loads(data)
    assert sl[0] == "parent"
    sl[0] = "child!"


def test_pickle_to_child(names, ctx):
    sl = shared_memory.ShareableList(["parent"], name=names.new(), track=False)
    run(ctx, _child_pickled, pickle.dumps(sl))
    assert sl[0] == "child!"
    sl.shm.unlink()


def _child_die_holding_list_lock(name, conn):
    sl = shared_memory.ShareableList(name=name)
    with sl.locked():
        sl[0] = "half"
        conn.send("holding")
        os.kill(os.getpid(), signal.SIGKILL)


def test_list_lock_owner_death(names, ctx):
    sl = shared_memory.ShareableList(["whole"], name=names.new(), track=False)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_die_holding_list_lock, args=(sl.shm.name, w))
    p.start()
    assert r.recv() == "holding"
    p.join()
    assert p.exitcode == -signal.SIGKILL
    with sl.locked() as lk:
        assert lk.owner_died
        sl[0] = "fixed"
        lk.consistent()
    with sl.locked() as lk:
        assert not lk.owner_died
    sl.shm.unlink()


def test_list_lock_not_repaired_is_not_recoverable(names, ctx):
    sl = shared_memory.ShareableList(["whole"], name=names.new(), track=False)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_die_holding_list_lock, args=(sl.shm.name, w))
    p.start()
    assert r.recv() == "holding"
    p.join()
    assert p.exitcode == -signal.SIGKILL
    with sl.locked() as lk:
        assert lk.owner_died          # released without consistent()
    for _ in range(2):
        with pytest.raises(shmkit.NotRecoverableError):
            with sl.locked():
                pass
    assert sl[0] == "half"            # the data stays readable
    sl.shm.unlink()


def _random_value(rng, cap):
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randrange(-2 ** 63, 2 ** 63)
    if kind == 1:
        return rng.uniform(-1e9, 1e9)
    if kind == 2:
        return rng.random() < 0.5
    if kind == 3:
        return None
    n = rng.randrange(cap + 1)
    if kind == 4:
        return "".join(rng.choice("abcxyz") for _ in range(n))
    return bytes(rng.randrange(1, 256) for _ in range(n))


@pytest.mark.parametrize("creator", ["shmkit", "cpython"])
def test_random_writes_agree_with_cpython(names, creator):
    """Random sets from either side; both sides always read the same."""
    import random
    rng = random.Random(1234)
    init = ["x" * 16, b"y" * 24, 1, 2.0, None, True, "z" * 8, 0]
    name = names.new()
    if creator == "shmkit":
        s = shared_memory.ShareableList(init, name=name, track=False)
        c = cpy.ShareableList(name=name)
    else:
        c = cpy.ShareableList(init, name=name)
        s = shared_memory.ShareableList(name=name)
    caps = [16, 24, 8, 8, 8, 8, 8, 8]
    for _ in range(2000):
        i = rng.randrange(len(init))
        v = _random_value(rng, caps[i])
        writer = s if rng.random() < 0.5 else c
        if isinstance(v, (str, bytes)) and caps[i] == 8 and len(v) > 8:
            continue
        writer[i] = v
        assert s[i] == c[i] == v, (i, v)
        assert s.format == c.format
    assert list(s) == list(c)
    c.shm.close()
    s.shm.close()
    s.shm.unlink()


def _child_locked_incr(name, n):
    sl = shared_memory.ShareableList(name=name)
    for _ in range(n):
        with sl.locked():
            sl[0] = sl[0] + 1
            sl[1] = str(sl[0])              # a str write: torn without the lock


def test_locked_updates_across_processes(names, ctx):
    sl = shared_memory.ShareableList([0, "x" * 8], name=names.new(), track=False)
    ps = [ctx.Process(target=_child_locked_incr, args=(sl.shm.name, 300)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
        assert p.exitcode == 0
    assert sl[0] == 900 and sl[1] == "900"
    sl.shm.unlink()


@pytest.mark.parametrize("bad", [[1], {}, object(), 2**70, -2**70])
def test_bad_items_raise_what_cpython_raises(names, bad):
    """Code written against CPython catches our errors: CPython raises
    KeyError for an unsupported type and struct.error for an int beyond
    64 bits; shmkit's are those and also TypeError / OverflowError."""
    from multiprocessing import resource_tracker
    from multiprocessing import shared_memory as cpython

    ref = cpython.ShareableList([1])
    resource_tracker.unregister(ref.shm._name, "shared_memory")
    try:
        with pytest.raises(Exception) as want:
            ref[0] = bad
    finally:
        ref.shm.close()
        ref.shm.unlink()
    sl = shared_memory.ShareableList([1], name=names.new(), track=False)
    with pytest.raises(type(want.value)):
        sl[0] = bad
    with pytest.raises(type(want.value)):
        shared_memory.ShareableList([bad], name=names.new(), track=False)
    with pytest.raises((TypeError, OverflowError)):
        sl[0] = bad
    assert sl[0] == 1
    sl.shm.unlink()


@pytest.mark.parametrize("r", [
    range(0), range(1000), range(5, -7, -3), range(-10, 10, 7),
    range(2 ** 63 - 5, 2 ** 63), range(-2 ** 63, -2 ** 63 + 4),
    range(-2 ** 63, 2 ** 63 - 1, 2 ** 62), range(2 ** 63 - 1, -2 ** 63, -(2 ** 62))])
def test_range_items_byte_identical_to_cpython(names, r):
    """A range's items are computed without int objects (fast path): the
    block is byte for byte what CPython writes for the same range."""
    s = shared_memory.ShareableList(r, name=names.new(), track=False)
    c = cpy.ShareableList(r, name=names.new())
    try:
        assert list(s) == list(r)
        assert bytes(s.shm.buf) == bytes(c.shm.buf)
    finally:
        c.shm.close()
        c.shm.unlink()
        s.shm.close()
        s.shm.unlink()


@pytest.mark.parametrize("r", [range(2 ** 63 - 2, 2 ** 63 + 1),
                               range(-2 ** 63 - 1, 0, 2 ** 62),
                               range(2 ** 64, 2 ** 64 + 1)])
def test_range_beyond_64_bits_raises_as_a_list_does(names, r):
    with pytest.raises(Exception) as want:
        shared_memory.ShareableList(list(r), name=names.new(), track=False)
    assert isinstance(want.value, (struct.error, OverflowError))
    name = names.new()
    with pytest.raises(type(want.value)):
        shared_memory.ShareableList(r, name=name, track=False)
    assert not shm_exists(name)


def test_argument_forms(names):
    """The common calls take a fast path in C; every form still parses as
    CPython's signature does."""
    n = names.new()
    a = shared_memory.ShareableList([1, "x"], name=n, track=False)
    b = shared_memory.ShareableList(name=n)
    c = shared_memory.ShareableList(None, name=n)
    assert list(b) == list(c) == [1, "x"]
    d = shared_memory.ShareableList(sequence=[2], name=names.new(), track=False)
    e = shared_memory.ShareableList(track=False)
    names.add(e.shm.name)
    assert list(d) == [2] and list(e) == []
    f = shared_memory.ShareableList([3, None], name=names.new())
    assert list(f) == [3, None]
    f.shm.close()
    f.shm.unlink()
    with pytest.raises(TypeError):
        shared_memory.ShareableList([1], 2)
    with pytest.raises(TypeError):
        shared_memory.ShareableList([1], name=5)
    with pytest.raises(TypeError):
        shared_memory.ShareableList([1], nome="x")
    with pytest.raises(TypeError):
        shared_memory.ShareableList([1], name=n, bogus=1)
    for sl in (b, c, d, e):
        sl.shm.close()
    d.shm.unlink()
    e.shm.unlink()
    a.shm.close()
    a.shm.unlink()


def test_shm_is_made_once_as_sharedmemory(names):
    sl = shared_memory.ShareableList([7, b"ab"], name=names.new(), track=False)
    shm = sl.shm
    assert shm is sl.shm
    assert type(shm) is shared_memory.SharedMemory
    assert shm.name == sl.shm.name == names.prefix + "b0"
    assert shm.size == len(shm.buf) and not shm.closed and shm.track is False
    assert bytes(shm.buf[:8]) == (2).to_bytes(8, "little")
    other = shared_memory.SharedMemory(shm.name)
    assert bytes(other.buf) == bytes(shm.buf)
    other.close()
    shm.close()
    assert shm.closed
    shm.unlink()
