#!/usr/bin/env python3
"""Runs fork_after_close.py (beside this file) under one interpreter, with
-W error::DeprecationWarning, in a private /dev/shm as the caller gives it.

    run_fork_after_close.py --python PY --shmkit-path DIR
    run_fork_after_close.py --python newest --source SRC --build-root DIR

The second form builds the extension for that interpreter through CMake
-DSHMKIT_PYTHON=... (tests/cpython/run_cpython_tests.py's build_for:
"newest" is the newest pyenv CPython, 3.12+ being the ones that warn).
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'cpython'))
import run_cpython_tests as rct  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--python', required=True)
    ap.add_argument('--shmkit-path')
    ap.add_argument('--source', default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument('--build-root')
    args = ap.parse_args()
    (python,) = rct.resolve([args.python])
    path = args.shmkit_path
    if not path:
        if not args.build_root:
            ap.error('--build-root or --shmkit-path')
        path = rct.build_for(python, args.source, args.build_root)
    env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE='1')
    r = subprocess.run([python, '-W', 'error::DeprecationWarning',
                        os.path.join(HERE, 'fork_after_close.py')], env=env)
    return r.returncode


if __name__ == '__main__':
    sys.exit(main())
