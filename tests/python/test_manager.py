"""shmkit.managers.SharedMemoryManager over the shmkit manager daemon."""
import os
import signal

import pytest
from multiprocessing import AuthenticationError

import shmkit
from shmkit import shared_memory
from shmkit.managers import SharedMemoryManager

from conftest import join_ok, shm_exists, start, wait_pid_gone


def _do_work(sl, start_, stop):
    for i in range(start_, stop):
        sl[i] = i


def test_seed_basic(names):
    smm = SharedMemoryManager()
    smm.start()
    try:
        sl = smm.ShareableList(range(4))
        assert list(sl) == [0, 1, 2, 3]
        raw = smm.SharedMemory(size=128)
        assert raw.size == 128
        another = smm.ShareableList('alpha')
        assert list(another) == ['a', 'l', 'p', 'h', 'a']
        made = [sl.shm.name, raw.name, another.shm.name]
        for n in made:
            names.add(n)
        assert sorted(smm.names()) == sorted(made)
    finally:
        smm.shutdown()
    for n in made:
        assert not shm_exists(n)


def test_with_statement_and_children(names, ctx):
    with SharedMemoryManager() as smm:
        sl = smm.ShareableList(range(2000))
        names.add(sl.shm.name)
        p1 = ctx.Process(target=_do_work, args=(sl, 0, 1000))
        p2 = ctx.Process(target=_do_work, args=(sl, 1000, 2000))
        p1.start(), p2.start()
        join_ok(p1), join_ok(p2)
        assert sum(sl) == sum(range(2000))
        name = sl.shm.name
    assert not shm_exists(name)


def test_list_is_byte_identical_to_a_plain_one(names):
    items = [1, 2.5, "abc", b"x", None, True]
    plain = shared_memory.ShareableList(items, name=names.new(), track=False)
    with SharedMemoryManager() as smm:
        sl = smm.ShareableList(items)
        names.add(sl.shm.name)
        assert bytes(sl.shm.buf) == bytes(plain.shm.buf)
        sl.shm.close()
    plain.shm.unlink()


def test_release_and_errors(names):
    with SharedMemoryManager(authkey=b"secret") as smm:
        shm = smm.SharedMemory(64)
        names.add(shm.name)
        smm.release(shm.name)
        assert not shm_exists(shm.name)
        with pytest.raises(FileNotFoundError):
            smm.release(shm.name)
        with pytest.raises(ValueError):
            smm.SharedMemory(0)
        other = SharedMemoryManager(smm.address, authkey=b"wrong")
        with pytest.raises(AuthenticationError):
            other.connect()                 # CPython's BaseManager says so
        # The daemon behind it refuses a wrong key by itself too.
        with pytest.raises(shmkit.Error) as e:
            shmkit._shmkit.ManagerClient.connect(smm.daemon_address, b"wrong")
        assert shmkit.errname(e.value.errno) == "SHMKIT_EAUTH", e.value
        same = SharedMemoryManager(smm.address, authkey=b"secret")
        same.connect()
        s2 = same.SharedMemory(8)
        names.add(s2.name)
        assert s2.name in smm.names()
        same.shutdown()             # a joined client only disconnects
        assert s2.name in smm.names()
    assert not shm_exists(s2.name)


def _client_crash(address, conn):
    smm = SharedMemoryManager(address)
    smm.connect()
    shm = smm.SharedMemory(32)
    conn.send(shm.name)
    os.kill(os.getpid(), signal.SIGKILL)


def test_client_crash_keeps_blocks_until_shutdown(names, ctx):
    smm = SharedMemoryManager()
    smm.start()
    try:
        r, w = ctx.Pipe(duplex=False)
        p = start(ctx, _client_crash, smm.address, w)
        name = names.add(r.recv())
        join_ok(p, expect=-signal.SIGKILL)
        assert shm_exists(name) and name in smm.names()
    finally:
        smm.shutdown()
    assert not shm_exists(name)


def test_state_errors():
    from multiprocessing import ProcessError
    smm = SharedMemoryManager()
    with pytest.raises(ValueError):          # CPython's, before start()
        smm.SharedMemory(8)
    smm.start()
    with pytest.raises(ProcessError):
        smm.start()
    smm.shutdown()
    with pytest.raises(ProcessError):
        smm.start()


def test_big_list_beyond_one_request(names):
    big = ["x" * 1000] * 200 + list(range(100))      # > 64 KiB of items
    with SharedMemoryManager() as smm:
        sl = smm.ShareableList(big)
        names.add(sl.shm.name)
        assert list(sl) == big and sl.shm.name in smm.names()
        sl.shm.close()
    assert not shm_exists(sl.shm.name)


# ---- queues the manager owns ------------------------------------------------

def _queue_producer(q, n):
    for i in range(n):
        q.put((i, "x" * 40))
    q.close()


def _queue_worker(jq):
    while True:
        item = jq.get()
        jq.task_done()
        if item is None:
            return


def test_queue_owned_used_by_children_gone_at_shutdown(names, ctx):
    with SharedMemoryManager() as smm:
        q = smm.Queue(maxsize=8, capacity=1 << 16)
        names.add(q.name)
        assert isinstance(q, shmkit.Queue)
        assert q.name in smm.names()
        st = q.stat()
        assert (st["capacity"], st["max_messages"]) == (1 << 16, 8)
        p = start(ctx, _queue_producer, q, 500)   # pickled by name
        assert [q.get(timeout=60) for _ in range(500)] == \
            [(i, "x" * 40) for i in range(500)]
        join_ok(p)
        jq = smm.JoinableQueue()
        names.add(jq.name)
        assert isinstance(jq, shmkit.JoinableQueue)
        w = start(ctx, _queue_worker, jq)
        for i in range(100):
            jq.put(i)
        jq.put(None)
        jq.join()
        join_ok(w)
        smm.release(jq.name)
        assert not shm_exists(jq.name)
        q.close()
        name = q.name
    assert not shm_exists(name)


def test_queue_bad_input(names):
    with SharedMemoryManager() as smm:
        with pytest.raises(ValueError):
            smm.Queue(capacity=0)
        with pytest.raises(ValueError):            # below the smallest ring
            smm.Queue(capacity=16)
        q = smm.Queue(capacity=4096)
        names.add(q.name)
        with pytest.raises(ValueError, match="4080"):  # names the largest
            q.put(b"x" * 5000)
        with pytest.raises(FileExistsError):
            smm._live().create_queue(4096, 0, q.name)
        q.close()


def test_queue_of_killed_server_and_daemon_swept(names):
    import multiprocessing
    # The BaseManager server killed: its daemon sees it go and unlinks.
    smm = SharedMemoryManager()
    smm.start()
    q = smm.Queue(capacity=4096)
    name = names.add(q.name)
    daemon = smm._live().pid
    q.close()
    smm._process.kill()
    smm._process.join(60)
    assert wait_pid_gone(daemon)
    assert not shm_exists(name)
    smm._disconnect()
    # The daemon itself SIGKILLed: the queue stays until gc.
    client = shmkit._shmkit.ManagerClient.start(None, None)
    try:
        name = names.add(client.create_queue(4096))
        os.kill(client.pid, signal.SIGKILL)
        assert wait_pid_gone(client.pid)
        assert shm_exists(name)
        assert shmkit.gc() >= 1
        assert not shm_exists(name)
    finally:
        client.close()
    assert multiprocessing.active_children() == []


def test_queue_from_older_manager_is_a_clear_error(tmp_path):
    """A manager of an older shmkit (protocol revision 0 in its greeting)
    is not asked for a queue: OSError(EOPNOTSUPP) naming both revisions;
    its blocks still work."""
    import errno
    import socket
    import struct
    import threading

    def frame(type_, status=0, payload=b""):
        return struct.pack("<IHHIi", 0x474d4b53, 1, type_, len(payload),
                           status) + payload

    def recv_frame(c):
        hdr = c.recv(16, socket.MSG_WAITALL)
        if len(hdr) < 16:
            return None
        n = struct.unpack("<I", hdr[8:12])[0]
        body = c.recv(n, socket.MSG_WAITALL) if n else b""
        return struct.unpack("<H", hdr[6:8])[0], body

    seen = []
    path = str(tmp_path / "old.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def old_server():
        c, _ = srv.accept()
        with c:
            c.sendall(frame(1, 0, struct.pack("<I", os.getpid()) + bytes(36)))
            while (f := recv_frame(c)) is not None:
                seen.append(f[0])
                reply = b"old" if f[0] == 3 else b""
                if f[0] not in (2, 3):
                    return
                c.sendall(frame(0x8000 | f[0], 0, reply))

    t = threading.Thread(target=old_server)
    t.start()
    client = shmkit._shmkit.ManagerClient.connect(path, None)
    try:
        with pytest.raises(OSError) as e:
            client.create_queue(4096)
        assert e.value.errno == errno.EOPNOTSUPP
        assert "revision 0" in str(e.value) and "needs revision 1" in str(e.value)
        assert client.create_block(8) == "old"
    finally:
        client.close()
        t.join(60)
        srv.close()
    assert seen == [2, 3]          # AUTH, CREATE: no queue request was sent
