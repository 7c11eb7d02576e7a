"""Blocks owned by a manager: removed when the manager shuts down, even if
the clients that asked for them crashed (the manager is the same daemon
that `shmkit manager` runs, and C clients can use it too)."""
import os

import shmkit
from shmkit.managers import SharedMemoryManager


def main():
    with SharedMemoryManager() as smm:
        blk = smm.SharedMemory(size=1024)
        sl = smm.ShareableList(["job", 1])
        names = [blk.name, sl.shm.name]
        print("manager at", smm.address, "owns", names)
        blk.buf[:2] = b"ok"
        blk.close()
        sl.shm.close()
        assert all(os.path.exists("/dev/shm/" + n) for n in names)
    # shutdown removed them
    assert not any(os.path.exists("/dev/shm/" + n) for n in names)
    print("after shutdown: gone")


if __name__ == "__main__":
    main()
