"""Typed JSON requests and responses of the web app (they make its OpenAPI schema at ``/docs``).

Coordinates are pixels of the full-size image a prompt belongs to: ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from sansa.vocab import PromptType

Point = tuple[float, float]


class JobState(str, enum.Enum):
    """Where a session's propagation job stands."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ErrorOut(BaseModel):
    """Every error answer: one line saying what is wrong and with which argument or file."""

    detail: str


class ImageInfo(BaseModel):
    name: str = Field(description="file name inside the served folder")
    width: int
    height: int


class SkippedImage(BaseModel):
    name: str
    reason: str


class ImageList(BaseModel):
    folder: str
    images: list[ImageInfo]
    skipped: list[SkippedImage] = Field(default_factory=list, description="image files that could not be read")


class ServerInfo(BaseModel):
    folder: str
    model: str = Field(description="the model's backbone, as built")
    device: str
    max_upload_bytes: int
    formats: list[str] = Field(description="export formats the server can write")


class ClassCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb; default from a palette")

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("class name is empty")
        return value


class ClassInfo(BaseModel):
    name: str
    color: str = Field(description="#rrggbb")


class ClassUpdate(BaseModel):
    """Rename and/or recolour a class (leave a field out to keep it)."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("class name is empty")
        return value


class MaskEdit(BaseModel):
    """One change of a mask (:mod:`sansa.web.strokes`): the brush, eraser or lasso as drawn."""

    op: Literal["paint", "erase", "fill", "cut"] = Field(description="paint/erase a stroke, fill/cut a polygon")
    points: list[Point] = Field(min_length=1, max_length=65536, description="[[x, y], ...] in image pixels")
    width: float | None = Field(default=None, gt=0, le=100000, description="the brush diameter (paint, erase)")


class PolygonRing(BaseModel):
    """One outline of a mask (:mod:`sansa.web.polygons`): filled, or cut out when ``hole``."""

    points: list[Point] = Field(min_length=3, max_length=65536, description="[[x, y], ...] in image pixels")
    hole: bool = Field(default=False, description="cut out of the rings before it (a hole of a part)")


class PolygonsOut(BaseModel):
    """A reference mask's outlines, in the order that rasterises them back to the mask."""

    rings: list[PolygonRing]


class PromptIn(BaseModel):
    """What the user marked on a reference; a mask cannot be combined with the other kinds."""

    points: list[Point] | None = Field(default=None, description="clicks [[x, y], ...]")
    point_labels: list[int] | None = Field(default=None, description="1 object, 0 not the object, per point")
    box: tuple[float, float, float, float] | None = Field(default=None, description="[x0, y0, x1, y1]")
    scribble: list[list[Point]] | None = Field(default=None, description="strokes, each [[x, y], ...]")
    mask_png: str | None = Field(
        default=None,
        description="the object's pixels: a PNG, base64 or data: URL, "
        "at the image's size; non-zero alpha or value = object",
    )
    edits: list[MaskEdit] | None = Field(
        default=None,
        max_length=1000,
        description="instead of mask_png: changes to this reference's current mask (empty before: none)",
    )
    polygons: list[PolygonRing] | None = Field(
        default=None,
        max_length=1000,
        description="instead of mask_png: the mask as polygons (rings filled, holes cut, in order)",
    )


class ReferenceRequest(BaseModel):
    image: str = Field(description="file name in the served folder")
    label: str = Field(min_length=1, max_length=64, description="the class marked")
    prompt: PromptIn


class UndoRequest(BaseModel):
    """Which reference to put back as it was before its last saved change."""

    image: str = Field(description="file name in the served folder")
    label: str = Field(min_length=1, max_length=64, description="the class")


class PromoteRequest(BaseModel):
    image: str = Field(description="a target to make a reference, its prediction as the starting mask")
    label: str = Field(min_length=1, max_length=64)


class Source(str, enum.Enum):
    """Where an image's mask comes from (hand-made ones win over predictions in exports)."""

    REFERENCE = "reference"  # marked by the user as an example
    CORRECTED = "corrected"  # a target whose prediction the user corrected (it became a reference)
    ACCEPTED = "accepted"  # a prediction the user accepted in review (kept as it was then)
    PREDICTED = "predicted"  # the current prediction, not reviewed


class ReviewState(str, enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ReferenceOut(BaseModel):
    id: str
    image: str
    label: str
    source: Source = Field(default=Source.REFERENCE, description="reference, or corrected (a promoted target)")
    prompt: PromptIn | None = Field(default=None, description="the clicks/box/scribble marked (None for a mask)")
    prompt_type: PromptType
    score: float | None = Field(description="decoder's IoU estimate; None for a mask prompt")
    area: int = Field(description="pixels in the decoded mask")
    mask_png: str = Field(description="the decoded reference mask as a data: URL (PNG in the class colour)")


class DeletedClass(BaseModel):
    """A class deleted from the session, kept with its references until restored."""

    id: str
    name: str
    color: str
    references: int = Field(description="references deleted with it")
    fixed: int = Field(description="of them, fixed targets")


class SessionState(BaseModel):
    session_id: str
    version: int = Field(description="bumped whenever references or classes change")
    revision: int = Field(default=0, description="bumped by every change; changes carry it (X-Sansa-Revision)")
    fixes: dict[str, list[str]] = Field(default_factory=dict, description="target -> classes fixed on it")
    trash: list[DeletedClass] = Field(default_factory=list, description="deleted classes, restorable")
    classes: list[ClassInfo]
    references: list[ReferenceOut]
    reviews: dict[str, ReviewState] = Field(default_factory=dict, description="target -> review decision")
    targets: int = Field(default=0, description="images that are not references")
    propagated: int = Field(default=0, description="targets with a result for the current version")
    notes: list[str] = Field(default_factory=list, description="what could not be restored, one line each")
    object_options: dict[str, int | float] = Field(
        default_factory=dict, description="the object options the user set (the others: the library's defaults)"
    )


class TargetClass(BaseModel):
    label: str
    score: float
    area: int
    source: Source = Field(default=Source.PREDICTED, description="where this class's mask comes from")


class ObjectOut(BaseModel):
    """One object of an image, as listed (its pixels: ``object_map_png`` == ``id``)."""

    id: int = Field(description="1..K on this image (edits renumber them)")
    label: str
    score: float = Field(description="the decoder's IoU estimate (1.0 for hand-made masks)")
    area: int = Field(description="pixels at the image's full size")
    box: tuple[int, int, int, int] = Field(description="[x0, y0, x1, y1] in full-size pixel edges (exclusive end)")
    state: str | None = Field(default=None, description="its review decision: accepted, rejected or null")


class ObjectEdit(BaseModel):
    """A change of an image's objects (see :mod:`sansa.web.objects`)."""

    op: Literal["delete", "merge", "split", "accept", "reject", "undo", "reset"]
    ids: list[int] = Field(default_factory=list, max_length=65535, description="the objects (ids of the list)")
    point: Point | None = Field(default=None, description="split: the click [x, y] in full-size pixels")


class ObjectOptionsIn(BaseModel):
    """How classes are split into objects; leave a field out to keep the library's default."""

    min_area: int | None = Field(default=None, ge=0, description="the smallest object, in pixels")
    max_objects: int | None = Field(default=None, ge=0, description="the most objects per class")
    points_per_class: int | None = Field(default=None, ge=0, description="decoder prompts per class")
    overlap: float | None = Field(default=None, ge=0, le=1, description="mask IoU above which two are one")


class TargetOut(BaseModel):
    name: str
    version: int = Field(description="the session version these masks belong to")
    source: Source = Field(default=Source.PREDICTED, description="what the export writes for this image")
    stale: bool = Field(default=False, description="accepted or edited with older references than the current ones")
    edited: bool = Field(default=False, description="its objects were edited (kept as they were left)")
    classes: list[TargetClass]
    overlay_png: str = Field(description="the label map as a data: URL (palette PNG, classes in their colours)")
    objects: list[ObjectOut] = Field(default_factory=list, description="what the export writes, rejected ones listed")
    object_map_png: str | None = Field(
        default=None, description="the object ids as a data: URL (RGB PNG: id = red + 256 * green), at max_side"
    )


class PropagateStatus(BaseModel):
    state: JobState
    done: int
    total: int
    version: int = Field(description="the session version the results belong to")
    error: str | None = None
    failed: list[SkippedImage] = Field(
        default_factory=list, description="targets that could not be read (the others were segmented)"
    )


class ReviewRequest(BaseModel):
    state: ReviewState | None = Field(description="accepted, rejected, or null to undo the decision")


class ReviewItem(BaseModel):
    name: str
    state: str = Field(description="unreviewed, accepted, rejected or fixed (corrected into a reference)")
    score: float | None = Field(description="lowest decoder score of the classes found; None before propagation")
    classes: list[TargetClass] = Field(default_factory=list)
    stale: bool = Field(default=False, description="accepted with older references than the current ones")
    objects: int | None = Field(default=None, description="objects the export writes (counted on edited images)")
    rejected_objects: int = Field(default=0, description="objects rejected one by one (left out)")


class ReviewList(BaseModel):
    items: list[ReviewItem]
    counts: dict[str, int] = Field(description="items per state")


class ExportRequest(BaseModel):
    """What to export; options left out take :class:`sansa.export.FolderWriter`'s defaults."""

    formats: list[str] | None = Field(default=None, description="default: sansa.export's")
    coco_layout: str | None = Field(default=None, description="file (annotations.json) or dataset (CVAT, datumaro)")
    coco_polygons: bool | None = Field(default=None, description="COCO polygons instead of RLE")
    per_class: bool | None = Field(
        default=None, description="one annotation per class instead of one per object (COCO, YOLO, instances)"
    )

    def options(self) -> dict[str, Any]:
        """The export options given (``None`` ones and ``formats`` left out), as keyword arguments."""
        return self.model_dump(exclude_none=True, exclude={"formats"})


class ExportStatus(BaseModel):
    id: str
    state: JobState
    done: int
    total: int
    images: int = Field(description="images written (references, corrected, accepted, predicted)")
    left_out: list[str] = Field(
        default_factory=list, description="targets left out (rejected in review, or unreadable when propagated)"
    )
    error: str | None = None
    download: str | None = Field(default=None, description="where to download the zip once done")
