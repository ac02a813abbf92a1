"""``sansa.labeling``: the job record, and a run driven step by step as a distributed runner does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import scenes
from PIL import Image
from scenes import write_reference

from sansa import labeling
from sansa.devices import CPU_FLAGS_ENV
from sansa.errors import SansaError
from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry
from sansa.records import Prompt

MODEL = ModelSpec(backbone="test_tiny", random_weights=True, device="cpu")
FORMATS = ("png", "indexed", "coco", "yolo", "overlay")


def scene(seed: int) -> np.ndarray:
    """The shared test photo with a bright square only, RGB ``uint8 [48, 64, 3]``."""
    return scenes.scene(seed, disc=False)


@pytest.fixture()
def folder(tmp_path) -> Path:
    """``ref.png`` with ``mask.png``; ``targets/t0..t4.png``."""
    write_reference(tmp_path, "mask.png", disc=False)
    (tmp_path / "targets").mkdir()
    for i in range(5):
        Image.fromarray(scene(i + 1)).save(tmp_path / "targets" / f"t{i}.png")
    return tmp_path


def job_for(folder: Path, out: str, **changes) -> Job:
    refs = [
        ReferenceEntry(str(folder / "ref.png"), "thing", Prompt.create(mask=folder / "mask.png")),
        ReferenceEntry(
            str(folder / "ref.png"), "disc", Prompt.create(box=[40, 20, 56, 40], points=[[5, 5]], labels=[0])
        ),
    ]
    values = {
        "references": refs,
        "targets": [str(folder / "targets")],
        "out": str(folder / out),
        "export": ExportOptions(formats=FORMATS),
        "model": MODEL,
        "batch_size": 2,
        **changes,
    }
    return Job(**values)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but ``run.json`` (its times differ)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt.create(points=[[1, 2], [3.5, 4]], labels=[1, 0]),
        Prompt.create(box=[1, 2, 30, 40]),
        Prompt.create(scribble=[[[1, 1], [5, 5]], [[9, 9], [12, 3]]]),
        Prompt.create(points=[[3, 3]], box=[0, 0, 9, 9], scribble=[[1, 1], [2, 2]]),
        Prompt.create(mask=np.eye(5, 7, dtype=bool)),
    ],
    ids=["points", "box", "scribble", "mixed", "mask"],
)
def test_job_record_survives_json(prompt):
    job = Job(
        [ReferenceEntry("r.png", "cat", prompt, "refs.yaml: reference 1")],
        ["a/", "b/*.jpg"],
        "out",
        ExportOptions(("coco",), coco_polygons=True),
        ModelSpec(model="sansa-universal"),
        batch_size=3,
    )
    again = Job.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again.to_dict() == job.to_dict()
    for key in ("points", "labels", "box", "scribble", "mask"):
        a, b = getattr(prompt, key), getattr(again.references[0].prompt, key)
        assert (a is None and b is None) or (np.array_equal(a, b) and a.dtype == b.dtype), key
    assert again.references[0].prompt.type is prompt.type
    assert [s.tolist() for s in again.references[0].prompt.strokes] == [s.tolist() for s in prompt.strokes]
    assert all(s.dtype == np.float32 for s in again.references[0].prompt.strokes)
    assert again.export.parsed_formats()[0] == "coco" and again.labels == ["cat"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"references": []}, "references: no reference given"),
        ({"targets": []}, "targets: give at least one"),
        ({"batch_size": 0}, "batch_size: must be at least 1"),
        ({"export": ExportOptions(("tiff",))}, "unknown format 'tiff'"),
        ({"targets": ["nowhere"]}, "targets nowhere: no such file or folder"),
    ],
)
def test_bad_jobs_are_refused_before_the_folder_is_made(folder, changes, message):
    with pytest.raises(SansaError, match=message):
        labeling.run(job_for(folder, "out", **changes))
    assert not (folder / "out").exists()


@pytest.mark.slow
def test_steps_on_two_workers_give_the_bytes_of_one_run(folder):
    """As a Ray runner does it: the driver prepares and encodes the references once; two workers,
    each with its own predictor given the encoded references, write batches in any order (the job
    and batches cross as JSON); the driver assembles. Same bytes as ``run``, then nothing left."""
    whole = labeling.run(job_for(folder, "whole"))
    assert whole.outcome.written == [f"t{i}.png" for i in range(5)] and whole.exit_code == 0

    job = job_for(folder, "steps")
    plan = labeling.prepare(job)
    try:
        assert [b.index for b in plan.batches] == [0, 1, 2] and plan.skipped == []
        driver = job.model.load()
        references = labeling.encode_references(driver, plan)
        files = labeling.save_reference_pictures(plan, references)
        outcome = labeling.Outcome()
        workers = [job.model.load(), job.model.load()]
        for worker in workers:
            for reference in references:
                worker.add_encoded(reference)
        shipped = Job.from_dict(json.loads(json.dumps(job.to_dict())))
        for i, batch in enumerate(reversed(plan.batches)):
            batch = labeling.Batch.from_dict(json.loads(json.dumps(batch.to_dict())))
            writer = labeling.writer_for(shipped, worker=True)
            outcome.add(labeling.process_batch(workers[i % 2], writer, batch, plan.inputs_digest))
        result = labeling.finalise(plan, outcome, references, files, "cpu", reload=True)
    finally:
        plan.close()
    assert sorted(result.outcome.written) == whole.outcome.written
    assert tree(folder / "steps") == tree(folder / "whole")
    again = labeling.prepare(job)
    again.close()
    assert again.batches == [] and again.skipped == [f"t{i}.png" for i in range(5)]


def test_model_spec_refuses_mixed_sources():
    with pytest.raises(SansaError, match="give one or the other"):
        ModelSpec(model="x", sam2_checkpoint="y.pt").load()
    with pytest.raises(SansaError, match="adapter or backbone without sam2_checkpoint"):
        ModelSpec(adapter="a.pth").load()
    assert ModelSpec(backbone="test_tiny", random_weights=True).identity() == {
        "backbone": "test_tiny",
        "random_weights": True,
    }


# -- the pipelined loop --------------------------------------------------------------------------
@pytest.mark.slow
def test_pipelined_loop_gives_the_bytes_of_the_sequential_one_also_after_a_kill(folder, monkeypatch):
    from sansa.export import FolderWriter

    (folder / "targets" / "bad.png").write_bytes(b"not a png")  # a failure entry in both
    sequential = labeling.run(job_for(folder, "sequential"), pipelined=False)
    original, calls = FolderWriter.write, []

    def dies_at_the_fourth_write(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FolderWriter, "write", dies_at_the_fourth_write)
    with pytest.raises(KeyboardInterrupt):
        labeling.run(job_for(folder, "pipelined"))
    monkeypatch.setattr(FolderWriter, "write", original)
    assert "annotations.json" not in tree(folder / "pipelined")
    resumed = labeling.run(job_for(folder, "pipelined"))
    assert tree(folder / "pipelined") == tree(folder / "sequential")
    assert [f["target"] for f in resumed.outcome.failures] == [f["target"] for f in sequential.outcome.failures]
    assert [*resumed.outcome.written, *resumed.outcome.skipped] != [] and resumed.exit_code == 1


@pytest.mark.slow
def test_pipelined_loop_holds_at_most_its_queues(folder, monkeypatch, prefetch=1, behind=1):
    """Decoded batches waiting for the model and batches waiting for the writers never exceed the
    queue sizes, however many targets there are (memory flat in targets)."""
    from sansa.export import FolderWriter
    from sansa.labeling import pipeline

    for i in range(5, 8):
        Image.fromarray(scene(i + 1)).save(folder / "targets" / f"t{i}.png")
    job = job_for(folder, "out", batch_size=1, export=ExportOptions(("png",)))
    counts = {"read": 0, "segmented": 0, "written": 0, "ahead": 0, "behind": 0}
    real_read, real_write = pipeline.read_batch, FolderWriter.write

    def read(*args):
        result = real_read(*args)
        counts["read"] += 1
        counts["ahead"] = max(counts["ahead"], counts["read"] - counts["segmented"])
        return result

    def write(self, *args, **kwargs):
        counts["behind"] = max(counts["behind"], counts["segmented"] - counts["written"])
        result = real_write(self, *args, **kwargs)
        counts["written"] += 1
        return result

    monkeypatch.setattr(pipeline, "read_batch", read)
    monkeypatch.setattr(FolderWriter, "write", write)
    plan = labeling.prepare(job)
    try:
        predictor = job.model.load()
        labeling.encode_references(predictor, plan)
        real_segment = predictor.segment_encoded

        def segment(*args):
            counts["segmented"] += 1
            return real_segment(*args)

        predictor.segment_encoded = segment
        outcomes = list(
            pipeline.pipelined_batches(
                predictor, plan.writer, plan.batches, plan.inputs_digest, prefetch=prefetch, behind=behind
            )
        )
    finally:
        plan.close()
    assert [o.written for o in outcomes] == [[f"t{i}.png"] for i in range(8)]
    assert counts["ahead"] <= prefetch + 1 and counts["behind"] <= behind + 1, counts


def test_a_reference_file_is_read_once_for_its_pixels_and_its_hash(folder, monkeypatch):
    import builtins
    import hashlib
    import io

    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # pathlib's
    job = job_for(folder, "out")
    loaded = labeling.load_references(job)
    reference = str(folder / "ref.png")
    assert opened.count(reference) == 2  # two references of one image: one read each, none for the hash
    assert loaded[0].sha256 == hashlib.sha256((folder / "ref.png").read_bytes()).hexdigest()
    assert loaded[0].pixels.shape == (48, 64, 3)


@pytest.mark.slow
@pytest.mark.parametrize("pipelined", [True, False])
def test_both_loops_encode_with_the_predictors_precision(folder, monkeypatch, pipelined):
    """A bf16 run encodes every target under bf16 autocast in either loop (the pipelined loop once
    called the model directly and silently ran fp32): its outputs equal a bf16 predictor's own."""
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx512_bf16")  # this 'CPU' has native bf16
    model = dataclasses.replace(MODEL, precision="bf16")
    job = job_for(folder, "bf16", model=model, export=ExportOptions(formats=("indexed",)), batch_size=1)
    labeling.run(job, pipelined=pipelined)
    bf16, fp32 = model.load(), MODEL.load()
    for predictor in (bf16, fp32):
        for entry in job.references:
            predictor.add_reference(entry.image, prompt=entry.prompt, label=entry.label)
    differs = False
    for i in range(5):
        expected = bf16.segment(scene(i + 1)).label_map
        written = np.asarray(Image.open(folder / "bf16" / "labels" / f"t{i}.png"))
        np.testing.assert_array_equal(written, expected)
        differs |= bool((fp32.segment(scene(i + 1)).label_map != expected).any())
    assert differs  # else this test could not tell bf16 from fp32
