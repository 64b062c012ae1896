"""The plugin boundary: the runtime interface runtimes implement, the pluggy hook specification,
plugin discovery, code builders and the built-in ``null`` baseline runtime."""
