"""Record shards and streamed dataset files: the same folder as one record file per target.

A writer that compacts its records into shards (:mod:`sansa.export.shards`) must leave dataset
files byte-identical to one that keeps a file per target, resume the same targets, read folders
of earlier versions (one file per target) and shards mixed, keep a shard's good records when one
line is damaged, and take a redone target's newer record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sansa.export import FolderWriter, shards, streamed
from sansa.export.coco import assemble, assemble_chunks

LABELS = ["cat", "dog"]
FORMATS = ["png", "indexed", "coco", "yolo", "instances", "labelstudio"]
NAMES = [f"sub/t{i}.png" if i % 3 == 0 else f"t{i}.png" for i in range(7)]
DATASET_FILES = ("annotations.json", "manifest.json", "instances.json", "labelstudio/tasks.json", "classes.json")


def label_map(seed: int) -> np.ndarray:
    """``uint16 [6, 8]``: class 1 in a seed-dependent block, class 2 in the last column."""
    values = np.zeros((6, 8), np.uint16)
    values[seed % 3 : seed % 3 + 2, 1 : 2 + seed % 4] = 1
    values[:, 7] = 2 if seed % 2 else 0
    return values


def write(folder: Path, names: list[str], seed: int = 0, compact_every: int | None = None) -> FolderWriter:
    writer = FolderWriter(folder, LABELS, FORMATS)
    for index, name in enumerate(names):
        labels = label_map(index + seed)
        image = np.full((*labels.shape, 3), 60 + index, np.uint8)
        writer.write(name, image, labels, LABELS, {"cat": 0.9, "dog": 0.5}, made_from={"seed": seed})
        if compact_every and (index + 1) % compact_every == 0:
            writer.compact(minimum=1)
    return writer


def files(folder: Path) -> dict[str, bytes]:
    """Every output but the writer's own state."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".sansa" not in p.parts
    }


def test_compacted_records_give_the_same_folder(tmp_path):
    with write(tmp_path / "loose", NAMES):  # 7 records: fewer than SHARD_TARGETS, one file each
        pass
    with write(tmp_path / "sharded", NAMES, compact_every=3):
        pass
    assert len(list((tmp_path / "loose" / ".sansa" / "parts").iterdir())) == len(NAMES)
    assert not (tmp_path / "loose" / ".sansa" / "records").exists()
    assert len(shards.list_shards(tmp_path / "sharded" / ".sansa" / "records")) == 2  # 3 + 3
    assert len(list((tmp_path / "sharded" / ".sansa" / "parts").iterdir())) == 1  # too few left to compact
    assert files(tmp_path / "sharded") == files(tmp_path / "loose")
    for name in DATASET_FILES:
        json.loads((tmp_path / "sharded" / name).read_text())  # whole JSON files
    reopened, loose = (
        FolderWriter(tmp_path / "sharded", LABELS, FORMATS),
        FolderWriter(tmp_path / "loose", LABELS, FORMATS),
    )
    assert reopened.names() == loose.names() == sorted(NAMES)
    assert all(reopened.is_done(n) and reopened.record(n) == loose.record(n) for n in NAMES)


def test_close_compacts_enough_loose_records(tmp_path, monkeypatch):
    """A folder of an earlier version (a record file per target) is read, then compacted once enough."""
    with write(tmp_path / "out", NAMES):
        pass
    before = files(tmp_path / "out")
    monkeypatch.setattr(shards, "SHARD_TARGETS", 5)
    monkeypatch.setattr(shards, "SHARD_MAX", 3)  # a shard holds 3 records at most
    writer = FolderWriter(tmp_path / "out", LABELS, FORMATS)
    assert writer.names() == sorted(NAMES)
    writer.close()
    assert not list((tmp_path / "out" / ".sansa" / "parts").iterdir())
    assert len(shards.list_shards(tmp_path / "out" / ".sansa" / "records")) == 3  # 3 + 3 + 1
    assert files(tmp_path / "out") == before
    assert FolderWriter(tmp_path / "out", LABELS, FORMATS).names() == sorted(NAMES)


def test_a_damaged_shard_line_loses_only_its_target(tmp_path):
    with write(tmp_path / "out", NAMES, compact_every=len(NAMES)):
        pass
    (shard,) = shards.list_shards(tmp_path / "out" / ".sansa" / "records")
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:30] + b"\n"  # cut: not JSON
    lines[4] = b"[1, 2]\n"  # JSON, not a record
    shard.write_bytes(b"".join(lines))
    writer = FolderWriter(tmp_path / "out", LABELS, FORMATS)
    assert len(writer.damaged) == 2
    assert writer.names() == [n for i, n in enumerate(sorted(NAMES)) if i not in (2, 4)]
    assert not shard.exists()  # replaced by a shard of the good records: said once
    assert FolderWriter(tmp_path / "out", LABELS, FORMATS).damaged == []


def test_a_redone_target_takes_its_newer_record(tmp_path):
    with write(tmp_path / "out", NAMES, seed=0, compact_every=len(NAMES)):
        pass
    with write(tmp_path / "out", NAMES[:2], seed=1, compact_every=2):  # redone: newer shard
        pass
    writer = FolderWriter(tmp_path / "out", LABELS, FORMATS)
    assert [writer.record(n).made_from for n in NAMES[:3]] == [{"seed": 1}, {"seed": 1}, {"seed": 0}]
    with write(tmp_path / "out", NAMES[:1], seed=2):  # newer still: a record file of its own
        pass
    assert FolderWriter(tmp_path / "out", LABELS, FORMATS).record(NAMES[0]).made_from == {"seed": 2}


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": [1, 2], "ü": {"x": None}},
        {"only": []},
        {"t1.png": ["masks/t1_cat.png", "labels/t1.png"], "sub/t2.png": []},
    ],
)
def test_streamed_json_is_json_dumps(value):
    expected = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    assert b"".join(streamed.indented_mapping(value.items())).decode() == expected
    fields = [(k, streamed.Items(iter(v)) if isinstance(v, list) else v) for k, v in value.items()]
    assert b"".join(streamed.compact_object(fields)).decode() == json.dumps(value, ensure_ascii=False) + "\n"
    items = list(value.items())
    assert b"".join(streamed.list_file(iter(items))).decode() == json.dumps(items, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("annotations", [[[], []], [[{"a": 1}], []], [[{"a": 1}, {"b": "é"}], [{"c": [2]}]]])
def test_streamed_coco_is_assemble(annotations):
    targets = [{"file_name": f"t{i}.png", "width": 8, "height": 6, "annotations": a} for i, a in enumerate(annotations)]
    expected = json.dumps(assemble(LABELS, targets), ensure_ascii=False) + "\n"
    assert b"".join(assemble_chunks(LABELS, iter(targets))).decode() == expected
