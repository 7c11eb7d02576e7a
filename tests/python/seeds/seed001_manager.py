# Seed 001: SharedMemoryManager examples; only the import changed.
from multiprocessing import Process
from shmkit.managers import SharedMemoryManager


def do_work(sl, start, stop):
    for i in range(start, stop):
        sl[i] = i


if __name__ == '__main__':
    smm = SharedMemoryManager()
    smm.start()  # Start the process that manages the shared memory blocks
    sl = smm.ShareableList(range(4))
    print(sl)
    raw_shm = smm.SharedMemory(size=128)
    another_sl = smm.ShareableList('alpha')
    print(another_sl)
    smm.shutdown()  # Calls unlink() on sl, raw_shm, and another_sl

    with SharedMemoryManager() as smm:
        sl = smm.ShareableList(range(2000))
        # Divide the work among two processes, storing partial results in sl
        p1 = Process(target=do_work, args=(sl, 0, 1000))
        p2 = Process(target=do_work, args=(sl, 1000, 2000))
        p1.start()
        p2.start()  # A multiprocessing.Pool might be more efficient
        p1.join()
        p2.join()   # Wait for all work to complete in both processes
        total_result = sum(sl)  # Consolidate the partial results now in sl
    print(total_result)
