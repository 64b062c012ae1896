"""Code objects: a manifest plus a runtime payload, named by the SHA-256 of both.

Canonical encoding (also the start of a ``.pco`` file), all integers big-endian::

    offset  size  field
    0       6     magic b"PANCO1"
    6       4     manifest length M
    10      M     manifest: UTF-8 JSON, keys sorted, no white space
    10+M    8     payload length P
    18+M    P     payload (object file, wasm module, jar, Python source)

The code object's name is SHA-256 over exactly these bytes, so changing any byte of the
manifest or the payload changes the name. A ``.pco`` file may continue with a signature
block that is not part of the name::

    2       signature count N
    N x 96  Ed25519 public key (32) + signature over the 32-byte name (64)
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan_runtime.data.files import read_bounded
from pan_runtime.errors import CodeObjectError, SignatureError

__all__ = [
    "MAGIC",
    "NAME_SIZE",
    "MAX_MANIFEST",
    "MAX_PCO",
    "MAX_LABEL",
    "Manifest",
    "Signature",
    "CodeObject",
    "name_hex",
    "parse_name",
]

MAGIC = b"PANCO1"
NAME_SIZE = 32
MAX_MANIFEST = 64 * 1024
#: longest label shown for a code object (``CodeObject.label``)
MAX_LABEL = 64
MAX_PAYLOAD = 64 * 1024 * 1024
#: an upper bound on a whole .pco: magic, lengths, manifest, payload, up to 65535 signatures
MAX_PCO = 16 + MAX_MANIFEST + MAX_PAYLOAD + 2 + 96 * 0xFFFF
_ENTRY_KEYS = ("accept", "init", "finalize")
_MANIFEST_KEYS = {
    "runtime",
    "pni_version",
    "entry",
    "dependencies",
    "exports",
    "payload_size",
    "meta",
}


def name_hex(name: bytes) -> str:
    return name.hex()


def parse_name(text: str | bytes) -> bytes:
    """A code object name from 64 hex digits (or 32 raw bytes)."""
    if isinstance(text, bytes) and len(text) == NAME_SIZE:
        return text
    try:
        raw = bytes.fromhex(text if isinstance(text, str) else text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise CodeObjectError(f"code object name {text!r} is not 64 hex digits") from None
    if len(raw) != NAME_SIZE:
        raise CodeObjectError(f"code object name {text!r} is not 64 hex digits")
    return raw


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CodeObjectError(f"bad manifest: {message}")


@dataclass(frozen=True)
class Manifest:
    """What a node needs to know about a code object before running it."""

    runtime: str
    pni_version: str
    entry: Mapping[str, str] = field(default_factory=lambda: {"accept": "accept"})
    dependencies: tuple[bytes, ...] = ()
    exports: tuple[str, ...] = ()
    payload_size: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "pni_version": self.pni_version,
            "entry": dict(sorted(self.entry.items())),
            "dependencies": [d.hex() for d in self.dependencies],
            "exports": list(self.exports),
            "payload_size": self.payload_size,
            "meta": dict(self.meta),
        }

    def encode(self) -> bytes:
        return json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        try:
            obj = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CodeObjectError(f"bad manifest: not UTF-8 at byte {exc.start}") from None
        except ValueError as exc:
            raise CodeObjectError(f"bad manifest: not JSON ({exc})") from None
        _require(isinstance(obj, dict), "not a JSON object")
        unknown = set(obj) - _MANIFEST_KEYS
        _require(not unknown, f"unknown keys {sorted(unknown)}")
        for key in ("runtime", "pni_version", "entry", "payload_size"):
            _require(key in obj, f"missing key {key!r}")
        runtime, version = obj["runtime"], obj["pni_version"]
        _require(isinstance(runtime, str) and runtime, "'runtime' must be a non-empty string")
        _require(isinstance(version, str), "'pni_version' must be a string")
        entry = obj["entry"]
        _require(isinstance(entry, dict), "'entry' must be an object")
        _require("accept" in entry, "'entry' must name 'accept'")
        for k, v in entry.items():
            _require(k in _ENTRY_KEYS, f"unknown entry point kind {k!r}")
            _require(isinstance(v, str) and v.isidentifier(), f"entry {k!r} is not an identifier")
        deps = obj.get("dependencies", [])
        _require(isinstance(deps, list), "'dependencies' must be a list")
        dep_names = []
        for i, d in enumerate(deps):
            _require(isinstance(d, str), f"dependency {i} is not a string")
            try:
                dep_names.append(parse_name(d))
            except CodeObjectError:
                raise CodeObjectError(f"bad manifest: dependency {i} is not 64 hex digits") from None
        exports = obj.get("exports", [])
        _require(isinstance(exports, list), "'exports' must be a list")
        for e in exports:
            _require(isinstance(e, str) and e.isidentifier(), f"export {e!r} is not an identifier")
        size = obj["payload_size"]
        _require(
            isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_PAYLOAD,
            "'payload_size' must be an integer within limits",
        )
        meta = obj.get("meta", {})
        _require(isinstance(meta, dict), "'meta' must be an object")
        return cls(runtime, version, dict(entry), tuple(dep_names), tuple(exports), size, meta)


@dataclass(frozen=True)
class Signature:
    public_key: bytes  # 32-byte raw Ed25519 public key
    signature: bytes  # 64-byte signature over the code object name

    def verify(self, name: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(self.signature, name)
        except (InvalidSignature, ValueError):
            return False
        return True


class CodeObject:
    """An immutable code object; ``name`` is the SHA-256 of its canonical encoding."""

    __slots__ = ("manifest", "payload", "signatures", "name", "_encoded")

    def __init__(
        self,
        manifest: Manifest,
        payload: bytes,
        signatures: Iterable[Signature] = (),
    ):
        if manifest.payload_size != len(payload):
            raise CodeObjectError(
                f"manifest says payload_size={manifest.payload_size}, payload has {len(payload)} bytes"
            )
        self.manifest = manifest
        self.payload = bytes(payload)
        self.signatures: tuple[Signature, ...] = tuple(signatures)
        m = manifest.encode()
        if len(m) > MAX_MANIFEST:
            raise CodeObjectError(f"manifest is {len(m)} bytes, more than {MAX_MANIFEST}")
        self._encoded = b"".join(
            (MAGIC, struct.pack(">I", len(m)), m, struct.pack(">Q", len(self.payload)), self.payload)
        )
        self.name: bytes = hashlib.sha256(self._encoded).digest()

    @classmethod
    def create(
        cls,
        runtime: str,
        payload: bytes,
        *,
        pni_version: str | None = None,
        entry: Mapping[str, str] | None = None,
        dependencies: Sequence[bytes] = (),
        exports: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> CodeObject:
        """Wrap a payload built elsewhere into a code object."""
        if pni_version is None:
            from pan_runtime.pni_api import PNI_VERSION

            pni_version = PNI_VERSION
        manifest = Manifest(
            runtime=runtime,
            pni_version=pni_version,
            entry=dict(entry or {"accept": "accept"}),
            dependencies=tuple(dependencies),
            exports=tuple(exports),
            payload_size=len(payload),
            meta=dict(meta or {}),
        )
        return cls(manifest, payload)

    # -- identity --------------------------------------------------------------------
    @property
    def hex_name(self) -> str:
        return self.name.hex()

    @property
    def label(self) -> str | None:
        """What a person calls the code: the manifest's ``label`` (``pan build --label``), else
        its ``name``, else the stem of its first source file; None if it says none. Made
        printable and at most ``MAX_LABEL`` characters (it may come from the network and is
        written to logs)."""
        meta = self.manifest.meta
        text = meta.get("label")
        if not isinstance(text, str) or not text:
            text = meta.get("name")
        if not isinstance(text, str) or not text:
            sources = meta.get("sources")
            first = sources[0] if isinstance(sources, list) and sources else None
            text = first.rsplit("/", 1)[-1].split(".", 1)[0] if isinstance(first, str) else None
        if not text:
            return None
        text = "".join(c if c.isprintable() and not c.isspace() else "_" for c in text[:MAX_LABEL])
        return text

    @property
    def short_name(self) -> str:
        """``label@`` and the first 12 hex digits of the name (the digits alone without a label)."""
        label = self.label
        base = self.name.hex()[:12]
        return f"{label}@{base}" if label else base

    @property
    def runtime(self) -> str:
        return self.manifest.runtime

    def __repr__(self) -> str:
        return f"<CodeObject {self.short_name} runtime={self.runtime} {len(self.payload)}B>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodeObject) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    # -- encoding --------------------------------------------------------------------
    def encode(self) -> bytes:
        """Canonical encoding (what the name hashes), without signatures."""
        return self._encoded

    def to_pco(self) -> bytes:
        """The ``.pco`` file: canonical encoding plus the signature block."""
        sigs = b"".join(s.public_key + s.signature for s in self.signatures)
        return self._encoded + struct.pack(">H", len(self.signatures)) + sigs

    @property
    def size(self) -> int:
        return len(self._encoded)

    @classmethod
    def from_pco(cls, data: bytes, *, expect_name: bytes | None = None) -> CodeObject:
        """Decode a ``.pco`` (or a bare canonical encoding); checks every length and field."""
        data = bytes(data)
        n = len(data)
        if n < 10 or data[:6] != MAGIC:
            if n < 6:
                raise CodeObjectError(f"code object truncated: {n} bytes, header needs 10")
            raise CodeObjectError(f"not a code object: bad magic {data[:6]!r} at offset 0")
        (mlen,) = struct.unpack_from(">I", data, 6)
        if mlen > MAX_MANIFEST:
            raise CodeObjectError(f"manifest length {mlen} at offset 6 exceeds {MAX_MANIFEST}")
        if n < 10 + mlen + 8:
            raise CodeObjectError(
                f"code object truncated: {n} bytes, manifest and payload length need {10 + mlen + 8}"
            )
        manifest = Manifest.decode(data[10 : 10 + mlen])
        (plen,) = struct.unpack_from(">Q", data, 10 + mlen)
        pstart = 18 + mlen
        if plen > MAX_PAYLOAD:
            raise CodeObjectError(f"payload length {plen} at offset {10 + mlen} exceeds {MAX_PAYLOAD}")
        if n < pstart + plen:
            raise CodeObjectError(
                f"code object truncated: payload needs {plen} bytes at offset {pstart}, {n - pstart} present"
            )
        payload = data[pstart : pstart + plen]
        rest = data[pstart + plen :]
        sigs: list[Signature] = []
        if rest:
            if len(rest) < 2:
                raise SignatureError(f"signature block truncated at offset {pstart + plen}")
            (count,) = struct.unpack_from(">H", rest, 0)
            if len(rest) != 2 + 96 * count:
                raise SignatureError(
                    f"signature block at offset {pstart + plen} holds {len(rest) - 2} bytes, "
                    f"{count} signatures need {96 * count}"
                )
            for i in range(count):
                o = 2 + 96 * i
                sigs.append(Signature(rest[o : o + 32], rest[o + 32 : o + 96]))
        obj = cls(manifest, payload, sigs)
        if expect_name is not None and obj.name != expect_name:
            raise CodeObjectError(
                f"code object hashes to {obj.hex_name}, expected {expect_name.hex()}"
            )
        return obj

    @classmethod
    def read(cls, path: str | Path) -> CodeObject:
        p = Path(path)
        data = read_bounded(p, MAX_PCO, CodeObjectError, "code object file")
        try:
            return cls.from_pco(data)
        except CodeObjectError as exc:
            raise type(exc)(f"{p}: {exc}") from None

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_bytes(self.to_pco())
        return p

    # -- signatures -------------------------------------------------------------------
    def signed(self, private_key: Any) -> CodeObject:
        """A copy with one more signature by ``private_key`` (an ``Ed25519PrivateKey``)."""
        from cryptography.hazmat.primitives import serialization

        pub = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        sig = Signature(pub, private_key.sign(self.name))
        others = tuple(s for s in self.signatures if s.public_key != pub)
        return CodeObject(self.manifest, self.payload, (*others, sig))

    def verified_signers(self) -> list[bytes]:
        """Public keys whose signatures verify over this name."""
        return [s.public_key for s in self.signatures if s.verify(self.name)]

    def check_signatures(self) -> None:
        """Raise ``SignatureError`` if any attached signature fails to verify."""
        for i, s in enumerate(self.signatures):
            if not s.verify(self.name):
                raise SignatureError(
                    f"signature {i} by key {s.public_key.hex()[:16]}... does not verify "
                    f"over code object {self.hex_name}"
                )
