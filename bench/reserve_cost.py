"""What reserving a block's memory costs (shmkit.SharedMemory(reserve=...)).

    scripts/private-shm.sh env PYTHONPATH=build/python python3 bench/reserve_cost.py

For each size, the best of 7 runs of: create alone, and create followed by
writing every byte, with the memory reserved (posix_fallocate) or only
sized (ftruncate). Reserving moves the page allocation from the first
touch to the create; a block used in full costs about the same either way.
"""
import os
import time

from shmkit import _shmkit


def best(size, flags, fill, reps=7):
    data = b"\1" * size if fill else None
    bc = bt = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        m = _shmkit.Mapping.create(None, size, flags)
        t1 = time.perf_counter()
        if fill:
            memoryview(m)[:] = data
        t2 = time.perf_counter()
        bc, bt = min(bc, t1 - t0), min(bt, t2 - t1)
        os.unlink("/dev/shm/" + m.name)
        m.close()
    return bc, bt


def main():
    print(f"{'size':>10} {'mode':10} {'create':>12} {'create+fill':>14}")
    for size in (4096, 1 << 20, 64 << 20):
        for name, fl in (("ftruncate", 0), ("reserve", _shmkit.RESERVE)):
            c0, _ = best(size, fl, False)
            c, t = best(size, fl, True)
            print(f"{size:>10} {name:10} {c0 * 1e6:9.1f} us {(c + t) * 1e6:11.1f} us")


if __name__ == "__main__":
    main()
