"""The reference protocols (forward, ping, flood, portmapper) as code objects for any runtime.

A runtime's sources are whatever its plugin registered through the ``pan_register_sources``
hook (``pan_runtime.plugin.sources``): the built-in runtimes register pan's own
(``pan_runtime.resources.protocols_dir``: the repository's ``protocols/``, installed as
``pan_protocols``; C for ``native`` and ``wasm``, Java for ``jvm``, Python for
``restricted_py``), a third-party runtime its own. Their behaviour is specified in
``docs/protocols.md``. Built code objects are cached on disk, keyed by the hash of the
sources, the files they read (the protocols' header codecs, the PNI header) and the
runtime, so only the first use compiles.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError, ResourceError
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import Plugins, default_plugins
from pan_runtime.plugin.sources import PROTOCOLS
from pan_runtime.resources import PROTOCOLS_ENV, include_dir, pni_java_dir, protocols_dir

__all__ = [
    "PROTOCOLS",
    "protocols_dir",
    "source_of",
    "has_reference_sources",
    "reference_code",
    "ping_body",
    "ping_rtt_us",
]

EXPORTS = {"portmapper": ["lookup"]}


def source_of(runtime: str, protocol: str, plugins: Plugins | None = None) -> Path:
    """The main source of ``runtime``'s reference ``protocol`` (the file its builder is chosen by)."""
    if protocol not in PROTOCOLS:
        raise CodeObjectError(f"no reference protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return (plugins or default_plugins()).sources.protocols(runtime).sources(protocol)[0]


def has_reference_sources(runtime: str, plugins: Plugins | None = None) -> bool:
    """True when a plugin registered ``runtime``'s reference protocols and their sources are there."""
    sources = (plugins or default_plugins()).sources
    if not sources.has_protocols(runtime):
        return False
    try:
        return not sources.protocols(runtime).missing()
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
    if protocol not in PROTOCOLS:
        raise CodeObjectError(f"no reference protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    plugins = plugins or default_plugins()
    refs = plugins.sources.protocols(runtime)
    files = refs.sources(protocol)
    src = files[0]
    for f in files:
        if not f.is_file():
            fix = (f"reinstall pan-runtime, or set {PROTOCOLS_ENV} to a protocols directory"
                   if refs.directory is protocols_dir else f"reinstall the plugin {refs.source or '?'} that registered it")
            raise CodeObjectError(f"reference source {f} is missing ({fix})")
    h = hashlib.sha256()
    for f in (*files, *refs.input_files(), include_dir() / "pni.h"):
        if f.exists():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    java = pni_java_dir() / "org" / "pan" / "pni"
    if src.suffix == ".java" and java.exists():
        for f in sorted(java.glob("*.java")):
            h.update(f.read_bytes())
    h.update(runtime.encode())
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", runtime)
    cached = _cache_dir() / f"{safe}-{protocol}-{h.hexdigest()[:20]}.pco"
    if cached.exists():
        try:
            return CodeObject.read(cached)
        except CodeObjectError:
            cached.unlink(missing_ok=True)
    builder = plugins.builders.find(runtime, src.suffix)
    reason = builder.available()
    if reason is not None:
        raise BuildError(f"cannot build {protocol} for {runtime}: {reason}")
    code = builder.build(BuildRequest(files, runtime, [], EXPORTS.get(protocol, []), f"{protocol}-{runtime}"))
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
