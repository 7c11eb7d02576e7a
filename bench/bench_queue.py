"""shmkit.Queue beside multiprocessing.Queue doing the same work, in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_queue.py [--tsv] [--quick] [--rounds N]

Each piece of work is: producers put n items, consumers (other processes)
get them; the figure is the wall time from the first put until every
consumer has everything, per item, the median of the rounds (see Rounds),
with the fastest and the slowest round. The first contender of a piece of
work, multiprocessing.Queue, is the reference.

* small: a tuple of an int and a 40-character str
* 1 MiB NumPy array (float64, 512 x 256): shmkit with its default ring
  (16 MiB) and a 4 MiB one (three arrays: the ring stays in the caches),
  and get(copy=False) (the consumer gets a read-only view of the array in
  the ring and drops it; no row's consumer reads an item's contents)
* one at a time (put/get), and shmkit's put_many/get_many of 100
* 1 producer -> 1 consumer, and 2 producers -> 2 consumers

The processes are forked before the clock starts, and each in turn, alone
on the queue while the others wait on their pipes, warms up: it puts some
items (5,000 small ones, up to 4 arrays) and gets them back, the way the
round will (warm_up); a shmkit child then fills the ring once and empties
it (lap). So neither start-up nor first-use costs are timed (first calls,
pickling's first use, starting multiprocessing's feeder thread or
shmkit's liveness thread, and a forked child's mapping of the ring into
its page tables, which shmkit does a chunk at a time as the child's
records reach it), for either contender: the figure is the steady state.
What those costs are is the cold row: fresh processes, no warm-up, the
first 10,000 small items, 1 -> 1 (~1 MB through the ring). No row shows
the cold cost of big items: a fresh child that puts 1 MiB arrays also
populates each 64 KiB chunk of the ring its records reach, ~1 us a page
(up to ~4 ms for the 16 MiB ring, once). Every queue is made for the
round and removed. A producer is done when everything it put is deliverable: for
multiprocessing once its feeder thread has flushed (close + join_thread),
for shmkit when put returned (the message is in the ring; closing the
handle, which unmaps the ring, comes after and is not timed). Then the
main process puts one STOP per consumer.

The clock: each producer reads time.perf_counter (CLOCK_MONOTONIC, the
same clock in every process) just before its first put, each consumer
just after the get that brought its STOP; a round is the earliest
first put to the latest STOP. The trips through the control pipes (the
main process's "go", and each child's answer) are outside the clock:
waking a process that sleeps on its pipe took 1-3 ms here, which is
10-25% of a round of batches but no part of moving the items (until
2026-12-07 the clock started before "go" and stopped when the main
process had the consumers' answers). The main process's STOPs are inside
it whenever a consumer has caught up with the producers before they
come. So is a consumer's wake-up from "go" when it comes after the first
put; what a consumer does before the first put is not (in the cold row:
its first get's set-up, e.g. starting shmkit's liveness thread, ~0.2-0.5
ms of CPU for either contender here, usually done before the producer,
which is sent "go" after it, makes its first put).

Rounds: every contender of every piece of work runs once in round r
(contenders interleaved, their order rotated between rounds) before any
runs in round r + 1, so the rounds of one row are spread over the whole
run (~20 s), not over the few seconds that row alone takes. This virtual
machine has slow spells: for 1-5 s at a time, every 20-60 s, the host
puts its two CPUs far apart, and one cache line's round trip between them
(bench_queue --line-rtt) goes from 70-120 ns to 330-360 ns. Every
hand-over of the queue's mutex and of a record between the CPUs pays
that. bench/spells.py, 300 s on 2026-12-07, medians of the rounds run
near (261) and far (7): shmkit put/get of small items 2 -> 2, 222 and
465 ns an item; put_many/get_many, 85 and 100; put/get 1 -> 1, 232 and
388; multiprocessing.Queue put/get 2 -> 2, which spends its time in
system calls, 3,358 and 3,504. When a row's five rounds ran back to back
(until 2026-12-07), within ~3 s, one spell could cover all of them.

Placement: the children sleep on their pipes until "go", and a process
woken is placed by the scheduler near the one that woke it; a second CPU
takes one of them over only at a later balancing tick (HZ=250 here: ms),
and a round of batches lasts ~6-10 ms. So each child first keeps busy
for SETTLE_S (20 ms) after "go", every contender alike, and the round
measures processes already spread over the CPUs, as long-running ones
are. Put_many/get_many of 100, 1 -> 1, 12 rounds each way, ns an item
(/tmp/lead/pin11.py, 2026-12-07): producer and consumer pinned to one
CPU 122-124, to two 61-68; not pinned 100 (61-127) without the settling,
62 (60-104) with it. multiprocessing.Queue's rounds (~330 ms) hardly
notice (3.2-3.3 us an item either way).

Output, one line per contender: by default work, contender, microseconds
per item and the speed-up over the reference; with --tsv the common
format of bench/ (bench/bench_util.h), which bench/run reads:
    work-id TAB work TAB contender TAB ns per item TAB rounds TAB
    fastest round TAB slowest round (ns per item)
--quick: a fifth of the items per round (bench/run --quick passes it).
100,000 small items a round (not fewer): a round still holds the
STOPs' trip (the producers' answers wake the main process, which puts
them) whenever the consumers keep up, and the warm-up's last pages.
"""
import argparse
import multiprocessing as mp
import os
import queue
import statistics
import sys
import time

import numpy as np

import shmkit

STOP = "stop"
SMALL = (12345, "x" * 40)   # the small item


def mp_queue():
    """The reference: a multiprocessing.Queue for forked children."""
    return mp.get_context("fork").Queue()


def shmkit_queue(cap=16 << 20):
    """A shmkit.Queue of cap bytes (16 MiB: the default)."""
    return shmkit.Queue(capacity=cap)


WARM_SMALL = 5000   # items each process puts and gets before the clock
WARM_BIG = 4


def produce(q, item, n, batch):
    """Puts n items; returns the clock (time.perf_counter, the system's
    CLOCK_MONOTONIC, the same in every process) at the first put."""
    t = time.perf_counter()
    if batch:
        put_many = q.put_many
        for i in range(0, n, batch):
            put_many([item] * min(batch, n - i))
    else:
        put = q.put
        for _ in range(n):
            put(item)
    return t


def consume(q, batch, copy):
    """Gets until STOP; returns how many items came and the clock when
    the STOP came (it comes after every item). The loop does as
    little per item as it can, and the same for every contender: the
    items are never str, so a str is a STOP (and the STOPs, put after
    every item, come last). copy=False: get leaves out-of-band buffers
    (the arrays' data) in the ring until the array goes: the loop keeps
    no reference to one past its turn (a consumer holding one while it
    waits for the next could hold the last free space of a small ring)."""
    got = 0
    if batch:
        get_many = q.get_many
        while True:
            msgs = get_many(batch)
            if msgs[-1].__class__ is not str:
                got += len(msgs)
                continue
            stops = 0
            while stops < len(msgs) and msgs[-1 - stops].__class__ is str:
                stops += 1
            t = time.perf_counter()
            for _ in range(stops - 1):      # another consumer's stop
                q.put(STOP)
            return got + len(msgs) - stops, t
    get = q.get
    if copy:
        while get().__class__ is not str:
            got += 1
    else:
        while get(copy=False).__class__ is not str:
            got += 1
    return got, time.perf_counter()


def warm_up(q, item, batch, copy, k, lap_too=False):
    """Puts up to k items (as many as fit) and gets them back, alone on
    the queue (every other process waits on its pipe), the way the round
    will: this process has then made its first calls, pickled the item,
    started its threads (multiprocessing's feeder, shmkit's liveness
    thread) and touched the pages of the ring that a round uses (a forked
    child inherits no page table entries of a shared mapping: each first
    touch of a page would be a page fault, in the round); lap_too: a
    shmkit child then does a lap (below)."""
    if batch:
        put = q.put_many([item] * k, False)
    else:
        put = 0
        while put < k:
            try:
                q.put(item, False)
            except queue.Full:
                break
            put += 1
    got = 0
    while got < put:
        if batch:
            got += len(q.get_many(batch))
        else:
            if copy:
                q.get()
            else:
                q.get(copy=False)
            got += 1
    if lap_too and isinstance(q, shmkit.Queue):
        lap(q, item)


def lap(q, item):
    """shmkit: fills the ring with the item, then empties it. A forked
    child maps the ring into its page tables a chunk at a time, the first
    time a record it writes or reads lies there (so a short-lived child
    pays for a few chunks, not the whole ring): a round that walks the
    ring further than the warm-up did would time that first lap's
    populating. One lap, alone on the queue, maps every chunk."""
    put = 0
    while True:
        try:
            if isinstance(item, np.ndarray):
                q.put(item, False)
                put += 1
            else:
                put += q.put_many([item] * 100, False)
        except queue.Full:
            break
    while put > 0:
        put -= len(q.get_many(100))


SETTLE_S = 0.02


def settle():
    """Keeps this process busy for SETTLE_S after "go", before its work:
    see "Placement" above."""
    end = time.perf_counter() + SETTLE_S
    while time.perf_counter() < end:
        pass


def child_main(ctl, q, warm, work):
    """A producer or consumer: warms up when told (warm), says so, then
    does its work (work()) when told to go (after settle()) and sends
    back its result."""
    ctl.recv()
    warm()
    ctl.send(1)
    ctl.recv()
    settle()
    ctl.send(work())
    if not hasattr(q, "_jointhread"):
        q.close()   # shmkit: unmaps the ring (~1 ms for 16 MiB), untimed
    os._exit(0)


def producer_work(q, item, n, batch):
    t = produce(q, item, n, batch)
    if hasattr(q, "_jointhread"):
        # multiprocessing: what put returned on may still sit in this
        # process's feeder thread; delivered only once it is flushed.
        q.close()
        q.join_thread()
    # shmkit: put returned once the message was in the ring.
    return t


def one_round(make_queue, item, n, producers, consumers, batch, copy=True,
              warm=True):
    """Seconds per item for one round. warm=False: the children do not
    warm up (the round starts with their first call)."""
    ctx = mp.get_context("fork")
    q = make_queue()
    k = WARM_BIG if isinstance(item, np.ndarray) else WARM_SMALL
    k = k if warm else 0
    children = []
    try:
        for c in range(consumers + producers):
            share = n // producers + (c - consumers < n % producers)
            work = ((lambda: consume(q, batch, copy)) if c < consumers else
                    (lambda s=share: producer_work(q, item, s, batch)))
            ctl, child_ctl = ctx.Pipe()
            p = ctx.Process(target=child_main, args=(
                child_ctl, q,
                lambda: warm_up(q, item, batch, copy, k, warm), work))
            p.start()
            children.append((p, ctl))
        for _, ctl in children:         # one at a time: alone on the queue
            ctl.send("warm")
            ctl.recv()
        warm_up(q, item, 0, True, 1)    # this process puts the STOPs
        for _, ctl in children:
            ctl.send("go")
        t0 = min(ctl.recv() for _, ctl in children[consumers:])
        for _ in range(consumers):
            q.put(STOP)
        done = [ctl.recv() for _, ctl in children[:consumers]]
        got = sum(g for g, _ in done)
        t = max(t1 for _, t1 in done) - t0
        if got != n:
            sys.exit(f"bench_queue: {got} of {n} items arrived")
        for p, _ in children:
            p.join()
            if p.exitcode != 0:
                sys.exit(f"bench_queue: a child failed ({p.exitcode})")
        return t / n
    finally:
        if isinstance(q, shmkit.Queue):
            q.unlink()
        q.close()
        q.join_thread()


TSV = False


def run(works, rounds):
    """works: (work-id, work, contenders); contenders: (label, fn), fn()
    timing one round. Round r of every work is run before round r + 1 of
    any: see "Rounds" above."""
    times = {(w, label): [] for w, _, cs in works for label, _ in cs}
    for r in range(rounds):
        for work_id, _, contenders in works:
            for j in range(len(contenders)):
                label, fn = contenders[(j + r) % len(contenders)]
                times[(work_id, label)].append(fn())
    for work_id, work, contenders in works:
        ref = None
        for label, _ in contenders:
            t = times[(work_id, label)]
            med = statistics.median(t)
            if TSV:
                print(f"{work_id}\t{work}\t{label}\t{med * 1e9:.3f}\t{rounds}"
                      f"\t{min(t) * 1e9:.3f}\t{max(t) * 1e9:.3f}")
                continue
            if ref is None:
                ref, ratio = med, "(reference)"
            else:
                ratio = f"{ref / med:.1f}x faster"
            print(f"{work:<30} {label:<37} {med * 1e6:10.2f} us/item  {ratio}"
                  f"  (rounds {min(t) * 1e6:.2f}-{max(t) * 1e6:.2f})")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tsv", action="store_true",
                    help="work-id, work, contender, ns per item, rounds, fastest"
                    " and slowest round (ns per item); tab-separated")
    a = ap.parse_args()
    global TSV
    TSV = a.tsv
    scale = 0.2 if a.quick else 1.0
    small = SMALL
    big = np.random.default_rng(0).random((512, 256))
    n_small = int(100000 * scale)
    n_big = max(int(200 * scale), 20)
    mpq = mp_queue

    def skq(cap=16 << 20):
        return lambda: shmkit_queue(cap)

    n_cold = int(10000 * scale)
    works = [("py.queue.cold.1to1", "small item, 1->1, cold", [
        ("multiprocessing.Queue put/get",
         lambda: one_round(mpq, small, n_cold, 1, 1, 0, warm=False)),
        ("shmkit.Queue put/get",
         lambda: one_round(skq(), small, n_cold, 1, 1, 0, warm=False)),
        ("shmkit.Queue put_many/get_many 100",
         lambda: one_round(skq(), small, n_cold, 1, 1, 100, warm=False)),
    ])]
    for prod, cons in ((1, 1), (2, 2)):
        shape = f"{prod}->{cons}"
        key = f"{prod}to{cons}"
        works.append((f"py.queue.small.{key}", f"small item, {shape}", [
            ("multiprocessing.Queue put/get",
             lambda p=prod, c=cons: one_round(mpq, small, n_small, p, c, 0)),
            ("shmkit.Queue put/get",
             lambda p=prod, c=cons: one_round(skq(), small, n_small, p, c, 0)),
            ("shmkit.Queue put_many/get_many 100",
             lambda p=prod, c=cons: one_round(skq(), small, n_small, p, c,
                                              100)),
        ]))
        works.append((f"py.queue.array.{key}", f"1 MiB NumPy array, {shape}", [
            ("multiprocessing.Queue put/get",
             lambda p=prod, c=cons: one_round(mpq, big, n_big, p, c, 0)),
            ("shmkit.Queue put/get, 16 MiB ring (the default)",
             lambda p=prod, c=cons: one_round(skq(16 << 20), big, n_big, p,
                                              c, 0)),
            ("shmkit.Queue put/get, 4 MiB ring",
             lambda p=prod, c=cons: one_round(skq(4 << 20), big, n_big, p,
                                              c, 0)),
            ("shmkit.Queue get(copy=False), 4 MiB ring",
             lambda p=prod, c=cons: one_round(skq(4 << 20), big, n_big, p,
                                              c, 0, copy=False)),
        ]))
    run(works, a.rounds)

if __name__ == "__main__":
    main()
