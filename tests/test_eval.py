"""The evaluation loop and ``sansa eval``: oracle, all-background, determinism, resume, tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_path
from minidata import H, build_coco, build_folder, build_pascal

from sansa.cli import main
from sansa.data import build_dataset, sample_episodes
from sansa.data.common import squash
from sansa.evaluation import PredictorSegmenter, evaluate

TINY = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


def eval_argv(benchmark: str, data: Path, out: Path, *options: str, episodes: int = 1, size: int = 32) -> list[str]:
    """``sansa eval``'s arguments: ``episodes`` episodes of ``benchmark`` at ``size`` px into ``out``."""
    where = ["--benchmark", benchmark, "--data", str(data), "--out", str(out)]
    return ["eval", *where, "--episodes", str(episodes), "--size", str(size), *options]


class Oracle:
    """Answers each query with its ground truth at S x S (looked up by the query's pixels)."""

    def __init__(self, dataset, size=H):
        self.truth = {}
        for c in dataset.class_ids():
            for key in dataset.images_of(c):
                image, mask = squash(*dataset.load(key, c), size)
                self.truth[image.tobytes()] = mask

    def segment(self, references, query, reuse_key=None):
        return self.truth[query.tobytes()]


class Background:
    def segment(self, references, query, reuse_key=None):
        return np.zeros(query.shape[:2], dtype=bool)


class PromptPainter:
    """Paints the first reference's prompt (points / box) into the query: depends on the prompts."""

    def segment(self, references, query, reuse_key=None):
        out = np.zeros(query.shape[:2], dtype=bool)
        prompt = references[0][1]
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box.astype(int)
            out[y0:y1, x0:x1] = True
        for xy in (prompt.points, prompt.scribble):
            for x, y in (xy if xy is not None else np.empty((0, 2))).astype(int):
                out[y, x] = True
        return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_folder(tmp_path_factory.mktemp("folder"))


def run(dataset, segmenter, **kwargs):
    episodes = sample_episodes(dataset, shots=kwargs.pop("shots", 1), seed=0)
    return evaluate(dataset, episodes, segmenter, image_size=kwargs.pop("image_size", H), progress=False, **kwargs)


def test_oracle_scores_100(folder):
    dataset = build_dataset("folder", folder)
    result = run(dataset, Oracle(dataset))
    assert result.miou == 1.0 and result.fb_iou == 1.0
    assert result.to_json()["miou"] == 100.0


def test_all_background(folder):
    result = run(build_dataset("folder", folder), Background())
    assert all(v == 0.0 for v in result.class_iou.values())
    assert result.miou == 0.0
    # FB-IoU averages background and foreground: with the foreground at 0 it is half the background IoU
    assert result.fb_iou == pytest.approx(result.metric.background_iou() / 2)
    assert 0 < result.metric.background_iou() < 1


@pytest.mark.parametrize("prompt", ["point", "box", "scribble"])
def test_results_do_not_depend_on_workers(folder, prompt):
    dataset = build_dataset("folder", folder)
    scores = [run(dataset, PromptPainter(), prompt=prompt, workers=w).scores for w in (0, 1, 3)]
    assert scores[0] == scores[1] == scores[2]


def test_resume_counts_previous_scores(folder):
    dataset = build_dataset("folder", folder)
    full = run(dataset, Oracle(dataset))
    seen = []
    resumed = run(dataset, Background(), previous=full.scores[:4], on_score=seen.append)
    assert [s.index for s in seen] == [4, 5]
    assert resumed.evaluated == 2 and len(resumed.scores) == 6
    assert resumed.scores[:4] == full.scores[:4]


class CountingPredictor:
    """Stands in for SansaPredictor: counts how often references are written."""

    def __init__(self):
        self.added = 0

    def reset(self):
        pass

    def add_reference(self, image, **prompt):
        self.added += 1

    def predict(self, target):
        return type("P", (), {"mask": np.zeros(target.shape[:2], dtype=bool)})()


@pytest.mark.parametrize(("prompt", "added"), [("mask", 2), ("box", 2), ("point", 6), ("scribble", 6)])
def test_reference_memory_reused_only_for_identical_references(folder, prompt, added):
    dataset = build_dataset("folder", folder)
    episodes = sample_episodes(dataset, shots=2, count=3, seed=0)
    episodes = [episodes[0]] * 3  # the same supports three times in a row
    predictor = CountingPredictor()
    evaluate(dataset, episodes, PredictorSegmenter(predictor), prompt=prompt, image_size=H, progress=False)
    assert predictor.added == added


def test_tiny_model_through_sansa_eval_and_resume(tmp_path, capsys):
    data = build_coco(tmp_path / "data")
    out = tmp_path / "out"
    args = eval_argv("coco20i", data, out, "--fold", "0", "--shots", "1", *TINY, episodes=2, size=64)
    assert main(args) == 0
    doc = json.loads((out / "fold0" / "results.json").read_text())
    assert doc["episodes"] == 2 and doc["config"]["image_size"] == 64
    assert {c["name"] for c in doc["classes"]} == {"person", "airplane"}
    assert 0 <= doc["miou"] <= 100 and doc["timing"]["episodes_evaluated"] == 2
    assert "| mIoU | FB-IoU |" in (out / "fold0" / "results.md").read_text()
    assert len((out / "fold0" / "scores.jsonl").read_text().splitlines()) == 2
    assert main(args) == 0  # resumed: nothing left to do
    again = json.loads((out / "fold0" / "results.json").read_text())
    assert again["timing"]["episodes_evaluated"] == 0 and again["miou"] == doc["miou"]
    assert main([*args, "--prompt", "box"]) == 2  # a different run in the same folder
    assert "holds a different run" in capsys.readouterr().err


@pytest.mark.slow
def test_all_folds_are_averaged(tmp_path):
    data = build_pascal(tmp_path / "data")
    out = tmp_path / "out"
    assert main(eval_argv("pascal5i", data, out, "--folds", "all", "--prompt", "point", *TINY)) == 0
    summary = json.loads((out / "summary.json").read_text())
    folds = [json.loads((out / f"fold{f}" / "results.json").read_text()) for f in range(4)]
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2, 3]
    assert summary["miou"] == pytest.approx(sum(f["miou"] for f in folds) / 4, abs=1e-3)
    assert "**mean**" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--benchmark", "coco20i", "--fold", "x"], "--fold: expected a number or 'all'"),
        (["--benchmark", "fss1000", "--fold", "1"], "--fold: this benchmark has folds 0..0"),
        (["--benchmark", "nope"], "benchmark: unknown"),
    ],
)
def test_cli_errors(tmp_path, capsys, argv, message):
    assert main(["eval", "--data", str(tmp_path), *argv, "--backbone", "test_tiny", "--random-weights"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_golden_fixture_model_one_episode(tmp_path, folder):
    out = tmp_path / "out"
    golden = [
        *("--sam2-checkpoint", str(golden_path("sam2_checkpoint.pt"))),
        *("--adapter", str(golden_path("sansa_adapter.pth"))),
        *("--backbone", str(golden_path("sam2_config.yaml"))),
        *("--device", "cpu"),
    ]
    assert main(eval_argv("folder", folder, out, *golden)) == 0
    doc = json.loads((out / "fold0" / "results.json").read_text())
    assert doc["episodes"] == 1 and doc["config"]["model"]["adapter"].endswith("sansa_adapter.pth")


def test_scribble_style_and_protocol_are_part_of_the_run(tmp_path, capsys, folder):
    out = tmp_path / "out"
    args = eval_argv("folder", folder, out, "--prompt", "scribble", *TINY)
    assert main([*args, "--scribble", "light"]) == 0
    config = json.loads((out / "fold0" / "config.json").read_text())
    assert config["scribble"] == "light" and config["protocol"] == "authors/1"
    assert main(args) == 2  # the default (authors) scribble is another run
    assert "holds a different run" in capsys.readouterr().err
    config.pop("protocol")  # a folder written before the authors' protocol: not resumed
    (out / "fold0" / "config.json").write_text(json.dumps(config))
    assert main([*args, "--scribble", "light"]) == 2
