"""Runs a seed program as __main__ under a given start method and records
the names of the blocks it created (parent process only) and the pid of its
family's tracker in a JSON file:

    python run_seed.py METHOD PROGRAM RECORD.json
"""
import json
import multiprocessing
import runpy
import sys

method, program, record = sys.argv[1:4]
multiprocessing.set_start_method(method)

import shmkit                                     # noqa: E402
from shmkit import shared_memory, sharedctypes, synchronize  # noqa: E402

created = []


def _wrap_init(cls):
    orig = cls.__init__

    def __init__(self, *args, **kw):
        orig(self, *args, **kw)
        if isinstance(self, shared_memory.SharedMemory):
            if kw.get("create") or (len(args) > 1 and args[1]):
                created.append(self.name)
        elif args or kw.get("sequence") is not None or kw.get("name") is None:
            created.append(self.shm.name)
    cls.__init__ = __init__


def _wrap_new(cls):
    orig = cls.__new__

    def __new__(c, *args, **kw):
        obj = orig(c, *args, **kw)
        created.append(obj.name)
        return obj
    cls.__new__ = __new__


_wrap_init(shared_memory.SharedMemory)
_wrap_init(shared_memory.ShareableList)
for c in (sharedctypes.Value, sharedctypes.Array, synchronize.Lock, synchronize.RLock):
    _wrap_new(c)

try:
    runpy.run_path(program, run_name="__main__")
finally:
    with open(record, "w") as f:
        json.dump({"created": created, "tracker": shmkit.track_pid()}, f)
