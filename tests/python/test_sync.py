"""shmkit.Lock, RLock, Condition: multiprocessing's API over robust locks."""
import os
import pickle
import platform
import signal
import subprocess
import sys
import threading

import pytest

import shmkit

from conftest import join_ok, start


@pytest.fixture
def lock(names):
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    yield lk
    lk.unlink()


def test_lock_basics(lock):
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert lock._is_mine()
    assert not lock._is_mine()


def test_rlock_recursion(names):
    r = shmkit.RLock(track=False)
    names.add(r.name)
    with r:
        with r:
            assert r._count() == 2
        assert r._count() == 1
    with pytest.raises(AssertionError):
        r.release()
    r.unlink()


def test_named_lock_attach(names):
    name = names.new()
    a = shmkit.Lock(name=name, track=False)
    b = shmkit.Lock.attach(name)
    assert b.name == name
    with a:
        assert b.acquire(False) is False
    assert b.acquire(False) is True
    b.release()
    with pytest.raises(FileExistsError):
        shmkit.Lock(name=name, track=False)
    a.unlink()
    with pytest.raises(FileNotFoundError):
        shmkit.Lock.attach(name)


def test_attach_wrong_kind(names):
    s = shmkit.SharedMemory(names.new(), create=True, size=4096, track=False)
    with pytest.raises(shmkit.CorruptError):
        shmkit.Lock.attach(s.name)
    s.close()
    s.unlink()


def _child_hold(lock, conn, release_conn):
    with lock:
        conn.send("held")
        release_conn.recv()


def test_lock_excludes_other_process(lock, ctx):
    r, w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_hold, lock, w, go_r)
    assert r.recv() == "held"
    assert lock.acquire(timeout=0.05) is False
    go_w.send("go")
    assert lock.acquire(timeout=60) is True
    lock.release()
    join_ok(p)


def _child_die_holding(lock, conn):
    lock.acquire()
    conn.send("held")
    os.kill(os.getpid(), signal.SIGKILL)


def test_dead_holder_reported_and_repaired(lock, ctx):
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_die_holding, lock, w)
    assert r.recv() == "held"
    join_ok(p, expect=-signal.SIGKILL)
    assert lock.acquire(timeout=60) is True     # never deadlocks
    assert lock.owner_died is True
    lock.consistent()
    assert lock.owner_died is False
    lock.release()
    with lock:
        assert lock.owner_died is False


def test_dead_holder_not_repaired_is_not_recoverable(lock, ctx):
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_die_holding, lock, w)
    assert r.recv() == "held"
    join_ok(p, expect=-signal.SIGKILL)
    assert lock.acquire() and lock.owner_died
    lock.release()                                 # without consistent()
    with pytest.raises(shmkit.NotRecoverableError):
        lock.acquire()
    with pytest.raises(shmkit.NotRecoverableError):
        lock.acquire(False)


def test_not_recoverable_message_is_never_stale(lock, ctx, names):
    # An unrelated failure leaves a detailed message behind in the library;
    # the lock error must not carry it.
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_die_holding, lock, w)
    assert r.recv() == "held"
    join_ok(p, expect=-signal.SIGKILL)
    assert lock.acquire() and lock.owner_died
    lock.release()                                 # without consistent()
    s = shmkit.SharedMemory(names.new(), create=True, size=4096, track=False)
    try:
        with pytest.raises(shmkit.CorruptError) as earlier:
            shmkit.Lock.attach(s.name)
    finally:
        s.close()
        s.unlink()
    with pytest.raises(shmkit.NotRecoverableError) as e:
        lock.acquire()
    assert e.value.strerror != earlier.value.strerror
    assert s.name not in str(e.value)
    assert e.value.errno == shmkit._shmkit.ENOTRECOVERABLE


def _child_count(lock, name, n):
    v = shmkit.Value(name=name)
    for _ in range(n):
        with lock:
            v.value += 1


def test_lock_protects_counter(names, lock, ctx):
    v = shmkit.Value('i', 0, track=False, lock=False)
    names.add(v.name)
    ps = [start(ctx, _child_count, lock, v.name, 500) for _ in range(3)]
    for p in ps:
        join_ok(p)
    assert v.value == 1500
    v.unlink()


def test_pickle_any_time(lock):
    b = pickle.loads(pickle.dumps(lock))
    assert b.name == lock.name and type(b) is shmkit.Lock
    with lock:
        assert b.acquire(False) is False


def test_release_from_other_thread_refused(lock):
    lock.acquire()
    err = []

    def other():
        try:
            lock.release()
        except ValueError as e:
            err.append(e)
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert err
    lock.release()


def _child_hold_forever(lock, conn):
    lock.acquire()
    conn.send("held")
    conn.recv()            # parent closes the pipe when done


class _Alarm(Exception):
    pass


def test_blocking_acquire_is_interruptible(lock, ctx):
    r, w = ctx.Pipe()
    p = start(ctx, _child_hold_forever, lock, w)
    assert r.recv() == "held"

    def handler(signum, frame):
        raise _Alarm()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(_Alarm):
            lock.acquire()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    r.send("done")
    join_ok(p)


# ---- Condition ---------------------------------------------------------------

def _child_wait_for(cond, name, conn):
    v = shmkit.Value(name=name, lock=False)
    with cond:
        conn.send("waiting")
        ok = cond.wait_for(lambda: v.value == 7, timeout=60)
    assert ok


def test_condition_across_processes(names, ctx):
    cond = shmkit.Condition(track=False)
    names.add(cond.name)
    v = shmkit.Value('i', 0, track=False, lock=False)
    names.add(v.name)
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, _child_wait_for, cond, v.name, w)
    assert r.recv() == "waiting"
    with cond:
        v.value = 7
        cond.notify_all()
    join_ok(p)
    cond.unlink()
    v.unlink()


def test_condition_timeout_and_errors(names):
    cond = shmkit.Condition(shmkit.Lock(track=False))
    names.add(cond.name)
    with pytest.raises(AssertionError):
        cond.wait(0)
    with cond:
        assert cond.wait(0.01) is False
        cond.notify()
        cond.notify(3)
    c2 = pickle.loads(pickle.dumps(cond))
    assert c2.name == cond.name
    cond.unlink()


def test_lock_of_value_has_no_condition(names):
    v = shmkit.Value('i', track=False)
    names.add(v.name)
    c = shmkit.Condition(v.get_lock())
    with c:
        with pytest.raises(ValueError):
            c.wait(0)
    v.unlink()


# Run in its own interpreter: if acquire() kept the GIL while it sleeps,
# this program would hang (its main thread could not run), and the test
# fails on the timeout instead of hanging the suite.
_GIL_PROGRAM = """
import platform, sys, threading, time
import shmkit
FUTEX = {"x86_64": 202, "aarch64": 98}[platform.machine()]
lock = shmkit.Lock(track=False)
print(lock.name, flush=True)
lock.acquire()
tid, result = [], []

def waiter():
    tid.append(threading.get_native_id())
    result.append(lock.acquire(timeout=60))
    lock.release()

t = threading.Thread(target=waiter)
t.start()
while not tid:
    pass
# The waiter is asleep in the lock's futex, not on its way to acquire().
deadline = time.monotonic() + 30
while True:
    with open(f"/proc/self/task/{tid[0]}/syscall") as f:
        if f.read().split()[0] == str(FUTEX):
            break
    if time.monotonic() > deadline:
        sys.exit("the waiter never slept in the lock")
    time.sleep(0.001)
total = sum(range(200000))          # Python work while the waiter sleeps
lock.release()
t.join(60)
lock.unlink()
print("ok" if not t.is_alive() and result == [True] else "bad", total)
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"),
                    reason="futex system call number known for x86_64, aarch64")
def test_blocking_acquire_releases_the_gil(names):
    """A thread asleep in acquire() must let the holder thread run Python
    (or it could never release): the GIL is released while waiting."""
    p = subprocess.Popen([sys.executable, "-c", _GIL_PROGRAM],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    names.add(p.stdout.readline().strip())
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("the main thread could not run while a thread waited "
                    "in acquire(): the GIL is held")
    assert p.returncode == 0, err
    assert out.split()[0] == "ok", out


def test_threads_share_a_lock(lock):
    counter = [0]

    def work():
        for _ in range(2000):
            with lock:
                v = counter[0]
                counter[0] = v + 1
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert counter[0] == 8000


def _tp_clear(base, obj):
    """Runs base's tp_clear on obj, as the cyclic garbage collector does to
    an object in an unreachable cycle before it is freed: the only way a
    lock (or typed object) ends up without its block."""
    import ctypes
    get_slot = ctypes.pythonapi.PyType_GetSlot
    get_slot.restype = ctypes.c_void_p
    get_slot.argtypes = [ctypes.py_object, ctypes.c_int]
    clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object)(   # GIL held
        get_slot(base, 51))                 # Py_tp_clear (typeslots.h)
    assert clear(obj) == 0


def test_cleared_lock_raises_value_error(names):
    """A lock the collector has cleared has no block: `with`, __exit__ and
    unlink() raise ValueError ("not initialised", "no name"), as CPython's
    objects do for an operation on an uninitialised object."""
    lk = shmkit.Lock(track=False)
    names.add(lk.name)
    name, owner = lk.name, lk._owner      # keeps the block mapped
    _tp_clear(shmkit._shmkit.LockBase, lk)
    assert lk.name is None
    with pytest.raises(ValueError, match="the lock is not initialised"):
        with lk:
            pass
    with pytest.raises(ValueError, match="the lock is not initialised"):
        lk.__exit__(None, None, None)
    with pytest.raises(ValueError, match="the lock has no name"):
        lk.unlink()
    assert os.path.exists("/dev/shm/" + name)
    del owner
    shmkit.Lock.attach(name).unlink()


@pytest.mark.parametrize("call, message", [
    (lambda o: o.acquire(True, 1, 2),
     r"^acquire\(\) takes at most 2 arguments \(3 given\)$"),
    (lambda o: o.acquire(blocking=True),
     r"^'blocking' is an invalid keyword argument for acquire\(\)$"),
    (lambda o: o.acquire(False, block=True),
     r"^argument for acquire\(\) given by name \('block'\) and position \(1\)$"),
    (lambda o: o.acquire(None, 0.1, timeout=1),
     r"^acquire\(\) takes at most 2 arguments \(3 given\)$"),
])
def test_acquire_argument_errors(lock, call, message):
    """acquire(block=True, timeout=None) refuses bad arguments with the
    TypeErrors multiprocessing's SemLock.acquire raises (CPython 3.11),
    Lock's and Value's alike (one parser: ext_fastcall_args)."""
    v = shmkit.Value('i', 0)
    try:
        for obj in (lock, v):
            with pytest.raises(TypeError, match=message):
                call(obj)
            assert not lock._is_mine()
        assert lock.acquire(block=False, timeout=None) is True
        lock.release()
    finally:
        v.unlink()
