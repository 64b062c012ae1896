import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from pan_runtime.data.codeobj import MAGIC, CodeObject, Manifest
from pan_runtime.errors import CodeObjectError, SignatureError


def make(payload=b"def accept(pni, capsule, length):\n    return DROP\n", **kw):
    return CodeObject.create("restricted_py", payload, meta={"label": "t"}, **kw)


def test_name_is_sha256_of_canonical_encoding_and_round_trips():
    import hashlib

    c = make(exports=["lookup"], entry={"accept": "accept", "init": "init"})
    assert c.name == hashlib.sha256(c.encode()).digest()
    assert c.encode().startswith(MAGIC)
    back = CodeObject.from_pco(c.to_pco())
    assert back.name == c.name and back.manifest == c.manifest and back.payload == c.payload


@given(st.binary(min_size=1, max_size=200), st.data())
def test_flipping_any_byte_changes_the_name_or_fails_to_decode(payload, data):
    c = make(payload)
    enc = bytearray(c.encode())
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] ^= data.draw(st.integers(1, 255))
    try:
        other = CodeObject.from_pco(bytes(enc))
    except CodeObjectError:
        return
    assert other.name != c.name


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_code_object_error(data):
    try:
        CodeObject.from_pco(data)
    except CodeObjectError:
        pass


@given(st.binary(max_size=80), st.integers(0, 400))
def test_truncations_raise_code_object_error(payload, cut):
    code = make(payload)
    pco = code.to_pco()
    if cut >= len(pco) or cut == len(code.encode()):
        return  # whole, or exactly the bare canonical encoding (which is a valid input)
    with pytest.raises(CodeObjectError):
        CodeObject.from_pco(pco[:cut])


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[1,2]", "not a JSON object"),
        (b"{", "not JSON"),
        (json.dumps({"runtime": "x"}).encode(), "missing key"),
        (json.dumps({"runtime": "x", "pni_version": "1.0", "entry": {}, "payload_size": 0}).encode(), "'accept'"),
        (json.dumps({"runtime": "x", "pni_version": "1.0", "entry": {"accept": "a"}, "payload_size": 0, "bogus": 1}).encode(), "unknown keys"),
        (json.dumps({"runtime": "x", "pni_version": "1.0", "entry": {"accept": "a"}, "payload_size": 0, "dependencies": ["zz"]}).encode(), "dependency 0"),
        (json.dumps({"runtime": "x", "pni_version": "1.0", "entry": {"accept": "a b"}, "payload_size": 0}).encode(), "not an identifier"),
    ],
)
def test_bad_manifests_name_the_problem(manifest, message):
    pco = MAGIC + struct.pack(">I", len(manifest)) + manifest + struct.pack(">Q", 0)
    with pytest.raises(CodeObjectError, match=message):
        CodeObject.from_pco(pco)


def test_payload_size_must_match():
    m = Manifest("x", "1.0", payload_size=3)
    with pytest.raises(CodeObjectError, match="payload_size"):
        CodeObject(m, b"ab")


def test_signatures_verify_and_are_not_part_of_the_name(tmp_path):
    key = Ed25519PrivateKey.generate()
    c = make()
    s = c.signed(key)
    assert s.name == c.name
    assert len(s.verified_signers()) == 1
    s.check_signatures()
    p = s.write(tmp_path / "x.pco")
    back = CodeObject.read(p)
    assert back.verified_signers() == s.verified_signers()
    # a corrupted signature is reported as such
    raw = bytearray(back.to_pco())
    raw[-1] ^= 1
    bad = CodeObject.from_pco(bytes(raw))
    with pytest.raises(SignatureError, match="does not verify"):
        bad.check_signatures()
    # a truncated signature block
    with pytest.raises(SignatureError, match="signature"):
        CodeObject.from_pco(bytes(raw[:-5]))


def test_read_names_the_file(tmp_path):
    p = tmp_path / "broken.pco"
    p.write_bytes(b"PANCO1\0\0")
    with pytest.raises(CodeObjectError, match="broken.pco"):
        CodeObject.read(p)
    with pytest.raises(CodeObjectError, match="cannot read"):
        CodeObject.read(tmp_path / "missing.pco")


READ_CHILD = """
import sys
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
try:
    CodeObject.read(sys.argv[1])
except CodeObjectError as exc:
    print(exc)
"""


def test_read_refuses_what_is_not_a_regular_file(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "code.pco"
    os.mkfifo(fifo)  # nobody writes: reading it would never end
    r = subprocess.run([sys.executable, "-c", READ_CHILD, str(fifo)], capture_output=True, text=True, timeout=60)  # hang guard
    assert r.returncode == 0 and "not a regular file" in r.stdout, r.stdout + r.stderr


@given(st.binary(max_size=300))
def test_key_files_with_any_content_raise_key_file_error(tmp_path_factory, data):
    from pan_runtime.data.keys import load_private_key, load_public_key
    from pan_runtime.errors import KeyFileError

    d = tmp_path_factory.mktemp("keys")
    f = d / "k"
    f.write_bytes(data)
    for loader in (load_private_key, load_public_key):
        try:
            loader(f)
        except KeyFileError:
            pass


def test_a_code_object_is_named_by_its_label_its_name_or_its_source_file():
    base = b"def accept(pni, capsule, length):\n    return DROP\n"
    by_label = CodeObject.create("restricted_py", base, meta={"label": "pinger", "sources": ["x.py"]})
    assert by_label.label == "pinger" and by_label.short_name == f"pinger@{by_label.hex_name[:12]}"
    by_source = CodeObject.create("restricted_py", base, meta={"sources": ["dir/my_proto.py"]})
    assert by_source.short_name == f"my_proto@{by_source.hex_name[:12]}"
    assert CodeObject.create("restricted_py", base, meta={"name": "nm"}).label == "nm"
    bare = CodeObject.create("restricted_py", base)
    assert bare.label is None and bare.short_name == bare.hex_name[:12]
    # a label from the network is written to logs: one printable word of bounded length
    hostile = CodeObject.create("restricted_py", base, meta={"label": "a\nWARNING fake\x1b[31m" + "x" * 500})
    assert hostile.label is not None and hostile.label.isprintable() and " " not in hostile.label
    assert len(hostile.label) == 64 and "\n" not in hostile.short_name
