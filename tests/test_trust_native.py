"""Native code (isolation none) on a node: every path through the trust policy."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import TrustError
from pan_runtime.net.application import Application
from pan_runtime.node.node import Node
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.plugins import default_plugins

PLUGINS = default_plugins()
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def native_forward():
    return reference_code("native", "forward", PLUGINS)


def runs(node, code):
    app = Application(node)
    app.send(code, node.address.raw + b"\x00\x01\x00\x00")
    node.process()
    return node.cache.peek(code.name).stats.capsules_in == 1


def test_unsigned_native_from_the_network_is_refused_naming_the_rule():
    with Node(1, plugins=PLUGINS) as n, pytest.raises(TrustError) as err:
        n.install(native_forward(), origin=CodeOrigin.NETWORK)
    assert err.value.rule == "network.none"
    assert "trust rule network.none = signed" in str(err.value)


def test_native_signed_by_a_trusted_key_loads_from_the_network():
    with Node(1, plugins=PLUGINS, trust=TrustPolicy.from_config(keys=[PUB])) as n:
        code = native_forward().signed(KEY)
        n.install(code, origin=CodeOrigin.NETWORK)
        assert runs(n, code)


def test_native_signed_by_an_untrusted_key_is_refused():
    other = Ed25519PrivateKey.generate()
    with Node(1, plugins=PLUGINS, trust=TrustPolicy.from_config(keys=[PUB])) as n, pytest.raises(TrustError, match="no signature by a trusted key"):
        n.install(native_forward().signed(other), origin=CodeOrigin.NETWORK)


def test_unsigned_native_installed_by_a_local_application_loads():
    with Node(1, plugins=PLUGINS) as n:
        code = native_forward()
        Application(n).install(code)
        assert runs(n, code)


def test_the_insecure_setting_loosens_only_native_from_the_network(caplog):
    policy = TrustPolicy.from_config(insecure_allow_unsigned_native=True)
    with Node(1, plugins=PLUGINS, trust=policy) as n:
        code = native_forward()
        n.install(code, origin=CodeOrigin.NETWORK)
        assert runs(n, code)
        assert "insecure_allow_unsigned_native" in caplog.text
        guarded = reference_code("restricted_py", "forward", PLUGINS)
        with pytest.raises(TrustError, match="network.guarded"):
            n.install(guarded, origin=CodeOrigin.NETWORK)
