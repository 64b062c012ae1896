"""The reference protocols (forward, ping, flood, portmapper) as code objects for any runtime.

Sources are package data (``pan_runtime.resources.protocols_dir``: the repository's
``protocols/``, installed as ``pan_protocols``; C for ``native`` and ``wasm``, Java for ``jvm``,
Python for ``restricted_py``); their behaviour is specified in ``docs/protocols.md``. Built code objects
are cached on disk, keyed by the hash of the source, the PNI header, the header codecs
(``header_codecs``) and the runtime, so
only the first use compiles.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError, ResourceError
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import Plugins
from pan_runtime.resources import include_dir, pni_java_dir, protocols_dir

__all__ = [
    "PROTOCOLS",
    "protocols_dir",
    "source_of",
    "has_reference_sources",
    "header_codecs",
    "reference_code",
    "ping_body",
    "ping_rtt_us",
]

PROTOCOLS = ("forward", "ping", "flood", "portmapper")
EXPORTS = {"portmapper": ["lookup"]}


def source_of(runtime: str, protocol: str) -> Path:
    if protocol not in PROTOCOLS:
        raise CodeObjectError(f"no reference protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    d = protocols_dir()
    if runtime in ("native", "wasm"):
        return d / f"{protocol}.c"
    if runtime == "jvm":
        return d / "java" / f"{protocol.capitalize()}.java"
    if runtime == "restricted_py":
        return d / f"{protocol}.py"
    raise CodeObjectError(f"no reference sources for runtime {runtime!r}")


def header_codecs(runtime: str) -> list[Path]:
    """The generated codecs of the protocols' headers (``protocols/headers.toml``) a build for
    ``runtime`` reads: the C header the C sources include and, for jvm, the Java classes
    compiled into each code object beside the protocol's own."""
    d = protocols_dir()
    java = sorted((d / "java" / "pan" / "protocols").glob("*.java")) if runtime == "jvm" else []
    return [d / "headers.h", *java]


def has_reference_sources(runtime: str) -> bool:
    """True when ``protocols/`` has the reference sources for ``runtime``."""
    try:
        return all(source_of(runtime, p).exists() for p in PROTOCOLS)
    except (CodeObjectError, ResourceError):
        return False


def _cache_dir() -> Path:
    base = os.environ.get("PAN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pan")
    p = Path(base) / "reference"
    p.mkdir(parents=True, exist_ok=True)
    return p


def reference_code(runtime: str, protocol: str, plugins: Plugins | None = None) -> CodeObject:
    """The reference ``protocol`` built for ``runtime`` (from the on-disk cache when fresh)."""
    if runtime == "null":
        if protocol != "forward":
            raise CodeObjectError("the null runtime has only the forward protocol")
        from pan_runtime.plugin.nullrt import null_code

        return null_code("forward")
    src = source_of(runtime, protocol)
    if not src.exists():
        raise CodeObjectError(f"reference source {src} is missing (reinstall pan-runtime, or set PAN_PROTOCOLS to a protocols directory)")
    codecs = header_codecs(runtime)
    h = hashlib.sha256(src.read_bytes())
    for header in (include_dir() / "pni.h", *codecs):
        if header.exists():
            h.update(header.read_bytes())
    java = pni_java_dir() / "org" / "pan" / "pni"
    if runtime == "jvm" and java.exists():
        for f in sorted(java.glob("*.java")):
            h.update(f.read_bytes())
    h.update(runtime.encode())
    cached = _cache_dir() / f"{runtime}-{protocol}-{h.hexdigest()[:20]}.pco"
    if cached.exists():
        try:
            return CodeObject.read(cached)
        except CodeObjectError:
            cached.unlink(missing_ok=True)
    if plugins is None:
        from pan_runtime.plugin.plugins import default_plugins

        plugins = default_plugins()
    builder = plugins.builders.find(runtime, src.suffix)
    reason = builder.available()
    if reason is not None:
        raise BuildError(f"cannot build {protocol} for {runtime}: {reason}")
    code = builder.build(BuildRequest([src, *(c for c in codecs if c.suffix == ".java")], runtime, [], EXPORTS.get(protocol, []), f"{protocol}-{runtime}"))
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    code.write(tmp)
    os.replace(tmp, cached)
    return code


def ping_body(dest: bytes, port: int, seq: int, size: int = 0) -> bytes:
    """The body of ping number ``seq`` toward ``dest`` (16 bytes), answered at ``port``: the
    ping header, padded to ``size`` bytes when that is longer."""
    from pan_runtime.protocol_headers import PingHdr

    return PingHdr(dest=dest, port=port, phase=0, seq=seq).pack() + bytes(max(0, size - PingHdr.SIZE))


def ping_rtt_us(data: bytes, seq: int, now_ns: int) -> float | None:
    """The round trip (µs) of ping ``seq`` if ``data`` is its answer, else None; the ping code
    stamped the departure time at the sender (``CLOCK_MONOTONIC``, shared by local nodes)."""
    from pan_runtime.protocol_headers import PingHdr

    if len(data) < PingHdr.SIZE:
        return None
    back = PingHdr.unpack(data)
    if back.seq != seq or back.phase != 1:
        return None
    return (now_ns - back.sent_ns) / 1000
