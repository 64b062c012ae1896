"""The node model: the node (queue, dispatch, outcomes), the PNI host, environments, the code
cache, soft state, routes, links, events, statistics and the trust policy. No I/O of its own."""
