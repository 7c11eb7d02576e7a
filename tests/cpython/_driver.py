"""Runs CPython's own multiprocessing test classes (test._test_multiprocessing)
in this interpreter, with shmkit's types in place of the stdlib's when
SHMKIT_CPYTHON_SWAP=1 (see _swap.py, which the runner's venv loads at every
interpreter start, so that children and `python -I` subprocesses get it too).

Not run by hand: run_cpython_tests.py starts it. Prints one JSON object:
{"version": ..., "mode": ..., "results": {class: {test_id: outcome}}}.

The test classes are made here at import (not in __main__ only), so that a
spawn or forkserver child, which imports this file as __mp_main__, finds
them by name.
"""
import json
import os
import sys
import unittest

import multiprocessing

# The classes the runner measures: everything CPython has for shared
# memory, shared ctypes, the locks and the queues shmkit replaces. A name
# with a leading underscore is a mixin-based class, run as
# WithProcesses<name> (with ProcessesMixin); TestSimpleQueue is a plain
# TestCase and runs as it is.
CLASSES = ['_TestSharedMemory', '_TestValue', '_TestArray',
           '_TestSharedCTypes', '_TestLock', '_TestCondition',
           '_TestQueue', 'TestSimpleQueue']


def run_name(cls):
    """The name the class runs (and reports) under."""
    return 'WithProcesses' + cls[1:] if cls.startswith('_') else cls

SWAP = os.environ.get('SHMKIT_CPYTHON_SWAP') == '1'

import test._test_multiprocessing as tm   # noqa: E402

if SWAP:
    import shmkit
    from shmkit import sharedctypes as _sct, synchronize as _sync
    assert tm.shared_memory is shmkit.shared_memory, "the swap is not loaded"
    mixin = tm.ProcessesMixin
    mixin.Lock = staticmethod(_sync.Lock)
    mixin.RLock = staticmethod(_sync.RLock)
    mixin.Condition = staticmethod(_sync.Condition)
    mixin.Value = staticmethod(_sct.Value)
    mixin.Array = staticmethod(_sct.Array)
    mixin.RawValue = staticmethod(_sct.RawValue)
    mixin.RawArray = staticmethod(_sct.RawArray)
    # _TestSharedCTypes uses the module's own imports of these.
    tm.Value = _sct.Value
    tm.copy = getattr(_sct, 'copy', None)
    # The queues: multiprocessing.Queue(), JoinableQueue() and
    # SimpleQueue() (and a context's) import their class from
    # multiprocessing.queues at each call, so shmkit's classes there are
    # what every test gets, the mixin's self.Queue, the module-level calls
    # of _TestQueue and TestSimpleQueue, a module a test writes and
    # imports, and a test's subclass of multiprocessing.queues.Queue.
    # Nothing else these classes run uses the module (no Pool).
    from shmkit import queues as _skq
    import multiprocessing.queues as _mpq
    _mpq.Queue = _skq.Queue
    _mpq.JoinableQueue = _skq.JoinableQueue
    _mpq.SimpleQueue = _skq.SimpleQueue
    mixin.Queue = staticmethod(_skq.Queue)
    mixin.JoinableQueue = staticmethod(_skq.JoinableQueue)

for _name in CLASSES:
    _base = getattr(tm, _name, None)
    if _base is None:
        continue
    _new = run_name(_name)
    _bases = ((_base, tm.ProcessesMixin, unittest.TestCase)
              if _name.startswith('_') else (_base,))
    _cls = type(_new, _bases, {'__module__': __name__, '__qualname__': _new})
    globals()[_new] = _cls


class _Collect(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.outcomes = {}

    def _set(self, test, what):
        self.outcomes[test.id()] = what

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), 'pass')

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, 'fail')

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, 'error')

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, 'skip')

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, 'xfail')

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, 'fail')

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set(test, 'fail')


def main():
    import signal
    # A runner started in the background (no job control) inherits SIGINT
    # ignored; CPython's tests send SIGINT and expect KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    start_method = sys.argv[1] if len(sys.argv) > 1 else 'fork'
    only = sys.argv[2:] or CLASSES
    multiprocessing.set_start_method(start_method, force=True)
    tm.util.get_temp_dir()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in only:
        cls = globals().get(run_name(name))
        if cls is not None:
            suite.addTests(loader.loadTestsFromTestCase(cls))
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2,
                                     resultclass=_Collect)
    result = runner.run(suite)
    per_class = {}
    for tid, what in result.outcomes.items():
        cls = tid.split('.')[-2]
        per_class.setdefault(cls, {})[tid.split('.')[-1]] = what
    print(json.dumps({'version': sys.version.split()[0],
                      'mode': 'shmkit' if SWAP else 'stdlib',
                      'start_method': start_method,
                      'results': per_class}))


if __name__ == '__main__':
    main()
