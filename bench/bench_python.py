"""shmkit's Python module beside the Python floor and CPython's stdlib, in
one run. Run it with the interpreter you mean to measure, e.g.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--tsv] [--quick]
        [--rounds N] [--max-size BYTES] [--only blocks,lists,sync,handoff]

(--max-size: the handoff's size, in whole MiB from 1 to 256; 256 MiB by default.)

(bench/run does this for you and puts the figures in its one table.)

Every piece of work is done by each contender n times per round, the
contenders interleaved within a round and their order rotated from round
to round; a contender's figure is the median of its rounds, per operation.
The first contender of a piece of work is its reference:

* "Python floor": the same system calls made from Python with no library
  (_posixshmem.shm_open, os.ftruncate, mmap.mmap, os.close,
  _posixshmem.shm_unlink), what any Python library must at least pay;
* or the stdlib (multiprocessing) when there is no floor to speak of.

Work done by this one thread is timed in its CPU time (time.thread_time:
kernel time in its system calls included), so that the other load of a
shared machine does not count; time spent in other processes (CPython's
resource tracker, which reads a pipe write per register and unregister)
is not included either. The handoff, which involves a child, is timed in
wall time.

Every contender is given an explicit name, so none pays for making one.
CPython's blocks are tracked by its resource tracker (its default), and on
3.8-3.12 its attaches register with the tracker too (gh-82300): that is
what CPython costs.

--count WORK N runs one operation N times between two markers and nothing
else timed: bench/run counts the system calls between the markers with
strace.

Everything the run creates is removed.
"""
import gc
import mmap
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing import shared_memory as cpy_sm

try:
    import _posixshmem
except ImportError:          # not a POSIX build: no floor
    _posixshmem = None

import shmkit
from shmkit import shared_memory as sk_sm

try:
    import numpy
except ImportError:
    numpy = None

def _opt(flag, default):
    """The value after `flag` on the command line, or default."""
    if flag in sys.argv[:-1]:
        return int(sys.argv[sys.argv.index(flag) + 1])
    return default


TSV = "--tsv" in sys.argv
QUICK = "--quick" in sys.argv
ROUNDS = _opt("--rounds", 3 if QUICK else 5)
# The handoff's size: whole MiB, 1 to 256.
HANDOFF = max(1, min(256, _opt("--max-size", 256 << 20) >> 20)) << 20
SCALE = 0.2 if QUICK else 1.0
PID = os.getpid()
CPY_TRACK_PARAM = sys.version_info >= (3, 13)


def nm(tag):
    return f"skbench_{PID}_{tag}"


def n_of(n):
    return max(1, int(n * SCALE))


def run(work_id, work, contenders, n, rounds=None, wall=False):
    """Times contenders [(label, fn)] (fn(n) does n operations), prints one
    line each (see the module doc) and returns {label: seconds per op}."""
    rounds = rounds or ROUNDS
    clock = time.perf_counter if wall else time.thread_time
    times = {label: [] for label, _ in contenders}
    for label, fn in contenders:           # warm up
        fn(max(1, n // 10))
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = len(contenders)
            for j in range(k):
                label, fn = contenders[(j + r) % k]
                t0 = clock()
                fn(n)
                times[label].append((clock() - t0) / n)
    finally:
        gc.enable()
    med = {label: statistics.median(t) for label, t in times.items()}
    ref = med[contenders[0][0]]
    for label, _ in contenders:
        ns = med[label] * 1e9
        if TSV:   # the common format, with the fastest and slowest round
            print(f"{work_id}\t{work}\t{label}\t{ns:.3f}\t{rounds}"
                  f"\t{min(times[label]) * 1e9:.3f}\t{max(times[label]) * 1e9:.3f}",
                  flush=True)
        else:
            print(f"{work:<44} {label:<46} {ns:12.1f} ns {med[label] / ref:8.2f}x",
                  flush=True)
    return med


# ---- blocks ---------------------------------------------------------------

FLAGS = os.O_CREAT | os.O_EXCL | os.O_RDWR


def floor_create(name, size):
    slashed = "/" + name

    def f(n):
        for _ in range(n):
            fd = _posixshmem.shm_open(slashed, FLAGS, 0o600)
            os.ftruncate(fd, size)
            m = mmap.mmap(fd, size)
            m.close()
            os.close(fd)
            _posixshmem.shm_unlink(slashed)
    return f


def floor_create_reserved(name, size):
    """The floor of a create that allocates its memory up front."""
    slashed = "/" + name

    def f(n):
        for _ in range(n):
            fd = _posixshmem.shm_open(slashed, FLAGS, 0o600)
            os.posix_fallocate(fd, 0, size)
            m = mmap.mmap(fd, size)
            m.close()
            os.close(fd)
            _posixshmem.shm_unlink(slashed)
    return f


def sk_create(name, size, track, **kw):
    def f(n):
        for _ in range(n):
            s = sk_sm.SharedMemory(name, create=True, size=size, track=track, **kw)
            s.close()
            s.unlink()
    return f


# shmkit's SharedMemory reserves the memory by default (reserve=True: a full
# /dev/shm is ENOSPC at create, not SIGBUS later); the floor and CPython do
# not. The like-for-like rows pass reserve=False; the default is shown too,
# beside a floor that reserves (posix_fallocate).
try:
    sk_sm.SharedMemory(create=True, size=1, track=False, reserve=False).unlink()
    NOT_RESERVED = {"reserve": False}
except TypeError:                   # a shmkit without the option
    NOT_RESERVED = {}


def sk_create_fill(name, size, track):
    """Create, write every byte (what a list create must do at least),
    close, unlink."""
    payload = bytes(size)

    def f(n):
        for _ in range(n):
            s = sk_sm.SharedMemory(name, create=True, size=size, track=track)
            s.buf[:] = payload
            s.close()
            s.unlink()
    return f


def cpy_create(name, size, track=True):
    kw = {} if track or not CPY_TRACK_PARAM else {"track": False}

    def f(n):
        for _ in range(n):
            s = cpy_sm.SharedMemory(name, create=True, size=size, **kw)
            s.close()
            s.unlink()
    return f


def floor_attach(name):
    slashed = "/" + name

    def f(n):
        for _ in range(n):
            fd = _posixshmem.shm_open(slashed, os.O_RDWR, 0)
            size = os.fstat(fd).st_size
            m = mmap.mmap(fd, size)
            m.close()
            os.close(fd)
    return f


def sk_attach(name):
    def f(n):
        for _ in range(n):
            sk_sm.SharedMemory(name).close()
    return f


def cpy_attach(name):
    def f(n):
        for _ in range(n):
            cpy_sm.SharedMemory(name).close()
    return f


def cpy_untrack(name):
    """CPython 3.8-3.12 registered our block with its resource tracker on
    attach (gh-82300): take it back so that its exit does not unlink it."""
    if not CPY_TRACK_PARAM:
        from multiprocessing import resource_tracker
        resource_tracker.unregister("/" + name, "shared_memory")


def bench_blocks():
    size, n = 4096, n_of(4000)
    floor = [("Python floor (no library)", floor_create(nm("f"), size))]
    default = []
    if NOT_RESERVED:
        default = [("Python floor + posix_fallocate", floor_create_reserved(nm("r"), size)),
                   ("shmkit default (reserve=True)", sk_create(nm("d"), size, True))]
    run("py.block.create.tracked", "Python: create+close+unlink 4 KiB, tracked",
        floor + [("shmkit SharedMemory (track=True, not reserved)",
                  sk_create(nm("s"), size, True, **NOT_RESERVED)),
                 ("CPython SharedMemory (resource tracker)", cpy_create(nm("c"), size))]
        + default, n)
    cpy = []
    if CPY_TRACK_PARAM:
        cpy = [("CPython SharedMemory (track=False)", cpy_create(nm("c"), size, False))]
    run("py.block.create.untracked", "Python: create+close+unlink 4 KiB, untracked",
        floor + [("shmkit SharedMemory (track=False, not reserved)",
                  sk_create(nm("s"), size, False, **NOT_RESERVED))]
        + cpy, n)
    keep = sk_sm.SharedMemory(nm("keep"), create=True, size=size, track=False)
    try:
        run("py.block.attach", "Python: attach+close 4 KiB",
            [("Python floor (no library)", floor_attach(keep.name)),
             ("shmkit SharedMemory(name)", sk_attach(keep.name)),
             ("CPython SharedMemory(name)", cpy_attach(keep.name))], n_of(10000))
    finally:
        cpy_untrack(keep.name)
        keep.close()
        keep.unlink()


# ---- ShareableList ---------------------------------------------------------

def list_create(cls, items, name=None):
    def f(n):
        for _ in range(n):
            sl = cls(items, name=name)
            sl.shm.close()
            sl.shm.unlink()
    return f


def list_attach(cls, name):
    def f(n):
        for _ in range(n):
            cls(name=name).shm.close()
    return f


def bench_lists():
    items = range(1000)
    probe = sk_sm.ShareableList(items, track=False)
    size = probe.shm.size
    probe.shm.close()
    probe.shm.unlink()
    run("py.list.create", "Python: ShareableList(range(1000)) create+close+unlink",
        [(f"shmkit SharedMemory create, same size ({size} B)",
          sk_create(nm("b"), size, True)),
         ("shmkit SharedMemory create + write every byte",
          sk_create_fill(nm("w"), size, True)),
         ("shmkit ShareableList, generated name", list_create(sk_sm.ShareableList, items)),
         ("shmkit ShareableList, named", list_create(sk_sm.ShareableList, items, nm("l"))),
         ("CPython ShareableList, generated name", list_create(cpy_sm.ShareableList, items))],
        n_of(300))

    sk = sk_sm.ShareableList(items, name=nm("la"), track=False)
    try:
        run("py.list.attach", "Python: attach 1000-item list + close",
            [("shmkit SharedMemory(name), same block", sk_attach(sk.shm.name)),
             ("shmkit ShareableList(name=)", list_attach(sk_sm.ShareableList, sk.shm.name)),
             ("CPython ShareableList(name=)", list_attach(cpy_sm.ShareableList, sk.shm.name))],
            n_of(3000))
    finally:
        cpy_untrack(sk.shm.name)
        sk.shm.close()
        sk.shm.unlink()

    c = cpy_sm.ShareableList(list(range(100)))
    k = sk_sm.ShareableList(list(range(100)))

    def get(sl):
        def f(m):
            for _ in range(m // 10):
                sl[5]; sl[17]; sl[33]; sl[50]; sl[-1]
                sl[5]; sl[17]; sl[33]; sl[50]; sl[-1]
        return f

    def put(sl):
        def f(m):
            for i in range(m // 10):
                sl[5] = i; sl[17] = i; sl[33] = i; sl[50] = i; sl[-1] = i
                sl[5] = i; sl[17] = i; sl[33] = i; sl[50] = i; sl[-1] = i
        return f
    try:
        n = n_of(200000)
        run("py.list.get", "Python: ShareableList get int",
            [("CPython ShareableList", get(c)), ("shmkit ShareableList", get(k))], n)
        run("py.list.set", "Python: ShareableList set int",
            [("CPython ShareableList", put(c)), ("shmkit ShareableList", put(k))], n)
    finally:
        for sl in (c, k):
            sl.shm.close()
            sl.shm.unlink()

    for count, n in ((10, 2000), (1000, 300), (100000, 6)):
        items = range(count)
        run(f"py.list.scale.{count}",
            f"Python: ShareableList(range({count})) create+close+unlink",
            [("CPython ShareableList", list_create(cpy_sm.ShareableList, items)),
             ("shmkit ShareableList", list_create(sk_sm.ShareableList, items))],
            n_of(n))


# ---- locks and values -------------------------------------------------------

def bench_sync():
    n = n_of(300000)
    cl, kl = mp.Lock(), shmkit.Lock()

    def with_lock(lk):
        def f(m):
            for _ in range(m):
                with lk:
                    pass
        return f
    run("py.lock.with", "Python: with lock: pass",
        [("CPython multiprocessing.Lock", with_lock(cl)),
         ("shmkit.Lock", with_lock(kl))], n)
    kl.unlink()

    cv, kv = mp.Value('q', 0), shmkit.Value('q', 0)

    def incr(v):
        def f(m):
            for _ in range(m):
                with v.get_lock():
                    v.value += 1
        return f

    def atomic(m):
        for _ in range(m):
            kv.add(1)
    run("py.value.incr", "Python: with v.get_lock(): v.value += 1",
        [("CPython multiprocessing.Value", incr(cv)),
         ("shmkit.Value", incr(kv)),
         ("shmkit.Value.add(1) (atomic, no lock)", atomic)], n)
    kv.unlink()


# ---- handing 256 MiB to a child ---------------------------------------------

def read_all(buf):
    """Reads every byte of buf; returns (size, last byte)."""
    if numpy is not None:
        a = numpy.frombuffer(buf, dtype=numpy.uint64)
        int(a.sum())
    else:
        bytes(buf)
    return len(buf), buf[-1]


def _queue_child(q, back):
    while True:
        data = q.get()
        if data is None:
            return
        back.put(read_all(data))


def _name_child(conn, module):
    sm = sk_sm if module == "shmkit" else cpy_sm
    while True:
        name = conn.recv()
        if name is None:
            return
        # (CPython's attach registers the name with the resource tracker
        # that this forked child shares with the parent, which already
        # registered it: the parent's unlink unregisters it once.)
        s = sm.SharedMemory(name)
        try:
            conn.send(read_all(s.buf))
        finally:
            s.close()


def bench_handoff():
    size = HANDOFF
    payload = bytes(range(256)) * (size // 256)
    want = (size, 255)
    ctx = mp.get_context("fork")
    procs = []

    q, back = ctx.Queue(), ctx.Queue()
    procs.append((ctx.Process(target=_queue_child, args=(q, back)), q.put))

    def by_queue(n):
        for _ in range(n):
            q.put(payload)
            assert back.get() == want

    pipes = {}
    for module in ("shmkit", "cpython"):
        parent, child = ctx.Pipe()
        pipes[module] = parent
        procs.append((ctx.Process(target=_name_child, args=(child, module)),
                      parent.send))

    def fresh(module):
        sm = sk_sm if module == "shmkit" else cpy_sm
        conn = pipes[module]

        def f(n):
            for _ in range(n):
                s = sm.SharedMemory(nm("h" + module[0]), create=True, size=size)
                try:
                    s.buf[:] = payload
                    conn.send(s.name)
                    assert conn.recv() == want
                finally:
                    s.close()
                    s.unlink()
        return f

    filled = sk_sm.SharedMemory(nm("hf"), create=True, size=size)
    filled.buf[:] = payload

    def copy_in(n):
        for _ in range(n):
            filled.buf[:] = payload
            pipes["shmkit"].send(filled.name)
            assert pipes["shmkit"].recv() == want

    def name_only(n):
        for _ in range(n):
            pipes["shmkit"].send(filled.name)
            assert pipes["shmkit"].recv() == want

    for p, _ in procs:
        p.start()
    try:
        reader = "numpy sum" if numpy is not None else "bytes copy"
        run(f"py.handoff.{size >> 20}M",
            f"Python: {size >> 20} MiB to a child that reads it all ({reader})",
            [("multiprocessing.Queue (pickle, copy)", by_queue),
             ("CPython SharedMemory: create, copy in, name", fresh("cpython")),
             ("shmkit: create, copy in, name", fresh("shmkit")),
             ("shmkit: copy into existing block, name", copy_in),
             ("shmkit: name only (block already filled)", name_only)],
            1, wall=True)
    finally:
        for p, stop in procs:
            stop(None)
        for p, _ in procs:
            p.join()
        filled.close()
        filled.unlink()
    bad = [p.exitcode for p, _ in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"bench_python: handoff child failed: {bad}")


# ---- system call counting (bench/run --syscalls) ----------------------------

def mark(what):
    """A system call strace shows and nothing else makes: write to fd -1."""
    try:
        os.write(-1, what.encode())
    except OSError:
        pass


def count(work, n):
    """Runs one operation n times between two markers (after a warm-up)."""
    size = 4096
    ops = {
        "floor.create": floor_create(nm("f"), size),
        "shmkit.create.tracked": sk_create(nm("s"), size, True, **NOT_RESERVED),
        "shmkit.create.untracked": sk_create(nm("s"), size, False, **NOT_RESERVED),
        "shmkit.create.default": sk_create(nm("s"), size, True),
        "cpython.create": cpy_create(nm("c"), size),
        "shmkit.list.create": list_create(sk_sm.ShareableList, range(1000)),
        "shmkit.list.create.named": list_create(sk_sm.ShareableList, range(1000), nm("l")),
        "shmkit.block.create.25016": sk_create(nm("b"), 25016, True),
    }
    keep = sk_sm.SharedMemory(nm("keep"), create=True, size=size, track=False)
    lst = sk_sm.ShareableList(range(1000), name=nm("la"), track=False)
    ops["floor.attach"] = floor_attach(keep.name)
    ops["shmkit.attach"] = sk_attach(keep.name)
    ops["shmkit.list.attach"] = list_attach(sk_sm.ShareableList, lst.shm.name)

    def unlink_raw(m, marked=True):
        blocks = [sk_sm.SharedMemory(nm(f"u{i}"), create=True, size=size, track=False)
                  for i in range(m)]
        for b in blocks:
            b.close()
        if marked:
            mark("shmkit-bench:start")
        for b in blocks:
            b.unlink()
        if marked:
            mark("shmkit-bench:end")
    try:
        if work == "shmkit.unlink":
            unlink_raw(2, False)
            unlink_raw(n)
            return
        fn = ops[work]
        fn(2)
        mark("shmkit-bench:start")
        fn(n)
        mark("shmkit-bench:end")
    finally:
        keep.close()
        keep.unlink()
        lst.shm.close()
        lst.shm.unlink()


def main():
    if "--count" in sys.argv:
        i = sys.argv.index("--count")
        count(sys.argv[i + 1], int(sys.argv[i + 2]))
        return
    only = None
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1].split(",")
    if not TSV:
        print(f"shmkit {shmkit.__version__}, Python {sys.version.split()[0]} "
              f"({sys.executable}), {os.cpu_count()} CPUs"
              f"{' (quick)' if QUICK else ''}")
    parts = {"blocks": bench_blocks, "lists": bench_lists, "sync": bench_sync,
             "handoff": bench_handoff}
    if _posixshmem is None:
        print("bench_python: no _posixshmem: no Python floor", file=sys.stderr)
        del parts["blocks"]
    for key, fn in parts.items():
        if only is None or key in only:
            fn()


if __name__ == "__main__":
    main()
