"""shmkit.SharedMemory: CPython's API and behaviour, and what it fixes."""
import errno
import os
import pickle
import signal
import subprocess
import sys
import weakref
from multiprocessing import shared_memory as cpy

import numpy as np
import pytest

import shmkit
from shmkit import shared_memory

from conftest import join_ok, run, shm_exists, start, wait_pid_gone


# ---- basics ---------------------------------------------------------------

def test_create_attach_close_unlink(names):
    name = names.new()
    a = shared_memory.SharedMemory(name, create=True, size=10)
    assert a.name == name and a.size == 10
    assert type(a.buf) is memoryview and len(a.buf) == 10
    a.buf[:4] = bytearray([22, 33, 44, 55])
    a.buf[4] = 100
    b = shared_memory.SharedMemory(name)
    assert bytes(b.buf[:5]) == bytes([22, 33, 44, 55, 100])
    b.buf[:5] = b"howdy"
    assert bytes(a.buf[:5]) == b"howdy"
    assert repr(b) == f"SharedMemory({name!r}, size=10)"
    b.close()
    a.close()
    a.unlink()
    assert not shm_exists(name)


def test_unlink_after_close_takes_the_one_call_path(names, monkeypatch):
    """A block this handle created raw is unlinked by name without a look
    for a list's lock (one system call); a list's block, or one only
    attached, still goes through the path that drops a list's lock."""
    calls = []
    real = shared_memory._shmkit
    monkeypatch.setattr(real, "unlink_block",
                        lambda n, f=real.unlink_block: (calls.append("block"), f(n)))
    monkeypatch.setattr(real, "unlink",
                        lambda n, f=real.unlink: (calls.append("any"), f(n)))
    a = shared_memory.SharedMemory(names.new(), create=True, size=10, track=False)
    a.close()
    a.unlink()
    assert calls == ["block"] and not shm_exists(a.name)
    b = shared_memory.SharedMemory(names.new(), create=True, size=10, track=False)
    c = shared_memory.SharedMemory(b.name)
    c.close()
    c.unlink()
    assert calls == ["block", "any"] and not shm_exists(b.name)
    b.close()
    sl = shared_memory.ShareableList([1, 2], name=names.new(), track=False)
    shm = sl.shm
    shm.close()
    shm.unlink()
    assert calls == ["block", "any", "any"] and not shm_exists(shm.name)


def test_common_create_and_attach_are_done_in_c(names, monkeypatch):
    """SharedMemoryBase (C) does a create with a name and a size, and an
    attach by name, setting what the Python _init() sets; only the other
    cases reach _init()."""
    def no(*a):
        raise AssertionError("_init reached")
    monkeypatch.setattr(shared_memory.SharedMemory, "_init", no)
    name = names.new()
    a = shared_memory.SharedMemory(name, create=True, size=10, track=False,
                                   reserve=False)
    b = shared_memory.SharedMemory(name)
    assert a.__dict__.keys() == {"_flags", "_raw", "_track", "_mapping",
                                 "_name", "_size", "_buf"}
    assert (a._flags, a._raw, a._track, a._name, a._size, len(a.buf)) == \
        (os.O_CREAT | os.O_EXCL | os.O_RDWR, True, False, "/" + name, 10, 10)
    assert b.__dict__.keys() == {"_mapping", "_name", "_size", "_buf"}
    assert (b._flags, b._raw, b.track, b.name, b.size) == \
        (os.O_RDWR, False, True, name, 10)
    for h in (a, b):
        assert name in shmkit.resource_tracker._shmkit_names
    with pytest.raises(AssertionError, match="_init reached"):
        shared_memory.SharedMemory(create=True, size=10)     # generated name
    b.close()
    a.close()
    a.unlink()
    assert not shm_exists(name)


def test_subclass_attributes_reach_the_c_create(names):
    """_mode and _prepend_leading_slash are read from the instance, so a
    subclass's own values count, in C as in Python."""
    class Sub(shared_memory.SharedMemory):
        _mode = 0o640
        _prepend_leading_slash = False

    name = names.new()
    a = Sub(name, create=True, size=10, track=False)
    assert os.stat("/dev/shm/" + name).st_mode & 0o777 == 0o640
    assert a._name == name and a.name == name
    a.close()
    a.unlink()
    assert not shm_exists(name)


@pytest.mark.parametrize("args, kw, match", [
    (("x", True, 10, True), {}, "at most 3 positional"),
    (("x",), {"bogus": 1}, "unexpected keyword argument 'bogus'"),
    (("x",), {"name": "y"}, "multiple values for argument 'name'"),
])
def test_arguments_are_checked_as_python_would(args, kw, match):
    with pytest.raises(TypeError, match=match):
        shared_memory.SharedMemory(*args, **kw)


def test_generated_name(names):
    a = shared_memory.SharedMemory(create=True, size=10, track=False)
    names.add(a.name)
    assert a.name.startswith("psm_") and len(a.name) <= 14
    assert os.stat("/dev/shm/" + a.name).st_mode & 0o777 == 0o600
    a.close()
    a.unlink()


def test_size_is_exact(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=4097, track=False)
    assert a.size == 4097 and len(a.buf) == 4097
    assert os.stat("/dev/shm/" + a.name).st_size == 4097
    a.close()
    a.unlink()


def test_errors_match_cpython(names):
    name = names.new()
    with pytest.raises(FileNotFoundError) as e:
        shared_memory.SharedMemory(name)
    assert e.value.errno == errno.ENOENT and e.value.filename == "/" + name
    with pytest.raises(ValueError, match="'size' must be a positive integer"):
        shared_memory.SharedMemory(name, create=True, size=-1)
    with pytest.raises(ValueError, match="'size' must be a positive number different from zero"):
        shared_memory.SharedMemory(name, create=True, size=0)
    with pytest.raises(ValueError, match="'name' can only be None if create=True"):
        shared_memory.SharedMemory()
    a = shared_memory.SharedMemory(name, create=True, size=8, track=False)
    with pytest.raises(FileExistsError) as e:
        shared_memory.SharedMemory(name, create=True, size=8, track=False)
    assert e.value.errno == errno.EEXIST
    a.unlink()
    with pytest.raises(FileNotFoundError):
        a.unlink()
    a.close()


def test_empty_block_is_refused(names):
    name = names.new()
    fd = os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    with pytest.raises(ValueError, match="empty"):
        shared_memory.SharedMemory(name)
    assert shm_exists(name)      # failing to attach never unlinks
    os.unlink("/dev/shm/" + name)


def test_bad_names(names):
    # CPython's shm_open reports these as OSError(EINVAL); so do we, without
    # touching the file system ("." and ".." too, where CPython happens to
    # meet the directory and says FileExistsError).
    for bad in ("a/b", "", ".", ".."):
        for kw in ({"create": True, "size": 8, "track": False}, {}):
            with pytest.raises(OSError) as e:
                shared_memory.SharedMemory(bad, **kw)
            assert type(e.value) is OSError and e.value.errno == errno.EINVAL
    from multiprocessing import shared_memory as cpython
    for bad in ("a/b", ""):
        with pytest.raises(OSError) as ref:
            cpython.SharedMemory(bad, create=True, size=8)
        with pytest.raises(OSError) as e:
            shared_memory.SharedMemory(bad, create=True, size=8, track=False)
        assert (type(e.value), e.value.errno, e.value.filename) == \
            (type(ref.value), ref.value.errno, ref.value.filename)
    with pytest.raises(OSError) as e:
        shared_memory.SharedMemory("x" * 300, create=True, size=8, track=False)
    assert e.value.errno == errno.EINVAL     # as CPython's shm_open (glibc) says


def test_shmkit_error_is_oserror_with_code(names):
    # A directory planted at a name is not a shared memory object.
    name = names.new()
    os.mkdir("/dev/shm/" + name)
    try:
        with pytest.raises(shmkit.Error) as e:
            shared_memory.SharedMemory(name)
        assert isinstance(e.value, OSError)
        assert shmkit.errname(e.value.errno) == "SHMKIT_ENOTREG"
    finally:
        os.rmdir("/dev/shm/" + name)


# ---- close while buffers are in use ---------------------------------------

def test_close_with_live_memoryview_does_not_raise(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=16, track=False)
    view = a.buf[2:6]
    cast = memoryview(a.buf).cast("I")
    a.close()                       # CPython raises BufferError here
    view[0] = 7                     # still mapped
    assert cast[0] == 7 << 16
    assert a.buf is None
    a.unlink()
    del view, cast


def test_close_with_live_numpy_array(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=6 * 8, track=False)
    arr = np.ndarray((6,), dtype=np.int64, buffer=a.buf)
    arr[:] = [1, 1, 2, 3, 5, 8]
    a.close()
    arr[-1] = 888                   # CPython: segfault or BufferError
    b = shared_memory.SharedMemory(a.name)
    assert list(np.ndarray((6,), dtype=np.int64, buffer=b.buf)) == [1, 1, 2, 3, 5, 888]
    b.close()
    a.unlink()
    mapping = arr.base
    assert mapping.closed and mapping.mapped    # closed, alive through arr
    gone = weakref.ref(mapping)
    del arr, mapping
    assert gone() is None                       # the last user went...
    assert _mapped_here(a.name) == []           # ...and the memory with it


def _mapped_here(name):
    """This process's mappings of /dev/shm/<name> (also once unlinked)."""
    with open("/proc/self/maps") as f:
        return [line for line in f
                if line.split()[-1:] == [f"/dev/shm/{name}"]
                or line.rstrip().endswith(f"/dev/shm/{name} (deleted)")]


def _mapped_at(address):
    """This process's mapping that starts at address, if any (a created
    block's maps line names '/dev/shm/#<inode> (deleted)', not its name)."""
    with open("/proc/self/maps") as f:
        return [line for line in f if int(line.split("-", 1)[0], 16) == address]


def test_dropped_handle_unmaps_without_close(names):
    """SharedMemory has no __del__ (a create costs less without it): a
    handle dropped open is unmapped by its Mapping's own deallocation,
    as close() would."""
    a = shared_memory.SharedMemory(names.new(), create=True, size=4096, track=False)
    name, address = a.name, a._mapping.address
    gone = weakref.ref(a._mapping)
    assert _mapped_at(address)
    del a
    assert gone() is None and _mapped_at(address) == []
    shared_memory._shmkit.unlink_block(name)


def test_subclass_close_runs_when_dropped(names):
    """A subclass that overrides close() has it called when an instance
    goes, as CPython's SharedMemory.__del__ does."""
    calls = []

    class Sub(shared_memory.SharedMemory):
        def close(self):
            calls.append(self.name)
            super().close()

    a = Sub(names.new(), create=True, size=8, track=False)
    name = a.name
    del a
    assert calls == [name]
    shared_memory._shmkit.unlink_block(name)


def test_close_twice_and_buffer_after_close(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    a.close()
    a.close()
    assert a.buf is None and a.closed
    a.unlink()


def test_context_manager(names):
    name = names.new()
    with shared_memory.SharedMemory(name, create=True, size=8, track=False) as a:
        a.buf[0] = 1
    assert a.closed and shm_exists(name)
    a.unlink()


# ---- pickling ---------------------------------------------------------------

def test_pickle_by_name_preserves_track(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    b = pickle.loads(pickle.dumps(a))
    assert b.name == a.name and b.size == 8 and b.track is False
    b.buf[0] = 42
    assert a.buf[0] == 42
    b.close()
    a.close()
    a.unlink()


def _child_write_pickled(shm_pickle):
    s = pickle.loads(shm_pickle)
    s.buf[:5] = b"child"
    s.close()


def test_pickle_across_processes(names, ctx):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    run(ctx, _child_write_pickled, pickle.dumps(a))
    assert bytes(a.buf[:5]) == b"child"
    a.close()
    a.unlink()


def _child_attach_write(name):
    s = shared_memory.SharedMemory(name)
    s.buf[0] = 99
    s.close()


def test_process_passes_object(names, ctx):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    run(ctx, _child_attach_write, a.name)
    assert a.buf[0] == 99
    a.close()
    a.unlink()


# ---- attaching never destroys (CPython gh-82300) ------------------------------

def _child_attach_and_exit(name, how):
    s = shared_memory.SharedMemory(name)      # track=True default
    assert s.buf[0] == 5
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    s.close()


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_attacher_exit_never_unlinks(names, ctx, how):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    a.buf[0] = 5
    p = start(ctx, _child_attach_and_exit, a.name, how)
    join_ok(p, expect=-signal.SIGKILL if how == "kill" else 0)
    assert shm_exists(a.name)
    c = shared_memory.SharedMemory(a.name)
    assert c.buf[0] == 5
    c.close()
    a.close()
    a.unlink()


# ---- interop with CPython's own SharedMemory ---------------------------------

def test_cpython_attaches_to_shmkit(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=100, track=False)
    a.buf[:5] = b"hello"
    c = cpy.SharedMemory(a.name)
    try:
        assert bytes(c.buf[:5]) == b"hello"
        assert c.size >= 100
        c.buf[5:10] = b"world"
    finally:
        c.close()
    assert bytes(a.buf[:10]) == b"helloworld"
    a.close()
    a.unlink()


def test_shmkit_attaches_to_cpython(names):
    name = names.new()
    c = cpy.SharedMemory(name, create=True, size=64)
    try:
        c.buf[:3] = b"cpy"
        s = shared_memory.SharedMemory(name)
        assert s.size == 64 and bytes(s.buf[:3]) == b"cpy"
        s.buf[3:6] = b"skt"
        s.close()
        assert bytes(c.buf[:6]) == b"cpyskt"
    finally:
        c.close()
        c.unlink()


# ---- rename, resize, refresh ---------------------------------------------------

def test_rename(names):
    n1, n2, n3 = names.new(), names.new(), names.new()
    a = shared_memory.SharedMemory(n1, create=True, size=8, track=False)
    a.buf[0] = 1
    a.rename(n2)
    assert a.name == n2 and not shm_exists(n1) and shm_exists(n2)
    b = shared_memory.SharedMemory(n3, create=True, size=8, track=False)
    b.buf[0] = 3
    with pytest.raises(FileExistsError):
        a.rename(n3, shared_memory.SHM_RENAME_NOREPLACE)
    a.rename(n3, shared_memory.SHM_RENAME_EXCHANGE)
    assert a.name == n3
    x = shared_memory.SharedMemory(n2)
    assert x.buf[0] == 3
    x.close()
    a.close(), b.close()
    a.unlink()
    shmkit.unlink(n2)


def test_resize_and_refresh(names):
    a = shared_memory.SharedMemory(names.new(), create=True, size=8, track=False)
    b = shared_memory.SharedMemory(a.name)
    a.buf[0] = 7
    old_view = a.buf            # keeps the old mapping alive and valid
    a.resize(100000)
    assert a.size == 100000 and len(a.buf) == 100000
    assert len(old_view) == 8 and old_view[0] == 7
    a.buf[99999] = 9
    assert b.size == 8
    b.refresh()
    assert b.size == 100000 and b.buf[99999] == 9 and b.buf[0] == 7
    with pytest.raises(ValueError):
        a.resize(10)
    del old_view
    a.resize(200000)            # nothing else uses the mapping: in place
    assert a.size == 200000
    a.close(), b.close()
    a.unlink()


# ---- the seed's NumPy example ------------------------------------------------

def _child_numpy(name):
    existing = shared_memory.SharedMemory(name=name)
    c = np.ndarray((6,), dtype=np.int64, buffer=existing.buf)
    assert list(c) == [1, 1, 2, 3, 5, 8]
    c[-1] = 888
    del c
    existing.close()


def test_numpy_across_processes(names, ctx):
    a = np.array([1, 1, 2, 3, 5, 8])
    shm = shared_memory.SharedMemory(create=True, size=a.nbytes, track=False)
    names.add(shm.name)
    b = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
    b[:] = a[:]
    run(ctx, _child_numpy, shm.name)
    assert list(b) == [1, 1, 2, 3, 5, 888]
    del b
    shm.close()
    shm.unlink()


def test_numpy_zero_copy(names):
    shm = shared_memory.SharedMemory(names.new(), create=True, size=64, track=False)
    arr = np.frombuffer(shm.buf, dtype=np.uint8)
    shm.buf[3] = 200
    assert arr[3] == 200
    assert arr.__array_interface__["data"][0] == shm._mapping.address
    del arr
    shm.close()
    shm.unlink()


# ---- tracking ----------------------------------------------------------------

TRACKED_CHILD = r"""
import os, signal, sys
import shmkit
from shmkit import shared_memory, ShareableList, Value, Lock
s = shared_memory.SharedMemory(create=True, size=8)            # track=True
sl = ShareableList([1, "x"])
v = Value('i', 1)
lk = Lock()
print(shmkit.track_pid(), s.name, sl.shm.name, v.name, lk.name, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_tracked_blocks_removed_when_family_is_gone(names, how):
    import subprocess
    import sys
    # A process started with close_fds=True roots a family of its own.
    p = subprocess.run([sys.executable, "-c", TRACKED_CHILD, how],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == (-signal.SIGKILL if how == "kill" else 0), p.stderr
    tracker, *made = p.stdout.split()
    assert len(made) == 4
    for n in made:
        names.add(n)
    # The family's tracker removes what is left, then exits.
    assert int(tracker) > 0 and wait_pid_gone(int(tracker))
    assert [n for n in made if shm_exists(n)] == []


TAKEN_CHILD = r"""
import sys
import shmkit
from shmkit import shared_memory
s = shared_memory.SharedMemory(sys.argv[1], create=True, size=8)
try:
    shared_memory.SharedMemory(sys.argv[1], create=True, size=8)
except FileExistsError:
    print(shmkit.track_pid(), flush=True)
"""


def test_create_on_a_taken_name_keeps_the_block_tracked(names):
    """A second create of a tracked name raises FileExistsError and the
    first block still goes with the family (it used to be untracked by the
    failed create and outlive it)."""
    import subprocess
    import sys
    name = names.new()
    p = subprocess.run([sys.executable, "-c", TAKEN_CHILD, name],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip(), p.stdout + p.stderr
    assert wait_pid_gone(int(p.stdout))
    assert not shm_exists(name), "the block outlived its family"


def _child_creates_tracked(q):
    s = shared_memory.SharedMemory(create=True, size=8)     # track=True
    s.buf[0] = 77
    q.put(s.name)
    s.close()


def test_child_leaves_tracked_block_to_parent(names, ctx):
    """Family scope, as CPython's resource tracker: a child (fork, spawn or
    forkserver) that creates a tracked block and exits leaves it to us."""
    q = ctx.Queue()
    p = start(ctx, _child_creates_tracked, q)
    name = names.add(q.get(timeout=60))
    join_ok(p)
    s = shared_memory.SharedMemory(name)
    assert s.buf[0] == 77
    s.close()
    s.unlink()


def test_track_is_default_and_unlink_untracks(names):
    s = shared_memory.SharedMemory(names.new(), create=True, size=8)
    assert s.track
    s.close()
    s.unlink()
    assert not shm_exists(s.name)


def test_tracker_functions():
    shmkit.track_start()
    assert shmkit.track_pid() > 0 and shmkit.track_fd() >= 0


# A process that starts a family with a tracked block, then starts a
# grandchild that waits on fd argv[1] (in the family if argv[2] == "1":
# pass_fds=[shmkit.track_fd()]), reports, and leaves without cleaning up.
_FAMILY = """
import os, subprocess, sys
import shmkit
from shmkit import shared_memory
r, keep = int(sys.argv[1]), sys.argv[2] == "1"
s = shared_memory.SharedMemory(create=True, size=8)
fds = [r] + ([shmkit.track_fd()] if keep else [])
b = subprocess.Popen([sys.executable, "-c",
                      "import os, sys; os.read(int(sys.argv[1]), 1)", str(r)],
                     pass_fds=fds, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
print(s.name, shmkit.track_pid(), b.pid,
      os.fstat(shmkit.track_fd()).st_ino, flush=True)
s.close()
os._exit(0)
"""


def _run_family(keep):
    """Runs _FAMILY; returns (block, tracker pid, grandchild pid, lifeline
    pipe inode, the write end of the grandchild's wait pipe)."""
    r, w = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != "SHMKIT_TRACKER"}
    p = subprocess.run([sys.executable, "-c", _FAMILY, str(r), "1" if keep else "0"],
                       pass_fds=[r], env=env, capture_output=True, text=True,
                       timeout=60)
    os.close(r)
    assert p.returncode == 0, p.stderr
    name, tracker, grand, ino = p.stdout.split()
    return name, int(tracker), int(grand), int(ino), w


def _holds_pipe(pid, ino):
    """Whether process pid has the pipe ino open. A descriptor the process
    closes between the listing and its readlink is skipped, not an error:
    the pipe, when held, stays open while the tests look (seen once in CI:
    FileNotFoundError for the grandchild's /proc/PID/fd/3)."""
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == f"pipe:[{ino}]":
                return True
        except FileNotFoundError:
            pass
    return False


def test_pass_fds_track_fd_keeps_a_subprocess_in_the_family(names):
    """pass_fds=[shmkit.track_fd()]: the subprocess holds the lifeline, so
    the family (and its tracked block) outlives the creator until the
    subprocess exits too."""
    name, tracker, grand, ino, w = _run_family(keep=True)
    names.add(name)
    try:
        # The creator is gone; the grandchild holds the lifeline, so the
        # tracker cannot see end-of-file: the family lives, deterministically.
        assert _holds_pipe(grand, ino), "the subprocess lacks the lifeline"
        assert shm_exists(name) and not wait_pid_gone(tracker, timeout=0)
    finally:
        os.close(w)                     # the grandchild reads EOF and exits
    assert wait_pid_gone(grand) and wait_pid_gone(tracker)
    assert not shm_exists(name), "the family's block outlived the family"


def test_without_pass_fds_a_subprocess_is_not_in_the_family(names):
    """The control: without the lifeline, the family ends with its creator
    although the subprocess still runs."""
    name, tracker, grand, ino, w = _run_family(keep=False)
    names.add(name)
    try:
        assert not _holds_pipe(grand, ino)
        assert wait_pid_gone(tracker), "tracker outlived the family"
        assert not shm_exists(name)
        assert not wait_pid_gone(grand, timeout=0), "the subprocess still runs"
    finally:
        os.close(w)
    assert wait_pid_gone(grand)


_DEAD_FAMILY = """
import os, signal, sys
import shmkit
from shmkit import shared_memory
s = shared_memory.SharedMemory(create=True, size=8)
print(s.name, shmkit.track_pid(), flush=True)
os.kill(shmkit.track_pid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(os.environ.get("SHMKIT_PRIVATE_SHM") != "1",
                    reason="gc acts on the whole /dev/shm: run the suite "
                           "through scripts/private-shm.sh")
def test_gc_dry_run_counts_and_keeps_then_gc_removes(names):
    """A family killed with its tracker leaves its block; gc(dry_run=True)
    counts it and removes nothing, gc() removes it (exact counts: the
    suite's /dev/shm is its own)."""
    env = {k: v for k, v in os.environ.items() if k != "SHMKIT_TRACKER"}
    p = subprocess.run([sys.executable, "-c", _DEAD_FAMILY], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    name, tracker = p.stdout.split()
    names.add(name)
    assert wait_pid_gone(int(tracker))
    assert shmkit.gc(dry_run=True) == 1
    assert shm_exists(name), "a dry run removed the block"
    assert shmkit.gc() == 1
    assert not shm_exists(name)
    assert shmkit.gc(dry_run=True) == 0


def test_embedded_nul_in_a_name_is_a_value_error(names):
    # The C API takes a C string: 'x\0evil' must not silently name 'x'.
    name = names.new()
    shm = shared_memory.SharedMemory(name, create=True, size=16, track=False)
    try:
        with pytest.raises(ValueError):
            shared_memory.SharedMemory(name + "\0evil")
        with pytest.raises(ValueError):
            shared_memory.SharedMemory(name + "\0evil", create=True, size=16)
        with pytest.raises(ValueError):
            shmkit.unlink(name + "\0evil")
        with pytest.raises(ValueError):
            shmkit.Lock(name=name + "\0evil")
    finally:
        shm.close()
        shm.unlink()
