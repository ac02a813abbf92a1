"""The web app belongs to the page that opened it: Host allow-list, Origin check, per-launch token.

One ASGI middleware (:class:`Guard`) checks every request before the app sees it:

1. **Host** (against DNS rebinding): the ``Host`` header must name this server: the bound address,
   ``localhost``, ``127.0.0.1`` or ``[::1]``, or a name given with ``--allow-host``; with the port the
   socket is bound to (an ``--allow-host`` entry may carry its own port, e.g. for a reverse proxy).
   A server bound to every interface (``0.0.0.0`` / ``::``) also accepts IP addresses (a DNS name is
   what rebinding needs, never an address). Otherwise: 403.
2. **Origin** (against cross-site requests): a request carrying ``Origin`` must come from this
   server's own origin (``null`` and every other site: 403); a browser's ``Sec-Fetch-Site`` must be
   ``same-origin`` or ``none``.
3. **Token** (against every other page and process): a random per-launch token, printed in the
   address ``sansa serve`` shows (``/?token=...``). The page gets it with its HTML (a
   ``<meta name="sansa-token">`` written by :func:`page_html`) and sends it with every API call in
   the ``X-Sansa-Token`` header (``Authorization: token ...`` and ``?token=`` are accepted too, the
   latter for ``<img>`` addresses). Without it: 401. Only ``/static/`` (the page's own code),
   ``/favicon.ico`` and the API's description (``/docs``, ``/openapi.json``) are served without it.

Refusals are JSON ``{"detail": "one line"}`` (the page ``/`` answers a short HTML explanation).

:func:`listen` binds the socket before anything is served, so a bad or busy port is a one-line
error and the address (with the token) is printed only once the server can answer.
"""

from __future__ import annotations

import errno
import hmac
import html
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from sansa.errors import SansaError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
TOKEN_HEADER = "x-sansa-token"
TOKEN_QUERY = "token"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/favicon.ico", "/docs", "/docs/oauth2-redirect", "/openapi.json")  # no data in them

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]  # an ASGI app


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def split_host(value: str) -> tuple[str, int | None]:
    """``"Example.org:8000"`` -> ``("example.org", 8000)``; ``"[::1]:80"`` -> ``("::1", 80)``; no port: ``None``.

    Raises ValueError for a malformed value (a bad port, an unclosed bracket, spaces, ``@``).
    """
    value = value.strip().lower()
    if not value or any(c in value for c in " /@\\?#"):
        raise ValueError(value)
    if value.startswith("["):
        end = value.index("]")
        name, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(value)
        port = rest[1:] or None
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:  # a bare IPv6 address
        name, port = value, None
    else:
        name, port = value, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(value)
    return name.rstrip("."), int(port) if port is not None else None


def parse_allow_hosts(entries: Iterable[str]) -> set[tuple[str, int | None]]:
    """``allow_hosts`` values as ``(name, port or None)``; a malformed one is a one-line :class:`SansaError`."""
    out = set()
    for entry in entries:
        try:
            out.add(split_host(entry))
        except ValueError:
            raise SansaError(f"allow_hosts {entry!r}: expected a host name or address, optionally with :PORT") from None
    return out


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    """ASGI middleware enforcing the Host, Origin and token checks of this module on every request.

    Args:
        app: the ASGI app to protect.
        token: the per-launch token (:func:`new_token`); ``None``: Host and Origin checks only
            (an app with its own authentication, e.g. ``sansa label-studio``'s shared secret).
        allow_hosts: extra names the server may be reached as (``name`` or ``name:port``).
    """

    def __init__(self, app: App, token: str | None, allow_hosts: Iterable[str] = ()) -> None:
        self.app: App = app
        self.token: str | None = token
        self.extra: set[tuple[str, int | None]] = parse_allow_hosts(allow_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is None:
            await self.app(scope, receive, _with_headers(send))
            return
        status, detail = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("path") == "/" and status == 401:
            page = _login_page(detail, _headers(scope).get("host", ""))
            await _respond(send, status, page.encode(), b"text/html; charset=utf-8")
        else:
            await _respond(send, status, json.dumps({"detail": detail}).encode(), b"application/json")

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """``(status, one-line reason)`` if the request must be refused, else ``None``."""
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.host_allowed(host, scope.get("server")):
            return 403, (
                f"Host {host!r} is not this server: use the address sansa printed at start-up, or "
                "start it with --allow-host NAME"
            )
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"{scope.get('scheme', 'http')}://{host.lower()}":
            return 403, f"cross-origin request from {origin!r} refused: only the page of this server may call it"
        navigation = (
            scope.get("path") == "/" and headers.get("sec-fetch-mode") == "navigate" and scope.get("method") == "GET"
        )  # a link to the page (it still needs the token)
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none") and not navigation:
            return 403, f"cross-site request refused (Sec-Fetch-Site: {headers['sec-fetch-site']})"
        path = scope.get("path", "")
        if self.token is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        if not self.token_ok(headers, scope.get("query_string", b"")):
            return 401, (
                "missing or wrong token: open the address `sansa serve` printed (it ends in ?token=...); "
                "API clients send it in the X-Sansa-Token header"
            )
        return None

    def host_allowed(self, host: str, server: tuple[str, int] | None) -> bool:
        """Whether ``host`` (the Host header) names this server, bound at ``server = (address, port)``."""
        try:
            name, port = split_host(host)
        except ValueError:
            return False
        bound, bound_port = (server[0], server[1]) if server else ("", None)
        if (name, port) in self.extra:
            return True
        if (port or 80) != bound_port:
            return False
        names = {*LOCAL_NAMES, bound.lower()} | {n for n, p in self.extra if p is None}
        return name in names or (bound in WILDCARDS and _is_ip(name))

    def token_ok(self, headers: dict[str, str], query_string: bytes) -> bool:
        """Whether the request carries this launch's token (header, ``Authorization`` or ``?token=``)."""
        given = [headers.get(TOKEN_HEADER, "")]
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer"):
            given.append(value.strip())
        given += parse_qs(query_string.decode("latin-1")).get(TOKEN_QUERY, [])
        expected = (self.token or "").encode()
        return any(hmac.compare_digest(g.encode("utf-8", "replace"), expected) for g in given if g)


def page_html(page: str, token: str) -> str:
    """The page's HTML with the token in ``<meta name="sansa-token">`` (read by ``static/api.js``)."""
    meta = f'<meta name="sansa-token" content="{html.escape(token)}">'
    return page.replace("<head>", f"<head>\n  {meta}", 1)


def check_token(token: str) -> str:
    """``token`` if it can be a token (16 to 128 letters, digits, ``-`` or ``_``), else a one-line error."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
        raise SansaError("token: use 16 to 128 letters, digits, - or _ (it travels in the page's address)")
    return token


def install(app: Any, token: str | None = None, allow_hosts: Iterable[str] = ()) -> str:
    """Protect a Starlette/FastAPI ``app`` with :class:`Guard`; its token is ``app.state.token`` (returned)."""
    token = token or new_token()
    app.state.token = token
    app.add_middleware(Guard, token=token, allow_hosts=tuple(allow_hosts))
    return token


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers, names lower-cased; a repeated header keeps its first value (of Host: the only one)."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key == "host" and key in out:
            out[key] = "\x00duplicate"  # two Host headers: never a match
        out.setdefault(key, value.decode("latin-1"))
    return out


# on every answer: the address's token never leaves in a Referer, no other site frames the page
SAFETY_HEADERS = [
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
]


def _with_headers(send: Send) -> Send:
    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SAFETY_HEADERS]
        await send(message)

    return sending


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *SAFETY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _login_page(reason: str, host: str) -> str:
    """The page answered to ``/`` without the right token; ``host``: the (checked) Host it was asked as."""
    return (
        "<!doctype html><meta charset='utf-8'><title>SANSA: token needed</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:4em auto'>"
        "<h1>Open the address <code>sansa serve</code> printed</h1>"
        f"<p>{html.escape(reason)}</p><p>It looks like <code>http://{html.escape(host)}/?token=…</code>; "
        "the token is kept in the folder's <code>.sansa/web/token</code> across restarts "
        "(<code>sansa serve --token</code> sets one).</p></body>"
    )


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one); one-line :class:`SansaError` if impossible."""
    if not 0 <= port <= 65535:
        raise SansaError(f"port {port}: must be from 0 (any free port) to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise SansaError(f"host {host}: not an address of this computer ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise SansaError(
                f"port {port}: already in use on {host} (another program or sansa serve); pick another port"
            ) from None
        raise SansaError(f"host {host} port {port}: cannot listen there ({err.strerror})") from None
    sock.set_inheritable(True)
    return sock
