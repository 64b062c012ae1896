"""The records a worker and the node exchange: kinds, the capsule fields of a batch, the
PNI calls a worker forwards, and the worker's exit statuses (``docs/isolation.md``)."""

from __future__ import annotations

import struct

__all__ = ["Kind", "CAPSULE", "NO_HOP", "FORWARDED", "EXIT_MEMORY", "EXIT_PROTOCOL", "EXIT_SETUP", "WORKER_MODULE"]

#: the worker's main module (``python -m``), run by the supervisor
WORKER_MODULE = "pan_runtime.net.worker"


class Kind:
    """Record kinds. Down (node to worker): ``HELLO`` .. ``REPLY``; up: ``RESULT`` .. ``CALL``."""

    HELLO = 1  # JSON: runtime, options, load limits, budget, node address, clock
    LOAD = 2  # the code object and its dependencies (.pco each)
    INIT = 3
    BATCH = 4  # capsules: a count, each one's fields (CAPSULE), then each body, in place
    EXPORT = 5  # export name, a0, a1
    RESET = 6
    FINALIZE = 7
    REPLY = 8  # the answer to a CALL
    RESULT = 21  # a control record's answer: status and value, or a fault
    VERDICTS = 22
    CALL = 23  # a PNI call for the node


#: one capsule's fields in a batch: origin kind, hop limit, body length, home, code name, prev hop
CAPSULE = struct.Struct("<BBxxI16s32s16sI")
#: the previous hop of a capsule that has none
NO_HOP = bytes(16)

#: exit statuses of a worker besides 0 (finalized) and signals
EXIT_MEMORY = 4  # the address-space limit was reached (MemoryError)
EXIT_PROTOCOL = 5  # the node's records made no sense
EXIT_SETUP = 6  # the runtime or the confinement could not be set up (the reason went up first)

#: the PNI calls a worker forwards to the node, with the shape of their arguments:
#: ``a`` an address (bytes), ``i`` an integer, ``b`` bytes, ``s`` a segment's bytes (last),
#: ``o`` a 16-byte output buffer the node fills and returns (not sent)
FORWARDED: dict[str, str] = {
    "send_toward": "as",
    "send_neighbor": "as",
    "deliver": "iis",
    "neighbor_count": "",
    "neighbor_address": "io",
    "route_lookup": "ao",
    "route_set": "aai",
    "env_origin_link": "",
    "node_mtu": "a",
    "node_now_ns": "",
    "dep_call": "ibii",
    "dep_export": "bbii",  # a dependency's export by the dependency's name (in the closure)
    "log": "ib",
    "state_put": "bbi",
    "state_delete": "b",
    "state_value": "b",  # answered with the status and the whole value (the node's soft state)
}
