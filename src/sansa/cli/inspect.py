"""``sansa inspect``: see what SANSA sees in your references and targets.

Reads references as ``sansa segment`` does, encodes every image once, segments the targets from
that encoding, and writes :data:`sansa.inspection.FILES` (PCA maps, the objects' 3D scatter as
PNG and HTML, a per-class summary), then prints the summary. The library owns every default.
"""

from __future__ import annotations

import argparse

from sansa.cli import given

EPILOG = """examples:
  sansa inspect --references examples/references.yaml --targets examples/targets --out inspect/
  sansa inspect ref.jpg --mask ref_mask.png --label dog --targets photos/ --out inspect/ --model sansa-universal

writes into --out:
  pca_maps.png    each image with its mask or prediction, and its features' first three principal
                  components as RGB (fitted jointly over all images: a colour means the same in each),
                  after the adapters and, where the model has adapters, with them off (plain SAM2)
  objects.png     one point per object (mask-pooled feature) on three principal components, coloured
  objects.html    by class, references as stars; the same as a page to rotate (works offline)
  summary.txt     per class: silhouette (near 1: a tight, separate cluster) and nearest class; the
  summary.json    predicted objects nearer another class's references than their own: review first
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``inspect`` command."""
    from sansa.cli.common import MODEL_HELP, add_model_options
    from sansa.cli.segment import add_reference_arguments, add_target_arguments

    parser = subparsers.add_parser(
        "inspect",
        help="see the features SANSA matches: PCA maps and class clusters, with and without adapters",
        description="Show the image features memory matching uses for your references and targets.",
        epilog=EPILOG + "\n" + MODEL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_reference_arguments(parser)
    run = parser.add_argument_group("targets and outputs")
    add_target_arguments(run)
    run.add_argument("--out", metavar="DIR", required=True, help="folder for the pictures and the summary")
    run.add_argument(
        "--no-plain",
        dest="plain",
        action="store_false",
        default=None,
        help="skip the plain SAM2 features (adapters off): half the encoding",
    )
    run.add_argument("--seed", type=int, metavar="N", help="draws the pixels PCA is fitted on, when many (default 0)")
    run.add_argument(
        "--batch-size", type=int, metavar="N", help="targets encoded together (default: 4 on a GPU, 1 on the CPU)"
    )
    add_model_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from sansa.cli.common import load_predictor
    from sansa.cli.segment import _reference_specs, _short
    from sansa.errors import SansaError
    from sansa.inspection import inspect_features
    from sansa.labeling import ReferenceEntry
    from sansa.targets import find_targets

    entries = [ReferenceEntry.from_spec(spec) for spec in _reference_specs(args)]
    targets, _ = find_targets(list(args.targets), recursive=bool(args.recursive))
    if not targets:
        raise SansaError(f"--targets {' '.join(args.targets)}: no images found")
    predictor = load_predictor(args)
    for entry in entries:
        try:
            predictor.add_reference(entry.image, label=entry.label, name=entry.image, prompt=entry.prompt)
        except SansaError as err:
            raise SansaError(f"{entry.source}: {err}") from None
    inspection = inspect_features(
        predictor, [_short(t.path) for t in targets], **given(args, "plain", "seed", "batch_size")
    )
    written = inspection.save(args.out)
    print(inspection.summary_text(), end="")
    print("outputs: " + " ".join(_short(path) for path in written))
    return 0
