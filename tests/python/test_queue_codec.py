"""shmkit.Queue's fast paths: the C codec for plain values (exact round
trips, and everything else through pickle), malformed plain messages from a
peer, get(copy=False) keeping out-of-band buffers in the ring, and get_many
from several threads of one process."""
import collections
import math
import pickle
import queue
import struct
import threading

import pytest

import shmkit
from shmkit import queues as skq

np = pytest.importorskip("numpy")


def make(names, **kw):
    kw.setdefault("capacity", 1 << 20)
    return shmkit.Queue(name=names.new("q"), create=True, **kw)


def drop(q):
    q.unlink()
    q.close()


def same(a, b):
    """Equal, with the same types all the way down (and floats bit for
    bit, so -0.0 and NaN count)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return (list(a) == list(b) and
                all(same(x, y) for x, y in zip(a.values(), b.values())))
    return a == b


class CountingDumps:
    """The dumps hook, counting how often put needed pickle."""

    def __init__(self):
        self.calls = 0

    def __call__(self, obj):
        self.calls += 1
        return skq._dumps(obj)


def spy(q):
    d = CountingDumps()
    q._q.set_hooks(d, skq._loads, queue.Empty, queue.Full)
    return d


PLAIN = [
    None, True, False, 0, 1, -1, 2**63 - 1, -2**63, 0.0, -0.0, 1.5,
    float("inf"), float("-inf"), float("nan"), "", "ascii", "latin-1 \xe9",
    "bmp \u20ac", "astral \U0001f600", "lone \ud800 surrogate", b"",
    b"\x00\xff" * 3000, (), (1,), (12345, "x" * 40), ((1, (2, (3, ()))), "a"),
    [], [1, "two", (3.0, None)], {}, {"k": 1, 2: (3, "v"), (1, 2): b"x"},
    "x" * 100000, tuple(range(1000)),
]


def test_plain_values_round_trip_exactly_without_pickle(names):
    q = make(names)
    d = spy(q)
    for v in PLAIN:
        q.put(v)
    got = [q.get() for _ in PLAIN]
    for v, g in zip(PLAIN, got):
        assert same(v, g), (v, g)
    assert d.calls == 0
    # The same through the batch calls.
    assert q.put_many(PLAIN) == len(PLAIN)
    got = []
    while len(got) < len(PLAIN):
        got += q.get_many(64)
    assert all(same(v, g) for v, g in zip(PLAIN, got))
    assert d.calls == 0
    drop(q)


Point = collections.namedtuple("Point", "x y")


class Int(int):
    pass


class Str(str):
    pass


def test_other_values_go_through_pickle_and_keep_what_pickle_keeps(names):
    q = make(names)
    d = spy(q)
    shared = [1]
    rec = []
    rec.append(rec)
    values = [2**64, -2**63 - 1, Int(5), Str("s"), Point(1, 2), 1j,
              {1, 2}, frozenset([3]), [shared, shared], {"a": shared},
              ([1],), rec, bytearray(b"ba"), (1, [2])]
    for v in values:
        q.put(v)
    got = [q.get() for _ in values]
    assert d.calls == len(values)
    for v, g in zip(values[:9], got[:9]):
        assert type(v) is type(g) and v == g
    lists = got[8]
    assert lists[0] is lists[1]           # sharing kept, as pickle keeps it
    assert got[9]["a"] == [1]
    assert got[10] == ([1],)
    assert got[11][0] is got[11]          # a recursive list
    assert got[12] == bytearray(b"ba") and type(got[12]) is bytearray
    assert got[13] == (1, [2])
    drop(q)


def plain_msg(body):
    return b"SKV1" + body


MALFORMED = [
    plain_msg(b""),                                   # no value
    plain_msg(b"?"),                                  # unknown tag
    plain_msg(b"i\x01\x02"),                          # short int
    plain_msg(b"NN"),                                 # bytes after the value
    plain_msg(b"s\x03" + struct.pack("<I", 1) + b"a"),  # kind 3
    plain_msg(b"s\x01" + struct.pack("<I", 5) + b"ab"),  # short str
    plain_msg(b"s\x04" + struct.pack("<I", 1) + struct.pack("<I", 0x110000)),
    plain_msg(b"y" + struct.pack("<I", 2**32 - 1) + b"z"),
    plain_msg(b"t" + struct.pack("<I", 2**32 - 1) + b"N"),
    plain_msg(b"d" + struct.pack("<I", 1) + b"l" + struct.pack("<I", 0) +
              b"N"),                                  # unhashable key
    plain_msg(b"t\x01\x00\x00\x00" * 40 + b"N"),      # too deep
]


def test_malformed_plain_messages_come_out_as_bytes(names):
    q = make(names)
    for m in MALFORMED:
        assert q._q.put_bytes(m)
    for m in MALFORMED:
        assert q.get() == m
    # A well-formed one a peer wrote by hand decodes.
    q._q.put_bytes(plain_msg(b"t" + struct.pack("<I", 2) + b"TN"))
    assert q.get() == (True, None)
    drop(q)


def test_get_without_copy_keeps_the_record_until_the_array_goes(names):
    q = make(names, capacity=4 << 20)
    a = np.arange(1 << 17, dtype=np.float64)      # 1 MiB, out of band
    q.put(a)
    q.put(a * 2)
    b = q.get(copy=False)
    assert np.array_equal(a, b)
    assert not b.flags.writeable
    st = q.stat()
    assert st["loaned"] == 1 and st["depth"] == 1
    c = q.get()                                    # the default copies
    assert np.array_equal(a * 2, c) and c.flags.writeable
    assert q.stat()["loaned"] == 1
    view = b[10:20]
    del b
    assert q.stat()["loaned"] == 1                 # a view still reads it
    assert view[0] == 10.0
    del view
    st = q.stat()
    assert st["loaned"] == 0 and st["bytes_used"] == 0
    # Plain values and in-band pickles are never loaned.
    q.put((1, "x"))
    q.put(Point(1, 2))
    assert q.get(copy=False) == (1, "x")
    assert q.get(copy=False) == Point(1, 2)
    assert q.stat()["loaned"] == 0
    drop(q)


def test_get_many_from_threads_of_one_process(names):
    """get_many's buffer is taken per call: two threads share one Queue."""
    q = make(names, capacity=8 << 20)
    n, per = 20000, 2
    got = [[] for _ in range(per)]
    errors = []
    big = "y" * 3000

    def consume(k):
        try:
            while True:
                ms = q.get_many(64, timeout=30)
                got[k] += [m for m in ms if m is not None]
                stops = ms.count(None)
                if stops:
                    for _ in range(stops - 1):    # another thread's stop
                        q.put(None)
                    return
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=consume, args=(k,)) for k in range(per)]
    for t in ts:
        t.start()
    for i in range(0, n, 100):
        q.put_many([(j, big if j % 7 == 0 else "s") for j in range(i, i + 100)])
    for _ in ts:
        q.put(None)
    for t in ts:
        t.join(60)
        assert not t.is_alive()
    assert not errors
    items = sorted(got[0] + got[1])
    assert [i for i, _ in items] == list(range(n))
    assert all(s == (big if i % 7 == 0 else "s") for i, s in items)
    drop(q)


def test_put_argument_errors(names):
    q = make(names)
    with pytest.raises(TypeError):
        q._q.put()
    with pytest.raises(TypeError):
        q._q.put(1, True, None, 4)
    with pytest.raises(TypeError):
        q._q.put(1, bogus=1)
    with pytest.raises(TypeError):
        q._q.put(1, True, block=False)
    with pytest.raises(ValueError):
        q.get(timeout=math.nan)
    q._q.put(obj=1, timeout=None, block=True)
    assert q._q.get(timeout=1, block=True) == 1
    drop(q)


# ---- Python code run while a caller's sequence is walked ------------------

class Shrinks:
    """Pickles as 0, emptying the list it sits in while put_many walks it
    (put_many read past the emptied list and crashed, SIGSEGV)."""

    def __init__(self, victim, grow=False):
        self.victim = victim
        self.grow = grow

    def __reduce__(self):
        if self.grow:
            self.victim.extend(range(100, 105))
        else:
            self.victim.clear()
        return (int, ())


@pytest.mark.parametrize("grow", [False, True])
def test_put_many_puts_the_list_as_it_was_when_pickling_changes_it(names,
                                                                   grow):
    q = make(names)
    for put_many in (q._q.put_many, q.put_many):
        victim = []
        victim.extend([Shrinks(victim, grow), 1, 2, 3, 4])
        assert put_many(victim) == 5
        assert q.get_many() == [0, 1, 2, 3, 4]
    drop(q)


def test_joinable_put_many_counts_the_tasks_it_put(names):
    """The task count follows what was put, not the list's length after
    pickling changed it."""
    q = shmkit.JoinableQueue(name=names.new("q"), create=True,
                             capacity=1 << 20)
    victim = []
    victim.extend([Shrinks(victim, grow=True), 1, 2])
    assert q.put_many(victim) == 3
    assert q._q.stat()["unfinished"] == 3
    for _ in range(3):
        q.get()
        q.task_done()
    assert q.join(timeout=1)
    drop(q)


def test_get_many_shows_the_loads_hook_no_half_built_list(names):
    """get_many's loads hook runs Python code: the list it returns is not
    reachable (gc.get_objects) with empty slots (iterating one crashed)."""
    import gc

    def loads(parts):
        for o in gc.get_objects():
            if type(o) is list:
                for x in o:
                    id(x)
        return skq._loads(parts)

    q = make(names)
    q._q.set_hooks(skq._dumps, loads, queue.Empty, queue.Full)
    q.put_many([Point(1, 2), Point(3, 4), Point(5, 6)])
    assert q.get_many() == [Point(1, 2), Point(3, 4), Point(5, 6)]
    drop(q)


# ---- hostile frames -------------------------------------------------------

def frame_msg(lens, body):
    """An SKP5 frame header claiming part lengths lens, then body."""
    head = struct.pack("<II", 0x35504B53, len(lens))
    head += b"".join(struct.pack("<Q", n) for n in lens)
    head += b"\0" * (-len(head) % 16)
    return head + body


BAD_FRAMES = [
    frame_msg([1 << 40], b"x" * 32),               # part past the end
    frame_msg([2**64 - 1], b"x" * 32),             # wraps
    frame_msg([16, 2**64 - 16], b"x" * 48),        # the sum wraps
    frame_msg([20, 20], b"x" * 40),                # padding past the end
    frame_msg([8, 8, 8], b"x" * 39),               # third part past the end
    struct.pack("<II", 0x35504B53, 4096) + b"\0" * 64,  # header past the end
    struct.pack("<II", 0x35504B53, 0) + b"\0" * 8,  # no parts
    struct.pack("<II", 0x35504B53, 4097) + b"\0" * 40000,  # too many
]


@pytest.mark.parametrize("copy", [True, False])
def test_frames_with_inconsistent_part_lengths_come_out_as_bytes(names,
                                                                 copy):
    q = make(names)
    for m in BAD_FRAMES:
        assert q._q.put_bytes(m)
    for m in BAD_FRAMES:
        got = q.get(copy=copy)
        assert type(got) is bytes and got == m
    for m in BAD_FRAMES:
        assert q._q.put_bytes(m)
    assert q.get_many() == BAD_FRAMES
    # A consistent frame a peer wrote by hand decodes, parts and all.
    a = np.arange(8, dtype=np.uint8)
    pick = pickle.dumps(a, protocol=5,
                        buffer_callback=lambda b: False)
    good = frame_msg([len(pick), 8],
                     pick + b"\0" * (-len(pick) % 16) + a.tobytes())
    assert q._q.put_bytes(good)
    assert np.array_equal(q.get(copy=copy), a)
    assert q.stat()["loaned"] == 0 and q.stat()["bytes_used"] == 0
    drop(q)


def test_raw_messages_with_a_magic_decode_and_peek_reads_them_raw(names):
    """What the docs say to C producers: a message starting with b"SKV1" or
    b"SKP5" that decodes is a value to get, any other is bytes; peek always
    gives the raw bytes."""
    q = make(names)
    plain = plain_msg(b"i" + struct.pack("<q", 7))
    frame = frame_msg([len(pickle.dumps("x"))], pickle.dumps("x"))
    for m in (plain, frame, b"SKV2" + plain[4:], b"SKV1", b"raw"):
        assert q._q.put_bytes(m)
    assert q.get() == 7
    assert q.get() == "x"
    assert q.get() == b"SKV2" + plain[4:]
    assert q.get() == b"SKV1"
    assert q.get() == b"raw"
    q._q.put_bytes(plain)
    with q.peek() as m:
        assert bytes(m) == plain
    drop(q)
