"""The HTTP side of the ML backend: Label Studio's routes on a FastAPI app.

Routes (Label Studio's ML backend protocol): ``GET /health`` (and ``/``), ``POST /setup``,
``POST /predict``, ``POST /webhook``, ``POST /train`` (a full re-read of the annotations), and
``GET /versions``.

Security: with a ``secret``, every route but ``/health`` and ``/webhook`` needs HTTP Basic
auth whose password is the secret (Label Studio: "Basic Authentication" on the model's
connection, any user name). ``/webhook`` answers anyone, because Label Studio's own webhooks
carry no credentials, but an unauthenticated event only makes the backend read the named
task back from Label Studio. Errors are one-line JSON ``{"error": ...}``, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sansa._version import __version__
from sansa.errors import SansaError
from sansa.labelstudio.backend import SansaBackend

log = logging.getLogger("sansa.labelstudio")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
OPEN_ROUTES = ("/", "/health", "/webhook")


def create_app(backend: SansaBackend, secret: str | None = None) -> FastAPI:
    """The ML backend app around ``backend``; ``secret`` (if given) guards the Label Studio calls."""
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

    @app.exception_handler(SansaError)
    async def sansa_error(request: Request, err: SansaError):
        log.warning("%s: %s", request.url.path, err)
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.get("/")
    @app.get("/health")
    def health() -> dict:
        return {"status": "UP", "model_class": "SansaBackend", "model_name": backend.model_name}

    @app.post("/setup")
    def setup(body: dict) -> dict:
        version = backend.setup(
            _required(body, "project"), body.get("schema"), body.get("hostname"), body.get("access_token")
        )
        return {"model_version": version}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        tasks = _required(body, "tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise SansaError("tasks: expected a list of task objects")
        results = backend.predict(tasks, _required(body, "project"), body.get("label_config"))
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

    return app


def _required(body: dict, key: str):
    if not isinstance(body, dict) or body.get(key) in (None, ""):
        raise SansaError(f"{key}: missing from the request")
    return body[key]


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


def run(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` until interrupted."""
    import uvicorn

    print(f"sansa label-studio: ML backend at http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
