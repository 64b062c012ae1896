"""Render ``runtimes/jvm/java/org/pan/jvm/HostGuard.java``: every host call of Java code, bracketed.

Java code reaches the node's Python ``PniServer`` through a JPype proxy. A watchdog stop
(``Thread.stop``) that lands while the thread is in there -- in the proxy's machinery, in
Python, in a JNI call Python makes back into Java -- leaves JPype in a state it does not
survive. ``HostGuard`` wraps the proxy: each call asks the lane to close its door to
stops before it (``Lane.hostEnter``: no stop is issued while the door is closed, one
already issued is collected first, in Java) and to open it again after
(``Lane.hostLeave``: a call past its budget is stopped right there, in Java). One method
per PNI call, generated so that a new call in the spec needs no change in the runtime.
"""

from __future__ import annotations

from pni_spec.gen_common import BANNER_ASCII
from pni_spec.gen_java import SCALARS, ident, java_params
from pni_spec.spec import Call, Spec

__all__ = ["GUARD_PATH", "render_jvm_guard"]

#: where the generated class goes, relative to the repository root
GUARD_PATH = "runtimes/jvm/java/org/pan/jvm/HostGuard.java"


def _forward(call: Call) -> list[str]:
    names: list[str] = []
    for p in call.params:
        n = ident(p.name)
        names += [n, f"{n}Off", f"{n}Len"] if p.type in ("bytes_in", "bytes_out") else [n]
    name = ident(call.name)
    return [
        "    @Override",
        f"    public {SCALARS[call.result]} {name}({java_params(call.params)}) {{",
        "        lane.hostEnter();",
        "        try {",
        f"            return up.{name}({', '.join(names)});",
        "        } finally {",
        "            lane.hostLeave();",
        "        }",
        "    }",
        "",
    ]


def render_jvm_guard(spec: Spec) -> str:
    out = [
        f"// {BANNER_ASCII}",
        "// Generator: pni_spec/gen_jvm_guard.py.",
        "package org.pan.jvm;",
        "",
        "/**",
        " * The host calls of one code object (the Python PniServer behind a JPype proxy), each",
        " * bracketed by Lane.hostEnter and Lane.hostLeave, so that no watchdog stop is ever",
        " * delivered while the thread is outside Java code the lane controls.",
        " */",
        "final class HostGuard implements Upcalls {",
        "    private final Lane lane;",
        "    private final Upcalls up;",
        "",
        "    HostGuard(Lane lane, Upcalls up) {",
        "        this.lane = lane;",
        "        this.up = up;",
        "    }",
        "",
        "    @Override",
        "    public void select(int index) {",
        "        lane.hostEnter();",
        "        try {",
        "            up.select(index);",
        "        } finally {",
        "            lane.hostLeave();",
        "        }",
        "    }",
        "",
    ]
    for c in spec.calls:
        out += _forward(c)
    out[-1:] = ["}", ""]
    return "\n".join(out)
