"""Hostile restricted_py code through a Node: each snippet ends in a typed fault with a named
reason, the node's memory stays bounded, its calls return, and other code goes on.

The battery runs in a child process under a memory rlimit (``hostile_battery.py``): a node
that does not bound these snippets fails the tests instead of eating the machine. Every
snippet stays under the per-operation guards (no single item over ``max_items``), so only
the memory budget, the held bound and the time budget can stop it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: the calls' time budget: well above what filling the 16 MiB memory budget takes
BUDGET_MS = 200.0
#: what the node may grow by per snippet: freed memory stays with the allocator, 16 MiB a call
RSS_MARGIN = 64 << 20
#: the child's address space: room for the interpreter, far below what unbounded snippets take
ADDRESS_SPACE = 2 << 30


def accept_body(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"def accept(pni, capsule, length):\n{lines}\n"


def kept(expr: str) -> str:
    """Source of an accept that keeps appending EXPR to a local list until stopped."""
    return accept_body(f"keep = []\nwhile True:\n    keep.append({expr})")


#: name -> (source, calls, reasons one of which every call must end in)
BATTERY: dict[str, tuple[str, int, set[str]]] = {
    "string repetition kept": (kept("'x' * 250000"), 1, {"memory_budget"}),
    "range materialised kept": (kept("list(range(250000))"), 1, {"memory_budget"}),
    "list repetition kept": (kept("[0] * 250000"), 1, {"memory_budget"}),
    "bytes repetition kept": (accept_body("n = 250000\nkeep = []\nwhile True:\n    keep.append(b'\\0' * n)"),
                              1, {"memory_budget"}),
    "join kept": (accept_body("parts = ['ab' * 1000] * 100\nkeep = []\nwhile True:\n    keep.append(''.join(parts))"),
                  1, {"memory_budget"}),
    "big-int products kept": (accept_body("x = 7 ** 20000\nkeep = []\nwhile True:\n    keep.append(x * 3)"),
                              1, {"memory_budget"}),
    "concatenation kept": (accept_body("s = 'x' * 200000\nkeep = []\nwhile True:\n    keep.append(s + 'y')"),
                           1, {"memory_budget"}),
    "nested comprehension": (accept_body("return len([[i] * 250000 for i in range(100000)])"), 1, {"memory_budget"}),
    "dict of lists": (accept_body("d = {}\ni = 0\nwhile True:\n    d[i] = [i] * 1000\n    i += 1"),
                      1, {"memory_budget"}),
    "MemoryError caught": (accept_body(
        "keep = []\nwhile True:\n    try:\n        keep.append([0] * 250000)\n    except MemoryError:\n        return FORWARD"
    ), 1, {"memory_budget"}),
    "sorted shared lists": (accept_body("a = [0] * 200000\nreturn len(sorted([a] * 200000))"), 1, {"guard"}),
    "straight-line comparisons": (
        "a = [0] * 250000\nb = list(a)\n" + accept_body("x = a == b\n" * 3000 + "return DONE"), 1, {"budget"}
    ),
    "module global grows": (
        "keep = []\n" + accept_body("for i in range(10):\n    keep.append(bytearray(200000))\nreturn DONE"),
        12, {"memory_held"},
    ),
}


#: snippets only the time budget stops, each step or statement costly: run at the default
#: 50 ms budget, each call must end in a budget fault within a generous multiple of it
TIME_BUDGET_MS = 50.0
TIME_BATTERY: dict[str, tuple[str, int, set[str]]] = {
    "membership in a big list": (
        "a = list(range(200000))\n" + accept_body("n = 0\nwhile True:\n    if -1 in a:\n        n += 1"), 2, {"budget"}
    ),
    "joins of many parts": (accept_body("parts = ['abcd'] * 60000\nwhile True:\n    s = ''.join(parts)"), 2, {"budget"}),
    "straight-line comparisons": (
        "a = [0] * 250000\nb = list(a)\n" + accept_body("x = a == b\n" * 3000 + "return DONE"), 2, {"budget"}
    ),
}


def run_battery(tmp_path_factory, battery: dict[str, tuple[str, int, set[str]]], budget_ms: float) -> dict[str, dict]:
    spec = tmp_path_factory.mktemp("battery") / "snippets.json"
    spec.write_text(json.dumps([[name, src, calls] for name, (src, calls, _) in battery.items()]))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "hostile_battery.py"), str(spec), str(budget_ms)],
            capture_output=True, text=True, timeout=240, preexec_fn=limit,
        )
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # a hang guard: a snippet nothing stopped
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = "timed out after 240 s"
    found = {}
    for line in stdout.splitlines():
        r = json.loads(line)
        found[r["name"]] = r
    found["_stderr"] = {"text": stderr[-2000:]}
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    return run_battery(tmp_path_factory, BATTERY, BUDGET_MS)


@pytest.fixture(scope="module")
def time_results(tmp_path_factory) -> dict[str, dict]:
    return run_battery(tmp_path_factory, TIME_BATTERY, TIME_BUDGET_MS)


def check_outcome(results: dict[str, dict], battery: dict[str, tuple[str, int, set[str]]], name: str,
                  budget_ms: float) -> None:
    _, calls, reasons = battery[name]
    r = results.get(name)
    assert r is not None, f"no result: the node hung or died before this snippet finished\n{results['_stderr']['text']}"
    assert "install_error" not in r, r["install_error"]
    if calls == 1:  # the call ended in a typed fault with the reason this snippet earns
        assert r["errors"] == 1 and set(r["drops"]) == reasons, r
    else:  # calls that grow what the code holds: some end in that fault, none in another
        assert r["errors"] >= 1 and set(r["drops"]) == reasons, r
    assert r["rss_growth"] < RSS_MARGIN, f"the node grew by {r['rss_growth'] >> 20} MiB"
    assert r["worst_cpu_ms"] < 10 * budget_ms, f"a call used {r['worst_cpu_ms']:.0f} ms of CPU"
    # the code beside it ran every capsule sent to it
    assert r["good_ran"] == calls and not r["good_drops"], r


@pytest.mark.parametrize("name", list(BATTERY))
def test_hostile_snippet_ends_in_a_named_fault_and_the_node_stays_bounded(results, name):
    check_outcome(results, BATTERY, name, BUDGET_MS)


@pytest.mark.parametrize("name", list(TIME_BATTERY))
def test_costly_steps_end_in_a_budget_fault_within_a_small_multiple_of_it(time_results, name):
    check_outcome(time_results, TIME_BATTERY, name, TIME_BUDGET_MS)


@pytest.mark.parametrize("name", [n for n, (_, calls, _) in BATTERY.items() if calls == 1])
def test_memory_a_faulted_call_allocated_is_released(results, name):
    r = results.get(name)
    assert r is not None and r.get("held_before") is not None, "no account: nothing is charged"
    assert r["held_after"] <= r["held_before"] + (64 << 10), r


def test_a_growing_module_global_is_reset_not_kept(results):
    r = results.get("module global grows")
    assert r is not None and r.get("held_after") is not None, "no account: nothing is charged"
    assert r["drops"].get("memory_held", 0) >= 1, r
    assert r["held_after"] <= 16 << 20, r
