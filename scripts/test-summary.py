#!/usr/bin/python3
"""test-summary.py - one summary of a test.sh run, from its reports.

    scripts/test-summary.py LABEL=DIR [LABEL=DIR ...] [--checks FILE]

Each DIR holds the reports of one ctest run (test.sh copies
<build>/test-reports there after the run):
  ctest.xml        ctest's own JUnit report (--output-junit): one entry per
                   ctest test, with ctest's verdict;
  <test>.xml       a JUnit report written by that ctest test itself
                   (Criterion's --xml, pytest's --junitxml): its cases are
                   counted one by one instead of the ctest entry.
A ctest test without its own report counts as one case. A ctest test that
failed although its own report shows no failure (it crashed after writing
it, or failed a check of its own at exit) counts one failure more.
--checks FILE adds test.sh's own checks, one per line: "passed NAME",
"failed NAME" or "skipped NAME".

Prints the failed and skipped cases by name, then one closing line:
    shmkit: N passed, N failed, N skipped
Exits 1 if anything failed, or if a directory has no ctest report.
"""
import os
import sys
import xml.etree.ElementTree as ET


def verdict(case):
    """passed / failed / skipped for one JUnit <testcase>."""
    status = (case.get("status") or "").upper()
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if status in ("FAILED", "CRASHED", "FAIL", "ERROR"):
        return "failed"
    if case.find("skipped") is not None or status in ("SKIPPED", "NOTRUN",
                                                      "DISABLED"):
        return "skipped"
    return "passed"


def cases_of(path):
    """(name, verdict) for every <testcase> of a JUnit file, named
    "<classname or suite>::<name>"."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = []
    for suite in suites:
        for case in suite.iter("testcase"):
            group = case.get("classname") or suite.get("name") or ""
            out.append((f"{group}::{case.get('name')}", verdict(case)))
    return out


def ctest_entries(path):
    """(test name, verdict) for each test of ctest's --output-junit."""
    root = ET.parse(path).getroot()
    return [(c.get("name"), verdict(c)) for c in root.iter("testcase")]


def summarise(label, rdir, results):
    ctest = os.path.join(rdir, "ctest.xml")
    if not os.path.exists(ctest):
        results.append((f"{label}: no ctest report in {rdir}", "failed"))
        return
    for test, ctest_verdict in ctest_entries(ctest):
        own = os.path.join(rdir, f"{test}.xml")
        if not os.path.exists(own):
            results.append((f"{label}/{test}", ctest_verdict))
            continue
        try:
            cases = cases_of(own)
        except ET.ParseError as e:
            results.append((f"{label}/{test}: unreadable report ({e})",
                            "failed"))
            continue
        for name, v in cases:
            results.append((f"{label}/{test}/{name}", v))
        if ctest_verdict == "failed" and all(v != "failed" for _, v in cases):
            results.append((f"{label}/{test} (ctest: failed after its "
                            "cases)", "failed"))
        if not cases:
            results.append((f"{label}/{test} (report lists no case)",
                            ctest_verdict))


def main(argv):
    results = []
    checks = None
    i = 0
    while i < len(argv):
        if argv[i] == "--checks":
            checks = argv[i + 1]
            i += 2
            continue
        label, _, rdir = argv[i].partition("=")
        summarise(label, rdir, results)
        i += 1
    if checks and os.path.exists(checks):
        with open(checks) as f:
            for line in f:
                v, _, name = line.strip().partition(" ")
                if v in ("passed", "failed", "skipped"):
                    results.append((f"test.sh/{name}", v))
    count = {"passed": 0, "failed": 0, "skipped": 0}
    for _, v in results:
        count[v] += 1
    for kind in ("skipped", "failed"):
        names = [n for n, v in results if v == kind]
        if names:
            print(f"{kind} ({len(names)}):")
            for n in names:
                print(f"  {n}")
    print(f"shmkit: {count['passed']} passed, {count['failed']} failed, "
          f"{count['skipped']} skipped")
    return 1 if count["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
