"""The streamed target listing (sansa.listing): the names, order and root of find_targets, page by
page; a run starts on the first page, writes the bytes of an unstreamed run, and resumes after a
stop in the middle of the listing. Targets on a local S3 API server (moto, loopback)."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from pathlib import Path

import pytest
import scenes
from PIL import Image

from sansa import fs, labeling, listing
from sansa.errors import SansaError
from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry
from sansa.records import Prompt
from sansa.targets import find_targets

pytest.importorskip("s3fs")


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(scenes.scene(seed, disc=False)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def bucket(s3_server, request) -> str:
    """A fresh bucket named after the test."""
    return s3_server.bucket("stream-" + request.node.name.replace("_", "-").replace("[", "-").strip("]").lower()[:50])


def put(url: str, names: list[str]) -> None:
    store, root = fs.filesystem(url)
    store.pipe({f"{root}/{name}": png(i + 1) for i, name in enumerate(names)})


LAYOUT = [
    "photos/a.png",
    "photos/a/x.png",  # "a.png" < "a/x.png" in key order as in name order
    "photos/b.jpg",
    "photos/notes.txt",
    "photos/.hidden/d.png",
    "photos/sub/.e.png",
    "photos/sub/c.png",
    "photos/sub/deeper/f.png",
    "photos/labels/masks/t_thing.png",  # the output folder: never a target
    "photos/z\u00e9.png",  # beyond ASCII: UTF-8 key order is code point order
]


@pytest.mark.parametrize(
    ("folder", "recursive"),
    [("photos", True), ("photos", False), ("photos/sub", True), ("photos/a", True), ("photos/only", True)],
)
def test_pages_give_the_names_order_and_root_of_find_targets(bucket, monkeypatch, folder, recursive):
    """Pages of two keys: every target once, in find_targets' order, with its names and root
    (also when every target lies in one sub-folder, where the pages are held back), and what the
    listing told of its size and time."""
    put(bucket, [*LAYOUT, "photos/only/deep/g.png", "photos/only/deep/h.png"])
    monkeypatch.setattr(listing, "PAGE_KEYS", 2)
    inputs, out = [f"{bucket}/{folder}/"], f"{bucket}/photos/labels"
    stream = listing.stream_targets(inputs, recursive, exclude=out)
    stats: dict[str, dict[str, int]] = {}
    expected, root = find_targets(inputs, recursive, exclude=out, stats=stats)
    assert stream.streamed and stream.root == root
    pages = list(stream.pages)
    assert [(t, s) for page in pages for t, s in page] == [(t, stats[t.path]) for t in expected]
    if folder == "photos" and recursive:
        assert len(pages) > 1 and root == f"{bucket}/photos"
    if folder == "photos/only":
        assert root == f"{bucket}/photos/only/deep" and [t.name for t in expected] == ["g.png", "h.png"]


def test_without_images_is_refused_before_anything(bucket):
    put(bucket, ["photos/notes.txt"])
    with pytest.raises(SansaError, match="no images"):
        listing.stream_targets([f"{bucket}/photos"], True)


# -- runs ------------------------------------------------------------------------------------------
COUNT = 8
FIRST_PAGE = 4


@pytest.fixture()
def photos(bucket, tmp_path_factory) -> tuple[str, Path]:
    """``COUNT`` targets on the store and a local folder with the reference (the working folder)."""
    put(bucket, [f"photos/t{i}.png" for i in range(COUNT)])
    work = tmp_path_factory.mktemp("stream")
    scenes.write_reference(work, disc=False)
    return f"{bucket}/photos", work


def job(targets: str, out: Path) -> Job:
    return Job(
        references=[ReferenceEntry(str(out.parent / "ref.png"), "thing", Prompt.create(box=[12, 10, 40, 30]))],
        targets=[targets],
        out=str(out),
        export=ExportOptions(("png", "coco", "yolo")),
        model=ModelSpec(backbone="test_tiny", random_weights=True, device="cpu"),
        batch_size=1,
    )


def files(out: Path) -> dict[str, bytes]:
    """Every output file's bytes (the state folder's and run.json's times aside)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".sansa" not in p.parts and p.name != "run.json"
    }


def blocking_listing(monkeypatch, after_first_page) -> dict[str, bool]:
    """S3 listings that give the first ``FIRST_PAGE`` keys, then call ``after_first_page()``
    before giving the rest (a slow listing of a million-object prefix)."""
    real = listing.list_pages
    seen = {"after": False}

    def pages(store, path, recursive):
        found = real(store, path, recursive)
        if found is None:
            return None
        keys = [info for page in found for info in page]

        def paged():
            yield keys[:FIRST_PAGE]
            after_first_page()
            seen["after"] = True
            yield keys[FIRST_PAGE:]

        return paged()

    monkeypatch.setattr(listing, "list_pages", pages)
    return seen


def wait_for_a_written_target(out: Path, timeout: float = 300.0) -> bool:
    """Whether a target's mask appears in ``out`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((out / "masks").glob("*.png")):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def unstreamed(photos, monkeypatch) -> dict[str, bytes]:
    """The files of a run whose targets were listed whole first."""
    targets, work = photos
    with monkeypatch.context() as patch:
        patch.setattr(listing, "list_pages", lambda *args: None)
        result = labeling.run(job(targets, work / "whole"), lanes=1)
    assert result.exit_code == 0 and len(result.outcome.written) == COUNT
    return files(work / "whole")


@pytest.mark.slow
def test_work_starts_before_the_listing_ends_and_writes_the_same_bytes(photos, unstreamed, monkeypatch):
    targets, work = photos
    out = work / "streamed"
    started: list[bool] = []
    seen = blocking_listing(monkeypatch, lambda: started.append(wait_for_a_written_target(out)))
    result = labeling.run(job(targets, out), lanes=1)
    assert seen["after"] and started == [True]  # a target was written while the listing waited
    assert result.exit_code == 0 and len(result.outcome.written) == COUNT and len(result.targets) == COUNT
    assert [r.name for r in result.records] == [f"t{i}.png" for i in range(COUNT)]
    assert files(out) == unstreamed


@pytest.mark.slow
def test_a_stop_in_the_middle_of_the_listing_resumes_to_the_same_bytes(photos, unstreamed, monkeypatch):
    targets, work = photos
    out = work / "stopped"

    def stop() -> None:
        assert wait_for_a_written_target(out)
        raise KeyboardInterrupt  # the user's Ctrl-C while the listing goes on

    with monkeypatch.context() as patch:
        seen = blocking_listing(patch, stop)
        with pytest.raises(KeyboardInterrupt):
            labeling.run(job(targets, out), lanes=1)
    assert not seen["after"]
    resumed = labeling.run(job(targets, out), lanes=1)
    assert resumed.exit_code == 0 and resumed.outcome.skipped
    assert sorted([*resumed.outcome.written, *resumed.outcome.skipped]) == [f"t{i}.png" for i in range(COUNT)]
    assert files(out) == unstreamed


def test_plan_batches_and_stream_hand_each_batch_out_once(photos, monkeypatch):
    """``Plan.batches`` forms the rest of the listing; ``Plan.stream`` then hands out those first,
    each once, from several threads."""
    targets, work = photos
    monkeypatch.setattr(listing, "PAGE_KEYS", 3)
    plan = labeling.prepare(job(targets, work / "plan"))
    try:
        assert not plan.listed_targets  # nothing formed yet
        taken: list[int] = []
        stream = plan.stream()
        first = next(stream)
        assert len(plan.listed_targets) == 3 and not plan.listed  # the first page only, so far
        threads = [threading.Thread(target=lambda: taken.extend(b.index for b in stream)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted([first.index, *taken]) == list(range(COUNT)) and plan.listed
        assert len(plan.targets) == COUNT and plan.batches == [] and plan.to_write == COUNT
    finally:
        plan.close()


def test_a_listing_out_of_key_order_is_refused(bucket, monkeypatch):
    put(bucket, ["photos/a.png", "photos/b.png"])
    page = [{"name": f"{bucket[5:]}/photos/{name}", "size": 1} for name in ("b.png", "a.png")]
    monkeypatch.setattr(listing, "list_pages", lambda store, path, recursive: iter([page]))
    with pytest.raises(SansaError, match="not in key order"):
        list(listing.stream_targets([f"{bucket}/photos"], True).pages)


@pytest.mark.parametrize("page_keys", [1, 2, 1000])
def test_local_folders_are_listed_whole_then_handed_out_in_pages(tmp_path, monkeypatch, page_keys):
    """A local folder is listed whole (and sorted), then handed out a page at a time: the pages
    together are the sorted list, and batches across page boundaries are the fixed batches."""
    monkeypatch.setattr(listing, "PAGE_KEYS", page_keys)
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, name in enumerate(["c.png", "b.png", "a.png", "d.png", "e.png"]):
        (folder / name).write_bytes(png(seed))
    Image.new("RGB", (64, 48)).save(tmp_path / "ref.png")
    stream = listing.stream_targets([str(folder)], False)
    pages = list(stream.pages)
    assert not stream.streamed and [t.name for page in pages for t, _ in page] == [f"{n}.png" for n in "abcde"]
    assert all(len(page) == page_keys for page in pages[:-1])
    plan = labeling.prepare(dataclasses.replace(job(str(folder), tmp_path / "out"), batch_size=2))
    try:
        formed = [[t.name for t in batch.targets] for batch in plan.stream()]
    finally:
        plan.close()
    assert formed == [["a.png", "b.png"], ["c.png", "d.png"], ["e.png"]]
