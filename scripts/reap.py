#!/usr/bin/python3
"""reap.py - runs a command as a child subreaper and waits for everything
it started, daemons included.

    scripts/reap.py [--grace SECONDS] CMD [ARG...]

shmkit's trackers and managers are daemons (double fork): their parent
exits and they are reparented to the nearest subreaper, which is this
process. So once CMD has exited, waiting until we have no child left is
waiting on the daemons' own exit, with no polling: when this returns, no
process of the run is left to remove a block late, and a leftover check is
exact.

Exit status: CMD's (128 + signal if it was killed). If daemons are still
running `--grace` seconds (default 30) after CMD exited, they are named on
stderr, killed (they are this run's own descendants), and the status is 1
if it was 0.
"""
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def our_children():
    """Pids whose parent is this process (from /proc)."""
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces: fields start after ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == me and fields[0] != "Z":
            kids.append(int(entry))
    return kids


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def wait_all(grace):
    """Reaps children until none is left, for at most grace seconds.
    Returns True if none is left."""
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, grace)
    try:
        while True:
            os.wait()
    except ChildProcessError:
        return True
    except Timeout:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv):
    grace = 30.0
    if len(argv) >= 2 and argv[0] == "--grace":
        grace = float(argv[1])
        argv = argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reap.py: prctl(PR_SET_CHILD_SUBREAPER): "
              + os.strerror(ctypes.get_errno()), file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv)
    status = proc.wait()
    if status < 0:
        status = 128 - status
    if wait_all(grace):
        return status
    left = our_children()
    print(f"reap.py: {len(left)} process(es) of the run still running "
          f"{grace:g} s after it ended (killed now):", file=sys.stderr)
    for pid in left:
        print(f"  {pid}: {cmdline(pid)}", file=sys.stderr)
    # Kill in rounds: a killed daemon's own children come to us next.
    for _ in range(10):
        for pid in our_children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if wait_all(5.0):
            break
    return status or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
