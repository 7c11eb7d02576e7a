"""`shmkit show NAME [--json]` on ShareableLists made by CPython's own
multiprocessing.shared_memory.ShareableList, and on hostile ones."""
import base64
import json
import math
import pathlib
import struct
import subprocess
from multiprocessing import resource_tracker, shared_memory

import pytest


SHM = pathlib.Path("/dev/shm")


@pytest.fixture
def name(shm_prefix):
    """A block name unique to this test (conftest's shm_prefix, whose
    teardown removes whatever carries it)."""
    return shm_prefix[:-1]


@pytest.fixture(autouse=True)
def no_tracker(monkeypatch):
    # 3.11's tracker would warn about, and unlink, what the test owns.
    monkeypatch.setattr(resource_tracker, "register", lambda *a, **k: None)
    monkeypatch.setattr(resource_tracker, "unregister", lambda *a, **k: None)


def as_json(v):
    """What `show --json` promises for a Python value."""
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode()}
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    return v


def show(cli, name, *args):
    return subprocess.run([cli, "show", name, *args], capture_output=True,
                          text=True)


SEQS = {
    "seed": ["howdy", b"HoWdY", -273.154, 100, None, True, 42],
    "empty": [],
    "numbers": [0, -1, 2**63 - 1, -2**63, 1.0, -0.0, 1e300, 5e-324,
                float("inf"), float("-inf"), float("nan"), False],
    "text": ["", "\xe9t\xe9", "\u65e5\u672c", 'q"uote\\', "tab\tnl\n",
             b"", b"\x00\x01\xff", b"a\x00b"],
}


@pytest.mark.parametrize("seq", SEQS.values(), ids=SEQS.keys())
def test_show_json_matches_cpython(cli, name, seq):
    sl = shared_memory.ShareableList(seq, name=name)
    try:
        p = show(cli, name, "--json")
        assert p.returncode == 0, p.stderr
        j = json.loads(p.stdout)
        assert j["name"] == name and j["kind"] == "list"
        assert j["format"] == sl.format
        want = [as_json(v) for v in sl]
        got = j["items"]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert type(g) is type(w) and (g == w or g != g), (g, w)
            if isinstance(w, float):
                assert math.copysign(1, g) == math.copysign(1, w)
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_show_text_matches_repr(cli, name):
    seq = ["howdy", b"Ho\x00", -273.154, 100, None, True, 0.1, "it's"]
    sl = shared_memory.ShareableList(seq, name=name)
    try:
        p = show(cli, name)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == f"{name}: list of 8 items, format '{sl.format}'"
        for k, v in enumerate(sl):
            kind, _, text = lines[k + 1].split(None, 1)[1].partition(" ")
            assert kind == type(v).__name__.replace("NoneType", "None")
            if isinstance(v, str) and "'" in v:
                assert text.strip() == "'it\\'s'"
            else:
                assert text.strip() == repr(v), (text, v)
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_show_refuses_corrupt_list(cli, name):
    sl = shared_memory.ShareableList([1, 2], name=name)
    try:
        fmt_off = 8 * 4 + 16
        struct.pack_into("8s", sl.shm.buf, fmt_off, b"zz")
        p = show(cli, name, "--json")
        assert p.returncode != 0
        assert p.stdout == ""
        assert "SHMKIT_EKIND" in p.stderr
    finally:
        sl.shm.close()
        sl.shm.unlink()
