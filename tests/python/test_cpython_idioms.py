"""What real programs written for CPython do with shared memory, under
shmkit: the resource tracker idioms, ctypes in Value/Array, the manager as
a BaseManager, CPython's private names, lock reprs."""
import ctypes
import os
import pickle
import signal
import subprocess
import sys
from multiprocessing import managers as mpm
from multiprocessing import resource_tracker
from multiprocessing import shared_memory as cpy

import numpy as np
import pytest

import shmkit
from shmkit import shared_memory
from shmkit.managers import SharedMemoryManager

from conftest import join_ok, shm_exists, start, wait_pid_gone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _python(code, *args):
    """Runs code in a fresh interpreter (a process family of its own: no
    inherited lifeline) and returns (exit status, stdout, stderr)."""
    env = dict(os.environ)
    p = subprocess.run([sys.executable, '-c', code, *args], env=env,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


# ---- resource tracker idioms -------------------------------------------------

_PRODUCER = '''if 1:
    import sys
    from multiprocessing import resource_tracker
    import shmkit
    from shmkit import shared_memory
    shm = shared_memory.SharedMemory(sys.argv[1], create=True, size=64)
    shm.buf[:5] = b"kept!"
    if sys.argv[2] == "unregister":
        resource_tracker.unregister(shm._name, "shared_memory")
    print(shmkit.track_pid())
    shm.close()
'''


@pytest.mark.parametrize("idiom", ["unregister", "none"])
def test_unregister_keeps_the_block_after_exit(names, idiom):
    name = names.new()
    rc, out, err = _python(_PRODUCER, name, idiom)
    assert rc == 0, err
    assert err == ""                       # no traceback from any tracker
    assert wait_pid_gone(int(out)), "the family's tracker did not exit"
    if idiom == "unregister":
        shm = shared_memory.SharedMemory(name)
        assert bytes(shm.buf[:5]) == b"kept!"
        shm.close()
        shm.unlink()
    else:
        assert not shm_exists(name)        # tracked: gone with the family


_ADOPTER = '''if 1:
    import sys
    from multiprocessing import resource_tracker
    import shmkit
    from shmkit import shared_memory
    shm = shared_memory.SharedMemory(sys.argv[1])
    resource_tracker.register(shm._name, "shared_memory")
    print(shmkit.track_pid())
    shm.close()
'''


def test_register_is_honoured(names):
    name = names.new()
    shm = shared_memory.SharedMemory(name, create=True, size=16, track=False)
    shm.close()
    rc, out, err = _python(_ADOPTER, name)
    assert rc == 0, err
    assert err == ""
    assert wait_pid_gone(int(out))
    assert not shm_exists(name)            # removed with the adopter's family


def test_unregister_of_unlinked_block_is_quiet(names):
    rc, out, err = _python('''if 1:
        from multiprocessing import resource_tracker
        from shmkit import shared_memory
        shm = shared_memory.SharedMemory(create=True, size=8)
        shm.unlink()
        resource_tracker.unregister(shm._name, "shared_memory")
        shm.close()
        print("ok")
    ''')
    assert rc == 0 and out.strip() == "ok" and err == "", err


def test_cpython_blocks_still_go_to_cpythons_tracker(names):
    # A block CPython's own SharedMemory made is CPython's tracker's business.
    rc, out, err = _python('''if 1:
        from multiprocessing import shared_memory, resource_tracker
        import shmkit
        shm = shared_memory.SharedMemory(create=True, size=8)
        resource_tracker.unregister(shm._name, "shared_memory")
        print(shm.name)
        shm.close()
    ''')
    assert rc == 0 and err == "", err
    name = names.add(out.strip())
    assert shm_exists(name)                # unregistered: CPython kept it
    shmkit.unlink(name)


# ---- ctypes in Value and Array -------------------------------------------------

class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


def _child_double(v, raw, p, arr):
    v.value *= 2
    raw.value *= 2
    p.x *= 2
    p.y *= 2
    for i in range(len(arr)):
        arr[i].x += 1


def test_ctypes_values_across_processes(names, ctx):
    v = shmkit.Value(ctypes.c_double, 1.25)
    raw = shmkit.RawValue(ctypes.c_int, 21)
    p = shmkit.Value(Point, 3, 2.0, 2 ** 33)
    arr = shmkit.Array(Point, [(1, 0.5, 0), (2, 1.5, 0)], lock=False)
    for o in (v, raw, p, arr):
        names.add(o.name)
    child = start(ctx, _child_double, v, raw, p, arr)
    join_ok(child)
    assert v.value == 2.5 and raw.value == 42
    assert (p.x, p.y, p.z) == (6, 4.0, 2 ** 33)
    assert [a.x for a in arr] == [2, 3]
    for o in (v, raw, p, arr):
        o.unlink()


def test_get_obj_is_a_ctypes_object_over_the_block(names):
    v = shmkit.Value('i', 5)
    a = shmkit.Array(ctypes.c_double, 4)
    p = shmkit.Value(Point)
    for o in (v, a, p):
        names.add(o.name)
    obj = v.get_obj()
    assert isinstance(obj, ctypes.c_int) and ctypes.sizeof(obj) == 4
    ctypes.c_int.from_address(ctypes.addressof(obj)).value = 9
    assert v.value == 9
    arr = a.get_obj()
    assert isinstance(arr, ctypes.Array) and ctypes.sizeof(arr) == 32
    arr[2] = 1.5
    assert a[2] == 1.5
    assert np.asarray(a)[2] == 1.5       # one memory
    pt = p.get_obj()
    assert type(pt) is Point
    pt.y = 7.0
    assert p.y == 7.0
    view = np.asarray(pt)                # a structured dtype, same memory
    assert view.dtype.names == ('x', 'y', 'z') and view['y'] == 7.0
    view['x'] = 4
    assert p.x == 4
    del view
    for o in (v, a, p):
        o.unlink()


def test_lock_false_is_the_raw_ctypes_object(names):
    v = shmkit.Value('i', 5, lock=False)
    a = shmkit.RawArray('d', [1.0, 2.0, 3.0])
    for o in (v, a):
        names.add(o.name)
    assert isinstance(v, ctypes.c_int) and not hasattr(v, 'get_lock')
    assert not hasattr(v, 'get_obj')
    assert isinstance(a, ctypes.Array) and list(a) == [1.0, 2.0, 3.0]
    assert ctypes.sizeof(a) == 24
    assert v.add(1) == 6                 # shmkit's atomics stay on raw ints
    w = pickle.loads(pickle.dumps(v))    # by name, to any process
    w.value = 11
    assert v.value == 11
    with pytest.raises(AttributeError):
        shmkit.Value('i', 1, lock='not a lock')
    for o in (v, a):
        o.unlink()


def test_structure_block_describes_itself_as_bytes(names):
    p = shmkit.Value(Point, 1, 2.0, 3)
    names.add(p.name)
    raw = shmkit.Array(name=p.name)      # attached without the class
    assert raw.typecode == 'B' and len(raw) == ctypes.sizeof(Point)
    assert Point.from_buffer_copy(bytes(raw[:])).y == 2.0
    p.unlink()


def test_copy_makes_a_shared_copy(names):
    foo = Point(2, 5.0, 2 ** 33)
    bar = shmkit.sharedctypes.copy(foo)
    names.add(bar.name)
    foo.x = 0
    assert (bar.x, bar.y, bar.z) == (2, 5.0, 2 ** 33)
    bar.unlink()


# ---- SharedMemoryManager is a BaseManager ------------------------------------

class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


class MyManager(SharedMemoryManager):
    pass


MyManager.register('Counter', Counter)


def _client_uses(address, authkey, conn):
    m = MyManager(address=address, authkey=authkey)
    m.connect()
    shm = m.SharedMemory(16)
    conn.send(shm.name)
    shm.close()


def test_manager_is_a_basemanager(names, ctx):
    assert issubclass(SharedMemoryManager, mpm.BaseManager)
    m = MyManager(address=('127.0.0.1', 0), authkey=b'k' * 8)
    with pytest.raises(ValueError):
        m.SharedMemory(8)                # before start(), as CPython
    m.start()
    try:
        assert isinstance(m.address, tuple) and m.address[1] != 0
        c = m.Counter()
        assert c.incr() == 1 and c.incr() == 2
        assert m._process.pid > 0
        r, w = ctx.Pipe(duplex=False)
        p = start(ctx, _client_uses, m.address, b'k' * 8, w)
        name = names.add(r.recv())
        join_ok(p)
        assert name in m.names() and shm_exists(name)
    finally:
        m.shutdown()
    assert not shm_exists(name)


def test_get_server_makes_the_server_here(names):
    m = SharedMemoryManager(address=('127.0.0.1', 0), authkey=b'x')
    server = m.get_server()
    try:
        assert isinstance(server, mpm.Server) and server.address[1] != 0
        assert shm_exists(os.path.basename(server._daemon.socket)) is False
        name = server._daemon.create_block(32)
        names.add(name)
        assert shm_exists(name)
        server._daemon.shutdown()        # what the server's shutdown does
        assert not shm_exists(name)
    finally:
        server._daemon.close()
        server.listener.close()


def test_killed_manager_leaks_nothing(names):
    m = SharedMemoryManager()
    m.start()
    shm = m.SharedMemory(64)
    sl = m.ShareableList([1, 2, 3])
    made = [names.add(shm.name), names.add(sl.shm.name)]
    shm.close()
    sl.shm.close()
    daemon_pid = m._client.pid
    os.kill(m._process.pid, signal.SIGKILL)
    m._process.join()
    assert wait_pid_gone(daemon_pid), "the daemon outlived its server"
    for n in made:
        assert not shm_exists(n)
    m._disconnect()


# ---- names and reprs as CPython's -------------------------------------------

def test_names_as_cpython(names):
    n = names.new()
    shm = shared_memory.SharedMemory('/' + n, create=True, size=8, track=False)
    assert shm.name == '/' + n and shm._name == '//' + n
    other = cpy.SharedMemory('/' + n)
    assert other.name == shm.name and other._name == shm._name
    other.close()
    gen = shared_memory.SharedMemory(create=True, size=8)
    names.add(gen.name)
    assert gen._name == '/' + gen.name
    assert gen._name.startswith(shared_memory._SHM_NAME_PREFIX)
    assert len(gen._name) <= shared_memory._SHM_SAFE_NAME_LENGTH
    assert shared_memory._make_filename().startswith(cpy._SHM_NAME_PREFIX)
    gen.close(), gen.unlink()
    shm.close(), shm.unlink()


def test_too_long_name_raises_as_cpython():
    name = 'x' * 300
    with pytest.raises(OSError) as theirs:
        cpy.SharedMemory(name, create=True, size=8)
    with pytest.raises(OSError) as ours:
        shared_memory.SharedMemory(name, create=True, size=8)
    assert type(ours.value) is type(theirs.value)
    assert ours.value.errno == theirs.value.errno


def test_packing_format_matches_cpython(names):
    items = [1, 'encodés', b'ab', 2.5, None, True, 'x' * 9]
    sl = shared_memory.ShareableList(items, name=names.new(), track=False)
    theirs = cpy.ShareableList(items)
    try:
        assert bytes(sl.shm.buf) == bytes(theirs.shm.buf)
        assert sl.format == theirs.format
        assert [sl._get_packing_format(i) for i in range(len(items))] == \
            [theirs._get_packing_format(i) for i in range(len(items))]
        with pytest.raises(IndexError):
            sl._get_packing_format(len(items))
    finally:
        theirs.shm.close()
        theirs.shm.unlink()
        sl.shm.close()
        sl.shm.unlink()


def _child_hold_lock(lk, conn, go):
    lk.acquire()
    conn.send(repr(lk))
    go.recv()
    lk.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_repr_as_cpython(names, ctx, kind):
    import multiprocessing
    ours = getattr(shmkit, kind)(track=False)
    names.add(ours.name)
    theirs = getattr(multiprocessing, kind)()
    assert repr(ours) == repr(theirs)
    assert ours.locked() is False
    ours.acquire(), theirs.acquire()
    assert repr(ours) == repr(theirs) and ours.locked() is True
    ours.release(), theirs.release()
    r, w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_hold_lock, ours, w, go_r)
    r.recv()
    assert repr(ours) == (f'<{kind}(owner=SomeOtherProcess)>' if kind == 'Lock'
                          else f'<{kind}(SomeOtherProcess, nonzero)>')
    assert ours.locked() is True
    go_w.send('go')
    join_ok(p)
    ours.unlink()


def test_exports():
    assert issubclass(shmkit.ItemTypeError, TypeError)
    assert issubclass(shmkit.ItemRangeError, OverflowError)
    from shmkit import ItemTypeError, ItemRangeError   # noqa: F401
    assert 'ItemTypeError' in shmkit.__all__ and 'ItemRangeError' in shmkit.__all__


@pytest.mark.parametrize("fn", ["unlink", "unlink_block", "track", "untrack",
                                "block_kind"])
def test_functions_taking_a_name_refuse_none_and_nul(fn):
    f = getattr(shmkit._shmkit, fn)
    with pytest.raises(TypeError, match="name must be str"):
        f(None)
    with pytest.raises(ValueError, match="embedded null"):
        f("x\0evil")
