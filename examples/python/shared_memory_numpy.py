"""A NumPy array in a named block, filled by worker processes that attach
by name: shmkit's SharedMemory is a drop-in for multiprocessing's (CPython's
SharedMemory(name=...) attaches to the same block)."""
import multiprocessing as mp

import numpy as np

from shmkit import shared_memory

ROWS, COLS = 4, 1000


def fill_row(name, row):
    shm = shared_memory.SharedMemory(name=name)      # attach: never unlinks
    a = np.ndarray((ROWS, COLS), dtype=np.float64, buffer=shm.buf)
    a[row] = np.arange(COLS) * row
    del a
    shm.close()


def main():
    # No name: a generated one. Tracked: removed when this process family
    # exits, even if it is killed.
    with shared_memory.SharedMemory(create=True, size=ROWS * COLS * 8) as shm:
        procs = [mp.Process(target=fill_row, args=(shm.name, r)) for r in range(ROWS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0, p.exitcode
        a = np.ndarray((ROWS, COLS), dtype=np.float64, buffer=shm.buf)
        print(f"{shm.name}: {shm.size} bytes, row sums {a.sum(axis=1).tolist()}")
        assert a.sum() == sum(r * COLS * (COLS - 1) / 2 for r in range(ROWS))
        del a
        shm.unlink()


if __name__ == "__main__":
    main()
