"""A process that closed its last queue forks without CPython's warning.

The first put or get of a process on a queue starts the library thread
"shmkit-live"; once the process holds no liveness slot (its queues
closed), fork's prepare handler stops it before the fork. CPython 3.12+
warns at os.fork() in a process with more than one thread (counted after
the fork; DeprecationWarning "This process ... is multi-threaded";
-W error::DeprecationWarning would make it an exception, which CPython
3.13 swallows, so the script records warnings instead). Run as

    python -W error::DeprecationWarning fork_after_close.py

with the built shmkit package on PYTHONPATH (tests/CMakeLists.txt runs it
on SHMKIT_PYTHON and on the newest pyenv CPython, built through CMake
-DSHMKIT_PYTHON=...). Checks, exit status 1 on the first that fails:
  1. the thread runs after a put and a get (the process counts one more
     thread in /proc/self/stat, which is what CPython reads);
  2. on 3.12+, fork with the queue still open warns (the check can see
     the warning: the control);
  3. after close, a fork gives no warning, its child exits 0, and the
     count is back to what it was;
  4. the same after a second round (the thread starts again and stops
     again), and with two handles: a fork with one still open warns and
     keeps the thread; after the last closes it does not.
"""
import os
import sys
import warnings

import shmkit


def nthreads():
    with open('/proc/self/stat') as f:
        s = f.read()
    # fields after the command name: state is field 3, num_threads 20
    return int(s[s.rindex(')') + 2:].split()[17])


def fork_child_ok():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


def fail(msg):
    print(f'FAIL ({sys.version.split()[0]}): {msg}')
    sys.exit(1)


def use(q):
    q.put(('x', 1))
    if q.get(timeout=10) != ('x', 1):
        fail('the queue gave back something else')


def fork_warns():
    """Forks; True if CPython warned. Recorded, not raised: CPython 3.13
    swallows the exception -W error would make of this warning (the fork
    has happened), so an exception cannot tell."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        if not fork_child_ok():
            fail('control: the child did not exit 0')
    return any(issubclass(x.category, DeprecationWarning) and
               'multi-threaded' in str(x.message) for x in w)


def fork_without_warning(when):
    if fork_warns():
        fail(f'{when}: fork warned that the process is multi-threaded')


def main():
    if not sys.warnoptions:
        fail('run with -W error::DeprecationWarning')
    base = nthreads()
    for rnd in (1, 2):
        q = shmkit.Queue()
        try:
            use(q)
            if nthreads() != base + 1:
                fail(f'round {rnd}: {nthreads()} threads after a put and a '
                     f'get, {base} before: no shmkit-live thread?')
            if rnd == 1 and not fork_warns() and sys.version_info >= (3, 12):
                fail('control: fork with the thread running did not warn')
        finally:
            q.close()
            q.unlink()
        fork_without_warning(f'round {rnd}, after close')
        if nthreads() != base:
            fail(f'round {rnd}: {nthreads()} threads after close and a '
                 f'fork, {base} before the queue')
    # Two handles of one queue: the thread stays while one holds a slot.
    a = shmkit.Queue()
    b = shmkit.Queue(name=a.name)
    use(a)
    use(b)
    a.close()
    if not fork_warns() and sys.version_info >= (3, 12):
        fail('fork with one of two handles open did not warn')
    if nthreads() != base + 1:
        fail('a fork stopped the thread while a handle still held a slot')
    b.close()
    b.unlink()
    fork_without_warning('two handles, both closed')
    if nthreads() != base:
        fail('the thread survived a fork after the last handle closed')
    print(f'ok ({sys.version.split()[0]}): {base} thread(s) after close '
          'and fork, fork without a warning')


if __name__ == '__main__':
    main()
