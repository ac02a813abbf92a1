"""The web app belongs to the page that opened it: Host, Origin and token checks, against a real
uvicorn on loopback, tried as another website, another process and a careless user would.

Also the served folder's untrusted images (bombs, over-long names) as 4xx JSON, and ``sansa serve``'s
own refusals (a file, a bad or busy port) through the real entry point.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from hostile import one_line_error, png_bomb, sansa, tiff_bomb, truncated_png
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from sansa.errors import SansaError  # noqa: E402
from sansa.web.app import create_app, serve_in_thread  # noqa: E402
from sansa.web.security import Guard, split_host  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def png(width: int = 64, height: int = 48, value: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    for i in range(2):
        (root / f"im{i}.png").write_bytes(png(value=60 + 40 * i))
    (root / "bomb.png").write_bytes(png_bomb(30000, 30000))
    (root / "big.png").write_bytes(png_bomb(12000, 12000))
    (root / "bomb.tif").write_bytes(tiff_bomb(20000, 20000))
    (root / "cut.png").write_bytes(truncated_png())
    return root


@pytest.fixture(scope="module")
def server(tiny_model, folder):
    """``(base URL, port, token, app)`` of a real server on 127.0.0.1 (allowing the name ``sansa.lan``)."""
    from sansa import SansaPredictor

    app = create_app(SansaPredictor(tiny_model, device="cpu"), folder, allow_hosts=["sansa.lan", "proxy.lan:9443"])
    with serve_in_thread(app) as url:
        yield url, int(url.rsplit(":", 1)[1]), app.state.token, app


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server[0], timeout=30) as client:
        yield client


def headers_for(case: dict, port: int, token: str) -> dict:
    """A case's headers with ``{port}``, ``{other}`` (another port) and ``{token}`` filled in."""
    values = {"port": port, "other": port + 1 if port < 65535 else port - 1, "token": token}
    return {name: value.format(**values) for name, value in case.items()}


T = {"X-Sansa-Token": "{token}"}
# (case, method, path, headers, expected status): every request the API must refuse, and its allowed twin
REQUESTS = [
    ("token in its header", "GET", "/api/info", T, 200),
    ("no token", "GET", "/api/info", {}, 401),
    ("wrong token", "GET", "/api/info", {"X-Sansa-Token": "guess"}, 401),
    ("token with a suffix", "GET", "/api/info", {"X-Sansa-Token": "{token}x"}, 401),
    ("empty token", "GET", "/api/info", {"X-Sansa-Token": ""}, 401),
    ("token in a wrong header", "GET", "/api/info", {"X-Token": "{token}"}, 401),
    ("token in a cookie", "GET", "/api/info", {"Cookie": "token={token}; X-Sansa-Token={token}"}, 401),
    ("token as Authorization: token", "GET", "/api/info", {"Authorization": "token {token}"}, 200),
    ("token as Authorization: Bearer", "GET", "/api/info", {"Authorization": "Bearer {token}"}, 200),
    ("token as Authorization: Basic", "GET", "/api/info", {"Authorization": "Basic {token}"}, 401),
    ("token in the query", "GET", "/api/info?token={token}", {}, 200),
    ("wrong token in the query", "GET", "/api/info?token=nope", {}, 401),
    ("the image list without token", "GET", "/api/images", {}, 401),
    ("an image file without token", "GET", "/api/images/im0.png", {}, 401),
    ("a thumbnail with the query token", "GET", "/api/images/im0.png/thumb?max_side=32&token={token}", {}, 200),
    ("the OpenAPI schema (no data) without token", "GET", "/openapi.json", {}, 200),
    ("the page without token", "GET", "/", {}, 401),
    ("the page with the printed address", "GET", "/?token={token}", {}, 200),
    ("the page's script (no data) without token", "GET", "/static/api.js", {}, 200),
    ("Host: another site (DNS rebinding)", "GET", "/api/info", {**T, "Host": "attacker.example:{port}"}, 403),
    ("Host: localhost.evil.example", "GET", "/api/info", {**T, "Host": "localhost.evil.example:{port}"}, 403),
    ("Host: 127.0.0.1.nip.io", "GET", "/api/info", {**T, "Host": "127.0.0.1.nip.io:{port}"}, 403),
    ("Host: 127.0.0.1 on another port", "GET", "/api/info", {**T, "Host": "127.0.0.1:{other}"}, 403),
    ("Host: 127.0.0.1 without port", "GET", "/api/info", {**T, "Host": "127.0.0.1"}, 403),
    ("Host: with user info", "GET", "/api/info", {**T, "Host": "127.0.0.1:{port}@evil.example"}, 403),
    ("Host: empty", "GET", "/api/info", {**T, "Host": ""}, 403),
    ("Host: rebinding name, page without token", "GET", "/", {"Host": "attacker.example:{port}"}, 403),
    ("Host: localhost", "GET", "/api/info", {**T, "Host": "localhost:{port}"}, 200),
    ("Host: LOCALHOST. (case, trailing dot)", "GET", "/api/info", {**T, "Host": "LOCALHOST.:{port}"}, 200),
    ("Host: [::1]", "GET", "/api/info", {**T, "Host": "[::1]:{port}"}, 200),
    ("Host: --allow-host name", "GET", "/api/info", {**T, "Host": "sansa.lan:{port}"}, 200),
    ("Host: --allow-host name:port", "GET", "/api/info", {**T, "Host": "proxy.lan:9443"}, 200),
    ("Host: --allow-host name, other port", "GET", "/api/info", {**T, "Host": "proxy.lan:{port}"}, 403),
    ("POST from another site", "POST", "/api/sessions", {**T, "Origin": "http://evil.example"}, 403),
    ("POST with Origin null (sandboxed frame, file://)", "POST", "/api/sessions", {**T, "Origin": "null"}, 403),
    ("POST from another local port", "POST", "/api/sessions", {**T, "Origin": "http://127.0.0.1:{other}"}, 403),
    ("POST from https of this host", "POST", "/api/sessions", {**T, "Origin": "https://127.0.0.1:{port}"}, 403),
    ("POST from a look-alike", "POST", "/api/sessions", {**T, "Origin": "http://127.0.0.1:{port}.evil.example"}, 403),
    ("GET from another site", "GET", "/api/info", {**T, "Origin": "http://evil.example"}, 403),
    ("POST without Origin, without token", "POST", "/api/sessions", {}, 401),
    ("POST without Origin, with token (a script)", "POST", "/api/sessions", T, 201),
    ("POST from the page itself", "POST", "/api/sessions", {**T, "Origin": "http://127.0.0.1:{port}"}, 201),
    ("POST cross-site by Sec-Fetch-Site", "POST", "/api/sessions", {**T, "Sec-Fetch-Site": "cross-site"}, 403),
    (
        "POST same-site by Sec-Fetch-Site (another port)",
        "POST",
        "/api/sessions",
        {**T, "Sec-Fetch-Site": "same-site"},
        403,
    ),
    (
        "a link from another site to the page",
        "GET",
        "/?token={token}",
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        200,
    ),
    (
        "a link from another site to the API",
        "GET",
        "/api/info?token={token}",
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        403,
    ),
    ("the API through // without token", "GET", "//api/info", {}, 401),
    ("DELETE without token", "DELETE", "/api/sessions/x/classes/y", {}, 401),
    ("PUT from another site", "PUT", "/api/sessions/x/references", {**T, "Origin": "http://evil.example"}, 403),
]


@pytest.mark.parametrize("case, method, path, headers, status", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_only_the_page_with_the_token_may_call(server, http, case, method, path, headers, status):
    url, port, token, _ = server
    response = http.request(method, path.format(token=token), headers=headers_for(headers, port, token))
    assert response.status_code == status, response.text
    if status in (401, 403) and path.startswith("/api"):
        detail = response.json()["detail"]  # a one-line JSON reason, never a traceback
        assert "\n" not in detail and ("token" in detail or "refused" in detail or "Host" in detail)
        assert str(server[3].state.service.folder.root) not in response.text  # the folder's path stays private


def test_the_page_carries_its_token_and_the_refusal_explains_how_to_open_it(server, http):
    url, port, token, _ = server
    page = http.get(f"/?token={token}")
    assert f'<meta name="sansa-token" content="{token}">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["x-frame-options"] == "DENY"
    refused = http.get("/")
    assert refused.status_code == 401 and "text/html" in refused.headers["content-type"]
    assert "?token=" in refused.text and token not in refused.text
    assert f"http://127.0.0.1:{port}/?token=" in refused.text  # the address it was asked at, not port 8000


def test_a_token_of_another_folder_is_refused(server, http, tiny_model, tmp_path):
    from sansa import SansaPredictor

    other = create_app(SansaPredictor(tiny_model, device="cpu"), tmp_path)
    assert other.state.token != server[2] and len(other.state.token) >= 32
    assert http.get("/api/info", headers={"X-Sansa-Token": other.state.token}).status_code == 401


def test_the_token_is_the_folders_kept_private_across_restarts_and_settable(tiny_model, tmp_path):
    from sansa import SansaPredictor

    def launch(**kwargs) -> str:
        return create_app(SansaPredictor(tiny_model, device="cpu"), tmp_path, **kwargs).state.token

    first = launch()
    saved = tmp_path / ".sansa" / "web" / "token"
    assert launch() == first == saved.read_text().strip()  # a restart keeps open tabs working
    assert saved.stat().st_mode & 0o777 == 0o600  # only its owner can read it
    assert launch(token="chosen-by-the-caller") == "chosen-by-the-caller" == launch()  # --token sets it
    saved.write_text("x\n")  # damaged: a new one, never the damaged text
    assert launch() not in ("x", "chosen-by-the-caller")
    with pytest.raises(SansaError, match="^token: use 16 to 128 letters"):
        launch(token="short")


def test_a_cross_site_upload_writes_nothing_and_other_clients_cannot_evict_a_session(server, http, folder):
    url, port, token, _ = server
    own = {"X-Sansa-Token": token, "Origin": f"http://127.0.0.1:{port}"}
    sid = http.post("/api/sessions", headers=own).json()["session_id"]
    assert http.post(f"/api/sessions/{sid}/classes", json={"name": "thing"}, headers=own).status_code == 201
    before = sorted(p.name for p in folder.iterdir())
    files = {"file": ("planted.png", png(), "image/png")}
    for origin in ("http://evil.example", "null"):
        assert http.post("/api/images", files=files, headers={**own, "Origin": origin}).status_code == 403
    assert http.post("/api/images", files=files).status_code == 401  # a form post of another process
    for _ in range(300):  # what once evicted every live session: body-less cross-origin POSTs
        assert http.post("/api/sessions", headers={"Origin": "http://evil.example"}).status_code == 403
    assert sorted(p.name for p in folder.iterdir()) == before
    state = http.get(f"/api/sessions/{sid}", headers=own)
    assert state.status_code == 200 and [c["name"] for c in state.json()["classes"]] == ["thing"]


def test_a_request_with_two_host_headers_is_refused(server):
    url, port, token, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n"
            f"X-Sansa-Token: {token}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = conn.recv(4096).decode("latin-1")
    assert answer.split()[1] in ("400", "403"), answer


def raw_get(port: int, target: str, headers: str = "") -> tuple[int, str]:
    """Send ``GET target`` exactly as written (no client-side normalisation); ``(status, body)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/static/../api/info",
        "/static/%2e%2e/api/info",
        "/static/..%2fapi/info",
        "/static/../../../../etc/passwd",
        "http://evil.example/api/info",
        "/api/info#token",
    ],
)
def test_a_path_through_the_public_folder_reaches_no_data(server, target):
    status, body = raw_get(server[1], target)
    assert status in (400, 401, 403, 404), (status, body)
    assert str(server[3].state.service.folder.root) not in body and "root:" not in body


# (Host header, bound address, allowed)
HOSTS = [
    ("127.0.0.1:8000", ("127.0.0.1", 8000), True),
    ("localhost:8000", ("127.0.0.1", 8000), True),
    ("127.0.0.1:8001", ("127.0.0.1", 8000), False),
    ("localhost:80", ("127.0.0.1", 80), True),
    ("localhost", ("127.0.0.1", 80), True),
    ("192.168.1.5:8000", ("0.0.0.0", 8000), True),  # an address cannot be rebound: allowed on every interface
    ("192.168.1.5:8000", ("127.0.0.1", 8000), False),
    ("myhost.example:8000", ("0.0.0.0", 8000), False),  # a name can: needs --allow-host
    ("[fe80::1]:8000", ("::", 8000), True),
    ("10.0.0.2:8000", ("10.0.0.2", 8000), True),
    ("evil:8000", None, False),
    ("[::1", ("::1", 8000), False),
    ("127.0.0.1:0", ("127.0.0.1", 0), False),
    ("127.0.0.1:99999", ("127.0.0.1", 8000), False),
]


@pytest.mark.parametrize("host, bound, allowed", HOSTS, ids=[f"{h}-{b}" for h, b, _ in HOSTS])
def test_host_allow_list(host, bound, allowed):
    assert Guard(None, "t").host_allowed(host, bound) is allowed


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("Example.org:8000", ("example.org", 8000)),
        ("[::1]:80", ("::1", 80)),
        ("::1", ("::1", None)),
        ("name", ("name", None)),
    ],
)
def test_split_host(value, parsed):
    assert split_host(value) == parsed


# ---- the served folder's untrusted images ------------------------------------------------------


def test_bombs_and_broken_files_are_left_out_of_the_gallery(server, http):
    listing = http.get("/api/images", headers={"X-Sansa-Token": server[2]}).json()
    assert [i["name"] for i in listing["images"]] == ["cut.png", "im0.png", "im1.png"]  # cut.png: header reads
    skipped = {s["name"]: s["reason"] for s in listing["skipped"]}
    assert sorted(skipped) == ["big.png", "bomb.png", "bomb.tif"]
    assert all("over the limit of 64 megapixels" in reason for reason in skipped.values())


LONG = "a" * 5000 + ".png"
# (method, path, upload name and bytes or None, expected status, message)
IMAGE_REQUESTS = [
    ("GET", "/api/images/bomb.png/thumb", None, 400, "over the limit of 64 megapixels"),
    ("GET", "/api/images/bomb.tif/thumb", None, 400, "over the limit of 64 megapixels"),
    ("GET", "/api/images/big.png/thumb?max_side=64", None, 400, "12000x12000 is 144 megapixels"),
    ("GET", "/api/images/cut.png/thumb", None, 400, "not a readable image"),
    ("GET", f"/api/images/{LONG}/thumb", None, 400, "name longer than 255 bytes"),
    ("GET", f"/api/images/{LONG}", None, 400, "name longer than 255 bytes"),
    ("POST", "/api/images", (LONG, png()), 400, ""),  # starlette refuses the multipart header itself
    ("POST", "/api/images", ("upload-bomb.png", png_bomb(30000, 30000)), 413, "over the limit of 64 megapixels"),
    ("POST", "/api/images", ("upload-cut.png", truncated_png()), 415, "not a readable image"),
]


@pytest.mark.parametrize(
    "method, path, upload, status, message",
    IMAGE_REQUESTS,
    ids=[f"{m} {p[:40]} {u[0][:20] if u else ''}" for m, p, u, _, _ in IMAGE_REQUESTS],
)
def test_an_untrusted_image_is_a_4xx_json_error(server, http, folder, method, path, upload, status, message):
    url, port, token, _ = server
    files = {"file": (upload[0], upload[1], "image/png")} if upload else None
    response = http.request(method, path, files=files, headers={"X-Sansa-Token": token})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    if upload:
        assert not (folder / upload[0][:200]).exists()


def mark_a_reference(http, token: str, image: str, prompt: dict) -> tuple[str, httpx.Response]:
    """A new session with class ``thing`` and ``prompt`` marked on ``image``: its id, and the answer
    to the reference request."""
    own = {"X-Sansa-Token": token}
    sid = http.post("/api/sessions", headers=own).json()["session_id"]
    http.post(f"/api/sessions/{sid}/classes", json={"name": "thing"}, headers=own)
    response = http.put(
        f"/api/sessions/{sid}/references", headers=own, json={"image": image, "label": "thing", "prompt": prompt}
    )
    return sid, response


def test_a_session_referencing_a_bomb_is_a_4xx(server, http):
    own = {"X-Sansa-Token": server[2]}
    sid, response = mark_a_reference(http, server[2], "bomb.png", {"box": [1, 1, 9, 9]})
    assert 400 <= response.status_code < 500 and "over the limit" in response.json()["detail"]
    response = http.get(f"/api/sessions/{sid}/targets/bomb.png", headers=own)
    assert 400 <= response.status_code < 500, response.text


# ---- sansa serve's own refusals, through the real entry point ----------------------------------


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]
# (argv after `serve`, message)
SERVE_REFUSED = [
    (["im0.png"], "im0.png: is a file; give the folder of images to serve"),
    (["missing"], "missing: no such folder"),
    ([".", "--port", "70000"], "--port 70000: must be from 0 (any free port) to 65535"),
    ([".", "--port", "-1"], "--port -1: must be from 0"),
    ([".", "--port", "{busy}"], "--port {busy}: already in use on 127.0.0.1"),
    ([".", "--host", "nowhere.invalid"], "--host nowhere.invalid: not an address of this computer"),
    ([".", "--allow-host", "a b"], "--allow-host 'a b': expected a host name"),
    ([".", "--allow-host", "name:99999"], "--allow-host 'name:99999'"),
    ([".", "--token", "short"], "--token: use 16 to 128 letters, digits, - or _"),
]


@pytest.mark.parametrize("argv, message", SERVE_REFUSED, ids=[" ".join(a) for a, _ in SERVE_REFUSED])
def test_serve_refuses_in_one_line_without_a_ready_line(folder, argv, message):
    with busy_port() as taken:
        busy = str(taken.getsockname()[1])
        result = sansa("serve", *[a.format(busy=busy) for a in argv], *MODEL, cwd=folder, timeout=120)
    assert message.format(busy=busy) in one_line_error(result, "serve")
    assert result.stdout == ""  # no ready line: nothing was served


def data_url(raw: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(raw).decode()


# (prompt sent by a client, expected status, message): refused before the model is asked
PROMPTS = [
    ({"points": [[5, 5]] * 20000}, 400, "points: 20000 given, at most 256 per reference"),
    ({"scribble": [[[5, 5]] * 40000, [[6, 6]] * 40000]}, 400, "scribble: 80000 given"),
    ({"mask_png": data_url(png_bomb(30000, 30000))}, 413, "over the limit of 64 megapixels"),
    ({"mask_png": data_url(png_bomb(640, 480))}, 400, "does not match the image (64x48)"),
    ({"mask_png": data_url(truncated_png())}, 415, "not a readable PNG image"),
]


@pytest.mark.parametrize("prompt, status, message", PROMPTS, ids=[m[:30] for _, _, m in PROMPTS])
def test_an_oversized_prompt_is_refused_in_one_line(server, http, prompt, status, message):
    _, response = mark_a_reference(http, server[2], "im0.png", prompt)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_propagation_lists_an_unreadable_target_and_export_keeps_the_rest(server, http):
    import time
    import zipfile

    own = {"X-Sansa-Token": server[2]}
    sid, response = mark_a_reference(http, server[2], "im0.png", {"box": [4, 4, 40, 30]})
    assert response.status_code == 200, response.text
    status = http.post(f"/api/sessions/{sid}/propagate", headers=own).json()
    while status["state"] == "running":
        time.sleep(0.05)
        status = http.get(f"/api/sessions/{sid}/propagate", headers=own).json()
    assert status["state"] == "done" and status["done"] == status["total"], status  # went on past cut.png
    assert [f["name"] for f in status["failed"]] == ["cut.png"]
    assert "not a readable image" in status["failed"][0]["reason"]
    exported = http.get(f"/api/sessions/{sid}/export", params={"formats": "png"}, headers=own)
    assert exported.status_code == 200, exported.text  # was 409: export what succeeded
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        names = archive.namelist()
        failures = archive.read("failures.txt").decode()  # as a `sansa segment` run lists them
    assert any("im1" in n for n in names) and not any("cut" in n for n in names), names
    assert failures.startswith("cut.png: ") and "not a readable image" in failures
