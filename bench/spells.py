"""bench/spells.py - the machine's slow spells, and what they do to the queue.

    PYTHONPATH=build/python /usr/bin/python3 bench/spells.py [--seconds S] [--build DIR]

On a virtual machine the host decides where the virtual CPUs run, and it
moves them: for seconds at a time the two CPUs of the machine this was
written on sit far apart, and one cache line's round trip between them
goes from ~100 ns to ~350 ns. A queue whose every put and get hands a
mutex and a record from one CPU to the other pays that on each hand-over;
a queue that spends its time in system calls hardly notices.

For S seconds (default 240) this loops over groups of rounds: the line
round trip (bench_queue --line-rtt, from DIR, default build/), one round
of each contender below (bench_queue.one_round, 100,000 small items,
warmed up as in bench_queue.py), the round trip again. A group whose two
round trips are both 250 to 600 ns ran "far", both under 150 ns "near";
any other group is printed but not counted (above 600 ns the trip
measures other load on the machine, which delays the measuring
processes, not where the CPUs are: run it on an idle machine). Last, the
median of every contender's rounds in each class.

Contenders: multiprocessing.Queue put/get 2 -> 2, shmkit put/get 2 -> 2,
put_many/get_many of 100 2 -> 2, and put/get 1 -> 1.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_queue as bq  # noqa: E402

N = 100000


def line_rtt(build):
    out = subprocess.run([os.path.join(build, "bench", "bench_queue"), "--line-rtt"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--build", default="build")
    a = ap.parse_args()

    skq, mpq, small = bq.shmkit_queue, bq.mp_queue, bq.SMALL

    contenders = [
        ("mp.Queue put/get 2->2", lambda: bq.one_round(mpq, small, N, 2, 2, 0)),
        ("shmkit put/get 2->2", lambda: bq.one_round(skq, small, N, 2, 2, 0)),
        ("shmkit batches 2->2", lambda: bq.one_round(skq, small, N, 2, 2, 100)),
        ("shmkit put/get 1->1", lambda: bq.one_round(skq, small, N, 1, 1, 0)),
    ]
    got = {c: {"near": [], "far": []} for c, _ in contenders}
    print("rtt before/after (ns), then ns per item: "
          + ", ".join(c for c, _ in contenders))
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        r0 = line_rtt(a.build)
        ns = [fn() * 1e9 for _, fn in contenders]
        r1 = line_rtt(a.build)
        cls = ("far" if min(r0, r1) >= 250 and max(r0, r1) <= 600 else
               "near" if max(r0, r1) < 150 else None)
        if cls:
            for (c, _), v in zip(contenders, ns):
                got[c][cls].append(v)
        print(f"{r0:4.0f} {r1:4.0f}  " + " ".join(f"{v:6.0f}" for v in ns)
              + f"  {cls or '-'}", flush=True)
    for cls in ("near", "far"):
        for c, _ in contenders:
            v = got[c][cls]
            if v:
                print(f"{cls:4} {c:24} {len(v):4} groups  median {statistics.median(v):7.0f}"
                      f"  ({min(v):.0f}-{max(v):.0f}) ns an item")


if __name__ == "__main__":
    main()
