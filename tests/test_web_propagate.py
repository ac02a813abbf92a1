"""The web app's propagation, pipelined (targets read ahead off the service lock, results saved
behind on the saver thread): the same results as segmenting each target one after the other,
within its queues, and its errors reported in the job's status. Tiny random model, no HTTP."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scenes
from PIL import Image

pytest.importorskip("fastapi")

from sansa.web.folder import ImageFolder  # noqa: E402
from sansa.web.propagate import PropagationJob  # noqa: E402
from sansa.web.schema import JobState, PromptIn, ReferenceRequest  # noqa: E402
from sansa.web.service import SansaService  # noqa: E402

BOX = [12, 10, 40, 30]
SIZES = {"t0.png": (64, 48), "t1.png": (56, 40), "t2.png": (48, 64), "t3.png": (64, 48)}  # (width, height)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """``ref.png``, four targets of three sizes, and ``t9.png``: its header reads, its pixels do not."""
    root = tmp_path_factory.mktemp("propagate")
    Image.fromarray(scenes.scene(0)).save(root / "ref.png")
    for seed, (name, size) in enumerate(SIZES.items(), start=1):
        Image.fromarray(scenes.scene(seed, size)).save(root / name)
    whole = io.BytesIO()
    Image.fromarray(scenes.scene(9)).save(whole, format="PNG")
    (root / "t9.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return root


def new_service(tiny_model, folder: Path) -> SansaService:
    from sansa import SansaPredictor

    return SansaService(SansaPredictor(tiny_model, device="cpu"), ImageFolder(folder), cache_size=2)


def session_with_a_box(service: SansaService):
    session = service.create_session()
    service.add_class(session, "shape")
    service.put_reference(session, ReferenceRequest(image="ref.png", label="shape", prompt=PromptIn(box=BOX)))
    return session


def propagate(service: SansaService, session, **queues) -> PropagationJob:
    job = PropagationJob(service, session, service.targets(session), **queues).start()
    job.join(timeout=120)
    return job


@pytest.mark.parametrize(
    ("prefetch", "behind", "cached"),
    [
        (2, 2, ()),  # the defaults
        (1, 0, ("t1.png",)),  # one read ahead, each save awaited; t1's encoding already cached
        (3, 1, ("t0.png", "t3.png")),  # more reads ahead than the cache holds encodings
    ],
)
def test_propagated_results_equal_segmenting_each_target_alone(tiny_model, folder, prefetch, behind, cached):
    """Every readable target's label map, labels and scores (in memory and in its saved file) are
    those of segmenting it alone on a fresh service; the unreadable one is a failure entry."""
    service = new_service(tiny_model, folder)
    session = session_with_a_box(service)
    for name in cached:
        service.segment(session, name)
    job = propagate(service, session, prefetch=prefetch, behind=behind)
    assert (job.state, job.done, job.error) == (JobState.DONE, 5, None)
    assert list(job.failed) == ["t9.png"] and "not a readable image" in job.failed["t9.png"]
    saved = {m.name: m for m in service.store.load_maps(session.id, "results", service.image_shapes())[0]}
    assert sorted(saved) == sorted(session.results) == sorted(SIZES)
    alone = new_service(tiny_model, folder)
    for name, (width, height) in SIZES.items():
        expected, result = alone.segment(session, name), session.results[name]
        assert result.shape == (height, width)
        np.testing.assert_array_equal(result.label_map, expected.label_map)
        np.testing.assert_array_equal(saved[name].label_map, expected.label_map)
        scores = {label: p.score for label, p in expected.predictions.items()}
        assert result.labels == saved[name].labels == expected.labels
        assert result.scores == saved[name].scores == scores


def test_a_failing_save_fails_the_job_with_its_error(tiny_model, folder, monkeypatch):
    """A results file that cannot be written (full disk) ends the job as failed, its status
    carrying the error's one line."""
    from sansa.errors import OutputError

    service = new_service(tiny_model, folder)
    session = session_with_a_box(service)

    def full_disk(sid, kind, stored):
        raise OutputError(f"{stored.name}.npz: cannot write (No space left on device)")

    monkeypatch.setattr(service.store, "save_map", full_disk)
    job = propagate(service, session)
    assert job.state == JobState.FAILED and job.error == "t0.png.npz: cannot write (No space left on device)"


def test_reads_ahead_and_saves_behind_within_its_queues(tiny_model, folder, monkeypatch, prefetch=1, behind=1):
    """Targets read but not yet segmented, and results segmented but not yet saved, never exceed
    the queue sizes (plus the one in hand), and every result is saved by the end."""
    service = new_service(tiny_model, folder)
    session = session_with_a_box(service)
    counts = {"read": 0, "segmented": 0, "saved": 0, "ahead": 0, "behind": 0}
    real_prepare, real_segment, real_save = service.prepare, service.segment, service.store.save_map

    def prepare(name):
        prepared = real_prepare(name)
        counts["read"] += 1
        counts["ahead"] = max(counts["ahead"], counts["read"] - counts["segmented"])
        return prepared

    def segment(*args, **kwargs):
        counts["segmented"] += 1
        return real_segment(*args, **kwargs)

    def save_map(*args):
        counts["behind"] = max(counts["behind"], counts["segmented"] - counts["saved"])
        real_save(*args)
        counts["saved"] += 1

    monkeypatch.setattr(service, "prepare", prepare)
    monkeypatch.setattr(service, "segment", segment)
    monkeypatch.setattr(service.store, "save_map", save_map)
    job = propagate(service, session, prefetch=prefetch, behind=behind)
    assert job.state == JobState.DONE and counts["saved"] == counts["segmented"] == len(SIZES)
    assert counts["ahead"] <= prefetch + 1 and counts["behind"] <= behind + 1, counts


def test_a_cancelled_job_saves_what_it_segmented(tiny_model, folder, monkeypatch):
    """Cancelled after its first target, the job stops there (cancelled), and the results it
    made are in memory and saved."""
    service = new_service(tiny_model, folder)
    session = session_with_a_box(service)
    real_segment, jobs = service.segment, []

    def segment_then_cancel(*args, **kwargs):
        jobs[0].cancel()
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(service, "segment", segment_then_cancel)
    jobs.append(PropagationJob(service, session, service.targets(session)))
    jobs[0].start().join(timeout=120)
    saved = [m.name for m in service.store.load_maps(session.id, "results", service.image_shapes())[0]]
    assert (jobs[0].state, jobs[0].done) == (JobState.CANCELLED, 1)
    assert saved == list(session.results) == ["t0.png"]
