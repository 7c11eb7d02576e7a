# Seed 001: the ShareableList examples; only the import changed.
from shmkit import shared_memory
nul_bug_demo = shared_memory.ShareableList(['?\x00', b'\x03\x02\x01\x00\x00\x00'])
print(repr(nul_bug_demo[0]))
print(repr(nul_bug_demo[1]))
nul_bug_demo.shm.unlink()
padded = shared_memory.ShareableList(['?\x00\x07', b'\x03\x02\x01\x00\x00\x00\x07'])
print(repr(padded[0][:-1]))
print(repr(padded[1][:-1]))
padded.shm.unlink()

a = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
print([ type(entry) for entry in a ])
print(a[2])
a[2] = -78.5
print(a[2])
a[2] = 'dry ice'  # Changing data types is supported as well
print(a[2])
try:
    a[2] = 'larger than previously allocated storage space'
except ValueError as e:
    print("ValueError:", e)
print(a[2])
print(len(a))
print(a.index(42))
print(a.count(b'howdy'))
print(a.count(b'HoWdY'))
a.shm.close()
a.shm.unlink()
del a  # Use of a ShareableList after call to unlink() is unsupported

b = shared_memory.ShareableList(range(5))         # In a first process
c = shared_memory.ShareableList(name=b.shm.name)  # In a second process
print(repr(c).replace(c.shm.name, '...'))
c[-1] = -999
print(b[-1])
b.shm.close()
c.shm.close()
c.shm.unlink()

import pickle
from shmkit import shared_memory
sl = shared_memory.ShareableList(range(10))
print(list(sl))
deserialized_sl = pickle.loads(pickle.dumps(sl))
print(list(deserialized_sl))
sl[0] = -1
deserialized_sl[1] = -2
print(list(sl))
print(list(deserialized_sl))
sl.shm.close()
sl.shm.unlink()
