import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import ConfigError, TrustError
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.runtime import Isolation


def pub(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


CODE = CodeObject.create("native", b"\x7fELF...", meta={"label": "n"})


@pytest.mark.parametrize("iso", list(Isolation))
def test_local_code_is_accepted_unsigned_by_default(iso):
    TrustPolicy().check(CODE, iso, CodeOrigin.LOCAL)


def test_sandboxed_network_code_needs_no_signature():
    TrustPolicy().check(CODE, Isolation.SANDBOXED, CodeOrigin.NETWORK)


@pytest.mark.parametrize("iso", [Isolation.GUARDED, Isolation.NONE])
def test_unsandboxed_network_code_needs_a_trusted_signature(iso):
    policy = TrustPolicy()
    with pytest.raises(TrustError) as err:
        policy.check(CODE, iso, CodeOrigin.NETWORK)
    assert err.value.rule == f"network.{iso.value}"
    assert "unsigned" in str(err.value)
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(TrustError, match="no signature by a trusted key"):
        policy.check(CODE.signed(stranger), iso, CodeOrigin.NETWORK)
    friend = Ed25519PrivateKey.generate()
    policy.trust([pub(friend)])
    policy.check(CODE.signed(friend), iso, CodeOrigin.NETWORK)


def test_rules_can_be_tightened_and_loosened_by_name():
    policy = TrustPolicy.from_config({"local.none": "never", "network.none": "any"})
    with pytest.raises(TrustError) as err:
        policy.check(CODE, Isolation.NONE, CodeOrigin.LOCAL)
    assert err.value.rule == "local.none"
    policy.check(CODE, Isolation.NONE, CodeOrigin.NETWORK)
    with pytest.raises(ConfigError, match="bad trust rule"):
        policy.set_rule("network.bogus", "any")
    with pytest.raises(ConfigError):
        policy.set_rule("network.none", "maybe")


def test_code_in_a_worker_process_has_a_column_of_its_own():
    policy = TrustPolicy()
    policy.check(CODE, Isolation.PROCESS, CodeOrigin.NETWORK)  # default: any origin, unsigned
    policy.set_rule("network.process", "signed")
    with pytest.raises(TrustError, match="trust rule network.process = signed"):
        policy.check(CODE, Isolation.PROCESS, CodeOrigin.NETWORK)


def test_a_rule_can_ask_for_process_isolation():
    policy = TrustPolicy.from_config({"network.none": "process"})
    with pytest.raises(TrustError) as err:
        policy.check(CODE, Isolation.NONE, CodeOrigin.NETWORK, runtime="native")
    assert err.value.rule == "network.none"
    assert '[runtimes.native] isolation = "process"' in str(err.value)
    policy.check(CODE, Isolation.PROCESS, CodeOrigin.NETWORK)  # the same code, in a worker
    with pytest.raises(ConfigError, match="the process column takes any|signed|never"):
        policy.set_rule("local.process", "process")
