"""Sessions kept on disk, in the served folder's ``.sansa/web/`` (every write atomic, via :mod:`sansa.atomic`).

Layout::

    .sansa/web/current                        the id of the session ``sansa serve`` resumes
    .sansa/web/sessions/<id>/session.json     classes and colours, references and their prompts,
                                              review decisions, the session version
    .sansa/web/sessions/<id>/masks/<ref>.png  the mask of each mask-prompt reference (binary PNG)
    .sansa/web/sessions/<id>/results/<k>.npz  a propagated label map (``uint16 [H, W]``) + its metadata
    .sansa/web/sessions/<id>/accepted/<k>.npz a prediction accepted in review, as it was then

``session.json`` is rewritten after every change of the session; a result file after each
target is propagated. Where the served folder cannot be written (read-only media), sessions go to
``~/.cache/sansa/web/<hash of the folder>/`` instead (``SessionStore.note`` says so). A session
is only ever written by the server that holds it in memory, so nothing another page does can
remove it (other pages get sessions of their own ids).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sansa import atomic

STORE_DIR = Path(".sansa") / "web"
FORMAT = 1
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StoredMap:
    """A label map read back from disk: ``uint16 [H, W]`` (0 background, ``i + 1`` = ``labels[i]``)."""

    name: str
    version: int
    labels: list[str]
    scores: dict[str, float]
    label_map: np.ndarray


class SessionStore:
    """The sessions saved under ``<folder>/.sansa/web``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.root = Path(folder) / STORE_DIR
        self.note: str | None = None
        if not _writable(self.root):
            key = hashlib.sha1(str(Path(folder).resolve()).encode("utf-8")).hexdigest()[:16]
            fallback = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sansa" / "web" / key
            self.note = f"{self.root}: cannot be written; sessions are saved in {fallback}"
            self.root = fallback
        atomic.remove_temporaries(self.root)

    # -- which session -------------------------------------------------------------------
    def current(self) -> str | None:
        """The id of the last session started or used here, if it is still on disk."""
        try:
            sid = (self.root / "current").read_text().strip()
        except OSError:
            return None
        return sid if self.exists(sid) else None

    def set_current(self, sid: str) -> None:
        atomic.write_text(self.root / "current", sid + "\n")

    def exists(self, sid: str) -> bool:
        return bool(_SESSION_ID.match(sid)) and (self._dir(sid) / "session.json").is_file()

    # -- reading -------------------------------------------------------------------------
    def load(self, sid: str) -> dict[str, Any]:
        """``session.json`` of session ``sid`` (see :meth:`SansaService.save`)."""
        return json.loads((self._dir(sid) / "session.json").read_text())

    def load_mask(self, sid: str, ref_id: str) -> np.ndarray:
        """``bool [H, W]``: the saved mask of reference ``ref_id``."""
        with Image.open(self._dir(sid) / "masks" / f"{_safe(ref_id)}.png") as img:
            return np.asarray(img.convert("L")) > 0

    def load_maps(self, sid: str, kind: str) -> list[StoredMap]:
        """Every readable map of ``kind`` (``results`` or ``accepted``); damaged files are skipped."""
        maps = []
        for path in sorted((self._dir(sid) / kind).glob("*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    maps.append(
                        StoredMap(
                            meta["name"],
                            int(meta["version"]),
                            list(meta["labels"]),
                            {k: float(v) for k, v in meta["scores"].items()},
                            data["label_map"].astype(np.uint16),
                        )
                    )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return maps

    # -- writing -------------------------------------------------------------------------
    def save(self, sid: str, record: dict[str, Any]) -> None:
        atomic.write_json(self._dir(sid) / "session.json", record)

    def save_mask(self, sid: str, ref_id: str, mask: np.ndarray) -> None:
        png = atomic.encode_image(mask.astype(np.uint8) * 255, "PNG")
        atomic.write_bytes(self._dir(sid) / "masks" / f"{_safe(ref_id)}.png", png)

    def remove_mask(self, sid: str, ref_id: str) -> None:
        (self._dir(sid) / "masks" / f"{_safe(ref_id)}.png").unlink(missing_ok=True)

    def save_map(self, sid: str, kind: str, stored: StoredMap) -> None:
        meta = json.dumps(
            {"name": stored.name, "version": stored.version, "labels": stored.labels, "scores": stored.scores}
        )
        buffer = io.BytesIO()
        np.savez_compressed(buffer, label_map=stored.label_map.astype(np.uint16), meta=np.array(meta))
        atomic.write_bytes(self._map_path(sid, kind, stored.name), buffer.getvalue())

    def remove_map(self, sid: str, kind: str, name: str) -> None:
        self._map_path(sid, kind, name).unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------------
    def _dir(self, sid: str) -> Path:
        if not _SESSION_ID.match(sid):
            raise ValueError(f"session id {sid!r}: not a session id")
        return self.root / "sessions" / sid

    def _map_path(self, sid: str, kind: str, name: str) -> Path:
        key = hashlib.sha1(name.encode("utf-8")).hexdigest()[:20]
        return self._dir(sid) / kind / f"{key}.npz"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / ".probe", "")
        (folder / ".probe").unlink()
        return True
    except OSError:
        return False


def _safe(ref_id: str) -> str:
    if not re.match(r"^[0-9a-f]{1,32}$", ref_id):
        raise ValueError(f"reference id {ref_id!r}: not a reference id")
    return ref_id
