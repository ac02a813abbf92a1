"""The one strict way checkpoints get into a model.

* SAM2 checkpoints (Meta's ``{'model': state_dict}``) load strictly into ``SansaModel.sam``;
  only the object-score tensors SANSA switches off may be left unused.
* SANSA adapter files (``{'model': {adapter tensors}, 'optimizer': ..., 'args': ...}``, keys
  possibly prefixed ``module.``) must fit the model exactly; their stages and channel factor are
  inferred from the tensor shapes.
* Files are unpickled with ``weights_only=True`` plus a short allow-list of what the authors'
  files legitimately contain, so no arbitrary code runs.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import pickle
import pickletools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sansa.errors import CheckpointError
from sansa.model.adapters import block_stages, bottleneck_width, is_adapter_key

if TYPE_CHECKING:
    from sansa.model._sam2 import Hiera
    from sansa.model.sansa import SansaModel

# Meta's checkpoints carry the object-score head; SANSA builds SAM2 without it.
UNUSED_SAM2_PREFIXES = ("sam_mask_decoder.obj_score_token.", "sam_mask_decoder.pred_obj_score_head.", "no_obj_ptr")
SAM2_1_ONLY_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
ADAPTER_PREFIX = "sam.image_encoder.trunk.blocks."
_SAFE_GLOBALS: list[Any] = [argparse.Namespace, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath]


def _numpy_safe_globals() -> list[Any]:
    import numpy as np

    found = [np.dtype, *{type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")}]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            found.append(__import__(module, fromlist=["scalar"]).scalar)
            break
        except (ImportError, AttributeError):
            continue
    return found


def read_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Unpickle a checkpoint safely.

    Args:
        path: the file.
        what: its role, for messages (``"SAM2 checkpoint"``, ``"adapter checkpoint"``).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS + _numpy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not for the user
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err), flags=re.IGNORECASE)
        name = found.group(1) if found else _unsafe_global(path)
        if name:
            raise CheckpointError(
                f"{what} {path}: holds a pickled {name}, which sansa does not load because unpickling it "
                "could run code; re-save the file with tensors only"
            ) from None
        raise CheckpointError(f"{what} {path}: not a PyTorch checkpoint (it could not be unpickled)") from None
    except Exception as err:  # torch raises many kinds for damaged files; the user needs one line
        if _looks_like_zip(path) or isinstance(err, EOFError):
            raise CheckpointError(f"{what} {path}: not a readable PyTorch checkpoint (truncated or corrupt)") from None
        raise CheckpointError(f"{what} {path}: not a PyTorch checkpoint (unrecognised content)") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} {path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


_HARMLESS_BUILTINS = ("set", "frozenset", "slice", "complex", "bytearray", "range")


def _unsafe_global(path: Path) -> str | None:
    """The first ``module.name`` a plain (not zipped) pickle would import that is not tensor or container data."""

    strings: list[str] = []
    try:
        with open(path, "rb") as handle:
            for op, arg, _ in pickletools.genops(handle):
                if op.name in ("GLOBAL", "INST"):
                    module, name = str(arg).split(" ", 1)
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    module, name = strings[-2], strings[-1]
                else:
                    if isinstance(arg, str):
                        strings.append(arg)
                    continue
                harmless = module.split(".")[0] in ("torch", "collections", "numpy", "_codecs") or (
                    module == "builtins" and name in _HARMLESS_BUILTINS
                )
                if not harmless:
                    return f"{module}.{name}"
    except Exception:  # not a pickle at all, or a damaged one: no name to give
        return None
    return None


def _looks_like_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (the format of every modern ``torch.save``)."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def state_dict_of(obj: Mapping[str, Any], path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: its ``'model'`` entry (or itself), ``module.`` prefixes removed."""
    tensors = obj.get("model", obj)
    bare_dict_of_others = "model" not in obj and not all(isinstance(v, torch.Tensor) for v in obj.values())
    if not isinstance(tensors, Mapping) or not tensors or bare_dict_of_others:
        raise CheckpointError(f"{what} {path}: has no 'model' state dict (found {_few(sorted(map(str, obj)))})")
    out = {}
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what} {path}: entry {key!r} of its state dict is not a tensor")
        out[key.removeprefix("module.")] = value
    return out


def load_sam2_checkpoint(model: SansaModel, path: str | os.PathLike[str]) -> None:
    """Load Meta's SAM2 (release 1.0) weights into ``model.sam``, strictly."""
    what = "SAM2 checkpoint"
    weights = state_dict_of(read_checkpoint(path, what), path, what)
    if all(is_adapter_key(k) for k in weights):
        raise CheckpointError(f"{what} {path}: holds SANSA adapter tensors only; pass it as the adapter checkpoint")
    if any(k in weights for k in SAM2_1_ONLY_KEYS):
        raise CheckpointError(
            f"{what} {path}: is a SAM2.1 checkpoint; SANSA uses SAM2 release 1.0 (sam2_hiera_*.pt, July 2024)"
        )
    target = model.sam.state_dict()
    expected = {k for k in target if not is_adapter_key(k)}
    unexpected = [k for k in weights if k not in expected and not k.startswith(UNUSED_SAM2_PREFIXES)]
    missing = sorted(expected - set(weights))
    if unexpected or missing:
        detail = f"unexpected {_few(unexpected)}" if unexpected else f"missing {_few(missing)}"
        raise CheckpointError(f"{what} {path}: does not fit this SAM2 model ({detail})")
    for key in expected:
        if weights[key].shape != target[key].shape:
            raise CheckpointError(
                f"{what} {path}: {key} is {list(weights[key].shape)} in the file but {list(target[key].shape)} "
                "in the model: a checkpoint of another SAM2 size?"
            )
    model.sam.load_state_dict({k: weights[k] for k in expected}, strict=False)


def _few(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass(frozen=True)
class AdapterLayout:
    """Where adapters sit and how wide they are (inferred from an adapter file)."""

    stages: tuple[int, ...]
    channel_factor: float


def read_adapter_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The adapter tensors of an authors' (or our) adapter file, keys as in ``SansaModel``."""
    what = "adapter checkpoint"
    weights = state_dict_of(read_checkpoint(path, what), path, what)
    weights = {(k if k.startswith("sam.") else f"sam.{k}"): v for k, v in weights.items()}
    others = [k for k in weights if not is_adapter_key(k)]
    if others and not any(is_adapter_key(k) for k in weights):
        raise CheckpointError(f"{what} {path}: is a SAM2 checkpoint, not a SANSA adapter file")
    if others:
        raise CheckpointError(f"{what} {path}: holds non-adapter tensors ({_few(others)})")
    for key in weights:
        if not key.startswith(ADAPTER_PREFIX):
            raise CheckpointError(f"{what} {path}: unexpected adapter key {key!r}")
    return weights


def _block_widths(weights: Mapping[str, torch.Tensor]) -> dict[int, tuple[int, int]]:
    """block index -> (width, bottleneck) from the adapter tensors."""
    out = {}
    for key, value in weights.items():
        if key.endswith("adapter.down_proj.weight"):
            block = int(key[len(ADAPTER_PREFIX) :].split(".", 1)[0])
            out[block] = (int(value.shape[1]), int(value.shape[0]))
    return out


def infer_adapter_layout(
    weights: Mapping[str, torch.Tensor],
    trunk: Hiera,
    stage_sizes: Sequence[int],
    path: str | os.PathLike[str],
    backbone: str,
) -> AdapterLayout:
    """Infer adapter stages and channel factor from tensor shapes, checking they fit ``trunk``."""
    what = f"adapter checkpoint {path}"
    blocks = _block_widths(weights)
    if not blocks:
        raise CheckpointError(f"{what}: has no adapter down-projections")
    depth = len(trunk.blocks)
    if max(blocks) >= depth:
        raise CheckpointError(
            f"{what}: has adapters up to block {max(blocks)} but {backbone} has {depth} blocks; "
            "it was trained for another backbone"
        )
    for index, (width, _) in sorted(blocks.items()):
        if width != trunk.blocks[index].dim_out:
            raise CheckpointError(
                f"{what}: block {index} is {width} wide in the file but {trunk.blocks[index].dim_out} in "
                f"{backbone}; it was trained for another backbone"
            )
    stage_of = block_stages(stage_sizes)
    stages = tuple(sorted({stage_of[i] for i in blocks}))
    whole = [i for i in range(depth) if stage_of[i] in stages]
    if sorted(blocks) != whole:
        raise CheckpointError(f"{what}: adapts blocks {sorted(blocks)}, which are not whole stages of {backbone}")
    pairs = [(trunk.blocks[i].dim, bottleneck) for i, (_, bottleneck) in blocks.items()]
    return AdapterLayout(stages, _channel_factor(pairs, what))


def _channel_factor(pairs: Sequence[tuple[int, int]], what: str) -> float:
    """The shortest decimal ``f`` with ``int(input_width * f) == bottleneck`` for every block."""
    low = max(b / w for w, b in pairs)
    high = min((b + 1) / w for w, b in pairs)
    for digits in range(1, 7):
        candidate = math.ceil(low * 10**digits - 1e-9) / 10**digits
        if candidate < high and all(bottleneck_width(w, candidate) == b for w, b in pairs):
            return candidate
    raise CheckpointError(f"{what}: adapter widths fit no single channel factor")


def load_adapter_weights(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: str | os.PathLike[str]
) -> None:
    """Load adapter tensors; every model adapter tensor must be given, and every given one used."""
    target = {k: v for k, v in model.state_dict().items() if is_adapter_key(k)}
    if set(target) != set(weights):
        missing, extra = sorted(set(target) - set(weights)), sorted(set(weights) - set(target))
        raise CheckpointError(
            f"adapter checkpoint {path}: does not fit the model (missing {_few(missing) or 'none'}; "
            f"unused {_few(extra) or 'none'})"
        )
    for key, value in weights.items():
        if value.shape != target[key].shape:
            raise CheckpointError(
                f"adapter checkpoint {path}: {key} is {list(value.shape)} in the file but "
                f"{list(target[key].shape)} in the model"
            )
    model.load_state_dict(dict(weights), strict=False)
