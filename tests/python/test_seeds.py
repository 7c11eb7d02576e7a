"""Every example of the seed documents, run as a program with only the
import changed, under fork, spawn and forkserver. Each must print what the
document says (with shmkit's fixes where it differs on purpose) and leave
nothing in /dev/shm once its process family is gone."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import START_METHODS, shm_exists, wait_pid_gone

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")

NAME = r"psm_[0-9a-f]+"
EXPECTED = {
    "seed000_value.py": [r"3\.1415926"],
    "seed000_array.py": [r"\[0, 1, 2, 3, 4\]"],
    "seed001_low_level.py": [r"<class 'memoryview'>", r"10",
                             re.escape("array('b', [22, 33, 44, 55, 100])"),
                             re.escape("b'howdy'")],
    "seed001_numpy.py": [r"\[1 1 2 3 5 8\]", r"<class 'numpy.ndarray'>",
                         r"<class 'numpy.ndarray'>", r"\[1 1 2 3 5 8\]",
                         r"\[  1   1   2   3   5 888\]", r"\[  1   1   2   3   5 888\]"],
    "seed001_manager.py": [rf"ShareableList\(\[0, 1, 2, 3\], name='{NAME}'\)",
                           rf"ShareableList\(\['a', 'l', 'p', 'h', 'a'\], name='{NAME}'\)",
                           r"1999000"],
    "seed001_sharelist.py": [
        # shmkit keeps trailing NULs (CPython gh-106939 strips them)
        re.escape(repr('?\x00')), re.escape(repr(b'\x03\x02\x01\x00\x00\x00')),
        re.escape(repr('?\x00')), re.escape(repr(b'\x03\x02\x01\x00\x00\x00')),
        re.escape("[<class 'str'>, <class 'bytes'>, <class 'float'>, <class 'int'>, "
                  "<class 'NoneType'>, <class 'bool'>, <class 'int'>]"),
        r"-273\.154", r"-78\.5", r"dry ice",
        r"ValueError: exceeds available storage for existing str",
        r"dry ice", r"7", r"6", r"0", r"1",
        re.escape("ShareableList([0, 1, 2, 3, 4], name='...')"), r"-999",
        re.escape("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"), re.escape("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        re.escape("[-1, -2, 2, 3, 4, 5, 6, 7, 8, 9]"), re.escape("[-1, -2, 2, 3, 4, 5, 6, 7, 8, 9]")],
    "seed002_numpy_lock.py": [r"800", r"1024"],
    "seed003_transform.py": [r"Procesado en \d+\.\d\ds con \d+ procesos\. Verificación: True"],
}


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("program", sorted(EXPECTED))
def test_seed_program(program, method, tmp_path):
    record = tmp_path / "created.json"
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-u", os.path.join(SEEDS, "run_seed.py"), method,
         os.path.join(SEEDS, program), str(record)],
        capture_output=True, text=True, timeout=300, env=env)
    rec = json.loads(record.read_text()) if record.exists() else {}
    created = rec.get("created", [])
    try:
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        want = EXPECTED[program]
        assert len(lines) == len(want), proc.stdout
        for line, pattern in zip(lines, want):
            assert re.fullmatch(pattern, line), (line, pattern)
        # Tracked blocks go when the program's family is gone: its tracker
        # removes them, then exits.
        assert wait_pid_gone(rec.get("tracker", -1)), "tracker did not finish"
        left = [n for n in created if shm_exists(n)]
        assert not left, f"{program} left {left} in /dev/shm"
    finally:
        for n in created:
            for cand in (n, n + ".lock"):
                if shm_exists(cand):
                    os.unlink("/dev/shm/" + cand)
