"""Runs hostile restricted_py snippets through a Node and prints one JSON line per snippet.

Run as a child process (``python hostile_battery.py SNIPPETS.json BUDGET_MS``) under a memory rlimit,
so a node that does not bound them fails its test instead of eating the machine. For each
snippet: the drop reasons counted against it, the node's resident set before and after,
the CPU time of its slowest call, what its account holds before and after, and whether a
well-behaved code object installed beside it still ran every capsule sent to it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import Application
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node, NodeConfig

GOOD = b"def accept(pni, capsule, length):\n    n = 0\n    for i in range(length):\n        n += 1\n    return DONE\n"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def held(node: Node, code: CodeObject) -> int | None:
    acct = getattr(node.cache.peek(code.name).loaded, "_account", None)
    return None if acct is None else acct.held


def run(name: str, source: str, calls: int, node: Node, app: Application, good: CodeObject) -> dict:
    code = CodeObject.create("restricted_py", source.encode(), entry={"accept": "accept"})
    out: dict = {"name": name}
    try:
        app.install(code)
    except Exception as exc:  # reported, not raised: the test names what went wrong
        out["install_error"] = f"{type(exc).__name__}: {exc}"
        return out
    before, held_before = rss(), held(node, code)
    worst_cpu = 0.0
    good_in = node.cache.peek(good.name).stats.capsules_in
    for _ in range(calls):
        app.send(code, b"x" * 16)
        app.send(good, b"y" * 16)
        t0 = time.thread_time()
        node.process()
        worst_cpu = max(worst_cpu, time.thread_time() - t0)
    stats = node.cache.peek(code.name).stats
    good_stats = node.cache.peek(good.name).stats
    out.update(
        drops=dict(stats.drops),
        errors=stats.errors,
        rss_growth=rss() - before,
        worst_cpu_ms=worst_cpu * 1000,
        held_before=held_before,
        held_after=held(node, code),
        good_ran=good_stats.capsules_in - good_in,
        good_drops=dict(good_stats.drops),
    )
    node.uninstall(code)
    return out


def main() -> int:
    snippets = json.loads(open(sys.argv[1]).read())
    # a time budget well above what filling the memory budget takes, so the memory snippets
    # end on memory even on a loaded machine (the time budget has tests of its own)
    cfg = NodeConfig(breaker_threshold=1_000_000, budget=Budget(time_ms=float(sys.argv[2])))
    with Node("127.0.0.1:7001", config=cfg) as node:
        app = Application(node)
        good = CodeObject.create("restricted_py", GOOD, entry={"accept": "accept"})
        app.install(good)
        for name, source, calls in snippets:
            print(json.dumps(run(name, source, calls, node, app, good)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
