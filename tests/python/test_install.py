"""`pip install ./python` for a new user, `pip wheel`, and the type stubs."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import foreign_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PKG = os.path.join(ROOT, 'python')


def _clean_env():
    # pip, the compiler it runs and the plain extension it builds are not
    # this build's sanitized code: no preload (foreign_env).
    env = foreign_env()
    env.pop('PYTHONPATH', None)          # the built tree must not be seen
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    return env


def test_pip_install_into_a_fresh_venv(tmp_path):
    # The README's way: a venv (Debian's python3 refuses installs into the
    # system), with the system's site-packages for numpy/pytest; the
    # in-tree build backend needs nothing from the network (--no-index).
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    '--system-site-packages', str(venv)], check=True)
    py = str(venv / 'bin' / 'python')
    env = _clean_env()
    p = subprocess.run([py, '-m', 'pip', 'install', '--no-index', PKG], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    code = '''if 1:
        import os, sys, shmkit
        from shmkit import shared_memory
        assert shmkit.__file__.startswith(sys.prefix), shmkit.__file__
        shm = shared_memory.SharedMemory(create=True, size=16, track=False)
        shm.buf[:2] = b"ok"
        other = shared_memory.SharedMemory(shm.name)
        print(bytes(other.buf[:2]).decode())
        other.close(); shm.close(); shm.unlink()
        assert os.path.exists(os.path.join(os.path.dirname(shmkit.__file__), "py.typed"))
    '''
    p = subprocess.run([py, '-c', code], env=env, capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == 'ok', p.stdout + p.stderr


def test_pip_wheel_makes_a_wheel(tmp_path):
    out = tmp_path / 'wheels'
    p = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-index',
                        '--no-deps', '-w', str(out), PKG], env=_clean_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    wheels = glob.glob(str(out / 'shmkit-*.whl'))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        assert z.testzip() is None
    assert any(n.startswith('shmkit/_shmkit.') and n.endswith('.so') for n in names)
    for n in ('shmkit/__init__.py', 'shmkit/__init__.pyi', 'shmkit/py.typed'):
        assert n in names
    assert any(n.endswith('.dist-info/RECORD') for n in names)


def test_stubs_with_mypy():
    mypy = shutil.which('mypy')
    if mypy is None:
        pytest.skip("Debian's mypy is not installed (apt-get install mypy)")
    built = os.path.dirname(os.path.dirname(__import__('shmkit').__file__))
    env = foreign_env(MYPYPATH=built)
    sample = os.path.join(HERE, 'typing', 'sample.py')
    p = subprocess.run([mypy, '--no-error-summary', '--cache-dir=/dev/null',
                        '--python-executable', sys.executable, sample],
                       env=env, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in p.stdout.splitlines() if ': error:' in ln]
    with open(sample) as f:
        expected = [i for i, ln in enumerate(f, 1) if '# E:' in ln]
    got = sorted(int(ln.split(':')[1]) for ln in errors)
    # main() type-checks; each line of wrong() marked "# E:" is an error.
    assert got == expected, p.stdout + p.stderr
