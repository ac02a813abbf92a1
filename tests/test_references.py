"""Reading references from command-line strings and YAML/JSON files (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sansa.errors import SansaError
from sansa.references import (
    ReferenceSpec,
    check_specs,
    load_reference_file,
    parse_box,
    parse_points,
    parse_scribble,
    spec_from_values,
)
from sansa.vocab import PromptType


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,2", [[1.0, 2.0]]),
        ("1,2; 3.5,4;", [[1.0, 2.0], [3.5, 4.0]]),
        ([[1, 2], [3, 4]], [[1.0, 2.0], [3.0, 4.0]]),
    ],
)
def test_parse_points(value, expected):
    assert parse_points(value, "points") == expected


@pytest.mark.parametrize("value", ["", "1", "1,2,3", "a,b", [[1, 2, 3]], [], [[True, 2]], 5])
def test_parse_points_rejects(value):
    with pytest.raises(SansaError, match="^points: expected"):
        parse_points(value, "points")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,2,30,40", [1.0, 2.0, 30.0, 40.0]),
        ([0, 0, 5.5, 6], [0.0, 0.0, 5.5, 6.0]),
    ],
)
def test_parse_box(value, expected):
    assert parse_box(value, "box") == expected


@pytest.mark.parametrize("value", ["1,2,3", "1,2,3,x", [1, 2, 3, 4, 5], None])
def test_parse_box_rejects(value):
    with pytest.raises(SansaError, match="^box: expected"):
        parse_box(value, "box")


@pytest.mark.parametrize(
    ("value", "strokes"),
    [
        ("1,1;2,2", [[[1.0, 1.0], [2.0, 2.0]]]),
        ([[1, 1], [2, 2]], [[[1.0, 1.0], [2.0, 2.0]]]),
        ([[[1, 1], [2, 2]], "5,5;6,6"], [[[1.0, 1.0], [2.0, 2.0]], [[5.0, 5.0], [6.0, 6.0]]]),
        (["1,1;2,2", "3,3"], [[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0]]]),
    ],
)
def test_parse_scribble_strokes(value, strokes):
    assert parse_scribble(value, "scribble") == strokes


@pytest.mark.parametrize(
    ("values", "fields", "kind"),
    [
        ({"box": [1, 2, 3, 4]}, {"box": [1.0, 2.0, 3.0, 4.0]}, PromptType.BOX),
        (
            {"points": "1,2", "neg_points": "3,4;5,6"},
            {"points": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "labels": [1, 0, 0]},
            PromptType.POINT,
        ),
        (
            {"box": "0,0,9,9", "neg_points": [[3, 4]]},
            {"points": [[3.0, 4.0]], "labels": [0], "box": [0.0, 0.0, 9.0, 9.0]},
            PromptType.MIXED,
        ),
        (
            {"scribble": ["1,1;2,2", "3,3"]},
            {"scribble": [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], "strokes": [[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0]]]},
            PromptType.SCRIBBLE,
        ),
    ],
)
def test_spec_to_prompt_record(values, fields, kind):
    spec = spec_from_values({"image": "img.png", "label": " dog ", **values}, Path("base"), "ref")
    assert spec.image == Path("base/img.png") and spec.label == "dog"
    prompt = spec.prompt()
    assert prompt.type is kind and prompt.mask is None
    for key in ("points", "labels", "box", "scribble"):
        value = getattr(prompt, key)
        assert (value.tolist() if value is not None else None) == fields.get(key), key
    assert [stroke.tolist() for stroke in prompt.strokes] == fields.get("strokes", [])


# (Prompt.create's scribble, the strokes the prompt keeps, its scribble's length): the strokes as
# drawn, the scribble joined and thinned to MAX_SCRIBBLE_POINTS (64)
STROKES = [
    ([[1, 1], [2, 2]], [[[1, 1], [2, 2]]], 2),  # one stroke
    ([(1, 1), (2, 2)], [[[1, 1], [2, 2]]], 2),  # one stroke of tuples
    ([[[1, 1], [2, 2]], [[9, 9]]], [[[1, 1], [2, 2]], [[9, 9]]], 3),  # strokes of different lengths
    ([np.ones((3, 2)), np.zeros((1, 2))], [[[1, 1]] * 3, [[0, 0]]], 4),  # arrays, as the web app sends
    (np.ones((2, 2, 2)), [[[1, 1]] * 2] * 2, 4),  # [k, n, 2]: k strokes of n points
    ([[[1, 1]] * 50, [[2, 2]] * 50], [[[1, 1]] * 50, [[2, 2]] * 50], 64),  # all kept, scribble thinned
]


@pytest.mark.parametrize(("scribble", "strokes", "length"), STROKES)
def test_a_prompt_keeps_its_strokes(scribble, strokes, length):
    from sansa.records import Prompt

    prompt = Prompt.create(scribble=scribble)
    assert [stroke.tolist() for stroke in prompt.strokes] == strokes
    assert all(stroke.dtype == np.float32 for stroke in prompt.strokes) and len(prompt.scribble) == length
    assert np.array_equal(prompt.scribble[[0, -1]], [strokes[0][0], strokes[-1][-1]])  # ends kept


def test_a_prompt_made_from_a_scribble_alone_has_it_as_its_stroke():
    from sansa.records import Prompt

    scribble = np.array([[1, 2], [3, 4]], np.float32)
    assert [s.tolist() for s in Prompt(scribble=scribble).strokes] == [scribble.tolist()]
    assert Prompt(box=np.array([0, 0, 2, 2], np.float32)).strokes == ()


def test_spec_mask_prompt_reads_the_file(tmp_path):
    from PIL import Image

    Image.fromarray(np.pad(np.full((2, 3), 255, np.uint8), 1)).save(tmp_path / "m.png")
    spec = spec_from_values({"image": "img.png", "mask": "m.png"}, tmp_path, "ref")
    assert spec.mask == tmp_path / "m.png"
    prompt = spec.prompt()
    assert prompt.type is PromptType.MASK and prompt.mask.shape == (4, 5) and prompt.mask.sum() == 6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image": "a.png", "box": [0, 0, 1, 1], "colour": "red"}, "unknown key 'colour'"),
        ({"box": [0, 0, 1, 1]}, "no 'image'"),
        ({"image": "a.png"}, "no prompt"),
        ({"image": "a.png", "mask": "m.png", "points": "1,1"}, "cannot be combined with points"),
        ({"image": "a.png", "neg_points": "1,1"}, "neg_points alone"),
        ({"image": "a.png", "box": [0, 0, 1, 1], "label": ""}, "'label' must be a non-empty"),
        ({"image": "a.png", "box": "1,2"}, "ref: box: expected"),
    ],
)
def test_spec_errors_name_the_reference(values, message):
    with pytest.raises(SansaError, match=message):
        spec_from_values(values, Path(), "ref")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_reference_file_paths_are_relative_to_it(tmp_path, suffix):
    entries = [
        {"image": "a.png", "mask": "a_mask.png", "label": "cat"},
        {"image": "/abs/b.png", "box": [1, 2, 3, 4], "label": "dog"},
    ]
    path = tmp_path / "sub" / f"refs{suffix}"
    path.parent.mkdir()
    path.write_text(json.dumps({"references": entries}))  # JSON is YAML too
    specs = load_reference_file(path)
    assert [(s.image, s.mask, s.label) for s in specs] == [
        (tmp_path / "sub/a.png", tmp_path / "sub/a_mask.png", "cat"),
        (Path("/abs/b.png"), None, "dog"),
    ]
    assert specs[1].source == f"{path}: reference 2"


def test_reference_file_may_be_a_bare_list(tmp_path):
    path = tmp_path / "refs.yaml"
    path.write_text("- {image: a.png, points: '1,1'}\n")
    assert load_reference_file(path) == [
        ReferenceSpec(image=tmp_path / "a.png", points=[[1.0, 1.0]], source=f"{path}: reference 1")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a non-empty list"),
        ("references: {image: a.png}", "expected a non-empty list"),
        ("references: [a.png]", "reference 1: expected a mapping"),
        ("references: [", "not valid YAML/JSON"),
    ],
)
def test_bad_reference_files(tmp_path, text, message):
    path = tmp_path / "refs.yaml"
    path.write_text(text)
    with pytest.raises(SansaError, match=message):
        load_reference_file(path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"box": [0, 0, 12, 5]}, r"box: \(12, 5\) lies outside the 10x8 image"),
        ({"points": "3,3;3,9"}, r"points: \(3, 9\) lies outside"),
        ({"mask": "empty.png"}, "mask: is empty"),
        ({"mask": "missing.png"}, "missing.png: no such file"),
    ],
)
def test_check_specs_without_a_model(tmp_path, values, message):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "empty.png")
    spec = spec_from_values({"image": "img.png", **values}, tmp_path, "refs.yaml: reference 1")
    with pytest.raises(SansaError, match=f"^refs.yaml: reference 1.*{message}"):
        check_specs([spec])
