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


class TooLarge(WebError):
    status = 413


class NotAnImage(WebError):
    status = 415


def status_of(error: SansaError) -> int:
    """The HTTP status for any :class:`SansaError` (400 for a bad prompt, image or argument)."""
    return error.status if isinstance(error, WebError) else 400
