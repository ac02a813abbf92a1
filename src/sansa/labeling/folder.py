"""The output folder of a labelling run: one owner at a time, and what its results were made from.

* :class:`FolderLock`: an exclusive ``fcntl`` lock on ``<out>/.sansa/lock``, held for the whole run
  and released by the kernel on any exit (a crash or ``SIGKILL`` included). A second run into the
  same folder is refused in one line naming the holder (pid, host, command, start time).
* ``<out>/.sansa/inputs.json``: what every result in the folder was made from (each reference's
  class, prompt and image hash; the model). A run with other inputs is refused before it writes
  anything (start over with ``--overwrite``, or use another ``--out``).
* :func:`clear_results`: what ``--overwrite`` removes: every file an earlier run wrote, and
  nothing else of the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansa import atomic
from sansa.errors import SansaError
from sansa.export.writer import STATE_DIR

if TYPE_CHECKING:
    from upath import UPath

    from sansa.fs import AnyPath

LOCK_NAME = "lock"
INPUTS_NAME = "inputs.json"
RUN_FILES = ("run.json", "failures.json", "failures.txt", "classes.json", "annotations.json")
RUN_FOLDERS = ("masks", "labels", "overlays", "yolo", "coco", "labelstudio", "references")


class FolderLock:
    """An exclusive lock on an output folder (created with its ``.sansa`` state folder).

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, folder: str | os.PathLike[str] | AnyPath, command: str = "") -> None:
        self.folder: AnyPath = folder if not isinstance(folder, (str, os.PathLike)) else Path(folder)  # or a UPath
        self.path: AnyPath = self.folder / STATE_DIR / LOCK_NAME
        self.command: str = command or " ".join(["sansa", *sys.argv[1:]])
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise a one-line :class:`SansaError` naming the run that holds it.
        Object-store folders (``s3://``, a ``UPath``) have no lock: one run per folder is up to the user."""
        if not isinstance(self.folder, Path):
            return self
        try:
            import fcntl
        except ImportError:  # no fcntl (Windows): one owner is not enforced
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise SansaError(f"{self.folder}: exists and is not a folder")
        lock_file = self.folder / STATE_DIR / LOCK_NAME  # a local Path here
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise atomic.OutputError.of(self.path, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SansaError(
                f"{self.folder}: in use by another run ({holder}); wait for it to end, or use another out=DIR"
            ) from None
        self._fd = fd
        this_run = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:  # who holds it, for the message of a refused run (a full disk only loses the name)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(this_run) + "\n").encode(), 0)
        except OSError:
            pass
        return self

    def release(self) -> None:
        """Let the next run in. The lock file stays (removing it would race with a waiting run),
        emptied: a folder after a finished run holds the same bytes whoever ran it."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"


# -- what the results were made from --------------------------------------------------------------
def inputs_digest(inputs: dict[str, Any]) -> str:
    """A short stable digest of what results depend on in an inputs record (kept in every target's
    record): reference files may move, their contents and prompts may not."""
    return hashlib.sha256(json.dumps(_comparable(inputs), sort_keys=True).encode()).hexdigest()[:16]


def check_inputs(folder: AnyPath, inputs: dict[str, Any], has_results: bool) -> None:
    """Refuse (one line) when ``folder`` holds results made from other inputs; else record ``inputs``.

    Args:
        inputs: ``{"references": [{"label", "image", "image_sha256", "prompt_sha256"}, ...],
            "model": {...}}``.
        has_results: whether the folder holds any target's results.
    """
    path = folder / STATE_DIR / INPUTS_NAME
    known = _read_json(path)
    if has_results and known is not None and _comparable(known) != _comparable(inputs):
        raise SansaError(
            f"{folder}: holds results made from other inputs ({describe_change(known, inputs)}); "
            "start over with overwrite=True, or use another out=DIR"
        )
    if known != inputs:
        atomic.write_json(path, inputs)


def _comparable(inputs: dict[str, Any]) -> Any:
    """The parts results depend on (file paths may move; contents and prompts may not)."""
    refs = [{k: v for k, v in ref.items() if k != "image"} for ref in inputs.get("references", [])]
    return {"references": refs, "model": inputs.get("model")}


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two inputs records, in a few words."""
    old_refs, new_refs = old.get("references", []), new.get("references", [])
    if len(old_refs) != len(new_refs):
        return f"{len(old_refs)} references then, {len(new_refs)} now"
    for index, (a, b) in enumerate(zip(old_refs, new_refs, strict=True), start=1):
        for key, what in (("label", "class"), ("prompt_sha256", "prompt"), ("image_sha256", "image")):
            if a.get(key) != b.get(key):
                return f"reference {index} ({b.get('image', '?')}): another {what}"
    if old.get("model") != new.get("model"):
        return "another model"
    return "other settings"


def _read_json(path: AnyPath) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # damaged: never equal to real inputs


def clear_results(folder: AnyPath) -> None:
    """Remove what earlier runs wrote into ``folder`` (``--overwrite``); other files stay.

    Only with the folder's lock held: nothing else is writing there.
    """
    if not isinstance(folder, Path):  # a UPath (object store)
        return _clear_url_results(folder)
    state = folder / STATE_DIR
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(folder / name, ignore_errors=True)
    for child in state.iterdir() if state.is_dir() else []:
        if child.name == LOCK_NAME:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _clear_url_results(folder: UPath) -> None:
    """:func:`clear_results` for a folder at a URL."""
    store, root = folder.fs, folder.path
    for name in [*RUN_FILES, *RUN_FOLDERS, STATE_DIR]:
        path = f"{root}/{name}"
        if store.exists(path):
            store.rm(path, recursive=True)
    store.invalidate_cache()
