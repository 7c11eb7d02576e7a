"""The shmkit command: ls, info, rm, show, demo, and its errors, against
blocks made by CPython's own multiprocessing.shared_memory."""
import json
import os
import re
import subprocess
from multiprocessing import resource_tracker, shared_memory

import pathlib

import pytest
from conftest import foreign_env


SHM = pathlib.Path("/dev/shm")


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


def test_ls_and_info_name_the_creator_of_a_shmkit_block(cli, shm_prefix):
    # shmkit publishes a block whole (a nameless file linked into place), so
    # its creator's /proc/PID/maps line reads "/dev/shm/#N (deleted)": the
    # CLI must match mappings by inode, not by path.
    from shmkit import shared_memory as sksm
    shm = sksm.SharedMemory(shm_prefix + "creator", create=True, size=4096)
    try:
        r = run(cli, "info", "--json", shm.name)
        assert r.returncode == 0, r.stderr
        assert os.getpid() in json.loads(r.stdout)["pids"]
        r = run(cli, "ls", "--json")
        entries = {e["name"]: e for e in json.loads(r.stdout)}
        assert os.getpid() in entries[shm.name]["pids"]
    finally:
        shm.close()
        shm.unlink()


def test_ls_text_has_header_and_block(cli, cpython_block):
    r = run(cli, "ls")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "SIZE", "OWNER"]
    row = [l for l in lines if l.startswith(cpython_block.name + " ")]
    assert row and "1.2 KiB" in row[0]


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
    """One line, the useful one: what the block is and why nothing shows."""
    r = run(cli, "show", cpython_block.name)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"shmkit: {cpython_block.name}: raw bytes (1.2 KiB), "
                        "not a list, array, value, lock or queue: nothing to decode "
                        "(SHMKIT_EKIND)\n")


def test_demo_small(cli):
    """--size applies to both parts: part 2 hands over 1/256, 1/16 and all
    of part 1's 4 MiB."""
    r = run(cli, "demo", "--size", "1Mi", "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "no progress line when stderr is not a terminal"
    assert "verification: ok" in r.stdout
    assert "3 workers" in r.stdout
    assert "1048576 uint32 (4.0 MiB)" in r.stdout
    sizes = re.findall(r"^ +(\S+ \S+) +by value .* by name .*x$", r.stdout, re.M)
    assert sizes == ["16 KiB", "256 KiB", "4.0 MiB"], r.stdout
    block = re.search(r'in block "(psm_[0-9a-f]{8})"', r.stdout).group(1)
    assert not os.path.exists("/dev/shm/" + block), "demo cleans up"


@pytest.mark.parametrize("args", [["--workers", "0"], ["--size", "x"],
                                  ["--bogus"], ["--size", "0"],
                                  ["--size", "10"], ["--size", "1048575"],
                                  ["--size", "-5"], ["--size", "4Ti"],
                                  ["--workers", ""]])
def test_demo_bad_arguments(cli, args):
    r = run(cli, "demo", *args)
    assert r.returncode == 2
    assert r.stderr.startswith("shmkit: demo: ") and r.stderr.count("\n") == 1
    if args[0] == "--size" and args[1].isdigit():
        assert "at least 1Mi items (4 MiB" in r.stderr


def test_show_and_ls_survive_a_peer_truncating_the_block(cli, shm_prefix):
    """A peer shrinks and regrows a large list while `shmkit show` and
    `shmkit ls` read it: they may report an error, never die of SIGBUS."""
    import threading

    sl = shared_memory.ShareableList(["x" * 64] * 20000, name=shm_prefix + "big")
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    fd = os.open("/dev/shm/" + sl.shm.name, os.O_RDWR)
    size = os.fstat(fd).st_size
    stop = threading.Event()

    failed = []

    def churn():
        try:
            while not stop.is_set():
                os.ftruncate(fd, 4096)
                os.ftruncate(fd, size)
        except BaseException as e:      # checked below, after the join
            failed.append(e)

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
    assert not failed, failed
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


# ---- issue 14: the command as people expect it ------------------------------

SUBCOMMANDS = ["ls", "info", "show", "rm", "gc", "manager", "demo", "version",
               "help"]


def make_block(name, size):
    """A block made by CPython, out of its resource tracker's reach."""
    s = shared_memory.SharedMemory(name=name, create=True, size=size)
    resource_tracker.unregister(s._name, "shared_memory")
    s.close()
    return name


def run_on_pty(argv, which="stdout", cols=100):
    """Runs argv with `which` (stdout or stderr) on a pseudo-terminal of
    `cols` columns, the other on a pipe. Returns (exit status, terminal
    text, piped text)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    kw = {"stdout": slave, "stderr": subprocess.PIPE} if which == "stdout" \
        else {"stdout": subprocess.PIPE, "stderr": slave}
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:     # EIO: every writer closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    piped = (p.stderr if which == "stdout" else p.stdout).read()
    status = p.wait(timeout=120)
    return status, b"".join(chunks).decode(), piped.decode()


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(cli, sub):
    r = run(cli, sub, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: shmkit {sub}")
    assert "-h, --help" in r.stdout and r.stderr == ""
    assert run(cli, "help", sub).stdout == r.stdout
    assert run(cli, sub, "-h").stdout == r.stdout


def test_rm_help_does_not_remove_an_object_named_help(cli, shm_prefix):
    """`shmkit rm --help` prints help (it used to unlink "--help"); a name
    starting with '-' is removed after --."""
    path = SHM / "--help"
    assert not path.exists()
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    try:
        r = run(cli, "rm", "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: shmkit rm")
        assert path.exists()
        r = run(cli, "rm", "-x")
        assert r.returncode == 2 and "after --" in r.stderr
        r = run(cli, "rm", "--", "--help")
        assert r.returncode == 0, r.stderr
        assert not path.exists()
    finally:
        if path.exists():
            path.unlink()


def test_help_unknown_command(cli):
    r = run(cli, "help", "frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr


def test_man_page_comes_from_the_help_text(cli):
    """`shmkit help --man` is roff made from the same table as --help: every
    command and every option is in it, and groff renders it without a
    warning."""
    import shutil
    r = run(cli, "help", "--man")
    assert r.returncode == 0
    man = r.stdout
    assert man.startswith('.\\" Generated') and "\n.TH SHMKIT 1 " in man
    for sub in SUBCOMMANDS:
        assert f"\\fBshmkit {sub}\\fR" in man
        for line in run(cli, sub, "--help").stdout.splitlines():
            if line.startswith("  -") and line != "  -h, --help":
                assert line.strip().replace("-", "\\-") in man, line
    if shutil.which("groff"):
        # groff is not ours: without the sanitizer runtime (foreign_env).
        g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=man,
                           capture_output=True, text=True, env=foreign_env())
        assert g.returncode == 0 and g.stderr == "", g.stderr


def test_sizes_human_by_default_exact_with_bytes_and_json(cli, shm_prefix):
    name = make_block(shm_prefix + "sz", 5 * 2**20 + 1)
    row = [l for l in run(cli, "ls").stdout.splitlines() if l.startswith(name + " ")]
    assert row and " 5.0 MiB " in row[0], row
    row = [l for l in run(cli, "ls", "--bytes").stdout.splitlines()
           if l.startswith(name + " ")]
    assert row and " 5242881 " in row[0], row
    entries = {e["name"]: e for e in json.loads(run(cli, "ls", "--json").stdout)}
    assert entries[name]["size"] == 5242881
    r = run(cli, "info", name)
    assert "size:      5.0 MiB (5242881 bytes)\n" in r.stdout
    r = run(cli, "info", name, "--bytes")
    assert "size:      5242881 bytes\n" in r.stdout
    assert json.loads(run(cli, "info", name, "--json").stdout)["size"] == 5242881


def test_ls_columns_sized_to_long_names(cli, shm_prefix):
    """Names far longer than 25 characters keep every column aligned."""
    names = [make_block(shm_prefix + "x" * k, 10) for k in (1, 60, 120)]
    lines = run(cli, "ls").stdout.splitlines()
    col = lines[0].index(" MODE ")
    rows = [l for l in lines if l.split(" ", 1)[0] in names]
    assert len(rows) == 3
    for l in rows:
        assert l.index(" 0600 ") == col, (col, l)


def columns(s):
    """Terminal columns of s: East Asian wide characters take two."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def check_cut(lines, name, term):
    """`name`'s row on a `term`-column terminal is cut with an ellipsis to
    the room the other columns leave (at least 12 columns), so every line
    fits whenever the other columns leave that much. Other objects in
    /dev/shm (the suite runs tests side by side) may widen the columns."""
    ours = [l for l in lines if "\u2026" in l and
            len(l.split("\u2026", 1)[0]) > 10 and
            name.startswith(l.split("\u2026", 1)[0])]
    assert ours and name not in "\n".join(lines), lines
    width = columns(ours[0][:ours[0].index("\u2026") + 1])
    rest = max(map(columns, lines)) - width   # every other column, padded
    room = max(12, term - rest)
    assert width in (room, room - 1), (width, room, lines)  # -1: a wide char
    if term - rest >= 12:
        assert max(map(columns, lines)) <= term


def test_ls_cuts_long_names_with_an_ellipsis_on_a_terminal(cli, shm_prefix):
    name = make_block(shm_prefix + "y" * 150, 10)
    status, out, err = run_on_pty([cli, "ls"], "stdout", cols=100)
    assert status == 0, err
    check_cut(out.replace("\r\n", "\n").splitlines(), name, 100)
    assert name in [e["name"] for e in json.loads(run(cli, "ls", "--json").stdout)]


def test_names_with_control_characters_are_escaped(cli, shm_prefix):
    """A name any user can plant cannot reach the terminal raw: ls, info,
    show and rm's errors escape it; --json carries it exactly."""
    raw = shm_prefix + "e\x1b[2J\x07\tz\u202eq\\"
    path = SHM / raw
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    try:
        shown = shm_prefix + "e\\x1b[2J\\x07\\tz\\u202eq\\\\"
        out = run(cli, "ls").stdout
        assert shown in out
        for bad in ("\x1b", "\x07", "\t", "\u202e"):
            assert bad not in out
        r = run(cli, "info", raw)
        assert f"name:      {shown}\n" in r.stdout and "\x1b" not in r.stdout
        r = run(cli, "show", raw)
        assert r.returncode == 1 and shown in r.stderr and "\x1b" not in r.stderr
        assert raw in [e["name"] for e in json.loads(run(cli, "ls", "--json").stdout)]
        assert json.loads(run(cli, "info", raw, "--json").stdout)["name"] == raw
    finally:
        path.unlink()


def test_info_has_modified_time_and_clean_json(cli, shm_prefix):
    import datetime
    name = make_block(shm_prefix + "mt", 10)
    os.utime(SHM / name, (1_700_000_000, 1_700_000_000))
    r = run(cli, "info", name, "--json")
    assert r.stdout.startswith("{") and r.stdout.endswith("}\n")
    e = json.loads(r.stdout)
    when = datetime.datetime.fromisoformat(e["mtime"])
    assert when.timestamp() == 1_700_000_000
    r = run(cli, "info", name)
    local = datetime.datetime.fromtimestamp(1_700_000_000).astimezone()
    assert f"modified:  {local.isoformat(' ')}\n" in r.stdout, r.stdout


@pytest.mark.parametrize("arg,why", [
    ("", "empty name"),
    ("a/b", "name contains '/'"),
    ("n" * 256, "name longer than 255 bytes"),
    ("..", "name is '.' or '..'"),
])
def test_bad_name_says_why(cli, arg, why):
    for sub in ("info", "show", "rm"):
        r = run(cli, sub, arg)
        assert r.returncode == 1, (sub, r.stderr)
        assert r.stderr.count("\n") == 1 and f": {why}" in r.stderr, r.stderr


def _numpy_cases():
    import numpy as np
    rng = np.random.default_rng(14)
    yield "q", np.arange(12).reshape(3, 4) * 7 - 20          # the 3x4
    yield "q", np.arange(10000).reshape(100, 100)             # elided both axes
    yield "q", np.arange(24).reshape(2, 3, 4)                 # blank line between blocks
    yield "q", np.arange(5000)                                # 1-D elided
    yield "q", rng.integers(-10**12, 10**12, (3, 40))          # rows wrapped at 75
    yield "d", np.arange(12).reshape(2, 2, 3) / 4             # decimal points aligned
    yield "d", np.array([1 / 3, -2.5, 100.0, np.nan])
    yield "d", np.linspace(-1, 1, 2000).reshape(40, 50)       # wrapped and elided
    yield "d", np.array([1e-5, 1.5, -2e10, np.inf])           # exponents
    yield "d", rng.standard_normal((7, 9)) * 1e6
    yield "f", rng.standard_normal(3000).astype(np.float32)   # float32 digits


def test_show_array_nests_rows_and_elides_like_numpy(cli, shm_prefix):
    """`show` prints an array exactly as str(numpy_array) does: rows nested
    by shape (the issue's 3x4), the middle of long axes elided above 1000
    items, rows wrapped at 75 columns, floats aligned on the point or in
    exponent form."""
    np = pytest.importorskip("numpy")
    shmkit = pytest.importorskip("shmkit")
    made = []
    try:
        for k, (tc, v) in enumerate(_numpy_cases()):
            a = shmkit.Array(tc, v.size, name=f"{shm_prefix}{k}", shape=v.shape)
            made.append(a)
            view = np.asarray(a)
            view[...] = v
            r = run(cli, "show", a.name)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split("values:\n", 1)[1] == str(view) + "\n", \
                (tc, v.shape, r.stdout)
            del view
    finally:
        for a in made:
            a.unlink()


def test_manager_says_where_it_listens(cli, tmp_path):
    sock = tmp_path / "m" / "mgr.sock"
    p = subprocess.Popen([cli, "manager", "--socket", str(sock)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    try:
        import select
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready, "the manager said nothing in 30 s"
        line = p.stdout.readline()
        assert line == f"shmkit manager: listening on {sock} (pid {p.pid})\n"
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0, p.stderr.read()


def test_manager_quiet_prints_nothing(cli, tmp_path):
    import socket
    import time
    sock = tmp_path / "q" / "mgr.sock"
    p = subprocess.Popen([cli, "manager", "--quiet", "--socket", str(sock)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:     # ready once it accepts a connection
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(sock))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    assert time.monotonic() < deadline, "manager never listened"
                    assert p.poll() is None, p.stderr.read()
    finally:
        p.terminate()
        status = p.wait(timeout=30)
    assert status == 0 and p.stdout.read() == ""


def test_manager_socket_dir_not_private_is_explained(cli, tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o755)
    r = run(cli, "manager", "--socket", str(d / "mgr.sock"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert f"the socket's directory {d} " in r.stderr
    assert "mode 0755" in r.stderr and "must be a private directory" in r.stderr
    assert "0700" in r.stderr and "chmod 700" in r.stderr


def test_progress_only_on_a_terminal(cli):
    """gc and demo show a status line on a terminal's stderr, erased at the
    end; with stderr on a pipe they print nothing there."""
    status, tty, out = run_on_pty([cli, "gc", "--dry-run"], "stderr")
    assert status == 0 and "blocks would be removed" in out
    assert "\r\x1b[Kshmkit gc: checking" in tty and tty.endswith("\r\x1b[K")
    status, tty, out = run_on_pty([cli, "demo", "--size", "1Mi", "--workers",
                                   "2"], "stderr")
    assert status == 0 and "verification: ok" in out
    assert "workers running" in tty and "handing over 4.0 MiB" in tty
    r = run(cli, "gc", "--dry-run")
    assert r.returncode == 0 and r.stderr == ""


def test_readme_links_and_named_tests_exist():
    """The README's relative links resolve, and every test its comparison
    table names (`[file](path) `test_name``) is in that file: a renamed
    test or moved example fails here instead of leaving the claim unbacked."""
    src = pathlib.Path(os.environ.get("SHMKIT_SOURCE_DIR",
                                      pathlib.Path(__file__).parents[2]))
    text = (src / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#]+)\)", text))
    missing = [l for l in links if not l.startswith("http") and not (src / l).exists()]
    assert not missing, missing
    named = re.findall(r"\]\(([^)#]+)\) `([A-Za-z_0-9]+)`", text)
    assert len(named) >= 6
    absent = [(f, t) for f, t in named if t not in (src / f).read_text()]
    assert not absent, absent


def test_ls_aligns_wide_characters_and_sorts_by_name(cli, shm_prefix):
    """East Asian wide characters take two columns: rows stay aligned;
    rows come sorted by name, as ls(1) sorts them."""
    import unicodedata

    def cols(s):
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)

    names = [shm_prefix + tag for tag in ("z", "表示名前", "a")]
    for n in names:     # (CPython's resource tracker cannot register a
                        # non-ASCII name: it encodes its messages as ASCII)
        fd = os.open(SHM / n, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(fd, 10)
        os.close(fd)
    lines = run(cli, "ls").stdout.splitlines()
    col = cols(lines[0][:lines[0].index(" MODE ")])
    rows = [l for l in lines if l.split(" ", 1)[0] in names]
    assert [r.split(" ", 1)[0] for r in rows] == sorted(names)
    for l in rows:
        assert cols(l[:l.index(" 0600 ")]) == col, l
    status, out, _ = run_on_pty([cli, "ls"], "stdout", cols=72)
    assert status == 0
    check_cut(out.replace("\r\n", "\n").splitlines(), names[1], 72)


def _wait_for(pred, timeout=60):
    """Re-checks pred (a snapshot of a queue's waiters) until it holds."""
    import time
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0)       # yield only: the waiter is blocked in a futex


def _retry(check, tries=50):
    """Runs check() until a pass raises no AssertionError; the last
    pass's error if none does."""
    for i in range(tries):
        try:
            return check()
        except AssertionError:
            if i == tries - 1:
                raise


def test_ls_and_info_show_queue_depth_bytes_and_waiters(cli, shm_prefix):
    """ls and info (text and --json) show a queue's depth, bytes used of
    its capacity and its blocked producers and consumers: the figures
    `show` computes (shmkit_queue_parse), here with a producer blocked on
    a full queue and a consumer blocked on an empty one."""
    import threading
    import shmkit
    full = shmkit.Queue(3, name=shm_prefix + "full", create=True, track=False,
                        capacity=4096)
    empty = shmkit.Queue(name=shm_prefix + "empty", create=True, track=False,
                         capacity=4096)
    for i in range(3):
        full.put(i)
    got, put = [], []

    def producer():
        try:
            put.append(full.put(3))
        except BaseException as e:      # checked below, after the join
            put.append(e)

    threads = [threading.Thread(target=producer),
               threading.Thread(target=lambda: got.append(empty.get()))]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: full.stat()["waiting_producers"] == 1 and
                  empty.stat()["waiting_consumers"] == 1)
        used = full.stat()["bytes_used"]
        assert 0 < used < 4096

        def snapshots():
            """The CLI's figures, each a snapshot of its own. A Python
            get or put waits in 50 ms slices (ext_next_slice) and between
            two it is briefly not counted as waiting, so a pass that saw
            a waiter missing is run again (_retry)."""
            entries = {e["name"]: e for e in
                       json.loads(run(cli, "ls", "--json").stdout)}
            f, e = entries[full.name], entries[empty.name]
            assert f["kind"] == e["kind"] == "queue"
            assert (f["queue"]["depth"], f["queue"]["bytes_used"],
                    f["queue"]["capacity"], f["queue"]["max_messages"],
                    f["queue"]["waiting_producers"],
                    f["queue"]["waiting_consumers"]) == (3, used, 4096, 3, 1, 0)
            assert (e["queue"]["depth"], e["queue"]["bytes_used"],
                    e["queue"]["waiting_producers"],
                    e["queue"]["waiting_consumers"]) == (0, 0, 0, 1)
            assert json.loads(run(cli, "info", full.name, "--json").stdout)["queue"] \
                == f["queue"]
            # The same figures as show's (one code path).
            shown = json.loads(run(cli, "show", full.name, "--json").stdout)
            assert {k: shown[k] for k in f["queue"]} == f["queue"]
            # This process made records in it: one liveness slot, held by its
            # "shmkit-live" thread, whichever thread made them.
            assert (shown["slots"], shown["slots_held"], shown["attached"]) == \
                (120, 1, 1)
            r = run(cli, "show", full.name)
            assert "attached:   1 process holding 1 of 120 liveness slots\n" \
                in r.stdout
            assert f": pid {os.getpid()}, thread " in r.stdout
            rows = {l.split(" ", 1)[0]: l for l in
                    run(cli, "ls", "--bytes").stdout.splitlines()}
            assert rows[full.name].endswith(f" 3 msgs, {used}/4096, waiting: 1 put 0 get")
            assert rows[empty.name].endswith(" 0 msgs, 0/4096, waiting: 0 put 1 get")
            assert run(cli, "ls").stdout.splitlines()[0].split()[-1] == "CONTENTS"
            r = run(cli, "info", full.name, "--bytes")
            assert "depth:     3 messages waiting (0 being written, 0 being read)\n" \
                in r.stdout
            assert f"used:      {used} of 4096 bytes\n" in r.stdout
            assert "waiting:   1 producer, 0 consumers\n" in r.stdout
            r = run(cli, "info", empty.name)
            assert "used:      0 B of 4.0 KiB\n" in r.stdout
            assert "waiting:   0 producers, 1 consumer\n" in r.stdout

        _retry(snapshots)
        # Other kinds: no queue member, "-" in CONTENTS.
        blk = shared_memory.SharedMemory(name=shm_prefix + "raw", create=True,
                                         size=64)
        resource_tracker.unregister(blk._name, "shared_memory")
        blk.close()
        assert "queue" not in json.loads(run(cli, "info", blk.name,
                                              "--json").stdout)
        raw_row = [l for l in run(cli, "ls").stdout.splitlines()
                   if l.startswith(blk.name + " ")]
        assert raw_row and raw_row[0].endswith(" -"), raw_row
    finally:
        full.get()
        empty.put("bye")
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads), "a blocked thread never returned"
    assert put == [None], put           # the blocked put went through
    assert got == ["bye"]
    assert [full.get(block=False) for _ in range(3)] == [1, 2, 3]
    full.close()
    empty.close()


def test_info_names_the_manager_owning_a_queue(cli):
    import shmkit
    with shmkit.SharedMemoryManager() as smm:
        q = smm.Queue(capacity=4096)
        pid = smm._live().pid
        e = json.loads(run(cli, "info", q.name, "--json").stdout)
        assert (e["kind"], e["lifecycle"]) == ("queue", f"manager {pid}")
        assert f"lifecycle: manager {pid}\n" in run(cli, "info", q.name).stdout
        q.close()
    assert not (SHM / q.name).exists()
