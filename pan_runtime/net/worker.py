"""A worker process: one runtime, one code object, behind a channel to the node.

Started by the node's supervisor as ``python -m pan_runtime.net.worker NODE_PID MEMFD
WAKE_DOWN WAKE_UP RING_SIZE`` with only those three descriptors (and /dev/null as standard
input and output). It ties its life to the node's, maps the channel, makes its runtime from
the ``HELLO`` record, links its code object from ``LOAD``, then confines itself
(``pan_runtime.isolation.confine``) before any of the code runs (``INIT``). From then on it
sleeps on its eventfd, runs each batch of capsules over their bodies in place in the ring
(through the runtime's C batch entry when its code object has one, ``_batchloop``; the
capsules that entry cannot finish, and code without one, through the runtime's Python; once
the entry's loop is made, ``BatchLoop.serve`` runs the whole cycle of a batch that finishes in
it in C, from reading the record to waking the node, and sleeps there too),
answers the PNI itself where it can (segments, digests, the capsule's fields) and asks the node
for the rest (``FORWARDED``: sends, deliveries, routes, neighbours, link tokens, dependencies,
soft state, logging, and the clock when the node's is not the system's monotonic one).

Exit statuses the supervisor reads: 0 (finalized), ``EXIT_MEMORY`` (the address-space limit
was reached), ``EXIT_PROTOCOL`` (the node's records made no sense), ``EXIT_SETUP`` (the runtime
or the confinement could not be set up; the reason went up first when it could).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment, SegType
from pan_runtime.errors import CodeObjectError, FaultReason, PanError, RuntimeFault, WorkerError
from pan_runtime.isolation import confine, verdicts, wire
from pan_runtime.isolation.channel import Channel
from pan_runtime.isolation.protocol import CAPSULE, EXIT_MEMORY, EXIT_PROTOCOL, EXIT_SETUP, NO_HOP, Kind
from pan_runtime.node.config import MAX_POLL_US
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import BAD_HANDLE, NO_SPACE, OK, TOO_BIG, PniServer
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_runtime.plugin.runtime import LoadedCode, Runtime, as_fault

try:
    from pan_runtime.isolation import _batchloop
except ImportError:  # built at install only where a C compiler was found: the Python path then
    _batchloop = None

__all__ = ["Worker", "main"]

_CAP = CAPSULE
_NO_HOP = NO_HOP
#: batches held back while a capsule's PNI call waits for its reply (the ring bounds them
#: anyway; past this the node broke the protocol)
_MAX_LATER = 1 << 16
#: what ``BatchLoop.run`` gives back a capsule for: its fault, its claim by the host, or its run
_FAULT, _CLAIMED, _PYTHON = 0, 1, 2


class _Capsule:
    """What the PNI reads of a capsule in a worker: its hop limit, home and code name."""

    __slots__ = ("hop_limit", "home", "name", "body")

    def __init__(self) -> None:
        self.hop_limit = 0
        self.home: NodeAddress | None = None
        self.name = b""
        self.body: Segment | None = None


class _Config:
    """What a runtime's fast entry reads of the node's configuration: the budget."""

    def __init__(self, budget: Budget):
        self.budget = budget


class _RingPool:
    """What a runtime's fast entry reads of the node's pool (jvm registers the memory its
    bodies lie in): in a worker, the bodies lie in the ring from the node."""

    def __init__(self, worker: Worker):
        self._view = worker.ch.view
        self._at = worker.ch.down.data_at
        self.base_address = worker._base + self._at

    def slot_view(self, slot: int) -> memoryview:
        return self._view[self._at :]


class _Services:
    """The node services a worker answers itself: its address and clock. (Soft state is the
    node's: the ``state_*`` calls are forwarded, so it outlives a worker's death.) Its
    ``config`` and ``pool`` are what runtimes' fast entries read of a node."""

    def __init__(self, worker: Worker, address: NodeAddress, config: dict[str, Any]):
        self.address = address
        self.now_ns = time.monotonic_ns if config["clock"] == "monotonic" else worker.node_now
        self.config = _Config(worker.budget)
        self.pool = _RingPool(worker)


class _Host(PniServer):
    """The worker's PNI host: the node's own server for what the worker holds, the node over
    the channel for the rest (``FORWARDED``)."""

    worker: Worker

    def _fwd(self, name: str, *args: wire.Value) -> int:
        return self.worker.call(name, *args)

    def _send(self, name: str, body: int, *args: wire.Value) -> int:
        s = self._seg(body)
        if s is None:
            return BAD_HANDLE
        if s.length > self.worker.max_send:
            return TOO_BIG
        return self._fwd(name, *args, s.tobytes())

    def send_toward(self, dest: Any, body: int) -> int:
        return self._send("send_toward", body, bytes(dest))

    def send_neighbor(self, neighbor: Any, body: int) -> int:
        return self._send("send_neighbor", body, bytes(neighbor))

    def deliver(self, link: int, port: int, body: int) -> int:
        return self._send("deliver", body, link, port)

    def neighbor_count(self) -> int:
        return self._fwd("neighbor_count")

    def neighbor_address(self, index: int, dst: memoryview) -> int:
        return self.worker.call_out("neighbor_address", dst, index)

    def route_lookup(self, dest: Any, next_hop: memoryview) -> int:
        return self.worker.call_out("route_lookup", next_hop, bytes(dest))

    def route_set(self, dest: Any, next_hop: Any, metric: int) -> int:
        return self._fwd("route_set", bytes(dest), bytes(next_hop), metric)

    def env_origin_link(self) -> int:
        return self._fwd("env_origin_link")

    def node_mtu(self, dest: Any) -> int:
        return self._fwd("node_mtu", bytes(dest))

    def node_now_ns(self) -> int:
        return self.node.now_ns()

    def dep_call(self, dep: int, export: Any, a0: int, a1: int) -> int:
        return self._fwd("dep_call", dep, bytes(export), a0, a1)

    def log(self, level: int, message: Any) -> int:
        return self._fwd("log", level, bytes(message[:4096]))

    def state_get(self, key: Any, dst: memoryview) -> int:
        rc, data = self.worker.call_value("state_value", bytes(key))
        if rc < 0:
            return rc
        n = min(len(dst), len(data))
        dst[:n] = data[:n]
        return len(data)

    def state_put(self, key: Any, value: Any, ttl_ms: int) -> int:
        if len(value) > self.worker.max_send:  # the channel carries at most that (pni.toml)
            return NO_SPACE
        return self._fwd("state_put", bytes(key), bytes(value), ttl_ms)

    def state_delete(self, key: Any) -> int:
        return self._fwd("state_delete", bytes(key))

    def state_put_seg(self, key: Any, seg: int, ttl_ms: int) -> int:
        s = self._seg(seg)
        if s is None:
            return BAD_HANDLE
        if s.length > self.worker.max_send:  # as state_put
            return NO_SPACE
        return self._fwd("state_put", bytes(key), s.tobytes(), ttl_ms)

    def state_get_seg(self, key: Any) -> int:
        rc, data = self.worker.call_value("state_value", bytes(key))
        if rc < 0:
            return rc
        if self._admit(0) < 0:
            return NO_SPACE
        return self.current.register(Segment.owned(data))


class _RemoteDep(LoadedCode):
    """A dependency of another runtime: its exports are called through the node, which checks
    that it is a dependency of the worker's code object."""

    def accept(self, env: Environment) -> int:
        raise RuntimeFault("a dependency is not run on capsules", FaultReason.NO_EXPORT)

    def call_export(self, name: str, a0: int, a1: int) -> int:
        return self.host.worker.call("dep_export", self.code.name, name.encode(), a0, a1)  # type: ignore[attr-defined]


class Worker:
    """The worker's state: its channel, runtime, code object and environments."""

    def __init__(self, channel: Channel, node_pid: int):
        self.ch = channel
        self.node_pid = node_pid
        self.runtime: Runtime | None = None
        self.loaded: LoadedCode | None = None
        self.code: CodeObject | None = None
        self.host: _Host | None = None
        self.budget = Budget()
        self.max_send = channel.max_payload
        self.envs: list[Environment] = []
        self.config: dict[str, Any] = {}
        self.local_deps: list[LoadedCode] = []
        self._index = -1
        #: batches read while waiting for a reply to a PNI call, run next
        self.later: deque[tuple[int, memoryview, int]] = deque()
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(channel.view))
        #: the C loop over batches of the code object's C batch entry (``_loop``), False when
        #: it has none (every batch takes the Python path), None until the first batch
        self.loop: Any = None
        #: calls into C batch entries and capsules they ran, by loops no longer in use
        self._fast_done = (0, 0)
        #: capsules run on the Python path
        self.python_capsules = 0
        #: ns the C serve loop polls the ring after its last record before it sleeps (HELLO's
        #: ``poll_ns``: the node gave this worker CPUs of its own)
        self.poll_ns = 0
        #: the batch record the loop is running (for ``_materialize``)
        self._payload: memoryview | None = None
        #: the rings were synced with BatchLoop.serve's positions during its run (``_materialize``)
        self._synced = False
        self._idle = Environment()

    # -- calls to the node -----------------------------------------------------------
    def _send_up(self, kind: int, values: Sequence[wire.Value]) -> None:
        data = wire.encode(values)
        assert isinstance(data, bytes)
        self._put_up(kind, data)

    def _put_up(self, kind: int, data: bytes) -> None:
        if not self.ch.up.put(kind, data):
            raise WorkerError("the channel to the node is full")
        self.ch.wake_node()

    def _await_reply(self) -> list[wire.Value]:
        while True:
            rec = self.ch.down.get()
            if rec is None:
                self.ch.wait_down()
                continue
            kind, payload, _ = rec
            if kind == Kind.BATCH and len(self.later) < _MAX_LATER:
                # the node hands batches over without waiting for verdicts: one that came
                # down while this batch waits for a reply runs after it (still in the ring:
                # nothing is released before it has run)
                self.later.append(rec)
                continue
            if kind != Kind.REPLY:
                raise WorkerError(f"expected a reply from the node, got record kind {kind}")
            return wire.decode(payload)

    def call(self, name: str, *args: wire.Value) -> int:
        self._send_up(Kind.CALL, [name.encode(), self._current(), *args])
        reply = self._await_reply()
        rc = reply[0] if reply else None
        if not isinstance(rc, int):
            raise WorkerError(f"the node's reply to {name} is not a status")
        return rc

    def call_value(self, name: str, *args: wire.Value) -> tuple[int, bytes]:
        self._send_up(Kind.CALL, [name.encode(), self._current(), *args])
        reply = self._await_reply()
        if len(reply) != 2 or not isinstance(reply[0], int) or not isinstance(reply[1], bytes):
            raise WorkerError(f"the node's reply to {name} is malformed")
        return reply[0], reply[1]

    def call_out(self, name: str, dst: memoryview, *args: wire.Value) -> int:
        rc, data = self.call_value(name, *args)
        if rc >= 0:
            n = min(len(dst), len(data))
            dst[:n] = data[:n]
        return rc

    def _current(self) -> int:
        host = self.host
        if host is None:
            return -1
        link = host.current.origin_link
        return link if isinstance(link, int) else -1

    def node_now(self) -> int:
        return self.call("node_now_ns")

    # -- records from the node -------------------------------------------------------
    def serve(self) -> None:
        ch = self.ch
        later = self.later
        while True:
            if later:
                rec = later.popleft()
            elif self.loop and ch.up.hold is None:
                rec = self._serve_c(self.loop)
                if rec is None:
                    continue
            else:
                rec = ch.down.get()
                if rec is None:
                    ch.down.release()
                    ch.wait_down()
                    continue
            kind, payload, at = rec
            if kind == Kind.BATCH:
                self._batch(payload, at)
            elif kind == Kind.HELLO:
                self._hello(payload)
            elif kind == Kind.LOAD:
                self._load(payload)
            elif kind in (Kind.INIT, Kind.EXPORT, Kind.RESET, Kind.FINALIZE):
                self._control(kind, payload)
                if kind == Kind.FINALIZE:
                    os._exit(0)
            else:
                raise WorkerError(f"unexpected record kind {kind} from the node")

    def _serve_c(self, loop: Any) -> tuple[int, memoryview, int] | None:
        """Serve in C (``BatchLoop.serve``) while the batches finish there, sleeping in C too;
        the record it stopped at, or None when it was a batch it started (finished here)."""
        ch, host = self.ch, self.host
        assert host is not None
        host.current = host.unbuilt  # as in _batch_fast: the C loop may run capsules
        calls, ran = self._fast_done
        down, up = ch.down, ch.up
        read, head, kind, at, length, got = loop.serve(
            down.cursor, up.head, ch.wake_down, ch.wake_up, self.loaded, calls, ran, self.python_capsules, self.poll_ns
        )
        if self._synced:  # a claimed capsule's host calls used the rings: they are ahead
            self._synced = False
        else:
            down.adopt(read=read)
            up.adopt(head=head)
        payload = ch.view[at : at + length]
        if kind != Kind.BATCH:
            host.current = self._idle
            return kind, payload, at
        self._batch_fast(loop, payload, at, resumed=True, got=got)
        return None

    def _result(self, value: int | RuntimeFault | CodeObjectError) -> None:
        if isinstance(value, int):
            vals: list[wire.Value] = [0, value]
        else:
            reason = getattr(value, "reason", None)
            vals = [1, (reason.value if reason else "").encode(), str(value).encode()[:4096]]
        vals.append(1 if self.loaded is not None and self.loaded.needs_reset else 0)
        self._send_up(Kind.RESULT, vals)

    def _hello(self, payload: memoryview) -> None:
        c = json.loads(bytes(payload))
        self.config = c
        self.budget = Budget(**c["budget"])
        poll = c.get("poll_ns", 0)
        self.poll_ns = poll if isinstance(poll, int) and 0 < poll <= MAX_POLL_US * 1000 else 0
        nice = c.get("nice", 0)
        if isinstance(nice, int) and 0 < nice <= 19:  # below the node: a runaway yields the CPU to it
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except OSError:
                pass
        try:
            module, _, qualname = c["class"].partition(":")
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if not (isinstance(cls, type) and issubclass(cls, Runtime)) or cls.name != c["runtime"]:
                raise WorkerError(f"{c['class']} is not the runtime {c['runtime']!r}")
            reason = cls.available()
            if reason is not None:
                raise WorkerError(f"runtime {c['runtime']} is unavailable in the worker: {reason}")
            rt = cls(c["options"])
            rt.load_limits = LoadLimits(**c["load_limits"])
            rt.contained = True  # the node kills this process past a call's budget
            rt.start()  # the engine now: a spare's restart then only links its code object
        except Exception as exc:  # refused up, then the supervisor sees the exit
            self._result(CodeObjectError(f"{type(exc).__name__}: {exc}"))
            raise SystemExit(EXIT_SETUP) from exc
        self.runtime = rt
        services = _Services(self, NodeAddress(bytes.fromhex(c["address"])), c)
        host = _Host(services)  # type: ignore[arg-type]
        host.worker = self
        host.materialize = self._materialize
        self.host = host
        self._result(0)

    def _load(self, payload: memoryview) -> None:
        vals = wire.decode(payload)
        assert self.runtime is not None and self.host is not None
        try:
            # the dependency closure first (dependencies before their dependants), then the code
            # object: those of this runtime are linked here (a private copy: runtimes such as
            # jvm link dependencies into the dependant), the others are called through the node
            linked: dict[bytes, LoadedCode] = {}
            rt_name = self.config["runtime"]
            for pco in [*vals[1:], vals[0]]:
                code = CodeObject.from_pco(bytes(pco))  # type: ignore[arg-type]
                if code.runtime != rt_name:
                    linked[code.name] = _RemoteDep(code, self.host)
                    continue
                deps = []
                for dep in code.manifest.dependencies:
                    if dep not in linked:
                        raise CodeObjectError(f"{code.short_name}: dependency {dep.hex()[:12]} was not sent to the worker")
                    deps.append(linked[dep])
                linked[code.name] = self.runtime.load(code, deps, self.host)
            self.code = code
            self.loaded = linked[code.name]
            self.local_deps = [d for n, d in linked.items() if n != code.name and not isinstance(d, _RemoteDep)]
        except PanError as exc:
            self._result(exc if isinstance(exc, CodeObjectError) else CodeObjectError(str(exc)))
            raise SystemExit(EXIT_SETUP) from exc
        c = self.config
        try:
            confine.limit_resources(c["runtime"], c["memory"])
            confine.install_filter(c["runtime"])
        except Exception as exc:
            self._result(CodeObjectError(f"cannot confine the worker: {type(exc).__name__}: {exc}"))
            raise SystemExit(EXIT_SETUP) from exc
        self._result(0)

    def _app_env(self) -> Environment:
        env = Environment()
        env.code = self.code
        env.budget = self.budget
        env.origin_kind = Origin.APPLICATION
        env.origin_link = -1
        return env

    def _control(self, kind: int, payload: memoryview) -> None:
        loaded = self.loaded
        assert loaded is not None and self.host is not None
        env = self._app_env()
        self.host.current = env
        try:
            if kind == Kind.INIT:
                rc: int | RuntimeFault = 0
                for dep in self.local_deps:  # their copies here start as the node's did
                    rc = dep.init()
                    if rc < 0:
                        break
                if rc >= 0:
                    rc = loaded.init()
            elif kind == Kind.EXPORT:
                name, a0, a1 = wire.decode(payload)
                rc = int(loaded.call_export(bytes(name).decode("ascii"), int(a0), int(a1)))  # type: ignore[arg-type]
            elif kind == Kind.RESET:
                self._drop_loop()  # the runtime's entry may change with its instance
                loaded.reset()
                rc = 0
            else:
                rc = loaded.finalize()
        except MemoryError:
            os._exit(EXIT_MEMORY)
        except Exception as exc:
            rc = as_fault(exc, self.config.get("runtime", "?"), self.code.short_name if self.code else "?")
        finally:
            env.clear()
        self._result(rc)

    # -- batches ---------------------------------------------------------------------
    def _batch(self, payload: memoryview, at: int) -> None:
        loaded = self.loaded
        assert loaded is not None and self.host is not None
        loop = self.loop if self.loop is not None else self._make_loop()
        if loop:
            self._batch_fast(loop, payload, at)
        else:
            (n,) = struct.unpack_from("<I", payload, 0)
            out, usage = self._run_python(payload, at, 0, n)
            self._release_down()
            self._report()
            self._put_up(Kind.VERDICTS, verdicts.encode(out, usage, loaded.needs_reset))

    def _make_loop(self) -> Any:
        """A ``_batchloop.BatchLoop`` over the code object's C batch entry, or False: the
        extension is not built, the code offers no C entry (``FastEntry``), or it has
        dependencies (their calls cross to other instances; the Python path runs it)."""
        loaded, code = self.loaded, self.code
        self.loop = False
        if _batchloop is None or not isinstance(loaded, FastEntry) or code is None or code.manifest.dependencies:
            return False
        try:
            entry = loaded.fast_entry()
            batch = loaded.fast_batch_entry() if entry else None
        except RuntimeFault:
            return False
        if not entry or not entry[0] or not batch:
            return False
        take_usage = loaded.take_fast_usage if type(loaded).take_fast_usage is not FastEntry.take_fast_usage else None
        assert self.host is not None
        self.loop = _batchloop.BatchLoop(
            self.ch.view, batch, entry[1], bytes(self.host.node.address), loaded.after_fast_run, take_usage,
            any_origin=loaded.fast_any_origin,
        )
        return self.loop

    def _drop_loop(self) -> None:
        """Forget the loop (the runtime's entry changes with a reset): made again at the next batch."""
        if self.loop:
            calls, ran = self.loop.counters
            self._fast_done = (self._fast_done[0] + calls, self._fast_done[1] + ran)
        self.loop = None

    def _report(self) -> None:
        """The counters of how this worker ran its capsules, for the node (``Ring.put_counters``)."""
        calls, ran = self._fast_done
        if self.loop:
            c, r = self.loop.counters
            calls, ran = calls + c, ran + r
        self.ch.up.put_counters(calls, ran, self.python_capsules)

    def _release_down(self) -> None:
        if not self.later:  # the node holds the bodies until it has read the verdicts
            self.ch.down.release()

    def _batch_fast(
        self, loop: Any, payload: memoryview, at: int, resumed: bool = False, got: Any = None
    ) -> None:
        """Run the batch through the C loop; what it gives back (a claimed capsule, a fault, a
        capsule from an application) is finished here, and after a fault that left the code
        needing a reset the rest of the batch takes the Python path (the runtime's own batch
        decides about the reset). ``resumed``: ``BatchLoop.serve`` started the batch and its
        run gave back ``got`` (None: every capsule has its result)."""
        loaded, host = self.loaded, self.host
        assert loaded is not None and host is not None
        if resumed:
            (n,) = struct.unpack_from("<I", payload, 0)
        else:
            n = loop.start(at, len(payload))
            host.current = host.unbuilt
        self._payload = payload
        faulted = False
        try:
            while True:
                if resumed:
                    resumed = False
                else:
                    got = loop.run()
                if got is None:
                    break
                i, how, value = got
                if how == _PYTHON:
                    self._python_into(loop, payload, at, i, i + value)
                    continue
                result = self._finish_claimed(value) if how == _CLAIMED else self._fault_of(value)
                if isinstance(result, int):
                    loop.set_result(i, verdicts.clamp_verdict(result))
                    continue
                loop.set_result(i, 0, verdicts.fault_text(result))
                faulted = True
                if i + 1 < n and loaded.needs_reset:
                    self._python_into(loop, payload, at, i + 1, n)
                    break
        except MemoryError:
            os._exit(EXIT_MEMORY)
        finally:
            self._payload = None
            host.current = self._idle
        if faulted:  # the runtime may have made its instance again (and its entry with it)
            self._drop_loop()
        self._release_down()
        view = self.ch.up.reserve(Kind.VERDICTS, loop.size())
        if view is None:
            raise WorkerError("the channel to the node is full")
        loop.write(view, loaded.needs_reset)
        self._report()  # before the verdicts are visible: the node may read both at once
        self.ch.up.commit()
        self.ch.wake_node()

    def _python_into(self, loop: Any, payload: memoryview, at: int, first: int, end: int) -> None:
        """Run capsules ``first``..``end`` on the Python path, their results into ``loop``
        (and the loop past them: it gives back no capsule twice)."""
        out, usage = self._run_python(payload, at, first, end)
        for k, (v, (steps, fuel)) in enumerate(zip(out, usage, strict=True), first):
            loop.add_usage(k, steps, fuel)
            if isinstance(v, int):
                loop.set_result(k, verdicts.clamp_verdict(v))
            else:
                loop.set_result(k, 0, verdicts.fault_text(v))
        loop.skip(end)

    def _finish_claimed(self, verdict: int) -> int | RuntimeFault:
        """The verdict of a capsule the host claimed during its run, or the run's fault."""
        assert self.loaded is not None and self.host is not None
        env = self.host.current
        try:
            self.loaded.after_fast_run()  # type: ignore[attr-defined]
            result: int | RuntimeFault = verdict
        except MemoryError:
            raise
        except Exception as exc:
            result = self._fault_of(exc)
        if isinstance(env, Environment):
            env.clear()
        self.host.current = self.host.unbuilt
        return result

    def _fault_of(self, exc: BaseException) -> RuntimeFault:
        if isinstance(exc, MemoryError):
            raise exc
        exc.__traceback__ = None
        return as_fault(exc, self.config.get("runtime", "?"), self.code.short_name if self.code else "?")  # type: ignore[arg-type]

    def _materialize(self) -> None:
        """The PNI server's hook: the code of the capsule the C loop is running reached the
        host; the capsule is claimed (the entry runs no capsule after it) and its environment
        built now, current for the call."""
        loop, payload = self.loop, self._payload
        got = loop.claim() if loop else None
        if got is None:
            return
        i, offset = got
        if payload is None:  # the batch is one BatchLoop.serve runs: the rings as it left them
            at, length = loop.record
            payload = self._payload = self.ch.view[at : at + length]
            read, head = loop.positions
            self.ch.down.adopt(read=read)
            self.ch.up.adopt(head=head)
            self._synced = True
        assert self.host is not None
        self.host.current = self._env_for(payload, i, offset)  # type: ignore[arg-type]

    def _env_for(self, payload: memoryview, i: int, offset: int) -> Environment:
        """Capsule ``i``'s environment over its body at ``offset`` of the channel (in place)."""
        origin, hops, length, home, name, prev, _ = _CAP.unpack_from(payload, 8 + i * _CAP.size)
        cap = _Capsule()
        cap.hop_limit = hops
        cap.home = NodeAddress(home)
        cap.name = name
        view = self.ch.view
        cap.body = Segment(view[offset : offset + length], SegType.POOLED, address=self._base + offset)
        envs = self.envs
        while len(envs) <= i:
            envs.append(Environment())
        env = envs[i]
        env.setup(self.code, cap, Origin(origin), i, None if prev == _NO_HOP else NodeAddress(prev), self.budget)  # type: ignore[arg-type]
        return env

    def _run_python(self, payload: memoryview, at: int, first: int, n: int) -> tuple[list[int | RuntimeFault], list[tuple[int, int]]]:
        """Capsules ``first``..``n`` of the batch on the Python path: an environment each, the
        runtime's ``accept_batch``; their verdicts or faults and usage."""
        loaded = self.loaded
        assert loaded is not None and self.host is not None
        body_at = 8 + ((n * _CAP.size + 7) & ~7)
        for i in range(first):
            body_at += (_CAP.unpack_from(payload, 8 + i * _CAP.size)[2] + 7) & ~7
        batch = []
        for i in range(first, n):
            length = _CAP.unpack_from(payload, 8 + i * _CAP.size)[2]
            batch.append(self._env_for(payload, i, at + body_at))
            body_at += (length + 7) & ~7
        self.python_capsules += len(batch)
        if not batch:
            return [], []
        self.host.current = batch[0]
        try:
            out: list[int | RuntimeFault] = list(loaded.accept_batch(batch)) if len(batch) > 1 else [loaded.accept(batch[0])]
        except MemoryError:
            os._exit(EXIT_MEMORY)
        except RuntimeFault as fault:
            out = [fault] * len(batch)
        except Exception as exc:
            out = [as_fault(exc, self.config["runtime"], self.code.short_name if self.code else "?")] * len(batch)
        usage = [(env.usage.steps, env.usage.fuel) for env in batch]
        for env in batch:
            env.clear()
        return out, usage


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    node_pid, memfd, down, up, ring_size = (int(a) for a in args)
    confine.die_with_node(node_pid)
    worker = Worker(Channel(memfd, down, up, ring_size, owner=False), node_pid)
    try:
        worker.serve()
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except WorkerError as exc:
        print(f"pan worker: {exc}", file=sys.stderr)
        os._exit(EXIT_PROTOCOL)
    return OK


if __name__ == "__main__":
    sys.exit(main())
