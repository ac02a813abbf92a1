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
