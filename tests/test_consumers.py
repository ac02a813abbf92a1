"""The exports load, without edits, in the tools people train with; masks and class names intact.

Exports of ``sansa segment`` (the CLI) and of ``sansa serve`` (the web app's zip, from a real
server on loopback) are read by pycocotools, faster-coco-eval and supervision in this process,
and by Ultralytics and datumaro in their own venvs (``tests/consumer_env.py``; their pins clash
with ours). What each tool decodes must have, per image and class, exactly the pixels of the
export's PNG masks, and the export's class names. Two targets have names as users write them
(``写真 #1.jpg``, ``sub/café é.png``): every tool finds them under those names.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import consumer_env
import cv2
import numpy as np
import pytest
from PIL import Image
from scenes import scene, write_reference

from sansa.cli import main
from sansa.export import names as export_names

LABELS = ["square", "disc"]
MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


def png_masks(out: Path, stems: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """The truth: ``bool [H, W]`` of ``masks/<stem>_<label>.png``, per stem and class."""
    tokens = export_names.label_tokens(LABELS)
    return {
        stem: {
            label: np.asarray(Image.open(out / "masks" / f"{stem}_{token}.png")) > 0
            for label, token in zip(LABELS, tokens, strict=True)
        }
        for stem in stems
    }


def png_pixels(out: Path, stems: list[str]) -> dict[str, dict[str, int]]:
    """Pixels per class of the PNG masks, per stem."""
    return {stem: {label: int(m.sum()) for label, m in masks.items()} for stem, masks in png_masks(out, stems).items()}


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """``ref.png`` + ``ref_mask.png`` and ``photos/`` with a JPEG, a PNG and one in a sub-folder
    (two of them named with CJK, ``#``, accents and spaces)."""
    base = tmp_path_factory.mktemp("consumers")
    write_reference(base)
    (base / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(scene(1)).save(base / "photos" / "写真 #1.jpg", quality=95)
    Image.fromarray(scene(2)).save(base / "photos" / "b.png")
    Image.fromarray(scene(3)).save(base / "photos" / "sub" / "café é.png")
    (base / "refs.yaml").write_text(
        "references:\n"
        "  - {image: ref.png, mask: ref_mask.png, label: square}\n"
        "  - {image: ref.png, box: [36, 18, 56, 40], label: disc}\n"
    )
    return base


STEMS = ["b", "sub/café é", "写真 #1"]  # sorted; the names as written


@pytest.fixture(scope="session")
def cli_exports(photos) -> dict[str, Path]:
    """``sansa segment`` outputs: ``flat`` (annotations.json, yolo/), ``polygons`` (COCO polygons)
    and ``dataset`` (the coco/ layout, hard-linked images)."""
    outs = {"flat": photos / "out-flat", "polygons": photos / "out-polygons", "dataset": photos / "out-dataset"}
    common = [
        "segment",
        "--references",
        str(photos / "refs.yaml"),
        "--targets",
        str(photos / "photos"),
        "--recursive",
        *MODEL,
    ]
    assert main([*common, "--out", str(outs["flat"]), "--format", "png", "coco", "yolo"]) == 0
    assert main([*common, "--out", str(outs["polygons"]), "--format", "png", "coco", "--coco-polygons"]) == 0
    assert (
        main(
            [
                *common,
                "--out",
                str(outs["dataset"]),
                "--format",
                "png",
                "coco",
                "--coco-layout",
                "dataset",
                "--dataset-images",
                "link",
            ]
        )
        == 0
    )
    return outs


def _web_predictor():
    import torch

    from sansa import SansaPredictor
    from sansa.model.build import build_sansa

    torch.manual_seed(0)
    return SansaPredictor(build_sansa("test_tiny"), device="cpu")


@pytest.fixture(scope="session")
def web_out(photos, tmp_path_factory) -> Path:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from sansa.web.app import create_app, serve_in_thread

    folder = photos / "photos"
    app = create_app(_web_predictor(), folder)
    token = {"X-Sansa-Token": app.state.token}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=token, timeout=120) as http:
        sid = http.post("/api/sessions").json()["session_id"]
        for label in LABELS:
            assert http.post(f"/api/sessions/{sid}/classes", json={"name": label}).status_code == 201
        for label, box in zip(LABELS, ([12, 10, 40, 30], [36, 18, 56, 40]), strict=True):
            response = http.put(
                f"/api/sessions/{sid}/references", json={"image": "b.png", "label": label, "prompt": {"box": box}}
            )
            assert response.status_code == 200, response.text
        status = http.post(f"/api/sessions/{sid}/propagate").json()
        while status["state"] == "running":
            time.sleep(0.05)
            status = http.get(f"/api/sessions/{sid}/propagate").json()
        assert status["state"] == "done", status
        response = http.get(f"/api/sessions/{sid}/export", params={"formats": ["coco", "png", "yolo"]})
        assert response.status_code == 200, response.text
    out = tmp_path_factory.mktemp("web-export")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(out)
    return out


def web_stems(out: Path) -> list[str]:
    coco = json.loads((out / "annotations.json").read_text())
    return sorted(export_names.safe_stem(i["file_name"]) for i in coco["images"])


def export_of(request, kind: str) -> tuple[Path, Path, list[str]]:
    """``(out folder, image folder of the COCO file_names, stems)`` of the CLI's or the web's export."""
    if kind.startswith("cli"):
        out = request.getfixturevalue("cli_exports")["polygons" if kind == "cli-polygons" else "flat"]
        return out, request.getfixturevalue("photos") / "photos", STEMS
    out = request.getfixturevalue("web_out")
    return out, request.getfixturevalue("photos") / "photos", web_stems(out)


# -- COCO readers in this process -----------------------------------------------------------------
def coco_pixels(coco, stems_by_file: dict[str, str]) -> dict[str, dict[str, int]]:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    found = {}
    for image in coco.loadImgs(coco.getImgIds()):
        masks = {name: np.zeros((image["height"], image["width"]), bool) for name in names.values()}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            masks[names[ann["category_id"]]] |= coco.annToMask(ann).astype(bool)
        found[stems_by_file[image["file_name"]]] = {name: int(m.sum()) for name, m in masks.items()}
    return found


@pytest.mark.parametrize("kind", ["cli", "cli-polygons", "web"])
@pytest.mark.parametrize("reader", ["pycocotools", "faster_coco_eval"])
def test_coco_readers_decode_the_png_masks(request, kind, reader):
    out, _, stems = export_of(request, kind)
    if reader == "pycocotools":
        from pycocotools.coco import COCO
    else:
        faster = pytest.importorskip("faster_coco_eval")
        COCO = faster.COCO  # noqa: N806
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == LABELS
    by_file = {i["file_name"]: export_names.safe_stem(i["file_name"]) for i in coco.dataset["images"]}
    assert coco_pixels(coco, by_file) == png_pixels(out, stems)


@pytest.mark.parametrize("kind", ["cli", "web"])
def test_coco_file_is_also_a_results_file_faster_coco_eval_scores_perfect(request, kind):
    faster = pytest.importorskip("faster_coco_eval")
    out, _, _ = export_of(request, kind)
    truth = faster.COCO(str(out / "annotations.json"))
    if not truth.dataset["annotations"]:
        pytest.skip("the random model predicted nothing")
    results = truth.loadRes(truth.dataset["annotations"])
    evaluation = faster.COCOeval_faster(truth, results, iouType="segm", print_function=lambda *a, **k: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # every annotation matches itself


@pytest.mark.parametrize("kind", ["cli", "cli-polygons", "web"])
def test_supervision_reads_the_coco_and_the_yolo_export(request, kind):
    """Exact, except COCO polygons: supervision rounds their vertices where pycocotools samples
    pixel centres, so its masks may grow by one pixel (pycocotools, the reference, is exact)."""
    sv = pytest.importorskip("supervision")
    out, images, stems = export_of(request, kind)
    truth = png_masks(out, stems)
    datasets = [
        (
            "coco",
            sv.DetectionDataset.from_coco(
                images_directory_path=str(images), force_masks=True, annotations_path=str(out / "annotations.json")
            ),
            images,
        )
    ]
    if (out / "yolo").is_dir():
        datasets.append(
            (
                "yolo",
                sv.DetectionDataset.from_yolo(
                    images_directory_path=str(out / "yolo/images"),
                    annotations_directory_path=str(out / "yolo/labels"),
                    data_yaml_path=str(out / "yolo/data.yaml"),
                    force_masks=True,
                ),
                out / "yolo/images",
            )
        )
    drawn = check_yolo_drawn(out, stems, kind) if kind == "web" else None  # our lines as drawn, bridges too
    for fmt, dataset, root in datasets:
        assert list(dataset.classes) == LABELS
        found = {}
        for path, _, detections in dataset:
            stem = Path(path).resolve().relative_to(root.resolve()).with_suffix("").as_posix().replace("+", "/")
            empty = np.zeros(truth[stem][LABELS[0]].shape, bool)
            found[stem] = {
                label: detections.mask[detections.class_id == i].any(axis=0) if len(detections) else empty
                for i, label in enumerate(LABELS)
            }
        assert sorted(found) == sorted(truth)
        for stem, masks in truth.items():
            for label, mask in masks.items():
                if fmt == "yolo" and drawn is not None:  # the hand-made masks' bridges (check_yolo_drawn)
                    expected = drawn[stem][label]
                    np.testing.assert_array_equal(found[stem][label], expected, err_msg=f"{fmt} {stem} {label}")
                elif fmt == "coco" and kind == "cli-polygons":
                    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                    assert not (mask & ~found[stem][label]).any() and not (found[stem][label] & ~grown).any()
                else:
                    np.testing.assert_array_equal(found[stem][label], mask, err_msg=f"{fmt} {stem} {label}")


# -- Ultralytics and datumaro, in their own venvs ----------------------------------------------------
def flat(stem: str) -> str:
    """The YOLO folder's name of a stem (sub-folders joined with ``+``)."""
    return stem.replace("/", "+")


def yolo_drawn(out: Path, stems: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per stem and class, our YOLO lines filled as YOLO readers fill them (``cv2.fillPoly`` on
    the vertices' pixel indices): a class's mask, plus the zero-width bridges that join an object's
    separate pieces into one polygon (one object, one line: as Ultralytics' own converter joins them)."""
    from sansa.export.yolo import parse_lines

    drawn = {}
    for stem, masks in png_masks(out, stems).items():
        height, width = next(iter(masks.values())).shape
        canvas = {label: np.zeros((height, width), np.uint8) for label in LABELS}
        text = (out / "yolo/labels" / f"{flat(stem)}.txt").read_text()
        for index, points in parse_lines(text, height, width):
            cv2.fillPoly(canvas[LABELS[index]], [np.floor(points).astype(np.int32)], 1)
        drawn[stem] = {label: m.astype(bool) for label, m in canvas.items()}
    return drawn


def check_yolo_drawn(out: Path, stems: list[str], kind: str) -> dict[str, dict[str, np.ndarray]]:
    """:func:`yolo_drawn`, checked: every mask pixel drawn; exactly the masks for the CLI's objects
    (one piece each here), and for the web's hand-made masks (one object each) only bridges added."""
    drawn, truth = yolo_drawn(out, stems), png_masks(out, stems)
    for stem, masks in truth.items():
        for label, mask in masks.items():
            extra = drawn[stem][label] & ~mask
            assert not (mask & ~drawn[stem][label]).any(), (stem, label)
            assert not extra.any() if kind == "cli" else extra.sum() <= 4 * mask.sum(), (stem, label, int(extra.sum()))
    return drawn


@pytest.mark.parametrize("kind", ["cli", "web"])
def test_ultralytics_loads_data_yaml_as_written_and_counts_every_label(request, kind, tmp_path):
    out, _, stems = export_of(request, kind)
    found = consumer_env.run_check("ultralytics", "yolo_ultralytics.py", out / "yolo" / "data.yaml", cwd=tmp_path)
    assert found["names"] == LABELS
    assert Path(found["train"]) == (out / "yolo" / "images").resolve()  # not the working directory
    photos = request.getfixturevalue("photos") / "photos"
    for stem in stems:  # the targets' own files, copied (not re-encoded)
        source = next(photos.glob(f"{stem}.*"))
        assert (out / "yolo/images" / f"{flat(stem)}{source.suffix}").read_bytes() == source.read_bytes()
    lines = {stem: len((out / "yolo/labels" / f"{flat(stem)}.txt").read_text().splitlines()) for stem in stems}
    assert {stem.replace("+", "/"): image["instances"] for stem, image in found["images"].items()} == lines
    pixels = {stem.replace("+", "/"): image["pixels"] for stem, image in found["images"].items()}
    drawn = check_yolo_drawn(out, stems, kind)
    assert pixels == {stem: {label: int(m.sum()) for label, m in masks.items()} for stem, masks in drawn.items()}


def test_datumaro_imports_the_coco_dataset_layout(cli_exports):
    out = cli_exports["dataset"]
    found = consumer_env.run_check("datumaro", "coco_datumaro.py", out / "coco", cwd=out)
    assert found["names"] == LABELS
    assert sorted(found["images"]) == STEMS
    assert all(image["media"] and image["size"] == [48, 64] for image in found["images"].values())
    assert (out / "coco/images/sub/café é.png").samefile(out.parent / "photos/sub/café é.png")  # linked
    coco = json.loads((out / "coco/annotations/instances_default.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == ["b.png", "sub/café é.png", "写真 #1.jpg"]
    assert {stem: image["pixels"] for stem, image in found["images"].items()} == png_pixels(out, STEMS)
