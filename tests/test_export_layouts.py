"""Dataset layouts (yolo/, coco/) and polygons that rasterise back to exactly the masks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from sansa.errors import SansaError
from sansa.export import FolderWriter, shapes, yolo
from sansa.export.objects import mask_box
from sansa.records import SegmentedObject

LABELS = ["cat", "dog"]


def grid(text: str) -> np.ndarray:
    """A label map from rows of digits (``.`` = 0)."""
    rows = [row.strip().replace(".", "0") for row in text.strip().splitlines()]
    return np.array([[int(c) for c in row] for row in rows], dtype=np.uint16)


LABEL_MAPS = {
    "square": grid("""
        ......
        .111..
        .111..
        ......"""),
    "dog_inside_cat_hole": grid("""
        1111111
        1.....1
        1.222.1
        1.....1
        1111111"""),
    "nested_rings": grid("""
        111111111
        1.......1
        1.22222.1
        1.2.1.2.1
        1.22222.1
        1.......1
        111111111"""),
    "thin_and_diagonal": grid("""
        1.......
        .1....2.
        ..1.....
        ...1.222
        1111...2"""),
    "one_pixel_hole": grid("""
        111
        1.1
        111"""),
    "diagonal_hole": grid("""
        .1...
        1.1..
        .1.1.
        ..1.."""),
    "border_to_border": grid("""
        22
        22"""),
}


SCORES = {"cat": 0.5, "dog": 0.5}


def coco_mask(segmentation_: list[list[float]], height: int, width: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation_, height, width))).astype(bool)


def part_objects(label_map: np.ndarray) -> list[SegmentedObject]:
    """One object per connected part of each class."""
    return [
        SegmentedObject(label, part, mask_box(part), 0.5)
        for class_id, label in enumerate(LABELS, start=1)
        for part in shapes.components(label_map == class_id)
    ]


@pytest.mark.parametrize("key", LABEL_MAPS)
@pytest.mark.parametrize("objects", [False, True], ids=["classes", "parts-as-objects"])
def test_coco_polygons_give_back_exactly_each_class_and_area_is_the_polygons(tmp_path, key, objects):
    label_map = LABEL_MAPS[key]
    height, width = label_map.shape
    with FolderWriter(tmp_path, LABELS, ["coco"], coco_polygons=True) as writer:
        given = part_objects(label_map) if objects else None
        writer.write("t.png", np.zeros((height, width, 3), np.uint8), label_map, LABELS, SCORES, objects=given)
    data = json.loads((tmp_path / "annotations.json").read_text())
    for class_id in (1, 2):
        anns = [a for a in data["annotations"] if a["category_id"] == class_id]
        union = np.zeros((height, width), bool)
        for ann in anns:
            drawn = coco_mask(ann["segmentation"], height, width)
            assert ann["area"] == drawn.sum() > 0  # the polygons' own area, never 0 px
            assert not (drawn & union).any()  # objects never overlap
            union |= drawn
        np.testing.assert_array_equal(union, label_map == class_id)  # holes open, other class uncovered


def fill_rounded(polys: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """supervision's way: vertices rounded, then ``cv2.fillPoly`` one polygon at a time."""
    return shapes.rasterize_polygons([np.round(p) for p in polys], height, width)


@pytest.mark.parametrize("key", LABEL_MAPS)
@pytest.mark.parametrize("draw", [shapes.rasterize_polygons, fill_rounded], ids=["truncated", "rounded"])
def test_yolo_polygons_give_back_exactly_each_class_as_yolo_readers_draw_them(key, draw):
    label_map = LABEL_MAPS[key]
    height, width = label_map.shape
    parsed = yolo.parse_lines("\n".join(yolo.label_lines(label_map, LABELS)), height, width)
    assert all(len(xy) >= 3 for _, xy in parsed)
    for index in range(len(LABELS)):
        drawn = draw([xy for cls, xy in parsed if cls == index], height, width)
        np.testing.assert_array_equal(drawn, label_map == index + 1)


def test_random_masks_round_trip_through_polygons_exactly():
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 16, 2))
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        polys = shapes.polygons(mask)
        flat = [[float(v) for v in p.reshape(-1)] for p in polys]
        coco = coco_mask(flat, height, width) if flat else np.zeros_like(mask)
        np.testing.assert_array_equal(coco, mask)
        np.testing.assert_array_equal(shapes.rasterize_polygons(polys, height, width), mask)
        parsed = [
            xy for _, xy in yolo.parse_lines("\n".join(yolo.label_lines(mask.astype(np.uint16), ["a"])), height, width)
        ]
        np.testing.assert_array_equal(fill_rounded(parsed, height, width), mask)
        np.testing.assert_array_equal(shapes.rasterize_polygons(parsed, height, width), mask)


def test_hole_free_pieces_cover_the_mask_without_holes():
    mask = LABEL_MAPS["nested_rings"] == 1
    pieces = shapes.hole_free_pieces(mask)
    covered = np.zeros(mask.shape, int)
    for piece, (x0, y0) in pieces:
        covered[y0 : y0 + piece.shape[0], x0 : x0 + piece.shape[1]] += piece
        assert shapes.hole_free_pieces(piece)[0][0].shape == piece.shape  # no further cut
    np.testing.assert_array_equal(covered, mask.astype(int))
    assert len(pieces) == 3  # the ring cut through its hole, and the lone pixel in the middle


# -- dataset layouts -------------------------------------------------------------------------
def make_images(root: Path, names: list[str], size=(6, 8)) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*size, 3), 40 * i, np.uint8)).save(path)


def write_folder(out: Path, root: Path, names: list[str], formats, **options) -> None:
    label_map = LABEL_MAPS["square"]
    with FolderWriter(out, LABELS, formats, **options) as writer:
        for name in names:
            writer.write(name, np.zeros((*label_map.shape, 3), np.uint8), label_map, LABELS, SCORES, source=root / name)


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_yolo_folder_is_an_ultralytics_dataset(tmp_path, mode):
    root = tmp_path / "photos"
    names = {"a.jpg": "a.jpg", "sub/b.png": "sub+b.png", "c.bmp": "c.bmp"}  # flat: supervision reads no sub-folders
    make_images(root, list(names), size=LABEL_MAPS["square"].shape)
    write_folder(tmp_path / "out", root, list(names), ["yolo"], dataset_images=mode)
    yolo_dir = tmp_path / "out" / "yolo"
    assert sorted(p.name for p in (yolo_dir / "images").iterdir()) == sorted(names.values())
    for name, flat in names.items():
        placed = yolo_dir / "images" / flat
        assert placed.read_bytes() == (root / name).read_bytes() and not placed.is_symlink()
        assert placed.samefile(root / name) == (mode == "link")  # a hard link, or a copy
        assert (yolo_dir / "labels" / Path(flat).with_suffix(".txt")).read_text().startswith("0 ")
    data = yaml.safe_load((yolo_dir / "data.yaml").read_text())
    assert "path" not in data  # Ultralytics then resolves train/val against data.yaml's folder
    assert (data["train"], data["val"], data["names"]) == ("images", "images", {0: "cat", 1: "dog"})


def test_coco_dataset_layout_for_datumaro_and_cvat(tmp_path):
    root = tmp_path / "photos"
    names = ["a.jpg", "sub/b.png"]
    make_images(root, names, size=LABEL_MAPS["square"].shape)
    write_folder(tmp_path / "out", root, names, ["coco", "png"], coco_layout="dataset")
    out = tmp_path / "out"
    data = json.loads((out / "coco/annotations/instances_default.json").read_text())
    assert not (out / "annotations.json").exists()
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "sub/b.png"]
    for image in data["images"]:
        assert (out / "coco/images" / image["file_name"]).read_bytes() == (root / image["file_name"]).read_bytes()


def test_a_target_without_its_file_gets_a_png_of_its_pixels(tmp_path):
    label_map = LABEL_MAPS["square"]
    pixels = np.random.default_rng(0).integers(0, 255, (*label_map.shape, 3), dtype=np.uint8)
    with FolderWriter(tmp_path / "out", LABELS, ["yolo"]) as writer:
        writer.write("gone.jpg", pixels, label_map, LABELS, SCORES, source=tmp_path / "nowhere/gone.jpg")
        writer.write("anon.jpg", pixels, label_map, LABELS, SCORES)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out/yolo/images/anon.png")), pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out/yolo/images/gone.png")), pixels)


def test_moving_the_copy_mode_folder_keeps_it_complete(tmp_path):
    root = tmp_path / "photos"
    make_images(root, ["a.jpg"], size=LABEL_MAPS["square"].shape)
    write_folder(tmp_path / "out", root, ["a.jpg"], ["yolo"])
    os.rename(tmp_path / "out", tmp_path / "moved")
    (root / "a.jpg").unlink()
    assert FolderWriter(tmp_path / "moved", LABELS, ["yolo"]).is_done("a.jpg")
    assert (tmp_path / "moved/yolo/images/a.jpg").is_file()


def test_switching_copy_to_link_rewrites_the_images(tmp_path):
    root = tmp_path / "photos"
    make_images(root, ["a.jpg"], size=LABEL_MAPS["square"].shape)
    write_folder(tmp_path / "out", root, ["a.jpg"], ["yolo"])
    assert not FolderWriter(tmp_path / "out", LABELS, ["yolo"], dataset_images="link").is_done("a.jpg")
    write_folder(tmp_path / "out", root, ["a.jpg"], ["yolo"], dataset_images="link")
    assert (tmp_path / "out/yolo/images/a.jpg").samefile(root / "a.jpg")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"coco_layout": "cvat"}, "coco_layout: unknown value 'cvat' \\(known: file, dataset\\)"),
        ({"dataset_images": "hardlink"}, "dataset_images: unknown value 'hardlink' \\(known: copy, link\\)"),
    ],
)
def test_bad_layout_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(SansaError, match=message):
        FolderWriter(tmp_path, LABELS, ["coco"], **options)
    assert not any(tmp_path.iterdir())  # nothing written
