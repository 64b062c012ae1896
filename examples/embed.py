"""Embed pan nodes in your own program: build a small network, install code, push capsules,
read statistics. Run it with `python examples/embed.py`.

Everything here is the public API: Network/Node to make nodes, CodeObject (or `pan build`)
for code, Application to inject capsules and receive deliveries.
"""

from __future__ import annotations

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.protocol_headers import PingHdr

# Code objects are written for a runtime. This one is Python source for `restricted_py`:
# it forwards every capsule toward the address at body offset 0, and counts capsules it
# has seen in the code object's soft state.
COUNTER = b'''
def accept(pni, capsule, length):
    seen = 0
    try:
        seen = int.from_bytes(pni.state_get(b"seen", 4), "big")
    except PniError:
        seen = 0
    pni.state_put(b"seen", (seen + 1).to_bytes(4, "big"), 0)
    return FORWARD
'''


def main() -> dict[str, int]:
    counter = CodeObject.create("restricted_py", COUNTER, meta={"label": "counter"})
    portmapper = reference_code("restricted_py", "portmapper")
    ping = reference_code("restricted_py", "ping")

    # sender - middle - receiver, linked in-process, static routes computed for us
    with Network.line(3) as net:
        sender, middle, receiver = net.nodes
        for code in (portmapper, counter, ping):
            net.install(code)
        for node in net.nodes:
            node.use_portmapper(portmapper)  # how FORWARD reaches applications at the destination

        inbox = Application(receiver)
        inbox.bind(7)  # deliveries for port 7 at the receiver come to us
        app = Application(sender)
        for i in range(10):
            body = receiver.address.raw + (7).to_bytes(2, "big") + b"\0\0" + f"hello {i}".encode()
            app.send(counter, body)

        app.bind(9)
        app.send(ping, PingHdr(dest=receiver.address.raw, port=9, phase=0, seq=1).pack())
        net.run()

        received = [d.data[20:].decode() for d in inbox.deliveries()]
        pong = PingHdr.unpack(app.receive().data)
        seen = middle.cache.peek(counter.name).state.get(b"seen")
        print("received:", received)
        print(f"ping seq {pong.seq} came back from {receiver.address}")
        print(middle.format_statistics())
        return {
            "received": len(received),
            "middle_seen": int.from_bytes(seen, "big"),
            "ping_phase": pong.phase,
        }


if __name__ == "__main__":
    main()
