"""Objects: the assembly on known decoder outputs, and the decoder path against SAM2's own.

The assembly tests use a stubbed decoder that returns, for a click, the known object under it
(``+10`` inside, ``-10`` outside, IoU estimate 0.95): scenes of 256 x 256 pixels, so the decoder's
256 x 256 grid is the image's own pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sansa.errors import SansaError
from sansa.objects import ObjectOptions, find_objects

SIDE = 256  # image side = the decoder grid of a 1024 model input
INPUT = 1024


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def stub_decoder(known: list[np.ndarray]):
    """Clicks (model coordinates ``[N, 2]``) -> the known object under each, three times."""

    def decode(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cells = torch.floor((points + 0.5) / (INPUT / SIDE)).long()
        out = torch.full((len(points), 3, SIDE, SIDE), -10.0)
        for i, (x, y) in enumerate(cells.tolist()):
            for mask in known:
                if mask[y, x]:
                    out[i] = torch.where(torch.from_numpy(mask), 10.0, -10.0)
                    break
        return out, torch.full((len(points), 3), 0.95)

    return decode


def two_touching_squares():
    a, b = _rect(20, 60, 20, 60), _rect(30, 60, 60, 90)
    return {"box": [a, b]}, {}


def ring_with_hole():
    ring = _disc(128, 128, 40) & ~_disc(128, 128, 15)
    return {"ring": [ring]}, {}


def split_by_occluder():
    pole = _rect(80, 160, 100, 110)
    car = _rect(100, 140, 30, 200) & ~pole
    return {"car": [car], "pole": [pole]}, {}


def speck_under_min_area():
    square, speck = _rect(100, 150, 100, 150), _rect(10, 13, 200, 203)
    return {"thing": [square]}, {"thing": [speck]}


@pytest.mark.parametrize("scene", [two_touching_squares, ring_with_hole, split_by_occluder, speck_under_min_area])
def test_assembly_returns_exactly_the_known_objects(scene):
    objects_by_class, specks = scene()
    labels = list(objects_by_class)
    label_map = np.zeros((SIDE, SIDE), dtype=np.uint16)
    for i, label in enumerate(labels, start=1):
        for mask in objects_by_class[label] + specks.get(label, []):
            label_map[mask] = i
    known = [m for masks in objects_by_class.values() for m in masks]

    found, final_map = find_objects(
        stub_decoder(known), label_map, labels, [0.5] * len(labels), ObjectOptions(min_area=16), INPUT
    )

    got = sorted((o.label, o.mask.tobytes()) for o in found)
    want = sorted((label, m.tobytes()) for label, masks in objects_by_class.items() for m in masks)
    assert got == want
    assert all(o.score == pytest.approx(0.95) for o in found)
    coverage = np.zeros((SIDE, SIDE), dtype=int)
    for o in found:
        coverage += o.mask
        assert (final_map[o.mask] == labels.index(o.label) + 1).all()  # inside its class
        ys, xs = np.nonzero(o.mask)
        assert o.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert o.area == len(xs)
    assert coverage.max() == 1  # disjoint
    assert ((coverage > 0) == (final_map > 0)).all()  # a class is exactly the union of its objects
    for masks in specks.values():  # under min_area, touching nothing: background
        assert all((final_map[m] == 0).all() for m in masks)


def test_unclaimed_pixels_join_the_object_they_touch_most_or_stand_alone():
    """The decoder returns a square's core only: its fringe joins it; an isolated blob the decoder
    never returns becomes an object of its own (class score); a speck goes."""
    core, fringe = _rect(40, 80, 40, 80), _rect(36, 84, 36, 84)
    blob, speck = _rect(150, 170, 150, 180), _rect(5, 7, 5, 7)
    label_map = np.zeros((SIDE, SIDE), dtype=np.uint16)
    label_map[fringe | blob | speck] = 1
    options = ObjectOptions(min_area=16, points_per_class=1)  # one click: the square's centre
    found, final_map = find_objects(stub_decoder([core]), label_map, ["a"], [0.3], options, INPUT)
    assert [(o.area, round(o.score, 2)) for o in found] == [(48 * 48, 0.95), (20 * 30, 0.3)]
    assert (found[0].mask == fringe).all() and (found[1].mask == blob).all()
    assert final_map[speck].max() == 0


def test_max_objects_keeps_the_largest():
    label_map = np.zeros((SIDE, SIDE), dtype=np.uint16)
    sizes = [30, 20, 10]
    for i, s in enumerate(sizes):
        label_map[10 + 60 * i : 10 + 60 * i + s, 10 : 10 + s] = 1
    options = ObjectOptions(min_area=16, max_objects=2, points_per_class=0)
    found, final_map = find_objects(stub_decoder([]), label_map, ["a"], [0.5], options, INPUT)
    assert [o.area for o in found] == [900, 400]
    assert np.count_nonzero(final_map) == 1300


@pytest.mark.parametrize(
    "given, message",
    [
        ({"min_area": -1}, "min_area: must be a whole number >= 0"),
        ({"max_objects": 2.5}, "max_objects: must be a whole number >= 0"),
        ({"overlap": 1.5}, "overlap: must be a number from 0 to 1"),
        ({"points": 3}, "object options: unknown points"),
    ],
)
def test_bad_options_are_one_line_errors(given, message):
    with pytest.raises(SansaError, match=message):
        ObjectOptions.create(**given)


def test_options_left_unset_keep_the_defaults():
    assert ObjectOptions.create(min_area=None, max_objects=5) == ObjectOptions(max_objects=5)
    assert ObjectOptions().area_floor(4000, 3000) == 1200 and ObjectOptions().area_floor(10, 10) == 16


# -- the decoder path against SAM2's own ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from sansa import SansaPredictor

    return SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")


def _features(predictor, height: int, width: int):
    image = (np.random.default_rng(3).random((height, width, 3)) * 255).astype(np.uint8)
    return image, predictor.encode([image])


def _sam2_image_predictor(predictor, feats, height: int, width: int):
    """Meta's ``SAM2ImagePredictor`` on the same SAM2 modules, given the same features."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    sam = predictor.model.sam
    sam_predictor = SAM2ImagePredictor(sam)

    def set_image(image) -> None:  # what set_image stores, from our encoding
        sam_predictor._features = {
            "image_embed": feats.top + sam.no_mem_embed.view(1, -1, 1, 1),
            "high_res_feats": feats.high_res,
        }
        sam_predictor._orig_hw, sam_predictor._is_image_set = [(height, width)], True

    sam_predictor.set_image = set_image
    return sam_predictor


def test_decode_points_equals_the_reference_path_and_sam2_image_predictor(tiny):
    height, width = 96, 128
    image, feats = _features(tiny, height, width)
    clicks = np.array([[30.0, 40.0], [100.0, 20.0], [64.0, 70.0], [5.0, 90.0]], dtype=np.float32)
    coords = tiny.transform.coords(clicks, height, width)[:, None]
    ones = torch.ones(len(clicks), 1, dtype=torch.int32)
    with torch.inference_mode():
        single, _ = tiny.model.decode_points(feats, coords, ones, multimask=False)
        multi, multi_iou = tiny.model.decode_points(feats, coords, ones, multimask=True)
        for i in range(len(clicks)):  # the reference path: one prompt at a time through sam2's SAM heads
            prompt = {"point_coords": coords[i : i + 1], "point_labels": ones[i : i + 1]}
            reference = tiny.model.decode_prompt(feats, prompt)
            torch.testing.assert_close(single[i], reference.low_res_logits[0], atol=1e-5, rtol=0)
        sam_predictor = _sam2_image_predictor(tiny, feats, height, width)
        sam_predictor.set_image(image)
        masks, ious, low = sam_predictor.predict(
            point_coords=clicks[:, None], point_labels=np.ones((len(clicks), 1)), return_logits=True
        )
    assert multi.shape == (4, 3, 64, 64) and low.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(multi.clamp(-32, 32).numpy(), low, atol=1e-5, rtol=0)
    np.testing.assert_allclose(multi_iou.numpy(), ious, atol=1e-5, rtol=0)
    at_image_size = tiny.transform.logits_to_image(multi.flatten(0, 1)[:, None], height, width)
    np.testing.assert_allclose(at_image_size.numpy().reshape(masks.shape), masks, atol=1e-5, rtol=0)


def test_selection_without_the_class_filter_equals_sam2s_automatic_mask_generator():
    """Same features, same 8 x 8 point grid: the candidates kept (quality filters, then box NMS as
    SAM's generator removes duplicates) are the generator's masks, in its order. The image is the
    decoder's grid size (64 x 64 for test_tiny), where the generator's upsampling is the identity."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from sansa import SansaPredictor
    from sansa.model._sam2 import amg
    from sansa.objects import box_nms, decode_candidates

    tiny = SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")
    with torch.no_grad():  # random weights give logits within +-0.5 (stability 0): sharpen both paths' decoder
        for mlp in tiny.model.sam.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30)
            mlp.layers[-1].bias.mul_(30)
    side = tiny.model.image_size // 4
    image, feats = _features(tiny, side, side)
    options = ObjectOptions(pred_iou=0.505, stability=0.6, overlap=0.7)  # keeps some, drops some
    generator = SAM2AutomaticMaskGenerator(
        tiny.model.sam,
        points_per_side=8,
        pred_iou_thresh=options.pred_iou,
        stability_score_thresh=options.stability,
        box_nms_thresh=options.overlap,
    )
    generator.predictor = _sam2_image_predictor(tiny, feats, side, side)
    with torch.inference_mode():
        expected = generator.generate(image)
        clicks = amg.build_point_grid(8) * side
        points = tiny.transform.coords(clicks, side, side)
        decode = tiny._point_decoder(feats)
        data = box_nms(decode_candidates(decode, points, torch.zeros(len(points), dtype=torch.int64), options), 0.7)
    assert 0 < len(expected) < 3 * 64  # the filters kept some and dropped some
    assert [m.tobytes() for m in data["masks"].numpy()] == [e["segmentation"].tobytes() for e in expected]
    np.testing.assert_allclose(data["iou_preds"].numpy(), [e["predicted_iou"] for e in expected], atol=1e-6)
    np.testing.assert_allclose(data["stability_score"].numpy(), [e["stability_score"] for e in expected], atol=1e-6)


# -- the result's conversions --------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmented(tiny):
    image = (np.random.default_rng(8).random((48, 64, 3)) * 255).astype(np.uint8)
    tiny.reset()
    tiny.add_reference(image, box=[4, 4, 30, 40], label="cat")
    tiny.add_reference(image, box=[30, 10, 60, 44], label="dog")
    return image, tiny.segment(image, objects=ObjectOptions(min_area=8))


def test_to_supervision_holds_every_object(segmented):
    _, seg = segmented
    detections = seg.to_supervision()
    assert len(detections) == len(seg.objects) > 0
    assert detections.mask.dtype == bool and detections.mask.shape == (len(seg.objects), 48, 64)
    for i, o in enumerate(seg.objects):
        assert (detections.mask[i] == o.mask).all()
        assert detections.xyxy[i].tolist() == o.box.tolist()
        assert seg.labels[detections.class_id[i]] == detections.data["class_name"][i] == o.label
        assert detections.confidence[i] == pytest.approx(o.score)


def test_to_supervision_without_supervision_is_one_line(segmented, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(SansaError, match=r"to_supervision: needs the supervision package \(pip install supervision\)"):
        segmented[1].to_supervision()


def test_plot_outlines_each_object_and_save_writes_it(segmented, tmp_path):
    from PIL import Image

    from sansa.drawing import overlay

    image, seg = segmented
    picture = seg.plot(image)
    outlines = [(seg.labels.index(o.label) + 1, o.mask) for o in seg.objects]
    assert (picture == overlay(image, seg.label_map, seg.labels, outlines=outlines)).all()
    seg.save(tmp_path / "seg.png", image)
    assert (np.asarray(Image.open(tmp_path / "seg.png")) == picture).all()
    with pytest.raises(SansaError, match="plot: give the image"):
        seg.plot()
    with pytest.raises(SansaError, match="does not match the segmentation"):
        seg.plot(image[:10])


@pytest.mark.slow
def test_objects_benchmark_names_the_machine_and_gives_a_ratio():
    """``benchmarks/objects.py`` on the tiny model: the CPU line, then a row with both times and their ratio."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "objects.py"
    command = [sys.executable, str(script), "--backbone", "test_tiny", "--classes", "1", "--targets", "1"]
    out = subprocess.run(command + ["--repeats", "1"], capture_output=True, text=True, timeout=600, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("CPU: ") and "load average" in lines[0]
    row = next(line for line in lines if line.startswith("| test_tiny | 1 |")).split("|")
    plain, with_objects, ratio = float(row[3]), float(row[4]), float(row[5])
    assert ratio == pytest.approx(with_objects / plain, rel=0.1)  # times printed to 1 ms
