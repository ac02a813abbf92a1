"""``sansa segment`` end to end, in-process, with the tiny random model and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from scenes import SIZE, scene, write_reference

from sansa.cli import main

MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


@pytest.fixture()
def data(tmp_path, monkeypatch) -> Path:
    """``ref.png`` + ``ref_mask.png`` (a square), ``targets/t0..t2.png``; runs from ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    write_reference(tmp_path)
    (tmp_path / "targets").mkdir()
    for i in range(3):
        Image.fromarray(scene(i + 1)).save(tmp_path / "targets" / f"t{i}.png")
    return tmp_path


def segment(*args: str) -> int:
    return main(["segment", *args, *MODEL])


BASE = ["ref.png", "--mask", "ref_mask.png", "--label", "thing", "--targets", "targets"]


def tree(folder: Path, skip: tuple[str, ...] = ("run.json",)) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), except ``skip`` (times differ)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_every_format(data, capsys):
    assert segment(*BASE, "--out", "out", "--format", "png", "indexed", "coco", "yolo", "overlay") == 0
    out = data / "out"
    names = [f"t{i}" for i in range(3)]
    coco = COCO(str(out / "annotations.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == [f"{n}.png" for n in names]
    assert [c["name"] for c in coco.dataset["categories"]] == ["thing"]
    for ann in coco.dataset["annotations"]:
        mask = coco.annToMask(ann)
        with Image.open(out / "masks" / f"{Path(coco.imgs[ann['image_id']]['file_name']).stem}_thing.png") as png:
            np.testing.assert_array_equal(mask * 255, np.asarray(png))
    for name in names:
        with Image.open(out / "labels" / f"{name}.png") as indexed, Image.open(out / "overlays" / f"{name}.jpg") as ov:
            assert indexed.mode == "P" and indexed.size == ov.size == SIZE
        lines = (out / "yolo" / "labels" / f"{name}.txt").read_text().splitlines()
        assert all(line.split()[0] == "0" and len(line.split()) >= 7 for line in lines)
    assert "0: thing" in (out / "yolo" / "data.yaml").read_text()
    assert json.loads((out / "classes.json").read_text())[1] == {"id": 1, "name": "thing", "color": [230, 25, 75]}
    assert (out / "references" / "01_thing_ref_mask.png").is_file()
    assert (out / "references" / "01_thing_ref.jpg").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["targets"] == {"root": str(data / "targets"), "count": 3, "written": 3, "already_done": 0, "failed": 0}
    stdout = capsys.readouterr().out
    assert "3 targets in targets: 3 written, 0 already done, 0 failed" in stdout
    assert "thing" in stdout and "outputs: out/masks/" in stdout


def test_default_formats_and_resume_skips_finished_targets(data, capsys):
    assert segment(*BASE, "--out", "out") == 0
    first = tree(data / "out")
    assert {"annotations.json", "masks/t0_thing.png", "overlays/t0.jpg"} <= set(first)
    assert not any(name.startswith(("labels/", "yolo/")) for name in first)
    capsys.readouterr()
    assert segment(*BASE, "--out", "out") == 0
    assert "0 written, 3 already done" in capsys.readouterr().out
    assert tree(data / "out") == first
    assert segment("ref.png", "--mask", "ref_mask.png", "--label", "other", "--targets", "targets", "--out", "out") == 2
    assert "holds results for classes ['thing']" in capsys.readouterr().err


def test_multi_class_from_a_reference_file(data):
    (data / "refs").mkdir()
    (data / "refs" / "refs.yaml").write_text("""
references:
  - {image: ../ref.png, mask: ../ref_mask.png, label: square}
  - image: ../ref.png
    box: [40, 20, 56, 40]
    points: "44,28;50,30"
    neg_points: [[5, 5]]
    label: disc
  - {image: ../ref.png, scribble: [[[14, 12], [30, 20]], "32,22;38,28"], label: square}
""")
    assert (
        segment(
            "--references",
            "refs/refs.yaml",
            "--targets",
            "targets",
            "--out",
            "out",
            "--format",
            "png",
            "indexed",
            "coco",
        )
        == 0
    )
    out = data / "out"
    assert [c["name"] for c in json.loads((out / "annotations.json").read_text())["categories"]] == ["square", "disc"]
    assert [row["name"] for row in json.loads((out / "classes.json").read_text())] == ["background", "square", "disc"]
    expected = {f"t{i}_{c}.png" for i in range(3) for c in ("square", "disc")}
    assert {p.name for p in (out / "masks").iterdir()} == expected
    with Image.open(out / "labels" / "t0.png") as indexed:
        ids = np.asarray(indexed)
    with Image.open(out / "masks" / "t0_disc.png") as disc:
        np.testing.assert_array_equal(np.asarray(disc) > 0, ids == 2)
    run = json.loads((out / "run.json").read_text())
    assert run["labels"] == ["square", "disc"]
    assert [r["prompt"] for r in run["references"]] == ["mask", "mixed", "scribble"]
    assert len(list((out / "references").glob("*_mask.png"))) == 3


@pytest.mark.parametrize("kind", ["folder", "glob", "list"])
def test_targets_from_folders_globs_and_lists(data, kind):
    for sub in ("a", "b"):
        (data / "nested" / sub).mkdir(parents=True)
        Image.fromarray(scene(7)).save(data / "nested" / sub / "x.png")
    (data / "nested" / "notes.txt").write_text("not an image")
    (data / "list.txt").write_text("# two targets\nnested/a/x.png\n\nnested/b/x.png\n")
    targets = {"folder": ["nested", "--recursive"], "glob": ["nested/**/*.png"], "list": ["list.txt"]}[kind]
    assert (
        segment("ref.png", "--box", "10,10,40,30", "--targets", *targets, "--out", "out", "--format", "png", "coco")
        == 0
    )
    assert sorted(i["file_name"] for i in json.loads((data / "out/annotations.json").read_text())["images"]) == [
        "a/x.png",
        "b/x.png",
    ]
    assert (data / "out/masks/a/x_object.png").is_file() and (data / "out/masks/b/x_object.png").is_file()


def test_corrupt_target_is_listed_and_the_rest_done(data, capsys):
    (data / "targets" / "t1.png").write_bytes(b"this is not a png")
    assert segment(*BASE, "--out", "out", "--format", "png", "coco") == 1
    out = data / "out"
    failures = json.loads((out / "failures.json").read_text())
    assert [(f["target"], f["path"]) for f in failures] == [("t1.png", str(data / "targets" / "t1.png"))]
    assert "not a readable image" in failures[0]["error"]
    listed = (out / "failures.txt").read_text()
    assert listed.startswith(f"{data / 'targets' / 't1.png'}: ") and listed.count("t1.png") == 1  # path: error
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["t0_thing.png", "t2_thing.png"]
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2
    assert "2 written, 0 already done, 1 failed" in capsys.readouterr().out
    (data / "targets" / "t1.png").unlink()  # fixed by the user: the next run has no failures left
    assert segment(*BASE, "--out", "out", "--format", "png", "coco") == 0
    assert not (out / "failures.json").exists() and not (out / "failures.txt").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_outputs(data, monkeypatch):
    from sansa.atomic import TEMP_SUFFIX
    from sansa.export import FolderWriter

    Image.fromarray(scene(9)).save(data / "targets" / "t3.png")
    argv = [*BASE, "--format", "png", "indexed", "coco", "yolo", "overlay", "--batch-size", "2"]
    assert segment(*argv, "--out", "whole") == 0

    original = FolderWriter.write

    def dies_writing_t3(self, *args, **kwargs):
        if args[0] == "t3.png":  # batches run on parallel lanes and write on threads: killed by name
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FolderWriter, "write", dies_writing_t3)
    assert segment(*argv, "--out", "killed") == 130
    monkeypatch.setattr(FolderWriter, "write", original)
    partial = tree(data / "killed")
    masks = {n for n in partial if n.startswith("masks/")}
    assert masks <= {f"masks/t{i}_thing.png" for i in range(3)}
    assert "annotations.json" not in partial and "yolo/data.yaml" not in partial
    leftover = data / "killed" / "masks" / f".t3_thing.png.x{TEMP_SUFFIX}"  # as a hard kill mid-write leaves
    leftover.write_bytes(b"half a png")

    assert segment(*argv, "--out", "killed") == 0
    assert tree(data / "killed") == tree(data / "whole")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.png", "--mask", "ref_mask.png", "--targets", "targets"], "missing.png: no such file"),
        (["ref.png", "--mask", "nomask.png", "--targets", "targets"], "nomask.png: no such file"),
        ([*BASE[:-1], "nowhere"], "--targets nowhere: no such file or folder"),
        ([*BASE[:-1], "empty"], "--targets empty: no images"),
        ([*BASE[:-1], "targets/*.tif"], "--targets targets/*.tif: no images"),
        (["ref.png", "--box", "10,10,90,30", "--targets", "targets"], "box: (90, 30) lies outside the 64x48 image"),
        (["ref.png", "--points", "5,5;70,5", "--targets", "targets"], "points: (70, 5) lies outside"),
        (["ref.png", "--scribble", "5,5;5,-1", "--targets", "targets"], "scribble: (5, -1) lies outside"),
        (["ref.png", "--mask", "blank.png", "--targets", "targets"], "mask: is empty"),
        (["ref.png", "--mask", "small.png", "--targets", "targets"], "does not match the image (64x48)"),
        (["ref.png", "--box", "1,2,3", "--targets", "targets"], "box: expected 'x0,y0,x1,y1'"),
        (["ref.png", "--points", "1;2", "--targets", "targets"], "points: expected"),
        (["ref.png", "--targets", "targets"], "no prompt"),
        (["--box", "1,1,5,5", "--targets", "targets"], "--box: give the reference image first"),
        (["--targets", "targets"], "no reference"),
        (["ref.png", "--mask", "ref_mask.png", "--box", "1,1,5,5", "--targets", "targets"], "cannot be combined"),
        (["ref.png", "--neg-points", "3,3", "--targets", "targets"], "neg_points alone"),
        (["--references", "none.yaml", "--targets", "targets"], "none.yaml: no such file"),
        (["--references", "bad.yaml", "--targets", "targets"], "bad.yaml: reference 1: unknown key 'bx'"),
        (["--references", "broken.yaml", "--targets", "targets"], "broken.yaml: not valid YAML/JSON"),
        ([*BASE, "--batch-size", "0"], "--batch-size: must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data, capsys, argv, message):
    (data / "empty").mkdir()
    Image.fromarray(np.zeros(SIZE[::-1], np.uint8)).save(data / "blank.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(data / "small.png")
    (data / "bad.yaml").write_text("references:\n  - {image: ref.png, bx: [1, 2, 3, 4]}\n")
    (data / "broken.yaml").write_text("references: [unclosed\n")
    assert segment(*argv, "--out", "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("sansa segment: error: ") and message in err


@pytest.mark.slow
def test_adding_a_format_on_resume_writes_only_its_files(data):
    """Issue 22: a second run with one more format wrote every target's files again."""
    from hostile import sansa

    first = sansa("segment", *BASE, "--out", "out", "--format", "png", "overlay", *MODEL, cwd=data)
    assert first.returncode == 0, first.stderr
    out = data / "out"
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for d in ("masks", "overlays") for p in (out / d).rglob("*.*")}
    assert len(stamps) == 6
    second = sansa("segment", *BASE, "--out", "out", "--format", "png", "overlay", "yolo", *MODEL, cwd=data)
    assert second.returncode == 0, second.stderr
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in stamps} == stamps  # not written again
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["t0.png"] == ["masks/t0_thing.png", "overlays/t0.jpg", "yolo/labels/t0.txt", "yolo/images/t0.png"]
    assert all((out / f).is_file() for files in manifest.values() for f in files)
