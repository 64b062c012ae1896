"""``capacity``: the most a middle forwards — the highest rate with loss under a threshold.

A compiled generator (``traffic.c``, ``sendmmsg``, paced) on the sender host offers
``forward`` capsules at a fixed rate for a trial of fixed duration; a compiled sink
(``recvmmsg``) on the receiver host counts those that arrive whole and name the code object
sent (anything else it counts apart). ``search.find_capacity`` runs the trials of one
search; a cell's capacity is the median of ``--trials`` searches, which run in rounds (one
search of every cell per round) so drift of a shared machine hits every cell alike.

The middles: ``none`` (the generator straight to the sink: what the tools themselves
reach), ``passive`` (the middle host's kernel forwards IP), ``cforw`` (the Python forwarder),
``cbatch`` (the C batched forwarder of ``traffic.c``: ``recvmmsg``/``sendmmsg`` batches of 64,
the practical limit of a socket forwarder) and ``active``/``activecopy`` (a ``pan node``
with every runtime enabled; the capsule's code object chooses the runtime). Baselines carry
no runtime: their rows name runtime ``-``.

For every middle process the harness records its CPU time per forwarded capsule over the
highest passing trial (``/proc/PID/stat``), and its system calls per forwarded capsule over
one more trial at that rate with a counter attached (``syscalls.py``: perf, else strace).

``--drain N`` measures a middle process without a generator beside it: the middle is stopped
(``SIGSTOP``), the generator queues N capsules in its sockets and ends, and the middle is let
go and timed until the sink's count stops; the rate is what it forwarded over that time. Each
search is then one such drain. It is how thread counts compare on a machine whose CPUs the
generator would otherwise share with the middle. The sink is kept off the middle's CPUs too:
it gets a receive buffer that holds a whole drain, is stopped while the middle drains (the
kernel queues what arrives; the drain is over once the middle has run less than
``_DRAIN_QUIET_NS`` over ``_DRAIN_SETTLE_S``), and the drain's end is the kernel's arrival
stamp of the last capsule (``SO_TIMESTAMPNS``), not when the sink got round to reading it. The
middle alone runs in the timed part; the kernel's delivery into the sink's socket is part of
what its sends cost, as for any forwarder. Where the buffer or the stamps are refused the sink
reads beside the middle as in a search, and the note says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.net.client import Client

from .configuration import START_LIMIT_S, _pan_node, copy_on_send_unsupported, node_toml
from .dispatch import forward_capsule
from .load import OthersShare
from .noise import cell_key
from .search import Probe, Search, find_capacity
from .syscalls import SyscallCount, counter_method, cpu_seconds, run_ns, with_children
from .testbed import Proc, Testbed

__all__ = ["BASELINE_RUNTIME", "CAPACITY_CONFIGS", "CapacityOutcome", "run_capacity"]

#: the runtime a baseline middle's rows name (it runs no code object)
BASELINE_RUNTIME = "-"
CAPACITY_CONFIGS = ("none", "passive", "cforw", "cbatch", "active", "activecopy")
#: a generator or sink that has not answered by then hangs (guards, not measures)
_ANSWER_LIMIT_S = 60.0
#: the sink's count is final once it has not moved for this long after the generator stopped
_SETTLE_S = 0.1
#: rate of the untimed warm-up trials (capsules/s): low enough for every middle
WARMUP_RATE = 2000.0
#: the rate a drain's generator queues at (capsules/s): the middle is stopped, so only the
#: generator's own pace matters
DRAIN_FILL_RATE = 400_000.0
#: a drain is over once the sink's count has not moved for this long
_DRAIN_SETTLE_S = 0.2
#: how often a drain asks the sink for its count (when the kernel stamps arrivals, the poll
#: only finds the end; without stamps it times it)
_DRAIN_POLL_S = 0.001
_DRAIN_POLL_STAMPED_S = 0.01
#: receive buffer a drain's sink asks per capsule queued, beyond twice its length (the
#: kernel's own bookkeeping of each datagram it holds)
_DRAIN_OVERHEAD_BYTES = 1024
#: a drained middle is quiet once it has run less than this over ``_DRAIN_SETTLE_S`` (its
#: event loop's own ticks cost far less)
_DRAIN_QUIET_NS = 2_000_000


@dataclass
class CapacityOutcome:
    """What ``run_capacity`` adds to a run besides rows: flagged cells and how calls were counted."""

    flags: dict[str, str] = field(default_factory=dict)
    #: "perf", "strace" or why system calls were not counted
    syscall_method: str = ""
    #: pan middles with several fast-path threads: "TOPOLOGY CONFIG" -> capsules each thread
    #: finished in C over the whole run (the event loop's thread first)
    threads: dict[str, list[int]] = field(default_factory=dict)
    #: the same middles: the time their node's lock was held (the work that stays one thread
    #: at a time) as a share of the CPU time the process used, over the whole run
    serial: dict[str, float] = field(default_factory=dict)


class Sink:
    """The sink process on the receiver host and the counts it reports."""

    def __init__(self, bed: Testbed, binary: Path, bind: str, gro: bool = True):
        """``gro``: read with UDP_GRO (a GSO message arrives whole, its datagrams counted each)."""
        self.proc = bed.spawn("receiver", [str(binary), "sink", bind, *([] if gro else ["plain"])], "sink", stdin=True)
        self.bind = bind
        #: the kernel's arrival time (CLOCK_REALTIME ns) of the latest capsule counted, once
        #: ``aside`` asked for stamps (0 before any)
        self.last_ns = 0
        #: the receive buffer ``aside`` got (bytes; 0 before any), and whether arrivals are stamped
        self.buffer = 0
        self.stamping = False

    def _ask(self, line: str, answer: str) -> str:
        stdin = self.proc.popen.stdin
        assert stdin is not None
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except OSError:
            raise PanError(f"the sink stopped: {self.proc.stderr_tail() or 'no output'}") from None
        return self.proc.wait_line(answer, _ANSWER_LIMIT_S)

    def expect(self, name: bytes, length: int) -> None:
        """Count from now on only capsules naming ``name`` that are ``length`` bytes long."""
        self._ask(f"expect {name.hex()} {length}", "expecting")

    def count(self) -> tuple[int, int]:
        """(capsules of the flow, other datagrams) the sink counted since it started."""
        words = self._ask("count", "count ").split()
        if len(words) > 5:
            self.last_ns = int(words[5])
        return int(words[1]), int(words[2])

    def aside(self, buffer: int) -> bool:
        """Make the sink able to stand aside while a middle drains: a receive buffer of
        ``buffer`` bytes (all a drain queues) and the kernel's arrival stamps. False (it
        reads beside the middle) where either is refused. The sink serves every cell of its
        middle: a cell of larger capsules asks for more."""
        if buffer > self.buffer:
            self.buffer = int(self._ask(f"buffer {buffer}", "buffer ").split()[1])
        if self.buffer >= buffer and not self.stamping:
            self.stamping = self._ask("stamp", "stamp").strip() == "stamping"
        return self.buffer >= buffer and self.stamping

    def settle(self, limit: float, quiet: float = _SETTLE_S, poll: float = _SETTLE_S) -> tuple[int, int, float]:
        """The counts once they have not moved for ``quiet`` seconds, read every ``poll`` (the
        middle has forwarded what it queued), or after ``limit`` seconds of steady movement (a
        guard); and when (``time.monotonic``) they last moved."""
        last = self.count()
        moved = time.monotonic()
        deadline = moved + limit
        while time.monotonic() < deadline:
            time.sleep(poll)
            counts = self.count()
            now = time.monotonic()
            if counts != last:
                last, moved = counts, now
            elif now - moved >= quiet:
                break
        return last[0], last[1], moved


@dataclass
class Middle:
    """One configuration brought up for the experiment: where the generator sends, the sink
    that counts, and the middle's process (None for none and passive) and node link."""

    config: str
    source: str
    dest: str
    sink: Sink
    proc: Proc | None = None
    client: Client | None = None
    #: the receiver's address, for a capsule's forward header
    receiver: str = ""
    #: source ports the generator sends from (the pan middles learn each as a neighbour)
    flows: int = 1
    #: how a pan middle runs its runtimes (``process``: its workers' CPU and calls count too)
    isolation: str = "in_process"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _start_middle(bed: Testbed, config: str, binary: Path, runtimes: list[str], max_size: int, threads: int = 1,
                  flows: int = 1, isolation: str = "in_process", sink_gro: bool = True,
                  worker_poll: tuple[int, int] | None = None, thread_cpus: Sequence[int] = ()) -> Middle:
    """Start ``config``'s middle (a pan node with ``threads`` fast-path threads, on ``thread_cpus``
    in turn when given, learning the
    generator's ``flows`` source ports as neighbours, running its runtimes in ``isolation``)
    and the sink (reading with UDP_GRO when ``sink_gro``)."""
    s, m, r = bed.hosts["sender"], bed.hosts["middle"], bed.hosts["receiver"]
    ps, pm, pr = (bed.port(role, config) for role in ("sender", "middle", "receiver"))
    if config == "none":
        s_addr, r_addr = f"{s.ip_toward('receiver')}:{ps}", f"{r.ip_toward('sender')}:{pr}"
    else:
        s_addr, r_addr = f"{s.ip_toward('middle')}:{ps}", f"{r.ip_toward('middle')}:{pr}"
    m_addr = f"{m.ip_toward('sender')}:{pm}"
    m_listen = f"0.0.0.0:{pm}" if m.isolated else m_addr
    sink = Sink(bed, binary, r_addr, gro=sink_gro)
    mid = Middle(config, s_addr, r_addr if config in ("none", "passive") else m_addr, sink, receiver=r_addr,
                 isolation=isolation if config in ("active", "activecopy") else "in_process")
    if config in ("active", "activecopy"):
        mid.flows = flows  # other middles relay one source only
    if config == "cforw":
        mid.proc = bed.spawn("middle", [sys.executable, "-m", "pan_runtime.bench.forwarder", m_listen, s_addr, r_addr],
                             "cforw forwarder")
        mid.proc.wait_line("ready", START_LIMIT_S)
    elif config == "cbatch":
        mid.proc = bed.spawn("middle", [str(binary), "fwd", m_listen, s_addr, r_addr], "cbatch forwarder")
        mid.proc.wait_line("ready", START_LIMIT_S)
    elif config in ("active", "activecopy"):
        app = bed.tmp / f"cap-{'ac' if config == 'activecopy' else 'a'}-m.sock"
        toml = node_toml(f"{config}-middle", m_listen, m_addr, app, [(s_addr, s_addr), (r_addr, r_addr)], [], runtimes,
                         max(9216, max_size), copy_on_send=config == "activecopy", threads=threads,
                         accept_unknown_peers=flows > 1, isolation=isolation, worker_poll=worker_poll,
                         thread_cpus=thread_cpus)
        mid.proc = _pan_node(bed, "middle", f"cap-{config}", toml)
        mid.proc.wait_line("pan node", START_LIMIT_S)
        mid.client = Client.connect(app, timeout=START_LIMIT_S, request_timeout=120.0)
    return mid


def _per_thread(mid: Middle) -> tuple[list[int], float | None]:
    """Capsules each of a pan middle's fast-path threads finished in C so far ([] for others),
    and the time its node's lock was held as a share of the process's CPU time (None: no lock)."""
    if mid.client is None:
        return [], None
    fast = mid.client.stats().get("links", {}).get("fast_path", {})
    cpu = cpu_seconds(mid.proc.pid) if mid.proc is not None else None
    held = fast.get("lock_held_ns")
    share = held / 1e9 / cpu if held is not None and cpu else None
    return [int(t.get("finished_in_c", 0)) for t in fast.get("threads", [])], share


class _Cell:
    """One (configuration, runtime, size) measured: its capsule, and the trial function."""

    def __init__(self, bed: Testbed, binary: Path, mid: Middle, runtime: str, name: bytes, size: int, duration: float):
        self.bed, self.binary, self.mid, self.runtime, self.size, self.duration = bed, binary, mid, runtime, size, duration
        self.name = name
        wire = forward_capsule(name, NodeAddress.parse(mid.source), NodeAddress.parse(mid.receiver), size)
        self.length = len(wire)
        self.file = bed.tmp / f"cap-{mid.config}-{runtime.replace('/', '-')}-{size}.bin"
        self.file.write_bytes(wire)
        self.searches: list[Search] = []
        self.syscalls: list[float] = []
        self.stray = 0
        #: its searches were drains (``drain``)
        self.drained = False
        #: its drains' sink stood aside (``Sink.aside``: stopped while the middle drained)
        self.sink_aside = False

    def _generate(self, rate: float, seconds: float) -> tuple[int, int]:
        """Run the generator toward the middle at ``rate`` capsules/s for ``seconds``; (capsules
        it sent, ns it took)."""
        mid = self.mid
        gen = self.bed.spawn("sender", [str(self.binary), "gen", mid.source, mid.dest, f"{rate:.1f}",
                                        f"{seconds:.3f}", str(self.file),
                                        *([str(mid.flows)] if mid.flows > 1 else [])], "generator")
        try:
            out, err = gen.popen.communicate(timeout=seconds + _ANSWER_LIMIT_S)
        except Exception:
            gen.stop()
            raise
        finally:
            if gen in self.bed.procs:
                self.bed.procs.remove(gen)
        words = out.split()
        if gen.popen.returncode != 0 or len(words) < 6 or words[0] != "sent":
            raise PanError(f"the generator failed (exit {gen.popen.returncode}): {err.strip()[-400:] or out.strip()}")
        return int(words[1]), int(words[3])

    def trial(self, rate: float, count_calls: str | None = None) -> Probe:
        """One trial at ``rate`` capsules/s; with ``count_calls`` (perf or strace) the middle's
        system calls are counted over it (``extra["syscalls"]``)."""
        mid = self.mid
        mid.sink.expect(self.name, self.length)
        before, stray0 = mid.sink.count()
        pid = mid.proc.pid if mid.proc is not None else None
        counter = None
        # a middle in process isolation runs the code in its workers: count them too
        pids = (with_children(pid) if mid.isolation == "process" else [pid]) if pid is not None else []
        if count_calls and pids:
            counter = SyscallCount(pids, self.duration + 0.6, count_calls)
            counter.start()
        cpu0 = _cpu(pids)
        try:
            sent, ns = self._generate(rate, self.duration)
            after, stray1, _moved = mid.sink.settle(max(5.0, 4 * self.duration))
            cpu1 = _cpu(pids)
            calls = counter.stop() if counter is not None else None
        finally:
            if counter is not None:
                counter.close()
        self.stray += stray1 - stray0
        extra: dict[str, float] = {}
        if cpu0 is not None and cpu1 is not None:
            extra["cpu_s"] = cpu1 - cpu0
        if calls is not None:
            extra["syscalls"] = float(calls)
        return Probe(rate, sent, after - before, max(ns, 1) / 1e9, extra)

    def drain(self, count: int) -> Search:
        """One drain of ``count`` capsules (``--drain``) as a search of one probe: the capsules
        the middle forwarded over the seconds from its release to the sink's last count."""
        mid = self.mid
        if mid.proc is None:
            raise PanError(f"--drain needs a middle process to stop; {mid.config} forwards in the kernel")
        pids = with_children(mid.proc.pid) if mid.isolation == "process" else [mid.proc.pid]
        aside = self.sink_aside = mid.sink.aside(count * (2 * self.length + _DRAIN_OVERHEAD_BYTES))
        mid.sink.expect(self.name, self.length)
        before, stray0 = mid.sink.count()
        seconds = count / DRAIN_FILL_RATE
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        sink = mid.sink.proc.pid
        try:
            queued, _ns = self._generate(DRAIN_FILL_RATE, seconds)
            cpu0 = _cpu(pids)
            if aside:
                os.kill(sink, signal.SIGSTOP)
        finally:
            start, start_ns = time.monotonic(), time.clock_gettime_ns(time.CLOCK_REALTIME)
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)
        if aside:
            try:
                _quiet(pids, max(30.0, 100 * seconds))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(sink, signal.SIGCONT)
        last, stray1, last_t = mid.sink.settle(max(30.0, 100 * seconds), _DRAIN_SETTLE_S,
                                               _DRAIN_POLL_STAMPED_S if aside else _DRAIN_POLL_S)
        cpu1 = _cpu(pids)
        self.stray += stray1 - stray0
        took = (mid.sink.last_ns - start_ns) / 1e9 if aside else last_t - start
        drained, took = last - before, max(took, 1e-6)
        extra: dict[str, float] = {"queued": float(queued)}
        if cpu0 is not None and cpu1 is not None:
            extra["cpu_s"] = cpu1 - cpu0
        probe = Probe(drained / took, drained, drained, took, extra)
        self.drained = True
        return Search([probe], probe if drained > 0 else None, ceiling=False)


def _quiet(pids: list[int], limit: float) -> None:
    """Return once ``pids`` together ran less than ``_DRAIN_QUIET_NS`` over ``_DRAIN_SETTLE_S``
    (a drained middle has nothing left), or after ``limit`` seconds (a guard) or when one is gone."""
    deadline = time.monotonic() + limit
    marks: list[tuple[float, float]] = []
    while time.monotonic() < deadline:
        ran = _cpu(pids)
        if ran is None:
            return
        now = time.monotonic()
        marks.append((now, ran))
        while len(marks) > 1 and now - marks[1][0] >= _DRAIN_SETTLE_S:
            marks.pop(0)
        if now - marks[0][0] >= _DRAIN_SETTLE_S and (ran - marks[0][1]) * 1e9 < _DRAIN_QUIET_NS:
            return
        time.sleep(_DRAIN_POLL_STAMPED_S)


def _cpu(pids: list[int]) -> float | None:
    """CPU seconds of ``pids`` together (None: none given, or one is gone): from the threads'
    run times in ns where the kernel keeps them (a drain of a few ms is a tick or none of
    ``cpu_seconds``' clock), else from the clock ticks."""
    runs = [run_ns(p) for p in pids]
    if runs and None not in runs:
        return sum(runs) / 1e9  # type: ignore[arg-type]
    times = [cpu_seconds(p) for p in pids]
    return sum(times) if times and None not in times else None  # type: ignore[arg-type]


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "trial_min": min(values), "trial_max": max(values)}


def _record(cells: list[_Cell], topo: str, config_of: Callable[[_Cell], str], add: Callable[..., None],
            out: CapacityOutcome, shares: dict[int, float | None]) -> None:
    for c in cells:
        if not c.searches:
            continue
        key = ("capacity", topo, config_of(c), c.runtime, c.size)
        caps = [s.capacity / 1000 for s in c.searches]
        add(*key, "capacity_kpps", _stats(caps))
        add(*key, "mbit_per_s", {k: v * 1000 * c.size * 8 / 1e6 for k, v in _stats(caps).items()})
        best = [s.best for s in c.searches if s.best is not None]
        losses = [b.loss * 100 for b in best]
        if losses:
            add(*key, "loss_pct", _stats(losses))
        cpu = [b.extra["cpu_s"] / b.received * 1e6 for b in best if "cpu_s" in b.extra and b.received > 0]
        if cpu:
            add(*key, "cpu_us_per_capsule", _stats(cpu))
        if c.syscalls:
            add(*key, "syscalls_per_capsule", _stats(c.syscalls))
        share = shares.get(id(c))
        if share is not None:
            add(*key, "others_cpu", {"median": share})
        notes = []
        if c.drained:
            queued = [b.extra.get("queued", 0.0) for b in best]
            notes.append(f"drain: the rate it forwarded {statistics.median(queued):.0f} queued capsules (median of "
                         f"the drains' {', '.join(str(b.received) for b in best)} reaching the sink) after a stop, "
                         + ("to the kernel's stamp of the last arrival, the sink stopped meanwhile"
                            if c.sink_aside else "the sink reading beside it (its buffer or stamps refused)"))
        elif any(s.generator_limited for s in c.searches):
            notes.append("generator-limited: the middle forwarded all the generator could offer (the capacity is at least that)")
        elif any(s.ceiling for s in c.searches):
            notes.append("at the top of the search: the middle forwarded the highest rate tried (raise --top-rate)")
        if any(s.best is None for s in c.searches):
            notes.append("no rate passed: even the lowest rate tried lost more than the threshold")
        if c.stray:
            notes.append(f"stray datagrams: the sink received {c.stray} datagrams that were not the capsules sent")
        if notes:
            out.flags[cell_key(*key, "capacity_kpps")] = "; ".join(notes)


def run_capacity(
    plan: Any,
    topo: str,
    runtimes: list[str],
    add: Callable[[str, str, str, str, int, str, dict[str, float]], None],
    failed: dict[str, str],
    skipped: dict[str, str],
    progress: Callable[[str], None] | None = None,
    isolation: str = "in_process",
) -> CapacityOutcome:
    """Measure every configuration of ``plan`` that can run on ``topo`` (with ``runtimes`` in
    the pan middles); rows go to ``add``, failures and skips into the dicts. ``isolation``
    ``process``: only the pan middles, running ``runtimes`` in worker processes, their rows
    named ``RUNTIME/process`` (the baselines run no code and are measured once, in-process)."""
    from pan_runtime.cli.protocols import reference_code

    from .options import cell_runtime, config_unsupported
    from .testbed import make_testbed
    from .traffic import traffic_binary

    out = CapacityOutcome()
    binary = traffic_binary()
    method = counter_method()
    out.syscall_method = method or "not counted: neither perf nor strace works here"
    if method is None:
        skipped[f"capacity {topo} syscalls_per_capsule"] = out.syscall_method
    codes: dict[str, CodeObject] = {}
    for rt in runtimes:
        try:
            codes[rt] = reference_code(rt, "forward")
        except PanError as exc:
            failed[f"capacity build {rt}"] = str(exc)
    node_rts = [rt for rt in runtimes if rt in codes]
    # a baseline's capsule still names a code object: a runtime's forward, else a fixed name
    base_name = next(iter(codes.values())).name if codes else hashlib.sha256(b"pan capacity baseline").digest()
    copy_why = copy_on_send_unsupported()
    with make_testbed(topo, plan.placement) as bed, contextlib.ExitStack() as stack:
        middles: list[Middle] = []
        for config in plan.configs:
            if isolation == "process" and config not in ("active", "activecopy"):
                continue
            if getattr(plan, "drain", 0) and config in ("none", "passive"):
                skipped[f"capacity {topo} {config}"] = "--drain stops the middle's process, and this middle has none"
                continue
            why = config_unsupported("capacity", topo, config) or bed.config_unavailable(config) or (
                copy_why if config == "activecopy" else None)
            if config in ("active", "activecopy") and not node_rts:
                why = why or "no runtime to run the forward code in"
            if why:
                skipped[f"capacity {topo} {config}"] = why
                continue
            if progress:
                progress(f"capacity {topo}: starting {config}")
            try:
                mid = _start_middle(bed, config, binary, node_rts, max(plan.sizes), getattr(plan, "threads", 1),
                                    getattr(plan, "flows", 1), isolation, getattr(plan, "sink", "gro") == "gro",
                                    worker_poll=getattr(plan, "worker_poll", None),
                                    thread_cpus=getattr(plan, "thread_cpus", ()))
            except PanError as exc:
                failed[f"capacity {topo} {config}"] = str(exc)
                continue
            stack.callback(mid.close)
            if mid.client is not None:
                try:
                    for rt in node_rts:
                        mid.client.install(codes[rt], pin=True)
                except PanError as exc:
                    failed[f"capacity {topo} {config}"] = f"installing the forward code: {exc}"
                    continue
            middles.append(mid)
        cells: list[_Cell] = []
        for size in plan.sizes:
            from .options import min_size

            if size < min_size("capacity"):
                skipped[f"capacity {topo} {size}"] = f"a forward capsule needs at least {min_size('capacity')} bytes"
                continue
            for mid in middles:
                if mid.client is not None:
                    cells += [_Cell(bed, binary, mid, cell_runtime(rt, isolation), codes[rt].name, size, plan.duration)
                              for rt in node_rts]
                else:
                    cells.append(_Cell(bed, binary, mid, BASELINE_RUNTIME, base_name, size, plan.duration))
        _search_all(plan, topo, cells, failed, out, method, progress, add)
        for mid in middles:
            try:
                per, serial = _per_thread(mid)
            except PanError:
                continue
            key = f"{topo} {mid.config}" + (" process" if mid.isolation == "process" else "")
            if len(per) > 1:
                out.threads[key] = per
            if serial is not None:
                out.serial[key] = serial
    return out


def _label(c: _Cell) -> str:
    return f"{c.mid.config} {c.runtime} {c.size}"


def _search_all(plan: Any, topo: str, cells: list[_Cell], failed: dict[str, str], out: CapacityOutcome,
                method: str | None, progress: Callable[[str], None] | None, add: Callable[..., None]) -> None:
    """Warm every cell up, then run the searches in rounds, and record the rows."""
    live = list(cells)
    shares: dict[int, float | None] = {}
    load = {id(c): OthersShare(lambda c=c: [c.mid.proc.pid] if c.mid.proc else []) for c in cells}
    busy: dict[int, list[float]] = {id(c): [] for c in cells}

    def attempt(c: _Cell, fn: Callable[[], None]) -> None:
        try:
            fn()
        except PanError as exc:
            failed[f"capacity {topo} {_label(c)}"] = str(exc)
            live.remove(c)

    for c in list(live):
        def warm(c: _Cell = c) -> None:
            for _ in range(plan.warmup):
                c.trial(WARMUP_RATE)

        attempt(c, warm)
    for n in range(plan.trials):
        for c in list(live):
            def one(c: _Cell = c, n: int = n) -> None:
                if progress:
                    progress(f"capacity {topo} {_label(c)}: search {n + 1}/{plan.trials}")
                load[id(c)].start()
                drain = getattr(plan, "drain", 0)
                s = c.drain(drain) if drain else find_capacity(c.trial, top=plan.top_rate, threshold=plan.loss,
                                                                 steps=plan.steps)
                share = load[id(c)].stop()
                if share is not None:
                    busy[id(c)].append(share)
                c.searches.append(s)
                if s.best is not None and method is not None and c.mid.proc is not None and not drain:
                    p = c.trial(s.best.target, count_calls=method)
                    if "syscalls" in p.extra and p.received > 0:
                        c.syscalls.append(p.extra["syscalls"] / p.received)

            attempt(c, one)
    for c in cells:
        shares[id(c)] = statistics.median(busy[id(c)]) if busy[id(c)] else None
    _record([c for c in cells if c.searches], topo, lambda c: c.mid.config, add, out, shares)
