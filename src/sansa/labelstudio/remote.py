"""Talking to Label Studio: its API (annotations of a project, one task) and its images.

Images are read from the task's data value:

* ``/data/upload/...``, ``/data/local-files/?d=...`` and other paths on Label Studio: fetched
  from Label Studio with the access token (or read straight from disk when ``local_files_root``
  is Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` and the file is there);
* ``http(s)://`` URLs: fetched; the token is sent only to Label Studio's own host.

Tokens: a legacy API token is sent as ``Authorization: Token <key>``; a personal access token
(a JWT refresh token) is exchanged at ``/api/token/refresh`` for an access token sent as
``Bearer``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sansa.errors import SansaError
from sansa.images import load_image, open_image_file

TIMEOUT_S = 30.0
MAX_IMAGE_BYTES = 256 << 20
CACHED_IMAGES = 8


class LabelStudio:
    """A Label Studio server: ``url`` (``http://host:port``) and an API ``token``.

    Args:
        url: Label Studio's address; ``None`` until Label Studio's ``/setup`` call tells it.
        token: an API token (legacy or personal access token).
        local_files_root: Label Studio's local-files document root, read directly if given.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, local_files_root: str | Path | None = None
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token or None
        self.local_files_root = Path(local_files_root).resolve() if local_files_root else None
        self._access: str | None = None
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        """Whether the API can be called (an address and a token are known)."""
        return bool(self.url and self.token)

    def learn(self, url: str | None, token: str | None) -> None:
        """Take the address and token Label Studio's ``/setup`` call sends, unless set by the user."""
        if url and not self.url:
            self.url = url.rstrip("/")
        if token and not self.token:
            self.token = token

    # -- API ------------------------------------------------------------------------------
    def annotated_tasks(self, project: int) -> list[dict]:
        """Every task of ``project`` that has annotations, with its annotations."""
        tasks = self.get_json(f"/api/projects/{int(project)}/export?exportType=JSON&download_all_tasks=false")
        if not isinstance(tasks, list):
            raise SansaError(f"Label Studio: project {project} export is not a task list")
        return tasks

    def task(self, task_id: int) -> dict:
        """One task with its annotations."""
        return self.get_json(f"/api/tasks/{int(task_id)}")

    def get_json(self, path: str):
        """``GET`` an API path; one-line :class:`SansaError` on any failure."""
        return json.loads(self._get(self._absolute(path), auth=True).decode("utf-8"))

    # -- images ---------------------------------------------------------------------------
    def image(self, source: str) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]`` of a task's image value (a few recent images are cached)."""
        if not isinstance(source, str) or not source:
            raise SansaError(f"task image: expected a URL or path, got {source!r}")
        with self._lock:
            if source in self._images:
                self._images.move_to_end(source)
                return self._images[source]
        pixels = load_image(self._open_image(source), source)
        with self._lock:
            self._images[source] = pixels
            while len(self._images) > CACHED_IMAGES:
                self._images.popitem(last=False)
        return pixels

    def _open_image(self, source: str):
        """A local file's path, or the downloaded image decoded by :mod:`sansa.images` (raster formats only)."""
        local = self._local_file(source)
        if local is not None:
            return local
        url = self._absolute(source)
        return open_image_file(self._get(url, auth=self._same_host(url)), source)

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
        if not self.url:
            return False
        ours, theirs = urllib.parse.urlparse(self.url), urllib.parse.urlparse(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def _get(self, url: str, auth: bool, retry: bool = True) -> bytes:
        headers = {"Authorization": self._authorization()} if auth and self.token else {}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (http/https only)
                data = response.read(MAX_IMAGE_BYTES + 1)
        except urllib.error.HTTPError as err:
            if err.code == 401 and self._access is not None and retry:  # the short-lived access token expired
                self._access = None
                return self._get(url, auth, retry=False)
            hint = " (check the API token)" if err.code in (401, 403) else ""
            raise SansaError(f"{_redact(url)}: Label Studio answered {err.code} {err.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as err:
            raise SansaError(f"{_redact(url)}: cannot be reached ({getattr(err, 'reason', err)})") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise SansaError(f"{_redact(url)}: larger than {MAX_IMAGE_BYTES >> 20} MiB")
        return data

    def _authorization(self) -> str:
        if self.token.count(".") != 2:  # a legacy token
            return f"Token {self.token}"
        if self._access is None:  # a personal access token: a JWT refresh token
            body = json.dumps({"refresh": self.token}).encode()
            request = urllib.request.Request(
                self._absolute("/api/token/refresh"), data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                    self._access = json.loads(response.read())["access"]
            except (urllib.error.URLError, OSError, KeyError, ValueError) as err:
                raise SansaError(f"Label Studio: the personal access token was refused ({err})") from None
        return f"Bearer {self._access}"


def _redact(url: str) -> str:
    """The URL without a query string (which may hold signatures or tokens)."""
    return url.split("?", 1)[0]
