"""The shmkit command: ls, info, rm, show, demo, and its errors, against
blocks made by CPython's own multiprocessing.shared_memory."""
import json
import os
import re
import subprocess
from multiprocessing import resource_tracker, shared_memory

import pathlib

import pytest

SHM = pathlib.Path("/dev/shm")


@pytest.fixture
def shm_prefix(request):
    """A name prefix unique to this test; whatever carries it is removed
    from /dev/shm at teardown, also when the test fails."""
    prefix = f"sktest_py{os.getpid()}_{request.node.name[:40]}_"
    prefix = "".join(c if c.isalnum() or c in "_-" else "_" for c in prefix)
    yield prefix
    for p in SHM.glob(prefix + "*"):
        try:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        except FileNotFoundError:
            pass


def run(cli, *args):
    return subprocess.run([cli, *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def cpython_block(shm_prefix):
    """A 1234-byte block made by CPython, kept out of its resource tracker
    so that its unlink stays under the test's control."""
    shm = shared_memory.SharedMemory(name=shm_prefix + "blk", create=True,
                                     size=1234)
    resource_tracker.unregister(shm._name, "shared_memory")
    yield shm
    shm.close()


def test_version_and_help(cli):
    r = run(cli, "version")
    assert r.returncode == 0 and r.stdout.startswith("shmkit ")
    r = run(cli, "help")
    assert r.returncode == 0 and "demo" in r.stdout
    r = run(cli)
    assert r.returncode == 2


def test_unknown_command_is_usage_error(cli):
    r = run(cli, "frobnicate")
    assert r.returncode == 2
    assert "frobnicate" in r.stderr


def test_ls_json_lists_block_with_details(cli, cpython_block):
    r = run(cli, "ls", "--json")
    assert r.returncode == 0, r.stderr
    entries = {e["name"]: e for e in json.loads(r.stdout)}
    e = entries[cpython_block.name]
    assert e["size"] == 1234
    assert e["mode"] == "0600"
    assert e["kind"] == "raw"
    assert e["uid"] == os.geteuid()
    assert os.getpid() in e["pids"], "this process maps it"


def test_ls_text_has_header_and_block(cli, cpython_block):
    r = run(cli, "ls")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "SIZE", "OWNER"]
    row = [l for l in lines if l.startswith(cpython_block.name + " ")]
    assert row and "1234" in row[0].split()


def test_ls_survives_fifo_without_hanging(cli, shm_prefix):
    os.mkfifo(f"/dev/shm/{shm_prefix}fifo", 0o600)
    r = run(cli, "ls", "--json")
    assert r.returncode == 0
    kinds = {e["name"]: e["kind"] for e in json.loads(r.stdout)}
    assert kinds[shm_prefix + "fifo"] == "not-shm"


def test_info(cli, cpython_block):
    r = run(cli, "info", cpython_block.name, "--json")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert (e["name"], e["size"], e["kind"]) == (cpython_block.name, 1234, "raw")
    r = run(cli, "info", "/" + cpython_block.name)
    assert r.returncode == 0
    assert "1234 bytes" in r.stdout


def test_info_missing_is_one_line_error(cli, shm_prefix):
    r = run(cli, "info", shm_prefix + "nope")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1
    assert shm_prefix + "nope" in r.stderr and "ENOENT" in r.stderr


def test_rm(cli, shm_prefix):
    names = []
    for i in range(3):
        s = shared_memory.SharedMemory(name=f"{shm_prefix}rm{i}", create=True, size=10)
        resource_tracker.unregister(s._name, "shared_memory")
        s.close()
        names.append(s.name)
    r = run(cli, "rm", *names)
    assert r.returncode == 0, r.stderr
    assert not any(os.path.exists("/dev/shm/" + n) for n in names)
    r = run(cli, "rm", names[0], "bad/name")
    assert r.returncode == 1
    assert "ENOENT" in r.stderr and "EINVAL" in r.stderr


def test_show_raw_block_says_nothing_to_decode(cli, cpython_block):
    r = run(cli, "show", cpython_block.name)
    assert r.returncode == 1
    assert cpython_block.name in r.stderr and "SHMKIT_EKIND" in r.stderr


def test_demo_small(cli):
    r = run(cli, "demo", "--size", "100000", "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert "verification: ok" in r.stdout
    assert "3 workers" in r.stdout
    assert len(re.findall(r"MiB +by value .* by name .*x$", r.stdout, re.M)) == 3
    block = re.search(r'in block "(psm_[0-9a-f]{8})"', r.stdout).group(1)
    assert not os.path.exists("/dev/shm/" + block), "demo cleans up"


@pytest.mark.parametrize("args", [["--workers", "0"], ["--size", "x"],
                                  ["--bogus"], ["--size", "0"]])
def test_demo_bad_arguments(cli, args):
    r = run(cli, "demo", *args)
    assert r.returncode == 2
    assert r.stderr.startswith("shmkit: ")


def test_show_and_ls_survive_a_peer_truncating_the_block(cli, shm_prefix):
    """A peer shrinks and regrows a large list while `shmkit show` and
    `shmkit ls` read it: they may report an error, never die of SIGBUS."""
    import threading

    sl = shared_memory.ShareableList(["x" * 64] * 20000, name=shm_prefix + "big")
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    fd = os.open("/dev/shm/" + sl.shm.name, os.O_RDWR)
    size = os.fstat(fd).st_size
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            os.ftruncate(fd, 4096)
            os.ftruncate(fd, size)

    t = threading.Thread(target=churn)
    t.start()
    try:
        codes = [run(cli, "show", sl.shm.name).returncode for _ in range(20)]
        codes += [run(cli, "ls").returncode for _ in range(3)]
    finally:
        stop.set()
        t.join()
        os.close(fd)
        sl.shm.close()
    assert all(c >= 0 for c in codes), f"killed by a signal: {codes}"
    assert set(codes) <= {0, 1}, codes


def test_show_corrupt_list_item_is_one_error_not_a_crash(cli, shm_prefix):
    """A list whose header is sound but whose item 1 carries an impossible
    back-transform code (str for an int slot): `show` fails with one line,
    exit 1, and no output (issue 11 item 5: it used to free twice)."""
    sl = shared_memory.ShareableList([1, 2, 3], name=shm_prefix + "bad")
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    try:
        sl.shm.buf[sl._offset_back_transform_codes + 1] = 1
        for args in (["show", sl.shm.name], ["show", sl.shm.name, "--json"]):
            r = run(cli, *args)
            assert r.returncode == 1, (args, r.returncode, r.stderr)
            assert r.stdout == ""
            assert r.stderr.count("\n") == 1 and "SHMKIT_ECORRUPT" in r.stderr
    finally:
        sl.shm.close()
        sl.shm.unlink()
