"""Images and prompts as users give them: every layout is read right, every mistake is one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sansa.errors import ImageError, PromptError, SansaError
from sansa.images import load_image, load_mask
from sansa.records import Prompt

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # a 2 x 3 image


def _save(tmp_path, name: str, img: Image.Image, **kwargs) -> str:
    path = tmp_path / name
    img.save(path, **kwargs)
    return str(path)


def _exif_rotated(tmp_path) -> str:
    """A 2 x 3 image stored as 3 x 2 pixels with EXIF orientation 6 (rotate 90° clockwise to view)."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(RGB, k=1)))  # what a camera would store
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(tmp_path, "rotated.png", stored, exif=exif)


# (make the source, expected RGB uint8 array)
IMAGE_CASES = [
    ("rgb-array", lambda t: RGB, RGB),
    ("gray-array", lambda t: RGB[:, :, 0], np.repeat(RGB[:, :, :1], 3, axis=2)),
    ("rgba-array", lambda t: np.dstack([RGB, np.full((2, 3), 7, np.uint8)]), RGB),
    ("16-bit-array", lambda t: RGB[:, :, 0].astype(np.uint16) * 257, np.repeat(RGB[:, :, :1], 3, axis=2)),
    ("gray-png", lambda t: _save(t, "g.png", Image.fromarray(RGB[:, :, 0])), np.repeat(RGB[:, :, :1], 3, axis=2)),
    ("rgba-png", lambda t: _save(t, "a.png", Image.fromarray(np.dstack([RGB, np.zeros((2, 3), np.uint8)]))), RGB),
    (
        "16-bit-png",
        lambda t: _save(t, "i16.png", Image.fromarray(RGB[:, :, 0].astype(np.uint16) * 257)),
        np.repeat(RGB[:, :, :1], 3, axis=2),
    ),
    ("palette-png", lambda t: _save(t, "p.png", Image.fromarray(RGB).quantize(256)), None),
    ("exif-rotated", _exif_rotated, RGB),
    ("pil-image", lambda t: Image.fromarray(RGB), RGB),
]


@pytest.mark.parametrize("name, make, expected", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_every_image_layout_becomes_rgb_uint8(tmp_path, name, make, expected):
    image = load_image(make(tmp_path))
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    if expected is not None:
        np.testing.assert_array_equal(image, expected)


# (source, expected message)
BAD_IMAGES = [
    (lambda t: str(t / "missing.jpg"), r"missing\.jpg: no such file"),
    (lambda t: str(t), r"is a folder, not an image"),
    (lambda t: (t / "notes.jpg").write_text("hello") and str(t / "notes.jpg"), r"notes\.jpg: not a readable image"),
    (lambda t: _truncated_jpeg(t), r"cut\.jpg: not a readable image"),
    (lambda t: np.zeros((4, 4, 3), np.float32), r"expected a uint8 \(or uint16\) array, got float32"),
    (lambda t: np.zeros((4, 4, 5), np.uint8), r"expected an array of shape \[H, W, 3\]"),
    (lambda t: 42, r"expected a path, PIL image or array, got int"),
]


def _truncated_jpeg(tmp_path) -> str:
    path = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:300])
    return str(cut)


@pytest.mark.parametrize("make, message", BAD_IMAGES)
def test_bad_image_is_one_line_naming_it(tmp_path, make, message):
    with pytest.raises(ImageError, match=message) as info:
        load_image(make(tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "source, expected",
    [
        (np.array([[0, 3], [0, 0]], np.uint8), [[False, True], [False, False]]),
        (np.array([[0.0, 0.2], [1.0, 0.0]]), [[False, True], [True, False]]),
        (Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)), [[False, True], [False, False]]),
        (
            Image.fromarray(np.dstack([np.zeros((2, 2, 3), np.uint8), np.array([[0, 255], [255, 0]], np.uint8)])),
            [[False, True], [True, False]],
        ),  # RGBA: alpha is the mask
    ],
)
def test_masks_from_arrays_and_images(source, expected):
    assert load_mask(source).tolist() == expected


IMAGE = np.zeros((40, 60, 3), np.uint8)


def _mask(height=40, width=60, box=(5, 5, 20, 20)) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


# (prompt keyword arguments, error type, message)
BAD_PROMPTS = [
    (dict(points=[[70, 10]]), PromptError, r"points: \(70, 10\) lies outside the 60x40 image"),
    (dict(points=[[10, -1]]), PromptError, r"points: \(10, -1\) lies outside"),
    (dict(box=[0, 0, 61, 20]), PromptError, r"box: \(61, 20\) lies outside the 60x40 image"),
    (dict(box=[30, 10, 10, 20]), PromptError, r"box: .* is empty"),
    (dict(box=[1, 2, 3]), PromptError, r"box: expected four numbers"),
    (dict(scribble=[[1, 1], [5, 50]]), PromptError, r"scribble: \(5, 50\) lies outside"),
    (dict(points=[[1, 1]], labels=[1, 1]), PromptError, r"labels: 2 labels for 1 points"),
    (dict(points=[[1, 1]], labels=[2]), PromptError, r"labels: each label must be 1 .* or 0"),
    (dict(points=[[float("nan"), 1]]), PromptError, r"points: coordinates must be finite"),
    (dict(points=[]), PromptError, r"points: expected a non-empty list"),
    (dict(mask=np.zeros((40, 60), bool)), PromptError, r"mask: is empty"),
    (dict(mask=_mask(20, 30)), PromptError, r"mask: size 30x20 does not match the image \(60x40\)"),
    (dict(mask=_mask(), box=[1, 1, 5, 5]), PromptError, r"mask: a mask prompt cannot be combined"),
    (dict(), PromptError, r"prompt: give a mask, points, a box or a scribble"),
    (dict(box=[1, 1, 5, 5], label=""), SansaError, r"label: must be a non-empty class name"),
    (dict(prompt=Prompt.create(box=[1, 1, 5, 5]), box=[1, 1, 5, 5]), SansaError, r"prompt: give a Prompt record or"),
    (dict(prompt=Prompt.create(points=[[70, 10]])), PromptError, r"points: \(70, 10\) lies outside"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_PROMPTS)
def test_bad_prompt_is_one_line_and_changes_nothing(tiny_predictor, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        tiny_predictor.add_reference(IMAGE, **kwargs)
    assert "\n" not in str(info.value)
    assert tiny_predictor.references == []


def test_prompt_lists_are_not_mutated(tiny_predictor):
    points, labels = [[10.0, 10.0], [30.0, 20.0]], [1, 0]
    tiny_predictor.add_reference(IMAGE, points=points, labels=labels)
    assert points == [[10.0, 10.0], [30.0, 20.0]] and labels == [1, 0]


def test_prompts_on_the_image_border_are_accepted(tiny_predictor):
    ref = tiny_predictor.add_reference(IMAGE, box=[0, 0, 60, 40])
    assert ref.mask.shape == (40, 60) and ref.logits.dtype == np.float32


def test_mask_reference_keeps_the_users_mask(tiny_predictor):
    mask = _mask()
    ref = tiny_predictor.add_reference(IMAGE, mask=mask)
    np.testing.assert_array_equal(ref.mask, mask)
    assert ref.score is None


def test_a_prompt_record_gives_the_same_reference_as_its_values(tiny_predictor):
    by_values = tiny_predictor.add_reference(IMAGE, points=[[10, 12]], labels=[1], box=[2, 3, 30, 25])
    record = Prompt.create(points=[[10, 12]], labels=[1], box=[2, 3, 30, 25])
    by_record = tiny_predictor.add_reference(IMAGE, prompt=record)
    np.testing.assert_array_equal(by_record.logits, by_values.logits)
