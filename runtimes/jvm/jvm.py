"""The one JVM of a process: compiled support classes, start-up options, and its handle.

JPype can start one JVM per process and never restart it, and a JVM does not survive
``fork``. ``ensure_jvm`` therefore starts it at most once (the first caller's options
win; later callers share it) and remembers the process id. The generated PNI sources and
this package's support classes are compiled on first use into a cache directory keyed by
their content hash (``PAN_JVM_CACHE``, default ``~/.cache/pan/jvm``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan_runtime.errors import BuildError, RuntimeUnavailable

__all__ = [
    "SUPPORT_DIR",
    "pni_source_dir",
    "java_sources",
    "find_javac",
    "unavailable_reason",
    "compiled_classes",
    "Jvm",
    "ensure_jvm",
    "DEFAULT_HEAP",
]

SUPPORT_DIR = Path(__file__).with_name("java")
DEFAULT_HEAP = "256m"
_LOCK = threading.Lock()
#: JDK-internal classes the allowed APIs initialize lazily (number formatting and parsing);
#: initialized at start-up with the allowed classes, so that no watchdog stop lands in their
#: static initializers (a stop there breaks the class for the JVM's life). Names a JDK lacks
#: are passed over.
LAZY_JDK_HELPERS = (
    "jdk.internal.math.FDBigInteger",
    "jdk.internal.math.FloatingDecimal",
    "jdk.internal.math.FloatingDecimal$BinaryToASCIIBuffer",
    "jdk.internal.math.FormattedFloatingDecimal",
    "jdk.internal.math.DoubleToDecimal",
    "jdk.internal.math.FloatToDecimal",
    "java.lang.StringConcatHelper",
    "java.lang.invoke.StringConcatFactory",
)
_JVM: Jvm | None = None


def pni_source_dir() -> Path:
    """Where the generated ``org.pan.pni`` sources live (shipped with pan_runtime)."""
    from pan_runtime.resources import pni_java_dir

    return pni_java_dir()


def java_sources() -> list[Path]:
    """The generated PNI sources and this runtime's support sources, in a stable order."""
    pni = sorted((pni_source_dir() / "org" / "pan" / "pni").glob("*.java"))
    own = sorted((SUPPORT_DIR / "org" / "pan" / "jvm").glob("*.java"))
    return pni + own


def find_javac() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "javac").exists():
        return str(Path(java_home) / "bin" / "javac")
    return shutil.which("javac")


def unavailable_reason() -> str | None:
    """Why the jvm runtime cannot run in this process, or None."""
    try:
        import jpype
    except ImportError:
        return "JPype1 is not installed (pip install 'pan-runtime[jvm]')"
    if _JVM is not None and _JVM.pid != os.getpid():
        return "the JVM was started before fork(); JPype cannot use it in a child process"
    if not jpype.isJVMStarted():
        try:
            jpype.getDefaultJVMPath()
        except Exception as exc:  # JPype raises its own JVMNotFoundException
            return f"no JDK found: {exc}"
    if find_javac() is None:
        return "javac not found (install a JDK 17, or set JAVA_HOME)"
    if not (pni_source_dir() / "org" / "pan" / "pni" / "PNI.java").exists():
        return "generated Java PNI sources missing; run python -m pni_spec.generate"
    return None


def _cache_root() -> Path:
    root = os.environ.get("PAN_JVM_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "pan" / "jvm"


def compiled_classes() -> Path:
    """A directory of compiled PNI + support classes, compiled now if not cached."""
    sources = java_sources()
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    target = _cache_root() / digest.hexdigest()[:20] / "classes"
    if (target / "org" / "pan" / "jvm" / "Lane.class").exists():
        return target
    javac = find_javac()
    if javac is None:
        raise RuntimeUnavailable("javac not found (install a JDK 17, or set JAVA_HOME)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="classes-", dir=target.parent))
    cmd = [javac, "--release", "17", "-nowarn", "-Xlint:-deprecation", "-Xlint:-removal", "-d", str(tmp)]
    proc = subprocess.run([*cmd, *map(str, sources)], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"compiling the jvm runtime's support classes failed:\n{proc.stderr.strip()}")
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class Jvm:
    """Handles to the started JVM and the support classes every runtime instance shares."""

    pid: int
    classes_dir: Path
    options: dict[str, Any]
    started_here: bool
    classes: dict[str, Any] = field(default_factory=dict)
    direct_by_address: bool = False

    def cls(self, name: str) -> Any:
        return self.classes[name]

    @property
    def pni_class_names(self) -> list[str]:
        """Internal names of the generated PNI classes (what code objects may name)."""
        base = self.classes_dir / "org" / "pan" / "pni"
        return sorted(f"org/pan/pni/{p.stem}" for p in base.glob("*.class"))

    def versions(self) -> dict[str, str]:
        import jpype

        system = jpype.JClass("java.lang.System")
        return {
            "jpype": jpype.__version__,
            "java": str(system.getProperty("java.version")),
            "jvm": str(system.getProperty("java.vm.name")),
        }


def _jvm_args(options: Mapping[str, Any]) -> list[str]:
    # no attach listener: a JVM of pan's runs code from the network, and one that is killed
    # (a worker past its budget) would leave its /tmp/.java_pid socket behind; jvm_flags
    # "-XX:-DisableAttachMechanism" turns it back on for jcmd and the like
    args = [f"-Xmx{options.get('heap', DEFAULT_HEAP)}", "--add-opens=java.base/java.nio=ALL-UNNAMED", "-XX:+DisableAttachMechanism"]
    gc = options.get("gc", "SerialGC")
    if gc:
        args.append(f"-XX:+Use{gc}")
    flags: Sequence[str] = options.get("jvm_flags", ())
    if isinstance(flags, str):
        flags = flags.split()
    args.extend(flags)
    return args


def ensure_jvm(options: Mapping[str, Any] | None = None) -> Jvm:
    """Start the process's JVM if needed and load the support classes; shared afterwards."""
    global _JVM
    with _LOCK:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeUnavailable(f"jvm runtime unavailable: {reason}")
        if _JVM is not None:
            return _JVM
        import jpype

        from pan_jvm import allowlist

        opts = dict(options or {})
        classes_dir = compiled_classes()
        started_here = not jpype.isJVMStarted()
        if started_here:
            try:
                jpype.startJVM(*_jvm_args(opts), classpath=[str(classes_dir)], convertStrings=False)
            except (OSError, RuntimeError) as exc:
                raise RuntimeUnavailable(f"jvm runtime unavailable: the JVM did not start ({exc})") from None
            loader = jpype.JClass("java.lang.ClassLoader").getSystemClassLoader()
        else:
            # someone else started the JVM: load our classes through a loader of their own
            url = jpype.JClass("java.io.File")(str(classes_dir)).toURI().toURL()
            urls = jpype.JArray(jpype.JClass("java.net.URL"))([url])
            loader = jpype.JClass("java.net.URLClassLoader")(urls)
        jvm = Jvm(os.getpid(), classes_dir, opts, started_here)
        for short in ("Lane", "Gate", "CodeLoader", "PniBridge", "Upcalls", "Memory", "Watchdog"):
            jvm.classes[short] = jpype.JClass(f"org.pan.jvm.{short}", loader=loader)
        jvm.classes["PanCode"] = jpype.JClass("org.pan.pni.PanCode", loader=loader)
        allowed = sorted({n.replace("/", ".") for n in (*allowlist.ALLOWED, *allowlist.INDY_SUPPORT)})
        jvm.classes["gate"] = jvm.classes["Gate"](loader, jpype.JArray(jpype.JString)(allowed))
        jvm.classes["Watchdog"].preinitialize(jpype.JArray(jpype.JString)([*allowed, *LAZY_JDK_HELPERS]))
        jvm.direct_by_address = bool(jvm.classes["Memory"].available())
        if "watchdog_tick_ms" in opts:
            jvm.classes["Watchdog"].setTickMillis(float(opts["watchdog_tick_ms"]))
        _JVM = jvm
        return jvm


def current_jvm() -> Jvm | None:
    """The process's JVM handle if ``ensure_jvm`` ran, else None."""
    return _JVM
