"""``sansa.inspection``: adapters switched off, joint PCA maps, pooled object features, the per-class
summary (planted confusions found), the pictures, and ``sansa inspect`` end to end on the tiny model."""

from __future__ import annotations

import copy
import io
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sansa.cli import main
from sansa.inspection import ADAPTED, PLAIN, Region, feature_maps, fit_pca, inspect_features, summarize
from sansa.inspection.features import pool_regions, target_regions
from sansa.model.adapters import adapters_bypassed
from sansa.model.sansa import ImageFeatures
from sansa.records import Prediction, Segmentation

TINY = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


# -- adapters off ------------------------------------------------------------------------------
def test_adapters_bypassed_gives_plain_sam2_and_restores_them(tiny_model):
    image = torch.randn(1, 3, 256, 256)
    plain = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, param in plain.named_parameters():
            if ".adapter.up_proj" in name:
                param.zero_()  # a zero adapter adds exactly nothing
        keys = list(tiny_model.state_dict())
        adapted = tiny_model.encode_images(image).top
        with adapters_bypassed(tiny_model):
            bypassed = tiny_model.encode_images(image).top
            assert list(tiny_model.state_dict()) == keys  # no key added or renamed
        after = tiny_model.encode_images(image).top
        expected = plain.encode_images(image).top
    assert torch.equal(bypassed, expected)
    assert not torch.allclose(bypassed, adapted)
    assert torch.equal(after, adapted)


def test_adapters_come_back_after_an_error(tiny_model):
    with pytest.raises(RuntimeError), adapters_bypassed(tiny_model):
        raise RuntimeError("boom")
    adapters = [m for m in tiny_model.modules() if hasattr(m, "enabled")]
    assert adapters and all(a.enabled for a in adapters)


# -- PCA ---------------------------------------------------------------------------------------
def test_pca_finds_the_planted_direction_with_a_fixed_sign():
    rng = np.random.default_rng(0)
    rows = np.zeros((200, 5))
    rows[:, 2] = rng.normal(0, 10, 200)  # most variance along channel 2
    rows[:, 4] = rng.normal(0, 1, 200)
    projection = fit_pca(rows, 3)
    assert projection.components.shape == (3, 5)
    np.testing.assert_allclose(np.abs(projection.components[0]), [0, 0, 1, 0, 0], atol=0.02)
    assert projection.components[0, 2] > 0  # sign: largest entry positive
    assert projection.explained[0] > 0.95 and projection.explained.sum() <= 1 + 1e-9
    np.testing.assert_array_equal(fit_pca(-rows, 3).components, projection.components)  # same basis either way


@pytest.mark.parametrize("objects", [1, 2, 3])
def test_pca_of_fewer_objects_than_components_pads_with_zero_variance(objects):
    rows = np.arange(objects * 4, dtype=float).reshape(objects, 4) ** 2
    projection = fit_pca(rows, 3)
    assert projection(rows).shape == (objects, 3)
    assert np.isfinite(projection(rows)).all()


def test_joint_maps_share_one_colour_scale():
    rng = np.random.default_rng(1)
    tops = rng.normal(size=(3, 8, 4, 5)).astype(np.float32)
    tops[2] = tops[0]  # the same features in two images...
    maps, projection = feature_maps(tops)
    assert maps.shape == (3, 4, 5, 3) and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps[2], maps[0])  # ...get the same colours
    alone, _ = feature_maps(tops[:1])
    assert projection.components.shape == (3, 8)
    assert not np.array_equal(alone[0], maps[0])  # the scale is fitted on all images, not per image


# -- objects -----------------------------------------------------------------------------------
def test_pooling_weights_each_cell_by_the_share_the_mask_covers():
    tops = torch.zeros(1, 2, 2, 2)
    tops[0, 0] = torch.tensor([[1.0, 3.0], [5.0, 7.0]])  # channel 0: one value per cell
    tops[0, 1] = 1.0
    mask = np.zeros((4, 4), dtype=bool)
    mask[0:2, 0:2] = True  # all of cell (0, 0)
    mask[0, 2] = True  # a quarter of cell (0, 1)
    pooled = pool_regions(tops, [Region(0, "a", mask, True)])
    np.testing.assert_allclose(pooled, [[(1.0 * 1 + 3.0 * 0.25) / 1.25, 1.0]], rtol=1e-6)


def test_target_regions_are_connected_parts_without_specks():
    label_map = np.zeros((32, 32), dtype=np.uint16)
    label_map[0:10, 0:10] = 1  # one part of class a
    label_map[20:30, 20:30] = 1  # a second part of class a
    label_map[0:12, 20:32] = 2  # class b
    label_map[31, 0] = 2  # a one-pixel speck: smaller than a feature cell (32*32 / 4*4 = 64 px)
    logits = [np.where(label_map == i, 5.0, -5.0).astype(np.float32) for i in (1, 2)]
    seg = Segmentation.from_predictions([Prediction(logits[0], 0.9, "a"), Prediction(logits[1], 0.9, "b")])
    regions = target_regions(seg, 3, (4, 4))
    assert [(r.label, int(r.mask.sum()), r.image, r.is_reference) for r in regions] == [
        ("a", 100, 3, False),
        ("a", 100, 3, False),
        ("b", 144, 3, False),
    ]


# -- the summary ------------------------------------------------------------------------------
def _clusters(planted: dict[int, str]):
    """Objects of classes a, b, c around three orthogonal directions; ``planted``: row -> the class
    whose direction that (target) row really lies on."""
    rng = np.random.default_rng(0)
    directions = {"a": np.eye(6)[0], "b": np.eye(6)[1], "c": np.eye(6)[2]}
    labels = ["a", "b", "c"] + ["a"] * 5 + ["b"] * 5 + ["c"] * 5
    refs = [True] * 3 + [False] * 15
    features = np.stack([directions[planted.get(i, label)] for i, label in enumerate(labels)])
    features = features * 10 + rng.normal(0, 0.5, features.shape)
    images = [f"img{i}.png" for i in range(len(labels))]
    return features, labels, refs, images


def test_summary_finds_the_planted_confusion():
    features, labels, refs, images = _clusters({5: "c"})  # row 5: predicted a, looks like c
    summaries, margins = summarize(features, labels, refs, images)
    by_label = {s.label: s for s in summaries}
    assert [m.image for m in by_label["a"].confused] == ["img5.png"]
    assert by_label["a"].confused[0].nearest == "c" and by_label["a"].confused[0].margin < -0.5
    assert by_label["b"].confused == [] and by_label["c"].confused == []
    assert by_label["b"].silhouette > 0.8 > by_label["a"].silhouette
    assert (by_label["a"].references, by_label["a"].targets) == (1, 5)
    assert sorted(m.index for m in margins if m.margin < 0) == [5]


def test_summary_of_clean_clusters_flags_nothing():
    summaries, margins = summarize(*_clusters({}))
    assert all(s.confused == [] and s.silhouette > 0.8 for s in summaries)
    assert all(m.margin > 0.5 for m in margins)


def test_summary_of_one_class_has_no_margin():
    features = np.eye(4)[[0, 0, 1]]
    summaries, margins = summarize(features, ["a"] * 3, [True, False, False], ["r", "t1", "t2"])
    assert summaries[0].silhouette is None and summaries[0].nearest is None
    assert [m.margin for m in margins] == [None, None]


# -- the whole inspection, encoder stubbed -----------------------------------------------------
RED, BLUE = (220, 30, 30), (30, 30, 220)


def _scene(left, right, size=(64, 64)) -> np.ndarray:
    image = np.full((*size, 3), 128, dtype=np.uint8)
    image[16:48, 4:28] = left
    image[16:48, 36:60] = right
    return image


def _segmentation(label_map: np.ndarray) -> Segmentation:
    predictions = [
        Prediction(np.where(label_map == i, 5.0, -5.0).astype(np.float32), 0.9, label)
        for i, label in enumerate(["red", "blue"], start=1)
    ]
    return Segmentation.from_predictions(predictions)


def _colour_encoder(images):
    """Features of known clusters: each 4x4 cell's mean colour, in 8 channels, plus a little noise."""
    rng = np.random.default_rng(len(images))
    tops = []
    for image in images:
        cells = image.reshape(16, image.shape[0] // 16, 16, image.shape[1] // 16, 3).mean(axis=(1, 3)) / 255.0
        feature = np.concatenate([cells, 1 - cells, cells[..., :2] * 0], axis=-1).transpose(2, 0, 1)
        tops.append(feature + rng.normal(0, 0.01, feature.shape))
    top = torch.tensor(np.stack(tops), dtype=torch.float32)
    return ImageFeatures([], top, top)


def test_stubbed_encoder_the_summary_finds_the_planted_confusion(tiny_predictor, monkeypatch):
    reference = _scene(RED, BLUE)
    left, right = np.zeros((64, 64), dtype=bool), np.zeros((64, 64), dtype=bool)
    left[16:48, 4:28], right[16:48, 36:60] = True, True
    tiny_predictor.add_reference(reference, mask=left, label="red", name="ref")
    tiny_predictor.add_reference(reference, mask=right, label="blue", name="ref")
    monkeypatch.setattr(tiny_predictor, "encode", _colour_encoder)
    targets = [_scene(RED, BLUE), _scene(BLUE, BLUE)]  # in the second, the left object is blue...
    label_map = np.zeros((64, 64), dtype=np.uint16)
    label_map[left], label_map[right] = 1, 2  # ...but predicted red
    inspection = inspect_features(
        tiny_predictor,
        targets,
        reference_images=[reference, reference],
        segmentations=[_segmentation(label_map), _segmentation(label_map)],
    )
    assert inspection.reference_images == 2  # the same array given twice is not deduplicated
    summary = {s.label: s for s in inspection.summaries[ADAPTED]}
    assert [(m.image, m.nearest) for m in summary["red"].confused] == [("target 1", "blue")]
    assert summary["blue"].confused == []
    assert inspection.image_margins()["target 1"] < 0 < inspection.image_margins()["target 0"]
    text = inspection.summary_text()
    assert "target 1: red, nearer blue" in text and "target 0" not in text


# -- the whole inspection on the tiny model ----------------------------------------------------
@pytest.fixture()
def tiny_inspected(tiny_predictor):
    """The tiny model (non-zero adapters) on examples/: references and two targets."""
    tiny_predictor.add_reference("examples/reference.png", mask="examples/reference_mask.png", label="disc")
    tiny_predictor.add_reference("examples/reference.png", box=[140, 82, 208, 150], label="block")
    targets = ["examples/targets/table_01.jpg", "examples/targets/table_02.jpg"]
    return tiny_predictor, targets


@pytest.mark.slow
def test_tiny_model_shapes_and_determinism(tiny_inspected):
    predictor, targets = tiny_inspected
    first = inspect_features(predictor, targets, seed=3)
    again = inspect_features(predictor, targets, seed=3)
    assert first.names == ["examples/reference.png", *targets]  # the reference image once for two references
    assert first.kinds == [ADAPTED, PLAIN]
    for kind in first.kinds:
        assert first.maps[kind].shape == (3, 16, 16, 3)  # 256 px input / 16
        assert first.points[kind].shape == (len(first.regions), 3)
        np.testing.assert_array_equal(first.maps[kind], again.maps[kind])
        np.testing.assert_array_equal(first.points[kind], again.points[kind])
    assert not np.array_equal(first.maps[ADAPTED], first.maps[PLAIN])  # these adapters are not zero
    assert [r.is_reference for r in first.regions[:2]] == [True, True]
    assert first.to_dict() == again.to_dict()
    grid = first.pca_grid()
    assert grid.shape[0] == 22 + 3 * 160 and grid.shape[2] == 3
    assert first.scatter_png() == again.scatter_png()
    with Image.open(io.BytesIO(first.scatter_png())) as picture:
        assert picture.size == (832, 400)  # two panels side by side


@pytest.mark.slow
def test_plain_is_skipped_on_request(tiny_inspected):
    predictor, targets = tiny_inspected
    inspection = inspect_features(predictor, targets[:1], plain=False)
    assert inspection.kinds == [ADAPTED]
    assert "plain SAM2" in inspection.summary_text()  # the column is there, empty
    assert inspection.pca_grid().shape[1] < inspect_features(predictor, targets[:1]).pca_grid().shape[1]


def test_reference_images_must_match_the_references(tiny_inspected):
    from sansa.errors import SansaError

    predictor, targets = tiny_inspected
    with pytest.raises(SansaError, match="reference_images: 1 given for 2 references"):
        inspect_features(predictor, targets, reference_images=["examples/reference.png"])
    with pytest.raises(SansaError, match="reference_images: image 0 is 64x64"):
        inspect_features(predictor, targets, reference_images=[np.zeros((64, 64, 3), np.uint8)] * 2)


def test_html_is_self_contained_and_class_names_cannot_break_out(tiny_predictor):
    hostile = "</script><script>alert(1)</script>"
    image = _scene(RED, BLUE)
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:48, 4:28] = True
    tiny_predictor.add_reference(image, mask=mask, label=hostile)
    tiny_predictor.add_reference(image, mask=~mask, label="other")
    page = inspect_features(tiny_predictor, [image], reference_images=[image, image], plain=False).scatter_html()
    assert "<script>alert(1)" not in page
    assert "http://" not in page and "https://" not in page and " src=" not in page  # nothing fetched
    payload = page.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(payload)["classes"][0]["name"] == hostile


# -- the command -------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_writes_the_pictures_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "inspect"
    targets = ["examples/targets/table_01.jpg", "examples/targets/table_03.jpg"]
    code = main(
        ["inspect", "--references", "examples/references.yaml", "--targets", *targets, "--out", str(out), *TINY]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["pca_maps.png", "objects.png", "objects.html", "summary.txt", "summary.json"]
    )
    assert printed.startswith("class  refs  targets  silhouette  plain SAM2  nearest class\n")
    assert (out / "summary.txt").read_text() in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [i["role"] for i in summary["images"]] == ["reference", "target", "target"]
    with Image.open(out / "pca_maps.png") as grid:
        assert grid.height == 22 + 3 * 160


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "examples/targets"], "no reference: give REFERENCE"),
        (["--mask", "m.png", "--targets", "examples/targets"], "give the reference image first (sansa inspect"),
        (["--references", "examples/references.yaml", "--targets", "no/such/dir"], "no/such/dir"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["inspect", *args, "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("sansa inspect: error:")
    assert not (tmp_path / "o").exists()


def test_an_out_folder_that_cannot_be_made_is_one_line(tiny_inspected, tmp_path):
    from sansa.errors import SansaError

    predictor, targets = tiny_inspected
    inspection = inspect_features(predictor, targets[:1], plain=False)
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SansaError, match="taken/inspect: cannot write the inspection there \\(Not a directory\\)"):
        inspection.save(blocker / "inspect")
    assert blocker.read_text() == "a file, not a folder"
    written = inspection.save(tmp_path / "fine")
    assert [p.name for p in written] == ["pca_maps.png", "objects.png", "objects.html", "summary.txt", "summary.json"]
    assert all(p.stat().st_size > 0 for p in written) and not list((tmp_path / "fine").glob("*.tmp*"))


def test_adapters_bypassed_on_one_thread_only(tiny_model):
    """A thread bypassing the adapters leaves them on for another thread running the model meanwhile
    (model lanes share one model): each gets the bytes it gets alone."""
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        adapted = tiny_model.encode_images(image).top
        with adapters_bypassed(tiny_model):
            plain = tiny_model.encode_images(image).top
    inside, beside = threading.Event(), threading.Event()
    got: dict[str, torch.Tensor] = {}

    def bypassing() -> None:
        with torch.no_grad(), adapters_bypassed(tiny_model):
            inside.set()
            beside.wait(timeout=60)  # the other thread runs the model while this one is inside
            got["bypassed"] = tiny_model.encode_images(image).top

    thread = threading.Thread(target=bypassing)
    thread.start()
    assert inside.wait(timeout=60)
    with torch.no_grad():
        got["adapted"] = tiny_model.encode_images(image).top
    beside.set()
    thread.join(timeout=60)
    assert torch.equal(got["adapted"], adapted) and torch.equal(got["bypassed"], plain)
    assert not torch.equal(adapted, plain)
