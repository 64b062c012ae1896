"""``pan node CONFIG``: a node as a process, on UDP netlinks and a UNIX application socket.

``NodeDaemon`` assembles the pieces (node, UDP transport, application server, demand
loader, optional Prometheus endpoint) on one ``EventLoop`` in one thread. It can be driven
turn by turn (``run_once``, for tests that keep several nodes in one process) or run until
SIGINT/SIGTERM (``serve``); ``close`` drops queued and parked capsules, finalizes code and
removes the socket file.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

from pan_runtime.data.address import address_text, endpoint_text
from pan_runtime.errors import LinkError
from pan_runtime.net.applink import AppServer
from pan_runtime.net.config import NodeFileConfig, load_config
from pan_runtime.net.demand import DemandLoader
from pan_runtime.net.lifetime import die_with_parent
from pan_runtime.net.listener import Listener
from pan_runtime.net.reports import ErrorReporter
from pan_runtime.net.udp import EventLoop, UdpTransport
from pan_runtime.node.node import Node

__all__ = ["NodeDaemon", "MetricsServer", "prometheus_text", "run_node", "LOG_FORMAT"]

#: every log line starts with the local time to the millisecond
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("pan.daemon")


class NodeDaemon:
    """A node with its sockets, built from a ``NodeFileConfig``."""

    def __init__(self, config: NodeFileConfig, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1"):
        self.config = config
        self.loop = EventLoop()
        # the JVM would otherwise take SIGTERM/SIGINT for itself (and exit 143 without our cleanup)
        jvm = config.node.runtime_options.setdefault("jvm", {})
        flags = list(jvm.get("jvm_flags", ()))
        if "-Xrs" not in flags:
            jvm["jvm_flags"] = [*flags, "-Xrs"]
        self.node = Node(config.address, config=config.node, trust=config.trust, name=config.name)
        self.started = time.monotonic()
        self.transport: UdpTransport | None = None
        self.apps: AppServer | None = None
        self.metrics: MetricsServer | None = None
        try:
            self.transport = UdpTransport(
                self.node,
                config.listen,
                self.loop,
                accept_unknown_peers=config.accept_unknown_peers,
                rx_burst=config.rx_burst,
                rx_batch=config.rx_batch,
                udp_gso=config.udp_gso,
                io_uring=config.io_uring,
            )
            for n in config.neighbors:
                self.transport.add_neighbor(n.address, n.endpoint, n.mtu)
            for dest, via, metric in config.routes:
                self.node.add_route(dest, via, metric)
            self.demand = DemandLoader(self.node, config.demand)
            self.reports = ErrorReporter(self.node, config.errors, self.demand)
            if config.app_socket:
                self.apps = AppServer(
                    self.node,
                    config.app_socket,
                    self.loop,
                    max_frame=config.app_max_frame,
                    out_limit=config.app_out_bytes,
                    in_limit=config.app_in_bytes,
                    max_connections=config.app_connections,
                    stats_fn=self.statistics,
                )
            if metrics_port is not None:
                self.metrics = MetricsServer(self, metrics_host, metrics_port)
            if self.node.disk is not None:
                n = self.node.install_from_disk()
                if n:
                    log.info("reloaded %d code objects from %s", n, config.node.cache_dir)
        except BaseException:
            self.close()
            raise
        self.loop.idle.append(self._work)
        # capsules for workers (process isolation) are handed over without waiting: the loop
        # watches each busy worker's eventfd and pidfd, and ``tick`` its batches' budgets
        loop = self.loop
        self.node.offload.attach(lambda fd, cb: loop.add(fd, selectors.EVENT_READ, lambda _m: cb()), loop.remove,
                                 ready=loop.add_ready)
        self.loop.idle.append(self.node.offload.tick)

    # ------------------------------------------------------------------ running
    def _work(self) -> float | None:
        """Evaluate queued capsules (one at a time) and run demand-loading timers."""
        node = self.node
        if node.queue:
            node.process(256)
        demand = self.demand
        if not demand.fetches:
            return 0.0 if node.queue else None
        due = demand.tick()  # cheap: at most max_fetches entries
        if node.queue:
            return 0.0
        return None if due is None else max(0.0, (due - node.now_ns()) / 1e9)

    def run_once(self, timeout: float = 0.0) -> None:
        self.loop.run_once(timeout)

    def serve(self) -> None:
        """Run until SIGINT or SIGTERM."""
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        old_wakeup = signal.set_wakeup_fd(wfd)
        stopping: list[int] = []

        def on_signal(signum: int, _frame: Any) -> None:
            stopping.append(signum)
            self.loop.stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.loop.add(rfd, selectors.EVENT_READ, lambda _m: _drain(rfd))
        try:
            self.loop.run(lambda: bool(stopping), tick=1.0)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            self.loop.remove(rfd)
            os.close(rfd)
            os.close(wfd)
        if stopping:
            log.info("%s: stopping on %s", self.node.name, signal.Signals(stopping[0]).name)

    def statistics(self) -> dict[str, Any]:
        if self.transport is None:
            return self._statistics()
        with self.transport.locked():  # one moment of every fast-path thread
            return self._statistics()

    def _statistics(self) -> dict[str, Any]:
        stats = self.node.statistics()
        stats["name"] = self.node.name
        stats["uptime_s"] = time.monotonic() - self.started
        if self.transport is not None:
            stats["links"] = self.transport.info()
            # batches C handed to workers, and workers' verdicts collected, after which the fast
            # path's wait went on (no turn of the event loop for them)
            off = self.node.offload
            stats["fast_handovers_kept"], stats["fast_verdicts_kept"] = off.handovers_kept, off.collects_kept
            # of those, batches a worker lane admitted and finished in C, with no Python at all
            stats["fast_lane_admitted"], stats["fast_lane_finished"] = off.lane_admitted, off.lane_finished
            stats["fast_lane_spun"] = off.lane_spun
            # of the batches lanes admitted, those whose worker slept and was woken (its eventfd)
            stats["fast_lane_woke"] = off.lane_woke
        stats["demand"] = self.demand.info()
        stats["error_reports"] = self.reports.info()
        if self.apps is not None:
            stats["apps"] = self.apps.info()
        stats["routes"] = [
            {"dest": str(r.dest), "via": str(r.next_hop), "metric": r.metric, "static": r.static} for r in self.node.routes.routes()
        ]
        return stats

    def close(self) -> None:
        demand = getattr(self, "demand", None)
        if demand is not None:
            demand.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.apps is not None:
            self.apps.close()
        if self.transport is not None:
            self.transport.close()
        self.node.close()
        self.loop.close()

    def __enter__(self) -> NodeDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------------- Prometheus text
def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(stats: dict[str, Any]) -> str:
    """Render ``NodeDaemon.statistics()`` in the Prometheus text exposition format."""
    out: list[str] = []

    def metric(name: str, kind: str, helptext: str, samples: list[tuple[dict[str, Any], float]]) -> None:
        out.append(f"# HELP {name} {helptext}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    metric("pan_received_total", "counter", "Datagrams received from neighbours.", [({}, stats["received"])])
    metric("pan_injected_total", "counter", "Capsules injected by applications.", [({}, stats["injected"])])
    metric("pan_sent_total", "counter", "Capsules sent to neighbours.", [({}, stats["sent"])])
    metric("pan_delivered_total", "counter", "Deliveries to applications.", [({}, stats["delivered"])])
    metric("pan_dropped_total", "counter", "Capsules dropped by the node, by reason.", [({"reason": k}, v) for k, v in sorted(stats["drops"].items())])
    metric("pan_queue_length", "gauge", "Capsules waiting for evaluation.", [({}, stats["queue"])])
    metric("pan_pool_free", "gauge", "Free receive buffers.", [({}, stats["pool_free"])])
    metric("pan_pool_held_by_code", "gauge", "Receive buffers code objects hold past their calls.", [({}, stats["pool"]["held_by_code"])])
    metric("pan_refused_total", "counter", "Resources refused to code objects, by reason.", [({"reason": k}, v) for k, v in sorted(stats["refused"].items())])
    metric("pan_soft_state_bytes", "gauge", "Soft-state bytes of every code object together.", [({}, stats["soft_state"]["bytes"])])
    metric("pan_code_cache_entries", "gauge", "Installed code objects.", [({}, stats["cache"]["entries"])])
    metric("pan_code_cache_bytes", "gauge", "Bytes of installed code objects.", [({}, stats["cache"]["bytes"])])
    log = stats.get("log", {})
    metric("pan_code_log_lines_unwritten_total", "counter", "Lines code objects logged past the node's rate bounds (not written).",
           [({}, log.get("code_lines_unwritten", 0))])
    metric("pan_fault_warnings_unwritten_total", "counter", "Fault warnings past the node's rate bounds (not written).",
           [({}, log.get("fault_warnings_unwritten", 0))])
    workers = stats.get("workers", {})
    for field, helptext in (
        ("workers", "Worker processes up, per runtime in process isolation."),
        ("spares", "Workers started ahead for restarts, per runtime."),
        ("standbys", "Workers with a code object linked and confined, waiting to replace its worker, per runtime."),
        ("restarts", "Workers started again after one ended, per runtime."),
        ("warm_restarts", "Restarts that took the code object's warm standby, per runtime."),
        ("kills", "Workers the node killed past a call's time budget, per runtime."),
        ("fast_batches", "Batches the UDP fast path wrote into workers' rings itself, per runtime."),
        ("fast_capsules", "Capsules in those batches, per runtime."),
        ("demotions", "Workers put at the lowest priority for a batch past limits.worker_demote_ms, per runtime."),
        ("idle_deaths", "Workers that ended with no capsule out (restarted at once), per runtime."),
        ("standby_deaths", "Standby and spare workers that ended (replaced), per runtime."),
    ):
        gauge = field in ("workers", "spares", "standbys")
        metric(f"pan_worker_{field}" + ("" if gauge else "_total"), "gauge" if gauge else "counter",
               helptext, [({"runtime": rt}, w[field]) for rt, w in sorted(workers.items())])
    metric("pan_worker_deaths_total", "counter", "Workers that ended, per runtime and reason.",
           [({"runtime": rt, "reason": k[5:]}, v) for rt, w in sorted(workers.items()) for k, v in sorted(w.items()) if k.startswith("died_")])
    code = stats.get("code", {})
    for field, helptext in (
        ("capsules_in", "Capsules evaluated per code object."),
        ("forwarded", "Capsules forwarded per code object."),
        ("delivered", "Deliveries per code object."),
        ("dropped", "Capsules dropped per code object."),
        ("errors", "Faults per code object."),
    ):
        metric(
            f"pan_code_{field}_total",
            "counter",
            helptext,
            [({"code": c["label"], "runtime": c["runtime"]}, c[field]) for c in code.values()],
        )
    metric(
        "pan_code_time_seconds_total",
        "counter",
        "Time spent in code per code object.",
        [({"code": c["label"], "runtime": c["runtime"]}, c["time_us_total"] / 1e6) for c in code.values()],
    )
    links = stats.get("links", {}).get("neighbors", {})
    metric("pan_link_sent_total", "counter", "Capsules sent per neighbour.", [({"neighbor": n}, v["sent"]) for n, v in links.items()])
    metric("pan_link_received_total", "counter", "Datagrams received per neighbour.", [({"neighbor": n}, v["received"]) for n, v in links.items()])
    metric("pan_link_largest_capsule_bytes", "gauge", "Largest capsule the link to a neighbour carries.", [({"neighbor": n}, v["mtu"]) for n, v in links.items()])
    fast = stats.get("links", {}).get("fast_path", {})
    if fast.get("on"):
        metric(
            "pan_fast_path_capsules_total",
            "counter",
            "Datagrams the UDP fast path read, by the way they went.",
            [({"path": p}, fast[p]) for p in ("finished_in_c", "python_runs", "handed_over", "slow", "dropped_in_c", "to_worker") if p in fast],
        )
        if "fast_handovers_kept" in stats:
            metric(
                "pan_fast_path_worker_batches_kept_total",
                "counter",
                "Worker batches the fast path's wait handed over, or whose verdicts it collected, and went on waiting.",
                [({"step": "handover"}, stats["fast_handovers_kept"]), ({"step": "verdicts"}, stats["fast_verdicts_kept"])],
            )
        if "fast_lane_admitted" in stats:
            metric(
                "pan_fast_path_worker_lane_batches_total",
                "counter",
                "Worker batches the fast path's worker lanes admitted, or finished, in C with no Python.",
                [({"step": "admitted"}, stats["fast_lane_admitted"]), ({"step": "finished"}, stats["fast_lane_finished"])],
            )
            metric(
                "pan_fast_path_worker_lane_spun_total",
                "counter",
                "Worker lane verdicts the fast path's wait found by spinning for a polling worker (limits.worker_poll_us).",
                [({}, stats.get("fast_lane_spun", 0))],
            )
            metric(
                "pan_fast_path_worker_lane_wakeups_total",
                "counter",
                "Worker lane batches handed to a worker that was not polling, woken through its eventfd.",
                [({}, stats.get("fast_lane_woke", 0))],
            )
        metric(
            "pan_fast_path_thread_capsules_total",
            "counter",
            "Datagrams each fast-path thread finished in C (limits.threads; 0 is the event loop's).",
            [({"thread": i}, t["finished_in_c"]) for i, t in enumerate(fast.get("threads", []))],
        )
        if "neighbour_moves" in fast:
            metric(
                "pan_fast_path_neighbour_moves_total",
                "counter",
                "Neighbours' receive sockets moved between fast-path threads to even out their traffic.",
                [({}, fast["neighbour_moves"])],
            )
    sc = stats.get("links", {}).get("syscalls", {})
    if sc:
        metric(
            "pan_syscalls_total",
            "counter",
            "System calls the node's UDP traffic made, by call.",
            [
                ({"call": k}, sc.get(k, 0))
                for k in ("recv_calls", "send_calls", "peeks", "waits", "uring_enters")
            ],
        )
        metric(
            "pan_syscall_datagrams_total",
            "counter",
            "Datagrams the node's receive and send system calls moved.",
            [({"call": k}, sc[k]) for k in ("recv_datagrams", "send_datagrams")],
        )
        metric(
            "pan_udp_gso_total",
            "counter",
            "UDP GSO on the fast path's sends: messages sent, the datagrams they carried, refusals.",
            [({"what": k}, sc[k]) for k in ("gso_sends", "gso_datagrams", "gso_refused")],
        )
    ports = stats.get("ports", {})
    metric("pan_ports_bound", "gauge", "Ports bound to application links.", [({}, ports.get("bound", 0))])
    metric(
        "pan_port_requests_refused_total",
        "counter",
        "Port requests refused, by reason.",
        [({"reason": k[len("refused_") :]}, v) for k, v in sorted(ports.items()) if k.startswith("refused_")],
    )
    apps = stats.get("apps", {})
    metric("pan_app_connections", "gauge", "Connected applications.", [({}, apps.get("connected", 0))])
    metric("pan_app_closed_total", "counter", "Application connections the node closed, by reason.", [({"reason": k}, v) for k, v in sorted(apps.get("closed", {}).items())])
    metric("pan_app_accept_pauses_total", "counter", "Pauses of the application socket at the descriptor limit.", [({}, apps.get("accept_pauses", 0))])
    accounts = stats.get("neighbours", {})
    metric("pan_neighbour_run_seconds_total", "counter", "Time the capsules of a neighbour ran code.", [({"neighbor": n}, a["run_us"] / 1e6) for n, a in accounts.items()])
    metric("pan_neighbour_exhaustions_total", "counter", "Capsules of a neighbour that used up their budget.", [({"neighbor": n}, a["exhaustions"]) for n, a in accounts.items()])
    metric(
        "pan_neighbour_dropped_total",
        "counter",
        "Capsules of a neighbour dropped for its share or its throttle, by reason.",
        [({"neighbor": n, "reason": r}, v) for n, a in accounts.items() for r, v in sorted(a["drops"].items())],
    )
    metric("pan_neighbour_throttled", "gauge", "1 while a neighbour is throttled.", [({"neighbor": n}, int(a["throttled_for_ms"] > 0)) for n, a in accounts.items()])
    demand = stats.get("demand", {})
    metric("pan_demand_fetched_total", "counter", "Code objects fetched on demand.", [({}, demand.get("fetched", 0))])
    metric("pan_demand_parked", "gauge", "Capsules waiting for their code.", [({}, demand.get("parked_now", 0))])
    reports = stats.get("error_reports", {})
    metric(
        "pan_error_reports_total",
        "counter",
        "Error reports about dropped capsules, by what became of them.",
        [({"outcome": k}, reports.get(k, 0)) for k in ("sent", "rate_limited", "not_sent", "received", "delivered", "unclaimed")],
    )
    metric("pan_uptime_seconds", "gauge", "Seconds since the node started.", [({}, round(stats.get("uptime_s", 0.0), 3))])
    return "\n".join(out) + "\n"


class MetricsServer:
    """A tiny HTTP endpoint on the node's loop: ``GET /metrics`` answers Prometheus text."""

    def __init__(self, daemon: NodeDaemon, host: str, port: int):
        self.daemon = daemon
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise LinkError(f"cannot serve metrics on TCP {host}:{port}: {exc.strerror}") from None
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.listener = Listener(sock, daemon.loop, self._serve, what=f"metrics port {self.port}", burst=1)
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        try:
            req = conn.recv(4096)
            line = req.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                body = prometheus_text(self.daemon.statistics()).encode()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body = b"pan node: try /metrics\n"
                head = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
            conn.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


def run_node(path: str, metrics_port: int | None = None, metrics_host: str = "127.0.0.1", verbose: int = 0) -> int:
    """Load a configuration, run the node until a signal, shut down cleanly."""
    die_with_parent()
    config = load_config(path)
    if not verbose:
        logging.getLogger().setLevel(getattr(logging, config.log_level.upper()))
    daemon = NodeDaemon(config, metrics_port=metrics_port, metrics_host=metrics_host)
    try:
        listen = daemon.transport.endpoints if daemon.transport else []
        eps = ", ".join(endpoint_text(h, p) for h, p in listen)
        extra = f", app socket {config.app_socket}" if config.app_socket else ""
        if daemon.metrics is not None:
            extra += f", metrics port {daemon.metrics.port}"
        print(f"pan node {address_text(config.address, listen)}: ready (name {config.name}, udp {eps}{extra})", flush=True)
        log.info("%s: %d neighbours, %d routes", config.name, len(config.neighbors), len(daemon.node.routes))
        if daemon.transport is not None:
            off = daemon.transport.fast_path_off
            if off:
                # chosen in the configuration: say so; a missing build: warn
                level = logging.INFO if daemon.transport.fast_path_declined else logging.WARNING
                log.log(level, "%s: every capsule takes the Python path: %s", config.name, off)
            else:
                log.info("%s: UDP fast path on", config.name)
        daemon.serve()
    finally:
        daemon.close()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # `python -m pan_runtime.net.daemon CONFIG`: the node without the rest of the CLI
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    from pan_runtime.errors import PanError

    try:
        sys.exit(run_node(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
    except PanError as exc:
        print(f"pan node: error: {exc}", file=sys.stderr)
        sys.exit(2)
