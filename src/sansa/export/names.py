"""Target names to output stems that keep what users wrote, and stay unique.

A target's *name* is its path relative to the image root (``sub/写真 #1.jpg``), in POSIX form. Its
*stem* keeps the sub-folders (outputs mirror the input tree), drops the suffix, and keeps the name
as written (Unicode, in NFC form: what macOS and Linux both store as one name), replacing only what
a common file system or an output format cannot hold: control characters, ``/``, backslash, ``: * ? " < > |``
(NTFS and exFAT refuse them), ``+`` (it joins the sub-folders of YOLO's flat names), a trailing dot
or space (Windows drops them); no part is ``..`` or hidden, and none is longer than
:data:`MAX_PART_BYTES` (a short hash then ends it).

Two stems *collide* when a case-insensitive, normalisation-insensitive file system (macOS, Windows)
would take them for one file: :func:`collision_key`. Only then is a short hash of the name appended.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|+]')
MAX_PART_BYTES = 160  # leaves room for "_<class>.png" and a hash within the usual 255-byte limit


def relative_name(name: str | os.PathLike[str], image_root: Path | None) -> str:
    """``name`` relative to ``image_root`` when it lies under it, in POSIX form."""
    path = Path(name)
    if image_root is not None:
        root = image_root.resolve()
        candidate = path.resolve() if path.is_absolute() else (root / path).resolve()
        if candidate.is_relative_to(root):
            path = candidate.relative_to(root)
    return path.as_posix()


def safe_token(text: str) -> str:
    """``text`` as a file name part: NFC, with only what file systems or formats cannot hold
    replaced by ``_`` (never empty, never hidden, never ``..``, at most :data:`MAX_PART_BYTES`)."""
    token = _UNSAFE.sub("_", unicodedata.normalize("NFC", text)) or "_"
    token = token[: len(token.rstrip(". "))] + "_" * (len(token) - len(token.rstrip(". ")))
    token = "_" + token if token.startswith(".") else token
    data = token.encode("utf-8", "surrogatepass")
    if len(data) > MAX_PART_BYTES:
        token = data[: MAX_PART_BYTES - 9].decode("utf-8", "ignore") + "-" + digest(text)[:8]
    return token


def collision_key(stem: str) -> str:
    """What a case- and normalisation-insensitive file system sees of ``stem``: two stems with the
    same key would be one file there."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", stem).casefold())


def safe_stem(name: str) -> str:
    """``"sub dir/img 1.jpg"`` -> ``"sub_dir/img_1"``."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "")]
    if parts:
        parts[-1] = PurePosixPath(parts[-1]).stem or parts[-1]
    return "/".join(safe_token(p) for p in parts) or "_"


def disambiguate(stem: str, name: str) -> str:
    """The stem of a target whose stem is taken: a short hash of its name appended."""
    return f"{stem}-{digest(name)[:8]}"


def digest(name: str) -> str:
    """A stable hex digest of a name (file names of per-target state)."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def label_tokens(labels: list[str]) -> list[str]:
    """Safe, unique file-name tokens of class names (a clash gets the class id appended)."""
    tokens: list[str] = []
    for class_id, label in enumerate(labels, start=1):
        token = safe_token(label)
        taken = {collision_key(t) for t in tokens}
        tokens.append(token if collision_key(token) not in taken else f"{token}-{class_id}")
    return tokens
