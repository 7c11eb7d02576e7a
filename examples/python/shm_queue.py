# Named shm_queue.py, not queue.py: a script named queue.py shadows the
# stdlib queue module for everything it imports (multiprocessing.managers).
"""A drop-in for multiprocessing.Queue over shared memory: workers (any
start method) get NumPy frames whose data goes straight into the shared
ring, no pipe, no feeder thread; results come back in batches; a loan
writes a message in place without any copy."""
import multiprocessing as mp

import numpy as np

import shmkit

WORKERS, FRAMES = 2, 20


def work(jobs, results):
    # jobs and results arrived pickled by name: they attach.
    while True:
        frame = jobs.get()
        if frame is None:
            break
        results.put((int(frame[0, 0]), float(frame.mean())))
    jobs.close()


def main():
    jobs = shmkit.Queue(capacity=32 << 20)       # generated name, tracked
    results = shmkit.Queue()
    try:
        procs = [mp.get_context("spawn").Process(target=work,
                                                 args=(jobs, results))
                 for _ in range(WORKERS)]
        for p in procs:
            p.start()
        for i in range(FRAMES):                  # 1 MiB frames
            jobs.put(np.full((512, 256), i, dtype=np.float64))
        jobs.put_many([None] * WORKERS)          # one sync for the batch
        got = []
        while len(got) < FRAMES:
            got += results.get_many(timeout=60)
        for p in procs:
            p.join()
            assert p.exitcode == 0, p.exitcode
        assert sorted(got) == [(i, float(i)) for i in range(FRAMES)]
        print(f"{FRAMES} frames through {jobs.name} to {WORKERS} workers")

        with results.loan(8 * 4) as buf:         # write in place
            np.frombuffer(buf, dtype=np.float64)[:] = [1, 2, 3, 4]
        with results.peek() as view:             # read in place
            print("loaned:", np.frombuffer(view, dtype=np.float64).tolist())
    finally:
        jobs.unlink()
        results.unlink()


if __name__ == "__main__":
    main()
