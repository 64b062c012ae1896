"""``pan codec``: C, Java and Python codecs for a user's capsule headers, described in TOML.

The front end of the generator pan's own reference protocols use (``pni_spec.codecs``; the
format is ``pni_spec.headers``, documented in ``docs/codec.md``). From ``SPEC.toml`` it
writes, under ``--out``: ``SPEC.h`` (C, over ``pni.h``), ``java/<package>/<Struct>.java``
(over ``org.pan.pni``) and ``SPEC.py`` (over ``pan_runtime``). This is the one module of the
core that imports ``pni_spec``: a build tool, never a part of a running node.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pan_runtime.errors import ConfigError
from pan_runtime.resources import include_dir, pni_java_dir

__all__ = ["LANGUAGES", "add_subcommand", "outputs", "generate"]

LANGUAGES = ("c", "java", "python")


def add_subcommand(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``pan codec`` on the ``pan`` parser."""
    s = sub.add_parser("codec", help="generate C, Java and Python codecs for your headers from a TOML spec (docs/codec.md)")
    s.add_argument("spec", type=Path, help="the header spec (TOML): [codecs] and [[struct]] tables")
    s.add_argument("--out", type=Path, default=Path("."), help="directory to write the codecs under (default: .)")
    s.add_argument("--lang", default=",".join(LANGUAGES), help="languages, comma-separated (default: c,java,python)")
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale or missing")
    s.set_defaults(fn=_cmd_codec)


def _languages(text: str) -> list[str]:
    langs = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in langs if x not in LANGUAGES]
    if unknown or not langs:
        raise ConfigError(f"--lang: unknown language {', '.join(unknown) or '(none)'}; choose from {', '.join(LANGUAGES)}")
    return list(dict.fromkeys(langs))


def outputs(spec: Path, langs: list[str]) -> dict[str, str]:
    """Where each language's codec goes, relative to ``--out``: ``c`` a header file, ``java``
    the source root of the package, ``python`` a module file (named so that it imports)."""
    stem = re.sub(r"\W", "_", spec.stem)
    if not stem.isidentifier():
        raise ConfigError(f"{spec}: name the spec so that its stem can name a Python module (e.g. my_headers.toml)")
    where = {"c": f"{stem}.h", "java": "java", "python": f"{stem}.py"}
    return {lang: where[lang] for lang in langs}


def generate(spec: Path, langs: list[str] | tuple[str, ...] = LANGUAGES) -> dict[str, str]:
    """``{path relative to --out: text}`` of the codecs of the header spec ``spec``;
    ``ConfigError`` says ``file:line: key: problem``."""
    from pni_spec.codecs import banner, codec_files
    from pni_spec.errors import SpecError
    from pni_spec.headers import load_headers

    try:
        headers = load_headers(spec)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
    where = outputs(spec, list(langs))
    return codec_files(headers, banner("pan codec", spec.name), where.get("c"), where.get("java"), where.get("python"))


def _cmd_codec(args: argparse.Namespace) -> int:
    from pni_spec.generate import check, write

    files = generate(args.spec, _languages(args.lang))
    out: Path = args.out
    if args.check:
        stale = check(files, out)
        for rel in stale:
            print(f"stale: {out / rel}")
        return 1 if stale else 0
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory")
    try:
        written = write(files, out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the codecs: {exc}") from None
    for rel in written:
        print(f"wrote {out / rel}")
    if len(written) < len(files):
        print(f"{len(files) - len(written)} of {len(files)} files were up to date")
    print(f"C: compile with -I {include_dir()} (pni.h) -I {out}")
    print(f"Java: compile with the PNI sources under {pni_java_dir()} and {out / 'java'}")
    print("Python: import the module with pan-runtime installed (it uses pan_runtime.errors and pni_api)")
    return 0
