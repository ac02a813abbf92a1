"""`sansa train`: config, loss, episodes from the seed, only adapters change, exact resume, checkpoints."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sansa.errors import SansaError
from sansa.train import TrainConfig, load_config, train
from sansa.train.checkpoint import FrozenGuard, frozen_digest, metadata, save_checkpoint
from sansa.train.config import in_current_words
from sansa.train.distributed import DistContext
from sansa.train.episodes import EpisodeSource, StepSchedule, collate, episode_loader
from sansa.train.losses import MaskLoss
from sansa.vocab import PromptType
from tests.conftest import REPO, golden_path


class Shapes:
    """Coloured shapes on noise, class = shape (0 square, 1 disc, 2 cross); ``n`` images per class."""

    name = "shapes"
    image_size = 64

    def __init__(self, n: int = 6, classes: tuple[int, ...] = (0, 1, 2)) -> None:
        self.n, self.classes = n, classes

    def class_ids(self) -> list[int]:
        return list(self.classes)

    def class_name(self, class_id: int) -> str:
        return ("square", "disc", "cross")[class_id]

    def images_of(self, class_id: int) -> list[str]:
        return [f"{class_id}/{i}" for i in range(self.n)]

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        shape, index = map(int, key.split("/"))
        rng = np.random.default_rng([shape, index])
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:64, :64]
        cx, cy = rng.integers(16, 48, 2)
        r = int(rng.integers(7, 14))
        dx, dy = np.abs(xx - cx), np.abs(yy - cy)
        mask = [
            (dx <= r) & (dy <= r),
            dx**2 + dy**2 <= r * r,
            ((dx <= r) & (dy <= r // 3)) | ((dy <= r) & (dx <= r // 3)),
        ][shape]
        image[mask] = rng.integers(0, 256, 3, dtype=np.uint8)
        return image, mask if class_id == shape else np.zeros_like(mask)


def tiny_config(out: Path, **values) -> TrainConfig:
    base = dict(
        backbone="test_tiny",
        resolution=64,
        batch_size=1,
        episodes_per_epoch=2,
        epochs=1,
        lr=1e-3,
        num_workers=0,
        log_every=1,
        out=str(out),
    )
    return load_config(None, **{**base, **values})


def adapters_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


# -- config ------------------------------------------------------------------------------
def test_config_from_yaml_then_overrides_then_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  - {benchmark: coco20i, root: /d, fold: 1, weight: 0.45}\nlr: 2.0e-4\nprompt: multi\n")
    config = load_config(
        path,
        ["data.0.root=/data", "adapter_stages=[3]", "val={benchmark: fss1000, root: /f}", "val.episodes=10"],
        epochs=2,
    )
    assert (config.data[0].root, config.data[0].fold, config.data[0].weight) == ("/data", 1, 0.45)
    assert (config.lr, config.prompt, config.adapter_stages, config.epochs) == (2e-4, PromptType.MIXED, (3,), 2)
    assert (config.val.benchmark, config.val.episodes) == ("fss1000", 10)
    assert load_config(None, **config.to_dict()) == config  # the saved form reads back identically
    assert config.to_dict()["prompt"] == "mixed"  # "multi", the earlier name, is written as today's


def test_a_checkpoint_saved_under_earlier_names_compares_in_todays_words():
    """Resuming compares a checkpoint's saved fields with the config's: ``prompt: multi`` (saved
    before PromptMode and PromptType were one enum) is the same setting as ``mixed``."""
    fields = load_config(None, prompt="mixed", adapter_stages=[3]).training_fields()
    assert in_current_words({**fields, "prompt": "multi"}) == fields
    assert in_current_words({**fields, "prompt": "mask"})["prompt"] == "mask"
    assert in_current_words({"prompt": "lasso", "gone": 1}) == {"prompt": "lasso", "gone": 1}  # left as saved


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["lr=abc"], "lr: expected float"),
        (["grad_clip=-1"], "grad_clip"),
        (["targets=0"], "targets: must be at least 1"),
        (["prompt=lasso"], "prompt: expected one of mask, point, box, scribble, mixed"),
        (["val={benchmark: fss1000, root: /f, prompt: mixed}"], "val.prompt: expected one of mask, point, box"),
        (["bogus=1"], "unknown option 'bogus'"),
        (["data=[{root: /d}]"], "data[0]"),
        (["lr"], "expected KEY=VALUE"),
    ],
)
def test_config_errors_are_one_line(overrides, message):
    with pytest.raises(SansaError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    config = load_config(path)
    assert config.data and config.epochs >= 1


# -- loss --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "logit, target, low, high",
    [
        (20.0, 1, 0.0, 1e-6),  # confident and right
        (-20.0, 0, 0.0, 1e-6),  # empty target, empty prediction
        (-20.0, 1, 5.9, 6.1),  # confident and wrong: 0.25 * 20 (focal) + 1 (Dice)
        (0.0, 1, 0.3, 0.5),  # undecided
    ],
)
def test_mask_loss(logit, target, low, high):
    logits = torch.full((2, 4, 4), logit)
    value = float(MaskLoss()(logits, torch.full((2, 8, 8), target, dtype=torch.bool)))
    assert low <= value <= high


# -- episodes ----------------------------------------------------------------------------
def _source(prompt="mask", seed=0, shots=1, targets=1) -> EpisodeSource:
    return EpisodeSource(
        [Shapes(), Shapes(n=3, classes=(1,))],
        [0.7, 0.3],
        shots,
        targets,
        PromptType(prompt),
        resolution=64,
        image_size=256,
        seed=seed,
    )


def test_episodes_depend_on_the_seed_only():
    a, b, other = _source(), _source(), _source(seed=1)
    draws = [a.draw(0, i)[0] for i in range(20)]
    assert draws == [b.draw(0, i)[0] for i in range(20)]
    assert draws != [other.draw(0, i)[0] for i in range(20)]
    assert draws != [a.draw(1, i)[0] for i in range(20)]  # a new epoch, new episodes
    assert {d.dataset for d in draws} == {0, 1}
    assert all(len(set(d.keys)) == 2 for d in draws)  # reference and target are distinct images


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_split_the_same_global_batches(world):
    single = list(StepSchedule(16, 4).batches(epoch=3, start_step=1))
    ranks = [list(StepSchedule(16, 4, rank, world).batches(epoch=3, start_step=1)) for rank in range(world)]
    assert [sum((r[s] for r in ranks), []) for s in range(len(single))] == single


def test_schedule_rejects_uneven_batches():
    with pytest.raises(SansaError, match="batch_size: 6 does not split evenly over 4"):
        StepSchedule(16, 6, 0, 4)


def test_loader_workers_do_not_change_the_episodes():
    source, schedule = _source(prompt="multi"), StepSchedule(4, 2)
    serial = list(episode_loader(source, schedule, 0, 0, num_workers=0))
    parallel = list(episode_loader(source, schedule, 0, 0, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and a.seeds == b.seeds
        assert _flat(a.prompts).keys() == _flat(b.prompts).keys()
        assert all(torch.equal(v, _flat(b.prompts)[k]) for k, v in _flat(a.prompts).items())


def _flat(prompts: list[list[dict]]) -> dict[str, torch.Tensor]:
    out = {}
    for b, episode in enumerate(prompts):
        for k, prompt in enumerate(episode):
            for key, value in prompt.items():
                items = value.items() if isinstance(value, dict) else [("", value)]
                out.update({f"{b}.{k}.{key}.{name}": tensor for name, tensor in items})
    return out


def test_multi_prompts_supervise_decoded_references_and_are_not_mutated():
    source = _source(prompt="multi", shots=2, targets=2)
    samples = [source[(0, i)] for i in range(12)]
    kinds = {next(iter(p)) for s in samples for p in s.prompts}
    assert kinds == {"mask", "point_inputs"}
    for s in samples:
        assert s.images.shape == (4, 3, 256, 256) and s.masks.shape == (4, 64, 64)
        assert s.supervised[2:].all()  # targets always
        assert s.supervised[:2].tolist() == ["point_inputs" in p for p in s.prompts]
    batch = collate(samples[:2])
    before = copy.deepcopy(batch.prompts)
    batch.to(torch.device("cpu"))
    assert all(
        a.keys() == b.keys() for pa, pb in zip(before, batch.prompts, strict=True) for a, b in zip(pa, pb, strict=True)
    )


# -- training ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-step run (J = 2 targets, clipping off) from a SAM2 checkpoint file."""
    from sansa.model.build import build_sansa

    root = tmp_path_factory.mktemp("train")
    torch.manual_seed(7)
    sam2 = root / "sam2_tiny.pt"
    plain = {k: v for k, v in build_sansa("test_tiny").sam.state_dict().items() if ".adapter." not in k}
    torch.save({"model": plain}, sam2)
    config = tiny_config(root / "run", sam2_checkpoint=str(sam2), targets=2, grad_clip=0.0, episodes_per_epoch=2)
    return config, train(config, datasets=[Shapes()]), sam2


def test_only_adapters_change(trained):
    from sansa.predictor import SansaPredictor

    config, result, sam2 = trained
    assert result.step == 2 and len(result.losses) == 2 and all(np.isfinite(result.losses))
    fresh, trained_model = (
        SansaPredictor.from_checkpoint(sam2, adapter, model="test_tiny", device="cpu").model
        for adapter in (None, result.checkpoint)
    )
    assert frozen_digest(fresh) == frozen_digest(trained_model)
    saved = adapters_of(result.checkpoint)
    assert saved and all(".adapter." in k for k in saved)
    changed = [k for k, v in saved.items() if "up_proj" in k and v.abs().sum() > 0]
    assert changed, "no adapter moved (a clip of 0 must disable clipping, not zero the gradients)"


def test_save_refuses_when_frozen_weights_changed(tiny_model, tmp_path):
    from sansa.model.adapters import freeze_all_but_adapters

    model = copy.deepcopy(tiny_model)
    freeze_all_but_adapters(model)
    guard = FrozenGuard(model)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if ".adapter." in n).add_(1.0)
    guard.check()  # adapters may change
    model.sam.no_mem_embed.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen parameter sam.no_mem_embed is trainable"):
        guard.check()
    model.sam.no_mem_embed.requires_grad_(False)
    with torch.no_grad():
        model.sam.no_mem_embed.add_(1e-3)
    with pytest.raises(RuntimeError, match="frozen SAM2 weights changed"):
        guard.check()


def test_checkpoint_loads_through_the_predictor(trained):
    from sansa import SansaPredictor

    config, result, sam2 = trained
    predictor = SansaPredictor.from_checkpoint(sam2, result.checkpoint, model="test_tiny", device="cpu")
    for key, value in adapters_of(result.checkpoint).items():
        assert torch.equal(predictor.model.state_dict()[key], value)
    meta = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["sansa"]
    assert (meta["backbone"], meta["adapter_stages"], meta["channel_factor"], meta["step"]) == (
        "test_tiny",
        [2, 3],
        0.3,
        2,
    )
    assert load_config(None, **meta["config"]) == config
    assert (Path(config.out) / "epoch_1.pth").is_file() and (Path(config.out) / "config.yaml").is_file()
    predictor.add_reference(np.zeros((40, 50, 3), np.uint8), box=[5, 5, 30, 30])
    assert predictor.predict(np.zeros((30, 20, 3), np.uint8)).mask.shape == (30, 20)


def test_checkpoint_layout_is_the_authors(tmp_path):
    from sansa.model.build import build_sansa
    from sansa.model.checkpoint import infer_adapter_layout, read_adapter_checkpoint
    from sansa.model.variants import get_variant

    expected = json.loads(golden_path("adapter_keys.json").read_text())["sam2_hiera_t/factor_0.3"]
    model = build_sansa("hiera_tiny")
    path = save_checkpoint(tmp_path / "a.pth", model, metadata(model, {"backbone": "hiera_tiny"}, 0, 0, ""))
    weights = read_adapter_checkpoint(path)
    assert {k: list(v.shape) for k, v in adapters_of(path).items()} == expected
    layout = infer_adapter_layout(weights, model.sam.image_encoder.trunk, get_variant("hiera_tiny").stages, path, "t")
    assert (layout.stages, layout.channel_factor) == ((2, 3), 0.3)


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    whole = train(tiny_config(tmp_path / "whole", episodes_per_epoch=3), datasets=[Shapes()])
    config = tiny_config(tmp_path / "cut", episodes_per_epoch=3)
    first = train(config, datasets=[Shapes()], until_step=1)  # interrupted after one step
    assert first.step == 1
    rest = train(config, datasets=[Shapes()])
    assert rest.step == 3 and rest.losses == whole.losses[1:]
    a, b = adapters_of(whole.checkpoint), adapters_of(rest.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SansaError, match="was trained with lr=0.001, not 0.002"):
        train(tiny_config(tmp_path / "cut", episodes_per_epoch=3, lr=2e-3), datasets=[Shapes()])


@pytest.mark.slow
def test_loss_falls_on_synthetic_shapes(tmp_path):
    from sansa.train.loop import Trainer

    config = tiny_config(tmp_path / "run", episodes_per_epoch=10, lr=1e-2, grad_clip=0.0)
    probe = Trainer(config, DistContext(), [Shapes(classes=(1,))])
    held_out = collate([probe.source[(99, i)] for i in range(4)])  # episodes training never sees
    probe.model.eval()  # no dropout: a deterministic measurement

    def loss() -> float:
        with torch.no_grad():
            return float(probe.objective(held_out).loss)

    before = loss()
    result = train(config, datasets=[Shapes(classes=(1,))])
    probe.model.load_state_dict(adapters_of(result.checkpoint), strict=False)
    assert loss() < before - 0.01


def test_cli_errors_are_one_line(capsys):
    from sansa.cli import main

    assert main(["train", "--set", "lr=abc"]) == 2
    assert capsys.readouterr().err.strip() == "sansa train: error: --lr: expected float, got 'abc'"


# (config file text, the one line `sansa train cfg.yaml` prints after "cfg.yaml: ")
CONFIG_FILE_ERRORS = [
    ("workers: 2\n", "unknown option 'workers' (did you mean 'num_workers'? known: adapter_stages,"),
    ("lr: 1e-4\nbatchsize: 8\n", "unknown option 'batchsize' (did you mean 'batch_size'?"),
    ("zzz: 1\n", "unknown option 'zzz' (known: adapter_stages,"),
    ("val: {benchmark: fss1000, episods: 3}\n", "unknown option 'val.episods' (did you mean 'episodes'?"),
    ("data: [{root: /d}]\n", "data[0]: missing 1 required positional argument: 'benchmark'"),
    ("data: [{root: /d, benchmark: coco20i, wieght: 2}]\n", "unknown option 'data[0].wieght' (did you mean 'weight'?"),
    ("val: 3\n", "val: expected a mapping of options, got '3'"),
    ("lr: fast\n", "lr: expected float, got 'fast'"),
    ("- lr: 1\n", "expected a mapping of options at the top level"),
    ("lr: [1\n", "not a readable YAML config (ParserError)"),
]


@pytest.mark.parametrize("text, message", CONFIG_FILE_ERRORS, ids=[c[1][:40] for c in CONFIG_FILE_ERRORS])
def test_config_file_errors_read_well(tmp_path, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(SansaError) as err:
        load_config(path)
    line = str(err.value)
    assert line.startswith(f"{path}: {message}") and "\n" not in line, line
    assert ": :" not in line and ": ." not in line


@pytest.mark.slow
def test_config_file_errors_read_well_through_the_cli(tmp_path):
    from hostile import one_line_error, sansa

    for text, message in CONFIG_FILE_ERRORS[:1] + CONFIG_FILE_ERRORS[3:4]:
        (tmp_path / "cfg.yaml").write_text(text)
        line = one_line_error(sansa("train", "cfg.yaml", cwd=tmp_path, timeout=120), "train")
        assert line.startswith(f"sansa train: error: cfg.yaml: {message}"), line
