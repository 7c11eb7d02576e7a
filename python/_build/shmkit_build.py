"""shmkit's in-tree PEP 517 build backend: `pip install ./python` and
`pip wheel ./python` with nothing to download.

It compiles the extension shmkit._shmkit from python/src and the library's
own sources (../src, ../include) with the C compiler the interpreter was
built with, links libcrypto and pthreads as the library does, and writes a
wheel of the shmkit package (with its type stubs). Needs a C compiler, the
interpreter's headers and libssl-dev; no setuptools. CMake builds the same
extension for the tests.
"""
import base64
import concurrent.futures
import glob
import hashlib
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # python/
ROOT = os.path.dirname(HERE)

NAME = 'shmkit'


def _version():
    with open(os.path.join(HERE, 'pyproject.toml'), encoding='utf-8') as f:
        m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1)


def _tag():
    impl = 'cp%d%d' % sys.version_info[:2]
    abi = impl + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else '')
    plat = sysconfig.get_platform().replace('-', '_').replace('.', '_')
    return f'{impl}-{abi}-{plat}'


def _sources():
    if not os.path.isdir(os.path.join(ROOT, 'src', 'core')):
        raise RuntimeError("shmkit: the library's sources (../src) are not beside "
                           "python/; build from the shmkit repository (pip >= 21.3 "
                           "builds in place)")
    lib = [p for p in sorted(glob.glob(os.path.join(ROOT, 'src', '*', '*.c')))
           if not os.path.basename(p).startswith('os_')]
    os_file = os.path.join(ROOT, 'src', 'core', f'os_{sys.platform}.c')
    if not os.path.exists(os_file):
        raise RuntimeError(f"shmkit: no OS layer for {sys.platform} yet (src/core/os_*.c)")
    return sorted(glob.glob(os.path.join(HERE, 'src', '*.c'))) + lib + [os_file]


def _compile(tmp):
    cc = shlex.split(sysconfig.get_config_var('CC') or 'cc')
    paths = sysconfig.get_paths()
    incs = [os.path.join(ROOT, 'include'), os.path.join(ROOT, 'src'),
            os.path.join(HERE, 'src'), paths['include'], paths['platinclude']]
    cflags = ['-O2', '-fPIC', '-std=gnu11', '-D_GNU_SOURCE', '-fvisibility=hidden',
              '-Wall', '-Wextra', '-Wno-unused-parameter'] + [f'-I{i}' for i in incs]

    def one(k_src):
        k, src = k_src
        obj = os.path.join(tmp, f'{k:03d}_{os.path.basename(src)}.o')
        subprocess.run(cc + cflags + ['-c', src, '-o', obj], check=True)
        return obj

    srcs = _sources()
    jobs = min(4, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        objs = list(ex.map(one, enumerate(srcs)))
    suffix = sysconfig.get_config_var('EXT_SUFFIX')
    out = os.path.join(tmp, '_shmkit' + suffix)
    subprocess.run(cc + ['-shared', '-o', out] + objs + ['-lcrypto', '-lpthread', '-lm'],
                   check=True)
    return out


def _metadata():
    return (f'Metadata-Version: 2.1\nName: {NAME}\nVersion: {_version()}\n'
            'Summary: Named shared memory for the processes of one host: a '
            'drop-in for multiprocessing.shared_memory, Value, Array and locks, in C\n'
            'Requires-Python: >=3.10\n'
            'Classifier: Programming Language :: C\n'
            'Classifier: Operating System :: POSIX :: Linux\n')


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=')
    return f'{arcname},sha256={digest.decode()},{len(data)}'


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    di = f'{NAME}-{_version()}.dist-info'
    os.makedirs(os.path.join(metadata_directory, di), exist_ok=True)
    with open(os.path.join(metadata_directory, di, 'METADATA'), 'w') as f:
        f.write(_metadata())
    return di


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version, tag = _version(), _tag()
    wheel_name = f'{NAME}-{version}-{tag}.whl'
    di = f'{NAME}-{version}.dist-info'
    with tempfile.TemporaryDirectory(prefix='shmkit-build-') as tmp:
        ext = _compile(tmp)
        files = []
        pkg = os.path.join(HERE, NAME)
        for p in sorted(os.listdir(pkg)):
            if p.endswith(('.py', '.pyi')) or p == 'py.typed':
                files.append((f'{NAME}/{p}', os.path.join(pkg, p)))
        files.append((f'{NAME}/{os.path.basename(ext)}', ext))
        record = []
        path = os.path.join(wheel_directory, wheel_name)
        with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
            for arc, src in files:
                with open(src, 'rb') as f:
                    data = f.read()
                z.writestr(arc, data)
                record.append(_record_line(arc, data))
            meta = {
                'METADATA': _metadata(),
                'WHEEL': ('Wheel-Version: 1.0\nGenerator: shmkit_build\n'
                          f'Root-Is-Purelib: false\nTag: {tag}\n'),
                'top_level.txt': f'{NAME}\n',
            }
            for leaf, text in meta.items():
                data = text.encode()
                z.writestr(f'{di}/{leaf}', data)
                record.append(_record_line(f'{di}/{leaf}', data))
            record.append(f'{di}/RECORD,,')
            z.writestr(f'{di}/RECORD', '\n'.join(record) + '\n')
    return wheel_name
