"""The ``pan`` command: runtimes, build, inspect, keygen, sign, demo, codec, lab, bench, conformance."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pan_runtime import __version__
from pan_runtime.cli.verbosity import add_verbosity, verbosity
from pan_runtime.errors import PanError

__all__ = ["main"]


def _cmd_runtimes(args: argparse.Namespace) -> int:
    from pan_runtime.isolation.confine import allowed_syscalls
    from pan_runtime.isolation.mechanism import process_unavailable
    from pan_runtime.node.stats import format_table
    from pan_runtime.plugin.plugins import default_plugins

    plugins = default_plugins()
    infos = plugins.runtime_infos()
    # every runtime can run its code in the node's process or in worker processes (the
    # latter where this machine can confine a worker: docs/isolation.md)
    no_process = process_unavailable()
    mechanisms = ["in_process"] if no_process else ["in_process", "process"]
    if args.json:
        print(json.dumps([
            {**vars(i), "mechanisms": mechanisms, "process_unavailable": no_process or "",
             "worker_syscalls": allowed_syscalls(i.name)}
            for i in infos
        ], indent=2))
        return 0
    rows = []
    for i in infos:
        status = "available" if i.available else f"unavailable: {i.reason}"
        ver = ", ".join(f"{k} {v}" for k, v in sorted(i.versions.items()))
        rows.append([i.name, i.isolation, ", ".join(mechanisms), ", ".join(i.limits) or "-", status, ver])
    print(format_table(rows, ["runtime", "isolation", "can run", "limits", "status", "versions"]))
    if no_process:
        print(f"\nprocess isolation is unavailable here: {no_process}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.data.keys import load_public_key

    code = CodeObject.read(args.file)
    trusted = {load_public_key(k) for k in args.trust or []}
    sigs = []
    for s in code.signatures:
        ok = s.verify(code.name)
        sigs.append(
            {
                "key": s.public_key.hex(),
                "valid": ok,
                "trusted": s.public_key in trusted,
            }
        )
    m = code.manifest
    info = {
        "file": str(args.file),
        "name": code.hex_name,
        "label": code.label,
        "runtime": m.runtime,
        "pni_version": m.pni_version,
        "entry": dict(m.entry),
        "exports": list(m.exports),
        "dependencies": [d.hex() for d in m.dependencies],
        "payload_bytes": len(code.payload),
        "size_bytes": code.size,
        "meta": dict(m.meta),
        "signatures": sigs,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"code object  {info['name']}")
    print(f"label        {code.label or '- (none: pan build --label)'}")
    print(f"file         {info['file']}")
    print(f"runtime      {m.runtime}   (PNI {m.pni_version})")
    print(f"size         {code.size} bytes (payload {len(code.payload)})")
    print(f"entry points {', '.join(f'{k}={v}' for k, v in sorted(m.entry.items()))}")
    print(f"exports      {', '.join(m.exports) or '-'}")
    print(f"dependencies {', '.join(d.hex() for d in m.dependencies) or '-'}")
    if m.meta:
        print(f"meta         {json.dumps(dict(m.meta), sort_keys=True)}")
    if not sigs:
        print("signatures   none (unsigned)")
    for s in sigs:
        state = "valid" if s["valid"] else "INVALID"
        if s["valid"] and trusted:
            state += ", trusted" if s["trusted"] else ", not trusted"
        print(f"signature    {s['key']}  {state}")
    return 0 if all(s["valid"] for s in sigs) else 1


def _cmd_keygen(args: argparse.Namespace) -> int:
    from pan_runtime.data.keys import generate_keypair, load_public_key

    priv, pub = generate_keypair(args.path)
    print(f"private key  {priv}")
    print(f"public key   {pub}  ({load_public_key(pub).hex()})")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.data.keys import load_private_key, public_key_hex

    key = load_private_key(args.key)
    code = CodeObject.read(args.file)
    signed = code.signed(key)
    out = Path(args.output or args.file)
    signed.write(out)
    print(f"signed {code.short_name} ({code.hex_name}) with {public_key_hex(key)} -> {out}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.plugin.builders import BuildRequest
    from pan_runtime.plugin.plugins import default_plugins

    sources = [Path(s) for s in args.sources]
    for s in sources:
        if not s.exists():
            raise PanError(f"source {s} does not exist")
    suffix = ".java" if sources[0].is_dir() else sources[0].suffix
    plugins = default_plugins()
    runtime = args.runtime
    if runtime is None:
        choices = plugins.builders.runtimes_for(suffix)
        if len(choices) != 1:
            raise PanError(
                f"cannot tell the runtime for {suffix!r} sources (builders: {', '.join(choices) or 'none'}); pass --runtime"
            )
        runtime = choices[0]
    builder = plugins.builders.find(runtime, suffix)
    reason = builder.available()
    if reason is not None:
        raise PanError(f"cannot build for {runtime}: {reason}")
    deps = [CodeObject.read(d) for d in args.dep or []]
    options = dict(o.split("=", 1) for o in args.option or [] if "=" in o)
    req = BuildRequest(sources, runtime, deps, list(args.export or []), args.label, options)
    code = builder.build(req)
    out = Path(args.output) if args.output else sources[0].with_suffix(".pco")
    if out.is_dir():
        out = out / (sources[0].stem + ".pco")
    code.write(out)
    print(f"{out}: {code.short_name} {code.hex_name} ({runtime}, {code.size} bytes)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pan_runtime.cli.demo import run_demo

    return run_demo(runtimes=args.runtime, count=args.count, size=args.size, quiet=args.quiet, as_json=args.json)


def _cmd_bench(args: argparse.Namespace) -> int:
    from pan_runtime.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pan",
        description="pan: an active network node that runs mobile code from several runtimes side by side.",
    )
    p.add_argument("--version", action="version", version=f"pan {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug); also after the command")
    p.add_argument("-q", "--quiet", dest="log_quiet", action="count", default=0, help="log errors only; also after the command")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("runtimes", help="list runtimes, their isolation level, where they can run (in_process, process) and availability")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=_cmd_runtimes)

    s = sub.add_parser("inspect", help="show a .pco code object: manifest, name, size, dependencies, signatures")
    s.add_argument("file", type=Path)
    s.add_argument("--trust", action="append", metavar="PUBKEY", help="mark signatures by this key (hex or .pub file) as trusted")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_inspect)

    s = sub.add_parser("keygen", help="make an Ed25519 key pair: PATH (private, PEM) and PATH.pub (hex)")
    s.add_argument("path", type=Path)
    s.set_defaults(fn=_cmd_keygen)

    s = sub.add_parser("sign", help="add an Ed25519 signature to a .pco")
    s.add_argument("file", type=Path)
    s.add_argument("--key", required=True, type=Path, help="private key file from `pan keygen`")
    s.add_argument("-o", "--output", help="write here instead of in place")
    s.set_defaults(fn=_cmd_sign)

    s = sub.add_parser("build", help="build a .pco from sources (.py, .c, .wat, .java)")
    s.add_argument("sources", nargs="+")
    s.add_argument("--runtime", help="native, wasm, jvm, restricted_py (default: from the source suffix)")
    s.add_argument("-o", "--output", help="output file or directory")
    s.add_argument("--dep", action="append", metavar="PCO", help="a dependency code object (repeatable, in order)")
    s.add_argument("--export", action="append", metavar="NAME", help="a function to export to dependants")
    s.add_argument("--label", help="a human-readable label stored in the manifest")
    s.add_argument("--option", action="append", metavar="K=V", help="builder option")
    s.set_defaults(fn=_cmd_build)

    s = sub.add_parser("demo", help="run ping and flood over an in-process 3-node network with every runtime")
    s.add_argument("--runtime", action="append", help="only these runtimes (repeatable)")
    s.add_argument("--count", type=int, default=2000, help="flood capsules per runtime")
    s.add_argument("--size", type=int, default=512, help="capsule body size in bytes")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.set_defaults(fn=_cmd_demo)

    from pan_runtime.cli.netcli import add_subcommands

    add_subcommands(sub)

    from pan_runtime.cli.codec import add_subcommand as add_codec

    add_codec(sub)

    from pan_runtime.cli.livecli import add_subcommands as add_live

    add_live(sub)
    from pan_runtime.cli.labcli import add_subcommand as add_lab

    add_lab(sub)
    from pan_runtime.cli.conformance import add_subcommand as add_conformance

    add_conformance(sub)

    s = sub.add_parser("bench", help="compare runtimes (see `pan bench --help`)")
    from pan_runtime.bench import add_arguments

    add_arguments(s)
    s.set_defaults(fn=_cmd_bench)
    for command in sub.choices.values():
        add_verbosity(command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    from pan_runtime.net.daemon import LOG_FORMAT

    args.verbose = verbosity(args)
    logging.basicConfig(level=max(logging.DEBUG, min(logging.ERROR, logging.WARNING - 10 * args.verbose)), format=LOG_FORMAT)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    try:
        return int(args.fn(args) or 0)
    except PanError as exc:
        print(f"pan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `pan runtimes | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"pan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
