"""Released models by name: the whole download path against a real HTTP server on 127.0.0.1.

The server plays both the Hugging Face hub (HEAD/GET with ``X-Repo-Commit``, ``ETag``,
``Content-Length``) and Google Drive (plain GET with ``Range`` support), serving the golden
fixture files, so a test goes from ``resolve_pretrained`` to a loaded ``SansaPredictor``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import golden_path

from sansa.errors import DownloadError, SansaError
from sansa.hub import MODELS, DriveFile, HubFile, HubSettings, PretrainedModel, cache_status, resolve_pretrained
from sansa.hub.cache import default_cache_dir, offline_from_env
from sansa.model.variants import VARIANTS

SAM2_PATH = "/test/sam2-golden/resolve/main/sam2_checkpoint.pt"
ADAPTER_ID = "golden-adapter-id"
ADAPTER_PATH = f"/uc?id={ADAPTER_ID}"


@dataclass
class Route:
    """What the server answers for one path."""

    body: bytes
    status: int = 200
    hub: bool = False  # send the Hugging Face hub's headers
    cut_after: int | None = None  # send only the first bytes of the body, then drop the connection
    cuts: int = 1  # how many GETs are cut
    ranges: bool = True  # honour Range requests


@dataclass
class FakeServer:
    url: str
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)

    def count(self, path: str, method: str = "GET") -> int:
        return sum(1 for m, p, _ in self.log if m == method and p == path)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def log_message(self, *args) -> None:
        pass

    def _answer(self, head: bool) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        fake.log.append((self.command, self.path, self.headers.get("Range")))
        route = fake.routes.get(self.path)
        if route is None or route.status != 200:
            self.send_response(404 if route is None else route.status)
            if route is not None and route.hub and route.status == 404:
                self.send_header("X-Error-Code", "EntryNotFound")  # as the real hub does
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, start = route.body, 0
        wanted = self.headers.get("Range")
        if wanted and route.ranges and not head:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        if route.hub:
            self.send_header("X-Repo-Commit", "0123456789abcdef" * 2 + "01234567")
        cut = not head and route.cut_after is not None and route.cuts > 0
        if cut:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        if cut:
            route.cuts -= 1
            self.wfile.write(body[start : route.cut_after])
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.fake = FakeServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def golden_bytes() -> dict[str, bytes]:
    return {name: golden_path(name).read_bytes() for name in ("sam2_checkpoint.pt", "sansa_adapter.pth")}


@pytest.fixture()
def served(server, golden_bytes) -> FakeServer:
    """The server with the golden SAM2 checkpoint on the "hub" and the golden adapter on "Drive"."""
    server.routes[SAM2_PATH] = Route(golden_bytes["sam2_checkpoint.pt"], hub=True)
    server.routes[ADAPTER_PATH] = Route(golden_bytes["sansa_adapter.pth"])
    return server


def settings_for(server: FakeServer, tmp_path: Path, **changes) -> HubSettings:
    defaults = {
        "cache_dir": tmp_path / "sansa",
        "hf_cache_dir": tmp_path / "hub",
        "hf_endpoint": server.url,
        "gdrive_url": server.url + "/uc?id={id}",
        "progress": False,
        "retries": 0,
    }
    return HubSettings(**{**defaults, **changes})


def golden_models(**adapter) -> dict[str, PretrainedModel]:
    entry = PretrainedModel(
        name="golden",
        description="the golden fixture model",
        backbone=str(golden_path("sam2_config.yaml")),
        sam2=HubFile("test/sam2-golden", "sam2_checkpoint.pt"),
        adapter=DriveFile(ADAPTER_ID, "golden.pth", **adapter),
    )
    return {"golden": entry}


def resolve(server, tmp_path, models=None, **changes):
    return resolve_pretrained(
        "golden", models=models or golden_models(), settings=settings_for(server, tmp_path, **changes)
    )


# -- the whole path ---------------------------------------------------------------------------
@pytest.mark.slow
def test_download_then_load_predictor(served, tmp_path, golden_bytes):
    import torch

    from sansa import SansaPredictor
    from sansa.model.checkpoint import read_adapter_checkpoint

    files = resolve(served, tmp_path)
    assert files.sam2_checkpoint.read_bytes() == golden_bytes["sam2_checkpoint.pt"]
    assert files.adapter_checkpoint == tmp_path / "sansa" / "golden.pth"
    assert files.adapter_checkpoint.read_bytes() == golden_bytes["sansa_adapter.pth"]
    manifest = json.loads((tmp_path / "sansa" / "manifest.json").read_text())["files"]["golden.pth"]
    assert manifest["sha256"] == hashlib.sha256(golden_bytes["sansa_adapter.pth"]).hexdigest()
    assert sorted(p.name for p in (tmp_path / "sansa").iterdir()) == ["golden.pth", "manifest.json"]

    predictor = SansaPredictor.from_checkpoint(
        files.sam2_checkpoint, files.adapter_checkpoint, model=files.backbone, device="cpu"
    )
    state = predictor.model.state_dict()
    for key, value in read_adapter_checkpoint(files.adapter_checkpoint).items():
        assert torch.equal(state[key], value.to(state[key].dtype))


def test_cache_hit_makes_no_request(served, tmp_path):
    first = resolve(served, tmp_path)
    requests = len(served.log)
    assert served.count(ADAPTER_PATH) == 1 and served.count(SAM2_PATH) == 1
    assert resolve(served, tmp_path) == first
    assert len(served.log) == requests


@pytest.mark.parametrize("how", ["argument", "SANSA_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_uses_cache_and_names_missing_files(served, tmp_path, monkeypatch, how):
    online = resolve(served, tmp_path)
    requests = len(served.log)
    if how == "argument":
        offline = HubSettings.from_env(tmp_path, offline=True).offline
    else:
        monkeypatch.setenv(how, "1")
        offline = HubSettings.from_env(tmp_path).offline
    assert offline
    assert resolve(served, tmp_path, offline=True) == online
    with pytest.raises(DownloadError) as err:
        resolve(served, tmp_path / "empty", offline=True)
    message = str(err.value)
    assert "\n" not in message and "offline" in message and "sam2_checkpoint.pt" in message
    (tmp_path / "empty" / "sansa").mkdir(parents=True)  # SAM2 placed by hand, adapter still missing
    (tmp_path / "empty" / "sansa" / "sam2_checkpoint.pt").write_bytes(online.sam2_checkpoint.read_bytes())
    with pytest.raises(DownloadError, match=r"golden\.pth is not cached and offline.*save it as .*golden\.pth"):
        resolve(served, tmp_path / "empty", offline=True)
    assert len(served.log) == requests


def test_corrupted_cache_is_detected_and_downloaded_again(served, tmp_path, golden_bytes):
    files = resolve(served, tmp_path)
    data = bytearray(files.adapter_checkpoint.read_bytes())
    data[-100] ^= 0xFF
    files.adapter_checkpoint.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match=r"corrupt \(its sha256 changed.*offline mode"):
        resolve(served, tmp_path, offline=True)
    files.adapter_checkpoint.write_bytes(bytes(data[:1000]))
    with pytest.raises(DownloadError, match=r"corrupt \(its size changed"):
        resolve(served, tmp_path, offline=True)
    assert resolve(served, tmp_path) == files  # online: fetched again
    assert served.count(ADAPTER_PATH) == 2
    assert files.adapter_checkpoint.read_bytes() == golden_bytes["sansa_adapter.pth"]


@pytest.mark.parametrize(
    ("placed", "error"),
    [
        ("sansa_adapter.pth", None),  # a good file placed by hand is used and recorded
        ("sam2_checkpoint.pt", "is a SAM2 checkpoint, not a SANSA adapter file"),
        ("README.md", "not a PyTorch checkpoint"),
    ],
)
def test_file_placed_by_hand(served, tmp_path, placed, error):
    cache = tmp_path / "sansa"
    cache.mkdir()
    (cache / "sam2_checkpoint.pt").write_bytes(golden_path("sam2_checkpoint.pt").read_bytes())
    (cache / "golden.pth").write_bytes(golden_path(placed).read_bytes())
    if error is None:
        files = resolve(served, tmp_path, offline=True)
        assert files.sam2_checkpoint == cache / "sam2_checkpoint.pt"
        assert "golden.pth" in json.loads((cache / "manifest.json").read_text())["files"]
    else:
        with pytest.raises(DownloadError, match=error):
            resolve(served, tmp_path, offline=True)
    assert served.log == []


# -- interrupted and failed downloads ---------------------------------------------------------
@pytest.fixture(scope="module")
def big_adapter(tmp_path_factory) -> bytes:
    """A real adapter file of ~1.3 MB, as the authors' files carry optimizer state (gdown writes 512 KiB chunks)."""
    import torch

    path = tmp_path_factory.mktemp("big") / "adapter.pth"
    weights = torch.load(golden_path("sansa_adapter.pth"), weights_only=True)["model"]
    torch.save({"model": weights, "optimizer": {"pad": torch.arange(300_000, dtype=torch.float32)}}, path)
    return path.read_bytes()


def test_interrupted_download_resumes_on_next_call(served, tmp_path, big_adapter):
    served.routes[ADAPTER_PATH] = Route(big_adapter, cut_after=700_000)
    with pytest.raises(DownloadError) as err:
        resolve(served, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "golden.pth" in message and str(tmp_path / "sansa" / "golden.pth") in message
    cache = tmp_path / "sansa"
    assert not (cache / "golden.pth").exists()
    parts = list(cache.glob("*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert 0 < kept <= 700_000

    files = resolve(served, tmp_path)
    assert ("GET", ADAPTER_PATH, f"bytes={kept}-") in served.log
    assert files.adapter_checkpoint.read_bytes() == big_adapter
    assert sorted(p.name for p in cache.iterdir()) == ["golden.pth", "manifest.json"]


def test_dropped_transfer_is_retried_within_one_call(served, tmp_path, big_adapter):
    served.routes[ADAPTER_PATH] = Route(big_adapter, cut_after=700_000)
    files = resolve(served, tmp_path, retries=1)
    assert [r for m, p, r in served.log if p == ADAPTER_PATH] == [None, "bytes=524288-"]
    assert files.adapter_checkpoint.read_bytes() == big_adapter


def test_server_without_ranges_restarts_cleanly(served, tmp_path, big_adapter):
    served.routes[ADAPTER_PATH] = Route(big_adapter, cut_after=700_000, ranges=False)
    with pytest.raises(DownloadError):
        resolve(served, tmp_path)
    assert len(list((tmp_path / "sansa").glob("*.part"))) == 1
    files = resolve(served, tmp_path)
    assert files.adapter_checkpoint.read_bytes() == big_adapter
    assert not list((tmp_path / "sansa").glob("*.part"))


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        (ADAPTER_PATH, 404, ("golden.pth", "/uc?id=golden-adapter-id", "404")),
        (ADAPTER_PATH, 500, ("golden.pth", "/uc?id=golden-adapter-id", "500")),
        (SAM2_PATH, 404, ("sam2_checkpoint.pt", "test/sam2-golden", "404")),
    ],
)
def test_http_error_is_one_line_naming_the_file_and_where_to_put_it(served, tmp_path, path, status, names):
    served.routes[path].status = status
    with pytest.raises(DownloadError) as err:
        resolve(served, tmp_path)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    assert "save it as " + str(tmp_path / "sansa") in message and "--sam2-checkpoint FILE --adapter FILE" in message
    assert not (tmp_path / "sansa" / "golden.pth").exists()


def test_no_server_is_one_line(server, tmp_path):
    with pytest.raises(DownloadError, match="adapter golden.pth is not cached and .* cannot be reached") as err:
        cache = tmp_path / "sansa"
        cache.mkdir()
        (cache / "sam2_checkpoint.pt").write_bytes(b"placed by hand")
        resolve(server, tmp_path, gdrive_url="http://127.0.0.1:9/uc?id={id}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("served_as_adapter", "adapter", "error"),
    [
        ("sam2_checkpoint.pt", {}, "is a SAM2 checkpoint, not a SANSA adapter file"),
        ("README.md", {}, "not a PyTorch checkpoint"),
        ("sansa_adapter.pth", {"sha256": "0" * 64}, "sha256"),
        ("sansa_adapter.pth", {"size": 12}, "size"),
    ],
)
def test_wrong_file_is_rejected_before_it_reaches_the_cache(served, tmp_path, served_as_adapter, adapter, error):
    served.routes[ADAPTER_PATH] = Route(golden_path(served_as_adapter).read_bytes())
    with pytest.raises(DownloadError, match=f"not the expected SANSA adapter file.*{error}"):
        resolve(served, tmp_path, models=golden_models(**adapter))
    assert sorted(p.name for p in (tmp_path / "sansa").iterdir()) == []


# -- registry and settings --------------------------------------------------------------------
def test_registry_entries_fit_their_backbones():
    assert MODELS["sansa-universal"].adapter.file_id == "1nPOdRfMfo3MQRSi1qkPEri7Gl6FCEVHe"
    assert MODELS["sansa-generalist"].adapter.file_id == "17PktKkF1wibJeEW5CIxPoL7bjKLevfXW"
    for name, model in MODELS.items():
        variant = VARIANTS[model.backbone]
        assert (model.sam2.repo_id, model.sam2.filename) == (variant.hf_repo, variant.checkpoint_file), name
        if model.adapter is not None:
            assert model.adapter.filename.startswith(name), name
    assert {m.availability.value for m in MODELS.values()} == {"auto", "manual"}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("sansa-coco20i-folds", r"archive .*drive\.google\.com/file/d/1nAHFgd9VPMN-XGrG0NEkbzkClddA0Ygf"),
        ("nope", "unknown; choose one of sansa-universal"),
    ],
)
def test_names_that_cannot_be_resolved(tmp_path, name, error):
    with pytest.raises(SansaError, match=error):
        resolve_pretrained(name, cache_dir=tmp_path, offline=True)


@pytest.mark.parametrize(
    ("env", "cache", "offline"),
    [
        ({}, "HOME/.cache/huggingface/sansa", False),
        ({"HF_HOME": "/hf"}, "/hf/sansa", False),
        ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/huggingface/sansa", False),
        ({"SANSA_CACHE": "/s", "HF_HOME": "/hf"}, "/s", False),
        ({"SANSA_OFFLINE": "1"}, "HOME/.cache/huggingface/sansa", True),
        ({"HF_HUB_OFFLINE": "true"}, "HOME/.cache/huggingface/sansa", True),
        ({"HF_HUB_OFFLINE": "0"}, "HOME/.cache/huggingface/sansa", False),
    ],
)
def test_cache_folder_and_offline_from_environment(env, cache, offline):
    home = str(Path.home())
    assert default_cache_dir(env) == Path(cache.replace("HOME", home))
    assert offline_from_env(env) is offline


def test_settings_from_environment(tmp_path):
    env = {"SANSA_GDRIVE_URL": "http://mirror/{id}", "HF_ENDPOINT": "http://hub", "HF_HUB_CACHE": str(tmp_path)}
    settings = HubSettings.from_env(environ=env)
    assert settings.adapter_url(MODELS["sansa-universal"].adapter) == "http://mirror/1nPOdRfMfo3MQRSi1qkPEri7Gl6FCEVHe"
    assert (settings.hf_endpoint, settings.hf_cache_dir) == ("http://hub", tmp_path)


def test_cache_status(served, tmp_path):
    settings = settings_for(served, tmp_path)
    model = golden_models()["golden"]
    assert str(cache_status(model, settings)) == "no"
    resolve(served, tmp_path)
    status = cache_status(model, settings)
    assert str(status) == "yes" and status.adapter == tmp_path / "sansa" / "golden.pth"
    (tmp_path / "sansa" / "golden.pth").unlink()
    assert str(cache_status(model, settings)) == "sam2 only"
