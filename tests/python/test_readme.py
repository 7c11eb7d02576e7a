"""The README's Python and C examples do what their comments say."""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _python_block():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    blocks = re.findall(r'```python\n(.*?)```', text, re.S)
    return next(b for b in blocks if 'import shmkit' in b)


def test_named_objects_attach_from_another_process():
    block = _python_block()
    # Every named object of the example, and how a second process gets it:
    # the comment's "another process: CODE", or else the line itself.
    checks = []
    for line in block.splitlines():
        code, _, comment = line.partition('#')
        m = re.match(r'\s*(\w+) = (shmkit\.\w+\(.*name=.*\))\s*$', code)
        if not m:
            continue
        other = re.search(r'another process: (shmkit\.\w+\(.*\))', comment)
        checks.append((m.group(1), other.group(1) if other else m.group(2)))
    assert checks, "the README example names no object"
    attach = '; '.join(f'o{k} = {code}' for k, (_, code) in enumerate(checks))
    attach = repr(f"import shmkit; {attach}; print('attached')")
    program = block + f'''
import subprocess, sys
r = subprocess.run([sys.executable, "-c", {attach}],
                   capture_output=True, text=True, pass_fds=[shmkit.track_fd()])
print(r.stdout + r.stderr)
assert r.returncode == 0 and "attached" in r.stdout
'''
    p = subprocess.run([sys.executable, '-c', program], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr


def _c_program():
    """The README's two C blocks as one program: the second continues the
    first "while `b` is still open", so it goes before b's unlink."""
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        first, second = re.findall(r'```c\n(.*?)```', f.read(), re.S)
    lines = first.splitlines()
    includes = [s for s in lines if s.startswith('#include')]
    body = [s for s in lines if not s.startswith('#include')]
    end = next(i for i, s in enumerate(body)
               if s.startswith('shmkit_block_unlink(b)'))
    return '\n'.join(includes + ['', 'int main(void)', '{'] + body[:end] +
                     [second] + body[end:] + ['return 0;', '}', ''])


@pytest.mark.skipif(os.environ.get('SHMKIT_PRIVATE_SHM') != '1',
                    reason='the example uses fixed names: private /dev/shm only')
@pytest.mark.skipif(not shutil.which('cc') or not os.environ.get('SHMKIT_LIB'),
                    reason='needs cc and the built library (SHMKIT_LIB)')
def test_c_example_compiles_warning_free_and_runs(tmp_path):
    lib = os.environ['SHMKIT_LIB']
    src = tmp_path / 'readme.c'
    src.write_text(_c_program())
    exe = tmp_path / 'readme'
    cc = subprocess.run(['cc', '-Wall', '-Wextra', '-Werror', '-I',
                         os.path.join(ROOT, 'include'), str(src), lib,
                         '-Wl,-rpath,' + os.path.dirname(lib), '-o', str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == '1048576 bytes: hello\n'
    assert not os.path.exists('/dev/shm/frames'), 'the example unlinks frames'
    # What the example leaves, as the README shows it: the list, the
    # counter and the queue (the tracked block and the manager's go by
    # themselves). `shmkit rm` removes them (and the list's lock).
    made = ['jobs', 'jobs_done', 'video']
    assert all(os.path.exists('/dev/shm/' + n) for n in made)
    rm = subprocess.run([os.environ['SHMKIT_CLI'], 'rm'] + made,
                        capture_output=True, text=True)
    assert rm.returncode == 0, rm.stderr
    assert not any(os.path.exists('/dev/shm/' + n) for n in made)
