"""Typed Value and Array that any process attaches to by name (multiprocessing's
only pass to children at start): a counter added to atomically without a
lock, and a 2-D array seen by NumPy with its dtype and shape, zero copy."""
import multiprocessing as mp

import numpy as np

import shmkit

WORKERS, ADDS = 4, 1000


def work(counter_name, array_name, row):
    counter = shmkit.Value(name=counter_name)            # attach by name
    grid = np.asarray(shmkit.Array(name=array_name))
    for _ in range(ADDS):
        counter.add(1)                                    # atomic, no lock
    grid[row, :] = row
    del grid


def main():
    counter = shmkit.Value("q", 0)                         # generated name
    arr = shmkit.Array("d", WORKERS * 3, shape=(WORKERS, 3))
    try:
        procs = [mp.Process(target=work, args=(counter.name, arr.name, r))
                 for r in range(WORKERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0, p.exitcode
        grid = np.asarray(arr)
        print(f"counter {counter.name} = {counter.value}")
        print(f"array {arr.name}, {grid.dtype} {grid.shape}:\n{grid}")
        assert counter.value == WORKERS * ADDS
        assert (grid == np.arange(WORKERS)[:, None]).all()
        del grid
    finally:
        counter.unlink()
        arr.unlink()


if __name__ == "__main__":
    main()
