"""A program using shmkit's API, checked by mypy against the stubs
(tests/python/test_install.py). Never run."""
import ctypes

import numpy as np

import shmkit
from shmkit import shared_memory
from shmkit.managers import SharedMemoryManager


def main() -> None:
    shm = shared_memory.SharedMemory(create=True, size=64)
    a: np.ndarray = np.ndarray((8,), dtype=np.float64, buffer=shm.buf)
    a[:] = 1.0
    name: str = shm.name
    size: int = shm.size
    sl: shared_memory.ShareableList[int] = shared_memory.ShareableList([1, 2, 3])
    first: int = sl[0]
    n: int = len(sl) + sl.count(2) + sl.index(3)
    with sl.locked() as lk:
        if lk.owner_died:
            lk.consistent()
    v = shmkit.Value('q', 0, name=None)
    v.add(1)
    lock = shmkit.Lock()
    ok: bool = lock.acquire(timeout=1.0)
    lock.release()
    cond = shmkit.Condition(lock)
    with cond:
        cond.notify_all()
    with SharedMemoryManager() as smm:
        blk = smm.SharedMemory(1024)
        blk.close()
    shmkit.untrack(shm.name)
    raw = shmkit.RawValue(ctypes.c_double, 1.5)
    print(name, size, first, n, ok, raw, shmkit.errname(-1))
    shm.close()
    shm.unlink()


def wrong() -> None:
    # Errors the stubs must catch (the test checks mypy reports exactly these).
    shm = shared_memory.SharedMemory(create=True, size="64")  # E: size is int
    x: int = shm.name                                         # E: name is str
    shmkit.Lock().acquire(timeout="soon")                     # E: timeout is float


if __name__ == '__main__':
    main()
