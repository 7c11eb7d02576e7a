# Seed 002 (what shared memory changes): its three code samples as one
# program; only the imports changed.
import multiprocessing
import numpy as np
from shmkit import shared_memory
from shmkit import Lock


def safe_increment(shm, lock):
    with lock:                      # the whole read-modify-write
        v = int.from_bytes(shm.buf[0:4], "little")
        shm.buf[0:4] = (v + 1).to_bytes(4, "little")


def attach_and_check(name, shape, dtype):
    attached = shared_memory.SharedMemory(name=name)
    view = np.ndarray(shape, dtype=dtype, buffer=attached.buf)  # zero-copy
    assert view[2, 3] == 11.0
    del view
    attached.close()


def worker(name, lock, n):
    shm = shared_memory.SharedMemory(name=name)
    for _ in range(n):
        safe_increment(shm, lock)
    shm.close()


if __name__ == '__main__':
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    shm = shared_memory.SharedMemory(create=True, size=arr.nbytes)
    shared = np.ndarray(arr.shape, dtype=arr.dtype, buffer=shm.buf)
    shared[:] = arr  # write once
    p = multiprocessing.Process(target=attach_and_check, args=(shm.name, arr.shape, arr.dtype))
    p.start()
    p.join()
    assert p.exitcode == 0
    del shared
    shm.close()
    shm.unlink()

    lock = Lock()
    counter = shared_memory.SharedMemory(create=True, size=4)
    ps = [multiprocessing.Process(target=worker, args=(counter.name, lock, 200)) for _ in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    print(int.from_bytes(counter.buf[0:4], "little"))
    counter.close()
    counter.unlink()

    from shmkit.managers import SharedMemoryManager
    with SharedMemoryManager() as smm:
        shm = smm.SharedMemory(size=1024)  # the manager unlinks on context exit
        print(shm.size)
