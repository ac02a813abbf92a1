"""``sansa segment``: label a whole folder from a few marked reference images.

Argument parsing, then :func:`sansa.labeling.run` (discovery, fixed batches, resuming, failures,
``run.json``), then a summary. Options the user did not set stay ``None``: the library owns defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansa.cli import choices, given

if TYPE_CHECKING:
    from sansa.fs import AnyPath
    from sansa.labeling import Job

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
resume: finished targets are skipped, targets whose file changed are done again; other references
or another model are refused (start over with --overwrite, or use a new --out). One run at a time
owns an output folder. Exit status: 0 all done, 1 some targets failed, 2 bad input (or a folder that
cannot be written).
"""


def add_target_arguments(group: argparse._ArgumentGroup) -> None:
    """``--targets`` and ``--recursive`` (shared by ``segment`` and ``inspect``)."""
    group.add_argument(
        "--targets",
        nargs="+",
        metavar="PATH",
        required=True,
        help="folders, globs ('dir/**/*.jpg'), image files or list files (one path a line)",
    )
    group.add_argument("--recursive", action="store_true", default=None, help="also look in sub-folders")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``segment`` command."""
    from sansa.cli.common import MODEL_HELP, add_model_options, add_object_options
    from sansa.export.exporter import format_names
    from sansa.export.formats import DEFAULT_FORMATS, CocoLayout, ImageMode
    from sansa.vocab import LabelStudioControl

    parser = subparsers.add_parser(
        "segment",
        help="label a folder of images from a few marked examples",
        description="Segment every object of the references' classes in many target images.",
        epilog=EPILOG + "\n" + MODEL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_reference_arguments(parser)
    run = parser.add_argument_group("targets and outputs")
    add_target_arguments(run)
    run.add_argument("--out", metavar="DIR", required=True, help="output folder (resumed if it exists)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="delete results an earlier run left in --out (from other references or model) and start over",
    )
    formats = format_names()
    run.add_argument(
        "--format",
        nargs="+",
        metavar="FMT",
        choices=formats,
        help=f"{', '.join(formats)} (default: {' '.join(DEFAULT_FORMATS)})",
    )
    run.add_argument(
        "--per-class",
        action="store_true",
        default=None,
        help="one annotation per class (its whole mask) instead of one per object, in coco, yolo, "
        "instances, labelstudio and the overlays' outlines",
    )
    run.add_argument("--coco-instances", action="store_true", default=None, help=argparse.SUPPRESS)
    run.add_argument(
        "--coco-polygons",
        action="store_true",
        default=None,
        help="COCO: polygons instead of RLE, for tools that cannot read RLE",
    )
    run.add_argument(
        "--coco-layout",
        **choices(CocoLayout),
        help="COCO: annotations.json (file), or coco/annotations/instances_default.json + "
        "coco/images/ as datumaro and CVAT import (dataset) (default: file)",
    )
    run.add_argument(
        "--dataset-images",
        **choices(ImageMode),
        help="images of the yolo/ and coco/ dataset folders: copies, or hard links to the targets (default: copy)",
    )
    run.add_argument(
        "--labelstudio-control",
        **choices(LabelStudioControl),
        help="labelstudio: the regions' control (default: brush)",
    )
    run.add_argument(
        "--labelstudio-annotations",
        action="store_true",
        default=None,
        help="labelstudio: write the regions as annotations (tasks count as labelled) instead of predictions",
    )
    run.add_argument(
        "--labelstudio-root",
        metavar="DIR",
        help="labelstudio: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; the tasks' ?d= paths are the "
        "targets relative to it (default: relative to the targets folder; see the README's local-files recipe)",
    )
    run.add_argument(
        "--batch-size", type=int, metavar="N", help="targets encoded together (default: 4 on a GPU, 1 on the CPU)"
    )
    add_object_options(parser)
    add_model_options(parser)
    scale = parser.add_argument_group("Ray: label on many processes or machines (pip install 'sansa-segment[scale]')")
    scale.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="auto|ADDRESS",
        help="run on Ray: alone, the cluster in RAY_ADDRESS or a new local one; auto: the cluster "
        "running on this machine; or a cluster's address (host:6379, ray://host:10001)",
    )
    scale.add_argument(
        "--actors",
        metavar="N|MIN-MAX",
        help="model replicas: N (a fixed pool) or MIN-MAX (Ray Data's autoscaling pool; MIN- : no upper "
        "limit); default 1- : grows to what the cluster offers",
    )
    scale.add_argument(
        "--gpus-per-actor",
        type=float,
        metavar="G",
        help="GPUs each actor reserves (0.5: two share one; default: CPU actors)",
    )
    scale.add_argument(
        "--cpus-per-actor",
        type=float,
        metavar="C",
        help="CPUs each actor reserves; a CPU actor segments C targets at once (default: 1, or 2 with GPUs)",
    )
    scale.add_argument(
        "--memory-per-actor",
        type=float,
        metavar="GIB",
        help="memory each actor reserves, in GiB (default: 4, 1.5 for test_tiny, +0.5 per extra CPU)",
    )
    scale.add_argument(
        "--max-failures",
        type=int,
        metavar="N",
        help="targets that may fail to be written (after retries) before the job stops; they are listed "
        "in failures.txt and redone by the next run (default: 0)",
    )
    scale.add_argument(
        "--worker-env",
        action="append",
        metavar="NAME[=VALUE]",
        help="an environment variable for every worker (NAME alone: this shell's value); repeatable",
    )
    scale.add_argument(
        "--runtime-env",
        metavar="JSON|FILE",
        help="a Ray runtime environment for the workers (pip, env_vars, working_dir, ...), as JSON or a JSON/YAML file",
    )
    # library parameters that --ray stands for, as the library's messages name them (see cli.as_flags)
    parser.set_defaults(handler=handle, parameter_flags={"address": "--ray", "executor": "--ray"})


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """``REFERENCE`` with ``--mask``/``--box``/``--points``/``--neg-points``/``--scribble``/``--label``,
    and ``--references FILE`` (shared by the commands that take references; see :func:`_reference_specs`)."""
    ref = parser.add_argument_group("reference on the command line (more: --references FILE)")
    ref.add_argument("reference", nargs="?", metavar="REFERENCE", help="a reference image")
    ref.add_argument("--mask", metavar="PNG", help="the object's mask (non-zero pixels)")
    ref.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object")
    ref.add_argument("--points", metavar='"X,Y;X,Y"', help="clicks on the object")
    ref.add_argument("--neg-points", metavar='"X,Y;X,Y"', help="clicks off the object (with --points/--box)")
    ref.add_argument(
        "--scribble",
        metavar='"X,Y;X,Y;..."',
        action="append",
        help="a stroke over the object (repeat for several strokes)",
    )
    ref.add_argument("--label", metavar="NAME", help="the class name (default: object)")
    ref.add_argument("--references", metavar="FILE", help="a YAML/JSON file of references (see below)")


def handle(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status (1 when some targets failed)."""
    from sansa import labeling

    result = labeling.run(job_from_args(args), command=" ".join(["sansa", *sys.argv[1:]]), **_executor(args))
    _print_summary(result)
    return result.exit_code


RAY_OPTIONS = (
    "actors",
    "gpus_per_actor",
    "cpus_per_actor",
    "memory_per_actor",
    "max_failures",
    "worker_env",
    "runtime_env",
)


def _executor(args: argparse.Namespace) -> dict[str, Any]:
    """``executor="ray"`` and the Ray options the user set (``--ray``), or nothing (this process)."""
    from sansa.errors import SansaError

    options = given(args, *RAY_OPTIONS)
    if args.ray is None:
        if options:
            flags = "/".join("--" + k.replace("_", "-") for k in options)
            raise SansaError(f"{flags}: only with --ray")
        return {}
    from sansa.labeling.ray_cluster import parse_actors, parse_runtime_env

    if "actors" in options:
        options["actors"] = parse_actors(options["actors"])
    if "runtime_env" in options:
        options["runtime_env"] = parse_runtime_env(options["runtime_env"])
    return {"executor": "ray", "address": args.ray or None, **options}


_NOT_RECORDED = ("handler", "parameter_flags", "command", "worker_env", "runtime_env")  # may hold credentials


def job_from_args(args: argparse.Namespace) -> Job:
    """The :class:`~sansa.labeling.Job` the command line describes (only what the user set)."""
    from sansa import labeling
    from sansa.cli.common import object_options

    return labeling.Job(
        references=[labeling.ReferenceEntry.from_spec(spec) for spec in _reference_specs(args)],
        targets=list(args.targets),
        out=args.out,
        export=labeling.ExportOptions(**_export_options(args)),
        model=labeling.ModelSpec(
            **given(args, "model", "sam2_checkpoint", "adapter", "backbone", "random_weights", "device", "precision")
        ),
        objects=object_options(args),
        recursive=bool(args.recursive),
        batch_size=args.batch_size,
        overwrite=bool(args.overwrite),
        options={k: v for k, v in vars(args).items() if v is not None and k not in _NOT_RECORDED},
    )


def _export_options(args: argparse.Namespace) -> dict[str, Any]:
    from sansa.errors import SansaError

    if args.coco_instances:
        raise SansaError(
            "--coco-instances: removed; COCO now has one annotation per object by default (--per-class: one per class)"
        )
    options = given(
        args,
        "per_class",
        "coco_polygons",
        "coco_layout",
        "dataset_images",
        "labelstudio_control",
        "labelstudio_annotations",
        "labelstudio_root",
    )
    if args.format:
        options["formats"] = tuple(args.format)
    return options


def _reference_specs(args: argparse.Namespace) -> list[Any]:
    """References from the command line (first) and from ``--references``."""
    from sansa.errors import SansaError
    from sansa.references import load_reference_file, spec_from_values

    prompt_options = {
        "mask": args.mask,
        "box": args.box,
        "points": args.points,
        "neg_points": args.neg_points,
        "scribble": args.scribble,
    }
    given_prompts = {k: v for k, v in prompt_options.items() if v is not None}
    specs = []
    if args.reference is not None:
        values = {"image": args.reference, **given_prompts, **given(args, "label")}
        specs.append(spec_from_values(values, Path(), f"reference {args.reference}"))
    elif given_prompts or args.label is not None:
        flags = ", ".join("--" + k.replace("_", "-") for k in [*given_prompts, *given(args, "label")])
        command = getattr(args, "command", None) or "segment"
        raise SansaError(f"{flags}: give the reference image first (sansa {command} REFERENCE {flags} ...)")
    if args.references is not None:
        specs.extend(load_reference_file(args.references))
    if not specs:
        raise SansaError("no reference: give REFERENCE with --mask/--box/--points/--scribble, or --references FILE")
    return specs


def _print_summary(result) -> None:
    """One line of counts, a table of classes (images, coverage, objects), and where the outputs are."""
    outcome = result.outcome
    written, skipped, failed = len(outcome.written), len(outcome.skipped), len(outcome.failures)
    rate = f"; segmenting {outcome.seconds:.1f} s, {written / outcome.seconds:.1f} img/s" if written else ""
    print(
        f"{len(result.targets)} targets in {_short(result.root)}: {written} written, {skipped} already done, "
        f"{failed} failed ({result.seconds:.1f} s{rate})"
    )
    records = result.records
    total = sum(r.size[0] * r.size[1] for r in records) or 1
    rows = [("class", "id", "images", "coverage", "objects")]
    for class_id, label in enumerate(result.labels, start=1):
        rows.append(
            (
                label,
                str(class_id),
                str(sum(1 for r in records if r.pixels[label])),
                f"{sum(r.pixels[label] for r in records) / total:.1%}",
                str(sum(r.objects[label] for r in records)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells))
    print("outputs: " + " ".join(_short(p) + ("/" if p.is_dir() else "") for p in result.outputs))


def _short(path: str | os.PathLike[str] | AnyPath) -> str:
    """``path`` relative to the working folder when it is under it."""
    from sansa.fs import is_url

    if is_url(path) or not isinstance(path, (str, os.PathLike)):
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
