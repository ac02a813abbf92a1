"""Session-wide services for the scale tests: one local Ray instance and one S3 API server.

Both start once per test session, on first use, and are shared by every test that asks for them
(``tests/conftest.py`` imports the fixtures). Only loopback traffic: the S3 server is moto's
server mode on a free port of 127.0.0.1, and Ray runs on this machine with ``num_cpus=2``.
Workers inherit the environment set here (the S3 endpoint and test credentials, ``PYTHONPATH``
with this checkout's ``src``), since the Ray instance starts after it is set.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@dataclass(frozen=True)
class S3Server:
    """A running S3 API server: ``endpoint`` (``http://127.0.0.1:PORT``) with test credentials."""

    endpoint: str

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (if new) and return ``s3://name``."""
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on loopback; ``AWS_*`` variables point every client (fsspec/s3fs) at it."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
        }
    )
    try:
        yield S3Server(endpoint)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def ray_local(s3_server: S3Server) -> Iterator[str]:
    """One local Ray instance (``num_cpus=2``, small object store) for the session; its address.

    Started after the S3 server so that its workers see the S3 endpoint. Yields the GCS address
    (``127.0.0.1:PORT``) for drivers in other processes (``sansa segment --ray ADDRESS``).
    """
    ray = pytest.importorskip("ray")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def actor_handles(ray_local: str):
    """A named actor collecting the handles of label actors as they start (pass ``announce`` as
    ``on_actor_start``); the fault tests ``ray.kill`` one of them mid-run."""
    import ray

    box = ray.remote(num_cpus=0)(HandleBox).options(name="sansa-test-handles", lifetime=None).remote()
    yield box
    ray.kill(box)


class HandleBox:
    """Holds actor handles (a Ray actor: see ``actor_handles``)."""

    def __init__(self) -> None:
        self.handles: list = []

    def add(self, handle) -> None:
        self.handles.append(handle)

    def take(self) -> list:
        handles, self.handles = self.handles, []
        return handles


def announce(handle) -> None:
    """``on_actor_start`` hook: hand this actor's handle to the ``actor_handles`` box."""
    import ray

    ray.get(ray.get_actor("sansa-test-handles").add.remote(handle))
