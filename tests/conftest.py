"""Shared test fixtures: paths of the golden fixtures and tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / "shared" / "fixtures" / "golden_v1"


def golden_path(name: str) -> Path:
    """A file of ``../shared/fixtures/golden_v1`` (never copied into the repo)."""
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"golden fixtures not found at {GOLDEN}")
    return path


@pytest.fixture(scope="session")
def golden_predictor():
    """The authors' fixture model (tiny SAM2 + adapters, random weights) on the CPU."""
    from sansa import SansaPredictor

    return SansaPredictor.from_checkpoint(
        golden_path("sam2_checkpoint.pt"),
        golden_path("sansa_adapter.pth"),
        model=golden_path("sam2_config.yaml"),
        device="cpu",
    )


@pytest.fixture(scope="session")
def tiny_model():
    """A random-weight ``test_tiny`` SANSA model with non-zero adapters, seeded."""
    import torch

    from sansa.model.build import build_sansa

    torch.manual_seed(0)
    model = build_sansa("test_tiny")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapter.up_proj" in name:
                param.normal_(0, 0.02)
    return model


@pytest.fixture()
def tiny_predictor(tiny_model):
    from sansa import SansaPredictor

    return SansaPredictor(tiny_model, device="cpu")


# -- the web app in Chromium: a folder of still lifes, its server and a page (tests/test_web_browser.py) --
@pytest.fixture()
def scene_folder(tmp_path: Path) -> Path:
    """``fruit/scene_<i>.png``: the browser tests' still lifes."""
    from test_web_browser import SCENES, make_scene

    folder = tmp_path / "fruit"
    folder.mkdir()
    for i in range(SCENES):
        make_scene(i).save(folder / f"scene_{i}.png")
    return folder


@pytest.fixture()
def page_url(tiny_predictor, scene_folder: Path):
    """A web app on ``scene_folder`` (test_tiny, random weights): the address `sansa serve` prints."""
    from sansa.web.app import create_app, serve_in_thread

    app = create_app(tiny_predictor, scene_folder, model_name="test_tiny (random weights)")
    with serve_in_thread(app) as url:
        yield f"{url}/?token={app.state.token}"


@pytest.fixture()
def page(page_url: str):
    """A Chromium page on ``page_url``, ready."""
    from test_web_browser import browser_page

    with browser_page(page_url) as page:
        yield page


# -- scale: one local Ray instance and one S3 API server per session (tests/scale_fixtures.py) ----
from scale_fixtures import actor_handles, ray_local, s3_server  # noqa: E402, F401
