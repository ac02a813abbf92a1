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
        # a parameter given a value as in Python, anywhere: the flag and the value
        ("device: 'cuda' but no CUDA GPU (try device='cpu')", "--device: 'cuda' but no CUDA GPU (try --device cpu)"),
        (
            "out/x: holds other results; start over with overwrite=True, or use another out=DIR",
            "out/x: holds other results; start over with --overwrite, or use another --out DIR",
        ),
        (
            "a.png: 70 megapixels, over the limit (raise it with max_pixels=N or SANSA_MAX_PIXELS)",
            "a.png: 70 megapixels, over the limit (raise it with --max-pixels N or SANSA_MAX_PIXELS)",
        ),
        ("2 failed (more than max_failures=1): d: gone", "2 failed (more than --max-failures 1): d: gone"),
        ("a: expected KEY=VALUE, stride=2", "a: expected KEY=VALUE, stride=2"),  # not flags of segment
    ],
)
def test_library_parameters_become_flags(library, cli):
    assert as_flags(library, FLAGS) == cli


def test_flags_come_from_the_command_parser():
    assert FLAGS["sam2_checkpoint"] == "--sam2-checkpoint" and FLAGS["targets"] == "--targets"
    assert "help" not in FLAGS and option_flags(build_parser(), None) == {}
    assert option_flags(build_parser(), "models") == {"cache_dir": "--cache-dir"}  # its subcommands' options


def _option(command: str, dest: str):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    return next(a for a in parser._actions if a.dest == dest)


def _choice_rows():
    from sansa.export.formats import CocoLayout, ImageMode
    from sansa.vocab import Device, LabelStudioControl, Precision, PromptType, ScribbleStyle

    return [
        # (command, option's dest, the values it must offer)
        ("segment", "coco_layout", list(CocoLayout)),
        ("segment", "dataset_images", list(ImageMode)),
        ("segment", "labelstudio_control", list(LabelStudioControl)),
        *((command, "device", list(Device)) for command in ("segment", "eval", "serve", "inspect", "train")),
        *((command, "precision", list(Precision)) for command in ("segment", "eval", "serve", "inspect")),
        ("eval", "prompt", list(PromptType.kinds())),
        ("eval", "scribble", list(ScribbleStyle)),
        ("train", "prompt", list(PromptType)),
    ]


@pytest.mark.parametrize(("command", "dest", "members"), _choice_rows(), ids=lambda v: v if isinstance(v, str) else "")
def test_choices_come_from_the_library(command, dest, members):
    assert list(_option(command, dest).choices) == [member.value for member in members]


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (["train", "--prompt", "mixed"], "mixed"),
        (["train", "--prompt", "multi"], "mixed"),  # the earlier name, as saved configs still have it
        (["train", "--device", "cpu"], "cpu"),
    ],
)
def test_choices_read_through_their_enum(argv, value):
    assert vars(build_parser().parse_args(argv))[argv[1].lstrip("-")] == value


def test_a_value_outside_the_choices_is_refused_naming_them(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--prompt", "lasso"])
    err = capsys.readouterr().err
    assert "--prompt: invalid choice: 'lasso' (choose from" in err and all(k in err for k in ("mask", "mixed"))


def test_building_the_parser_stays_light():
    """Building the parser (every ``sansa --help``) loads neither torch, sam2, scipy nor OpenCV."""
    import subprocess
    import sys

    code = (
        "import sys; from sansa.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'sam2', 'scipy', 'cv2') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
