#!/usr/bin/env python3
"""Runs CPython's own tests for shared memory, shared ctypes, locks and
queues against shmkit, beside the same tests against the stdlib, on one
or more CPython interpreters, and prints the table (interpreter x test class:
stdlib passed / shmkit passed) with every test that differs.

    run_cpython_tests.py --python /usr/bin/python3 --shmkit-path build/python
    run_cpython_tests.py --python newest --source . --build-root build/cpython
    SHMKIT_CPYTHON_PYTHONS=all run_cpython_tests.py --source . --build-root B

--python may be given several times; "newest" is the newest pyenv CPython,
"all" is Debian's /usr/bin/python3 and every pyenv CPython 3.10 or newer
(the maintained ones); SHMKIT_CPYTHON_PYTHONS (a comma list, or "all")
replaces --python. For an interpreter without --shmkit-path the extension
is built for it with CMake (-DSHMKIT_PYTHON=...) under --build-root.

Each interpreter runs in a fresh venv whose site-packages has a .pth line
loading _swap.py: with SHMKIT_CPYTHON_SWAP=1 every interpreter started
from it, children and `python -I` subprocesses included, has shmkit's
shared_memory and SharedMemoryManager in multiprocessing's place; the
driver (_driver.py) puts shmkit's Lock, Value... in ProcessesMixin and
shmkit's queue classes in multiprocessing.queues.

Exit status 1 if a test that passes with the stdlib does not pass with
shmkit, unless it is named in INTENDED below (and python/README.md).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Tests of what shmkit does not have by design: CPython's resource
# tracker's own warnings (shmkit has no resource tracker process,
# attaching never tracks, its family tracker prints nothing), and the
# queue's feeder thread and pipe. Each is named in python/README.md with
# the reason. A key is a test's name, or "class.test" for one class's.
INTENDED = {
    'test_shared_memory_tracking':
        "asserts the resource tracker's leak warning of an attacher "
        "created with track=True; shmkit's attachers never track",
    'test_shared_memory_cleaned_after_process_termination':
        "asserts the killed child's resource tracker printed its leak "
        "warning; shmkit's family tracker removes the block (the test's "
        "first half, which passes) and prints nothing",
    'test_queue_feeder_donot_stop_onexc':
        "expects put of an object whose pickling raises to return (the "
        "feeder thread prints the error and drops the object); shmkit "
        "pickles inside put, which raises that error itself; the queue "
        "then works and counts as the test checks (test_queue.py "
        "test_a_put_that_cannot_pickle_raises_and_changes_nothing)",
    'test_queue_feeder_on_queue_feeder_error':
        "overrides _on_queue_feeder_error, the feeder thread's hook; "
        "shmkit has no feeder thread: the pickling error raises from put",
    'TestSimpleQueue.test_closed':
        "asserts the private pipe ends _reader and _writer are closed "
        "(cpython_only); shmkit's SimpleQueue has no pipe (a closed one "
        "raises OSError at every call, as CPython's)",
}


def intended(cls, test):
    """Why test of class cls may fail with shmkit, or None."""
    return INTENDED.get(f'{cls}.{test}') or INTENDED.get(test)


def pyenv_versions():
    try:
        root = subprocess.run(['pyenv', 'root'], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    out = []
    vdir = os.path.join(root, 'versions')
    for v in sorted(os.listdir(vdir) if os.path.isdir(vdir) else []):
        parts = v.split('.')
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue
        if (int(parts[0]), int(parts[1])) < (3, 10):
            continue
        exe = os.path.join(vdir, v, 'bin', 'python3')
        if os.path.exists(exe):
            out.append(((int(parts[0]), int(parts[1]), int(parts[2])), exe))
    return [exe for _, exe in sorted(out)]


def resolve(specs):
    pythons = []
    for s in specs:
        if s == 'all':
            pythons += ['/usr/bin/python3'] + pyenv_versions()
        elif s == 'newest':
            pythons += pyenv_versions()[-1:] or [sys.executable]
        else:
            pythons.append(s)
    seen, out = set(), []
    for p in pythons:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def version_of(python):
    return subprocess.run([python, '-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'],
                          capture_output=True, text=True, check=True).stdout.strip()


def build_for(python, source, build_root):
    """Builds shmkit's extension for python with CMake; returns the
    directory holding the shmkit package."""
    ver = version_of(python)
    bdir = os.path.join(build_root, 'py' + ver)
    subprocess.run(['cmake', '-S', source, '-B', bdir, '-DCMAKE_BUILD_TYPE=RelWithDebInfo',
                    f'-DSHMKIT_PYTHON={python}', '-DSHMKIT_TESTS=OFF',
                    '-DSHMKIT_BENCH=OFF'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['cmake', '--build', bdir, '-j2', '--target', 'shmkit_python'],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(bdir, 'python')


def make_venv(python, where):
    subprocess.run([python, '-m', 'venv', '--without-pip', where], check=True)
    vpy = os.path.join(where, 'bin', 'python')
    site = subprocess.run([vpy, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy(os.path.join(HERE, '_swap.py'), os.path.join(site, '_shmkit_cpython_swap.py'))
    with open(os.path.join(site, 'shmkit_cpython_swap.pth'), 'w') as f:
        f.write('import _shmkit_cpython_swap\n')
    return vpy


def run_one(vpy, shmkit_path, swap, start_method, log, timeout):
    """Runs the driver once per test class (a hang or crash costs one
    class, whose tests then count as not passed); returns the merged
    result."""
    import signal
    sys.path.insert(0, HERE)
    from _driver import CLASSES, run_name
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    env['SHMKIT_CPYTHON_PATH'] = os.path.abspath(shmkit_path)
    env['PYTHONPATH'] = HERE           # _driver for the top process; -I children ignore it
    if swap:
        env['SHMKIT_CPYTHON_SWAP'] = '1'
    else:
        env.pop('SHMKIT_CPYTHON_SWAP', None)
    merged = {}
    for cls in CLASSES:
        p = subprocess.Popen([vpy, os.path.join(HERE, '_driver.py'), start_method, cls],
                             env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            print(f'!! {cls}: no result within {timeout} s (killed)', file=log, flush=True)
            merged[run_name(cls)] = {'(timed out)': 'timeout'}
            continue
        lines = [ln for ln in out.splitlines() if ln.startswith('{')]
        if not lines:
            print(f'!! {cls}: the driver printed no result (exit {p.returncode})',
                  file=log, flush=True)
            merged[run_name(cls)] = {'(driver failed)': 'error'}
            continue
        merged.update(json.loads(lines[-1])['results'])
    return {'results': merged}


def count(results, cls):
    tests = results.get(cls, {})
    return sum(1 for v in tests.values() if v == 'pass'), len(tests)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--python', action='append', default=[])
    ap.add_argument('--shmkit-path', help='directory holding the shmkit package '
                    'built for the (single) --python')
    ap.add_argument('--source', default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument('--build-root', default=None)
    ap.add_argument('--start-method', default='fork')
    ap.add_argument('--log', default=None, help='file for the unittest output')
    ap.add_argument('--timeout', type=float, default=600,
                    help='seconds one test class may take')
    args = ap.parse_args()
    env_spec = os.environ.get('SHMKIT_CPYTHON_PYTHONS')
    specs = env_spec.split(',') if env_spec else (args.python or [sys.executable])
    pythons = resolve(specs)
    log = open(args.log, 'w') if args.log else sys.stderr
    table, bad = [], []
    for python in pythons:
        ver = version_of(python)
        if args.shmkit_path and len(pythons) == 1:
            path = args.shmkit_path
        else:
            root = args.build_root or tempfile.mkdtemp(prefix='shmkit-cpython-build-')
            path = build_for(python, args.source, root)
        with tempfile.TemporaryDirectory(prefix='shmkit-cpython-venv-') as tmp:
            vpy = make_venv(python, os.path.join(tmp, 'venv'))
            print(f'== {python} ({ver}), start method {args.start_method}', file=log, flush=True)
            std = run_one(vpy, path, False, args.start_method, log, args.timeout)
            ours = run_one(vpy, path, True, args.start_method, log, args.timeout)
        classes = sorted(set(std['results']) | set(ours['results']))
        for cls in classes:
            sp, sn = count(std['results'], cls)
            op, on = count(ours['results'], cls)
            diffs = []
            for t in sorted(set(std['results'].get(cls, {})) | set(ours['results'].get(cls, {}))):
                a = std['results'].get(cls, {}).get(t, 'absent')
                b = ours['results'].get(cls, {}).get(t, 'absent')
                if a != b:
                    diffs.append((t, a, b))
                    if a == 'pass' and b != 'pass' and not intended(cls, t):
                        bad.append(f'{ver} {cls}.{t}: stdlib {a}, shmkit {b}')
            table.append((python, ver, cls, sp, sn, op, on, diffs))
    print(f'{"interpreter":<36} {"test class":<34} {"stdlib":>8} {"shmkit":>8}')
    for python, ver, cls, sp, sn, op, on, diffs in table:
        print(f'{python + " " + ver:<36} {cls:<34} {sp:>3}/{sn:<4} {op:>3}/{on:<4}')
        for t, a, b in diffs:
            why = f'  (intended: {intended(cls, t)})' if intended(cls, t) else ''
            print(f'    differs: {t}: stdlib {a}, shmkit {b}{why}')
    if bad:
        print('\nshmkit fails what the stdlib passes:')
        for b in bad:
            print('  ' + b)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
