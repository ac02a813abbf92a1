"""The training configuration: a frozen dataclass, read from YAML, overridden from the command line.

The resolved configuration is written beside every checkpoint (``config.yaml``) and inside it
(``checkpoint['sansa']['config']``), so a run can always be repeated or resumed exactly.

Defaults are the protocol's (project notes, section 6): AdamW at ``1e-4``, no weight decay,
per-iteration cosine to 0, 5 epochs, global batch 32, gradient-norm clip 0.1, FP32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import os
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from sansa.atomic import write_text
from sansa.errors import SansaError
from sansa.vocab import PromptType


@dataclass(frozen=True)
class DataSpec:
    """One training dataset of a mix.

    Attributes:
        benchmark: a name :func:`sansa.data.build_dataset` knows (``coco20i``, ``lvis92i``,
            ``fss1000``, ``ade20k``, ``paco_part``, ...) or ``folder`` (any folder of images with masks).
        root: where its files are.
        fold: the held-out fold (training uses the other folds' classes); ``None`` = every class.
        weight: relative sampling weight in the mix (normalised over the datasets).
    """

    benchmark: str
    root: str
    fold: int | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class ValSpec:
    """The validation pass run after every epoch (through ``sansa eval``'s code).

    Attributes:
        benchmark, root, fold: the test split to evaluate on (as ``sansa eval``).
        episodes: episodes per pass (``None``: the benchmark's number).
        shots: references per episode.
        prompt: how the references are prompted (``mask``, ``point``, ``box``, ``scribble``).
        seed: the episode list's seed (the same list every epoch).
    """

    benchmark: str
    root: str
    fold: int = 0
    episodes: int | None = 200
    shots: int = 1
    prompt: PromptType = PromptType.MASK
    seed: int = 0

    def __post_init__(self) -> None:
        kinds = ", ".join(PromptType.kinds())
        _check(PromptType(self.prompt) in PromptType.kinds(), "val.prompt", f"expected one of {kinds}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        data: the datasets mixed for training.
        val: the validation pass after each epoch (``None``: none).
        out: the run's folder (checkpoints, ``config.yaml``, TensorBoard logs); a run resumes
            from ``out/last.pth`` when it exists.
        backbone: SAM2 backbone name (``hiera_large``, ...; ``test_tiny`` for tests) or a sam2 YAML.
        sam2_checkpoint: Meta's SAM2 release-1.0 weights; ``None`` = random weights (tests only).
        adapter_stages: 0-based Hiera stages that get adapters.
        channel_factor: adapter bottleneck as a fraction of the block's input width.
        prompt: how references are prompted: always one kind (``mask``, ...), or ``mixed`` (each
            reference one of the four kinds, drawn uniformly: the promptable model; ``multi``
            in configs written before 2 Dec 2026).
        shots: prompted references per episode.
        targets: ``J >= 1`` targets per episode; each target's prediction is written to memory as a
            pseudo-reference for the next (``J = 1`` is the released code's default).
        resolution: ``S``: images squashed to ``S x S`` before the model, and the loss is taken at
            ``S x S`` (``None``: the datasets' own evaluation size, which must then agree).
        epochs: passes of ``episodes_per_epoch`` episodes.
        episodes_per_epoch: ``None`` = one per (image, class) pair of the training datasets.
        batch_size: global batch (episodes per optimiser step, over all processes).
        lr, weight_decay: AdamW; the learning rate follows a cosine to 0 per iteration.
        grad_clip: max global gradient norm (``0`` disables clipping).
        bf16: bfloat16 autocast (FP32 otherwise); ``tf32``: allow TF32 matmuls on CUDA.
        focal_alpha, focal_gamma, focal_weight, dice_weight: the loss.
        seed: the only source of randomness (episodes, prompts, dropout).
        num_workers: data-loader processes per rank (never changes what is sampled).
        device: ``auto``, ``cpu``, ``cuda`` (under torchrun: each rank's own GPU).
        log_every: steps between log lines / TensorBoard points.
        save_every: steps between resumable checkpoints (``0``: only at epoch ends).
    """

    data: tuple[DataSpec, ...] = ()
    val: ValSpec | None = None
    out: str = "runs/train"
    backbone: str = "hiera_large"
    sam2_checkpoint: str | None = None
    adapter_stages: tuple[int, ...] = (2, 3)
    channel_factor: float = 0.3
    prompt: PromptType = PromptType.MASK
    shots: int = 1
    targets: int = 1
    resolution: int | None = None
    epochs: int = 5
    episodes_per_epoch: int | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 0.1
    bf16: bool = False
    tf32: bool = True
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_weight: float = 1.0
    dice_weight: float = 1.0
    seed: int = 0
    num_workers: int = 4
    device: str = "auto"
    log_every: int = 20
    save_every: int = 500

    def __post_init__(self) -> None:
        _check(self.shots >= 1, "shots", "must be at least 1")
        _check(self.targets >= 1, "targets", "must be at least 1 (J = 1 is the released code's default)")
        _check(self.epochs >= 1, "epochs", "must be at least 1")
        _check(self.batch_size >= 1, "batch_size", "must be at least 1")
        _check(self.lr > 0, "lr", "must be positive")
        _check(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)")
        _check(self.resolution is None or self.resolution >= 8, "resolution", "must be at least 8 pixels")
        _check(
            self.episodes_per_epoch is None or self.episodes_per_epoch >= 1, "episodes_per_epoch", "must be at least 1"
        )
        _check(all(d.weight > 0 for d in self.data), "data", "every weight must be positive")
        _check(
            self.num_workers >= 0 and self.log_every >= 1 and self.save_every >= 0,
            "num_workers/log_every/save_every",
            "must be >= 0 (log_every >= 1)",
        )

    # Fields that change how a run is executed but not what it computes: a resumed run may differ in them.
    RUNTIME_FIELDS = ("out", "num_workers", "device", "log_every", "save_every", "val")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON types only (enums as their values, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    def training_fields(self) -> dict[str, Any]:
        """:meth:`to_dict` without the runtime fields (what must match to resume)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RUNTIME_FIELDS}


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SansaError(f"{name}: {message}")


def in_current_words(values: dict[str, Any]) -> dict[str, Any]:
    """:class:`TrainConfig` fields as an earlier run saved them (a checkpoint's ``config``), each
    read through its type and written back as this version writes it, so that a value saved under
    an earlier name (``prompt: multi``) equals today's (``mixed``). Values that no longer read
    (and unknown fields) stay as they were."""
    hints = typing.get_type_hints(TrainConfig)
    current = dict(values)
    for key, value in values.items():
        if key in hints:
            with contextlib.suppress(SansaError):
                current[key] = _plain(_convert(value, hints[key], key))
    return current


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(value: Any, hint: Any, name: str) -> Any:
    """Coerce a YAML value to the annotated type ``hint``; one-line error naming ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _convert(value, hint, name)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_from(hint, value, name)
    try:
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return hint(value)
    except (TypeError, ValueError):
        expected = getattr(hint, "__name__", str(hint))
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            expected = "one of " + ", ".join(m.value for m in hint)
        raise SansaError(f"{name}: expected {expected}, got {value!r}") from None


def _dataclass_from(cls: type, values: Any, name: str) -> Any:
    """``cls`` from a mapping; ``name``: where the mapping is (``""``: the top level), in errors."""
    where = f"{name}: " if name else ""
    if not isinstance(values, dict):
        raise SansaError(f"{where}expected a mapping of options, got {str(values)[:80]!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted((str(k) for k in set(values) - set(known)), key=str)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        option = f"{name}.{unknown[0]}" if name else unknown[0]
        raise SansaError(f"unknown option {option!r} ({hint}known: {', '.join(sorted(known))})")
    kwargs = {k: _convert(v, hints[k], f"{name}.{k}" if name else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        missing = str(err).partition("missing ")[2] or str(err)
        raise SansaError(f"{where}missing {missing}") from None


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from plain values (as in YAML)."""
    return _dataclass_from(TrainConfig, values, "")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> ``(["a", "b"], value)``; the value is read as YAML (``1e-4``, ``[2, 3]``, ``null``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SansaError(f"overrides {text!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise SansaError(f"overrides {text!r}: the value is not valid YAML") from None
    return key.strip().split("."), value


def _apply(values: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = values
    for i, part in enumerate(path[:-1]):
        child = (
            node[int(part)]
            if isinstance(node, list) and part.isdigit()
            else node.get(part)
            if isinstance(node, dict)
            else None
        )
        if child is None:
            child = {}
            if isinstance(node, dict):
                node[part] = child
            else:
                raise SansaError(f"overrides {'.'.join(path)}: {'.'.join(path[: i + 1])} does not exist")
        node = child
    last = path[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SansaError(f"overrides {'.'.join(path)}: cannot set inside {type(node).__name__}")


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = (), **values: Any
) -> TrainConfig:
    """Defaults, then a YAML file, then ``KEY=VALUE`` overrides, then keyword values.

    Args:
        path: a YAML file of :class:`TrainConfig` fields (``None``: defaults only).
        overrides: dotted ``KEY=VALUE`` strings (``lr=2e-4``, ``data.0.root=/data/coco``, ``val.episodes=100``).
        values: fields given directly (e.g. from command-line flags).

    Raises:
        SansaError: a missing/unreadable file, an unknown option or a value of the wrong type.
    """
    merged: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise SansaError(f"{path}: no such config file") from None
        except (OSError, yaml.YAMLError) as err:
            raise SansaError(f"{path}: not a readable YAML config ({type(err).__name__})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SansaError(f"{path}: expected a mapping of options at the top level")
        merged = loaded or {}
    for text in overrides:
        key, value = parse_override(text)
        _apply(merged, key, value)
    merged.update(values)
    try:
        return config_from_dict(merged)
    except SansaError as err:
        raise SansaError(f"{path}: {err}" if path is not None else str(err)) from None


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved configuration as YAML, atomically."""
    path = Path(path)
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


__all__ = ["DataSpec", "TrainConfig", "ValSpec", "load_config", "save_config"]
