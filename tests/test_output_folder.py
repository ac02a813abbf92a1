"""Output folders: one owner, inputs checked on resume, nothing lost (issue 10).

"Nothing lost": after each fault (SIGKILL at five points, a full disk, a concurrent run, a changed
target, a changed prompt, a damaged record) the folder equals a clean run of the final inputs, or the
run was refused before touching it. CLI cases run the real ``sansa`` entry point in a subprocess;
faults are injected at :mod:`sansa.atomic`'s rename by ``tests/faults/sitecustomize.py`` (a full
disk also for real, on a small tmpfs, where this machine lets the tests mount one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sansa import atomic, labeling
from sansa.errors import SansaError
from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry
from sansa.records import Prompt

SANSA = Path(sys.executable).parent / "sansa"
SRC = Path(__file__).resolve().parents[1] / "src"
FAULTS = Path(__file__).resolve().parent / "faults"
MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]
BOX = "8,8,40,30"


def run_args(out: str = "out", box: str = BOX, label: str = "thing") -> list[str]:
    return [
        "segment",
        "ref.png",
        "--box",
        box,
        "--label",
        label,
        "--targets",
        "targets",
        "--out",
        out,
        "--format",
        "png",
        "coco",
        "yolo",
        "--batch-size",
        "2",
        *MODEL,
    ]


RUN = run_args()
UMASK = 0o027  # neither the 0600 of mkstemp nor the usual 0644: files must follow it


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(120, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
    image[10:28, 12:36] = (230, 200, 40)
    return image


def sansa(*args: str, cwd: Path, fault: dict | None = None, wait: bool = True, timeout: float = 600):
    """The real ``sansa`` console script under :data:`UMASK`, optionally with an injected fault."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*([FAULTS] if fault else []), SRC]))}
    env.pop("SANSA_FAULT", None)
    if fault:
        env["SANSA_FAULT"] = json.dumps(fault)
    command = [str(SANSA), *args]
    options = {
        "cwd": cwd,
        "env": env,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "preexec_fn": lambda: os.umask(UMASK),
    }
    if not wait:
        return subprocess.Popen(command, **options)
    return subprocess.run(command, timeout=timeout, **options)


def tree(folder: Path, temporaries: bool = True) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes) except ``run.json`` (its times differ)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json" and (temporaries or not p.name.endswith(atomic.TEMP_SUFFIX))
    }


def one_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Inputs (``ref.png``, ``targets/t0..t2.png``) and ``clean/``: a clean run of them into ``out``."""
    root = tmp_path_factory.mktemp("inputs")
    Image.fromarray(scene(0)).save(root / "ref.png")
    (root / "targets").mkdir()
    for i in range(3):
        Image.fromarray(scene(i + 1)).save(root / "targets" / f"t{i}.png")
    Image.fromarray(scene(7)).save(root / "other.png")
    (root / "clean").mkdir()
    copy_inputs(root, root / "clean")
    result = sansa(*RUN, cwd=root / "clean")
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def copy_inputs(base: Path, to: Path) -> Path:
    """The inputs with their modification times (results record them)."""
    shutil.copy2(base / "ref.png", to / "ref.png")
    shutil.copytree(base / "targets", to / "targets", copy_function=shutil.copy2)
    return to


@pytest.fixture()
def work(base, tmp_path) -> Path:
    return copy_inputs(base, tmp_path)


def clean(base: Path) -> dict[str, bytes]:
    return tree(base / "clean" / "out")


# -- the folder after a clean run ----------------------------------------------------------------
@pytest.mark.slow
def test_outputs_follow_the_umask_and_the_lock_is_released(base):
    out = base / "clean" / "out"
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~UMASK}, modes
    assert (out / ".sansa" / "lock").read_bytes() == b""  # emptied on release: identical folders


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_atomic_writes_get_the_umask(tmp_path, umask, mode):
    (tmp_path / "source.jpg").write_bytes(b"jpeg")
    (tmp_path / "source.jpg").chmod(0o600)
    old = os.umask(umask)
    try:
        atomic.write_bytes(tmp_path / "a.bin", b"x")
        atomic.copy_file(tmp_path / "source.jpg", tmp_path / "copy.jpg")  # dataset images
        assert atomic.current_umask() == umask
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == mode
    assert (tmp_path / "copy.jpg").stat().st_mode & 0o777 == mode
    assert (tmp_path / "copy.jpg").read_bytes() == b"jpeg"


# -- nothing lost ----------------------------------------------------------------------------------
KILL_POINTS = [  # a chain: each run is killed at the next point, the last one finishes
    {"match": "*/references/*.jpg", "when": "before"},  # saving what SANSA understood of the reference
    {"match": "*/masks/t0_*", "when": "after"},  # inside a target: a mask written, its record not
    {"match": "*/.sansa/parts/*", "when": "after"},  # right after a target's record
    {"match": "*/classes.json", "when": "after"},  # assembling the dataset files
    {"match": "*/run.json", "when": "before"},  # everything but run.json
]


@pytest.mark.slow
def test_sigkill_at_five_points_then_resume_equals_a_clean_run(base, work):
    for point in KILL_POINTS:
        result = sansa(*RUN, cwd=work, fault={"action": "kill", "nth": 1, **point})
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        annotations = work / "out" / "annotations.json"
        if annotations.exists():
            json.loads(annotations.read_text())  # never half a file
    result = sansa(*RUN, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert tree(work / "out") == clean(base)


@pytest.mark.slow
def test_full_disk_is_one_line_and_resuming_after_freeing_space_is_identical(base, work):
    result = sansa(*RUN, cwd=work, fault={"action": "enospc", "after": 6})
    assert "cannot write (No space left on device)" in one_line(result)
    assert "error: out/" in result.stderr  # the path as the user gave it
    assert not list((work / "out").rglob(f"*{atomic.TEMP_SUFFIX}"))
    result = sansa(*RUN, cwd=work)  # space freed
    assert result.returncode == 0, result.stderr[-2000:]
    assert tree(work / "out") == clean(base)


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KiB tmpfs at ``tmp_path/disk`` (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_really_full_disk(base, small_disk):
    work = copy_inputs(base, small_disk)
    stat = os.statvfs(work)
    (work / "pad").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 40_000))  # too little left for the run
    result = sansa(*RUN, cwd=work)
    assert "No space left on device" in one_line(result)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)  # space freed
    result = sansa(*RUN, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert tree(work / "out") == clean(base)


@pytest.mark.slow
def test_a_concurrent_run_is_refused_naming_the_holder(base, work):
    first = sansa(*RUN, cwd=work, wait=False, fault={"action": "pause", "match": "*/.sansa/parts/*", "dir": str(work)})
    try:
        while not (work / "paused").exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            os.sched_yield()
        before = tree(work / "out", temporaries=False)  # the first run's writers still make temporaries
        message = one_line(sansa(*run_args(label="other"), cwd=work))
        assert f"error: --out: in use by another run (pid {first.pid} on {socket.gethostname()}, started " in message
        assert "sansa segment ref.png --box" in message
        assert tree(work / "out", temporaries=False) == before  # refused before touching it
    finally:
        (work / "go").touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert tree(work / "out") == clean(base)


@pytest.mark.slow
def test_a_changed_target_is_redone(base, work):
    shutil.copy(base / "other.png", work / "targets" / "t1.png")  # what t1 was at first
    assert sansa(*RUN, cwd=work).returncode == 0
    assert tree(work / "out") != clean(base)
    shutil.copy2(base / "targets" / "t1.png", work / "targets" / "t1.png")  # replaced by the final t1
    result = sansa(*RUN, cwd=work)
    assert result.returncode == 0 and "1 written, 2 already done" in result.stdout
    assert tree(work / "out") == clean(base)


@pytest.mark.slow
def test_a_changed_prompt_is_refused_then_overwrite_starts_over(base, work):
    assert sansa(*run_args(box="10,10,30,30"), cwd=work).returncode == 0
    (work / "out" / "mine.txt").write_text("the user's own file")
    before = tree(work / "out")
    message = one_line(sansa(*RUN, cwd=work))
    assert "holds results made from other inputs (reference 1 (ref.png): another prompt)" in message
    assert "--overwrite" in message and "--out" in message
    assert tree(work / "out") == before  # refused before touching it
    result = sansa(*RUN, "--overwrite", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert tree(work / "out") == {**clean(base), "mine.txt": b"the user's own file"}


@pytest.mark.slow
def test_a_damaged_record_is_redone_and_said_once(base, work):
    shutil.copytree(base / "clean" / "out", work / "out")
    part = sorted((work / "out" / ".sansa" / "parts").iterdir())[1]
    part.write_bytes(part.read_bytes()[:40])
    result = sansa(*RUN, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("damaged record") == 1 and "1 written, 2 already done" in result.stdout
    assert tree(work / "out") == clean(base)


# -- in-process: what counts as done, what is refused ------------------------------------------------
def ref(label: str = "thing", image: str = "ref.png", **prompt) -> ReferenceEntry:
    return ReferenceEntry(image, label, Prompt.create(**prompt))


def job_for(work: Path, **changes) -> Job:
    values = {
        "references": [ReferenceEntry("ref.png", "thing", Prompt.create(box=[8, 8, 40, 30]))],
        "targets": ["targets"],
        "out": "out",
        "export": ExportOptions(("png", "coco", "yolo")),
        "model": ModelSpec(backbone="test_tiny", random_weights=True, device="cpu"),
        "batch_size": 2,
    }
    return Job(**{**values, **changes})


@pytest.fixture()
def finished(base, work, monkeypatch) -> Path:
    """``work`` with the clean run's output folder, as the working folder."""
    shutil.copytree(base / "clean" / "out", work / "out")
    monkeypatch.chdir(work)
    return work


def prepare(job: Job) -> tuple[labeling.Plan, list[str]]:
    notes: list[str] = []
    plan = labeling.prepare(job, notes.append)
    plan.close()
    return plan, notes


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b'{"name": "t1.png"}',
        b"null",
        b'{"name": "t2.png", "stem": "t2", "height": 48, "width": 64, "files": [], "pixels": {}, "instances": {},'
        b' "labels": ["thing"], "products": ["png"]}',  # a record of another target under t1's file name
    ],
    ids=["empty", "cut", "binary", "list", "fields-missing", "null", "another-name"],
)
def test_damaged_records_count_as_not_done(finished, damage):
    from sansa.export import names

    part = finished / "out" / ".sansa" / "parts" / f"{names.digest('t1.png')[:20]}.json"
    part.write_bytes(damage)
    plan, notes = prepare(job_for(finished))
    assert plan.skipped == ["t0.png", "t2.png"] and [b.write for b in plan.batches] == [[False, True]]
    assert len(notes) == 1 and "1 damaged record(s)" in notes[0]
    assert not part.exists()
    assert prepare(job_for(finished))[1] == []  # said once


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"references": [ref(box=[9, 8, 40, 30])]}, "another prompt"),
        ({"references": [ref(points=[[20, 20]])]}, "another prompt"),
        ({"references": [ref(box=[8, 8, 40, 30]), ref(box=[1, 1, 9, 9])]}, "1 references then, 2 now"),
        ({"references": [ref("dog", box=[8, 8, 40, 30])]}, "holds results for classes"),
        ({"model": ModelSpec(backbone="hiera_tiny", random_weights=True)}, "another model"),
        ({"model": ModelSpec(model="sansa-universal")}, "another model"),
        ("image", "reference 1 (ref.png): another image"),
    ],
)
def test_other_inputs_are_refused_before_touching_the_folder(finished, change, message):
    if change == "image":
        Image.fromarray(scene(5)).save(finished / "ref.png")
        change = {}
    before = tree(finished / "out")
    with pytest.raises(SansaError, match=r"start over with overwrite=True, or use another") as info:
        labeling.prepare(job_for(finished, **change))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert tree(finished / "out") == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("touch", "redone"),
    [
        (lambda p: os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9)), []),  # same bytes
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\0"), ["t1.png"]),  # same size and name, other bytes
        (lambda p: Image.fromarray(scene(9)).save(p), ["t1.png"]),
    ],
)
def test_only_changed_targets_are_redone(finished, touch, redone):
    touch(finished / "targets" / "t1.png")
    plan, _ = prepare(job_for(finished))
    assert [t.name for b in plan.batches for t, w in zip(b.targets, b.write, strict=True) if w] == redone


@pytest.mark.slow
def test_the_same_inputs_moved_elsewhere_still_resume(finished):
    (finished / "refs").mkdir()
    shutil.move(finished / "ref.png", finished / "refs" / "ref.png")
    plan, _ = prepare(job_for(finished, references=[ref(image="refs/ref.png", box=[8, 8, 40, 30])]))
    assert plan.batches == [] and len(plan.skipped) == 3


def test_a_held_folder_refuses_a_second_lock(tmp_path):
    with labeling.FolderLock(tmp_path / "out", "sansa segment a"):
        with pytest.raises(SansaError, match=rf"in use by another run \(pid {os.getpid()} on .*: sansa segment a\)"):
            labeling.FolderLock(tmp_path / "out", "sansa segment b").acquire()
    with labeling.FolderLock(tmp_path / "out", "sansa segment c"):  # released on exit
        pass


# -- read-only folders -------------------------------------------------------------------------------
@pytest.fixture()
def read_only(tmp_path):
    """Make a folder read-only for real: a read-only tmpfs remount as root, else ``chmod``."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        os.geteuid() == 0
        and not subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
        ).returncode
    )
    if os.geteuid() == 0 and not mounted:
        pytest.skip("root without mount: a read-only folder cannot be made here")

    def freeze() -> None:
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        else:
            for path in [disk, *disk.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)

    yield disk, freeze
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    else:
        for path in [disk, *disk.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.slow
@pytest.mark.parametrize("state", ["empty", "with results"])
def test_a_read_only_output_folder_is_one_line(base, read_only, work, state):
    disk, freeze = read_only
    if state == "with results":
        shutil.copytree(base / "clean" / "out", disk / "out")
    before = tree(disk)
    freeze()
    message = one_line(sansa(*run_args(out=str(disk / "out")), cwd=work))
    assert f"{disk / 'out'}" in message and ("Read-only file system" in message or "Permission denied" in message)
    assert tree(disk) == before
