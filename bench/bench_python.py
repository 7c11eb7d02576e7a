"""shmkit's Python module against CPython's multiprocessing, in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--quick]

Each line: what is measured, CPython's time, shmkit's time, the speed-up
(CPython / shmkit) and the issue's target. Times are the best of several
repeats of a loop (per operation). Both sides use their defaults (tracked
blocks, locks as multiprocessing makes them) unless the line says otherwise.
Everything the run creates is removed.
"""
import gc
import multiprocessing as mp
import os
import sys
import time
from multiprocessing import shared_memory as cpy_sm

import shmkit
from shmkit import shared_memory as sk_sm

QUICK = "--quick" in sys.argv
REPEATS = 3 if QUICK else 5


def best(fn, n):
    """Best per-call time in seconds of fn(n) (which runs n operations)."""
    times = []
    for _ in range(REPEATS):
        gc.collect()
        t0 = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def pair(fn_cpy, n_cpy, fn_sk, n_sk):
    """Best per-call times of both sides, their repeats interleaved so that
    a busy machine weighs on both alike."""
    t_c, t_s = [], []
    for _ in range(REPEATS):
        t_c.append(best_once(fn_cpy, n_cpy))
        t_s.append(best_once(fn_sk, n_sk))
    return min(t_c), min(t_s)


def best_once(fn, n):
    gc.collect()
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n


def fmt(t):
    if t >= 1e-3:
        return f"{t * 1e3:8.2f} ms"
    if t >= 1e-6:
        return f"{t * 1e6:8.2f} us"
    return f"{t * 1e9:8.1f} ns"


ROWS = []


def row(what, t_cpy, t_sk, target):
    ratio = t_cpy / t_sk
    ok = "ok" if target is None or ratio >= target else "BELOW TARGET"
    tgt = f">= {target:g}x" if target else "-"
    ROWS.append((what, t_cpy, t_sk, ratio, tgt, ok))
    print(f"{what:<44} {fmt(t_cpy)} {fmt(t_sk)} {ratio:8.2f}x  {tgt:<8} {ok}", flush=True)


# ---- blocks --------------------------------------------------------------

def bench_create():
    def cpy_cycle(n):
        for _ in range(n):
            s = cpy_sm.SharedMemory(create=True, size=4096)
            s.close()
            s.unlink()

    def sk_cycle(n, track=True):
        for _ in range(n):
            s = sk_sm.SharedMemory(create=True, size=4096, track=track)
            s.close()
            s.unlink()
    n = 300 if QUICK else 2000
    t_c, t_s = pair(cpy_cycle, n, sk_cycle, n)
    row("create+close+unlink 4 KiB (tracked)", t_c, t_s, 2)
    row("  shmkit untracked (track=False)", t_c, best(lambda k: sk_cycle(k, False), n), None)


def bench_attach():
    s = sk_sm.SharedMemory(create=True, size=4096, track=False)
    name = s.name

    def cpy_attach(n):
        for _ in range(n):
            a = cpy_sm.SharedMemory(name)
            a.close()

    def sk_attach(n):
        for _ in range(n):
            a = sk_sm.SharedMemory(name)
            a.close()
    n = 500 if QUICK else 5000
    try:
        t_c, t_sk = pair(cpy_attach, n, sk_attach, n)
    finally:
        # CPython's attach registered the block with its resource tracker
        # (gh-82300); unregister so that its exit does not unlink ours.
        from multiprocessing import resource_tracker
        resource_tracker.unregister("/" + name, "shared_memory")
    row("attach+close", t_c, t_sk, 3)
    s.close()
    s.unlink()


# ---- ShareableList -------------------------------------------------------------

def bench_list():
    c = cpy_sm.ShareableList(list(range(100)))
    k = sk_sm.ShareableList(list(range(100)))
    n = 20000 if QUICK else 200000

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
    row("ShareableList get", *pair(get(c), n // 10, get(k), n), 20)
    row("ShareableList set", *pair(put(c), n // 10, put(k), n), 20)
    for sl in (c, k):
        sl.shm.close()
        sl.shm.unlink()

    made = []

    def create(cls):
        def f(m):
            for _ in range(m):
                made.append(cls(range(1000)))
        return f
    m = 20 if QUICK else 100
    t_c, t_k = pair(create(cpy_sm.ShareableList), m, create(sk_sm.ShareableList), m)
    for sl in made:
        sl.shm.close()
        sl.shm.unlink()
    row("ShareableList(range(1000))", t_c, t_k, 10)


# ---- locks and values ---------------------------------------------------------

def bench_locks():
    n = 50000 if QUICK else 500000
    cl = mp.Lock()
    kl = shmkit.Lock()

    def with_lock(lk):
        def f(m):
            for _ in range(m):
                with lk:
                    pass
        return f
    row("with lock:", *pair(with_lock(cl), n, with_lock(kl), n), 2)
    kl.unlink()

    cv = mp.Value('i', 0)
    kv = shmkit.Value('i', 0)

    def incr(v):
        def f(m):
            for _ in range(m):
                with v.get_lock():
                    v.value += 1
        return f
    t_c, t_k = pair(incr(cv), n, incr(kv), n)
    row("locked Value increment", t_c, t_k, 4)

    def atomic(m):
        for _ in range(m):
            kv.add(1)
    row("atomic add (vs CPython locked increment)", *pair(incr(cv), n, atomic, n), 10)
    kv.unlink()


# ---- handing 256 MiB to a child -------------------------------------------------

def _queue_child(q, back):
    while True:
        data = q.get()
        if data is None:
            return
        back.put((len(data), data[-1]))


def _name_child(conn):
    while True:
        name = conn.recv()
        if name is None:
            return
        s = sk_sm.SharedMemory(name)
        conn.send((s.size, s.buf[-1]))
        s.close()


def bench_handoff():
    size = 256 << 20
    payload = bytes(range(256)) * (size // 256)
    ctx = mp.get_context("fork")
    q, back = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_queue_child, args=(q, back))
    p.start()
    reps = 2 if QUICK else 4
    tq = []
    for _ in range(reps):
        t0 = time.perf_counter()
        q.put(payload)
        assert back.get() == (size, 255)
        tq.append(time.perf_counter() - t0)
    q.put(None)
    p.join()
    assert p.exitcode == 0

    shm = sk_sm.SharedMemory(create=True, size=size)
    shm.buf[:] = payload
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_name_child, args=(child,))
    p.start()
    ts = []
    for _ in range(reps * 5):
        t0 = time.perf_counter()
        parent.send(shm.name)
        assert parent.recv() == (size, 255)
        ts.append(time.perf_counter() - t0)
    parent.send(None)
    p.join()
    assert p.exitcode == 0
    shm.close()
    shm.unlink()
    row("256 MiB to a child: by name vs Queue", min(tq), min(ts), 30)


def main():
    print(f"shmkit {shmkit.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs{' (quick)' if QUICK else ''}")
    print(f"{'':<44} {'CPython':>11} {'shmkit':>11} {'speed-up':>9}  target")
    bench_create()
    bench_attach()
    bench_list()
    bench_locks()
    bench_handoff()
    below = [r[0] for r in ROWS if r[5] != "ok"]
    print("all targets met" if not below else f"below target: {', '.join(below)}")


if __name__ == "__main__":
    main()
