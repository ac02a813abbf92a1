"""Record shards: many targets' records in one object, so resuming and finishing a run of a million
targets read a few thousand objects, not a million.

A target's record is first written on its own (``.sansa/parts/<hash>.json``, last of its files:
it marks the target done). The records a process wrote are then *compacted*, at least
:data:`SHARD_TARGETS` at a time (an actor at the end of a block, a one-process run as it goes,
the driver at the end), into one shard ``.sansa/records/<time>-<hash>.jsonl``: one record per
line, sorted by name, the shard written atomically before the per-target files are removed (a
kill in between leaves both, with the same content). Fewer records than that stay one file each.

Reading: every shard, oldest first (the name starts with the time it was written, in hex
nanoseconds), then every per-target file; a later record of a name replaces an earlier one
(a target redone after its file changed). A damaged line counts as a damaged record: its
target is redone, the shard's other records are kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansa import atomic, fs
from sansa.export import names
from sansa.spill import SpilledMapping

if TYPE_CHECKING:
    from sansa.fs import AnyPath

SHARD_TARGETS = 64  # records compacted into one shard at least (fewer stay one file per target)
SHARD_MAX = 4096  # records in one shard at most (a driver compacting a million loose records)
SHARDS_DIR = "records"
SUFFIX = ".jsonl"


def shard_name(first: str, count: int) -> str:
    """``<time in hex ns>-<hash of the first name, the pid and the count>.jsonl``: sorts oldest first."""
    tag = names.digest(f"{first}\0{os.getpid()}\0{count}")[:10]
    return f"{time.time_ns():016x}-{tag}{SUFFIX}"


def encode(parts: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines of ``parts`` (records, already sorted)."""
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in parts).encode("utf-8")


def write_shard(folder: AnyPath, parts: Sequence[dict[str, Any]]) -> AnyPath:
    """Write ``parts`` (sorted by name) as one new shard in ``folder``, atomically; its path."""
    path = folder / shard_name(parts[0]["name"], len(parts))
    atomic.write_bytes(path, encode(parts))
    return path


def write_packed(folder: AnyPath, records: PackedRecords, ordered: Sequence[str]) -> list[AnyPath]:
    """Write the records of ``ordered`` names (sorted) as new shards of at most :data:`SHARD_MAX`,
    each atomically, straight from their packed bytes; their paths."""
    paths = []
    for start in range(0, len(ordered), SHARD_MAX):
        chunk = ordered[start : start + SHARD_MAX]
        path = folder / shard_name(chunk[0], len(chunk))
        atomic.write_bytes(path, b"".join(records.packed(name) + b"\n" for name in chunk))
        paths.append(path)
    return paths


def decode(data: bytes) -> Iterator[dict[str, Any] | Exception]:
    """The records of a shard's bytes, an exception in place of each damaged line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        yield err
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            yield value if isinstance(value, dict) else ValueError("not a record")
        except ValueError as err:
            yield err


def list_shards(folder: AnyPath) -> list[AnyPath]:
    """The shards in ``folder``, oldest first (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.name)


def remove(paths: Sequence[AnyPath]) -> None:
    """Remove files (``Path`` s, or ``UPath`` s of one store: one request per thousand)."""
    if not paths:
        return
    if isinstance(paths[0], Path):
        for path in paths:
            path.unlink(missing_ok=True)
        return
    store = paths[0].fs
    keys = [p.path for p in paths if not isinstance(p, Path)]
    for start in range(0, len(keys), 1000):
        fs.retrying(lambda chunk=keys[start : start + 1000]: store.rm(chunk))
    store.invalidate_cache()


class PackedRecords(SpilledMapping[dict[str, Any]]):
    """Records by target name, each kept as its compact JSON bytes on disk (:mod:`sansa.spill`) and
    decoded when read: a driver holding a million records keeps a few MB of them in memory. Names
    iterate sorted.

    Values read are fresh dicts (the last one read is kept for the next read of the same name):
    change a record by setting it again.
    """

    def __init__(self) -> None:
        super().__init__(_compact_json, json.loads)

    def packed(self, name: str) -> bytes:
        """The record of ``name`` as one line of JSON (UTF-8, no newline)."""
        return bytes(self.encoded(name))


def _compact_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
