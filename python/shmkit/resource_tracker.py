"""CPython's resource-tracker idioms on shmkit blocks.

Programs written for CPython 3.8-3.12 keep a block alive after their exit
with ``multiprocessing.resource_tracker.unregister(shm._name,
"shared_memory")`` (and sometimes hand one to the tracker with
``register``). Under shmkit, blocks are tracked by shmkit's family tracker,
and CPython's tracker never heard of them: passed on, such a call would do
nothing for the block and make CPython's tracker print a KeyError
traceback.

Importing shmkit wraps ``multiprocessing.resource_tracker.register`` and
``unregister`` (the module functions, which CPython's own code calls too):

* ``unregister(name, "shared_memory")`` for a block this process created
  tracked: shmkit stops tracking it (``shmkit.untrack``), so it outlives
  the family, as it outlived the process under CPython. For any other block
  shmkit made or attached here, and CPython's tracker never registered, the
  call does nothing (there is nothing to forget) and prints nothing.
* ``register(name, "shared_memory")`` for a block shmkit made or attached
  here: shmkit tracks it (``shmkit.track``): it goes when the family has
  exited, as CPython's tracker would remove it at exit.
* Everything else (other resource types, blocks CPython's own
  SharedMemory registered) goes to CPython's tracker unchanged.
"""

from collections import OrderedDict
from multiprocessing import resource_tracker as _rt

from . import _shmkit

__all__ = ['register', 'unregister']

# Names (without the slash) of the blocks shmkit made or attached in this
# process, unlinked ones included (programs unregister after unlink too):
# the most recent _KEEP of them, so that a long-running process does not
# grow. And the names this process handed to CPython's tracker.
_KEEP = 65536
_shmkit_names = OrderedDict()
_cpython_names = set()


def _norm(name):
    return name.lstrip('/') if isinstance(name, str) else name


def _made(name):
    n = _norm(name)
    _shmkit_names[n] = None
    _shmkit_names.move_to_end(n)
    if len(_shmkit_names) > _KEEP:
        _shmkit_names.popitem(last=False)


def _gone(name):
    _made(name)


def _orig(fn_name):
    fn = getattr(_rt, fn_name)
    return getattr(fn, '__wrapped__', fn)


def register(name, rtype):
    if rtype == 'shared_memory' and _norm(name) in _shmkit_names \
            and _norm(name) not in _cpython_names:
        try:
            _shmkit.track(_norm(name))
        except FileNotFoundError:
            pass
        return
    if rtype == 'shared_memory':
        _cpython_names.add(_norm(name))
    return _orig('register')(name, rtype)


def unregister(name, rtype):
    if rtype == 'shared_memory':
        n = _norm(name)
        if n in _cpython_names:
            _cpython_names.discard(n)
            return _orig('unregister')(name, rtype)
        if _shmkit.untrack(n) or n in _shmkit_names:
            return
        # A name neither shmkit nor this process's CPython code knows: the
        # block of another process (CPython's tests unregister what a
        # killed child made). Passed on, as CPython would.
    return _orig('unregister')(name, rtype)


def _install():
    if getattr(_rt.register, '_shmkit', False):
        return
    for fn_name, fn in (('register', register), ('unregister', unregister)):
        def wrapper(name, rtype, _fn=fn):
            return _fn(name, rtype)
        wrapper.__name__ = fn_name
        wrapper.__doc__ = fn.__doc__
        wrapper.__wrapped__ = getattr(_rt, fn_name)
        wrapper._shmkit = True
        setattr(_rt, fn_name, wrapper)


_install()
