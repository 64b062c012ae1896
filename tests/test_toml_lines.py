"""pni_spec.toml_lines: every key of a TOML document with the line it is defined on, the
position ``pan codec`` puts in front of an error."""

from __future__ import annotations

import tomllib

from pan_runtime.resources import protocols_dir
from pni_spec.toml_lines import dotted, key_lines, line_of

DOC = '''\
# a comment with [brackets] and "quotes" = 1
title = """a [multi-line]
string with = and # inside"""
other = 'literal "x"'

[table]
"quoted.key" = { inner = [1, 2,
  { deep = 'w' }], dotted.sub = true }  # trailing comment
plain = 3

[[many]]
v = 1

[[many]]
v = 2
nested = [
  { a = 1 },

  { a = 2, b = "}" },
]

[[many.sub]]
w = 1
'''


def test_every_key_of_a_document_has_its_line():
    tomllib.loads(DOC)  # the scanner reads what tomllib accepts
    lines = key_lines(DOC)
    expect = {
        ("title",): 2, ("other",): 4, ("table",): 6, ("table", "quoted.key"): 7,
        ("table", "quoted.key", "inner", 2, "deep"): 8, ("table", "quoted.key", "dotted", "sub"): 8,
        ("table", "plain"): 9, ("many", 0): 11, ("many", 0, "v"): 12, ("many", 1): 14, ("many", 1, "v"): 15,
        ("many", 1, "nested", 0): 17, ("many", 1, "nested", 1, "b"): 19, ("many", 1, "sub", 0): 22,
        ("many", 1, "sub", 0, "w"): 23,
    }
    assert {k: lines.get(k) for k in expect} == expect
    assert ("many", 2) not in lines


def test_a_key_without_a_line_takes_its_tables():
    lines = key_lines(DOC)
    assert line_of(lines, ("many", 1, "nested", 1, "missing")) == 19
    assert line_of(lines, ("nowhere",)) is None
    assert dotted(("many", 1, "nested", 0, "a")) == "many[1].nested[0].a"


def test_the_reference_header_spec_keys_are_on_their_lines():
    text = (protocols_dir() / "headers.toml").read_text()
    data = tomllib.loads(text)
    lines, source = key_lines(text), text.splitlines()
    for i, struct in enumerate(data["struct"]):
        assert f'"{struct["name"]}"' in source[lines[("struct", i, "name")] - 1]
        for j, field in enumerate(struct["fields"]):
            assert f'name = "{field["name"]}", type = "{field["type"]}"' in source[lines[("struct", i, "fields", j, "type")] - 1]
