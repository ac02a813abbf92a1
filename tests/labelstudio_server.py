"""Real Label Studios for the tests: the pinned one and the newest, each started once per session.

Label Studio pins many packages, so each version lives in its own virtual environment at the
repository root (``.ci/labelstudio-venv`` makes them; ``.ci/run`` calls it): ``.venv-labelstudio``
(the pinned 1.21.0) and ``.venv-labelstudio-newest`` (the newest on the registry when CI ran). The
session fixture :func:`label_studio` is parametrized over both, so every end-to-end test runs
against each; pytest groups the tests by version, so one server per version runs at a time.

Each runs on a free loopback port with SQLite in a temporary data folder, a known user and legacy
API token, what current versions need to call a model on this computer (``ML_BLOCK_LOCAL_IP=false``,
``SSRF_PROTECTION_ENABLED=false``), a short ``ML_TIMEOUT_PREDICT`` (:data:`PREDICT_TIMEOUT_S`: the
large-batch test needs one), and every outside connection (update check, error reporting) sent to
a dead loopback proxy: the tests make loopback traffic only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: version name -> (its venv, the command that makes it)
VERSIONS = {
    "pinned": (
        REPO / ".venv-labelstudio",
        ".ci/labelstudio-venv .venv-labelstudio label-studio==1.21.0 label-studio-converter==0.0.59",
    ),
    "newest": (
        REPO / ".venv-labelstudio-newest",
        ".ci/labelstudio-venv .venv-labelstudio-newest label-studio",
    ),
}
VENV = VERSIONS["pinned"][0]
PYTHON = VENV / "bin" / "python"
START_TIMEOUT_S = 420
#: Label Studio's wait for a /predict answer in the tests (its default is 100 s)
PREDICT_TIMEOUT_S = 30
DATABASE = "label_studio.sqlite3"
# A migrated database with the test user, made by .ci/labelstudio-venv or the first session (per venv).
TEMPLATE_NAME = "sansa-test-database.sqlite3"
USER, PASSWORD = "sansa@example.com", "sansa-test-password"
TOKEN = "5a17a5a0c0ffee5a17a5a0c0ffee5a17a5a0c0ff"


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio: ``url``, the user's ``token``, ``username``/``password`` and its data folder."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    start_seconds: float
    version: str
    python: Path

    def client(self):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def label_studio_environment(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": USER,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(data_dir / "files"),
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            # Label Studio 1.22+ refuse to call a model (and to create its webhook) on a local address without these
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "ML_TIMEOUT_PREDICT": str(PREDICT_TIMEOUT_S),
            "ML_TIMEOUT_SETUP": "30",  # its default 3 s is short on a busy 2-core machine
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            # nothing leaves the machine: Label Studio's update check and error reports hit a dead loopback proxy
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


@pytest.fixture(scope="session", params=list(VERSIONS))
def label_studio(request, tmp_path_factory) -> LabelStudioServer:
    """Label Studio (pinned, then newest) on ``127.0.0.1:<free port>`` for the session (skipped without its venv)."""
    venv, install = VERSIONS[request.param]
    executable, template = venv / "bin" / "label-studio", venv / TEMPLATE_NAME
    if not executable.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{venv} is missing on CI (.ci/run must make it): {install}")
        pytest.skip(f"Label Studio ({request.param}) is not installed at {venv}: {install}")
    import httpx

    data_dir = tmp_path_factory.mktemp(f"label-studio-{request.param}")
    (data_dir / "files").mkdir()
    if template.is_file():  # migrated before: skips minutes of database migrations
        shutil.copyfile(template, data_dir / DATABASE)
    port = free_port()
    log_path = data_dir / "label-studio.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(executable), "start", "--no-browser", "--port", str(port), "--internal-host", "127.0.0.1"],
            env=label_studio_environment(data_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=data_dir,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"Label Studio exited with {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"Label Studio did not answer within {START_TIMEOUT_S} s:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        version = _installed_version(venv)
        server = LabelStudioServer(
            url, TOKEN, USER, PASSWORD, data_dir, time.monotonic() - started, version, venv / "bin" / "python"
        )
        if not template.is_file():
            _save_template(data_dir / DATABASE, template)
        print(f"\nLabel Studio {version} ({request.param}) started in {server.start_seconds:.0f} s at {url}")
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def _save_template(database: Path, template: Path) -> None:
    """Keep the freshly migrated database (with the test user) in the venv for the next sessions."""
    import sqlite3

    partial = template.with_suffix(".partial")
    with sqlite3.connect(database) as source, sqlite3.connect(partial) as copy:
        source.backup(copy)
    os.replace(partial, template)


def _installed_version(venv: Path) -> str:
    """The Label Studio version installed in ``venv`` (from its package metadata)."""
    found = sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1] if found else "unknown"


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
