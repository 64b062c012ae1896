"""Builds the optional C extensions: the UDP fast path (``pan_runtime.net._fastpath``), a
worker's loop over its batches (``pan_runtime.isolation._batchloop``), the
runtimes' C entries ``pan_wasm._fast``, ``pan_jvm._fast`` and ``pan_restricted_py._fast``, and
restricted_py's memory and time accounting ``pan_restricted_py._account``; all metadata is in pyproject.toml.

``optional=True``: a machine without a C compiler still installs pan, and the node then
takes its Python path for every capsule (``pan node`` logs which path it runs); without
``_account`` the restricted_py runtime reports itself unavailable (it has no memory budget).
"""

import os
import shutil
from pathlib import Path

from setuptools import Extension, setup


def _jdk_include() -> list[str]:
    """``include`` and ``include/linux`` of the JDK (``$JAVA_HOME``, else ``javac`` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    if not home:
        javac = shutil.which("javac")
        home = str(Path(javac).resolve().parent.parent) if javac else ""
    inc = Path(home) / "include" if home else None
    if inc is None or not (inc / "jni.h").is_file():
        return []
    return [str(inc), str(inc / "linux")]


_JNI = _jdk_include()

setup(
    ext_modules=[
        Extension(
            "pan_runtime.net._fastpath",
            ["pan_runtime/net/_fastpath.c"],
            include_dirs=["pan_runtime/include"],
            depends=["pan_runtime/include/pan_fast.h", "pan_runtime/include/pan_wire.h", "pan_runtime/include/pan_nodelock.h", "pan_runtime/net/_fastpath_worker.c", "pan_runtime/net/_fastpath_uring.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "pan_runtime.isolation._batchloop",
            ["pan_runtime/isolation/_batchloop.c"],
            include_dirs=["pan_runtime/include"],
            depends=["pan_runtime/include/pan_fast.h", "pan_runtime/include/pni.h", "pan_runtime/isolation/_batchloop_serve.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        Extension(
            "pan_restricted_py._account",
            ["runtimes/restricted_py/_account.c"],
            depends=["runtimes/restricted_py/_account_api.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        Extension(
            "pan_restricted_py._fast",
            ["runtimes/restricted_py/_fast.c"],
            include_dirs=["pan_runtime/include"],
            depends=["pan_runtime/include/pan_fast.h", "pan_runtime/include/pni.h", "pan_runtime/include/pni_hot.h",
                     "pan_runtime/include/pni_hot_py.h", "runtimes/restricted_py/_account_api.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        Extension(
            "pan_wasm._fast",
            ["runtimes/wasm/_fast.c"],
            include_dirs=["pan_runtime/include"],
            depends=["pan_runtime/include/pan_fast.h", "pan_runtime/include/pni.h", "pan_runtime/include/pni_hot.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
    + (
        [
            Extension(
                "pan_jvm._fast",
                ["runtimes/jvm/_fast.c"],
                include_dirs=["pan_runtime/include", *_JNI],
                depends=["pan_runtime/include/pan_fast.h"],
                extra_compile_args=["-O2"],
                optional=True,
            )
        ]
        if _JNI  # without a JDK's jni.h the jvm runtime runs through accept
        else []
    )
)
