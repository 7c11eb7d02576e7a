# Seed 003 (memoria compartida): the program; only the import changed.
import math
import multiprocessing as mp
from shmkit import shared_memory
import time

def inicializar(shm_name, length):
    shm = shared_memory.SharedMemory(name=shm_name)
    buf = memoryview(shm.buf).cast("I") # unsigned int
    for i in range(length):
        buf[i] = i
    buf.release()
    shm.close()

def procesar_parte(shm_name, start, end):
    shm = shared_memory.SharedMemory(name=shm_name)
    buf = memoryview(shm.buf).cast("I")
    for i in range(start, end):
        buf[i] = buf[i] * 2 + (1 if buf[i] % 2 == 0 else 0)
    buf.release()
    shm.close()

def verificar(shm_name, length):
    shm = shared_memory.SharedMemory(name=shm_name)
    buf = memoryview(shm.buf).cast("I")
    ok = all(buf[i] == i * 2 + (1 if i % 2 == 0 else 0) for i in range(length))
    buf.release()
    shm.close()
    return ok

def main():
    length = 500_000
    size_bytes = length * 4 # uint32
    shm = shared_memory.SharedMemory(create=True, size=size_bytes)
    shm_name = shm.name
    # Inicializa datos en el segmento
    inicializar(shm_name, length)
    workers = mp.cpu_count()
    chunk = math.ceil(length / workers)
    procesos = []
    inicio = time.perf_counter()
    for idx in range(workers):
        start = idx * chunk
        end = min(start + chunk, length)
        if start >= end:
            continue
        p = mp.Process(target=procesar_parte, args=(shm_name, start, end))
        p.start()
        procesos.append(p)
    for p in procesos:
        p.join()
    duracion = time.perf_counter() - inicio
    ok = verificar(shm_name, length)
    print(f"Procesado en {duracion:.2f}s con {len(procesos)} procesos. Verificación: {ok}")
    shm.close()
    shm.unlink() # libera el segmento

if __name__ == "__main__":
    mp.freeze_support() # seguro en Windows
    main()
