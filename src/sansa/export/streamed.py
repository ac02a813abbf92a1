"""Dataset files written a piece at a time: the bytes of :func:`sansa.atomic.write_json` without
the whole value in memory (``annotations.json`` of a million images).

Each function yields UTF-8 chunks whose concatenation is exactly ``json.dumps(value, indent=...,
ensure_ascii=False) + "\\n"`` of the value it describes; :func:`sansa.atomic.write_chunks` writes
them atomically.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK = 1 << 20  # bytes copied at a time from a spool file


class Items:
    """A list field of :func:`compact_object` given as an iterable: written item by item."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def dumps(value: Any) -> bytes:
    """``json.dumps(value)`` (no indent, UTF-8) as bytes."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def compact_list(items: Iterable[Any]) -> Iterator[bytes]:
    """``json.dumps(list(items))`` (no indent) in chunks, one item at a time."""
    yield b"["
    for index, item in enumerate(items):
        yield (b", " if index else b"") + dumps(item)
    yield b"]"


def compact_object(fields: Iterable[tuple[str, Any]]) -> Iterator[bytes]:
    """``json.dumps(dict(fields)) + "\\n"`` (no indent), an :class:`Items` value item by item."""
    yield b"{"
    for index, (key, value) in enumerate(fields):
        yield (b", " if index else b"") + dumps(key) + b": "
        yield from compact_list(value.items) if isinstance(value, Items) else [dumps(value)]
    yield b"}\n"


def list_file(items: Iterable[Any]) -> Iterator[bytes]:
    """``json.dumps(list(items)) + "\\n"`` (no indent)."""
    yield from compact_list(items)
    yield b"\n"


def indented_mapping(items: Iterable[tuple[str, Any]]) -> Iterator[bytes]:
    """``json.dumps(dict(items), indent=2) + "\\n"``, one entry at a time."""
    empty = True
    for key, value in items:
        member = json.dumps({key: value}, indent=2, ensure_ascii=False)[2:-2]  # without "{\n" and "\n}"
        yield (b"{\n" if empty else b",\n") + member.encode("utf-8")
        empty = False
    yield b"{}\n" if empty else b"\n}\n"


class Spool:
    """Chunks kept in a temporary file (a second list of the same pass, e.g. COCO's annotations
    beside its images), given back with :meth:`chunks`."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by chunks())

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def chunks(self) -> Iterator[bytes]:
        """What was written, in pieces of :data:`CHUNK` bytes; closes the file."""
        try:
            self._file.seek(0)
            while data := self._file.read(CHUNK):
                yield data
        finally:
            self._file.close()
