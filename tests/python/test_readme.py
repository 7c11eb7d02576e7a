"""The README's Python example does what its comments say."""
import os
import re
import subprocess
import sys

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
