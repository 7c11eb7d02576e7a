"""A lock whose holder is SIGKILLed in the middle of an update: the next
acquire() does not hang, it gets the lock and is told the owner died, repairs
the data and marks the lock consistent. multiprocessing's Lock would block
forever here."""
import multiprocessing as mp
import os
import signal

import shmkit


def die_holding(lock, account, ready):
    lock.acquire()
    account[0] += 100          # debit... and killed before the credit
    ready.send(True)
    signal.pause()


def main():
    lock = shmkit.Lock()                            # a generated name
    account = shmkit.Array("q", 2)                  # debit, credit
    try:
        recv, send = mp.Pipe(duplex=False)
        p = mp.Process(target=die_holding, args=(lock, account, send))
        p.start()
        recv.recv()
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert p.exitcode == -signal.SIGKILL

        lock.acquire()                              # no deadlock
        if lock.owner_died:
            print(f"holder died: debit {account[0]}, credit {account[1]}; repairing")
            account[1] = account[0]
            lock.consistent()
        lock.release()
        print(f"debit {account[0]}, credit {account[1]}")
        assert account[0] == account[1] == 100
    finally:
        lock.unlink()
        account.unlink()


if __name__ == "__main__":
    main()
