"""sansa.export: every format decodes back to the masks it was written from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sansa import atomic
from sansa.errors import SansaError
from sansa.export import FolderWriter, OutputFormat, class_color, names, parse_formats, shapes, yolo
from sansa.records import Prediction, Segmentation


def grid(text: str) -> np.ndarray:
    """A label map from rows of digits (``.`` = 0)."""
    rows = [row.strip().replace(".", "0") for row in text.strip().splitlines()]
    return np.array([[int(c) for c in row] for row in rows], dtype=np.uint16)


LABEL_MAPS = {
    "one_square": grid("""
        ........
        .1111...
        .1111...
        .1111...
        ........
        ........"""),
    "two_parts_two_classes": grid("""
        11....22
        11....22
        ......22
        .111....
        .111..2.
        ........"""),
    "single_pixel_and_line": grid("""
        ........
        ..1.....
        ........
        .222222.
        ........
        ........"""),
    "with_hole": grid("""
        .......
        .11111.
        .1...1.
        .1...1.
        .11111.
        ......."""),
    "empty": grid("""
        ....
        ...."""),
}
LABELS = ["cat", "dog"]


def segmentation(label_map: np.ndarray, labels=LABELS, name: str = "t") -> Segmentation:
    """A segmentation whose label map is ``label_map`` (logits +5 inside each class, -5 outside)."""
    preds = [
        Prediction(np.where(label_map == i, 5.0, -5.0).astype(np.float32), 0.5 + 0.1 * i, label)
        for i, label in enumerate(labels, start=1)
    ]
    return Segmentation.from_predictions(preds, name)


def image_for(label_map: np.ndarray) -> np.ndarray:
    return np.full((*label_map.shape, 3), 128, dtype=np.uint8)


def within_one_pixel(a: np.ndarray, b: np.ndarray) -> bool:
    """Every pixel of each mask lies within one pixel (8-neighbourhood) of the other."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    grow = lambda m: cv2.dilate(m.astype(np.uint8), kernel).astype(bool)  # noqa: E731
    return bool(not (a & ~grow(b)).any() and not (b & ~grow(a)).any())


def write(writer: FolderWriter, label_map: np.ndarray, name: str, **kwargs):
    """Write ``label_map`` as target ``name`` (scores as :func:`segmentation` gives them)."""
    seg = segmentation(label_map)
    scores = {label: p.score for label, p in seg.predictions.items()}
    return writer.write(name, image_for(label_map), seg.label_map, seg.labels, scores, **kwargs)


def write_one(tmp_path: Path, label_map: np.ndarray, formats, **options) -> Path:
    out = tmp_path / "out"
    with FolderWriter(out, LABELS, formats, **options) as writer:
        write(writer, label_map, "img.jpg")
    return out


# -- COCO ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", LABEL_MAPS)
def test_coco_rle_per_class_decodes_to_the_class_masks(tmp_path, key):
    label_map = LABEL_MAPS[key]
    data = json.loads((write_one(tmp_path, label_map, ["coco"]) / "annotations.json").read_text())
    assert data["images"] == [
        {"id": 1, "file_name": "img.jpg", "width": label_map.shape[1], "height": label_map.shape[0]}
    ]
    assert data["categories"] == [
        {"id": 1, "name": "cat", "supercategory": "object"},
        {"id": 2, "name": "dog", "supercategory": "object"},
    ]
    present = [i for i in (1, 2) if (label_map == i).any()]
    assert [a["category_id"] for a in data["annotations"]] == present
    for ann in data["annotations"]:
        assert isinstance(ann["segmentation"]["counts"], str)
        decoded = mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()})
        expected = label_map == ann["category_id"]
        np.testing.assert_array_equal(decoded.astype(bool), expected)
        ys, xs = np.nonzero(expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == expected.sum()
        assert ann["score"] == pytest.approx(0.5 + 0.1 * ann["category_id"])


@pytest.mark.parametrize("key", ["one_square", "two_parts_two_classes", "single_pixel_and_line"])
def test_coco_polygons_rasterise_within_one_pixel(tmp_path, key):
    label_map = LABEL_MAPS[key]
    height, width = label_map.shape
    data = json.loads((write_one(tmp_path, label_map, ["coco"], coco_polygons=True) / "annotations.json").read_text())
    for ann in data["annotations"]:
        assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])
        rles = mask_utils.frPyObjects(ann["segmentation"], height, width)
        decoded = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        assert within_one_pixel(decoded, label_map == ann["category_id"])


# -- YOLO ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "lines"), [("one_square", 1), ("two_parts_two_classes", 4), ("single_pixel_and_line", 2), ("empty", 0)]
)
def test_yolo_polygons_rasterise_within_one_pixel(tmp_path, key, lines):
    label_map = LABEL_MAPS[key]
    height, width = label_map.shape
    out = write_one(tmp_path, label_map, ["yolo"])
    text = (out / "yolo/labels/img.txt").read_text()
    parsed = yolo.parse_lines(text, height, width)
    assert len(parsed) == lines
    for index in range(len(LABELS)):
        polys = [xy for cls, xy in parsed if cls == index]
        drawn = shapes.rasterize_polygons(polys, height, width)
        assert within_one_pixel(drawn, label_map == index + 1)
    values = [float(v) for line in text.splitlines() for v in line.split()[1:]]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert "names:\n  0: cat\n  1: dog\n" in (out / "yolo/data.yaml").read_text()


# -- PNG -----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", LABEL_MAPS)
def test_indexed_png_pixels_are_class_ids_and_palette_is_documented(tmp_path, key):
    label_map = LABEL_MAPS[key]
    out = write_one(tmp_path, label_map, ["indexed"])
    with Image.open(out / "labels/img.png") as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), label_map)
        palette = np.array(img.getpalette()[:9]).reshape(3, 3)
    table = json.loads((out / "classes.json").read_text())
    assert [(row["id"], row["name"]) for row in table] == [(0, "background"), (1, "cat"), (2, "dog")]
    for row in table:
        assert list(palette[row["id"]]) == row["color"] == list(class_color(row["id"]))


@pytest.mark.parametrize("key", LABEL_MAPS)
def test_binary_pngs_one_per_class(tmp_path, key):
    label_map = LABEL_MAPS[key]
    out = write_one(tmp_path, label_map, ["png"])
    for class_id, label in enumerate(LABELS, start=1):
        with Image.open(out / f"masks/img_{label}.png") as img:
            assert img.mode == "L"
            np.testing.assert_array_equal(np.asarray(img), (label_map == class_id) * 255)


def test_overlay_has_the_image_size_and_tints_classes(tmp_path):
    label_map = np.zeros((90, 120), np.uint16)
    label_map[50:80, 60:110] = 2
    out = write_one(tmp_path, label_map, ["overlay"])
    with Image.open(out / "overlays/img.jpg") as img:
        assert img.format == "JPEG" and img.size == (120, 90)
        pixels = np.asarray(img.convert("RGB")).astype(int)
    inside, outside = pixels[65, 85], pixels[20, 100]
    assert np.abs(outside - 128).max() <= 3  # untouched (JPEG noise only)
    toward = np.sign(np.array(class_color(2)) - 128)
    assert (np.sign(inside - 128)[toward != 0] == toward[toward != 0]).all()


# -- writer: names, resuming, atomicity ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("img1.jpg", "img1"),
        ("sub/img 1.jpg", "sub/img 1"),  # names as users wrote them (issue 22)
        ("写真 #1.jpg", "写真 #1"),
        ("写真.jpg", "写真"),
        ("画像.jpg", "画像"),
        ("a_b.jpg", "a_b"),
        ("Zoë's café (2).png", "Zoë's café (2)"),
        ("e\u0301.jpg", "\u00e9"),  # NFD (as macOS gives it) stored as NFC
        ("../evil/.hidden.png", "__/evil/_.hidden"),
        ("a/b/c.d.tif", "a/b/c.d"),
        ('a:b*c?"d"<e>|f.png', "a_b_c__d__e__f"),  # what NTFS/exFAT cannot hold
        ("x+y.jpg", "x_y"),  # "+" joins YOLO's flat names
        ("tab\there\x7f.png", "tab_here_"),
        ("dots..jpg", "dots_"),  # Windows drops a trailing dot
        ("trailing .jpg", "trailing_"),
        ("back\\slash.jpg", "back/slash"),
    ],
)
def test_safe_stems(name, stem):
    assert names.safe_stem(name) == stem
    assert ".." not in Path(names.safe_stem(name)).parts


def test_a_long_name_ends_in_a_hash_within_the_file_system_limit():
    stem = names.safe_stem("写" * 200 + ".jpg")
    assert len(stem.encode()) <= names.MAX_PART_BYTES and stem.startswith("写" * 40) and "-" in stem
    assert stem != names.safe_stem("写" * 199 + "x.jpg")


# (the targets, in writing order; their stems): a hash only on a real collision
STEM_CASES = [
    (["写真.jpg", "画像.jpg"], ["写真", "画像"]),
    (["a_b.jpg", "a b.jpg"], ["a_b", "a b"]),
    (["写真 #1.jpg", "写真 #2.jpg"], ["写真 #1", "写真 #2"]),
    (["a.jpg", "a.png"], ["a", "a-{a.png}"]),  # one stem, two files
    (["A.jpg", "a.jpg"], ["A", "a-{a.jpg}"]),  # one file on macOS and Windows
    (["\u00e9.jpg", "e\u0301.png"], ["\u00e9", "\u00e9-{e\u0301.png}"]),  # NFC and NFD: one name on macOS
    (["a:b.jpg", "a_b.jpg"], ["a_b", "a_b-{a_b.jpg}"]),  # ":" replaced: a real collision
]


@pytest.mark.parametrize("targets, stems", STEM_CASES, ids=[" ".join(c[0]) for c in STEM_CASES])
def test_a_hash_only_on_a_real_collision(tmp_path, targets, stems):
    expected = [
        s.split("-{")[0] + (f"-{names.digest(s[s.index('{') + 1 : -1])[:8]}" if "{" in s else "") for s in stems
    ]
    with FolderWriter(tmp_path / "out", LABELS, ["png"]) as writer:
        written = [write(writer, LABEL_MAPS["one_square"], t).stem for t in targets]
    assert written == expected
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == {t: [f"masks/{s}_cat.png", f"masks/{s}_dog.png"] for t, s in zip(targets, expected, strict=True)}
    assert all((tmp_path / "out" / f).is_file() for files in manifest.values() for f in files)


def test_the_manifest_lists_every_output_of_every_format(tmp_path):
    out = tmp_path / "out"
    with FolderWriter(out, ["猫", "chien"], ["png", "indexed", "overlay", "yolo", "coco"], coco_layout="dataset") as w:
        seg = segmentation(LABEL_MAPS["one_square"], labels=["猫", "chien"])
        w.write("sub/写真 #1.jpg", image_for(seg.label_map), seg.label_map, seg.labels, {"猫": 0.5, "chien": 0.5})
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(manifest["sub/写真 #1.jpg"]) == sorted(
        [
            "masks/sub/写真 #1_猫.png",
            "masks/sub/写真 #1_chien.png",
            "labels/sub/写真 #1.png",
            "overlays/sub/写真 #1.jpg",
            "yolo/labels/sub+写真 #1.txt",
            "yolo/images/sub+写真 #1.png",
            "coco/images/sub/写真 #1.png",
        ]
    )
    coco = json.loads((out / "coco/annotations/instances_default.json").read_text(encoding="utf-8"))
    assert [i["file_name"] for i in coco["images"]] == ["sub/写真 #1.png"]


def test_clashing_stems_stay_unique_and_resume_the_same(tmp_path):
    label_map = LABEL_MAPS["one_square"]
    out = tmp_path / "out"
    with FolderWriter(out, LABELS, ["png"]) as writer:
        first = write(writer, label_map, "a.jpg")
        second = write(writer, label_map, "a.png")
    assert (first.name, first.stem) == ("a.jpg", "a")
    assert second.stem.startswith("a-") and second.stem != first.stem
    reopened = FolderWriter(out, LABELS, ["png"])
    assert reopened.record("a.png").stem == second.stem
    assert reopened.stem_for("a.jpg") == "a" and reopened.stem_for("a.bmp").startswith("a-")
    assert reopened.is_done("a.png")


def test_is_done_needs_every_format_and_file(tmp_path):
    label_map = LABEL_MAPS["one_square"]
    out = write_one(tmp_path, label_map, ["png", "coco"])
    assert FolderWriter(out, LABELS, ["png", "coco"]).is_done("img.jpg")
    assert not FolderWriter(out, LABELS, ["png", "coco"]).is_done("other.jpg")
    assert not FolderWriter(out, LABELS, ["png", "yolo"]).is_done("img.jpg")  # a new format
    assert not FolderWriter(out, LABELS, ["coco"], coco_polygons=True).is_done("img.jpg")
    (out / "masks/img_dog.png").unlink()
    assert not FolderWriter(out, LABELS, ["png"]).is_done("img.jpg")


def test_resumed_writing_gives_identical_dataset_files(tmp_path):
    maps = {
        "b.jpg": LABEL_MAPS["one_square"],
        "a.jpg": LABEL_MAPS["two_parts_two_classes"],
        "c.jpg": LABEL_MAPS["empty"],
    }
    formats = ["png", "indexed", "coco", "yolo", "overlay"]

    def run(out: Path, batches: list[list[str]]) -> dict[str, bytes]:
        for batch in batches:
            with FolderWriter(out, LABELS, formats) as writer:
                for name in batch:
                    write(writer, maps[name], name)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    once = run(tmp_path / "once", [["a.jpg", "b.jpg", "c.jpg"]])
    resumed = run(tmp_path / "resumed", [["c.jpg"], ["b.jpg", "a.jpg"]])
    assert once == resumed
    coco = json.loads(once["annotations.json"])
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg", "c.jpg"]


def test_interrupted_block_leaves_no_dataset_files(tmp_path):
    label_map = LABEL_MAPS["one_square"]
    with pytest.raises(KeyboardInterrupt), FolderWriter(tmp_path, LABELS, ["coco", "yolo"]) as writer:
        write(writer, label_map, "img.jpg")
        raise KeyboardInterrupt
    assert not (tmp_path / "annotations.json").exists() and not (tmp_path / "yolo/data.yaml").exists()
    assert FolderWriter(tmp_path, LABELS, ["coco", "yolo"]).is_done("img.jpg")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    atomic.write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_a_folder_without_results_takes_new_classes(tmp_path):
    FolderWriter(tmp_path, ["cat"], ["png"])  # opened, nothing written (e.g. the model failed to load)
    writer = FolderWriter(tmp_path, LABELS, ["png"])
    write(writer, LABEL_MAPS["one_square"], "img.jpg")
    with pytest.raises(SansaError, match="holds results for classes"):
        FolderWriter(tmp_path, ["cat"], ["png"])


def test_leftover_temporaries_are_removed_on_open(tmp_path):
    leftover = tmp_path / "masks" / f".img_cat.png.abc{atomic.TEMP_SUFFIX}"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    FolderWriter(tmp_path, LABELS, ["png"])
    assert not leftover.exists()


@pytest.mark.parametrize(
    ("labels", "formats", "message"),
    [
        (["cat"], ["png"], "classes \\['cat', 'dog'\\]"),  # folder already holds other classes
        (["cat", "dog"], ["tiff"], "unknown format 'tiff'"),
        (["cat", "dog"], [], "at least one"),
    ],
)
def test_bad_writer_arguments(tmp_path, labels, formats, message):
    write_one(tmp_path, LABEL_MAPS["one_square"], ["png"])
    with pytest.raises(SansaError, match=message):
        FolderWriter(tmp_path / "out", labels, formats)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["COCO", "png", "coco"], (OutputFormat.COCO, OutputFormat.PNG)),
        ([OutputFormat.YOLO], (OutputFormat.YOLO,)),
    ],
)
def test_parse_formats(values, expected):
    assert parse_formats(values) == expected


def test_label_tokens_are_safe_and_unique():
    assert names.label_tokens(["a b", "a_b", "x/y"]) == ["a b", "a_b", "x_y"]  # kept as written (issue 22)
    assert names.label_tokens(["猫", "Cat", "cat", "x:y", "x_y"]) == ["猫", "Cat", "cat-3", "x_y", "x_y-5"]


# (class name, a name drawn differently if the legend fell back to "?"): issue 22
LEGEND_NAMES = [
    ("café", "caf?"),
    ("Ärger über Öl", "?rger ?ber ?l"),
    ("Жук", "???"),
    ("ψάρι", "?????"),
    ("猫", "?"),
    ("写真 #1", "?? #1"),
]


@pytest.mark.parametrize("name, as_question_marks", LEGEND_NAMES, ids=[n[0] for n in LEGEND_NAMES])
def test_the_overlay_legend_draws_names_in_any_script(name, as_question_marks):
    from sansa.drawing import overlay, text

    image, label_map = np.full((120, 160, 3), 128, np.uint8), np.zeros((120, 160), np.uint16)
    drawn = overlay(image, label_map, [name])
    fallback = overlay(image, label_map, [as_question_marks])
    assert (drawn != fallback).any(), f"{name!r} was drawn as {as_question_marks!r}"
    assert text.font_files()[0].name == "DejaVuSans.ttf"  # from matplotlib, a dependency
    if all(ord(c) < 0x2E80 for c in name):  # not CJK: DejaVu Sans has every glyph
        assert [index for index, _ in text.runs(name)] == [0]


def test_cjk_names_use_a_cjk_font_where_one_is_installed():
    from sansa.drawing import overlay, text

    image, label_map = np.full((120, 160, 3), 128, np.uint8), np.zeros((120, 160), np.uint16)
    indices = {index for index, _ in text.runs("猫写")}
    if indices == {len(text.font_files()) - 1}:
        pytest.skip("no CJK font on this system (no dependency ships one): drawn as Last Resort boxes")
    assert (overlay(image, label_map, ["猫"]) != overlay(image, label_map, ["写"])).any()


# (formats of the first run, formats added on resume, options): issue 22
ADDED_FORMATS = [
    (["png"], ["png", "yolo"], {}),
    (["png", "coco"], ["png", "coco", "overlay", "indexed"], {}),
    (["coco"], ["coco", "yolo"], {"coco_layout": "dataset"}),
    (["yolo"], ["yolo", "labelstudio", "png"], {}),
]


@pytest.mark.parametrize(
    "first, then, options", ADDED_FORMATS, ids=[" -> ".join(" ".join(f) for f in c[:2]) for c in ADDED_FORMATS]
)
def test_adding_a_format_on_resume_writes_only_its_files(tmp_path, first, then, options):
    out = tmp_path / "out"
    targets = ["写真 #1.jpg", "sub/b.jpg"]
    with FolderWriter(out, LABELS, first, **options) as writer:
        for name in targets:
            write(writer, LABEL_MAPS["two_parts_two_classes"], name)
    first_files = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    per_target = {
        out / f: ((out / f).stat().st_mtime_ns, (out / f).stat().st_ino) for fs in first_files.values() for f in fs
    }
    assert per_target
    with FolderWriter(out, LABELS, then, **options) as writer:
        assert not any(writer.is_done(name) for name in targets)
        for name in targets:
            write(writer, LABEL_MAPS["two_parts_two_classes"], name)
        assert all(writer.is_done(name) for name in targets)
    for path, stamp in per_target.items():  # each target's files of the first formats: untouched
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp, f"{path.relative_to(out)} was rewritten"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name in targets:  # the manifest lists the old files and the new format's
        assert set(first_files[name]) < set(manifest[name]) and all((out / f).is_file() for f in manifest[name])
    with FolderWriter(out, LABELS, then, **options) as writer:  # and a third run has nothing to do
        assert all(writer.is_done(name) for name in targets)
