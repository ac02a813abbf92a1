"""User-facing errors.

Every error a person can cause (a wrong file, a prompt outside the image, an empty mask) is a
:class:`SansaError` whose message is one line naming the file or argument at fault. Front ends
(CLI, web app) print that line and exit or answer with it, never a traceback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sansa.fs import AnyPath


class SansaError(Exception):
    """Base class: a problem with the user's input, explained in one line."""


class CheckpointError(SansaError):
    """A checkpoint file is missing, unreadable, or not the kind of file expected."""


class ImageError(SansaError):
    """An image or mask file cannot be read or has an unsupported layout."""


class PromptError(SansaError):
    """A prompt (points, box, scribble, mask) is invalid for its image."""


class DownloadError(SansaError):
    """A model file could not be downloaded or verified."""


class OutputError(SansaError, OSError):
    """A file could not be written (read-only folder, full disk, ...): one line naming the path."""

    @classmethod
    def of(cls, path: str | os.PathLike[str] | AnyPath, err: OSError, doing: str = "cannot write") -> OutputError:
        """``"<path>: cannot write (No space left on device)"``, keeping ``err``'s ``errno``."""
        reason = err.strerror or str(err) or type(err).__name__
        error = cls(f"{path}: {doing} ({reason})")
        error.errno = err.errno
        return error


class RemoteError(SansaError):
    """A service sansa talks to (Label Studio, a storage) refused, failed, or answered something unreadable."""
