"""A ShareableList made by shmkit, read and changed by CPython's own
multiprocessing.shared_memory.ShareableList: the layout is the same, byte
for byte, both ways."""
from multiprocessing import resource_tracker
from multiprocessing import shared_memory as cpython

from shmkit import shared_memory


def main():
    sl = shared_memory.ShareableList([42, 2.5, "héllo", b"\x00raw\x00", None, True])
    try:
        theirs = cpython.ShareableList(name=sl.shm.name)
        # CPython's attach registers the block with its resource tracker,
        # which would unlink it at exit (gh-82300); shmkit's attach never does.
        resource_tracker.unregister(theirs.shm._name, "shared_memory")
        print("CPython reads:", list(theirs))   # CPython strips b'\x00raw\x00' (gh-106939)
        theirs[0] = 43
        theirs.shm.close()
        print("shmkit reads: ", list(sl))
        assert sl[0] == 43 and sl[2] == "héllo" and sl[3] == b"\x00raw\x00"
        with sl.locked():                 # a robust, process-shared lock
            sl[1] += 1
        assert sl[1] == 3.5
    finally:
        sl.shm.close()
        sl.shm.unlink()                   # the list's lock goes with it


if __name__ == "__main__":
    main()
