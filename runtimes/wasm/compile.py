"""Compiling wasm modules: the engine settings every compile uses, and the job a node runs
in its compiler process (``pan_runtime.net.compiler``) for code from the network.

The node's engine and the compiler process's engine are built from the same settings, so
what the child serializes (``Module.serialize``) the node can deserialize; the settings
also key the artifact cache. Proposals the PNI's ABI has no use for (GC, exceptions,
function references, 64-bit and multiple memories, threads, ...) are off: less engine for
hostile code to reach, and exactly the instruction set ``shape.check_bodies`` decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import CodeObjectError
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_wasm.shape import check_bodies, scan

if TYPE_CHECKING:
    import wasmtime

__all__ = ["FEATURES", "engine_settings", "make_config", "compile_bytes", "compile_module"]

#: WebAssembly proposals, on or off, for every engine pan makes (``wasmtime.Config.wasm_<name>``)
FEATURES: dict[str, bool] = {
    "simd": True,
    "relaxed_simd": True,
    "bulk_memory": True,
    "reference_types": True,
    "multi_value": True,
    "tail_call": True,
    "threads": False,
    "gc": False,
    "function_references": False,
    "exceptions": False,
    "memory64": False,
    "multi_memory": False,
    "wide_arithmetic": False,
    "stack_switching": False,
    "custom_page_sizes": False,
    "component_model": False,
}


def engine_settings(mode: str, max_wasm_stack: int) -> dict[str, Any]:
    """Everything that shapes generated code (JSON; the artifact cache's key too)."""
    return {
        "mode": mode,
        "stack": max_wasm_stack,
        "opt": "speed",
        "may_move": False,
        "features": ",".join(sorted(k for k, on in FEATURES.items() if on)),
    }


def make_config(settings: Mapping[str, Any], *, parallel: bool = True) -> wasmtime.Config:
    """A ``wasmtime.Config`` for ``settings`` (``parallel``: compile on several threads)."""
    import wasmtime

    cfg = wasmtime.Config()
    cfg.epoch_interruption = settings["mode"] == "epoch"
    cfg.consume_fuel = settings["mode"] == "fuel"
    cfg.max_wasm_stack = int(settings["stack"])
    cfg.memory_may_move = bool(settings["may_move"])  # fastcall.LinearMemory caches the base address
    cfg.cranelift_opt_level = settings["opt"]
    on = set(str(settings["features"]).split(","))
    for feature in FEATURES:
        setattr(cfg, f"wasm_{feature}", feature in on)
    cfg.parallel_compilation = parallel
    return cfg


def compile_bytes(engine: wasmtime.Engine, payload: bytes, who: str) -> wasmtime.Module:
    """Compile ``payload``; ``CodeObjectError`` with Wasmtime's first lines when it is invalid."""
    import wasmtime

    try:
        return wasmtime.Module(engine, payload)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " / ".join(line.strip() for line in first[:3])
        raise CodeObjectError(f"{who}: not a valid WebAssembly module: {detail}") from None


def compile_module(payload: bytes, settings: Mapping[str, Any]) -> bytes:
    """The compiler process's job: check the module's shape and bodies against the node's
    limits, compile it on one thread (the node keeps the other cores), return the artifact."""
    import wasmtime

    who = str(settings.get("who", "wasm module"))
    limits = LoadLimits(**settings["limits"])
    shape = scan(payload, limits, who)
    check_bodies(payload, shape, limits, who)
    engine = wasmtime.Engine(make_config(settings["engine"], parallel=False))
    return bytes(compile_bytes(engine, payload, who).serialize())
