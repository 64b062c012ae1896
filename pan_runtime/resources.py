"""Where the files pan ships are: C headers, Java PNI sources, the reference protocols.

Compilers and the jvm read these at run time, so they are package data found through
``importlib.resources``, the same way in a checkout (an editable install) and in an
installed wheel; nothing is looked up relative to a repository. This module is the one
place that names them:

* ``include_dir()``: ``pni.h`` and the other C headers (package ``pan_runtime``)
* ``pni_java_dir()``: the source root of the generated ``org.pan.pni`` Java classes
* ``protocols_dir()``: the reference protocols' sources and their header codecs (package
  ``pan_protocols``, the repository's ``protocols/``), or ``$PAN_PROTOCOLS`` when set
* ``cases_dir()``: the conformance kit's cases (``<case>/expected.toml`` and one source per
  language), run by ``pan conformance``
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from pan_runtime.errors import ResourceError

__all__ = ["PROTOCOLS_ENV", "cases_dir", "include_dir", "pni_java_dir", "protocols_dir"]

#: the environment variable that points pan at another directory of reference protocols
PROTOCOLS_ENV = "PAN_PROTOCOLS"


def _package_dir(package: str) -> Path:
    """The directory of ``package`` on the file system (compilers need real files)."""
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ResourceError(f"package {package} is not installed; reinstall pan-runtime") from None
    if not isinstance(root, Path):
        raise ResourceError(f"package {package} is not on the file system ({root}); install pan-runtime unpacked")
    return root


def include_dir() -> Path:
    """The directory of ``pni.h``, ``pni_hot.h``, ``pan_fast.h`` and ``pan_wire.h``."""
    return _package_dir("pan_runtime") / "include"


def pni_java_dir() -> Path:
    """The source root of the generated Java PNI (``org/pan/pni/*.java`` below it)."""
    return _package_dir("pan_runtime") / "java"


def protocols_dir() -> Path:
    """The reference protocols: ``$PAN_PROTOCOLS`` if set, else the installed ``pan_protocols``."""
    env = os.environ.get(PROTOCOLS_ENV)
    if env:
        return Path(env)
    return _package_dir("pan_protocols")


def cases_dir() -> Path:
    """The conformance cases: one folder per case, with ``expected.toml`` and its sources."""
    return _package_dir("pan_runtime") / "testing" / "cases"
