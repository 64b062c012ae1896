"""Commands for live nodes, in the manner of ``ip`` and ``bpftool``: ``pan code install|list|
show|remove``, ``pan send`` and ``pan state dump``.

Each command connects to a node's application socket (or the socket its configuration
names), asks, prints a table or, with ``--json``, the same data as JSON, and disconnects.
A code object is named by its 64 hex digits, a unique prefix of them, its label, its short
name (``label@123456789abc``) or a ``.pco`` file (see ``find_code``). Code installed from
here is local code that stays until it is removed or evicted: a pin would end with the
command's connection, so none is taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pan_runtime.errors import CodeObjectError, PanError

__all__ = ["add_subcommands", "find_code", "read_body", "MAX_BODY"]

#: the largest capsule body ``pan send`` reads (a capsule travels in one datagram)
MAX_BODY = 65535
#: a hex prefix shorter than this is not taken as a name
MIN_PREFIX = 4


def add_subcommands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``code``, ``send`` and ``state`` on the ``pan`` parser."""
    code = sub.add_parser("code", help="code objects on a running node: install, list, show, remove")
    actions = code.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = actions.add_parser("list", help="the node's code objects: runtime, origin, counters")
    _node(s)
    s.set_defaults(fn=_cmd_list)

    s = actions.add_parser("show", help="one code object: manifest, counters, drops by reason, soft state")
    _node(s)
    s.add_argument("code", help="name, unique hex prefix, label or .pco file")
    s.set_defaults(fn=_cmd_show)

    s = actions.add_parser("install", help="install a .pco as local code")
    _node(s)
    s.add_argument("file", type=Path, help="the .pco to install")
    s.add_argument("--key", type=Path, metavar="PRIVATE_KEY", help="sign it with this key (from `pan keygen`) first")
    s.add_argument("--portmapper", action="store_true", help="make it the node's portmapper (it must export lookup)")
    s.set_defaults(fn=_cmd_install)

    s = actions.add_parser("remove", help="uninstall a code object (its soft state goes with it)")
    _node(s)
    s.add_argument("code", help="name, unique hex prefix, label or .pco file")
    s.add_argument("--force", action="store_true", help="even if another application pins it (root only)")
    s.set_defaults(fn=_cmd_remove)

    s = sub.add_parser("send", help="inject one capsule of any code into a running node")
    _node(s)
    s.add_argument("code", help="installed code (name, prefix, label), a .pco file (installed first), or 64 hex digits")
    body = s.add_mutually_exclusive_group()
    body.add_argument("-x", "--hex", help="the body as hex digits (spaces allowed)")
    body.add_argument("-f", "--file", help="read the body from this file ('-': standard input)")
    s.add_argument("--key", type=Path, metavar="PRIVATE_KEY", help="sign a .pco with this key before installing it")
    s.add_argument("--home", help="the capsule's home node address (default: the node)")
    s.add_argument("--hop-limit", type=int, default=None, help="hops the capsule may take (default 64)")
    s.add_argument("--port", type=int, help="bind this port first and print what code delivers to it")
    s.add_argument("-c", "--count", type=int, default=1, help="with --port: deliveries to wait for (default 1)")
    s.add_argument("-W", "--timeout", type=float, default=1.0, metavar="SECONDS",
                   help="seconds to wait for the node to take the capsule, and for deliveries with --port (default 1)")
    s.set_defaults(fn=_cmd_send)

    state = sub.add_parser("state", help="soft state on a running node")
    actions = state.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("dump", help="a code object's soft state: keys, values, time left")
    _node(s)
    s.add_argument("code", help="name, unique hex prefix, label or .pco file")
    s.add_argument("--max-entries", type=int, default=0, help="at most this many entries (default: the node's, 1000)")
    s.add_argument("--max-bytes", type=int, default=0, help="at most this many bytes of keys and values (default: the node's, 1 MiB)")
    s.set_defaults(fn=_cmd_state_dump)


def _node(s: argparse.ArgumentParser) -> None:
    s.add_argument("node", help="the node's application socket, or its configuration file")
    s.add_argument("--json", action="store_true", help="print JSON")


def _connect(arg: str):  # type: ignore[no-untyped-def]
    from pan_runtime.cli.netcli import socket_of
    from pan_runtime.net.client import Client

    return Client(socket_of(arg))


def find_code(entries: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The entry of ``client.list_code()`` that ``text`` names: a ``.pco`` file (by its name),
    64 hex digits, a unique hex prefix of at least ``MIN_PREFIX`` digits, a short name
    (``label@123456789abc``), a label, or the beginning of one label. ``CodeObjectError`` if
    none or several match."""
    name = None
    path = Path(text)
    if text.endswith(".pco") or path.is_file():
        from pan_runtime.data.codeobj import CodeObject

        name = CodeObject.read(path).hex_name
    low = text.lower()
    for e in entries:
        if e["name"] == (name or low):
            return e
    if name is not None:
        raise CodeObjectError(f"{text} ({name[:12]}) is not installed on the node")
    hexdigits = len(low) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in low)
    found = [e for e in entries if e.get("label") == text or e.get("manifest_label") == text or (hexdigits and e["name"].startswith(low))]
    if not found:  # a label's beginning: `flood` for flood-wasm
        found = [e for e in entries if (e.get("manifest_label") or "").startswith(text)]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(sorted(e["label"] for e in entries)) or "none"
        raise CodeObjectError(f"no code object {text!r} on the node (installed: {known})")
    raise CodeObjectError(f"{text!r} names {len(found)} code objects: {', '.join(sorted(e['label'] for e in found))}; give more of the name")


def _flags(e: dict[str, Any]) -> str:
    out = [f for f in ("pinned", "portmapper", "quarantined", "signed") if e.get(f)]
    return ",".join(out) or "-"


def _cmd_list(args: argparse.Namespace) -> int:
    from pan_runtime.node.stats import format_table

    with _connect(args.node) as c:
        entries = c.list_code()
        stats = c.stats().get("code", {})
    for e in entries:
        e["stats"] = stats.get(e["name"], {})
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    rows = []
    for e in entries:
        st = e["stats"]
        rows.append([
            e["label"], e["runtime"], e["origin"], _flags(e), str(e.get("size", "")),
            str(st.get("capsules_in", 0)), str(st.get("dropped", 0)), str(st.get("errors", 0)),
            f"{e.get('state_entries', 0)}/{e.get('state_bytes', 0)}",
        ])
    if not rows:
        print("no code objects installed")
        return 0
    print(format_table(rows, ["code", "runtime", "origin", "flags", "bytes", "in", "drop", "err", "state entries/bytes"]))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _connect(args.node) as c:
        entries = c.list_code()
        e = find_code(entries, args.code)
        e["stats"] = c.stats().get("code", {}).get(e["name"], {})
    if args.json:
        print(json.dumps(e, indent=2, sort_keys=True))
        return 0
    labels = {x["name"]: x["label"] for x in entries}
    st = e["stats"]
    lines = [
        ("code object", e["name"]),
        ("label", e["label"]),
        ("runtime", e["runtime"]),
        ("origin", e["origin"]),
        ("flags", _flags(e)),
        ("size", f"{e.get('size', '?')} bytes"),
        ("exports", ", ".join(e.get("exports", [])) or "-"),
        ("dependencies", ", ".join(labels.get(d, d[:12] + " (not installed)") for d in e.get("dependencies", [])) or "-"),
        ("capsules", f"in {st.get('capsules_in', 0)}, forwarded {st.get('forwarded', 0)}, delivered {st.get('delivered', 0)}, "
                     f"done {st.get('done', 0)}, dropped {st.get('dropped', 0)}, faults {st.get('errors', 0)}"),
        ("time", f"{st.get('time_us_mean', 0.0):.2f} µs per capsule, at most {st.get('time_us_max', 0.0):.1f} µs"),
        ("drops", ", ".join(f"{k}={v}" for k, v in sorted(st.get("drops", {}).items())) or "none"),
        ("refused", ", ".join(f"{k}={v}" for k, v in sorted(st.get("refused", {}).items())) or "none"),
        ("soft state", f"{e.get('state_entries', 0)} entries, {e.get('state_bytes', 0)} bytes"),
    ]
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {v}")
    return 0


def _read_code(path: Path, key: Path | None):  # type: ignore[no-untyped-def]
    from pan_runtime.data.codeobj import CodeObject

    code = CodeObject.read(path)
    if key is not None:
        from pan_runtime.data.keys import load_private_key

        code = code.signed(load_private_key(key))
    return code


def _cmd_install(args: argparse.Namespace) -> int:
    code = _read_code(args.file, args.key)
    with _connect(args.node) as c:
        c.install(code)
        if args.portmapper:
            c.use_portmapper(code)
        node = c.node_name
    if args.json:
        print(json.dumps({"name": code.hex_name, "label": code.short_name, "runtime": code.runtime, "size": code.size,
                          "node": node, "portmapper": args.portmapper}, indent=2))
        return 0
    extra = ", now its portmapper" if args.portmapper else ""
    print(f"installed {code.short_name} ({code.runtime}, {code.size} bytes) on {node}{extra}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    with _connect(args.node) as c:
        e = find_code(c.list_code(), args.code)
        c.uninstall(bytes.fromhex(e["name"]), force=args.force)
        node = c.node_name
    if args.json:
        print(json.dumps({"name": e["name"], "label": e["label"], "node": node, "removed": True}, indent=2))
        return 0
    print(f"removed {e['label']} from {node}")
    return 0


def read_body(hex_text: str | None, file: str | None) -> bytes:
    """A capsule body from hex digits or a file (``-``: standard input), at most ``MAX_BODY`` bytes."""
    if hex_text is not None:
        try:
            body = bytes.fromhex(hex_text)
        except ValueError:
            raise PanError(f"--hex: {hex_text[:40]!r} is not hex digits") from None
    elif file == "-":
        body = sys.stdin.buffer.read(MAX_BODY + 1)
    elif file is not None:
        from pan_runtime.data.files import read_bounded

        body = read_bounded(Path(file), MAX_BODY, PanError, "capsule body")
    else:
        body = b""
    if len(body) > MAX_BODY:
        raise PanError(f"a capsule body is at most {MAX_BODY} bytes (one datagram)")
    return body


def _outcome(before: dict[str, Any], after: dict[str, Any], name: str) -> dict[str, Any]:
    """What the node did between two readings of its statistics, for the code object ``name``."""
    b, a = before.get("code", {}).get(name, {}), after.get("code", {}).get(name, {})
    out: dict[str, Any] = {k: a.get(k, 0) - b.get(k, 0) for k in ("capsules_in", "forwarded", "delivered", "done", "errors")}
    out["drops"] = {k: v - b.get("drops", {}).get(k, 0) for k, v in a.get("drops", {}).items() if v != b.get("drops", {}).get(k, 0)}
    nb, na = before.get("drops", {}), after.get("drops", {})
    out["node_drops"] = {k: v - nb.get(k, 0) for k, v in na.items() if v != nb.get(k, 0)}
    return out


_VERDICTS = (("forwarded", "forwarded"), ("delivered", "delivered"), ("done", "done"), ("errors", "faulted"))


def _cmd_send(args: argparse.Namespace) -> int:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT

    body = read_body(args.hex, args.file)
    home = NodeAddress.parse(args.home) if args.home else None
    hops = DEFAULT_HOP_LIMIT if args.hop_limit is None else args.hop_limit
    if not 0 <= hops <= 255:
        raise PanError(f"--hop-limit {hops} is outside 0..255")
    with _connect(args.node) as c:
        entries = c.list_code()
        if Path(args.code).is_file():
            code = _read_code(Path(args.code), args.key)
            c.install(code)
            name, label = code.hex_name, code.short_name
        else:
            try:
                e = find_code(entries, args.code)
                name, label = e["name"], e["label"]
            except CodeObjectError:
                # a whole name the node lacks: sent all the same, for the node to fetch (from --home)
                if not (len(args.code) == 64 and all(ch in "0123456789abcdefABCDEF" for ch in args.code)):
                    raise
                name, label = args.code.lower(), args.code[:12].lower()
        if args.port is not None:
            c.bind(args.port)
        before = c.stats()
        c.send(bytes.fromhex(name), body, home=home, hop_limit=hops)
        # the node takes the capsule in its own time: watch its counters move
        end = time.monotonic() + args.timeout
        outcome = _outcome(before, before, name)
        while time.monotonic() < end:
            after = c.stats()
            outcome = _outcome(before, after, name)
            if outcome["capsules_in"] or outcome["node_drops"]:
                break
            time.sleep(0.01)
        deliveries = []
        if args.port is not None:
            while len(deliveries) < args.count:
                d = c.receive(max(0.0, end - time.monotonic()))
                if d is None:
                    break
                deliveries.append({"port": d.port, "code": d.code.hex(), "data": d.data.hex()})
        reports = c.errors()  # error reports that came back meanwhile (a node on the way dropped it)
        node = c.node_name
    from pan_runtime.cli.netcli import format_error_report, report_info

    if args.json:
        print(json.dumps({"node": node, "code": name, "label": label, "body_bytes": len(body), "outcome": outcome,
                          "deliveries": deliveries, "errors": [report_info(r) for r in reports]}, indent=2))
        return 0
    print(f"sent a capsule of {label} with {len(body)} body bytes into {node}")
    if not outcome["capsules_in"] and not outcome["node_drops"]:
        print(f"the node has not run it within {args.timeout} s (queued, or waiting for its code)")
    else:
        done = ", ".join(f"{word} {outcome[k]}" for k, word in _VERDICTS if outcome[k])
        print(f"{node}: ran it" + (f": {done}" if done else ""))
    for k, v in sorted({**outcome["drops"], **outcome["node_drops"]}.items()):
        print(f"{node}: dropped {v}: {k}")
    for r in reports:
        print(format_error_report(r))
    for d in deliveries:
        print(f"delivery on port {d['port']}: {len(d['data']) // 2} bytes: {d['data']}")
    return 0


def _printable(b: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 else "." for c in b)


def _cmd_state_dump(args: argparse.Namespace) -> int:
    from pan_runtime.node.stats import format_table

    with _connect(args.node) as c:
        e = find_code(c.list_code(), args.code)
        doc = c.soft_state(bytes.fromhex(e["name"]), max_entries=args.max_entries, max_bytes=args.max_bytes)
    if args.json:
        for x in doc["entries"]:
            x["key"], x["value"] = x["key"].hex(), x["value"].hex()
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(
        f"soft state of {doc['label']} ({doc['runtime']}): {doc['count']} entries, {doc['bytes']} bytes "
        f"(bounds {doc['max_entries']} entries, {doc['max_bytes']} bytes; evicted {doc['evictions']}, expired {doc['expirations']})"
    )
    if doc["entries"]:
        rows = [
            [x["key"].hex(), _printable(x["key"]), str(len(x["value"])), x["value"][:32].hex() + ("…" if len(x["value"]) > 32 else ""),
             f"{x['ttl_ms'] / 1000:.1f} s" if x["ttl_ms"] else "-"]
            for x in doc["entries"]
        ]
        print(format_table(rows, ["key", "as text", "bytes", "value", "expires in"]))
    if doc["truncated"]:
        print(f"(only {len(doc['entries'])} shown: --max-entries / --max-bytes)")
    return 0
