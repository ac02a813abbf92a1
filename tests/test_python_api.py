"""The Python API as a new user meets it: the tiny model, offline errors, folders, labels, reprs, README."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sansa import SansaPredictor
from sansa.errors import DownloadError, SansaError

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def predictor() -> SansaPredictor:
    """The documented tiny random model with one ``dog`` reference."""
    tiny = SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")
    tiny.add_reference(image(0), box=[8, 6, 40, 30], label="dog", name="ref.png")
    return tiny


def image(seed: int) -> np.ndarray:
    pixels = np.full((48, 64, 3), 60 + 30 * seed, np.uint8)
    pixels[10:30, 12:40] = (220, 60, 30)
    return pixels


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(image(i)).save(folder / f"p{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


# -- the tiny random model --------------------------------------------------------------------
def test_tiny_random_model_is_one_call_and_the_same_each_time():
    first = SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")
    second = SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: SansaPredictor.from_pretrained("test_tiny"), "from_checkpoint(None, model='test_tiny')"),
        (lambda: SansaPredictor.from_checkpoint(None, "adapter.pth", model="test_tiny"), "give sam2_checkpoint too"),
    ],
)
def test_wrong_ways_to_the_tiny_model_say_the_right_one(call, words):
    with pytest.raises(SansaError) as err:
        call()
    assert words in str(err.value) and "\n" not in str(err.value)


# -- offline without the offline flag ------------------------------------------------------------
@pytest.mark.parametrize("name", ["sam2-hiera-tiny", "sansa-universal"])
def test_from_pretrained_fails_fast_when_the_hub_cannot_be_reached(tmp_path, monkeypatch, name):
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SANSA_CACHE", str(tmp_path / "sansa"))
    for key in ("SANSA_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(key, raising=False)
    started = time.monotonic()
    with pytest.raises(DownloadError) as err:
        SansaPredictor.from_pretrained(name, device="cpu")
    assert time.monotonic() - started < 5  # no retry rounds (they took 24-35 s)
    message = str(err.value)
    assert f"cannot connect to 127.0.0.1:{port}" in message
    assert "SansaPredictor.from_checkpoint(" in message and "offline=True" in message and "\n" not in message
    assert not (tmp_path / "sansa").exists() or not any((tmp_path / "sansa").rglob("*.pt"))


def test_unreachable_adapter_host_fails_fast_too(tmp_path):
    from sansa.hub import HubSettings, get_model
    from sansa.hub.fetch import download_adapter

    settings = HubSettings(
        cache_dir=tmp_path, gdrive_url=f"http://127.0.0.1:{closed_port()}/uc?id={{id}}", progress=False
    )
    started = time.monotonic()
    with pytest.raises(DownloadError, match="cannot be reached .*cannot connect to 127.0.0.1"):
        download_adapter(get_model("sansa-universal").adapter, settings, "sansa-universal")
    assert time.monotonic() - started < 5


# -- targets and labels ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["folder", "path", "glob"])
def test_segment_many_takes_a_folder_or_glob(predictor, photos, spec):
    given = {"folder": str(photos), "path": photos, "glob": str(photos / "*.jpg")}[spec]
    segs = list(predictor.segment_many(given))
    assert [Path(s.name).name for s in segs] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert all(s.size == (48, 64) for s in segs)


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("no/such/folder", "targets no/such/folder: no such folder or file"),
        ("*.nothing-matches", "targets *.nothing-matches: no images"),
    ],
)
def test_segment_many_refuses_a_string_it_cannot_use(predictor, tmp_path, monkeypatch, given, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SansaError, match=re.escape(words)):
        list(predictor.segment_many(given))


def test_unknown_label_fails_before_the_target_is_encoded(predictor, monkeypatch):
    def no_encoding(images):
        raise AssertionError("the target was encoded")

    monkeypatch.setattr(predictor, "encode", no_encoding)
    with pytest.raises(SansaError, match="no reference of class 'cat' \\(known: dog\\)"):
        predictor.predict(image(1), label="cat")


# -- reprs ---------------------------------------------------------------------------------------
def test_records_print_in_one_short_line(predictor):
    seg = predictor.segment(image(2), name="t.png")
    prediction = seg.predictions["dog"]
    texts = {"reference": repr(predictor.references[0]), "prediction": repr(prediction), "segmentation": repr(seg)}
    coverage = f"{100 * seg.mask('dog').mean():.1f}%"
    assert re.fullmatch(
        r"Reference\(label='dog', name='ref.png', prompt=box, size=48x64, coverage=\d+\.\d%, "
        r"score=\d\.\d{3}\)",
        texts["reference"],
    )
    assert texts["prediction"] == (
        f"Prediction(label='dog', size=48x64, coverage={100 * prediction.mask.mean():.1f}%, "
        f"score={prediction.score:.3f})"
    )
    assert texts["segmentation"] == (
        f"Segmentation(name='t.png', size=48x64, classes={{'dog': {coverage} score {prediction.score:.3f}}}, "
        f"objects={len(seg.objects)})"
    )
    assert all("\n" not in t and "array" not in t and len(t) < 160 for t in texts.values())


# -- the README's FolderWriter snippet runs as written ---------------------------------------------
def test_readme_folder_writer_snippet_runs(predictor, photos, monkeypatch):
    text = README.read_text(encoding="utf-8")
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "FolderWriter(" in block)
    monkeypatch.chdir(photos.parent)
    exec(compile(snippet, "README.md", "exec"), {"predictor": predictor})  # noqa: S102
    out = photos.parent / "out"
    assert sorted(p.name for p in (out / "yolo" / "images").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert (out / "annotations.json").is_file() and (out / "masks" / "p0_dog.png").is_file()
