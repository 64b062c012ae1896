"""The line each key of a TOML document is on, so that an error can say ``file:line: key``.

``tomllib`` returns values without positions. ``key_lines(text)`` reads a document tomllib has
already accepted and maps every key path to the 1-based line where it is defined: a path is a
tuple of table keys and array indexes, ``("struct", 0, "fields", 1, "type")`` for the ``type``
of the second field of the first ``[[struct]]``. Tables, arrays of tables, dotted keys, inline
tables and arrays (one element per index) are followed; the strings' contents are skipped.
"""

from __future__ import annotations

__all__ = ["KeyPath", "key_lines", "line_of", "dotted"]

KeyPath = tuple[str | int, ...]
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def dotted(key: KeyPath) -> str:
    """``("struct", 0, "fields", 1, "type")`` -> ``struct[0].fields[1].type``."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def line_of(lines: dict[KeyPath, int], key: KeyPath) -> int | None:
    """The line of ``key``, else of the nearest enclosing key that has one."""
    for n in range(len(key), 0, -1):
        if key[:n] in lines:
            return lines[key[:n]]
    return None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Every key path of the (valid) TOML ``text`` with the line it is defined on."""
    return _Scanner(text).document()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.tables: dict[KeyPath, int] = {}  # array of tables -> index of its last element

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def advance(self, n: int = 1) -> None:
        end = min(len(self.text), self.i + n)
        self.line += self.text.count("\n", self.i, end)
        self.i = end

    def blank(self, newlines: bool = False) -> None:
        """Skip spaces, comments and (with ``newlines``) line ends."""
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                end = self.text.find("\n", self.i)
                self.advance((len(self.text) if end < 0 else end) - self.i)
            else:
                return

    def string(self) -> str:
        """Skip a string of any of TOML's four kinds; its raw text (escapes kept)."""
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.i + 3)
            while end >= 0 and self.text.startswith(quote, end + 3):  # up to two quotes may end it
                end += 1
            end = len(self.text) - 3 if end < 0 else end
            raw = self.text[self.i + 3 : end]
            self.advance(end + 3 - self.i)
            return raw
        j = self.i + 1
        while j < len(self.text) and self.text[j] not in (quote, "\n"):
            j += 2 if quote == '"' and self.text[j] == "\\" else 1
        raw = self.text[self.i + 1 : j]
        self.advance(j + 1 - self.i)
        return raw

    def key(self) -> list[str]:
        """A dotted key, as its parts."""
        parts = []
        while True:
            self.blank()
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.i
                while self.i < len(self.text) and self.text[self.i] in _BARE:
                    self.i += 1
                parts.append(self.text[start : self.i])
            self.blank()
            if self.peek() != ".":
                return parts
            self.advance()

    def define(self, base: KeyPath, parts: list[str], line: int) -> KeyPath:
        for n in range(1, len(parts) + 1):
            self.lines.setdefault(base + tuple(parts[:n]), line)
        return base + tuple(parts)

    def value(self, path: KeyPath) -> None:
        self.blank()
        c = self.peek()
        if c == "[":
            self.advance()
            index = 0
            while True:
                self.blank(newlines=True)
                if self.peek() in ("]", ""):
                    self.advance()
                    return
                self.lines.setdefault(path + (index,), self.line)
                before = self.i
                self.value(path + (index,))
                index += 1
                self.blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
                elif self.i == before:
                    self.advance()  # not TOML tomllib accepted; never loop
        elif c == "{":
            self.advance()
            while True:
                self.blank()
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                before = self.i
                inner = self.define(path, self.key(), self.line)
                self.blank()
                if self.peek() == "=":
                    self.advance()
                    self.value(inner)
                self.blank()
                if self.peek() == ",":
                    self.advance()
                elif self.i == before:
                    self.advance()
        elif c in ('"', "'"):
            self.string()
        else:  # number, date, boolean
            while self.i < len(self.text) and self.text[self.i] not in ",]}\n#":
                self.i += 1

    def header(self) -> KeyPath:
        """A ``[table]`` or ``[[array.of.tables]]`` line; the path of the table it opens."""
        many = self.peek(2) == "[["
        self.advance(2 if many else 1)
        parts = self.key()
        self.advance(2 if many else 1)
        path: KeyPath = ()
        for n, part in enumerate(parts):
            path += (part,)
            if n == len(parts) - 1 and many:
                self.tables[path] = self.tables.get(path, -1) + 1
                self.lines.setdefault(path, self.line)
            if path in self.tables:
                path += (self.tables[path],)
            self.lines.setdefault(path, self.line)
        return path

    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.blank(newlines=True)
            if self.i >= len(self.text):
                return self.lines
            before = self.i
            if self.peek() == "[":
                table = self.header()
            else:
                path = self.define(table, self.key(), self.line)
                self.blank()
                if self.peek() == "=":
                    self.advance()
                    self.value(path)
            if self.i == before:
                self.advance()
