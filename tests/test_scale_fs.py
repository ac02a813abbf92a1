"""sansa.fs: targets and outputs at fsspec URLs, on a real S3 API server (moto, loopback)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sansa import atomic, fs
from sansa.errors import ImageError, SansaError
from sansa.images import load_image
from sansa.targets import find_url_targets, relative_name

pytest.importorskip("s3fs")


def png(seed: int, size: tuple[int, int] = (8, 6)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("s3://b/x.png", True),
        ("gs://b/x", True),
        ("memory://x", True),
        ("file:///tmp/x", True),
        ("photos/x.png", False),
        ("/abs/x.png", False),
        ("C:\\x.png", False),
        ("weird:name.png", False),
    ],
)
def test_is_url(path, url):
    assert fs.is_url(path) is url


@pytest.fixture()
def bucket(s3_server, request) -> str:
    """A fresh bucket holding ``photos/{a,b}.png``, ``photos/sub/c.jpg``, ``photos/.hidden/d.png``,
    ``photos/notes.txt``, ``photos/broken.png`` and ``list.txt`` (relative and absolute entries)."""
    url = s3_server.bucket(request.node.name.replace("_", "-").replace("[", "-").strip("]").lower()[:60])
    store, root = fs.filesystem(url)
    files = {
        "photos/a.png": png(1),
        "photos/b.png": png(2),
        "photos/sub/c.jpg": png(3),
        "photos/.hidden/d.png": png(4),
        "photos/notes.txt": b"not an image",
        "photos/broken.png": b"\x89PNG junk",
        "list.txt": f"# targets\nphotos/b.png\n\n{url}/photos/sub/c.jpg\n".encode(),
    }
    for name, data in files.items():
        store.pipe_file(f"{root}/{name}", data)
    return url


@pytest.mark.parametrize(
    ("inputs", "recursive", "names", "root"),
    [
        (["photos"], False, ["a.png", "b.png", "broken.png"], "photos"),
        (["photos"], True, ["a.png", "b.png", "broken.png", "sub/c.jpg"], "photos"),
        (["photos/*.png"], False, ["a.png", "b.png", "broken.png"], "photos"),
        (["photos/**/*.jpg"], False, ["c.jpg"], "photos/sub"),
        (["list.txt"], False, ["b.png", "sub/c.jpg"], "photos"),
        (["photos/sub/c.jpg", "photos/a.png", "photos/a.png"], False, ["sub/c.jpg", "a.png"], "photos"),
    ],
)
def test_find_targets(bucket, inputs, recursive, names, root):
    targets, found_root = find_url_targets([f"{bucket}/{i}" for i in inputs], recursive)
    assert found_root == f"{bucket}/{root}"
    assert [relative_name(t, found_root) for t in targets] == names
    assert all(t.startswith(bucket + "/") for t in targets)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["photos/missing"], "photos/missing: no such file or folder"),
        (["photos/*.gif"], "photos/*.gif: no images"),
        (["local/folder"], "local/folder: local paths and URLs cannot be mixed"),
    ],
)
def test_find_targets_refuses(bucket, inputs, message):
    with pytest.raises(SansaError, match=message.replace("*", r"\*")):
        find_url_targets([i if i.startswith("local") else f"{bucket}/{i}" for i in inputs], False)


def test_read_image(bucket):
    """A PNG reads as RGB uint8; missing and corrupt objects are one-line errors naming the URL."""
    image = load_image(f"{bucket}/photos/a.png")
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    with pytest.raises(ImageError, match=f"^{bucket}/photos/nope.png: no such file$"):
        load_image(f"{bucket}/photos/nope.png")
    with pytest.raises(ImageError, match=f"^{bucket}/photos/broken.png: not a readable image"):
        load_image(f"{bucket}/photos/broken.png")


def test_unknown_scheme_is_one_line():
    with pytest.raises(SansaError, match="^nosuchfs://x: unsupported or unavailable filesystem"):
        fs.filesystem("nosuchfs://x")


@pytest.mark.parametrize("scheme", ["s3", "memory", "file"])
def test_atomic_write_to_url(s3_server, tmp_path, scheme):
    """sansa.atomic writes URL paths whole, and leaves no temporary beside them."""
    base = {
        "s3": s3_server.bucket("atomic-writes") + "/out",
        "memory": "memory://atomic/out",
        "file": f"file://{tmp_path}/out",
    }[scheme]
    out = fs.as_path(base)
    atomic.write_json(out / "sub" / "x.json", {"a": 1})
    atomic.write_bytes(out / "sub" / "x.json", b"second")
    assert (out / "sub" / "x.json").read_bytes() == b"second"
    store, root = fs.filesystem(base)
    out.fs.invalidate_cache()  # listings cached before the writes
    assert [p.rsplit("/", 1)[1] for p in store.find(root)] == ["x.json"]
    assert atomic.remove_temporaries(out) == 0


def test_a_large_dataset_file_is_uploaded_in_parts(s3_server, monkeypatch):
    """A dataset file larger than two upload parts goes up as one multipart upload of parts of
    UPLOAD_PART bytes, UPLOAD_PARTS_AT_ONCE at a time (s3fs alone would read a file under 100 MiB
    whole into memory, a larger one 500 MiB at a time): the object
    holds exactly the chunks written, and no upload is left open."""
    monkeypatch.setattr(fs, "UPLOAD_PART", 5 << 20)  # S3's least part
    path = fs.as_path(s3_server.bucket("large-upload") + "/annotations.json")
    chunks = [bytes([i]) * (1 << 20) for i in range(11)]  # 11 MiB: three parts
    parts, in_flight = [], {"now": 0, "most": 0}
    send = path.fs._call_s3

    async def counted(method, *args, **kwargs):
        if method not in ("put_object", "upload_part"):
            return await send(method, *args, **kwargs)
        parts.append((method, len(kwargs["Body"])))
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            return await send(method, *args, **kwargs)
        finally:
            in_flight["now"] -= 1

    monkeypatch.setattr(path.fs, "_call_s3", counted)
    atomic.write_chunks(path, iter(chunks))
    assert parts == [("upload_part", 5 << 20), ("upload_part", 5 << 20), ("upload_part", 1 << 20)]
    assert in_flight["most"] == fs.UPLOAD_PARTS_AT_ONCE  # parts read into memory together
    path.fs.invalidate_cache()
    assert path.read_bytes() == b"".join(chunks)
    bucket = path.path.split("/", 1)[0]
    assert not path.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads")


@pytest.mark.parametrize(
    ("errors", "calls", "outcome"),
    [
        ([ConnectionResetError("reset by peer")] * 2, 3, None),  # transient: retried, then written
        ([TimeoutError("timed out")], 2, None),
        ([ConnectionRefusedError("refused")] * 4, 4, "cannot write (ConnectionRefusedError: refused)"),
        ([PermissionError(13, "Access Denied")], 1, "cannot write (PermissionError: [Errno 13] Access Denied)"),
    ],
)
def test_transient_store_errors_are_retried(s3_server, monkeypatch, errors, calls, outcome):
    """A store write that fails transiently is tried again (with backoff) and then succeeds; a
    permanent error, or a store that keeps failing, is one line naming the URL (no memory address)."""
    base = s3_server.bucket("retries") + f"/{calls}"
    out = fs.as_path(base)
    real, seen = out.fs.pipe_file, []
    monkeypatch.setattr(fs, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))

    def flaky(path, data, **kwargs):
        seen.append(path)
        if len(seen) <= len(errors):
            raise errors[len(seen) - 1]
        return real(path, data, **kwargs)

    monkeypatch.setattr(out.fs, "pipe_file", flaky)
    if outcome is None:
        atomic.write_bytes(out / "x.bin", b"data")
        monkeypatch.undo()
        assert (fs.as_path(base) / "x.bin").read_bytes() == b"data"
    else:
        with pytest.raises(SansaError) as caught:
            atomic.write_bytes(out / "x.bin", b"data")
        assert str(caught.value) == f"{base}/x.bin: {outcome}"
    assert len(seen) == calls
