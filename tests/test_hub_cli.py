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


def _read_only_folder(tmp_path) -> str:
    """A folder this process cannot write: chmod'ed, or (as root, who may write anywhere) /sys/kernel."""
    import os

    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return str(folder)
    if os.path.isdir("/sys/kernel") and _unwritable("/sys/kernel"):
        return "/sys/kernel/sansa"  # mkdir there: Operation not permitted
    pytest.skip("no read-only folder to try as root")


def _unwritable(folder: str) -> bool:
    import os

    try:
        os.close(os.open(os.path.join(folder, ".sansa-probe"), os.O_CREAT | os.O_WRONLY))
    except OSError:
        return True
    os.unlink(os.path.join(folder, ".sansa-probe"))
    return False


# (case, the variable, its value as a function of tmp_path, what the one line says)
CACHE_REFUSED = [
    ("read-only cache", "SANSA_CACHE", _read_only_folder, "cannot write the adapter cache"),
    ("SANSA_CACHE is a file", "SANSA_CACHE", lambda t: (t / "c").write_text("x") and str(t / "c"), "not a folder"),
    (
        "SANSA_CACHE inside a file",
        "SANSA_CACHE",
        lambda t: (t / "f").write_text("x") and str(t / "f/s"),
        "not a folder",
    ),
    ("read-only hub cache", "HF_HUB_CACHE", _read_only_folder, "could not download SAM2 checkpoint"),
    (
        "HF_HUB_CACHE is a file",
        "HF_HUB_CACHE",
        lambda t: (t / "h").write_text("x") and str(t / "h"),
        "could not download",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, variable, cache, message", CACHE_REFUSED, ids=[c[0] for c in CACHE_REFUSED])
def test_download_into_a_cache_that_cannot_be_written_is_one_line(env, tmp_path, case, variable, cache, message):
    import os

    from hostile import one_line_error, sansa

    environ = {k: os.environ[k] for k in ("SANSA_CACHE", "HF_HUB_CACHE", "HF_ENDPOINT", "SANSA_GDRIVE_URL")}
    environ[variable] = folder = cache(tmp_path)
    result = sansa("models", "download", "sansa-universal", cwd=tmp_path, env=environ, timeout=120)
    line = one_line_error(result, "models")
    assert message in line and (folder in line or variable == "HF_HUB_CACHE"), line
    if variable == "SANSA_CACHE":  # refused before anything is downloaded: SAM2's checkpoint not even asked for
        assert [path for _, path, _ in env.log if path == SAM2_PATH] == [], env.log
        assert line.rstrip().endswith("set SANSA_CACHE or --cache-dir DIR to a folder you can write"), line
