"""SharedMemoryManager: CPython's, a BaseManager, whose blocks shmkit's
manager daemon owns.

A drop-in for :class:`multiprocessing.managers.SharedMemoryManager` and a
subclass of :class:`multiprocessing.managers.BaseManager`: ``start()``/
``shutdown()``, ``connect()``, the context manager, ``register()``,
``get_server()``, ``address`` as a Unix socket path or a ``(host, port)``
tuple with ``authkey``, ``SharedMemory(size)`` and
``ShareableList(sequence)``; and, as SyncManager's (but no proxies: the
queue itself, in shared memory), ``Queue(maxsize)`` and
``JoinableQueue(maxsize)``.

The BaseManager server process runs shmkit's manager daemon (``shmkit
manager``, shared with C clients; its socket is ``daemon_address``). The
daemon owns the blocks: it unlinks them all when the manager shuts down,
also when the server process is killed, ignores SIGINT, and journals what
it owns so that nothing leaks if it is killed itself. Clients, the starter
and any process that ``connect()``s, ask the daemon for blocks directly.
"""

import errno
import os
from multiprocessing import managers as _mpm
from multiprocessing import util as _util

from . import _shmkit
from .shared_memory import SharedMemory, ShareableList as _ShareableList
from . import queues as _queues

__all__ = ['SharedMemoryManager']


class _Server(_mpm.Server):
    """The BaseManager server, with shmkit's manager daemon beside it (started
    by and tied to the server process)."""

    public = _mpm.Server.public + ['shmkit_daemon']

    def __init__(self, registry, address, authkey, serializer):
        super().__init__(registry, address, authkey, serializer)
        self._daemon = _shmkit.ManagerClient.start(None, bytes(self.authkey))

    def shmkit_daemon(self, c):
        "The daemon's socket path, for clients."
        return self._daemon.socket

    def shutdown(self, c):
        "Unlinks every block the daemon owns and stops it, then the server."
        daemon, self._daemon = self._daemon, None
        if daemon is not None and not daemon.closed:
            try:
                daemon.shutdown()
            except _shmkit.Error as e:
                _util.debug('shmkit manager daemon shutdown: %r', e)
            finally:
                daemon.close()
        return super().shutdown(c)


class SharedMemoryManager(_mpm.BaseManager):
    """SharedMemoryManager(address=None, authkey=None, serializer='pickle',
    ctx=None): a BaseManager whose SharedMemory, ShareableList and Queue
    blocks shmkit's manager daemon owns (unlinked at shutdown, also after a
    crash)."""

    _Server = _Server

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._client = None
        _util.debug(f"{self.__class__.__name__} created by pid {os.getpid()}")

    def _join_daemon(self):
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            path = _mpm.dispatch(conn, None, 'shmkit_daemon')
        finally:
            conn.close()
        self._client = _shmkit.ManagerClient.connect(path, bytes(self._authkey))

    def start(self, initializer=None, initargs=()):
        "Start the server process and its shmkit manager daemon."
        super().start(initializer, initargs)
        try:
            self._join_daemon()
        except BaseException:
            self.shutdown()
            raise
        # BaseManager.start() made shutdown an instance attribute (a
        # Finalize); disconnect from the daemon first.
        base_shutdown = self.shutdown

        def shutdown():
            self._disconnect()
            base_shutdown()
        self.shutdown = shutdown

    def connect(self):
        "Connect to a manager already running at address."
        super().connect()
        self._join_daemon()

    def _disconnect(self):
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def shutdown(self):
        """On a manager joined with connect(), disconnects only (as CPython,
        where only the starter shuts the server down); start() replaces it
        with the full shutdown."""
        self._disconnect()

    def __del__(self):
        client = self.__dict__.get('_client')
        if client is not None:
            client.close()

    @property
    def daemon_address(self):
        "The socket path of shmkit's manager daemon (C clients connect there)."
        return self._live().socket

    def _live(self):
        if self._client is None or self._client.closed:
            raise ValueError("SharedMemoryManager is not started (or was shut down)")
        return self._client

    def get_server(self):
        "A server object to run in this process (serve_forever())."
        if self._state.value != _mpm.State.INITIAL:
            from multiprocessing import ProcessError
            if self._state.value == _mpm.State.STARTED:
                raise ProcessError("Already started server")
            raise ProcessError("Manager has shut down")
        return self._Server(self._registry, self._address, self._authkey,
                            self._serializer)

    # -- blocks -----------------------------------------------------------
    def SharedMemory(self, size):
        """Returns a new SharedMemory instance with the specified size in
        bytes, owned by the manager."""
        client = self._live()
        name = client.create_block(size)
        try:
            return SharedMemory(name, track=False)
        except BaseException:
            client.release(name)
            raise

    def ShareableList(self, sequence):
        """Returns a new ShareableList instance populated with the values
        from the input sequence, owned by the manager."""
        client = self._live()
        try:
            return _ShareableList(name=client.create_list(sequence))
        except OSError as e:
            if e.errno != errno.EMSGSIZE:
                raise
        # Too big for one request: the list library lays the list out in a
        # private block, and a manager-owned block takes a byte-for-byte
        # copy of it.
        tmp = _ShareableList(sequence, track=False)
        try:
            raw = tmp.shm.buf
            name = client.create_block(len(raw))
            try:
                with SharedMemory(name, track=False) as dst:
                    dst.buf[:] = raw
                del raw
                return _ShareableList(name=name)
            except BaseException:
                client.release(name)
                raise
        finally:
            tmp.shm.unlink()
            tmp.shm.close()

    # -- queues -----------------------------------------------------------
    def _queue(self, cls, maxsize, capacity):
        client = self._live()
        cap = _queues.DEFAULT_CAPACITY if capacity is None else int(capacity)
        name = client.create_queue(cap, max(int(maxsize), 0))
        try:
            return cls(name=name)
        except BaseException:
            client.release(name)
            raise

    def Queue(self, maxsize=0, *, capacity=None):
        """Returns a new shmkit.Queue owned by the manager: the queue itself
        (it lives in shared memory and pickles by name), not a proxy, so
        put and get never go through the manager. maxsize > 0 bounds the
        messages, capacity the ring bytes (default
        shmkit.queues.DEFAULT_CAPACITY). The manager unlinks it at
        shutdown; release(q.name) does so earlier."""
        return self._queue(_queues.Queue, maxsize, capacity)

    def JoinableQueue(self, maxsize=0, *, capacity=None):
        "Returns a new shmkit.JoinableQueue owned by the manager (see Queue)."
        return self._queue(_queues.JoinableQueue, maxsize, capacity)

    def release(self, name):
        "Have the manager unlink one of its blocks (or lists, or queues) now."
        self._live().release(name)

    def names(self):
        "Names of the blocks the manager owns."
        return self._live().list()

