# Seed 000 (Python shared memory tutorial), Value example; only the import changed.
from multiprocessing import Process
from shmkit import Value

def f(n):
    n.value = 3.1415926

if __name__ == '__main__':
    num = Value('d', 0.0)
    p = Process(target=f, args=(num,))
    p.start()
    p.join()

    print(num.value)
