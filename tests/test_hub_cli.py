"""``sansa models``: the real registry entries, served by the local fake hub and Drive of test_hub."""

from __future__ import annotations

import pytest
from test_hub import Route, golden_bytes, server  # noqa: F401  (fixtures)

from sansa.cli import main
from sansa.hub import MODELS

UNIVERSAL = MODELS["sansa-universal"]
SAM2_PATH = f"/{UNIVERSAL.sam2.repo_id}/resolve/main/{UNIVERSAL.sam2.filename}"
ADAPTER_PATH = f"/uc?id={UNIVERSAL.adapter.file_id}"


@pytest.fixture()
def env(server, golden_bytes, tmp_path, monkeypatch):  # noqa: F811
    """The environment a user sets for a mirror: the real names resolve against the local server."""
    server.routes[SAM2_PATH] = Route(golden_bytes["sam2_checkpoint.pt"], hub=True)
    server.routes[ADAPTER_PATH] = Route(golden_bytes["sansa_adapter.pth"])
    for name, value in {
        "SANSA_CACHE": tmp_path / "sansa",
        "HF_HUB_CACHE": tmp_path / "hub",
        "HF_ENDPOINT": server.url,
        "SANSA_GDRIVE_URL": server.url + "/uc?id={id}",
    }.items():
        monkeypatch.setenv(name, str(value))
    for name in ("SANSA_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return server


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("sansa-", "sam2-"))}


def test_download_then_path_and_list(env, tmp_path, capsys):
    code, out, err = run(capsys, "download", "sansa-universal")
    assert code == 0 and "sansa-universal: ready" in err
    adapter = tmp_path / "sansa" / "sansa-universal.pth"
    assert f"adapter          {adapter}" in out and "backbone         hiera_large" in out
    requests = len(env.log)

    code, path_out, _ = run(capsys, "path", "sansa-universal")
    assert code == 0 and path_out == out
    code, out, _ = run(capsys, "list")
    assert code == 0 and len(env.log) == requests
    rows = table(out)
    assert rows["sansa-universal"][:3] == ["sansa-universal", "hiera_large", "yes"]
    assert rows["sam2-hiera-large"][2] == "yes"
    assert rows["sansa-generalist"][2:4] == ["sam2", "only"]
    assert rows["sansa-coco20i-folds"][2] == "manual" and rows["sam2-hiera-tiny"][2] == "no"
    assert set(rows) == set(MODELS)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("path", "sansa-generalist"), "not cached and offline mode is on"),
        (("download", "sansa-coco20i-folds"), "an archive of adapter files that sansa does not download"),
        (("info", "sansa-huge"), "unknown; choose one of"),
    ],
)
def test_errors_are_one_line(env, capsys, argv, error):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("sansa models: error: ") and error in err


def test_info_shows_sources_and_published_numbers(env, capsys):
    code, out, _ = run(capsys, "info", "sansa-generalist")
    assert code == 0
    assert "https://drive.google.com/file/d/17PktKkF1wibJeEW5CIxPoL7bjKLevfXW" in out
    assert "COCO-20i 1-shot 74.8" in out and f"{env.url}/facebook/sam2-hiera-large/resolve/main/" in out


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    assert "sansa models download sansa-universal" in capsys.readouterr().out
