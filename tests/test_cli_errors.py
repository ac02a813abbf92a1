"""Library errors name the library's parameters; the CLI prints them as its flags."""

import pytest

from sansa.cli import as_flags, build_parser, option_flags

FLAGS = option_flags(build_parser(), "segment")


@pytest.mark.parametrize(
    ("library", "cli"),
    [
        ("targets photos/: no such file or folder", "--targets photos/: no such file or folder"),
        ("batch_size: must be at least 1, got 0", "--batch-size: must be at least 1, got 0"),
        (
            "random_weights cannot be combined with model and adapter: random weights would ignore it",
            "--random-weights cannot be combined with --model and --adapter: random weights would ignore it",
        ),
        (
            "adapter or backbone without sam2_checkpoint: give sam2_checkpoint too",
            "--adapter or --backbone without --sam2-checkpoint: give sam2_checkpoint too",
        ),
        # a path holding a parameter's name stays the path; plain words after the colon stay words
        ("out/model.png: cannot write (disk full)", "out/model.png: cannot write (disk full)"),
        ("references: none given (mark a box or points)", "--references: none given (mark a box or points)"),
        ("labels: 3 labels for 2 points", "labels: 3 labels for 2 points"),  # no --labels flag in segment
        ("refs.yaml: neg_points alone mark nothing", "refs.yaml: neg_points alone mark nothing"),
        ("the model is missing", "the model is missing"),  # no head: nothing is a parameter
    ],
)
def test_library_parameters_become_flags(library, cli):
    assert as_flags(library, FLAGS) == cli


def test_flags_come_from_the_command_parser():
    assert FLAGS["sam2_checkpoint"] == "--sam2-checkpoint" and FLAGS["targets"] == "--targets"
    assert "help" not in FLAGS and option_flags(build_parser(), None) == {}


def test_choices_come_from_the_library_and_the_parser_stays_light():
    """``--coco-layout``/``--dataset-images``/``--prompt`` list their enums' values; building the
    parser (every ``sansa --help``) loads neither torch, sam2, scipy nor OpenCV."""
    import subprocess
    import sys

    from sansa.export.formats import CocoLayout, ImageMode
    from sansa.records import PromptType

    segment = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["segment"]._actions}
    assert list(segment["coco_layout"].choices) == [c.value for c in CocoLayout]
    assert list(segment["dataset_images"].choices) == [m.value for m in ImageMode]
    evaluate = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["eval"]._actions}
    assert list(evaluate["prompt"].choices) == [k.value for k in PromptType if k is not PromptType.MIXED]
    code = (
        "import sys; from sansa.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'sam2', 'scipy', 'cv2') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
