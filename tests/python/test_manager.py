"""shmkit.managers.SharedMemoryManager over the shmkit manager daemon."""
import os
import signal

import pytest
from multiprocessing import AuthenticationError

import shmkit
from shmkit import shared_memory
from shmkit.managers import SharedMemoryManager

from conftest import join_ok, shm_exists, start


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
