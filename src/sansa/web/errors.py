"""Errors of the web app, each with the HTTP status it is answered with (the message is one line)."""

from __future__ import annotations

from sansa.errors import SansaError


class WebError(SansaError):
    """A request the server refuses; ``status`` is the HTTP status code."""

    status = 400


class NotFound(WebError):
    status = 404


class Conflict(WebError):
    status = 409


class Stale(Conflict):
    """A change made on an older revision of a session (another tab changed it meanwhile)."""


class TooLarge(WebError):
    status = 413


class NotAnImage(WebError):
    status = 415


def human_size(count: int) -> str:
    """``33554432`` -> ``"32 MiB"``: a size for a message (binary units, at most one decimal)."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "bytes" or size == int(size) else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def status_of(error: SansaError) -> int:
    """The HTTP status for any :class:`SansaError` (400 for a bad prompt, image or argument)."""
    return error.status if isinstance(error, WebError) else 400
