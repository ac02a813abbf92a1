"""The released models, by name: where each file comes from and what the authors measured.

A SANSA model is Meta's SAM2 release-1.0 checkpoint (Hugging Face hub) plus, optionally, an
adapter file the SANSA authors published on Google Drive. Names follow ``sansa-<what>`` for
adapters and ``sam2-hiera-<size>`` for plain SAM2 (no adapters, a baseline). Entries whose
Drive file is an archive of several adapters (the strict few-shot folds) cannot be loaded by
name: they are listed so that users know where to get them, and are used by local path
(``--sam2-checkpoint FILE --adapter FILE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from sansa.errors import SansaError
from sansa.model.variants import VARIANTS

DRIVE_FILE_PAGE = "https://drive.google.com/file/d/{id}"


class Availability(str, Enum):
    """How a model's files are obtained."""

    AUTO = "auto"  # downloaded and cached on first use
    MANUAL = "manual"  # an archive of adapters: download, unpack and pass by path


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face hub repository (SAM2 base weights).

    Attributes:
        repo_id: e.g. ``facebook/sam2-hiera-large``.
        filename: e.g. ``sam2_hiera_large.pt``.
        revision: a branch, tag or commit; ``None`` is ``main``.
    """

    repo_id: str
    filename: str
    revision: str | None = None

    def url(self, endpoint: str = "https://huggingface.co") -> str:
        """Where a browser (or ``wget``) gets the file."""
        return f"{endpoint.rstrip('/')}/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"


@dataclass(frozen=True)
class DriveFile:
    """A Google Drive file of the SANSA authors.

    Attributes:
        file_id: the Drive id (from ``drive.google.com/file/d/<id>``).
        filename: the name it is cached under (for archives: a suggested name).
        sha256, size: the expected content, when known (``None``: recorded after the first
            download and checked from then on).
        archive: the file is an archive of several adapters (not loadable as is).
    """

    file_id: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    archive: bool = False

    @property
    def page(self) -> str:
        """The Drive page a person opens to download it by hand."""
        return DRIVE_FILE_PAGE.format(id=self.file_id)


@dataclass(frozen=True)
class Score:
    """A published result: mean IoU (%) on a benchmark with ``shots`` mask-prompted references."""

    benchmark: str
    miou: float
    shots: int = 1

    def __str__(self) -> str:
        return f"{self.benchmark} {self.shots}-shot {self.miou:.1f}"


@dataclass(frozen=True)
class PretrainedModel:
    """One released model.

    Attributes:
        name: what users type (``sansa-universal``).
        description: one line for ``sansa models list``.
        backbone: the SAM2 variant (``hiera_large``) or a ``sam2`` config path it is built with.
        sam2: the base SAM2 checkpoint.
        adapter: the adapter file; ``None`` for plain SAM2.
        scores: the authors' published numbers for this very file.
        note: a longer remark (how to use a manual entry, caveats).
    """

    name: str
    description: str
    backbone: str
    sam2: HubFile
    adapter: DriveFile | None = None
    scores: tuple[Score, ...] = field(default=())
    note: str = ""

    @property
    def availability(self) -> Availability:
        """``MANUAL`` when the adapter is an archive, else ``AUTO``."""
        return Availability.MANUAL if self.adapter is not None and self.adapter.archive else Availability.AUTO


def sam2_file(backbone: str) -> HubFile:
    """The Hugging Face hub file of a SAM2 release-1.0 backbone (``hiera_large`` ...)."""
    variant = VARIANTS[backbone]
    if variant.hf_repo is None or variant.checkpoint_file is None:
        raise SansaError(f"backbone {backbone}: has no released SAM2 checkpoint")
    return HubFile(variant.hf_repo, variant.checkpoint_file)


def _plain_sam2(backbone: str, size: str, label: str) -> PretrainedModel:
    return PretrainedModel(
        name=f"sam2-hiera-{size}",
        description=f"plain SAM2 release 1.0, Hiera-{label}, no adapters (instance-matching baseline)",
        backbone=backbone,
        sam2=sam2_file(backbone),
    )


_LARGE = sam2_file("hiera_large")

MODELS: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        PretrainedModel(
            name="sansa-universal",
            description="promptable (points, box, scribble, mask), objects and parts; the default",
            backbone="hiera_large",
            sam2=_LARGE,
            adapter=DriveFile("1nPOdRfMfo3MQRSi1qkPEri7Gl6FCEVHe", "sansa-universal.pth"),
            note="the authors' model for use on your own data; not the model behind the paper's tables",
        ),
        PretrainedModel(
            name="sansa-generalist",
            description="in-context generalist (COCO+ADE20K+LVIS+PACO), mask references, channel factor 0.8",
            backbone="hiera_large",
            sam2=_LARGE,
            adapter=DriveFile("17PktKkF1wibJeEW5CIxPoL7bjKLevfXW", "sansa-generalist.pth"),
            scores=(
                Score("LVIS-92i", 52.9),
                Score("COCO-20i", 74.8),
                Score("FSS-1000", 90.0),
                Score("Pascal-Part", 51.4),
                Score("PACO-Part", 45.5),
            ),
        ),
        PretrainedModel(
            name="sansa-lvis92i-folds",
            description="strict few-shot, LVIS-92i: 10 per-fold adapters (archive, download manually)",
            backbone="hiera_large",
            sam2=_LARGE,
            adapter=DriveFile("1wOaHVd-QaZHVKiNSe2aNSS6el1usxcil", "sansa-lvis92i-folds", archive=True),
            scores=(Score("LVIS-92i", 49.6),),
            note="one adapter per fold: evaluate fold F with that fold's adapter",
        ),
        PretrainedModel(
            name="sansa-coco20i-folds",
            description="strict few-shot, COCO-20i: 4 per-fold adapters (archive, download manually)",
            backbone="hiera_large",
            sam2=_LARGE,
            adapter=DriveFile("1nAHFgd9VPMN-XGrG0NEkbzkClddA0Ygf", "sansa-coco20i-folds", archive=True),
            scores=(Score("COCO-20i", 60.2),),
            note="one adapter per fold (folds 0-3: 57.7 / 61.7 / 62.8 / 58.5)",
        ),
        PretrainedModel(
            name="sansa-fss1000",
            description="strict few-shot, FSS-1000 (download manually)",
            backbone="hiera_large",
            sam2=_LARGE,
            adapter=DriveFile("1Y_W3cL-qxK-J5-yCJk1fXBwNwrhod5RS", "sansa-fss1000", archive=True),
            scores=(Score("FSS-1000", 91.4),),
        ),
        _plain_sam2("hiera_tiny", "tiny", "T"),
        _plain_sam2("hiera_small", "small", "S"),
        _plain_sam2("hiera_base_plus", "base-plus", "B+"),
        _plain_sam2("hiera_large", "large", "L"),
    )
}

DEFAULT_MODEL = "sansa-universal"


def get_model(name: str, models: Mapping[str, PretrainedModel] | None = None) -> PretrainedModel:
    """A registered model by name.

    Raises:
        SansaError: unknown name (the message lists the known ones).
    """
    models = MODELS if models is None else models
    if name not in models:
        hint = ""
        if name in VARIANTS:
            hint = (
                f"; {name!r} is a backbone: load its weights with SansaPredictor.from_checkpoint(SAM2_FILE, "
                f"ADAPTER_FILE, model={name!r}), or random weights with "
                f"SansaPredictor.from_checkpoint(None, model={name!r})"
            )
        raise SansaError(f"model {name!r}: unknown; choose one of {', '.join(models)} (see `sansa models list`)" + hint)
    return models[name]
