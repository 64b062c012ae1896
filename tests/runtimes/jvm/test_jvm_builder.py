"""``pan build --runtime jvm`` and the reference protocols written in Java."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_env, run

from pan_jvm.builder import JvmBuilder
from pan_runtime.errors import BuildError
from pan_runtime.node.env import Origin
from pan_runtime.node.pni import VERDICT_DONE, VERDICT_FORWARD
from pan_runtime.plugin.builders import BuildRequest

PROTOCOLS = Path(__file__).parents[3] / "protocols" / "java"


def test_build_reference_protocols_and_forward(runtime, host, jpool):
    code = JvmBuilder().build(BuildRequest([PROTOCOLS / "Forward.java"], "jvm", label="fwd"))
    assert code.manifest.meta["entry_class"] == "Forward"
    assert code.runtime == "jvm"
    again = JvmBuilder().build(BuildRequest([PROTOCOLS / "Forward.java"], "jvm", label="fwd"))
    assert again.name == code.name  # reproducible jar
    loaded = runtime.load(code, [], host)
    env = make_env(code, bytes(20), jpool)
    assert run(loaded, host, env) == VERDICT_FORWARD
    env.clear()


def test_portmapper_binds_from_application_only(runtime, host, node, jpool):
    codecs = sorted((PROTOCOLS / "pan" / "protocols").glob("*.java"))
    code = JvmBuilder().build(BuildRequest([PROTOCOLS / "Portmapper.java", *codecs], "jvm", exports=["lookup"]))
    loaded = runtime.load(code, [], host)
    app = make_env(code, b"\x00\x07\x00\x00", jpool, origin=Origin.APPLICATION)
    assert run(loaded, host, app) == VERDICT_DONE
    assert loaded.call_export("lookup", 7, 0) == 0x1234
    net = make_env(code, b"\x00\x08\x00\x00", jpool)
    assert run(loaded, host, net) == 0  # DROP
    app.clear()
    net.clear()


def test_javac_errors_become_build_errors(tmp_path):
    src = tmp_path / "Broken.java"
    src.write_text("public class Broken implements org.pan.pni.PanCode { }\n")
    with pytest.raises(BuildError, match=r"(?s)javac failed:.*Broken is not abstract"):
        JvmBuilder().build(BuildRequest([src], "jvm"))


def test_builder_refuses_what_the_loader_would(tmp_path):
    src = tmp_path / "Quit.java"
    src.write_text(
        "public class Quit implements org.pan.pni.PanCode {\n"
        "  public int accept(org.pan.pni.PNI p, int c, int l) { System.exit(1); return 0; }\n}\n"
    )
    with pytest.raises(BuildError, match="java.lang.System.exit"):
        JvmBuilder().build(BuildRequest([src], "jvm"))
