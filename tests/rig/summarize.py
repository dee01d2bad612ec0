#!/usr/bin/env python3
"""Judge one guest console log (markers: see guest/init).

usage: summarize.py MODE LOG EXPECTED_EXECUTABLES COUNTS_OUT

Prints "rig MODE: N passed, M failed" (plus, on failure, why, with an excerpt of
the output) and writes "N M" to COUNTS_OUT.  M counts failed tests plus one per
executable that ended without a libtest summary (crash, abort, hang).
Exit status 1 if anything is wrong: a failed test, an executable exiting
non-zero or printing no "test result:" line, a missing executable, no RIG-END
(timeout or kernel panic), zero tests, or kernel warnings.
"""
import re
import sys

mode, log, expected, counts_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
lines = [ansi.sub("", l.rstrip("\r\n")).replace("\r", "") for l in open(log, errors="replace")]

RESULT = re.compile(r"test result: (\w+)\. (\d+) passed; (\d+) failed;")
execs, cur = [], None   # each: dict(name, lines, rc, passed, failed, results)
warnings, kwarn, ended = None, [], False
for l in lines:
    if m := re.search(r"RIG-TEST-BEGIN (\S+)", l):
        cur = dict(name=m[1], lines=[], rc=None, passed=0, failed=0, results=0, timeout=None)
        execs.append(cur)
    elif m := re.search(r"RIG-TEST-END (\S+) rc=(\d+)", l):
        if cur:
            cur["rc"] = int(m[2])
        cur = None
    elif cur is not None:
        cur["lines"].append(l)
        if m := re.search(r"RIG-TEST-TIMEOUT \S+ after (\d+s)", l):
            cur["timeout"] = m[1]
        if m := RESULT.search(l):
            cur["results"] += 1
            cur["passed"] += int(m[2])
            cur["failed"] += int(m[3])
    if m := re.search(r"RIG-KERNEL-WARNINGS: (\d+)", l):
        warnings = int(m[1])
    if "RIG-KWARN " in l:
        kwarn.append(l.split("RIG-KWARN ", 1)[1])
    if re.search(r"RIG-END uptime=", l):
        ended = True

problems, excerpts = [], []
passed = sum(e["passed"] for e in execs)
failed = sum(e["failed"] for e in execs)
for e in execs:
    why = []
    if e["failed"]:
        why.append(f'{e["failed"]} test(s) failed')
    if e["timeout"]:
        why.append(f'hung, killed after {e["timeout"]}')
    if e["rc"] is None:
        why.append("never finished")
    elif e["rc"] != 0:
        why.append(f'exit code {e["rc"]}')
    if not e["results"]:
        why.append("no 'test result:' line (crash, abort or hang?)")
        failed += 1
    if why:
        problems.append(f'{e["name"]}: ' + ", ".join(why))
        body = e["lines"]
        hung = next((i for i, l in enumerate(body) if "RIG-TEST-TIMEOUT" in l), None)
        start = next((i for i, l in enumerate(body) if l.strip() == "failures:"), None)
        if hung is not None:    # the running test's line, then the threads' stacks
            part = body[max(0, hung - 5):hung + 40]
        elif start is not None:
            part = body[start:start + 40]
        else:
            part = body[-30:]
        excerpts.append((e["name"], part))
if len(execs) != expected:
    problems.append(f"{len(execs)} of {expected} test executables ran")
if not ended:
    problems.append("the guest never reached RIG-END (timeout or kernel panic)")
    if not execs or execs[-1]["rc"] is not None:    # else its excerpt shows the end already
        excerpts.append(("console tail", lines[-25:]))
elif passed + failed == 0:
    problems.append("zero tests ran")
if warnings is None and ended:
    problems.append("no RIG-KERNEL-WARNINGS line")
elif warnings:
    problems.append(f"the kernel printed {warnings} warning line(s)")
    excerpts.append(("kernel warnings", kwarn[:20]))

for name, part in excerpts:
    print(f"---- {mode}: {name} (all of it is in {log}) ----")
    while part and not part[-1].strip():
        part = part[:-1]
    for l in part:
        print("  " + l)
for p in problems:
    print(f"rig {mode}: FAIL {p}")
print(f"rig {mode}: {passed} passed, {failed} failed")
open(counts_out, "w").write(f"{passed} {failed}\n")
sys.exit(1 if problems else 0)
