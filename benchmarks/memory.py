"""Peak resident memory (RSS) of ``sansa segment`` and of ``sansa serve``, on random weights.

``sansa segment`` streams its targets: its peak memory should not grow with their number. Each
run is a fresh process (``sansa.cli.main`` in a child), whose own peak RSS is read at exit
(``getrusage``); the web server's is its ``VmHWM`` after propagating a session to every image.

    python benchmarks/memory.py                                   # Hiera-T, Hiera-L; 4 and 200 targets
    python benchmarks/memory.py --backbones test_tiny --targets 4 40 --server-images 40

Prints a Markdown table (paste it into the README).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_HW = (480, 640)
REPO = Path(__file__).resolve().parents[1]
_CHILD = """
import resource, sys
from sansa.cli import main
code = main(sys.argv[1:])
print(f"PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` random 640x480 JPEGs with a bright square (the reference's object) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
        pixels[100:300, 150:400] = (230, 200, 40)
        path = folder / f"im{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _env() -> dict[str, str]:
    src = str(REPO / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def segment_peak_rss(backbone: str, targets: Path, out: Path, extra: list[str] | None = None) -> int:
    """Peak RSS in bytes of one ``sansa segment`` run (random ``backbone``, CPU) over ``targets``."""
    reference = sorted(targets.glob("*.jpg"))[0]
    command = [
        sys.executable,
        "-c",
        _CHILD,
        "segment",
        str(reference),
        "--box",
        "150,100,400,300",
        "--targets",
        str(targets),
        "--out",
        str(out),
        "--backbone",
        backbone,
        "--random-weights",
        "--device",
        "cpu",
        *(extra or []),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=_env())
    if result.returncode != 0:
        raise RuntimeError(f"sansa segment failed ({result.returncode}): {result.stderr[-2000:]}")
    line = next(x for x in result.stderr.splitlines() if x.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_peak_rss(backbone: str, folder: Path, timeout: float = 7200.0) -> int:
    """Peak RSS in bytes of ``sansa serve`` after one session propagated a box to every image."""
    import httpx

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "sansa",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--backbone",
        backbone,
        "--random-weights",
        "--device",
        "cpu",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    try:
        url, token = _ready(server)
        with httpx.Client(base_url=url, headers={"X-Sansa-Token": token}, timeout=timeout) as client:
            sid = client.post("/api/sessions").json()["session_id"]
            client.post(f"/api/sessions/{sid}/classes", json={"name": "square"}).raise_for_status()
            first = sorted(folder.glob("*.jpg"))[0].name
            client.put(
                f"/api/sessions/{sid}/references",
                json={"image": first, "label": "square", "prompt": {"box": [150, 100, 400, 300]}},
            ).raise_for_status()
            status = client.post(f"/api/sessions/{sid}/propagate").json()
            deadline = time.monotonic() + timeout
            while status["state"] == "running" and time.monotonic() < deadline:
                time.sleep(1.0)
                status = client.get(f"/api/sessions/{sid}/propagate").json()
            if status["state"] != "done":
                raise RuntimeError(f"propagation did not finish: {status}")
        return _vm_hwm(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _ready(server: subprocess.Popen) -> tuple[str, str]:
    """The address and per-launch token of a starting ``sansa serve``: its ready line,
    ``sansa serve: http://HOST:PORT/?token=TOKEN``, printed once the socket is bound."""
    line = server.stdout.readline().strip()
    if "?token=" not in line:
        raise RuntimeError(f"sansa serve did not start: {line!r}")
    address = line.split(": ", 1)[1]
    threading.Thread(target=server.stdout.read, daemon=True).start()  # never let a full pipe block it
    return address.split("/?token=")[0], address.split("?token=")[1].split()[0]


def _vm_hwm(pid: int) -> int:
    """A live process's peak RSS (``VmHWM`` of ``/proc/PID/status``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status (Linux only)")


def _folder(tmp: Path, count: int) -> Path:
    """``tmp/targets<count>``, written once (the same first images for every count)."""
    folder = tmp / f"targets{count}"
    if not folder.exists():
        write_images(folder, count)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--targets", nargs="+", type=int, default=[4, 200], help="numbers of targets to compare")
    parser.add_argument("--server-images", type=int, default=200, help="images propagated in the web server (0: skip)")
    args = parser.parse_args()
    print(f"peak RSS, CPU, random weights, {IMAGE_HW[1]}x{IMAGE_HW[0]} JPEG targets, 1 class, 1-shot box\n")
    print("| backbone | run | peak RSS |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            peaks = []
            for count in args.targets:
                folder = _folder(Path(tmp), count)
                peak = segment_peak_rss(backbone, folder, Path(tmp) / f"out-{backbone}-{count}")
                peaks.append(peak)
                print(f"| {backbone} | `sansa segment`, {count} targets | {peak / 2**20:.0f} MiB |", flush=True)
            print(
                f"| {backbone} | growth from {args.targets[0]} to {args.targets[-1]} targets | "
                f"{(peaks[-1] - peaks[0]) / 2**20:+.0f} MiB |",
                flush=True,
            )
            if args.server_images:
                peak = server_peak_rss(backbone, _folder(Path(tmp), args.server_images))
                print(
                    f"| {backbone} | `sansa serve`, after propagating {args.server_images} images | "
                    f"{peak / 2**20:.0f} MiB |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
