"""Python parts of the torture program (tests/torture/torture.c runs them).

    torture_py.py full CASE
        In a 1 MiB /dev/shm: create one kind of object that does not fit.
        Exit 0 if it raised OSError(ENOSPC) and left nothing; 1 if it
        succeeded or raised something else. A SIGBUS kills the interpreter,
        which the caller sees.

    torture_py.py mutate KIND NAME PROGRESS N SEED
        Puts the pristine image ("NAME_p") back into NAME, mutates it (the
        mutation is a function of SEED and the image number), and runs every
        Python operation of KIND on it; the image number lives at offset 0
        of the block PROGRESS, so a restarted driver goes on after the image
        that killed its predecessor. Exceptions are the right answer; only
        the death of the process counts against shmkit.
"""
import errno
import os
import random
import struct
import sys

import shmkit
from shmkit import shared_memory, sharedctypes, synchronize

BIG = 4 << 20


def full(case):
    made = []
    try:
        if case == "SharedMemory-reserve":
            try:
                shm = shared_memory.SharedMemory("tf_py", create=True, size=BIG,
                                                 track=False, reserve=True)
            except TypeError:
                # No reserve= yet: create, then write, as the issue shows.
                shm = shared_memory.SharedMemory("tf_py", create=True, size=BIG,
                                                 track=False)
            made.append(shm)
            shm.buf[:] = b"x" * BIG
        elif case == "ShareableList":
            made.append(shmkit.ShareableList(["x" * (2 << 20), 1], name="tf_py"))
        elif case == "Array":
            made.append(sharedctypes.Array("q", 500000, name="tf_py"))
        elif case == "Queue":
            made.append(shmkit.Queue(name="tf_py", capacity=BIG, create=True,
                                     track=False))
        elif case in ("Value", "Lock", "RLock", "small-Queue"):
            filler = fill_up()
            try:
                if case == "Value":
                    made.append(sharedctypes.Value("q", 1, name="tf_py"))
                elif case == "small-Queue":
                    made.append(shmkit.Queue(name="tf_py", capacity=4096,
                                             create=True, track=False))
                elif case == "Lock":
                    made.append(synchronize.Lock(name="tf_py"))
                else:
                    made.append(synchronize.RLock(name="tf_py"))
            finally:
                filler.close()
                filler.unlink()
        else:
            print("unknown case", case, file=sys.stderr)
            return 1
    except OSError as e:
        if e.errno != errno.ENOSPC:
            print(case, "raised", repr(e), file=sys.stderr)
            return 1
        left = os.listdir("/dev/shm")
        if left:
            print(case, "left", left, file=sys.stderr)
            return 1
        return 0
    for m in made:
        for f in ("unlink",):
            try:
                getattr(m, f)()
            except Exception:
                pass
    print(case, "succeeded on a full /dev/shm", file=sys.stderr)
    return 1


def fill_up():
    size = 1 << 20
    while size >= 4096:
        try:
            return shared_memory.SharedMemory("tf_py_filler", create=True,
                                              size=size, track=False,
                                              reserve=True)
        except OSError:
            size -= 4096
    raise RuntimeError("cannot fill /dev/shm")


def mutate_image(buf, rng):
    size = len(buf)
    hot = min(size, 512)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(hot if rng.random() < 0.75 else size)
        how = rng.randrange(4)
        if how < 2:
            buf[pos] = rng.randrange(256)
        elif how == 2:
            pos -= pos % 8
            if pos + 8 <= size:
                w = rng.choice([0, -1, 1, 2**63 - 1, -2**63, size, size + 1,
                                rng.randrange(-2**63, 2**63)])
                buf[pos:pos + 8] = struct.pack("<q", w)
        else:
            n = min(rng.randint(1, 64), size - pos)
            buf[pos:pos + n] = bytes([rng.choice([0, 0xff])]) * n


def ops_list(name):
    sl = shmkit.ShareableList(name=name)
    try:
        n = len(sl)
        for i in range(min(n, 64)):
            sl[i]
        sl.count(1)
        try:
            sl.index(1)
        except ValueError:
            pass
        repr(sl)
        sl.format
        sl[0] = 1
        sl[1] = "x"
        with sl.locked():
            pass
    finally:
        sl.shm.close()


def ops_typed(name):
    a = sharedctypes.Array.attach(name) if hasattr(sharedctypes.Array, "attach") \
        else sharedctypes._attach_any(name)
    lk = a.get_lock()
    if lk.acquire(timeout=0.1):
        lk.release()
    try:
        len(a)
        a[0]
        a[0] = 5
    except TypeError:
        a.value
        a.value = 5


def ops_lock(name):
    lk = synchronize.RLock.attach(name)
    if lk.acquire(timeout=0.1):
        lk.release()


def ops_queue(name):
    q = shmkit.Queue(name=name)
    try:
        q.stat()
        q.qsize()
        q.empty()
        q.full()
        for _ in range(2):
            try:
                q.get_nowait()
            except Exception:
                pass
        try:
            q.put_nowait(b"mutated")
        except Exception:
            pass
        try:
            q.put_many([1, "two"], block=False)
        except Exception:
            pass
        try:
            q.get_many(8, block=False)
        except Exception:
            pass
        try:
            with q.loan(16, block=False) as buf:
                buf[:] = b"x" * 16
        except Exception:
            pass
        try:
            with q.peek(block=False) as m:
                bytes(m)
        except Exception:
            pass
    finally:
        q.close()


def mutate(kind, name, progname, n, seed):
    target = shared_memory.SharedMemory(name, track=False)
    pristine = bytes(shared_memory.SharedMemory(name + "_p", track=False).buf)
    prog = shared_memory.SharedMemory(progname, track=False)
    ops = {"list": ops_list, "array": ops_typed, "value": ops_typed,
           "lock": ops_lock, "queue": ops_queue}[kind]
    while True:
        i = struct.unpack_from("<Q", prog.buf, 0)[0]
        if i >= n:
            return 0
        target.buf[:len(pristine)] = pristine
        mutate_image(target.buf, random.Random(seed * 1000003 + i))
        try:
            ops(name)
        except Exception:
            pass
        struct.pack_into("<Q", prog.buf, 0, i + 1)


def main(argv):
    if argv[1] == "full":
        return full(argv[2])
    if argv[1] == "mutate":
        return mutate(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
