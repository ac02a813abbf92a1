"""Object exports: one annotation per object in COCO, YOLO, instances, Label Studio and overlays;
``per_class`` keeps one per class; the registry lists every format and a new one is one class."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sansa.errors import SansaError
from sansa.export import FolderWriter, brush_rle, exporter, shapes, yolo
from sansa.export.objects import mask_box
from sansa.records import SegmentedObject

LABELS = ["cat", "dog"]
SCORES = {"cat": 0.6, "dog": 0.7}


def grid(text: str) -> np.ndarray:
    """An object map from rows of characters: ``.`` background, a letter per object
    (lower case ``a``-``m`` cats, ``n``-``z`` dogs)."""
    rows = [row.strip() for row in text.strip().splitlines()]
    return np.array([[ord(c) if c != "." else 0 for c in row] for row in rows], dtype=np.int32)


#: tiny scenes: touching objects, a ring with a hole holding another class, an object split by an occluder, a speck
SCENES = {
    "two_touching_squares": grid("""
        ..........
        .aaabbb...
        .aaabbb...
        .aaabbb...
        .........."""),
    "ring_with_a_dog_in_its_hole": grid("""
        aaaaaaa
        a.....a
        a.nnn.a
        a.....a
        aaaaaaa"""),
    "split_by_an_occluder": grid("""
        ...........
        .aaannnaaa.
        .aaannnaaa.
        ...........
        .....b....."""),
}


def objects_of(scene: np.ndarray) -> list[SegmentedObject]:
    """The scene's objects, class by class, in order of their letters; scores 0.9, 0.8, ..."""
    letters = sorted(int(v) for v in np.unique(scene) if v)
    label_of = {v: ("cat" if chr(v) <= "m" else "dog") for v in letters}
    ordered = [v for label in LABELS for v in letters if label_of[v] == label]
    return [
        SegmentedObject(label_of[v], scene == v, mask_box(scene == v), round(0.9 - 0.1 * i, 2))
        for i, v in enumerate(ordered)
    ]


def label_map_of(objects: list[SegmentedObject], size: tuple[int, int]) -> np.ndarray:
    label_map = np.zeros(size, np.uint16)
    for obj in objects:
        label_map[obj.mask] = LABELS.index(obj.label) + 1
    return label_map


def write(out: Path, key: str, formats, **options) -> tuple[list[SegmentedObject], np.ndarray]:
    scene = SCENES[key]
    objects = objects_of(scene)
    label_map = label_map_of(objects, scene.shape)
    with FolderWriter(out, LABELS, formats, **options) as writer:
        image = np.full((*scene.shape, 3), 128, np.uint8)
        record = writer.write("img.png", image, label_map, LABELS, SCORES, objects=objects)
    expected = {label: sum(o.label == label for o in objects) for label in LABELS}
    if options.get("per_class"):
        expected = {label: int(count > 0) for label, count in expected.items()}
    assert record.objects == expected
    return objects, label_map


# -- COCO ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", SCENES)
@pytest.mark.parametrize("polygons", [False, True], ids=["rle", "polygons"])
def test_coco_has_one_annotation_per_object_with_its_box_area_and_score(tmp_path, key, polygons):
    objects, _ = write(tmp_path, key, ["coco"], coco_polygons=polygons)
    data = json.loads((tmp_path / "annotations.json").read_text())
    height, width = SCENES[key].shape
    assert len(data["annotations"]) == len(objects)
    for ann, obj in zip(data["annotations"], objects, strict=True):
        if polygons:
            decoded = shapes.from_rle(
                {"size": [height, width], "counts": _merged(ann["segmentation"], height, width)["counts"]}
            )
        else:
            decoded = shapes.from_rle(ann["segmentation"])
        np.testing.assert_array_equal(decoded, obj.mask)  # holes open, the dog in the ring not covered
        x0, y0, x1, y1 = obj.box.tolist()
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert ann["area"] == obj.area
        assert ann["score"] == obj.score and ann["category_id"] == LABELS.index(obj.label) + 1


def _merged(segmentation: list, height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))


def test_per_class_keeps_one_annotation_per_class_with_the_class_score(tmp_path):
    write(tmp_path, "two_touching_squares", ["coco"], per_class=True)
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert [(a["category_id"], a["area"], a["score"]) for a in data["annotations"]] == [(1, 18, 0.6)]


def test_a_result_without_objects_exports_whole_classes(tmp_path):
    label_map = label_map_of(objects_of(SCENES["split_by_an_occluder"]), SCENES["split_by_an_occluder"].shape)
    with FolderWriter(tmp_path, LABELS, ["coco", "yolo"]) as writer:
        record = writer.write("img.png", np.zeros((*label_map.shape, 3), np.uint8), label_map, LABELS, SCORES)
    assert record.objects == {"cat": 1, "dog": 1}
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert [(a["category_id"], a["score"]) for a in data["annotations"]] == [(1, 0.6), (2, 0.7)]
    assert len((tmp_path / "yolo/labels/img.txt").read_text().splitlines()) == 4  # whole classes: a line per piece


# -- YOLO ------------------------------------------------------------------------------------------
def bridges(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``bool [H, W]``: the pixels of every edge of a polygon, as ``cv2`` draws them (vertices truncated)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.polylines(canvas, [points.astype(np.int32)], True, 1)
    return canvas.astype(bool)


@pytest.mark.parametrize("key", SCENES)
def test_yolo_has_one_line_per_object_that_rasterises_to_its_pixels(tmp_path, key):
    """Exact where an object is one piece or pieces cut around a hole; an object split by an
    occluder adds only the one-pixel bridge between its pieces (as Ultralytics' own converter)."""
    objects, _ = write(tmp_path, key, ["yolo"])
    height, width = SCENES[key].shape
    parsed = yolo.parse_lines((tmp_path / "yolo/labels/img.txt").read_text(), height, width)
    assert [cls for cls, _ in parsed] == [LABELS.index(o.label) for o in objects]
    for (_, points), obj in zip(parsed, objects, strict=True):
        drawn = shapes.rasterize_polygons([points], height, width)
        assert not (obj.mask & ~drawn).any()  # every pixel of the object
        extra = drawn & ~obj.mask
        if len(shapes.components(obj.mask)) == 1:
            assert not extra.any(), key
        else:
            assert not (extra & ~bridges(points, (height, width))).any() and extra.sum() <= 3


@pytest.mark.parametrize("seed", range(4))
def test_joined_pieces_cover_the_pieces_and_add_at_most_the_bridge_lines(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 40), bool)
    for _ in range(5):
        y, x, h, w = rng.integers(0, 34, 2).tolist() + rng.integers(2, 6, 2).tolist()
        mask[y : y + h, x : x + w] = True
    mask[18:22, 18:22] = False  # a hole or a gap
    pieces = shapes.polygons(mask)
    joined = yolo.join_pieces(pieces)
    assert len(joined) >= sum(len(p) for p in pieces)
    drawn = shapes.rasterize_polygons([np.floor(joined) + 0.25], *mask.shape)
    assert not (mask & ~drawn).any()
    assert not ((drawn & ~mask) & ~bridges(np.floor(joined) + 0.25, mask.shape)).any()


# -- instances -------------------------------------------------------------------------------------
def test_instances_png_holds_object_ids_and_the_json_what_each_is(tmp_path):
    objects, _ = write(tmp_path, "split_by_an_occluder", ["instances"])
    with Image.open(tmp_path / "instances/img.png") as img:
        ids = np.asarray(img)
    assert ids.dtype in (np.uint16, np.int32) and ids.shape == SCENES["split_by_an_occluder"].shape
    index = json.loads((tmp_path / "instances.json").read_text())
    assert index["classes"] == LABELS
    (image,) = index["images"]
    assert (image["name"], image["file"], image["height"], image["width"]) == ("img.png", "instances/img.png", 5, 11)
    assert [(o["id"], o["class"], o["class_id"], o["score"]) for o in image["objects"]] == [
        (1, "cat", 1, 0.9),
        (2, "cat", 1, 0.8),
        (3, "dog", 2, 0.7),
    ]
    for row, obj in zip(image["objects"], objects, strict=True):
        np.testing.assert_array_equal(ids == row["id"], obj.mask)
        assert row["box"] == obj.box.tolist() and row["area"] == obj.area
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 3}


# -- Label Studio ----------------------------------------------------------------------------------
@pytest.mark.parametrize("control", ["brush", "polygon", "rectangle", "keypoint"])
def test_labelstudio_has_one_region_per_object_as_a_prediction(tmp_path, control):
    objects, _ = write(tmp_path, "split_by_an_occluder", ["labelstudio"], labelstudio_control=control)
    (task,) = json.loads((tmp_path / "labelstudio/tasks.json").read_text())
    (prediction,) = task["predictions"]
    assert "annotations" not in task and prediction["model_version"].startswith("sansa-")
    regions = prediction["result"]
    kind = f"{control}labels"
    assert [(r["type"], r["value"][kind], r["score"]) for r in regions] == [(kind, [o.label], o.score) for o in objects]
    assert (
        f"<{dict(brush='Brush', polygon='Polygon', rectangle='Rectangle', keypoint='KeyPoint')[control]}Labels"
        in (tmp_path / "labelstudio/config.xml").read_text()
    )
    height, width = SCENES["split_by_an_occluder"].shape
    for region, obj in zip(regions, objects, strict=True):
        value = region["value"]
        if control == "brush":
            np.testing.assert_array_equal(brush_rle.decode(value["rle"], height, width), obj.mask)
        elif control == "rectangle":
            x0, y0, x1, y1 = obj.box.tolist()
            got = [value["x"] * width / 100, value["y"] * height / 100, value["width"] * width / 100]
            assert got == pytest.approx([x0, y0, x1 - x0], abs=1e-4)
        elif control == "keypoint":
            col, row = int(value["x"] * width / 100), int(value["y"] * height / 100)
            assert obj.mask[row, col]  # on the object
        else:
            points = np.array(value["points"]) * [width / 100, height / 100]
            assert not (obj.mask & ~shapes.rasterize_polygons([points], height, width)).any()


def test_labelstudio_annotations_on_request(tmp_path):
    write(tmp_path, "two_touching_squares", ["labelstudio"], labelstudio_annotations=True)
    (task,) = json.loads((tmp_path / "labelstudio/tasks.json").read_text())
    assert "predictions" not in task and len(task["annotations"][0]["result"]) == 2


# -- overlay ---------------------------------------------------------------------------------------
def test_overlay_outlines_each_object(tmp_path):
    """Two touching objects of one class: the line between them is drawn, unlike with per_class."""
    scene = np.zeros((60, 80), np.int32)
    scene[10:50, 10:40], scene[10:50, 40:70] = ord("a"), ord("b")
    SCENES["big_touching"] = scene
    try:
        write(tmp_path / "objects", "big_touching", ["overlay"])
        write(tmp_path / "classes", "big_touching", ["overlay"], per_class=True)
    finally:
        del SCENES["big_touching"]
    pictures = [np.asarray(Image.open(tmp_path / f / "overlays/img.jpg")).astype(int) for f in ("objects", "classes")]
    seam = np.abs(pictures[0][20:40, 38:42] - pictures[1][20:40, 38:42]).max()
    assert seam > 25  # the outline between the objects
    assert np.abs(pictures[0][20:40, 20:30] - pictures[1][20:40, 20:30]).max() <= 6  # the same inside


# -- registry --------------------------------------------------------------------------------------
def test_every_format_is_registered_and_the_cli_and_web_list_them():
    from sansa.cli import build_parser
    from sansa.web.app import _export_formats

    names = exporter.format_names()
    assert names == ["png", "indexed", "coco", "yolo", "instances", "overlay", "labelstudio"]
    assert _export_formats() == names
    segment = build_parser()._subparsers._group_actions[0].choices["segment"]
    (action,) = [a for a in segment._actions if a.dest == "format"]
    assert list(action.choices) == names


def test_a_new_format_is_one_class(tmp_path):
    @exporter.register
    class CountExporter(exporter.Exporter):
        """``counts.json``: objects per image (a format in a few lines)."""

        name = "counts"
        uses_objects = True

        def encode(self, target):
            return exporter.Encoded(record=len(target.objects))

        def finish(self, out_dir, targets):
            (out_dir / "counts.json").write_text(json.dumps({t.name: t.record for t in targets}))

    try:
        assert "counts" in exporter.format_names()
        write(tmp_path, "split_by_an_occluder", ["counts"])
        assert json.loads((tmp_path / "counts.json").read_text()) == {"img.png": 3}
        assert FolderWriter(tmp_path, LABELS, ["counts"]).is_done("img.png")
        assert not FolderWriter(tmp_path, LABELS, ["counts"], per_class=True).is_done("img.png")
    finally:
        exporter._registered.pop("counts")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"labelstudio_control": "ellipse"}, "labelstudio_control: unknown value 'ellipse'"),
    ],
)
def test_bad_object_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(SansaError, match=message):
        FolderWriter(tmp_path, LABELS, ["labelstudio"], **options)


def test_cli_coco_instances_is_gone_with_a_one_line_pointer(tmp_path, capsys):
    from sansa.cli import main

    argv = ["segment", "ref.png", "--box", "1,1,5,5", "--targets", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--coco-instances"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--coco-instances: removed" in err and "--per-class" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.slow
def test_an_object_of_a_thousand_pieces_joins_without_recursion():
    mask = np.zeros((6, 2200), bool)
    mask[2:4, ::2] = True  # 1100 pieces in a row: a chain deeper than Python's recursion limit
    joined = yolo.join_pieces(shapes.polygons(mask))
    drawn = shapes.rasterize_polygons([np.floor(joined) + 0.25], *mask.shape)
    assert not (mask & ~drawn).any() and not ((drawn & ~mask) & ~bridges(np.floor(joined) + 0.25, mask.shape)).any()


def test_empty_objects_are_left_out_and_a_class_without_objects_is_one_object(tmp_path):
    scene = SCENES["split_by_an_occluder"]
    cats = [o for o in objects_of(scene) if o.label == "cat"]
    empty = SegmentedObject("cat", np.zeros(scene.shape, bool), np.zeros(4, np.float32), 0.1)
    label_map = label_map_of(objects_of(scene), scene.shape)  # the dog has pixels but no object given
    with FolderWriter(tmp_path, LABELS, ["coco"]) as writer:
        record = writer.write("i.png", np.zeros((*scene.shape, 3), np.uint8), label_map, LABELS, SCORES,
                              objects=[*cats, empty])  # fmt: skip
    assert record.objects == {"cat": 2, "dog": 1}
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert [(a["category_id"], a["area"], a["score"]) for a in data["annotations"]] == [
        (1, 12, 0.9),
        (1, 1, 0.8),
        (2, 6, 0.7),  # the dog's whole mask, with the class's score
    ]


def test_a_connected_object_with_holes_is_one_line_drawn_back_exactly():
    """Pieces cut around holes touch: their links run where they touch, so truncating and rounding
    YOLO readers draw exactly the object (random connected objects, many with holes)."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        height, width = (int(v) for v in rng.integers(4, 20, 2))
        count, parts = cv2.connectedComponents((rng.random((height, width)) < 0.7).astype(np.uint8), connectivity=8)
        if count < 2:
            continue
        mask = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
        (line,) = yolo.object_lines([SegmentedObject("cat", mask, mask_box(mask), 1.0)], LABELS)
        ((_, points),) = yolo.parse_lines(line, height, width)
        np.testing.assert_array_equal(shapes.rasterize_polygons([points], height, width), mask)
        np.testing.assert_array_equal(shapes.rasterize_polygons([np.round(points)], height, width), mask)
