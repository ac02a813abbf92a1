"""Object exports load, object by object, in the tools people train with.

One image holds the hard cases: two touching squares, a ring whose hole holds an object of the
other class, and an object split in two by an occluder. Its export (COCO RLE and polygons, the
COCO dataset layout, YOLO, Label Studio) is read by pycocotools and supervision in this process
(from another working directory), by Ultralytics and datumaro in their own venvs
(``tests/consumer_env.py``; the pinned Ultralytics is also the newest on the registry, 8.4.190),
and by label-studio-converter in ``.venv-labelstudio`` when it is there. Each must find one
annotation per object, with the object's pixels, box and class.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import consumer_env
import cv2
import numpy as np
import pytest
from PIL import Image

from sansa.export import FolderWriter
from sansa.export.objects import mask_box
from sansa.records import SegmentedObject

LABELS = ["cat", "dog"]
SIZE = (48, 64)


def scene_objects() -> list[SegmentedObject]:
    """The objects, class by class: cats (two touching squares, a ring, a split one), then dogs."""
    masks: dict[str, list[np.ndarray]] = {"cat": [], "dog": []}

    def box(rows: slice, cols: slice) -> np.ndarray:
        mask = np.zeros(SIZE, bool)
        mask[rows, cols] = True
        return mask

    masks["cat"] += [box(slice(4, 13), slice(4, 13)), box(slice(4, 13), slice(13, 22))]  # touching
    ring = box(slice(20, 35), slice(4, 19)) & ~box(slice(23, 32), slice(7, 16))
    masks["cat"].append(ring)
    masks["cat"].append(box(slice(38, 45), slice(24, 31)) | box(slice(38, 45), slice(36, 43)))  # split
    masks["dog"].append(box(slice(25, 30), slice(9, 14)))  # in the ring's hole
    masks["dog"].append(box(slice(36, 47), slice(31, 36)))  # the occluder
    objects = []
    for label in LABELS:
        for i, mask in enumerate(masks[label]):
            objects.append(SegmentedObject(label, mask, mask_box(mask), round(0.9 - 0.05 * i, 2)))
    return objects


OBJECTS = scene_objects()


def label_map() -> np.ndarray:
    result = np.zeros(SIZE, np.uint16)
    for obj in OBJECTS:
        result[obj.mask] = LABELS.index(obj.label) + 1
    return result


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """``rle`` (annotations.json, yolo/, labelstudio/ as annotations), ``polygons`` and ``dataset``."""
    base = tmp_path_factory.mktemp("objects")
    photo = base / "photos" / "scene.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(photo)
    runs = {
        "rle": (["coco", "yolo", "labelstudio", "instances"], {"labelstudio_annotations": True}),
        "polygons": (["coco"], {"coco_polygons": True}),
        "dataset": (["coco"], {"coco_layout": "dataset"}),
    }
    outs = {}
    for name, (formats, options) in runs.items():
        outs[name] = base / name
        with FolderWriter(outs[name], LABELS, formats, **options) as writer:
            image = np.asarray(Image.open(photo))
            writer.write("scene.png", image, label_map(), LABELS, {}, objects=OBJECTS, source=photo)
    outs["photos"] = photo.parent
    return outs


def covers_with_bridges(drawn: np.ndarray, obj: SegmentedObject) -> bool:
    """``drawn`` has every pixel of ``obj``, and more only where it is split (its one-pixel bridges,
    at most the gap's width per join)."""
    if (obj.mask & ~drawn).any():
        return False
    pieces = cv2.connectedComponents(obj.mask.astype(np.uint8), connectivity=8)[0] - 1
    extra = int((drawn & ~obj.mask).sum())
    return extra == 0 if pieces == 1 else extra <= 8 * (pieces - 1)


# -- in this process --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rle", "polygons"])
def test_pycocotools_finds_each_object_with_its_box_and_area(exports, kind, monkeypatch, tmp_path):
    from pycocotools.coco import COCO

    monkeypatch.chdir(tmp_path)  # another working directory
    coco = COCO(str(exports[kind] / "annotations.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(OBJECTS)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for ann, obj in zip(anns, OBJECTS, strict=True):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)
        x0, y0, x1, y1 = obj.box.tolist()
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == obj.area
        assert names[ann["category_id"]] == obj.label and ann["score"] == obj.score


def test_supervision_reads_each_object_from_coco_and_yolo(exports, monkeypatch, tmp_path):
    sv = pytest.importorskip("supervision")
    monkeypatch.chdir(tmp_path)
    out = exports["rle"]
    coco = sv.DetectionDataset.from_coco(
        images_directory_path=str(exports["photos"]), annotations_path=str(out / "annotations.json"), force_masks=True
    )
    yolo = sv.DetectionDataset.from_yolo(
        images_directory_path=str(out / "yolo/images"),
        annotations_directory_path=str(out / "yolo/labels"),
        data_yaml_path=str(out / "yolo/data.yaml"),
        force_masks=True,
    )
    for fmt, dataset in (("coco", coco), ("yolo", yolo)):
        assert list(dataset.classes) == LABELS
        ((_, _, detections),) = list(dataset)
        assert len(detections) == len(OBJECTS), fmt
        assert [LABELS[i] for i in detections.class_id] == [o.label for o in OBJECTS]
        for mask, xyxy, obj in zip(detections.mask, detections.xyxy, OBJECTS, strict=True):
            if fmt == "coco":
                np.testing.assert_array_equal(mask, obj.mask)
            else:
                assert covers_with_bridges(mask, obj), obj
            if fmt == "coco":  # supervision's xyxy: the COCO box's corners
                assert xyxy.tolist() == pytest.approx(obj.box.tolist())


# -- Ultralytics and datumaro, in their own venvs -----------------------------------------------------
def test_ultralytics_yolo_dataset_has_a_line_per_object_drawn_to_its_pixels(exports, tmp_path):
    found = consumer_env.run_check(
        "ultralytics", "yolo_ultralytics.py", exports["rle"] / "yolo" / "data.yaml", cwd=tmp_path
    )
    assert found["names"] == LABELS
    image = found["images"]["scene"]
    assert image["instances"] == len(OBJECTS) == len(image["segments"])
    for (cls, pixels), obj in zip(image["segments"], OBJECTS, strict=True):
        drawn = np.zeros(SIZE, bool).reshape(-1)
        drawn[pixels] = True
        assert LABELS[cls] == obj.label and covers_with_bridges(drawn.reshape(SIZE), obj), obj


def test_datumaro_imports_each_object_of_the_coco_layout(exports):
    found = consumer_env.run_check("datumaro", "coco_datumaro.py", exports["dataset"] / "coco", cwd=exports["photos"])
    assert found["names"] == LABELS
    (image,) = found["images"].values()
    assert image["media"]  # its own order: compare as sets of (class, pixels, box)
    found = sorted((label, pixels, tuple(box)) for label, pixels, box in image["masks"])
    expected = [(o.label, o.area, (o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1])) for o in OBJECTS]
    assert found == sorted(expected)


# -- label-studio-converter ------------------------------------------------------------------------
def test_label_studio_converter_turns_each_region_into_its_object(exports, tmp_path):
    from labelstudio_server import PYTHON

    if not PYTHON.is_file():
        pytest.skip(f"no {PYTHON} (see tests/labelstudio_server.py)")
    out = exports["rle"] / "labelstudio"
    tasks = json.loads((out / "tasks.json").read_text())
    assert [len(t["annotations"][0]["result"]) for t in tasks] == [len(OBJECTS)]
    tasks[0]["id"] = 1  # what Label Studio's own export adds
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    (tmp_path / "png").mkdir()
    script = (
        "import sys; from label_studio_converter.converter import Converter; "
        "Converter(sys.argv[1], '.').convert(sys.argv[2], sys.argv[3], 'BRUSH_TO_PNG', is_dir=False)"
    )
    converted = subprocess.run(
        [str(PYTHON), "-c", script, str(out / "config.xml"), str(tmp_path / "export.json"), str(tmp_path / "png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert converted.returncode == 0, converted.stderr[-2000:]
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == len(OBJECTS), [p.name for p in pngs]
    found = sorted(int((np.asarray(Image.open(p)) > 0).sum()) for p in pngs)
    assert found == sorted(o.area for o in OBJECTS)
