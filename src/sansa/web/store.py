"""Sessions kept on disk, in the served folder's ``.sansa/web/`` (every write atomic, via :mod:`sansa.atomic`).

Layout::

    .sansa/web/current                        the id of the session ``sansa serve`` resumes
    .sansa/web/token                          the folder's access token (mode 0600), kept across restarts
    .sansa/web/sessions/<id>/session.json     classes and colours, references and their prompts,
                                              review decisions, the session version
    .sansa/web/sessions/<id>/masks/<ref>.png  the mask of each mask-prompt reference (binary PNG)
    .sansa/web/sessions/<id>/results/<k>.npz  a propagated label map (``uint16 [H, W]``) + its metadata
    .sansa/web/sessions/<id>/accepted/<k>.npz a prediction accepted in review, as it was then
    .sansa/web/sessions/<id>/objects/<k>.npz  a target's objects as the user edited them

Each map file holds ``label_map`` and, for results with objects, ``object_map`` (``uint16 [H, W]``,
``k`` = the ``k``-th of the metadata's ``objects``: ``{label, score, state}``).

``session.json`` is rewritten after every change of the session; a result file after each
target is propagated.

Stored files are read as untrusted: a damaged or tampered one (empty, cut, garbage, fields of the
wrong type, a label map not of its image's shape) is set aside as ``<file>.damaged`` and treated as
missing (that image is redone), with one note saying so; a label map's shape and type are read from
its header and checked against the image *before* it is decompressed, and a mask PNG is read by
:mod:`sansa.images` (raster formats only, the pixel limit).

Where the served folder cannot be written (read-only media), sessions go to
``~/.cache/sansa/web/<hash of the folder>/`` instead (``SessionStore.note`` says so). A session
is only ever written by the server that holds it in memory, so nothing another page does can
remove it (other pages get sessions of their own ids).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from sansa import atomic
from sansa.fs import TEMP_SUFFIX
from sansa.images import load_mask

STORE_DIR = Path(".sansa") / "web"
FORMAT = 1
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
REVIEW_STATES = ("accepted", "rejected")  # the values of ``reviews`` in session.json (and of objects' states)
MAX_META_BYTES = 1 << 20  # a stored map's metadata (names, labels, scores) is a few hundred bytes


class DamagedFile(ValueError):
    """A stored file that cannot be what sansa wrote (the message says why)."""


# What reading a tampered ``.npz`` raises: zipfile's own errors, a member's decompressor's (zlib, bz2's
# OSError, lzma), and RuntimeError for a member flagged encrypted or of an unknown compression method
# (NotImplementedError).
_UNREADABLE = (
    DamagedFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,
)


@dataclass(frozen=True)
class StoredMap:
    """A label map read back from disk: ``uint16 [H, W]`` (0 background, ``i + 1`` = ``labels[i]``),
    with its object map (``uint16 [H, W]``, ``k`` = ``objects[k - 1]``; ``None`` without objects)."""

    name: str
    version: int
    labels: list[str]
    scores: dict[str, float]
    label_map: np.ndarray
    object_map: np.ndarray | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)


class SessionStore:
    """The sessions saved under ``<folder>/.sansa/web``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.root: Path = Path(folder) / STORE_DIR
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

    def token(self, make: Callable[[], str], given: str | None = None) -> str:
        """The folder's access token: ``given`` (then kept), else the one saved, else a new one from
        ``make()`` (then kept). Saved readable by the owner only (0600), so open tabs keep working
        across restarts of the server."""
        path = self.root / "token"
        if given is None:
            try:
                saved = path.read_text().strip()
                if _TOKEN.match(saved):
                    return saved
            except OSError:
                pass
        token = given or make()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".token.", suffix=TEMP_SUFFIX)  # 0600
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only folder and cache: the token lasts as long as the server
        return token

    # -- reading -------------------------------------------------------------------------
    def load(self, sid: str) -> tuple[dict[str, Any], list[str]]:
        """``session.json`` of session ``sid`` (see :meth:`SansaService.save`), each field type-checked,
        and one note per part left out.

        Raises :class:`DamagedFile` (or ``OSError``) when the session itself cannot be read (not a
        JSON object, no version or classes); ``reviews`` that are not a mapping of image name to
        ``"accepted"``/``"rejected"`` are left out with a note; ``references`` is a list (of what the
        file holds: see :func:`is_reference`).
        """
        path = self._dir(sid) / "session.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DamagedFile(f"{path.name}: not valid JSON ({err})") from None
        classes = record.get("classes") if isinstance(record, dict) else None
        if not (
            isinstance(classes, list)
            and all(
                isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("color"), str)
                for c in classes
            )
            and type(record.get("version")) is int
        ):
            raise DamagedFile(f"{path.name}: no version or classes in the form sansa writes")
        notes = []
        reviews = record.get("reviews", {})
        if not isinstance(reviews, dict) or not all(v in REVIEW_STATES for v in reviews.values()):
            notes.append(f"{path.name}: its review decisions are damaged and were left out; review again")
            record["reviews"] = {}
        if not isinstance(record.get("references", []), list):
            raise DamagedFile(f"{path.name}: its references are not a list")
        record.setdefault("references", [])
        notes += _check_extras(record, path.name)
        return record, notes

    def load_mask(self, sid: str, ref_id: str) -> np.ndarray:
        """``bool [H, W]``: the saved mask of reference ``ref_id`` (read by :mod:`sansa.images`:
        raster formats only, the pixel limit checked from the header)."""
        return load_mask(self._dir(sid) / "masks" / f"{_safe(ref_id)}.png")

    def load_maps(
        self, sid: str, kind: str, shapes: Mapping[str, tuple[int, int]]
    ) -> tuple[list[StoredMap], list[str]]:
        """The maps of ``kind`` (``results`` or ``accepted``) of the images in ``shapes`` (name ->
        ``(H, W)`` of the image as shown), and one note per damaged file.

        A damaged file (unreadable, fields of the wrong type, a label map not ``uint16 [H, W]`` of
        its image) is renamed ``<file>.damaged`` and left out, so its image is redone; a map of an
        image no longer in the folder is left out and kept on disk.
        """
        maps, notes = [], []
        for path in sorted((self._dir(sid) / kind).glob("*.npz")):
            try:
                stored = _read_map(path, shapes)
            except _UNREADABLE as err:
                reason = str(err) if isinstance(err, DamagedFile) else f"{type(err).__name__}: {err}"
                notes.append(
                    f"saved {kind} file {path.name}: damaged ({reason[:200]}); set aside, that image is redone"
                )
                path.replace(path.with_name(path.name + ".damaged"))
                continue
            if stored is not None:
                maps.append(stored)
        return maps, notes

    # -- writing -------------------------------------------------------------------------
    def save(self, sid: str, record: dict[str, Any]) -> None:
        atomic.write_json(self._dir(sid) / "session.json", record)

    def save_mask(self, sid: str, ref_id: str, mask: np.ndarray) -> None:
        png = atomic.encode_image(Image.fromarray(np.ascontiguousarray(mask, dtype=bool)), "PNG")  # 1 bit a pixel: fast
        atomic.write_bytes(self._dir(sid) / "masks" / f"{_safe(ref_id)}.png", png)

    def keep_mask(self, sid: str, ref_id: str, kept_id: str) -> None:
        """Keep reference ``ref_id``'s saved mask also as ``kept_id``'s (a hard link where the file
        system allows: the reference's next save replaces its file, not the kept one)."""
        masks = self._dir(sid) / "masks"
        atomic.copy_file(masks / f"{_safe(ref_id)}.png", masks / f"{_safe(kept_id)}.png", link=True)

    def set_aside_mask(self, sid: str, ref_id: str) -> None:
        """Rename a damaged mask ``<ref>.png.damaged`` (kept for inspection, never read again)."""
        path = self._dir(sid) / "masks" / f"{_safe(ref_id)}.png"
        if path.exists():
            path.replace(path.with_name(path.name + ".damaged"))

    def remove_mask(self, sid: str, ref_id: str) -> None:
        (self._dir(sid) / "masks" / f"{_safe(ref_id)}.png").unlink(missing_ok=True)

    def save_map(self, sid: str, kind: str, stored: StoredMap) -> None:
        record = {"name": stored.name, "version": stored.version, "labels": stored.labels, "scores": stored.scores}
        arrays: dict[str, Any] = {"label_map": stored.label_map.astype(np.uint16)}
        if stored.object_map is not None:
            record["objects"] = stored.objects
            arrays["object_map"] = stored.object_map.astype(np.uint16)
        arrays["meta"] = np.array(json.dumps(record))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
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


def is_reference(ref: Any) -> bool:
    """A reference record as sansa writes it: ids and names are strings, the prompt a mapping or null."""
    return (
        isinstance(ref, dict)
        and all(isinstance(ref.get(key), str) for key in ("id", "image", "label"))
        and isinstance(ref.get("source", ""), str)
        and (ref.get("prompt") is None or isinstance(ref["prompt"], dict))
    )


def _read_map(path: Path, shapes: Mapping[str, tuple[int, int]]) -> StoredMap | None:
    """A stored map, checked field by field; the label map's header is checked against its image's
    shape before a byte of it is decompressed. ``None``: its image is not in the folder."""
    with zipfile.ZipFile(path) as archive:
        meta = _read_meta(archive)
        shape = shapes.get(meta["name"])
        if shape is None:
            return None
        label_map = _read_uint16(archive, "label_map", "a label map", shape, meta["name"])
        object_map = None
        if "objects" in meta:
            object_map = _read_uint16(archive, "object_map", "an object map", shape, meta["name"])
    if int(label_map.max(initial=0)) > len(meta["labels"]):
        raise DamagedFile(f"label map values above its {len(meta['labels'])} labels")
    if object_map is not None and int(object_map.max(initial=0)) > len(meta["objects"]):
        raise DamagedFile(f"object map values above its {len(meta['objects'])} objects")
    return StoredMap(
        meta["name"], meta["version"], meta["labels"], meta["scores"], label_map, object_map, meta.get("objects", [])
    )


def _read_uint16(
    archive: zipfile.ZipFile, member_name: str, what: str, shape: tuple[int, int], image: str
) -> np.ndarray:
    """The ``uint16 [H, W]`` array ``member_name`` of a stored map, its header checked first."""
    with archive.open(f"{member_name}.npy") as member:
        found, dtype = _npy_header(member)
        if found != shape or dtype != np.dtype(np.uint16):
            raise DamagedFile(f"{what} {dtype} {found}, expected uint16 {shape} for image {image!r}")
        return _npy_data(member, found, dtype)


def _read_meta(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The ``meta`` record of a stored map: name (str), version (int), labels (list of str),
    scores (str -> number), each type checked."""
    with archive.open("meta.npy") as member:
        shape, dtype = _npy_header(member)
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_META_BYTES:
            raise DamagedFile(f"metadata {dtype} {shape}, expected one short string")
        meta = json.loads(str(_npy_data(member, shape, dtype)))
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("name"), str)
        and type(meta.get("version")) is int
        and isinstance(meta.get("labels"), list)
        and all(isinstance(label, str) for label in meta["labels"])
        and isinstance(meta.get("scores"), dict)
        and all(type(v) in (int, float) for v in meta["scores"].values())
    )
    if not ok or not _are_objects(meta.get("objects", []), meta["labels"]):
        raise DamagedFile("metadata fields of the wrong type")
    meta["scores"] = {str(k): float(v) for k, v in meta["scores"].items()}
    return meta


def _are_objects(objects: Any, labels: list[str]) -> bool:
    """Whether ``objects`` is a list of ``{label (one of labels), score (number), state}``."""
    return isinstance(objects, list) and all(
        isinstance(o, dict)
        and o.get("label") in labels
        and type(o.get("score")) in (int, float)
        and o.get("state") in (None, *REVIEW_STATES)
        for o in objects
    )


def _npy_header(member: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from an ``.npy`` stream's header; the stream is left at the array's data."""
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(member)
    if fortran or dtype.hasobject:
        raise DamagedFile(f"an array of {dtype}{' in Fortran order' if fortran else ''}, not what sansa writes")
    return tuple(shape), dtype


def _npy_data(member: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array after :func:`_npy_header`: exactly ``prod(shape)`` items, else :class:`DamagedFile`."""
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = member.read(size)
    if len(data) != size:
        raise DamagedFile(f"cut short ({len(data)} of {size} bytes)")
    return np.frombuffer(data, dtype).reshape(shape)


def _check_extras(record: dict[str, Any], file: str) -> list[str]:
    """Type-check ``revision``, ``fixes`` (image -> fixed classes), ``trash`` (deleted classes) and
    ``history`` (undo steps) of a ``session.json`` in place; what is damaged is left out, one note each."""
    notes = []
    if type(record.get("revision", 0)) is not int:
        record["revision"] = 0
    fixes = record.get("fixes", {})
    if not (
        isinstance(fixes, dict)
        and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in fixes.values())
    ):
        notes.append(f"{file}: its fixed classes are damaged and were left out")
        fixes = {}
    record["fixes"] = {k: list(v) for k, v in fixes.items()}
    trash = record.get("trash", [])
    kept = [e for e in trash if _is_deleted_class(e)] if isinstance(trash, list) else []
    if not isinstance(trash, list) or len(kept) != len(trash):
        notes.append(f"{file}: damaged deleted classes were left out (they cannot be restored)")
    record["trash"] = kept
    history = record.get("history", [])
    kept = [e for e in history if _is_history_entry(e)] if isinstance(history, list) else []
    if not isinstance(history, list) or len(kept) != len(history):
        notes.append(f"{file}: damaged undo steps were left out (they cannot be undone)")
    record["history"] = kept
    return notes


def _is_history_entry(entry: Any) -> bool:
    """Whether ``entry`` has the form of an undo step as :meth:`SansaService.put_reference` saves it."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and re.match(r"^[0-9a-f]{1,32}$", entry["id"]) is not None
        and all(isinstance(entry.get(k), str) for k in ("image", "label"))
        and type(entry.get("fixed")) is bool
        and (entry.get("before") is None or is_reference(entry["before"]))
    )


def _is_deleted_class(entry: Any) -> bool:
    """Whether ``entry`` has the form of a deleted class as :meth:`SansaService.remove_class` saves it."""
    return (
        isinstance(entry, dict)
        and all(isinstance(entry.get(k), str) for k in ("id", "name", "color"))
        and type(entry.get("position")) is int
        and isinstance(entry.get("references"), list)
        and all(is_reference(r) for r in entry["references"])
        and isinstance(entry.get("fixes"), list)
        and all(isinstance(x, str) for x in entry["fixes"])
    )


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
