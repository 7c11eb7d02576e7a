"""Loaded at every start of the runner's venv interpreter (by a .pth line):
with SHMKIT_CPYTHON_SWAP=1, puts shmkit's shared_memory and
SharedMemoryManager where multiprocessing's are, before any test imports
them. SHMKIT_CPYTHON_PATH names the directory holding the shmkit package
(an environment variable, as `python -I` ignores PYTHONPATH)."""
import os
import sys

if os.environ.get('SHMKIT_CPYTHON_SWAP') == '1':
    path = os.environ.get('SHMKIT_CPYTHON_PATH')
    if path and path not in sys.path:
        sys.path.insert(0, path)
    import multiprocessing
    import multiprocessing.managers
    import shmkit.shared_memory
    import shmkit.managers
    sys.modules['multiprocessing.shared_memory'] = shmkit.shared_memory
    multiprocessing.shared_memory = shmkit.shared_memory
    multiprocessing.managers.SharedMemoryManager = shmkit.managers.SharedMemoryManager
