"""Virtual environments of the tools that read our exports, whose pins clash with ours.

Ultralytics wants ``opencv-python`` beside our ``opencv-python-headless``; datumaro pins
``opencv-python-headless<5`` and ``pillow~=12``. Each gets its own venv, built once and kept
under ``$SANSA_CONSUMER_VENVS`` (default ``~/.cache/sansa/consumer-venvs``), named by a hash of
what it holds, so every checkout and CI run on a machine shares it. The Ultralytics venv sees
this interpreter's site-packages after its own (a ``.pth`` file), so it reuses our torch
instead of downloading another. Consumer checks run in them as subprocesses
(``tests/consumers/*.py``), printing JSON.

Build them ahead (CI does, in ``.ci/run``)::

    python tests/consumer_env.py          # prints each venv's python and the seconds it took
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from dataclasses import dataclass
from pathlib import Path

CHECKS = Path(__file__).resolve().parent / "consumers"


@dataclass(frozen=True)
class Consumer:
    """A venv's packages; ``with_ours``: our site-packages (torch) visible after its own."""

    name: str
    packages: tuple[str, ...]
    with_ours: bool


CONSUMERS = {
    "ultralytics": Consumer("ultralytics", ("ultralytics==8.4.190",), with_ours=True),
    "datumaro": Consumer("datumaro", ("datumaro==1.13.12",), with_ours=False),
}


def root() -> Path:
    return Path(os.environ.get("SANSA_CONSUMER_VENVS") or Path.home() / ".cache" / "sansa" / "consumer-venvs")


def _ours() -> str:
    return sysconfig.get_paths()["purelib"]


def venv_dir(consumer: Consumer) -> Path:
    key = json.dumps([consumer.packages, consumer.with_ours and _ours(), sys.version_info[:2]])
    return root() / f"{consumer.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def ensure(name: str) -> Path:
    """The python of consumer ``name``'s venv, built first if missing (once, under a file lock)."""
    consumer = CONSUMERS[name]
    folder = venv_dir(consumer)
    python = folder / "bin" / "python"
    done = folder / "sansa-ready"
    if done.is_file():
        return python
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            _build(consumer, folder)
            done.write_text(" ".join(consumer.packages) + "\n")
    return python


def _build(consumer: Consumer, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # a half-built one from a killed run
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    if consumer.with_ours:
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(site, "zz_sansa_main_site.pth").write_text(_ours() + "\n")
    result = subprocess.run([python, "-m", "pip", "install", "-q", *consumer.packages], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"consumer venv {consumer.name}: pip install failed:\n{result.stderr[-3000:]}")


def run_check(name: str, script: str, *args: str | os.PathLike, cwd: Path | None = None) -> dict:
    """Run ``tests/consumers/<script>`` in consumer ``name``'s venv; its JSON output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["YOLO_CONFIG_DIR"] = str(cwd or root())  # Ultralytics' settings file, not in $HOME
    result = subprocess.run(
        [ensure(name), CHECKS / script, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{script} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    for key in CONSUMERS:
        started = time.time()
        print(f"{key}: {ensure(key)} ({time.time() - started:.0f} s)", flush=True)
