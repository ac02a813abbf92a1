"""Talking to Label Studio: its API (annotations, tasks, predictions) and its images.

Images are read from the task's data value:

* ``/data/upload/...``, ``/data/local-files/?d=...`` and other paths on Label Studio: fetched
  from Label Studio with the access token (or read straight from disk when ``local_files_root``
  is Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` and the file is there);
* cloud storage URIs (``s3://``, ``gs://``, ``azure-blob://``, ...): resolved as Label Studio's
  own tooling does (``label_studio_sdk``'s ``get_local_path``), through the task's presign
  endpoint ``/tasks/<task id>/presign/?fileuri=<base64 URI>``, which answers with the file or a
  redirect to a signed storage URL;
* ``http(s)://`` URLs: fetched.

The token goes to Label Studio's origin (scheme, host and port of ``url``, fixed when the object is
made) and nowhere else: not to another URL, and not across a redirect to another origin (a
presign answer redirects to the storage; the token stays behind).

Tokens: a legacy API token is sent as ``Authorization: Token <key>``; a personal access token
(a JWT refresh token) is exchanged at ``/api/token/refresh`` for an access token sent as
``Bearer``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from sansa.errors import RemoteError, SansaError
from sansa.images import load_image, open_image_file

TIMEOUT_S = 30.0
MAX_IMAGE_BYTES = 256 << 20
CACHED_IMAGES = 8
MAX_REDIRECTS = 5
#: task data values of these schemes live in a project's cloud storage (Label Studio presigns them)
CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob", "azure-spi", "azure")

log: logging.Logger = logging.getLogger("sansa.labelstudio")


class LabelStudio:
    """A Label Studio server: ``url`` (``http://host:port``) and an API ``token``.

    Args:
        url: Label Studio's address. Fixed: the token is only ever sent there, whatever
            Label Studio's ``/setup`` call (or anyone else) names. ``None``: no API (task
            images must then be full ``http(s)://`` URLs).
        token: an API token (legacy or personal access token); ``None`` until ``/setup`` sends one.
        local_files_root: Label Studio's local-files document root, read directly if given.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, local_files_root: str | Path | None = None
    ) -> None:
        self.url: str | None = url.rstrip("/") if url else None
        self.token: str | None = token or None
        self._given_token = self.token is not None
        self.local_files_root: Path | None = Path(local_files_root).resolve() if local_files_root else None
        self._access: str | None = None
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        """Whether the API can be called (an address and a token are known)."""
        return bool(self.url and self.token)

    def learn(self, hostname: str | None, token: str | None) -> None:
        """Take the token Label Studio's ``/setup`` call sends, unless the user gave one.

        The address is never taken from the call: every token goes only to the address given at
        start-up. A call naming another Label Studio (``hostname`` of another origin) is not
        Label Studio's own: its token is ignored (and logged), since it belongs elsewhere.
        """
        if not token or not self.url or self._given_token:
            return
        if hostname and not _same_origin(hostname, self.url):
            log.warning(
                "/setup names Label Studio %s, not %s (given at start-up): its token is not used; set "
                "LABEL_STUDIO_HOST to the same address, or give --label-studio-token",
                _redact(hostname),
                self.url,
            )
            return
        if token != self.token:
            self.token, self._access = token, None

    def check(self, project: int) -> None:
        """Check that the token opens ``project`` on Label Studio (:class:`RemoteError` naming the cause)."""
        if not self.url:
            return
        if not self.token:
            raise RemoteError(
                "Label Studio's API token is unknown: start the backend with --label-studio-token "
                "(Account & Settings > Access Token in Label Studio)"
            )
        self.get_json(f"/api/projects/{int(project)}")

    # -- API ------------------------------------------------------------------------------
    def annotated_tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of ``project`` that has annotations, with its annotations."""
        tasks = self.get_json(f"/api/projects/{int(project)}/export?exportType=JSON&download_all_tasks=false")
        if not isinstance(tasks, list):
            raise RemoteError(f"Label Studio: project {project} export is not a task list")
        return tasks

    def task(self, task_id: int) -> dict[str, Any]:
        """One task with its annotations."""
        return self.get_json(f"/api/tasks/{int(task_id)}")

    def tasks(self, project: int, task_ids: list[int]) -> list[dict[str, Any]]:
        """The given tasks of ``project`` with their annotations (Label Studio's export, filtered by id)."""
        ids = ",".join(str(int(i)) for i in task_ids)
        tasks = self.get_json(f"/api/projects/{int(project)}/export?exportType=JSON&download_all_tasks=true&ids={ids}")
        if not isinstance(tasks, list):
            raise RemoteError(f"Label Studio: project {project} export is not a task list")
        return tasks

    def post_prediction(self, task_id: int, prediction: dict[str, Any]) -> None:
        """Store ``prediction`` (``result``, ``score``, ``model_version``) on a task."""
        self.send_json("POST", "/api/predictions", {"task": int(task_id), **prediction})

    def predictions(self, task_id: int) -> list[dict[str, Any]]:
        """The predictions stored on a task."""
        answer = self.get_json(f"/api/predictions?task={int(task_id)}")
        return answer if isinstance(answer, list) else answer.get("results", [])

    def delete_prediction(self, prediction_id: int) -> None:
        """Delete one stored prediction."""
        self.send_json("DELETE", f"/api/predictions/{int(prediction_id)}", None)

    def get_json(self, path: str) -> Any:
        """``GET`` an API path; one-line :class:`RemoteError` on any failure (non-JSON answers too)."""
        return _json(self._get(self._absolute(path), auth=True), path)

    def send_json(self, method: str, path: str, body: object) -> object:
        """``POST``/``PATCH``/``DELETE`` an API path with a JSON body; the answer's JSON (``None`` if empty)."""
        data = None if body is None else json.dumps(body).encode()
        answer = self._request(self._absolute(path), auth=True, method=method, data=data)
        return _json(answer, path) if answer.strip() else None

    # -- images ---------------------------------------------------------------------------
    def image(self, source: str, task_id: int | None = None) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]`` of a task's image value (a few recent images are cached).

        ``task_id`` is needed for cloud storage URIs (Label Studio presigns them per task).
        """
        if not isinstance(source, str) or not source:
            raise SansaError(f"task image: expected a URL or path, got {source!r}")
        with self._lock:
            if source in self._images:
                self._images.move_to_end(source)
                return self._images[source]
        pixels = load_image(self._open_image(source, task_id), source)
        with self._lock:
            self._images[source] = pixels
            while len(self._images) > CACHED_IMAGES:
                self._images.popitem(last=False)
        return pixels

    def _open_image(self, source: str, task_id: int | None):
        """A local file's path, or the downloaded image decoded by :mod:`sansa.images` (raster formats only)."""
        local = self._local_file(source)
        if local is not None:
            return local
        url = self._absolute(self._presign_path(source, task_id) or source)
        return open_image_file(self._get(url, auth=self._same_host(url)), source)

    def _presign_path(self, source: str, task_id: int | None) -> str | None:
        """Label Studio's presign path for a cloud storage URI (``None`` for anything else)."""
        if urllib.parse.urlparse(source).scheme not in CLOUD_SCHEMES:
            return None
        if task_id is None:
            raise SansaError(f"{_redact(source)}: a cloud storage URI needs its task id to be presigned")
        encoded = base64.urlsafe_b64encode(source.encode()).decode()
        return f"/tasks/{int(task_id)}/presign/?fileuri={urllib.parse.quote(encoded)}"

    def _local_file(self, source: str) -> Path | None:
        parsed = urllib.parse.urlparse(source)
        if self.local_files_root is None or parsed.path.rstrip("/") != "/data/local-files":
            return None
        relative = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
        path = (self.local_files_root / relative).resolve()
        if self.local_files_root not in path.parents or not path.is_file():
            return None  # outside the root or absent: ask Label Studio, which checks permissions
        return path

    # -- HTTP -----------------------------------------------------------------------------
    def _absolute(self, source: str) -> str:
        if urllib.parse.urlparse(source).scheme in ("http", "https"):
            return source
        if not self.url:
            raise SansaError(
                f"{source}: a Label Studio path, but Label Studio's address is unknown (give --label-studio-url)"
            )
        return self.url + "/" + source.lstrip("/")

    def _same_host(self, url: str) -> bool:
        return self.url is not None and _same_origin(url, self.url)

    def _get(self, url: str, auth: bool) -> bytes:
        return self._request(url, auth)

    def _request(self, url: str, auth: bool, method: str = "GET", data: bytes | None = None, retry=True) -> bytes:
        """One HTTP exchange; the token only when ``auth`` and ``url`` is on Label Studio's origin.

        Redirects are followed by hand (at most :data:`MAX_REDIRECTS`), the token only to Label
        Studio's own origin. Errors are one-line :class:`RemoteError` (a query string, which may hold
        a signature, is never shown).
        """
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Content-Type": "application/json"} if data is not None else {}
            if auth and self.token and self._same_host(url):
                headers["Authorization"] = self._authorization()
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with _OPENER.open(request, timeout=TIMEOUT_S) as response:
                    body = response.read(MAX_IMAGE_BYTES + 1)
            except urllib.error.HTTPError as err:
                location = err.headers.get("Location") if err.code in (301, 302, 303, 307, 308) else None
                if location:
                    url = urllib.parse.urljoin(url, location)
                    if err.code == 303 or (err.code in (301, 302) and method != "GET"):
                        method, data = "GET", None
                    continue
                if err.code == 401 and self._access is not None and retry:  # the short-lived access token expired
                    self._access = None
                    return self._request(url, auth, method, data, retry=False)
                hint = " (check the API token)" if err.code in (401, 403) else ""
                raise RemoteError(f"{_redact(url)}: answered {err.code} {err.reason}{hint}") from None
            except (urllib.error.URLError, OSError) as err:
                raise RemoteError(f"{_redact(url)}: cannot be reached ({getattr(err, 'reason', err)})") from None
            if len(body) > MAX_IMAGE_BYTES:
                raise RemoteError(f"{_redact(url)}: larger than {MAX_IMAGE_BYTES >> 20} MiB")
            return body
        raise RemoteError(f"{_redact(url)}: more than {MAX_REDIRECTS} redirects")

    def _authorization(self) -> str:
        if (self.token or "").count(".") != 2:  # a legacy token
            return f"Token {self.token}"
        if self._access is None:  # a personal access token: a JWT refresh token
            body = json.dumps({"refresh": self.token}).encode()
            request = urllib.request.Request(
                self._absolute("/api/token/refresh"), data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with _OPENER.open(request, timeout=TIMEOUT_S) as response:  # never redirected
                    self._access = json.loads(response.read())["access"]
            except (urllib.error.URLError, OSError, KeyError, ValueError, TypeError) as err:
                raise RemoteError(f"Label Studio: the personal access token was refused ({err})") from None
        return f"Bearer {self._access}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands every redirect back as an error, so :meth:`LabelStudio._request` decides where the token goes."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's hook)
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host and port (a missing scheme reads as ``http``)."""

    def origin(value: str) -> tuple[str, str, int | None]:
        parsed = urllib.parse.urlparse(value if "://" in value else f"http://{value}")
        try:
            port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
        except ValueError:
            return ("", value, None)
        return (parsed.scheme.lower(), (parsed.hostname or "").lower(), port)

    return origin(url) == origin(other)


def _json(data: bytes, path: str) -> Any:
    """The JSON of an API answer; :class:`RemoteError` when it is not JSON (a login or proxy page)."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        start = data[:60].decode("utf-8", "replace").split("\n", 1)[0]
        raise RemoteError(
            f"Label Studio {_redact(path)}: the answer is not JSON ({start!r}...); is the address Label Studio's "
            "own, not a login or proxy page?"
        ) from None


def _redact(url: str) -> str:
    """The URL without a query string (which may hold signatures or tokens)."""
    return url.split("?", 1)[0]
