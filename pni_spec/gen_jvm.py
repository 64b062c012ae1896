"""Render ``runtimes/jvm/pni_marshal.py``: the Python side of every PNI call Java code makes.

``make_methods()`` returns, per call, the method of the JPype proxy that
implements ``org.pan.pni.PNI``: straight-line Python that checks each Java array range
(``OUT_OF_RANGE`` if it does not fit), calls ``self.host.<call>`` with memoryviews and copies
outputs back. Generated so that no spec is read when the JVM runtime starts.
"""

from __future__ import annotations

from pni_spec.gen_common import BANNER, camel
from pni_spec.spec import Call, Spec


def _method(call: Call, sizes: dict[str, int]) -> list[str]:
    params: list[str] = []
    pre: list[str] = []
    args: list[str] = []
    post: list[str] = []
    for p in call.params:
        n = p.name
        if p.type in ("bytes_in", "bytes_out"):
            params += [n, f"{n}_off", f"{n}_len"]
            pre += [
                f"{n}_off = int({n}_off)",
                f"{n}_len = int({n}_len)",
                f"if {n} is None or {n}_off < 0 or {n}_len < 0 or {n}_off + {n}_len > len({n}):",
                "    return OUT_OF_RANGE",
            ]
            if p.type == "bytes_in":
                args.append(f'memoryview({n}).cast("B")[{n}_off:{n}_off + {n}_len]')
            else:
                pre.append(f"{n}_buf = bytearray({n}_len)")
                args.append(f"memoryview({n}_buf)")
                post.append(f"{n}[{n}_off:{n}_off + {n}_len] = bytes({n}_buf)")
        elif p.type in sizes:
            size = sizes[p.type]
            params.append(n)
            pre += [f"if {n} is None or len({n}) < {size}:", "    return OUT_OF_RANGE"]
            if p.type == "addr_in":
                args.append(f'memoryview({n}).cast("B")[:{size}]')
            else:
                pre.append(f"{n}_buf = bytearray({size})")
                args.append(f"memoryview({n}_buf)")
                post.append(f"{n}[0:{size}] = bytes({n}_buf)")
        else:
            params.append(n)
            args.append(f"int({n})")
    o = [f"    def {camel(call.name)}(self{''.join(', ' + p for p in params)}):"]
    o += ["        host = self.host"]
    o += [f"        {line}" for line in pre]
    if post:
        o.append(f"        result = host.{call.name}({', '.join(args)})")
        o += [f"        {line}" for line in post]
        o.append("        return result")
    else:
        o.append(f"        return host.{call.name}({', '.join(args)})")
    return o


def render_jvm(spec: Spec) -> str:
    sizes = dict(spec.sizes)
    o = [
        f'"""{BANNER}',
        "",
        f"The Python side of every call of PNI {spec.version} from Java code (see pni_spec/gen_jvm.py).",
        '"""',
        "",
        '__all__ = ["JAVA_NAMES", "make_methods"]',
        "",
        f"OUT_OF_RANGE = {spec.status_value('OUT_OF_RANGE')}",
        "#: spec call name -> its Java method name",
        "JAVA_NAMES = {",
        *(f"    {c.name!r}: {camel(c.name)!r}," for c in spec.calls),
        "}",
        "",
        "",
        "def make_methods():",
        '    """The proxy methods by Java name (the server builds the environment of a capsule when a call needs it)."""',
    ]
    for c in spec.calls:
        o += ["", *_method(c, sizes)]
    o += ["", "    return {", *(f"        {camel(c.name)!r}: {camel(c.name)}," for c in spec.calls), "    }", ""]
    return "\n".join(o)
