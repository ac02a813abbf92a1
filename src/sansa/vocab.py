"""The words sansa's parts share, one enum each: prompt types, devices, precisions, scribble
styles and Label Studio controls.

Each is a ``str`` enum whose values are what a user types (CLI flags, YAML configs, JSON, the web
API); the library accepts a member or its value. The module imports nothing else, so the CLI
builds its ``choices=`` from these enums without loading torch or numpy.
"""

from __future__ import annotations

import enum


class PromptType(str, enum.Enum):
    """How a reference is marked.

    A :class:`~sansa.records.Prompt` is one of the four kinds, or ``MIXED`` when it combines
    several. As the way training prompts its references (``TrainConfig.prompt``), ``MIXED`` is
    one of the four kinds per reference, drawn uniformly (the promptable model); ``"multi"``,
    its earlier name there, is read as ``MIXED``.
    """

    MASK = "mask"
    POINT = "point"
    BOX = "box"
    SCRIBBLE = "scribble"
    MIXED = "mixed"

    @classmethod
    def _missing_(cls, value: object) -> PromptType | None:
        return cls.MIXED if value == "multi" else None  # configs written before the two enums were one

    @classmethod
    def kinds(cls) -> tuple[PromptType, ...]:
        """The four single kinds (all but ``MIXED``)."""
        return tuple(kind for kind in cls if kind is not cls.MIXED)


class Device(str, enum.Enum):
    """Where the model runs: ``auto`` prefers CUDA, then Apple's MPS, then the CPU (see
    :func:`sansa.devices.resolve_device`, which also takes torch's own names such as ``cuda:1``)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Precision(str, enum.Enum):
    """The image encoder's arithmetic (see :func:`sansa.devices.choose_precision`): ``fp32``
    (exact), ``bf16``/``fp16`` autocast, or ``auto`` (bf16 where the device computes it natively
    and fast, fp32 elsewhere)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    AUTO = "auto"


class ScribbleStyle(str, enum.Enum):
    """Which generator draws scribbles from a mask (see :mod:`sansa.data.prompts`): the authors'
    evaluation scribbles, or light free-form strokes."""

    AUTHORS = "authors"
    LIGHT = "light"


class LabelStudioControl(str, enum.Enum):
    """The Label Studio control the ``labelstudio`` export's regions are for (see
    :mod:`sansa.export.labelstudio`)."""

    BRUSH = "brush"
    POLYGON = "polygon"
    RECTANGLE = "rectangle"
    KEYPOINT = "keypoint"


__all__ = ["Device", "LabelStudioControl", "Precision", "PromptType", "ScribbleStyle"]
