"""In-process lines of nodes for the isolation tests: n1 - n2 - ..., each node with a config
of its own (which one runs code in workers, and how), the native reference portmapper on each."""

from __future__ import annotations

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.network import Network
from pan_runtime.node.node import NodeConfig
from pan_runtime.plugin.plugins import default_plugins


def node_line(*configs: NodeConfig, portmapper: bool = True) -> Network:
    """One node per config, in a row, with routes; with ``portmapper``, the native reference
    portmapper installed (pinned) and used on every node."""
    net = Network(plugins=default_plugins())
    nodes = []
    for config in configs:
        net.config = config
        nodes.append(net.add_node())
    for a, b in zip(nodes, nodes[1:], strict=False):
        net.connect(a, b)
    net.compute_routes()
    if portmapper:
        pm = reference_code("native", "portmapper", net.plugins)
        net.install(pm, pin=True)
        for node in net.nodes:
            node.use_portmapper(pm)
    return net
