# Seed 001: the NumPy example; the "second shell" is a second process.
import multiprocessing
import numpy as np
from shmkit import shared_memory


def second_shell(name):
    import numpy as np
    from shmkit import shared_memory
    # Attach to the existing shared memory block
    existing_shm = shared_memory.SharedMemory(name=name)
    # Note that a.shape is (6,) and a.dtype is np.int64 in this example
    c = np.ndarray((6,), dtype=np.int64, buffer=existing_shm.buf)
    print(c)
    c[-1] = 888
    print(c)
    del c  # Unnecessary; merely emphasizing the array is no longer used
    existing_shm.close()


if __name__ == '__main__':
    # In the first Python interactive shell
    a = np.array([1, 1, 2, 3, 5, 8])  # Start with an existing NumPy array
    shm = shared_memory.SharedMemory(create=True, size=a.nbytes)
    # Now create a NumPy array backed by shared memory
    b = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
    b[:] = a[:]  # Copy the original data into shared memory
    print(b)
    print(type(b))
    print(type(a))
    p = multiprocessing.Process(target=second_shell, args=(shm.name,))
    p.start()
    p.join()
    assert p.exitcode == 0
    # Back in the first Python interactive shell, b reflects this change
    print(b)
    del b  # Unnecessary; merely emphasizing the array is no longer used
    shm.close()
    shm.unlink()  # Free and release the shared memory block at the very end
