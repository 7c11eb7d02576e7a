"""Shared pytest fixtures: per-test names that are always cleaned up, and
the paths of the built shmkit command and library."""
import os
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


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("SHMKIT_CLI")
    if not path or not os.path.exists(path):
        pytest.fail("SHMKIT_CLI must name the built shmkit command (run via ctest)")
    return path
