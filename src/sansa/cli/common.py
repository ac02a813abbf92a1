"""Options shared by commands that load a model, and turning them into a predictor."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sansa.cli import choices, given
from sansa.vocab import Device, Precision

if TYPE_CHECKING:
    from sansa.predictor import SansaPredictor
    from sansa.records import ObjectOptions

MODEL_HELP = """model (pick one way):
  --model NAME                 a released model, downloaded and cached (see `sansa models`)
  --sam2-checkpoint FILE       Meta's SAM2 release-1.0 checkpoint, with
      [--adapter FILE]         an adapter file (authors' or `sansa train`), and
      [--backbone NAME|YAML]   the backbone it fits (default hiera_large)
  --backbone test_tiny --random-weights   a tiny random model, for trying things out"""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--sam2-checkpoint``, ``--adapter``, ``--backbone``, ``--random-weights``, ``--device``,
    ``--precision``."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="NAME", help="released model name (default: sansa-universal)")
    group.add_argument("--sam2-checkpoint", metavar="FILE", help="Meta's SAM2 release-1.0 checkpoint (.pt)")
    group.add_argument("--adapter", metavar="FILE", help="SANSA adapter checkpoint (.pth)")
    group.add_argument(
        "--backbone",
        metavar="NAME|YAML",
        help="hiera_tiny, hiera_small, hiera_base_plus, hiera_large, test_tiny, or a sam2 config",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        default=None,
        help="random weights (no checkpoint): only to try the tools out",
    )
    group.add_argument("--device", **choices(Device), help="where to run (default: auto)")
    group.add_argument(
        "--precision",
        **choices(Precision),
        help="arithmetic: fp32 (default, exact), bf16/fp16 autocast where the device has it natively, "
        "or auto: bf16 on a CUDA GPU with bf16 or an AMX CPU, fp32 elsewhere (run.json records what ran)",
    )


def load_predictor(args: argparse.Namespace) -> SansaPredictor:
    """A :class:`~sansa.predictor.SansaPredictor` from the model options the user set."""
    from sansa.labeling.job import ModelSpec

    return ModelSpec(
        **given(args, "model", "sam2_checkpoint", "adapter", "backbone", "random_weights", "device", "precision")
    ).load()


OBJECT_FLAGS = {  # flag -> ObjectOptions field
    "min_area": "min_area",
    "max_objects": "max_objects",
    "object_points": "points_per_class",
    "object_overlap": "overlap",
}


def add_object_options(parser: argparse.ArgumentParser) -> None:
    """``--min-area``, ``--max-objects``, ``--object-points``, ``--object-overlap``: how each class
    is split into objects (defaults: :class:`~sansa.records.ObjectOptions`'s, quoted in the help)."""
    from sansa.records import MIN_AREA_FLOOR, MIN_AREA_FRACTION, ObjectOptions

    defaults = ObjectOptions()
    group = parser.add_argument_group("objects (each class's mask split into objects)")
    group.add_argument(
        "--min-area",
        type=int,
        metavar="PX",
        help=f"smallest object in pixels; smaller pieces join the object they touch or are dropped "
        f"(default: {MIN_AREA_FRACTION * 100:.2f}%% of the image, at least {MIN_AREA_FLOOR})",
    )
    group.add_argument(
        "--max-objects", type=int, metavar="N", help=f"most objects per class (default: {defaults.max_objects})"
    )
    group.add_argument(
        "--object-points",
        type=int,
        metavar="N",
        help="decoder prompts per class (more finds more touching objects, costs more); 0: objects are "
        f"the connected regions (default: {defaults.points_per_class})",
    )
    group.add_argument(
        "--object-overlap",
        type=float,
        metavar="IOU",
        help=f"mask IoU above which two candidates are one object (default: {defaults.overlap})",
    )


def object_options(args: argparse.Namespace) -> ObjectOptions:
    """The :class:`~sansa.records.ObjectOptions` of the object flags the user set."""
    from sansa.errors import SansaError
    from sansa.records import ObjectOptions

    set_by_user = given(args, *OBJECT_FLAGS)
    for flag, value in set_by_user.items():  # errors name the flag the user typed
        try:
            ObjectOptions.create(**{OBJECT_FLAGS[flag]: value})
        except SansaError as err:
            raise SansaError(f"--{flag.replace('_', '-')}: {str(err).split(': ', 1)[1]}") from None
    return ObjectOptions.create(**{OBJECT_FLAGS[flag]: value for flag, value in set_by_user.items()})
