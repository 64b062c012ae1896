"""Demand loading fetches the dependencies a fetched code object names, then runs the capsule."""

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import Application
from pan_runtime.net.demand import DemandLoader
from pan_runtime.net.network import Network
from pan_runtime.node.trust import TrustPolicy
from pan_runtime.plugin.plugins import default_plugins

LIB = CodeObject.create(
    "restricted_py",
    b"def accept(pni, capsule, length):\n    return DROP\n\n\ndef hop(pni, a0, a1):\n    return FORWARD\n",
    exports=["hop"],
    meta={"label": "lib"},
)
USER = CodeObject.create(
    "restricted_py",
    b"def accept(pni, capsule, length):\n    return pni.dep_call(0, b'hop', 0, 0)\n",
    dependencies=[LIB.name],
    meta={"label": "user"},
)


def test_fetched_code_brings_its_dependencies_along():
    trust = TrustPolicy.from_config({"network.guarded": "any"})
    with Network.line(3, plugins=default_plugins(), trust=trust) as net:
        a, b, c = net.nodes
        a.install(LIB)
        a.install(USER)
        loaders = [DemandLoader(n) for n in net.nodes]
        app = Application(a)
        for i in range(3):
            app.send(USER, c.address.raw + b"\x00\x07\x00\x00" + bytes([i]))
        net.run()
        for n in (b, c):
            assert LIB.name in n.cache and USER.name in n.cache, n.name
        # every capsule reached c and ran there (no portmapper at c: counted as no_port)
        assert c.cache.peek(USER.name).stats.drops["no_port"] == 3
        assert b.cache.peek(USER.name).stats.forwarded == 3
        assert loaders[1].info()["fetched"] == 2 and loaders[1].info()["parked_now"] == 0


def test_a_dependency_that_cannot_be_fetched_fails_the_capsules_with_a_reason():
    trust = TrustPolicy.from_config({"network.guarded": "any"})
    with Network.line(2, plugins=default_plugins(), trust=trust) as net:
        a, b = net.nodes
        a.install(LIB)
        a.install(USER)
        loader = DemandLoader(b)
        DemandLoader(a)
        # b fetches user (installing it waits for lib), then refuses lib: user and its capsule fail
        b.trust.set_rule("network.guarded", "signed")
        app = Application(a)
        app.send(USER, b.address.raw + b"\x00\x07\x00\x00")
        net.run()
        assert USER.name not in b.cache and LIB.name not in b.cache
        assert b.stats.drops["dependency_failed"] == 1
        assert loader.info()["parked_now"] == 0 and loader.info()["failed"] == 2
