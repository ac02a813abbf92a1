"""Reading references from the command line and from a YAML/JSON file.

A reference file lists reference images, each with one class ``label`` and a prompt (paths are
relative to the file)::

    references:
      - image: dog1.jpg
        mask: dog1_mask.png            # a PNG, non-zero = the object; or any mix of:
        label: dog
      - image: dog2.jpg
        box: [40, 60, 300, 280]        # x0, y0, x1, y1
        points: [[120, 80]]            # clicks on the object ("120,80;130,90" works too)
        neg_points: [[30, 30]]         # clicks NOT on the object
        label: dog
      - image: cat.jpg
        scribble: [[10, 10], [40, 22], [80, 30]]   # one stroke, or a list of strokes
        label: cat

Coordinates are pixels of the reference image, ``x`` = column, ``y`` = row. A bare list (no
``references:`` key) and JSON with the same structure are read too. :func:`check_specs` checks
a file's references without a model (images readable, prompts inside them), for a tool that
validates a references file before a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sansa.errors import PromptError, SansaError
from sansa.records import DEFAULT_LABEL, Prompt

KEYS = ("image", "label", "mask", "box", "points", "neg_points", "scribble")


@dataclass(frozen=True)
class ReferenceSpec:
    """One reference as the user wrote it, before anything is loaded.

    Attributes:
        image: the reference image file.
        label: its class.
        mask: a mask file; cannot be combined with the other prompts.
        box: ``[x0, y0, x1, y1]``.
        points: clicks on the object, ``[[x, y], ...]``.
        neg_points: clicks off the object.
        scribble: strokes, each ``[[x, y], ...]``.
        source: where it was written (for error messages).
    """

    image: Path
    label: str = DEFAULT_LABEL
    mask: Path | None = None
    box: list[float] | None = None
    points: list[list[float]] | None = None
    neg_points: list[list[float]] | None = None
    scribble: list[list[list[float]]] | None = None
    source: str = ""

    def prompt(self) -> Prompt:
        """The validated :class:`Prompt` record (reads the mask file, if any: call it once)."""
        if self.mask is not None:
            return Prompt.create(mask=self.mask)
        clicks = (self.points or []) + (self.neg_points or [])
        labels = [1] * len(self.points or []) + [0] * len(self.neg_points or [])
        return Prompt.create(points=clicks or None, labels=labels or None, box=self.box, scribble=self.scribble or None)


def parse_points(value: Any, name: str) -> list[list[float]]:
    """``"x,y;x,y"`` or ``[[x, y], ...]`` -> ``[[x, y], ...]``."""
    if isinstance(value, str):
        try:
            pairs = [[float(v) for v in pair.split(",")] for pair in value.replace(" ", "").split(";") if pair]
        except ValueError:
            raise SansaError(f"{name}: expected 'x,y;x,y;...', got {value!r}") from None
    else:
        pairs = value
    if not isinstance(pairs, list) or not pairs or not all(_is_pair(p) for p in pairs):
        raise SansaError(f"{name}: expected points as 'x,y;x,y;...' or [[x, y], ...], got {value!r}")
    return [[float(x), float(y)] for x, y in pairs]


def parse_box(value: Any, name: str) -> list[float]:
    """``"x0,y0,x1,y1"`` or ``[x0, y0, x1, y1]`` -> four floats."""
    try:
        numbers = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 4:
        raise SansaError(f"{name}: expected 'x0,y0,x1,y1', got {value!r}")
    return numbers


def parse_scribble(value: Any, name: str) -> list[list[list[float]]]:
    """One stroke (``"x,y;x,y"`` / ``[[x, y], ...]``) or several (a list of those) -> strokes."""
    if isinstance(value, list) and value and all(isinstance(s, (str, list)) and not _is_pair(s) for s in value):
        return [parse_points(stroke, name) for stroke in value]
    return [parse_points(value, name)]


def _is_pair(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def spec_from_values(values: dict[str, Any], base: Path, source: str) -> ReferenceSpec:
    """A :class:`ReferenceSpec` from a mapping of :data:`KEYS` (paths relative to ``base``)."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise SansaError(f"{source}: unknown key {unknown[0]!r} (expected: {', '.join(KEYS)})")
    if not values.get("image"):
        raise SansaError(f"{source}: no 'image'")
    label = values.get("label", DEFAULT_LABEL)
    if not isinstance(label, str) or not label.strip():
        raise SansaError(f"{source}: 'label' must be a non-empty class name")
    prompts = [k for k in ("mask", "box", "points", "neg_points", "scribble") if values.get(k) is not None]
    if not prompts:
        raise SansaError(f"{source}: no prompt; give mask, box, points or scribble")
    if "mask" in prompts and len(prompts) > 1:
        raise SansaError(f"{source}: a mask cannot be combined with {', '.join(p for p in prompts if p != 'mask')}")
    if prompts == ["neg_points"]:
        raise SansaError(f"{source}: neg_points alone do not mark an object; add points, a box or a scribble")
    get = values.get
    return ReferenceSpec(
        image=_path(get("image"), base),
        label=label.strip(),
        mask=_path(get("mask"), base) if get("mask") is not None else None,
        box=parse_box(get("box"), f"{source}: box") if get("box") is not None else None,
        points=parse_points(get("points"), f"{source}: points") if get("points") is not None else None,
        neg_points=parse_points(get("neg_points"), f"{source}: neg_points") if get("neg_points") is not None else None,
        scribble=parse_scribble(get("scribble"), f"{source}: scribble") if get("scribble") is not None else None,
        source=source,
    )


def _path(value: Any, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def load_reference_file(path: str | os.PathLike[str]) -> list[ReferenceSpec]:
    """Read a YAML or JSON reference file (see the module docstring for the format)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SansaError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SansaError(f"{path}: not valid YAML/JSON ({first})") from None
    entries = data.get("references") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise SansaError(f"{path}: expected a non-empty list under 'references:'")
    specs = []
    for index, entry in enumerate(entries, start=1):
        source = f"{path}: reference {index}"
        if not isinstance(entry, dict):
            raise SansaError(f"{source}: expected a mapping with 'image', 'label' and a prompt")
        specs.append(spec_from_values(entry, path.parent, source))
    return specs


def check_specs(specs: list[ReferenceSpec]) -> None:
    """Check files and prompts without a model (fast): images readable, prompts inside them,
    masks the image's size and not empty. Errors name the reference."""
    from sansa.images import open_image_file

    for spec in specs:
        try:
            with open_image_file(spec.image) as image:
                width, height = image.size
            spec.prompt().check_fits(height, width)
        except PromptError as err:
            raise SansaError(f"{spec.source} ({spec.image}): {err}") from None
        except SansaError as err:
            raise SansaError(f"{spec.source}: {err}") from None
