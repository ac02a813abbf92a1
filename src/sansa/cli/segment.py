"""``sansa segment``: label a whole folder from a few marked reference images.

Targets are processed in fixed batches of the full, sorted target list; a batch with any
unfinished target is recomputed whole (finished ones are not rewritten), so a killed run and its
restart produce the same bytes as an uninterrupted run. Unreadable targets are listed in
``failures.txt``/``failures.json`` and the run goes on.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sansa.cli import given

EPILOG = """examples:
  sansa segment ref.jpg --mask ref_mask.png --label dog --targets photos/ --out labels/
  sansa segment ref.jpg --box 40,60,300,280 --targets 'photos/**/*.jpg' --out labels/ --format coco yolo
  sansa segment ref.jpg --points "120,80;140,95" --neg-points "30,30" --targets list.txt --out labels/
  sansa segment --references refs.yaml --targets photos/ --out labels/ --format indexed overlay

reference file (YAML or JSON; paths relative to it; any mix of prompts and classes):
  references:
    - {image: dog.jpg, mask: dog_mask.png, label: dog}
    - {image: cat.jpg, box: [10, 20, 200, 180], points: [[90, 100]], neg_points: [[5, 5]], label: cat}
    - {image: cat2.jpg, scribble: [[10, 10], [40, 22], [80, 30]], label: cat}

coordinates are pixels of the reference image, x = column, y = row. Run the same command again to
resume: finished targets are skipped. Exit status: 0 all done, 1 some targets failed, 2 bad input.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command."""
    from sansa.cli.common import MODEL_HELP, add_model_options

    parser = subparsers.add_parser(
        "segment", help="label a folder of images from a few marked examples",
        description="Segment every object of the references' classes in many target images.",
        epilog=EPILOG + "\n" + MODEL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ref = parser.add_argument_group("reference on the command line (more: --references FILE)")
    ref.add_argument("reference", nargs="?", metavar="REFERENCE", help="a reference image")
    ref.add_argument("--mask", metavar="PNG", help="the object's mask (non-zero pixels)")
    ref.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object")
    ref.add_argument("--points", metavar='"X,Y;X,Y"', help="clicks on the object")
    ref.add_argument("--neg-points", metavar='"X,Y;X,Y"', help="clicks off the object (with --points/--box)")
    ref.add_argument("--scribble", metavar='"X,Y;X,Y;..."', action="append",
                     help="a stroke over the object (repeat for several strokes)")
    ref.add_argument("--label", metavar="NAME", help="the class name (default: object)")
    ref.add_argument("--references", metavar="FILE", help="a YAML/JSON file of references (see below)")
    run = parser.add_argument_group("targets and outputs")
    run.add_argument("--targets", nargs="+", metavar="PATH", required=True,
                     help="folders, globs ('dir/**/*.jpg'), image files or list files (one path a line)")
    run.add_argument("--recursive", action="store_true", default=None, help="also look in sub-folders")
    run.add_argument("--out", metavar="DIR", required=True, help="output folder (resumed if it exists)")
    run.add_argument("--format", nargs="+", metavar="FMT", choices=("png", "indexed", "coco", "yolo", "overlay"),
                     help="png, indexed, coco, yolo, overlay (default: png coco overlay)")
    run.add_argument("--coco-instances", action="store_true", default=None,
                     help="COCO: one annotation per connected part (default: one per class)")
    run.add_argument("--coco-polygons", action="store_true", default=None,
                     help="COCO: polygons instead of RLE, for tools that cannot read RLE")
    run.add_argument("--batch-size", type=int, metavar="N",
                     help="targets encoded together (default: 4 on a GPU, 1 on the CPU)")
    add_model_options(parser)
    parser.set_defaults(handler=handle)


@dataclass
class Outcome:
    """What happened to the targets of one run."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # spent segmenting and writing targets


def handle(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status (1 when some targets failed)."""
    from sansa.cli.common import load_predictor
    from sansa.errors import SansaError
    from sansa.export import DEFAULT_FORMATS, FolderWriter, parse_formats
    from sansa.references import add_references, check_specs

    started = time.time()
    specs = _reference_specs(args)
    check_specs(specs)
    out = Path(args.out)
    targets, root = find_targets(args.targets, bool(args.recursive), exclude=out)
    formats = parse_formats(args.format) if args.format else DEFAULT_FORMATS
    if args.batch_size is not None and args.batch_size < 1:
        raise SansaError(f"--batch-size: must be at least 1, got {args.batch_size}")
    labels = list(dict.fromkeys(spec.label for spec in specs))
    options = given(args, "coco_instances", "coco_polygons")
    with FolderWriter(out, labels, formats, image_root=root, **options) as writer:
        predictor = load_predictor(args)
        references = add_references(predictor, specs)
        reference_files = _save_references(out / "references", specs, references)
        outcome = _segment_all(predictor, writer, targets, args.batch_size or predictor.default_batch_size)
    _save_failures(out, outcome.failures)
    seconds = time.time() - started
    _save_run(out, args, predictor, specs, references, reference_files, targets, root, formats, outcome, seconds)
    _print_summary(writer, targets, root, outcome, seconds, out)
    return 1 if outcome.failures else 0


def _reference_specs(args: argparse.Namespace) -> list:
    """References from the command line (first) and from ``--references``."""
    from sansa.errors import SansaError
    from sansa.references import load_reference_file, spec_from_values

    prompt_options = {"mask": args.mask, "box": args.box, "points": args.points, "neg_points": args.neg_points,
                      "scribble": args.scribble}
    given_prompts = {k: v for k, v in prompt_options.items() if v is not None}
    specs = []
    if args.reference is not None:
        values = {"image": args.reference, **given_prompts, **given(args, "label")}
        specs.append(spec_from_values(values, Path(), f"reference {args.reference}"))
    elif given_prompts or args.label is not None:
        flags = ", ".join("--" + k.replace("_", "-") for k in [*given_prompts, *given(args, "label")])
        raise SansaError(f"{flags}: give the reference image first (sansa segment REFERENCE {flags} ...)")
    if args.references is not None:
        specs.extend(load_reference_file(args.references))
    if not specs:
        raise SansaError("no reference: give REFERENCE with --mask/--box/--points/--scribble, or --references FILE")
    return specs


def find_targets(inputs: list[str], recursive: bool, exclude: Path | None = None) -> tuple[list[Path], Path]:
    """The target images named by ``--targets``, and the folder their names are relative to.

    Args:
        inputs: folders (their images, sorted), globs (``**`` recurses), image files, or list
            files (one path a line, relative to the list file; ``#`` comments).
        recursive: look in sub-folders of folders too.
        exclude: a folder whose files are never targets (the output folder).

    Returns:
        Unique targets in input order, and the deepest folder holding them all.
    """
    from sansa.errors import SansaError
    from sansa.images import IMAGE_SUFFIXES

    found: dict[Path, None] = {}
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item).expanduser()
        if glob.has_magic(item):
            matches = [Path(p) for p in sorted(glob.glob(os.path.expanduser(item), recursive=True))]
            paths = [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        elif path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            paths = sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            paths = [path] if path.suffix.lower() in IMAGE_SUFFIXES else _read_list(path)
        else:
            raise SansaError(f"--targets {item}: no such file or folder")
        paths = [p for p in paths if skip is None or not p.resolve().is_relative_to(skip)]
        if not paths:
            raise SansaError(f"--targets {item}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        found.update((p.resolve(), None) for p in paths)
    targets = list(found)
    root = Path(os.path.commonpath([p.parent for p in targets]))
    return targets, root


def _read_list(path: Path) -> list[Path]:
    from sansa.errors import SansaError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SansaError(f"--targets {path}: not a readable list of paths ({err.__class__.__name__})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def _segment_all(predictor, writer, targets: list[Path], batch_size: int) -> Outcome:
    """Segment and write every unfinished target, ``batch_size`` at a time, with a progress bar."""
    from tqdm import tqdm

    outcome, started = Outcome(), time.time()
    todo = [t for t in targets if not writer.is_done(str(t))]
    unfinished = set(todo)
    outcome.skipped = [writer.name_of(str(t)) for t in targets if t not in unfinished]
    with tqdm(total=len(todo), unit="img", desc="segment", disable=None, file=sys.stderr) as progress:
        for start in range(0, len(targets), batch_size):
            batch = targets[start:start + batch_size]
            if all(writer.is_done(str(t)) for t in batch):
                continue
            _segment_batch(predictor, writer, batch, outcome, progress)
    outcome.seconds = time.time() - started
    return outcome


def _segment_batch(predictor, writer, batch: list[Path], outcome: Outcome, progress) -> None:
    """One fixed batch: every readable member is encoded (so results never depend on where a
    previous run stopped); only unfinished ones are written."""
    from sansa.errors import ImageError
    from sansa.images import load_image

    loaded = []
    for path in batch:
        try:
            loaded.append((path, load_image(path, "target")))
        except ImageError as err:
            outcome.failures.append({"target": writer.name_of(str(path)), "path": str(path), "error": str(err)})
            progress.update(1)
    if not loaded:
        return
    segmentations = predictor.segment_batch([image for _, image in loaded], [str(p) for p, _ in loaded])
    for (path, image), segmentation in zip(loaded, segmentations, strict=True):
        if not writer.is_done(str(path)):
            writer.write(segmentation, image, str(path))
            outcome.written.append(writer.name_of(str(path)))
            progress.update(1)


def _save_references(folder: Path, specs: list, references: list) -> list[dict]:
    """What SANSA understood of each reference: its mask (PNG) and a picture with the prompt."""
    import numpy as np

    from sansa import atomic
    from sansa.export import render
    from sansa.export.names import safe_stem, safe_token
    from sansa.images import load_image

    saved, labels = [], list(dict.fromkeys(r.label for r in references))
    for index, (spec, reference) in enumerate(zip(specs, references, strict=True), start=1):
        stem = f"{index:02d}_{safe_token(reference.label)}_{safe_stem(spec.image.name)}"
        label_map = reference.mask.astype(np.uint16) * (labels.index(reference.label) + 1)  # the class's colour
        picture = render.overlay(load_image(spec.image), label_map, labels, legend=False)
        prompt = reference.prompt
        render.draw_prompt(picture, prompt.points, prompt.labels, prompt.box)
        for stroke in spec.strokes():
            render.draw_prompt(picture, scribble=stroke)
        atomic.write_bytes(folder / f"{stem}_mask.png", render.binary_png(reference.mask))
        atomic.write_bytes(folder / f"{stem}.jpg", atomic.encode_image(picture, "JPEG", quality=render.JPEG_QUALITY))
        saved.append({"mask": f"references/{stem}_mask.png", "picture": f"references/{stem}.jpg"})
    return saved


def _save_failures(out: Path, failures: list[dict]) -> None:
    from sansa import atomic

    if failures:
        atomic.write_json(out / "failures.json", failures)
        atomic.write_text(out / "failures.txt", "".join(f"{f['path']}: {f['error']}\n" for f in failures))
    else:  # a previous run's failures no longer hold
        for name in ("failures.json", "failures.txt"):
            (out / name).unlink(missing_ok=True)


def _save_run(out, args, predictor, specs, references, reference_files, targets, root, formats, outcome,
              seconds) -> None:
    """``run.json``: what ran (options, model, references, targets, outcome)."""
    from sansa import __version__, atomic

    options = {k: v for k, v in vars(args).items() if v is not None and k not in ("handler", "command")}
    refs = [{"image": str(spec.image), "label": ref.label, "prompt": ref.prompt.type.value,
             "score": ref.score, **files}
            for spec, ref, files in zip(specs, references, reference_files, strict=True)]
    atomic.write_json(out / "run.json", {
        "sansa": __version__, "command": "segment", "options": options, "device": str(predictor.device),
        "labels": predictor.labels, "references": refs, "formats": [f.value for f in formats],
        "targets": {"root": str(root), "count": len(targets), "written": len(outcome.written),
                    "already_done": len(outcome.skipped), "failed": len(outcome.failures)},
        "seconds": round(seconds, 2), "segmenting_seconds": round(outcome.seconds, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _print_summary(writer, targets, root, outcome: Outcome, seconds: float, out: Path) -> None:
    written, skipped, failed = len(outcome.written), len(outcome.skipped), len(outcome.failures)
    rate = f"; segmenting {outcome.seconds:.1f} s, {written / outcome.seconds:.1f} img/s" if written else ""
    print(f"{len(targets)} targets in {_short(root)}: {written} written, {skipped} already done, "
          f"{failed} failed ({seconds:.1f} s{rate})")
    records = [r for r in (writer.record(str(t)) for t in targets) if r is not None]
    total = sum(r.size[0] * r.size[1] for r in records) or 1
    rows = [("class", "id", "images", "coverage", "parts")]
    for class_id, label in enumerate(writer.labels, start=1):
        rows.append((label, str(class_id), str(sum(1 for r in records if r.pixels[label])),
                     f"{sum(r.pixels[label] for r in records) / total:.1%}",
                     str(sum(r.instances[label] for r in records))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells))
    shown = [*writer.outputs(), out / "references", out / "run.json"]
    if failed:
        shown.append(out / "failures.txt")
    print("outputs: " + " ".join(_short(p) + ("/" if p.is_dir() else "") for p in shown))


def _short(path: Path) -> str:
    """``path`` relative to the working folder when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
