"""The HTTP side of the ML backend: Label Studio's routes on a FastAPI app.

Routes (Label Studio's ML backend protocol): ``GET /health`` (and ``/``), ``POST /setup``,
``POST /predict``, ``POST /webhook``, ``POST /train`` (a full re-read of the annotations),
``GET /versions``, and ``GET /failures?project=ID`` (the tasks left without a prediction, and why).

Security:

* Host and Origin are checked as ``sansa serve`` checks them (:class:`sansa.web.security.Guard`,
  without its token): a DNS-rebinding page or another site cannot call the backend from a browser.
* With a ``secret``, every route but ``/health`` and ``/webhook`` needs HTTP Basic auth whose
  password is the secret (Label Studio: "Basic Authentication" on the model's connection, any
  user name). ``/webhook`` answers anyone, because Label Studio's own webhooks carry no
  credentials, but an unauthenticated event only makes the backend read the named task back
  from Label Studio.
* Label Studio's address is fixed at start-up (:class:`~sansa.labelstudio.remote.LabelStudio`):
  ``/setup`` cannot change where the token goes.

Errors are one-line JSON ``{"error": ...}``, never a traceback: 400 for a bad request, 502 when
Label Studio (or a storage) refused or answered something unreadable, 500 for a bug.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sansa._version import __version__
from sansa.errors import RemoteError, SansaError
from sansa.labelstudio.backend import SansaBackend
from sansa.web.security import Guard, listen, parse_allow_hosts

log: logging.Logger = logging.getLogger("sansa.labelstudio")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
OPEN_ROUTES = ("/", "/health", "/webhook")


def create_app(backend: SansaBackend, secret: str | None = None, allow_hosts: Iterable[str] = ()) -> FastAPI:
    """The ML backend app around ``backend``.

    Args:
        backend: the backend answering the routes.
        secret: if given, the Basic auth password the Label Studio calls need.
        allow_hosts: extra names the backend may be reached as (``name`` or ``name:port``), e.g.
            ``host.docker.internal`` when Label Studio runs in a container.
    """
    parse_allow_hosts(allow_hosts)  # a malformed entry: one line, before serving
    app = FastAPI(title="sansa ML backend for Label Studio", version=__version__, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def check_secret(request: Request, call_next):
        request.state.trusted = secret is None or _authorized(request.headers.get("authorization"), secret)
        if not request.state.trusted and request.url.path not in OPEN_ROUTES:
            return JSONResponse(
                {"error": "missing or wrong credentials (the backend's shared secret)"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="sansa"'},
            )
        return await call_next(request)

    app.add_middleware(Guard, token=None, allow_hosts=tuple(allow_hosts))

    @app.exception_handler(SansaError)
    async def sansa_error(request: Request, err: SansaError):
        status = 502 if isinstance(err, RemoteError) else 400
        log.warning("%s: %s", request.url.path, err)
        return JSONResponse({"error": str(err)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, err: RequestValidationError):
        where = next((tuple(e.get("loc") or ()) for e in err.errors()), ())
        if where[:1] == ("query",):  # e.g. GET /failures without ?project=
            return JSONResponse({"error": f"{where[-1]}: missing from the query string"}, status_code=400)
        return JSONResponse({"error": "request body: expected a JSON object"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        log.exception("%s: internal error", request.url.path)
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the backend's log"}, status_code=500)

    @app.get("/")
    @app.get("/health")
    def health() -> dict:
        return {"status": "UP", "model_class": "SansaBackend", "model_name": backend.model_name}

    @app.post("/setup")
    def setup(body: dict) -> dict:
        version = backend.setup(
            _required(body, "project"), body.get("schema"), _text(body, "hostname"), _text(body, "access_token")
        )
        return {"model_version": version}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        tasks = _required(body, "tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise SansaError("tasks: expected a list of task objects")
        params: dict[str, Any] = body["params"] if isinstance(body.get("params"), dict) else {}
        context = params.get("context") if isinstance(params.get("context"), dict) else body.get("context")
        results = backend.predict(
            tasks,
            _required(body, "project"),
            _text(body, "label_config"),
            context if isinstance(context, dict) else None,
        )
        return {"results": results, "model_version": backend.model_version(body["project"])}

    @app.post("/webhook")
    def webhook(body: dict, request: Request) -> JSONResponse:
        return JSONResponse(backend.webhook(body, trusted=request.state.trusted), status_code=201)

    @app.post("/train")
    def train(body: dict) -> JSONResponse:
        answer = backend.webhook({"action": "START_TRAINING", "project": _required(body, "project")}, trusted=True)
        return JSONResponse(answer, status_code=201)

    @app.get("/versions")
    def versions(project: str | None = None) -> dict:
        return {"versions": [backend.model_version(project)] if project else []}

    @app.get("/failures")
    def failures(project: str) -> dict:
        return {"failures": {str(k): v for k, v in backend.failures(project).items()}}

    return app


def _required(body: dict, key: str):
    if not isinstance(body, dict) or body.get(key) in (None, ""):
        raise SansaError(f"{key}: missing from the request")
    return body[key]


def _text(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise SansaError(f"{key}: expected a string, got {type(value).__name__}")
    return value or None


def _authorized(header: str | None, secret: str) -> bool:
    """Whether ``Authorization: Basic ...`` carries ``secret`` as its password."""
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    password = decoded.split(":", 1)[1] if ":" in decoded else ""
    return hmac.compare_digest(password.encode(), secret.encode())


def run(
    app: FastAPI,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    notes: Iterable[str] = (),
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` until interrupted, on ``sock`` (from :func:`sansa.web.security.listen`) or
    ``host:port``; ``notes`` are printed under the address (what to set in Label Studio)."""
    import uvicorn

    sock = sock or listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"sansa label-studio: ML backend at http://{bound_host}:{bound_port}  (Ctrl+C to stop)", flush=True)
    for note in notes:
        print(f"sansa label-studio: {note}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
