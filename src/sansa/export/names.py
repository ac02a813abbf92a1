"""Target names to safe, unique output stems.

A target's *name* is its path relative to the image root (``sub/img1.jpg``), in POSIX form. Its
*stem* keeps the sub-folders (outputs mirror the input tree), drops the suffix, and replaces
anything but letters, digits, ``.``, ``_`` and ``-`` with ``_``; no part can be ``..`` or hidden.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def relative_name(name: str | os.PathLike, image_root: Path | None) -> str:
    """``name`` relative to ``image_root`` when it lies under it, in POSIX form."""
    path = Path(name)
    if image_root is not None:
        root = image_root.resolve()
        candidate = path.resolve() if path.is_absolute() else (root / path).resolve()
        if candidate.is_relative_to(root):
            path = candidate.relative_to(root)
    return path.as_posix()


def safe_token(text: str) -> str:
    """A file-name-safe version of ``text`` (never empty, never hidden, never ``..``)."""
    token = _UNSAFE.sub("_", text).strip("_") or "_"
    return "_" + token if token.startswith(".") else token


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
        tokens.append(token if token not in tokens else f"{token}-{class_id}")
    return tokens
