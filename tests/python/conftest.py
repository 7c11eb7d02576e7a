"""Fixtures for the Python tests of shmkit.

Every test gets `names`: it hands out block names under a per-test prefix
and records generated names the test registers; at teardown it removes
whatever of them is left in /dev/shm (and their "<name>.lock" sidecars),
even when the test failed, and fails the test if the test itself left
something behind. Whatever of the session's prefix is still there at the
end is named and fails the run. Multi-process helpers check every child's
exit code.

In a sanitized build (python-sanitized, CMakeLists.txt) ASan's reports go
to files in SHMKIT_SANITIZER_LOG_DIR: a report that appears during a test
fails that test and is shown, whichever process made it (a child, a
daemon, one whose exit status nobody checks). UBSan's go there only with
clang; gcc's libubsan ignores log_path and writes to stderr, so a UBSan
report in a test's captured stderr (where its children's stderr goes too,
unless the test captures theirs itself) fails that test as well.
"""
import itertools
import multiprocessing as mp
import os
import pathlib

import pytest

SHM_DIR = "/dev/shm"
# test.sh's run tag ([a-z0-9]*): in a shared /dev/shm, the run's own names.
RUN_TAG = "".join(c for c in os.environ.get("SHMKIT_TEST_TAG", "")
                  if c.isascii() and c.isalnum()).lower()
SESSION_PREFIX = f"skpy{RUN_TAG}{os.getpid()}x"
_counter = itertools.count()

START_METHODS = ["fork", "spawn", "forkserver"]


def foreign_env(**extra):
    """os.environ without what python-sanitized adds for shmkit's code (the
    sanitizer runtime in LD_PRELOAD, PYTHONMALLOC), plus extra: for running
    programs that are not shmkit's (groff, pip and the compiler it runs,
    mypy), whose own findings are not ours to fail on (Debian's troff
    frees with delete[] what it took from malloc, which ASan reports)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    env.update(extra)
    return env


def shm_exists(name):
    return os.path.exists(os.path.join(SHM_DIR, name))


class Names:
    """Names for one test: new() gives fresh prefixed names; add() records
    a generated name so that teardown removes it too."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.extra = set()
        self._n = itertools.count()

    def new(self, tag="b"):
        return f"{self.prefix}{tag}{next(self._n)}"

    def add(self, name):
        self.extra.add(name.lstrip("/"))
        return name

    def leftovers(self):
        found = set()
        for entry in os.listdir(SHM_DIR):
            if entry.startswith(self.prefix):
                found.add(entry)
        for name in self.extra:
            for cand in (name, name + ".lock"):
                if shm_exists(cand):
                    found.add(cand)
        return sorted(found)

    def cleanup(self):
        left = self.leftovers()
        for entry in left:
            try:
                os.unlink(os.path.join(SHM_DIR, entry))
            except FileNotFoundError:
                pass
        return left


@pytest.fixture
def names(request):
    n = Names(f"{SESSION_PREFIX}{next(_counter)}_")
    failed_before = getattr(request.node, "rep_call", None)
    yield n
    left = n.cleanup()
    call = getattr(request.node, "rep_call", None)
    if left and call is not None and call.passed and failed_before is None:
        pytest.fail(f"test left {left} in /dev/shm", pytrace=False)


SANITIZER_LOGS = os.environ.get("SHMKIT_SANITIZER_LOG_DIR")


def _report_files():
    """The report files in SANITIZER_LOGS as (name, mtime_ns, size): ASan
    opens log_path.PID with O_TRUNC, so a reused PID's new report keeps an
    old report's name."""
    if not SANITIZER_LOGS or not os.path.isdir(SANITIZER_LOGS):
        return set()
    found = set()
    for e in os.scandir(SANITIZER_LOGS):
        st = e.stat()
        found.add((e.name, st.st_mtime_ns, st.st_size))
    return found


@pytest.fixture(autouse=True)
def fail_on_sanitizer_report():
    """Fails the test if a sanitizer report file appeared (or was rewritten)
    while it ran."""
    before = _report_files()
    yield
    new = sorted({name for name, _, _ in _report_files() - before})
    if new:
        text = []
        for f in new:
            with open(os.path.join(SANITIZER_LOGS, f), errors="replace") as r:
                text.append(f"---- {f}\n{r.read()}")
        pytest.fail("sanitizer report(s) during this test:\n" + "\n".join(text),
                    pytrace=False)


# UBSan's reports start "FILE:LINE:COL: runtime error: ".
UBSAN_REPORT = ": runtime error: "


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # gcc's libubsan ignores log_path: its reports are found in the
    # stderr captured in the phase (setup, call or teardown) they came in
    # (rep.capstderr would repeat the earlier phases' too).
    err = "".join(text for name, text in rep.sections
                  if name == f"Captured stderr {rep.when}")
    if SANITIZER_LOGS and rep.passed and UBSAN_REPORT in err:
        rep.outcome = "failed"
        rep.longrepr = f"UBSan report during this test's {rep.when}:\n" + err
    setattr(item, "rep_" + rep.when, rep)


def pytest_sessionfinish(session, exitstatus):
    """Objects of this session still in /dev/shm fail the run: they are
    named (a leftover is a bug to see, not to tidy away), then removed so a
    run outside a private /dev/shm leaves nothing on the host."""
    left = sorted(e for e in os.listdir(SHM_DIR) if e.startswith(SESSION_PREFIX))
    if not left:
        return
    print(f"\nthe session left {len(left)} object(s) in {SHM_DIR}: "
          + ", ".join(left))
    for e in left:
        try:
            os.unlink(os.path.join(SHM_DIR, e))
        except FileNotFoundError:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(params=START_METHODS)
def ctx(request):
    return mp.get_context(request.param)


def wait_pid_gone(pid, timeout=30.0):
    """Waits until process pid (not necessarily our child) has exited, with
    a pidfd: no polling. Returns False on timeout."""
    import select
    if pid <= 0:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(timeout * 1000))
    finally:
        os.close(fd)


def run(ctx, target, *args, timeout=120):
    """Runs target(*args) in a child of context ctx; asserts it exits 0."""
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
        pytest.fail(f"child {target.__name__} hung")
    assert p.exitcode == 0, f"child {target.__name__} exit code {p.exitcode}"


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def join_ok(p, timeout=120, expect=0):
    p.join(timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
        pytest.fail("child hung")
    assert p.exitcode == expect, f"child exit code {p.exitcode}, expected {expect}"


@pytest.fixture(scope="session")
def cli():
    """Path of the built shmkit command (ctest sets SHMKIT_CLI)."""
    path = os.environ.get("SHMKIT_CLI")
    if not path or not os.path.exists(path):
        pytest.fail("SHMKIT_CLI must name the built shmkit command (run via ctest)")
    return path


@pytest.fixture
def shm_prefix(request):
    """A name prefix unique to this test (ending in "_"); whatever carries
    it, or it without the "_", is removed from /dev/shm at teardown, also
    when the test fails."""
    prefix = f"sktest_py{RUN_TAG}{os.getpid()}_{request.node.name[:40]}_"
    prefix = "".join(c if c.isalnum() or c in "_-" else "_" for c in prefix)
    yield prefix
    for p in pathlib.Path("/dev/shm").glob(prefix[:-1] + "*"):
        try:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        except FileNotFoundError:
            pass
