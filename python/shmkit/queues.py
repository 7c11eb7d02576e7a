"""shmkit.Queue, SimpleQueue and JoinableQueue: drop-ins for
multiprocessing's queues over one shmkit queue block (C: shmkit/queue.h).

There is no feeder thread and no pipe: ``put`` pickles the object (protocol
5) and copies the pickle, and each large out-of-band buffer such as a NumPy
array's data, straight into the shared ring; ``get`` copies them out. A
queue pickles by name, so it can go to Pool workers and spawn or forkserver
children, and any process (Python or C) can attach it by name::

    q = shmkit.Queue()                    # creates a queue (tracked)
    q2 = shmkit.Queue(name=q.name)        # attaches it, e.g. elsewhere

``get`` tells messages apart by their first 4 bytes: ``b"SKV1"`` is a
plain value (None, bool, int, float, str, bytes, tuples of them, a list or
dict of them: a codec cheaper than pickle) and ``b"SKP5"`` a pickle frame;
``put`` writes only these two. A message with either magic that decodes
becomes the value, whoever put it (a C producer, the CLI, ``loan``); every
other message comes out of ``get`` as bytes. So a C producer whose
messages must arrive as bytes must not start one with ``b"SKV1"`` or
``b"SKP5"``; ``peek()`` always gives a message's raw bytes. A consumer
running a shmkit from before the plain codec gets plain values as bytes
(SKV1 messages).
"""

import pickle
import queue as _queue
import types
from pickle import dumps as _pickle_dumps, loads as _pickle_loads

from . import _shmkit

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue', 'DEFAULT_CAPACITY']

# Ring bytes of a new queue unless capacity= says otherwise. The memory is
# reserved and prefaulted at create, so no message pays a page fault.
DEFAULT_CAPACITY = 16 << 20

# Buffers at least this big travel out of band (straight into the ring);
# smaller ones stay inside the pickle, which is cheaper for them.
OUT_OF_BAND_MIN = 4096


def _dumps(obj):
    """The frame parts of an object that is not a plain value (those the C
    side encodes itself, far cheaper than pickle: None, bool, int, float,
    str, bytes, tuples of them, and a top-level list or dict of them)."""
    bufs = []

    def oob(pb):
        try:
            m = pb.raw()
        except BufferError:          # not contiguous: in band
            return True
        if m.nbytes < OUT_OF_BAND_MIN:
            return True
        bufs.append(m)
        return False

    data = _pickle_dumps(obj, protocol=5, buffer_callback=oob)
    return [data] + bufs


def _loads(parts):
    if len(parts) == 1:
        return _pickle_loads(parts[0])
    return _pickle_loads(parts[0], buffers=parts[1:])


def _rebuild(cls, name):
    return cls(name=name)


class _Slot:
    """A message lent without a copy, as a context manager that gives a
    memoryview into the ring. Release every view of it (NumPy arrays made
    from it too) before the ``with`` block ends: the slot refuses to end
    while one lives (BufferError)."""

    def __init__(self, slot, reservation):
        self._slot = slot
        self._reservation = reservation
        self._view = None
        self.nbytes = len(slot)

    def __enter__(self):
        self._view = memoryview(self._slot)
        return self._view

    def __exit__(self, exc_type, exc, tb):
        if self._view is not None:
            self._view.release()
        if self._slot.done:
            return False
        if not self._reservation:
            self._slot.release()
        elif exc_type is None:
            self._slot.commit(self.nbytes)
        else:
            self._slot.cancel()
        return False

    def __len__(self):
        return len(self._slot)


class Queue:
    """A multiprocessing.Queue over shared memory.

    Queue(maxsize=0, *, name=None, capacity=None, create=None, track=True)

    maxsize > 0 bounds the number of messages; capacity (bytes, default
    DEFAULT_CAPACITY) bounds their size in total, and the largest one is
    ``capacity - 16`` bytes (ValueError beyond). While no message waits
    and none is kept (consumers keep up and copy), puts reuse the start
    of the ring, which stays in the CPU caches; a message kept with
    get(copy=False) or peek() keeps puts going round the whole ring, so
    consumers may keep as many as the ring holds. create defaults to True
    without a name (a generated one) and False with one (attach); pass
    create=True to make a queue of that name. track=True removes a created
    queue once the creating process family has exited.

    A consumer killed inside get or get_many before the message is out of
    the ring gives it back (another get delivers it); once it is copied
    out (get copies one of up to 2 KiB, then decodes it; get_many its
    batch) it is the consumer's, as after the call returned. A producer
    killed inside put leaves nothing half-written. (include/shmkit/queue.h,
    "Killed peers".)

    A process killed while it holds a message in flight (being put, or
    got) wakes the processes it blocks: the first put or get of a process
    on a queue starts one library thread, "shmkit-live" (a C thread that
    runs no Python code, one per process), whose death the kernel
    announces; once the queues it used are closed, the next fork stops it
    first. So on CPython 3.12 and later, ``os.fork()`` (also a "fork"
    multiprocessing context) while such a queue is open warns
    (DeprecationWarning: "This process ... is multi-threaded"), as it
    would with any other thread; after close() it does not. The thread
    itself is fork-safe (the child takes its own). Creating or attaching
    a queue starts nothing.
    """

    def __init__(self, maxsize=0, *, ctx=None, name=None, capacity=None,
                 create=None, track=True):
        if create is None:
            create = name is None
        if create:
            flags = _shmkit.TRACK if track else 0
            cap = DEFAULT_CAPACITY if capacity is None else int(capacity)
            self._q = _shmkit.QueueBase(name, True, cap,
                                        max(int(maxsize), 0), flags)
        else:
            self._q = _shmkit.QueueBase(name, False)
        self._q.set_hooks(_dumps, _loads, _queue.Empty, _queue.Full)
        self._maxsize = self._q.stat()['max_messages']
        # put and get straight to the C methods (same signatures), saving
        # a Python call per message, unless a subclass overrides them.
        cls = type(self)
        if cls.put is Queue.put:
            self.put = self._q.put
        if cls.get is Queue.get:
            self.get = self._q.get

    # ---- identity --------------------------------------------------------
    # Queue[int] in annotations, as CPython's SimpleQueue (3.9+) and Queue
    # (3.13+) allow.
    __class_getitem__ = classmethod(types.GenericAlias)

    @property
    def name(self):
        return self._q.name

    @property
    def max_message(self):
        """Largest message in bytes."""
        return self._q.max_message

    def __reduce__(self):
        return (_rebuild, (type(self), self._q.name))

    def __repr__(self):
        state = 'closed' if self._q.closed else f'maxsize={self._maxsize}'
        return f'<shmkit.{type(self).__name__} {self._q.name!r} {state}>'

    def unlink(self):
        """Removes the queue's name (attached handles keep working)."""
        if self._q.closed:
            _shmkit.unlink(self._q.name)
        else:
            self._q.unlink()

    def stat(self):
        """A dict: depth, reserved, loaned, bytes_used, capacity, waiting
        producers and consumers, version, and the liveness slots (slots:
        the table's size, 0 for a version-1 queue; slots_held; attached:
        the processes holding them, those that have put or got), and
        pending: messages a get_many of this handle took but could not
        deliver because one of its batch raised (they come next)."""
        return self._q.stat()

    # ---- multiprocessing.Queue ---------------------------------------------
    # put and get leave the closed check to the C calls (ValueError).
    def put(self, obj, block=True, timeout=None):
        self._q.put(obj, block, timeout)

    def get(self, block=True, timeout=None, *, copy=True):
        """The next object. copy=False: out-of-band buffers (a NumPy
        array's data) are not copied out of the ring; the object reads them
        in place, read-only, and the message's ring space stays taken until
        every such object (and view of it) is gone. Objects kept fill the
        ring and producers wait for room; consumers that each still hold
        their previous array while they wait for the next can take all of a
        small ring, and then everyone waits for ever (drop it first, or
        give the ring room for more messages than consumers hold). The
        default copies, as multiprocessing does."""
        return self._q.get(block, timeout, copy)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        """Messages waiting (committed, not yet taken), and those this
        handle took in a get_many that raised for one of its messages:
        the next get or get_many delivers them (stat()'s 'pending')."""
        st = self._q.stat()
        return st['depth'] + st['pending']

    def empty(self):
        """Whether no message waits. Once closed, OSError if this object
        has put, as CPython's: its close() takes effect with the feeder
        thread that the first put starts (test_closed_queue_empty_
        exceptions; its docs: "may raise an OSError on closed queues").
        A closed SimpleQueue always raises (CPython's closes its pipe)."""
        if self._q.closed and self._q.put_called:
            raise self._closed_error(OSError)
        return self.qsize() == 0

    def full(self):
        if not self._maxsize:
            return False
        st = self._q.stat()
        return st['depth'] + st['reserved'] + st['loaned'] >= self._maxsize

    def close(self):
        """No more puts or gets from this object: they raise ValueError,
        also those another thread is blocked in (within 50 ms). As with
        CPython's, qsize(), full(), task_done() and join() still work
        (empty() raises OSError). Gives back what the object's puts and
        gets took (so a fork after closing a process's last queue finds
        no "shmkit-live" thread); the mapping goes with the object. Never
        unlinks."""
        self._q.close()

    def join_thread(self):
        # No feeder thread: everything put is already in shared memory.
        if not self._q.closed:
            raise AssertionError(f'Queue {self!r} not closed')

    def cancel_join_thread(self):
        pass

    _closed_exc = ValueError   # what a closed object's calls raise

    def _closed_error(self, exc=None):
        return (exc or self._closed_exc)(f'Queue {self!r} is closed')

    def _check_closed(self):
        if self._q.closed:
            raise self._closed_error()

    # ---- batches ---------------------------------------------------------
    def put_many(self, objs, block=True, timeout=None):
        """Puts every object of objs in order, one synchronisation per
        batch that fits. Returns how many were put; raises queue.Full if
        none could be (block False, or the timeout passed)."""
        self._check_closed()
        # A tuple of our own: pickling can run code that changes a list.
        objs = tuple(objs)
        done = self._q.put_many(objs, block, timeout)
        if objs and done == 0:
            raise _queue.Full
        return done

    def get_many(self, max=64, block=True, timeout=None):
        """Takes up to max objects at once, and never more than 256 in one
        call (waits only for the first); raises queue.Empty if there is
        none. If one object of the batch cannot be rebuilt (its unpickling
        raises), the call raises that error, as get would for it, and the
        others of the batch come first from this handle's next get or
        get_many: only that one is lost."""
        self._check_closed()
        got = self._q.get_many(max, block, timeout)
        if not got:
            raise _queue.Empty
        return got

    # ---- zero copy ---------------------------------------------------------
    def loan(self, nbytes, block=True, timeout=None):
        """Reserves nbytes in the ring: ``with q.loan(n) as buf: buf[:] =
        ...`` writes the message in place and publishes it at the end (or
        drops it if the block raises); set ``.nbytes`` on the loan to
        publish fewer. Consumers get it as bytes (unless it starts with
        b"SKV1" or b"SKP5" and decodes: see the module's doc), or raw
        without a copy through peek()."""
        self._check_closed()
        s = self._q.reserve(nbytes, block, timeout)
        if s is None:
            raise _queue.Full
        return _Slot(s, True)

    def peek(self, block=True, timeout=None):
        """Takes the next message without copying: ``with q.peek() as m:``
        gives a read-only memoryview into the ring, freed at the end."""
        self._check_closed()
        s = self._q.peek(block, timeout)
        if s is None:
            raise _queue.Empty
        return _Slot(s, False)


class SimpleQueue(Queue):
    """multiprocessing.SimpleQueue: get, put, empty, close (and the rest
    of Queue). Once closed, every call raises OSError, as CPython's does
    (its pipe is closed), where a closed Queue raises ValueError."""

    def __init__(self, *, ctx=None, name=None, capacity=None, create=None,
                 track=True):
        super().__init__(0, name=name, capacity=capacity, create=create,
                         track=track)

    def close(self):
        super().close()
        # put and get are the C calls (bound in Queue.__init__), which
        # raise ValueError once closed: from now on they raise OSError.
        self.put = self.get = self._closed_call

    _closed_exc = OSError

    def _closed_call(self, *args, **kwargs):
        raise self._closed_error()

    def empty(self):
        self._check_closed()
        return super().empty()


class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue: each put counts a task, task_done()
    ends one, join() waits for none to be left. The count lives in the
    queue's block, so it is shared by every process that attaches."""

    def put(self, obj, block=True, timeout=None):
        self._check_closed()
        self._q.task_add(1)
        try:
            self._q.put(obj, block, timeout)
        except BaseException:
            self._q.task_done()
            raise

    def put_many(self, objs, block=True, timeout=None):
        self._check_closed()
        # A tuple of our own: pickling can run code that changes a list,
        # and the task count must be that of the objects put.
        objs = tuple(objs)
        self._q.task_add(len(objs))
        done = 0
        try:
            done = self._q.put_many(objs, block, timeout)
        finally:
            for _ in range(len(objs) - done):
                self._q.task_done()
        if objs and done == 0:
            raise _queue.Full
        return done

    def task_done(self):
        # Also once closed, as CPython's.
        self._q.task_done()

    def join(self, timeout=None):
        """Waits until every task put is done (True), or the timeout
        passes (False; multiprocessing's join has no timeout). Also once
        closed, as CPython's."""
        return self._q.join(timeout)
