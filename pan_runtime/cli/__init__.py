"""The faces: the ``pan`` command, the in-process demo, the network commands (ping, flood,
stats) and the reference protocols they install."""
