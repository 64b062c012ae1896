"""Ed25519 key files for signing code objects (``pan keygen`` / ``pan sign``).

Private keys are stored as PKCS#8 PEM (unencrypted, mode 0600); public keys as one line
of 64 hex digits (the raw 32-byte key), which is what node configurations list.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pan_runtime.data.files import read_bounded
from pan_runtime.errors import KeyFileError

__all__ = ["generate_keypair", "load_private_key", "load_public_key", "public_key_hex", "MAX_KEY_FILE"]

#: largest key file read (a public key file is 65 bytes, a PEM private key about 120)
MAX_KEY_FILE = 4096


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def generate_keypair(path: str | Path) -> tuple[Path, Path]:
    """Write ``PATH`` (private, PEM) and ``PATH.pub`` (public, hex); refuses to overwrite."""
    priv_path = Path(path)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists():
            raise KeyFileError(f"{p} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_text(public_key_hex(key) + "\n")
    return priv_path, pub_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    p = Path(path)
    data = read_bounded(p, MAX_KEY_FILE, KeyFileError, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{p} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{p} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(text_or_path: str | Path) -> bytes:
    """A raw 32-byte public key from 64 hex digits or a ``.pub`` file holding them (a regular
    file of at most ``MAX_KEY_FILE`` bytes: a device or FIFO named by mistake must not hang)."""
    s = str(text_or_path).strip()
    source = "argument"
    if not (len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s)):
        p = Path(s)
        try:
            s = read_bounded(p, MAX_KEY_FILE, KeyFileError, "public key file").decode().strip()
        except KeyFileError as exc:
            raise KeyFileError(f"{p} is neither 64 hex digits nor a readable public key file ({exc})") from None
        except UnicodeDecodeError:
            raise KeyFileError(f"public key file {p} is not text") from None
        source = str(p)
    try:
        raw = bytes.fromhex(s)
    except ValueError:
        raise KeyFileError(f"public key in {source} is not hex") from None
    if len(raw) != 32:
        raise KeyFileError(f"public key in {source} is {len(raw)} bytes, an Ed25519 key is 32")
    return raw
