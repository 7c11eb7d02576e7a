# Seed 000 (Python shared memory tutorial), Array example; only the import changed.
from multiprocessing import Process
from shmkit import Array

def f(arr):

    for i in range(len(arr)):

        arr[i] = i

if __name__ == '__main__':

    arr = Array('i', 5)

    p = Process(target=f, args=(arr,))

    p.start()

    p.join()

    print(arr[:])
