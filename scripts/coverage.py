#!/usr/bin/python3
"""coverage.py - line and branch coverage of src/ by the C tests.

    scripts/coverage.py [--build DIR] [--keep] [--files]

Configures DIR (default build-cov) as a Debug build with gcc's --coverage
and without the Python module, builds it, runs the C tests (ctest -L c)
under scripts/private-shm.sh and scripts/reap.py, then asks gcov for every
file of src/ and prints, per file with --files, and in total: lines run,
branches run, branches taken at least once. The Python tests are not
counted (the extension is not built). What daemons (tracker, manager) and
forked children run counts too: every program is linked with _exit
wrapped to write its counts first (scripts/coverage_exit.c); a process
killed by a signal still counts nothing. --keep reuses DIR as it is (no
fresh configure; counts add up across runs).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=top, **kw)


def summary(objdir):
    """{file: {'lines': (hit, n), 'branches': ..., 'taken': ...}} from gcov."""
    gcda = [os.path.join(d, f) for d, _, fs in os.walk(objdir)
            for f in fs if f.endswith('.gcda')]
    out = subprocess.run(['gcov', '-b', '-n'] + sorted(gcda), cwd=objdir,
                         capture_output=True, text=True).stdout
    pats = {'lines': r'Lines executed:([\d.]+)% of (\d+)',
            'branches': r'Branches executed:([\d.]+)% of (\d+)',
            'taken': r'Taken at least once:([\d.]+)% of (\d+)'}
    per, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"File '(.*)'", line)
        if m:
            cur = m.group(1)
            if '/src/' not in cur or not cur.startswith(top):
                cur = None
            continue
        for key, pat in pats.items():
            m = re.match(pat, line)
            if cur and m:   # the first figures of a file are its own
                n = int(m.group(2))
                per.setdefault(cur, {}).setdefault(
                    key, (round(float(m.group(1)) * n / 100), n))
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default='build-cov')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--files', action='store_true')
    a = ap.parse_args()
    bdir = os.path.join(top, a.build)
    if not a.keep:
        shutil.rmtree(bdir, ignore_errors=True)
        os.makedirs(bdir)
        # Daemons and forked children leave by _exit: wrapped, it writes
        # their counts first (scripts/coverage_exit.c).
        exit_o = os.path.join(bdir, 'coverage_exit.o')
        run(['cc', '-c', '-O2', '-o', exit_o, 'scripts/coverage_exit.c'])
        link = f'--coverage -Wl,--wrap=_exit {exit_o}'
        run(['cmake', '-S', '.', '-B', a.build, '-DCMAKE_BUILD_TYPE=Debug',
             '-DSHMKIT_TESTS_REQUIRED=ON', '-DSHMKIT_BENCH=OFF',
             '-DSHMKIT_PYTHON_MODULE=OFF', '-DCMAKE_C_FLAGS=--coverage -O0',
             f'-DCMAKE_EXE_LINKER_FLAGS={link}',
             f'-DCMAKE_SHARED_LINKER_FLAGS={link}'],
            stdout=subprocess.DEVNULL)
    run(['cmake', '--build', a.build, '-j2'], stdout=subprocess.DEVNULL)
    tests = subprocess.run(['scripts/private-shm.sh', 'scripts/reap.py', 'ctest',
                            '--test-dir', a.build, '-L', 'c',
                            '--output-on-failure'], cwd=top)
    per = summary(os.path.join(bdir, 'CMakeFiles', 'shmkit_objects.dir'))
    tot = {k: [0, 0] for k in ('lines', 'branches', 'taken')}
    for f in sorted(per):
        for k, (hit, n) in per[f].items():
            tot[k][0] += hit
            tot[k][1] += n
        if a.files:
            print(os.path.relpath(f, top), ' '.join(
                f'{k} {hit}/{n}' for k, (hit, n) in per[f].items()))
    for k, words in (('lines', 'lines run'), ('branches', 'branches run'),
                     ('taken', 'branches taken')):
        hit, n = tot[k]
        print(f'src/ {words}: {hit}/{n} = {100 * hit / max(n, 1):.1f}%')
    if tests.returncode:
        print('some C tests failed: the figures count what ran', file=sys.stderr)
    return tests.returncode


if __name__ == '__main__':
    sys.exit(main())
