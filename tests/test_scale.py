"""Labelling on Ray: the same bytes as one process, on local folders and on S3, through faults.

All tests share one local Ray instance (``ray_local``) and one S3 API server (``s3_server``), and
compare against one single-process run of the same 40 targets (39 images and an unreadable one),
tiny random model, every format.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scenes
from PIL import Image
from scenes import write_reference

from sansa.cli import build_parser, main

pytest.importorskip("ray")
pytest.importorskip("s3fs")

MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]
FORMATS = ["--format", "png", "indexed", "coco", "yolo", "instances", "overlay"]
COUNT = 40  # targets, the last one unreadable
TIMES = ("seconds", "segmenting_seconds", "finished")
NOT_OUTPUTS = (".sansa/lock",)  # who holds the folder (pid, time): not a result


def scene(seed: int) -> np.ndarray:
    """The shared test photo with a bright square only, RGB ``uint8 [48, 64, 3]``."""
    return scenes.scene(seed, disc=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``ref.png``, ``ref_mask.png`` and ``targets/`` (``t00.png`` .. ``t38.png``, ``zz_broken.png``)."""
    folder = tmp_path_factory.mktemp("scale")
    write_reference(folder, disc=False)
    (folder / "targets").mkdir()
    for i in range(COUNT - 1):
        Image.fromarray(scene(i + 1)).save(folder / "targets" / f"t{i:02d}.png")
    (folder / "targets" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def command(data: Path, out: str, *extra: str) -> list[str]:
    return [
        "segment",
        str(data / "ref.png"),
        "--mask",
        str(data / "ref_mask.png"),
        "--label",
        "thing",
        "--targets",
        str(data / "targets"),
        "--out",
        out,
        *FORMATS,
        *MODEL,
        *extra,
    ]


def tree(files: dict[str, bytes]) -> dict[str, bytes]:
    """Outputs to compare: every file but ``run.json`` (compared without its times) and the lock."""
    return {name: data for name, data in files.items() if name != "run.json" and name not in NOT_OUTPUTS}


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_json(files: dict[str, bytes]) -> dict:
    """``run.json`` without its times and the options naming the output folder and Ray."""
    values = json.loads(files["run.json"])
    options = {k: v for k, v in values.pop("options").items() if k not in ("out", "ray", "actors")}
    return {**{k: v for k, v in values.items() if k not in TIMES}, "options": options}


@pytest.fixture(scope="module")
def single(data) -> dict[str, bytes]:
    """The single-process run's files (exit 1: the unreadable target is a failure entry), at torch's
    default thread count and one lane per core (Ray actors run one thread each)."""
    assert main(command(data, str(data / "single"))) == 1
    files = local_files(data / "single")
    assert sum(name.startswith(".sansa/parts/") for name in files) == COUNT - 1
    return files


def test_model_calls_do_not_depend_on_the_thread_count(tiny_model):
    """The predictor's logits (not only its label maps) at 1 and 2 torch threads are the same bits:
    each model call on the CPU runs at a fixed intra-op thread count."""
    import torch

    from sansa import SansaPredictor

    mask = np.zeros((48, 64), bool)
    mask[10:30, 12:40] = True
    logits = {}
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            predictor = SansaPredictor(tiny_model, device="cpu")
            reference = predictor.add_reference(scene(0), mask=mask, label="thing")
            segmentation = predictor.segment(scene(7), keep_logits=True)
            logits[count] = (reference.logits.tobytes(), segmentation.predictions["thing"].logits.tobytes())
            assert torch.get_num_threads() == count  # restored after each call
    finally:
        torch.set_num_threads(threads)
    assert logits[1] == logits[2]


def test_one_thread_one_lane_same_bytes(data, single):
    """A run at 1 torch thread and 1 lane writes the bytes of the default run (2 threads, 2 lanes here)."""
    import torch

    from sansa.cli.segment import job_from_args
    from sansa.labeling import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = job_from_args(build_parser().parse_args(command(data, str(data / "one-lane"))))
        assert run(job, lanes=1).exit_code == 1
    finally:
        torch.set_num_threads(threads)
    assert tree(local_files(data / "one-lane")) == tree(single)


def test_two_actors_same_bytes_and_resume(data, single, ray_local, capsys):
    """--ray with 2 actors writes the same bytes as one process in every format (and run.json
    differs only in its times); a re-run writes nothing and changes nothing."""
    out = data / "ray"
    assert main(command(data, str(out), "--ray", ray_local, "--actors", "2")) == 1
    first = local_files(out)
    assert tree(first) == tree(single)
    assert run_json(first) == run_json(single)
    assert "39 written, 0 already done, 1 failed" in capsys.readouterr().out
    assert main(command(data, str(out), "--ray", ray_local, "--actors", "2")) == 1
    assert tree(local_files(out)) == tree(single)
    assert "0 written, 39 already done, 1 failed" in capsys.readouterr().out


def test_s3_output(data, single, ray_local, s3_server):
    """--out s3://... on a real S3 API server: read back through fsspec, the same bytes, and no
    temporaries (whole-object writes)."""
    from sansa import fs

    url = s3_server.bucket("labels") + "/run1"
    assert main(command(data, url, "--ray", ray_local, "--actors", "2")) == 1
    store, root = fs.filesystem(url)
    store.invalidate_cache()
    files = {path[len(root) + 1 :]: store.cat_file(path) for path in sorted(store.find(root))}
    assert tree(files) == tree(single)
    assert run_json(files) == run_json(single)


def test_s3_targets(data, single, s3_server, capsys):
    """--targets s3://... (a folder, one process): each target's outputs are the bytes the local run
    wrote for the same image; a re-run finds them finished (object fingerprints)."""
    from sansa import fs

    url = s3_server.bucket("photos") + "/in"
    store, root = fs.filesystem(url)
    names = ["t00.png", "t01.png", "zz_broken.png"]
    for name in names:
        store.pipe_file(f"{root}/{name}", (data / "targets" / name).read_bytes())
    out = data / "from-s3"
    args = command(data, str(out))
    args[args.index("--targets") + 1] = url
    assert main(args) == 1
    assert "3 targets in " + url + ": 2 written, 0 already done, 1 failed" in capsys.readouterr().out
    files = local_files(out)
    for name in ("masks/t00_thing.png", "labels/t01.png", "overlays/t00.jpg", "yolo/labels/t01.txt"):
        assert files[name] == single[name], name
    assert json.loads(files["failures.json"])[0]["path"] == f"{url}/zz_broken.png"
    assert main(args) == 1
    assert "0 written, 2 already done, 1 failed" in capsys.readouterr().out


def test_ray_streams_a_listed_prefix(data, single, ray_local, s3_server, monkeypatch, capsys):
    """Targets on S3 listed page by page (8 keys a page) go to 2 actors a block of 2 targets at a
    time while the listing goes on (sansa.labeling.ray_feed): each target's files are the bytes of
    the one-process run; a re-run finds every target done."""
    from sansa import fs, listing
    from sansa.labeling import ray as ray_run
    from sansa.labeling.ray_feed import Feeder

    url = s3_server.bucket("streamed") + "/in"
    store, root = fs.filesystem(url)
    store.pipe({f"{root}/{p.name}": p.read_bytes() for p in sorted((data / "targets").iterdir())})
    fed: list[Feeder] = []
    monkeypatch.setattr(listing, "PAGE_KEYS", 8)
    monkeypatch.setattr(ray_run, "BLOCK_TARGETS", 2)
    monkeypatch.setattr(ray_run, "Feeder", lambda blocks: fed.append(Feeder(blocks)) or fed[-1])
    out = data / "ray-streamed"
    args = command(data, str(out), "--ray", ray_local, "--actors", "2")
    args[args.index("--targets") + 1] = url
    assert main(args) == 1
    assert f"{COUNT} targets in {url}: {COUNT - 1} written, 0 already done, 1 failed" in capsys.readouterr().out
    assert len(fed) == 1
    files = local_files(out)
    compared = [n for n in single if n.split("/")[0] in ("masks", "labels", "overlays", "instances", "yolo")]
    compared = [n for n in compared if not n.startswith("yolo/images/")] + ["annotations.json", "manifest.json"]
    assert len(compared) > 4 * (COUNT - 1)
    assert {n: files.get(n) for n in compared} == {n: single[n] for n in compared}
    assert main(args) == 1
    assert f"0 written, {COUNT - 1} already done, 1 failed" in capsys.readouterr().out


ALL_FORMATS = ["--format", "png", "indexed", "coco", "yolo", "instances", "overlay", "labelstudio"]


@pytest.mark.parametrize("layout", ["file", "dataset"])
def test_every_format_on_s3(data, s3_server, layout, capsys):
    """Every format (and both COCO layouts) written to s3://... (one process) has the bytes of the
    same run into a local folder, run.json and failures included; a re-run finds everything done."""
    from sansa import fs

    targets = data / f"few-{layout}"
    targets.mkdir()
    for name in ("t00.png", "t01.png", "zz_broken.png"):
        (targets / name).write_bytes((data / "targets" / name).read_bytes())

    def args(out: str) -> list[str]:
        line = command(data, out, "--coco-layout", layout)
        line[line.index("--targets") + 1] = str(targets)
        start = line.index("--format")
        return [*line[:start], *ALL_FORMATS, *line[start + len(FORMATS) :]]

    url = s3_server.bucket("formats") + f"/{layout}"
    assert main(args(str(data / f"formats-{layout}"))) == 1
    assert main(args(url)) == 1
    store, root = fs.filesystem(url)
    store.invalidate_cache()
    on_s3 = {path[len(root) + 1 :]: store.cat_file(path) for path in sorted(store.find(root))}
    local = local_files(data / f"formats-{layout}")
    assert tree(on_s3) == tree(local)
    assert run_json(on_s3) == run_json(local)
    assert {"labelstudio/tasks.json", "failures.json", "classes.json"} <= set(on_s3)
    capsys.readouterr()
    assert main(args(url)) == 1
    assert "0 written, 2 already done, 1 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_store_dies_mid_run(data, single, s3_server):
    """The S3 server stops answering mid-run: the run ends with one line naming the store (exit 2,
    no traceback, no memory address); run again against a live server, it resumes and writes the
    bytes of an uninterrupted run."""
    from moto.server import ThreadedMotoServer
    from scale_fixtures import _free_port

    from sansa import fs

    port = _free_port()
    dying = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # shares the session's buckets
    dying.start()
    url = s3_server.bucket("dying") + "/run"
    env = {**_env(), "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "sansa", *command(data, url)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    store, root = fs.filesystem(url)

    def parts() -> int:
        store.invalidate_cache()
        return len(store.find(f"{root}/.sansa/parts"))

    try:
        assert _wait(lambda: parts() >= 4 or None, proc=driver), "no progress"
    finally:
        dying.stop()
    err = driver.communicate(timeout=300)[1]
    assert driver.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and " at 0x" not in err
    assert last.startswith(f"sansa segment: error: {url}/") and "cannot write" in last, last
    assert parts() < COUNT - 1, "the server must die mid-run"
    assert main(command(data, url)) == 1
    store.invalidate_cache()
    files = {path[len(root) + 1 :]: store.cat_file(path) for path in sorted(store.find(root))}
    assert tree(files) == tree(single)


def _env() -> dict[str, str]:
    """This process's environment with this checkout's ``src`` first on ``PYTHONPATH``."""
    src = str(Path(__file__).parents[1] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def test_actor_killed_mid_run(data, single, ray_local, actor_handles):
    """An actor ray.kill-ed mid-run is restarted and its batch retried: the final files equal an
    uninterrupted run's, nothing is lost and no partial file is left."""
    import ray
    from scale_fixtures import announce

    from sansa.cli.segment import job_from_args
    from sansa.labeling import run

    out = data / "killed-actor"
    job = job_from_args(build_parser().parse_args(command(data, str(out))))
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(run=run(job, executor="ray", address=ray_local, actors=2, on_actor_start=announce))
    )
    runner.start()
    parts = out / ".sansa" / "parts"
    handles = _wait(lambda: ray.get(actor_handles.take.remote()) or None)
    written = _wait(lambda: len(list(parts.glob("*.json"))) >= 6 or None)
    assert written and len(list(parts.glob("*.json"))) < COUNT - 1, "the kill must land mid-run"
    ray.kill(handles[0], no_restart=False)
    runner.join(timeout=300)
    assert not runner.is_alive() and result["run"].exit_code == 1
    assert tree(local_files(out)) == tree(single)
    assert not list(out.rglob("*.sansa-tmp"))


def test_driver_killed_then_restarted(data, single, ray_local):
    """The driver (a `sansa segment --ray` process) SIGKILL-ed mid-run leaves only whole files;
    the same command run again finishes with the bytes of an uninterrupted run."""
    out = data / "killed-driver"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "sansa", *command(data, str(out), "--ray", ray_local, "--actors", "2")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parts = out / ".sansa" / "parts"
        assert _wait(lambda: len(list(parts.glob("*.json"))) >= 6 or None, proc=driver), "no progress"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    killed = local_files(out)
    assert len([n for n in killed if n.startswith(".sansa/parts/")]) < COUNT - 1, "the kill must land mid-run"
    for name, content in killed.items():  # whatever is at a final path is whole
        if name.endswith(".png") or name.endswith(".jpg"):
            Image.open(out / name).load()
        elif name.endswith(".json") and "/parts/" in name:
            json.loads(content)
    assert main(command(data, str(out), "--ray", ray_local, "--actors", "2")) == 1
    assert tree(local_files(out)) == tree(single)
    assert not list(out.rglob("*.sansa-tmp"))


def _wait(check, timeout: float = 240.0, proc: subprocess.Popen | None = None):
    """Poll ``check`` until it returns something truthy (returned), or ``None`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--actors", "2"], "--actors: only with --ray"),
        (["--max-failures", "2", "--cpus-per-actor", "2"], "--cpus-per-actor/--max-failures: only with --ray"),
        (["--ray", "--actors", "0"], "--actors: must be N or MIN-MAX with 1 <= MIN <= MAX, got 0"),
        (["--ray", "--actors", "4-2"], "--actors: must be N or MIN-MAX with 1 <= MIN <= MAX, got 4-2"),
        (["--ray", "--actors", "many"], "--actors many: expected N or MIN-MAX (e.g. 4 or 1-8)"),
        (["--ray", "--gpus-per-actor", "-1"], "--gpus-per-actor: must be 0 or more, got -1.0"),
        (["--ray", "--memory-per-actor", "-1"], "--memory-per-actor: must be 0 or more, got -1.0"),
        (["--ray", "--worker-env", "NO_SUCH_VARIABLE_HERE"], "--worker-env NO_SUCH_VARIABLE_HERE: not set here"),
        (["--ray", "--runtime-env", "{oops"], "--runtime-env: not a JSON object or a JSON/YAML file"),
    ],
)
def test_bad_ray_options(data, extra, message, capsys):
    """A bad Ray option is one line naming it (exit 2), before anything is written or Ray is joined."""
    assert main(command(data, str(data / "bad"), *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (data / "bad").exists()


def test_what_ships(tiny_predictor, tiny_model):
    """Actors get the references' memory (CPU tensors, no full-size mask or logits) and segment
    exactly as the predictor that encoded them; a task's batch is paths, names and stems only."""
    from sansa import SansaPredictor
    from sansa.labeling.batches import Batch
    from sansa.labeling.ray import shippable
    from sansa.targets import Target

    mask = np.zeros((48, 64), bool)
    mask[10:30, 12:40] = True
    reference = shippable(tiny_predictor.add_reference(scene(0), mask=mask, label="thing"))
    assert reference.mask.size == reference.logits.size == 0
    assert reference.memory.features.device.type == "cpu"
    actor_side = SansaPredictor(tiny_model, device="cpu")
    actor_side.add_encoded(reference)
    expected, got = tiny_predictor.segment(scene(5)), actor_side.segment(scene(5))
    np.testing.assert_array_equal(expected.label_map, got.label_map)
    row = json.dumps(Batch(3, [Target("/data/t.png", "t.png", "t")], [True]).to_dict())
    assert json.loads(row) == {
        "index": 3,
        "targets": [{"path": "/data/t.png", "name": "t.png", "stem": "t"}],
        "write": [True],
    }


class FlakyWriter:
    """A job's writer whose writes of some targets fail: ``flaky`` names fail that many times first."""

    def __init__(self, writer, flaky: dict[str, int]) -> None:
        self.writer, self.flaky, self.tries = writer, dict(flaky), {}

    def write(self, name, *args, **kwargs):
        self.tries[name] = self.tries.get(name, 0) + 1
        if self.tries[name] <= self.flaky.get(name, 0):
            raise ConnectionResetError(f"store reset writing {name} at 0x7f00deadbeef")
        return self.writer.write(name, *args, **kwargs)


@pytest.mark.parametrize(
    ("flaky", "written", "not_written"),
    [
        ({"t01.png": 2}, ["t00.png", "t01.png", "t02.png", "t03.png"], []),  # retried, then written
        ({"t02.png": 99}, ["t00.png", "t01.png"], ["t02.png", "t03.png"]),  # its batch given up
    ],
)
def test_actor_retries_then_lists_failures(data, tmp_path, monkeypatch, flaky, written, not_written):
    """An actor tries a block's unfinished batches again after an error; what still fails becomes
    failure entries (one line, no memory address) counted against --max-failures."""
    from sansa.cli.segment import job_from_args
    from sansa.labeling import engine
    from sansa.labeling import ray as label_ray

    monkeypatch.setattr(label_ray, "BACKOFF_S", 0.0)
    job = job_from_args(build_parser().parse_args(command(data, str(tmp_path / "out"))))
    plan = engine.prepare(job)
    try:
        actor = _actor_here(job, plan)
        actor.writer = FlakyWriter(actor.writer, flaky)
        outcomes = actor.label(_four_targets(data))
    finally:
        plan.close()
    assert sorted(n for o in outcomes for n in o.written) == written
    failures = [f for o in outcomes for f in o.failures]
    assert [f["target"] for f in failures] == not_written
    assert sum(o.errors for o in outcomes) == len(not_written)
    for failure in failures:
        assert failure["error"] == "not written: ConnectionResetError: store reset writing t02.png"


def _actor_here(job, plan):
    """A :class:`LabelActor` built in this process (no Ray), holding ``plan``'s references."""
    from sansa.labeling import engine
    from sansa.labeling import ray as label_ray

    predictor = job.model.load()
    for reference in engine.encode_references(predictor, plan):
        predictor.add_encoded(reference)
    actor = label_ray.LabelActor.__new__(label_ray.LabelActor)
    actor.predictor, actor.inputs_digest, actor.lanes = predictor, plan.inputs_digest, 1
    actor.writer = engine.writer_for(job, worker=True)
    return actor


def _four_targets(data: Path) -> list:
    """Batches 0 and 1 of 2 targets each: t00 .. t03."""
    from sansa.labeling.batches import Batch
    from sansa.targets import Target

    names = ["t00.png", "t01.png", "t02.png", "t03.png"]
    return [
        Batch(i, [Target(str(data / "targets" / n), n, n[:-4]) for n in names[2 * i : 2 * i + 2]], [True, True])
        for i in range(2)
    ]


def test_an_actor_compacts_its_block(data, tmp_path, monkeypatch):
    """At the end of a block an actor moves the block's records into one shard (a resume reads an
    object per block, not per target), and forgets them; a resume finds each target done."""
    from sansa.cli.segment import job_from_args
    from sansa.export import shards
    from sansa.labeling import engine

    monkeypatch.setattr(shards, "SHARD_TARGETS", 4)
    job = job_from_args(build_parser().parse_args(command(data, str(tmp_path / "out"))))
    plan = engine.prepare(job)
    try:
        actor = _actor_here(job, plan)
        rows = {"batch": np.array([json.dumps(b.to_dict()) for b in _four_targets(data)])}
        assert len(actor(rows)["outcome"]) == 2
    finally:
        plan.close()
    state = tmp_path / "out" / ".sansa"
    assert not list((state / "parts").glob("*.json")) and len(shards.list_shards(state / "records")) == 1
    assert not actor.writer.names()  # its memory holds no record once they are in a shard
    resumed = engine.prepare(job)
    resumed.close()
    assert resumed.skipped == ["t00.png", "t01.png", "t02.png", "t03.png"]


def test_failure_budget():
    """Past --max-failures the run stops with one line naming the first target not written."""
    from sansa.errors import SansaError
    from sansa.labeling.pipeline import Outcome
    from sansa.labeling.ray import within_budget

    def lost(name: str) -> Outcome:
        failure = {"target": name, "path": f"/d/{name}", "error": "not written: OSError: gone"}
        return Outcome(failures=[failure], errors=1)

    outcomes = [Outcome(written=["a"]), lost("b"), Outcome(written=["c"]), lost("d")]
    assert len(list(within_budget(outcomes, 2))) == 4
    seen = []
    with pytest.raises(SansaError) as caught:
        seen.extend(within_budget(outcomes, 1))
    assert len(seen) == 3
    assert str(caught.value) == (
        "2 target(s) could not be written (more than max_failures=1): d: not written: OSError: gone; "
        "finished targets are kept, run the same command again to resume"
    )


def test_a_target_no_block_accounts_for_is_a_failure():
    """A target handed out but in no outcome (its block lost with the read task that took it from
    the queue) is a failure of the run, counted against the budget: never a silent success."""
    from sansa.labeling.pipeline import RunOutcome
    from sansa.labeling.ray import account_for_every_target
    from sansa.spill import NameSet
    from sansa.targets import Target

    targets = [Target(f"/d/{name}", name) for name in ("a", "b", "c", "d", "e")]
    failed = {"target": "c", "path": "/d/c", "error": "not a readable image"}
    outcome = RunOutcome(written=NameSet(["a"]), skipped=NameSet(["b"]), failures=[failed])
    account_for_every_target(outcome, targets)
    lost = "not written: its block was lost with a Ray worker"
    assert outcome.failures == [failed, *({"target": n, "path": f"/d/{n}", "error": lost} for n in ("d", "e"))]
    assert outcome.errors == 2 and outcome.written == ["a"]
    account_for_every_target(outcome, targets)  # every target now accounted for: nothing added
    assert len(outcome.failures) == 3 and outcome.errors == 2


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (
            "auth",
            "--ray 10.0.0.5:6379: the cluster requires a token (RAY_AUTH_MODE=token) and this process has none "
            "or another: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) as on the cluster",
        ),
        (
            "gone",
            "--ray 10.0.0.5:6379: cannot join a Ray cluster (Could not find any running Ray instance); "
            "start one with `ray start --head`, or leave the address out for a local instance",
        ),
    ],
)
def test_cluster_checked_before_the_output(data, monkeypatch, capsys, raised, message):
    """A cluster that cannot be joined (none there, or one wanting a token this process lacks) is one
    line naming the cause, exit 2, and the output folder is never created."""
    import ray

    def refuse(*args, **kwargs):
        if raised == "auth":
            raise ray.exceptions.AuthenticationError("Authentication failed: InvalidAuthToken")
        raise ConnectionError("Could not find any running Ray instance\nmore lines")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    out = data / f"no-cluster-{raised}"
    assert main(command(data, str(out), "--ray", "10.0.0.5:6379")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sansa segment: error: {message}"
    assert not out.exists()


def test_library_messages_name_library_parameters(monkeypatch):
    """The library names its own parameters (``address``, ``executor``), never the CLI's ``--ray``
    (the CLI writes them as ``--ray``: test_cluster_checked_before_the_output)."""
    import builtins

    import ray

    from sansa.errors import SansaError
    from sansa.labeling.ray_cluster import RayOptions, connect, import_ray

    def refuse(*args, **kwargs):
        raise ray.exceptions.AuthenticationError("Authentication failed: InvalidAuthToken")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(SansaError, match=r"^address 10\.0\.0\.5:6379: the cluster requires a token"):
        connect(RayOptions(address="10.0.0.5:6379"))
    real_import = builtins.__import__

    def without_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ray)
    with pytest.raises(SansaError, match=r"^executor: Ray is not installed: pip install 'sansa-segment\[scale\]'$"):
        import_ray()


def test_worker_settings_stay_out_of_run_json(data, monkeypatch):
    """--worker-env and --runtime-env (which may hold credentials) reach the Ray options but are
    never recorded in the job's options (run.json); NAME alone takes the driver's value."""
    from sansa.cli.segment import _executor, job_from_args

    monkeypatch.setenv("SANSA_TEST_SECRET", "s3cr3t")
    args = build_parser().parse_args(
        command(
            data,
            str(data / "unused"),
            "--ray",
            "--worker-env",
            "SANSA_TEST_SECRET",
            "--worker-env",
            "OTHER=x",
            "--runtime-env",
            '{"env_vars": {"TOKEN": "t0k"}}',
        )
    )
    from sansa.labeling.ray_cluster import RayOptions

    executor = _executor(args)
    options = RayOptions(**{k: v for k, v in executor.items() if k != "executor"})
    assert options.job_runtime_env() == {"env_vars": {"TOKEN": "t0k", "SANSA_TEST_SECRET": "s3cr3t", "OTHER": "x"}}
    recorded = json.dumps(job_from_args(args).options)
    assert "s3cr3t" not in recorded and "t0k" not in recorded and "SANSA_TEST_SECRET" not in recorded


# -- real clusters of separate nodes (tests/ray_nodes.py, a child process) ----------------------------
TOKEN = "sansa-test-token-0123456789abcdef"


@contextlib.contextmanager
def ray_nodes(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """A local cluster of separate nodes (``tests/ray_nodes.py ARGS``): ``(GCS address, process)``;
    stopped (every node) when the block ends."""
    nodes = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "ray_nodes.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**_without_ray_auth(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **(env or {})},
    )
    try:
        address = nodes.stdout.readline().strip()
        assert address, "the cluster did not start"
        yield address, nodes
    finally:
        nodes.stdin.close()
        nodes.wait(timeout=120)


def _without_ray_auth() -> dict[str, str]:
    """This process's environment without Ray's auth settings: the session's local Ray instance
    (``ray_local``) sets ``RAY_AUTH_MODE=token`` here, Ray 2.60's default for a new cluster."""
    return {k: v for k, v in _env().items() if not k.startswith("RAY_AUTH")}


def _without_token(home: Path) -> dict[str, str]:
    """This process's environment without any Ray token (none in ``~/.ray`` either: ``home``)."""
    return {**_without_ray_auth(), "HOME": str(home)}


@pytest.mark.slow
def test_token_cluster_without_the_token(data, tmp_path):
    """A real token-authenticated cluster (RAY_AUTH_MODE=token on its head) joined without the token,
    or with another one: one line naming the cause, exit 2, the output folder never created."""
    with ray_nodes(env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}) as (address, _):
        runs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "sansa", *command(data, str(tmp_path / name), "--ray", address)],
                env={**_without_token(tmp_path), **extra},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, extra in (("none", {}), ("another", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN[::-1]}))
        }
        results = {name: (run.wait(timeout=180), run.communicate()) for name, run in runs.items()}
    for name, (code, (_, err)) in results.items():
        assert err.splitlines() == [
            f"sansa segment: error: --ray {address}: the cluster requires a token (RAY_AUTH_MODE=token) and this "
            "process has none or another: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) as on "
            "the cluster"
        ], name
        assert code == 2 and not (tmp_path / name).exists()


def records_written(out: Path) -> int:
    """Targets recorded done in ``out``: loose record files and the lines of compacted shards."""
    state = out / ".sansa"
    shards = sum(len(p.read_bytes().splitlines()) for p in (state / "records").glob("*.jsonl"))
    return len(list((state / "parts").glob("*.json"))) + shards


@pytest.mark.slow
def test_node_lost_mid_run(data, single, tmp_path):
    """A two-node cluster (a head and a worker node of 1 CPU each, 2 actors): the worker node is lost
    mid-run (its processes SIGKILL-ed) and replaced; the run completes with the bytes of one process."""
    out = tmp_path / "out"
    with ray_nodes("--workers", "1") as (address, nodes):
        driver = subprocess.Popen(
            [sys.executable, "-m", "sansa", *command(data, str(out), "--ray", address, "--actors", "2")],
            env=_without_token(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        written = _wait(lambda: records_written(out) >= 4 or None, proc=driver)
        if not written:  # the driver ended before 4 records were written: say why
            pytest.fail(f"the driver exited {driver.wait()}: {driver.communicate()[1][-2000:]}")
        assert records_written(out) < COUNT - 1, "the loss must land mid-run"
        nodes.stdin.write("lose\n")
        nodes.stdin.flush()
        assert nodes.stdout.readline().strip() == "replaced"
        code, (_, err) = driver.wait(timeout=300), driver.communicate()
    assert code == 1, err[-2000:]  # the unreadable target, as in one process
    files = local_files(out)
    assert tree(files) == tree(single)
    assert run_json(files) == run_json(single)
    assert not list(out.rglob("*.sansa-tmp"))
