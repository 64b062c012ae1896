"""Builds the optional C extensions of the UDP fast path (``pan_runtime._fastpath`` and the
wasm runtime's entry ``pan_wasm._fast``); all metadata is in pyproject.toml.

``optional=True``: a machine without a C compiler still installs pan, and the node then
takes its Python path for every capsule (``pan node`` logs which path it runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pan_runtime._fastpath",
            ["pan_runtime/_fastpath.c"],
            depends=["pan_runtime/include/pan_fast.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "pan_wasm._fast",
            ["runtimes/wasm/_fast.c"],
            include_dirs=["pan_runtime/include"],
            depends=["pan_runtime/include/pan_fast.h", "pan_runtime/include/pni.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
