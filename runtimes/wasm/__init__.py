"""pan's ``wasm`` runtime: WebAssembly code objects on Wasmtime (see README.md).

Modules: ``runtime`` (WasmRuntime), ``code`` (WasmCode, the loaded code), ``fastcall`` (the
unchecked call path; the only user of wasmtime-py internals), ``hostcalls`` (the PNI as
imports), ``limits`` (epoch/fuel budgets), ``cache`` (compiled modules), ``builder`` (C and
WAT), ``plugin`` (hooks).
Importing this package does not import wasmtime.
"""
