"""SharedMemoryManager over the shmkit manager daemon.

A drop-in for :class:`multiprocessing.managers.SharedMemoryManager`:
``start()``/``shutdown()``, the context manager, ``SharedMemory(size)`` and
``ShareableList(sequence)``. The daemon is shmkit's own (``shmkit
manager``), shared with C clients: it owns the blocks it creates, unlinks
them all at shutdown (also when the starting process dies), ignores SIGINT,
and journals what it owns so that nothing leaks if it is killed.

``address`` is the daemon's Unix socket path (None: a private one);
``authkey`` (bytes) is the key clients must know. ``connect()`` joins a
manager started elsewhere.
"""

import errno

from . import _shmkit
from .shared_memory import SharedMemory, ShareableList as _ShareableList

__all__ = ['SharedMemoryManager']


class SharedMemoryManager:
    """SharedMemoryManager(address=None, authkey=None)"""

    def __init__(self, address=None, authkey=None, *, ctx=None):
        if authkey is not None and not isinstance(authkey, (bytes, bytearray)):
            raise TypeError("authkey should be a byte string")
        self._address = address
        self._authkey = bytes(authkey) if authkey is not None else None
        self._client = None
        self._state = 'initial'

    # -- life -------------------------------------------------------------
    def start(self, initializer=None, initargs=()):
        "Start the manager daemon (initializer is accepted and ignored)."
        if self._state != 'initial':
            from multiprocessing import ProcessError
            if self._state == 'started':
                raise ProcessError("Already started server")
            raise ProcessError("Manager has shut down")
        self._client = _shmkit.ManagerClient.start(self._address, self._authkey)
        self._address = self._client.socket
        self._state = 'started'

    def connect(self):
        "Connect to a manager already running at address."
        self._client = _shmkit.ManagerClient.connect(self._address, self._authkey)
        self._state = 'connected'

    def shutdown(self):
        """Unlink every block the manager owns and stop it. On a manager
        joined with connect(), only disconnects (as CPython, where only the
        starter can shut the server down)."""
        client = self._client
        if client is None:
            return
        started = self._state == 'started'
        self._client = None
        self._state = 'shutdown'
        try:
            if started and not client.closed:
                try:
                    client.shutdown()
                except _shmkit.Error as e:
                    if _shmkit.errname(e.errno) != 'SHMKIT_ECLOSED':
                        raise       # else the daemon is already gone
        finally:
            client.close()

    def __enter__(self):
        if self._state == 'initial':
            self.start()
        elif self._state not in ('started', 'connected'):
            from multiprocessing import ProcessError
            raise ProcessError("Unable to start server")
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def __del__(self):
        client = self._client
        if client is not None:
            client.close()

    @property
    def address(self):
        return self._address

    def _live(self):
        if self._client is None:
            from multiprocessing import ProcessError
            raise ProcessError("SharedMemoryManager is not started")
        return self._client

    # -- blocks -----------------------------------------------------------
    def SharedMemory(self, size):
        """Returns a new SharedMemory instance with the specified size in
        bytes, owned by the manager."""
        name = self._live().create_block(size)
        try:
            return SharedMemory(name, track=False)
        except BaseException:
            self._client.release(name)
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

    def release(self, name):
        "Have the manager unlink one of its blocks now."
        self._live().release(name)

    def names(self):
        "Names of the blocks the manager owns."
        return self._live().list()
