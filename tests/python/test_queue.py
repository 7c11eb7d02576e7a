"""shmkit.Queue, SimpleQueue and JoinableQueue: multiprocessing's queue API,
pickling by name to children of every start method, exactly-once delivery
with several producers and consumers, NumPy arrays out of band, zero copy,
signals and close during a blocking get, and C <-> Python interop through
examples/queue.c and `shmkit show`."""
import json
import os
import pickle
import queue
import signal
import subprocess
import threading
import time
import zlib

import pytest

import shmkit
from conftest import join_ok, start

np = pytest.importorskip("numpy")

EXAMPLE = os.path.join(os.environ.get("SHMKIT_BUILD_DIR", ""), "examples",
                       "example_queue")


def example_path():
    # The CLI lives in <build>/bin; the example in <build>/examples.
    cli = os.environ.get("SHMKIT_CLI")
    if cli:
        return os.path.join(os.path.dirname(os.path.dirname(cli)), "examples",
                            "example_queue")
    return EXAMPLE


def make(names, *args, **kw):
    kw.setdefault("capacity", 1 << 20)
    return shmkit.Queue(*args, name=names.new("q"), create=True, **kw)


def drop(q):
    q.unlink()
    q.close()


def test_put_get_order_and_types(names):
    q = make(names)
    items = [1, "two", (3, "x" * 40), {"k": [4.5, None]}, b"\x00bytes",
             None]
    for it in items:
        q.put(it)
    assert q.qsize() == len(items)
    assert not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    drop(q)


def test_maxsize_full_and_sizes(names):
    q = make(names, 2, capacity=4096)
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.get() == 1
    q.put(3)
    # Larger than the ring can ever hold: ValueError with both sizes.
    with pytest.raises(ValueError, match=r"larger than the queue's largest "
                                         r"message of 4080 bytes"):
        q.put(b"x" * 5000)
    drop(q)


def test_close_semantics(names):
    q = make(names)
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(2)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    q.join_thread()
    q.cancel_join_thread()
    q.unlink()


def test_close_wakes_a_blocked_get(names):
    q = make(names)
    caught = []

    def getter():
        try:
            q.get()
        except ValueError as e:
            caught.append(e)

    t = threading.Thread(target=getter)
    t.start()
    while q.stat()["waiting_consumers"] == 0:   # until it sleeps
        time.sleep(0)
    q.close()
    t.join(10)
    assert not t.is_alive()
    assert len(caught) == 1 and "closed" in str(caught[0])
    q.unlink()


def test_signal_handler_runs_during_get(names):
    q = make(names)

    class Stop(Exception):
        pass

    def handler(sig, frame):
        raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Stop):
            q.get()          # would wait for ever
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    drop(q)


def test_a_signal_just_before_the_sleep_is_not_lost(names):
    # A signal that lands while get looks or spins, before its sleep, ran
    # the C handler but ended nothing: the Python handler waited for the
    # next message or the deadline (review s21 finding 3; ~37% of these
    # before). get sleeps in slices and looks for signals between them.
    q = make(names)
    main = threading.get_ident()
    state = {"in_get": False, "late": 0}

    class Stop(Exception):
        pass

    def handler(sig, frame):
        if state["in_get"]:
            raise Stop
        state["late"] += 1

    def sender():
        while not state["in_get"]:
            time.sleep(0)   # runs once get has let go of the GIL
        signal.pthread_kill(main, signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        for _ in range(30):
            t = threading.Thread(target=sender)
            t.start()
            try:
                state["in_get"] = True
                with pytest.raises(Stop):
                    try:
                        q.get(timeout=2.0)
                    finally:
                        state["in_get"] = False
            finally:
                t.join()
        assert state["late"] == 0
    finally:
        signal.signal(signal.SIGUSR1, old)
    drop(q)


def test_numpy_out_of_band_and_in_band(names):
    q = make(names, capacity=8 << 20)
    big = np.random.default_rng(1).random((512, 256))      # 1 MiB
    small = np.arange(10, dtype=np.int16)
    strided = np.arange(100000.0)[::2]                     # not contiguous
    q.put(big)
    q.put(small)
    q.put(strided)
    got = q.get()
    assert got.dtype == big.dtype and got.shape == big.shape
    assert np.array_equal(got, big)
    assert got.flags.writeable
    assert np.array_equal(q.get(), small)
    assert np.array_equal(q.get(), strided)
    drop(q)


def test_put_many_get_many(names):
    q = make(names)
    assert q.put_many(range(1000)) == 1000
    got = []
    while len(got) < 1000:
        got += q.get_many(100)
    assert got == list(range(1000))
    # A call takes what it asks for, up to 256 (SHMKIT_QUEUE_BATCH).
    assert q.put_many(range(300)) == 300
    assert q.get_many(100) == list(range(100))
    assert q.get_many(1000) == list(range(100, 300))
    assert q.put_many(range(300)) == 300
    assert q.get_many(1000) == list(range(256))
    assert q.get_many() == list(range(256, 300))
    with pytest.raises(queue.Empty):
        q.get_many(block=False)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max must be at least 1"):
            q.get_many(bad)
    drop(q)


class BrokenOnArrival(Exception):
    pass


def _rebuild_fails():
    raise BrokenOnArrival("cannot rebuild this one")


class Unrebuildable:
    """Pickles fine; unpickling it raises (a class the consumer lacks)."""

    def __reduce__(self):
        return (_rebuild_fails, ())


@pytest.mark.parametrize("at", [0, 40, 80])
def test_get_many_loses_only_the_message_that_fails(names, at):
    # 81 messages, one of which cannot be rebuilt: the get_many that meets
    # it raises its error, as get would, and every other message still
    # comes, in order (review s20 finding 1: the whole batch was lost).
    q = make(names)
    items = list(range(81))
    items[at] = Unrebuildable()
    assert q.put_many(items) == 81
    good = [x for i, x in enumerate(items) if i != at]
    got = []
    with pytest.raises(BrokenOnArrival):
        got += q.get_many(256)
    assert q.qsize() == 80 - len(got)
    assert q.stat()["pending"] == 80 - len(got)
    got.append(q.get(block=False))  # get delivers what was kept first
    while len(got) < 80:
        got += q.get_many(7, block=False)
    assert got == good
    assert q.stat()["pending"] == 0
    with pytest.raises(queue.Empty):
        q.get_many(block=False)
    drop(q)


def test_kept_messages_stay_with_their_process(names):
    # A forked child's copy of the handle does not deliver its parent's
    # kept messages a second time.
    q = make(names)
    assert q.put_many([Unrebuildable(), 1, 2]) == 3
    with pytest.raises(BrokenOnArrival):
        q.get_many(256)
    pid = os.fork()
    if pid == 0:
        try:
            ok = q.stat()["pending"] == 0 and q.get_many(block=False) == []
        except queue.Empty:
            ok = True
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert q.get_many(256, block=False) == [1, 2]
    drop(q)


_HOOK_QUEUE = []
_LOANED_SEEN = []


def _rebuild_noting_loans():
    _LOANED_SEEN.append(_HOOK_QUEUE[0].stat()["loaned"])
    return "rebuilt"


class NotesLoans:
    """Its unpickling (Python code: the loads hook) records how many
    records the queue has on loan at that moment."""

    def __reduce__(self):
        return (_rebuild_noting_loans, ())


def test_no_record_is_held_while_unpickling_runs(names):
    # Unpickling runs any Python code; a record held meanwhile pins the
    # ring's head and every other consumer's take walks past it (review
    # s20 finding 4). get and get_many give their records back first.
    q = make(names)
    _HOOK_QUEUE[:] = [q]
    del _LOANED_SEEN[:]
    try:
        assert q.put_many([NotesLoans() for _ in range(10)]) == 10
        assert q.get_many(256, block=False) == ["rebuilt"] * 10
        q.put(NotesLoans())
        assert q.get(block=False) == "rebuilt"
        assert _LOANED_SEEN == [0] * 11
    finally:
        _HOOK_QUEUE[:] = []
    drop(q)


def test_get_copies_small_messages_and_lends_big_ones(names):
    # get copies a message of up to 2 KiB out under the mutex and lends a
    # bigger one; after a big one it lends until a small one comes: every
    # size on either side of the line, in every order, comes out whole.
    q = make(names, capacity=4 << 20)
    sizes = [0, 10, 600, 1500, 2030, 2048, 2049, 5000, 5000, 600, 700, 1,
             2049, 2040, 70000, 3, 900, 1000]
    msgs = [bytes([(i * 7 + k) % 251 for k in range(n)])
            for i, n in enumerate(sizes)]
    objs = msgs + [("tuple", i, "x" * (3000 - i * 1000)) for i in range(3)] + [
        np.arange(1000.0), np.arange(10.0), np.arange(20.0), (1, "y" * 300)]
    for m in objs:
        q.put(m)
    for m in objs:
        got = q.get(block=False)
        if isinstance(m, np.ndarray):
            assert got.dtype == m.dtype and (got == m).all()
        else:
            assert got == m
    with pytest.raises(queue.Empty):
        q.get(block=False)
    assert q.stat()["loaned"] == 0
    drop(q)


def test_get_many_batches_are_not_cut_by_its_buffer(names):
    # 2,000-byte messages: 256 take ~520 KB, past get_many's first 256 KiB
    # buffer; a call cut short by it sizes the next one (130 a call before).
    q = make(names, capacity=4 << 20)
    msgs = [bytes([i % 251]) * 2000 for i in range(300)]
    assert q.put_many(msgs) == 300
    first = q.get_many(256, block=False)
    second = q.get_many(256, block=False)
    assert first + second == msgs
    drop(q)


def test_loan_and_peek_zero_copy(names):
    q = make(names)
    with q.loan(8 * 100) as buf:
        a = np.frombuffer(buf, dtype=np.float64)
        a[:] = np.arange(100)
        del a
    with q.peek() as view:
        a = np.frombuffer(view, dtype=np.float64)
        assert np.array_equal(a, np.arange(100))
        assert view.readonly
        del a
    assert q.stat()["bytes_used"] == 0
    # A loan that raises is dropped; one that keeps a view refuses to end.
    with pytest.raises(RuntimeError):
        with q.loan(10) as buf:
            raise RuntimeError
    assert q.stat()["reserved"] == 0 and q.empty()
    loan = q.loan(10)
    with pytest.raises(BufferError):
        with loan as buf:
            keep = buf[:5]          # a second view of the ring
    keep.release()
    loan._slot.cancel()
    # A shorter message than reserved.
    with q.loan(100) as buf:
        buf[:3] = b"abc"
        pass
    assert len(q.get()) == 100
    loan = q.loan(100)
    with loan as buf:
        buf[:3] = b"xyz"
        loan.nbytes = 3
    assert q.get() == b"xyz"
    drop(q)


def _child_consume(q, n, expect_sum):
    # The queue arrived pickled by name.
    total = sum(q.get() for _ in range(n))
    os._exit(0 if total == expect_sum else 3)


def test_pickles_by_name_to_every_start_method(names, ctx):
    q = make(names)
    p = start(ctx, _child_consume, q, 100, sum(range(100)))
    for i in range(100):
        q.put(i)
    join_ok(p)
    assert pickle.loads(pickle.dumps(q)).name == q.name
    drop(q)


def _square(args):
    name, x = args
    q = shmkit.Queue(name=name)
    q.put((x, x * x))
    q.close()
    return x


def test_pool_workers_attach_by_name(names):
    import multiprocessing as mp
    q = make(names)
    with mp.get_context("spawn").Pool(2) as pool:
        assert sorted(pool.map(_square, [(q.name, i) for i in range(20)])) \
            == list(range(20))
    got = dict(q.get(timeout=10) for _ in range(20))
    assert got == {i: i * i for i in range(20)}
    drop(q)


# ---- several producers and consumers: exactly once, intact -------------

PER_PRODUCER = 50000


def _producer(q, p):
    rng = np.random.default_rng(p)
    batch = []
    for i in range(PER_PRODUCER):
        payload = rng.bytes(int(rng.integers(0, 300)))
        batch.append((p, i, zlib.crc32(payload), payload))
        if len(batch) == 50 or i == PER_PRODUCER - 1:
            if p % 2:
                q.put_many(batch)
            else:
                for m in batch:
                    q.put(m)
            batch = []
    os._exit(0)


def _consumer(q, out, c):
    seen = []
    last = {}
    stopped = False
    while not stopped:
        msgs = q.get_many(64) if c % 2 else [q.get()]
        for m in msgs:
            if m is None:
                if stopped:         # another consumer's stop: give it back
                    q.put(None)
                stopped = True
                continue
            p, i, crc, payload = m
            if zlib.crc32(payload) != crc or last.get(p, -1) >= i:
                os._exit(4)     # torn, or one producer's order broken
            last[p] = i
            seen.append(p * PER_PRODUCER + i)
    out.put(seen)
    os._exit(0)


def test_two_by_two_processes_exactly_once(names):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = make(names, capacity=1 << 20)
    out = make(names, capacity=16 << 20)
    cons = [start(ctx, _consumer, q, out, c) for c in range(2)]
    prods = [start(ctx, _producer, q, p) for p in range(2)]
    for p in prods:
        join_ok(p)
    # One stop per consumer, after every message.
    for _ in cons:
        q.put(None)
    seen = []
    for _ in cons:
        seen += out.get(timeout=120)
    for c in cons:
        join_ok(c)
    assert len(seen) == 2 * PER_PRODUCER
    assert sorted(seen) == list(range(2 * PER_PRODUCER))
    drop(q)
    drop(out)


# ---- JoinableQueue ----------------------------------------------------------

def _worker(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            os._exit(0)


def test_joinable_queue_across_processes(names, ctx):
    q = shmkit.JoinableQueue(name=names.new("j"), create=True,
                             capacity=1 << 16)
    for i in range(50):
        q.put(i)
    assert q.join(timeout=0.01) is False
    p = start(ctx, _worker, q)
    q.put(None)
    assert q.join(timeout=60) is True
    join_ok(p)
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    drop(q)


def test_simple_queue(names):
    q = shmkit.SimpleQueue(name=names.new("s"), create=True, capacity=4096)
    assert q.empty()
    q.put("x")
    assert q.get() == "x"
    drop(q)


# ---- what CPython's own queue tests check (tests/cpython) -------------------

@pytest.mark.parametrize("cls", [shmkit.Queue, shmkit.JoinableQueue])
def test_empty_on_a_closed_queue_as_cpython(names, cls):
    # CPython (test_closed_queue_empty_exceptions): close() takes effect
    # with the feeder thread, which the first put starts. A closed queue
    # this object never put to still answers empty() (from the queue as it
    # is); once it put, empty() raises OSError ("may raise an OSError on
    # closed queues"). put and get raise ValueError either way.
    q = cls(name=names.new("q"), create=True, capacity=4096)
    q.close()
    q.join_thread()
    assert q.empty()
    other = cls(name=q.name)
    other.put("x")
    assert not q.empty()
    assert other.get(timeout=10) == "x"
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    assert q.empty()          # a get is no put
    with pytest.raises(ValueError, match="is closed"):
        q.put("foo")
    assert q.empty()          # nor is a put refused as closed
    other.close()
    q = cls(name=q.name)
    q.put("foo")
    q.close()
    q.join_thread()
    with pytest.raises(OSError, match="is closed"):
        q.empty()
    with pytest.raises(ValueError, match="is closed"):
        q.put("bar")
    q.unlink()


def test_a_closed_simple_queue_raises_oserror(names):
    # CPython's SimpleQueue is a pipe: once closed, empty, put and get
    # raise its OSError (test_empty_exceptions); closing twice is fine.
    q = shmkit.SimpleQueue(name=names.new("s"), create=True, capacity=4096)
    q.put(1)
    q.close()
    q.close()
    for call in (q.empty, q.get, lambda: q.put(2), q.get_nowait,
                 lambda: q.put_nowait(2), lambda: q.put_many([2]),
                 q.get_many):
        with pytest.raises(OSError, match="is closed"):
            call()
    q.unlink()


def test_counting_and_looking_work_after_close(names):
    # CPython: close() means no more puts from this process; qsize, full,
    # task_done and join still work (its semaphores outlive the pipe), so
    # a producer may close and then join. The closed handle gives its
    # liveness slot back at once.
    q = shmkit.JoinableQueue(2, name=names.new("j"), create=True,
                             capacity=4096)
    q.put(1)
    q.put(2)
    assert q.stat()["slots_held"] == 1
    q.close()
    assert q.qsize() == 2 and q.full()
    assert q.stat()["slots_held"] == 0
    assert q.join(timeout=0) is False
    joined = []
    t = threading.Thread(target=lambda: joined.append(q.join()))
    t.start()
    c = shmkit.JoinableQueue(name=q.name)
    assert c.get(timeout=10) == 1 and c.get(timeout=10) == 2
    q.task_done()               # the closed handle counts too
    assert q.qsize() == 0 and not q.full()
    c.task_done()
    t.join(60)
    assert joined == [True]
    assert q.join(timeout=0) is True
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    c.unlink()
    c.close()


def test_a_negative_timeout_is_one_try(names):
    # multiprocessing's queues take a negative timeout as 0 (a deadline
    # already passed: Empty or Full, or the message if there is one), where
    # queue.Queue raises ValueError.
    q = shmkit.JoinableQueue(1, name=names.new("n"), create=True,
                             capacity=4096)
    with pytest.raises(queue.Empty):
        q.get(True, -1)
    q.put(1, True, -1)
    with pytest.raises(queue.Full):
        q.put(2, timeout=-0.5)
    with pytest.raises(queue.Full):
        q.put_many([2], timeout=-1)
    assert q.join(timeout=-1) is False
    assert q.get(timeout=-1) == 1
    with pytest.raises(queue.Empty):
        q.get_many(timeout=-1)
    q.task_done()
    assert q.join(timeout=-1) is True
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))
    drop(q)


def test_queue_classes_are_generic():
    # CPython's SimpleQueue[int] (3.9+) and Queue[int] (3.13+).
    import types
    for cls in (shmkit.Queue, shmkit.SimpleQueue, shmkit.JoinableQueue):
        alias = cls[int]
        assert isinstance(alias, types.GenericAlias)
        assert alias.__origin__ is cls and alias.__args__ == (int,)


class _NotPicklable:
    def __reduce__(self):
        raise AttributeError("not picklable")


def test_a_put_that_cannot_pickle_raises_and_changes_nothing(names):
    # CPython pickles in its feeder thread, which prints the error and
    # drops the object (test_queue_feeder_donot_stop_onexc); shmkit pickles
    # in put, so put raises it. Either way the queue keeps working and
    # counts only what was put: sizes, maxsize, and a JoinableQueue's tasks.
    q = make(names, 1)
    with pytest.raises(AttributeError, match="not picklable"):
        q.put(_NotPicklable())
    q.put(True)
    assert q.qsize() == 1 and q.full()
    assert q.get(timeout=10) is True
    assert q.empty()
    drop(q)
    j = shmkit.JoinableQueue(name=names.new("j"), create=True, capacity=4096)
    with pytest.raises(AttributeError, match="not picklable"):
        j.put(_NotPicklable())
    with pytest.raises(AttributeError, match="not picklable"):
        j.put_many([1, _NotPicklable(), 3])
    assert j.empty()
    assert j.join(timeout=0) is True
    j.put(4)
    assert j.join(timeout=0) is False
    assert j.get(timeout=10) == 4
    j.task_done()
    assert j.join(timeout=0) is True
    drop(j)


# ---- C <-> Python, and the CLI ---------------------------------------------

def test_c_producer_python_consumer(names):
    q = make(names)
    r = subprocess.run([example_path(), "put", q.name, "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [q.get(timeout=10) for _ in range(5)] == \
        [f"message {i}".encode() for i in range(5)]
    drop(q)


def test_python_producer_c_consumer(names):
    q = make(names)
    q._q.put_bytes(b"from python")
    with q.loan(11) as buf:
        buf[:] = b"zero copied"
    r = subprocess.run([example_path(), "get", q.name, "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["from python", "zero copied"]
    drop(q)


def test_cli_show_queue(names, cli):
    q = make(names, 10, capacity=4096)
    q.put(1)
    q.put(2)
    loan = q.peek()
    r = subprocess.run([cli, "show", q.name, "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "queue"
    assert (info["depth"], info["loaned"], info["capacity"],
            info["max_messages"]) == (1, 1, 4096, 10)
    loan._slot.release()
    r = subprocess.run([cli, "show", q.name], capture_output=True, text=True,
                       timeout=60)
    assert "depth:      1 message waiting" in r.stdout
    assert shmkit.block_kind(q.name) == "queue"
    drop(q)


def test_stat_shows_the_liveness_slots(names):
    """stat() carries the slot table's figures as the C API and `shmkit
    show` do: no slot before a handle's first put/get, one per process
    and queue after it (shared by its handles), freed at the last close."""
    q = make(names)
    st = q.stat()
    assert (st["version"], st["slots"]) == (2, 120)
    assert (st["slots_held"], st["attached"]) == (0, 0)
    q.put(1)
    assert (q.stat()["slots_held"], q.stat()["attached"]) == (1, 1)
    other = shmkit.Queue(name=q.name)
    assert other.get(timeout=30) == 1
    st = q.stat()
    assert (st["slots_held"], st["attached"]) == (1, 1)   # shared
    other.close()
    assert q.stat()["slots_held"] == 1
    q.close()
    last = shmkit.Queue(name=q.name)                    # makes no record
    assert last.stat()["slots_held"] == 0
    last.close()
    last.unlink()
