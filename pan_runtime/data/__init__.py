"""The byte layer: software segments and pools, panStreams, node addresses, the capsule wire
format, code objects and keys. Imports nothing of the node, the network or the runtimes."""
