"""Network and application I/O: UDP netlinks and their event loop, the compiled fast path,
application links on UNIX sockets, the client library, demand loading, node configuration,
the ``pan node`` daemon and the in-process network and application library for embedding."""
