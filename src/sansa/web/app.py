"""The FastAPI app of ``sansa serve``: a thin layer of typed routes over :class:`SansaService`.

Routes (JSON unless said; the OpenAPI schema is at ``/docs``)::

    GET    /                                      the page (static, shipped in the package)
    GET    /api/info                              folder, model, limits, export formats
    GET    /api/images                            the folder's images and their sizes
    GET    /api/images/{name}                     the file;  /thumb?max_side=  a JPEG thumbnail
    POST   /api/images                            upload an image into the folder (multipart "file")
    POST   /api/sessions                          a new session (the one ``sansa serve`` resumes from now on)
    GET    /api/sessions/current                  the last session of this folder (saved in .sansa/web/)
    GET    /api/sessions/{sid}                    its classes, references, review decisions
    POST   /api/sessions/{sid}/classes            add a class;  DELETE .../classes/{name}
    PATCH  /api/sessions/{sid}/classes/{name}     rename and/or recolour it
    PUT    /api/sessions/{sid}/references         mark an image for a class (replaces its prompt)
    POST   /api/sessions/{sid}/references/promote make a target a reference, from its prediction
    POST   /api/sessions/{sid}/references/undo    an image's reference of a class back to before its last change
    DELETE /api/sessions/{sid}/references/{id}
    GET    /api/sessions/{sid}/references/{id}/polygons  its mask as polygons (the page's polygon tool)
    GET    /api/sessions/{sid}/targets/{name}     per-class scores, objects + overlay;  /overlay.png  the overlay;
                                                  /features.png  its PCA feature map (sansa.web.features)
    POST   /api/sessions/{sid}/targets/{name}/objects  delete, merge, split, review its objects (sansa.web.objects)
    PUT    /api/sessions/{sid}/objects/options    how classes are split into objects (min_area, max_objects, ...)
    POST   /api/sessions/{sid}/propagate          segment every target in the background; GET polls it
    DELETE /api/sessions/{sid}/propagate          cancel
    GET    /api/sessions/{sid}/review             targets and corrected targets with state, score, counts
    PUT    /api/sessions/{sid}/review/{name}      accept / reject a target (null: undo)
    GET    /api/sessions/{sid}/margins            each target's feature margin to another class (review sort)
    POST   /api/sessions/{sid}/exports            export in the background; GET .../exports/{id} polls it,
                                                  DELETE .../exports/{id} cancels it,
                                                  GET .../exports/{id}/download streams the zip
    GET    /api/sessions/{sid}/export?formats=    the same export, answered when it is written
"""

from __future__ import annotations

import os
import socket
import threading
import time
import webbrowser
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask

from sansa.errors import SansaError
from sansa.export.exporter import format_names
from sansa.predictor import SansaPredictor
from sansa.web import exporting, features, objects, propagate, render, security
from sansa.web.errors import Conflict, Stale, TooLarge, human_size, status_of
from sansa.web.folder import MAX_UPLOAD_BYTES, ImageFolder
from sansa.web.results import shown
from sansa.web.review import review_list, target_classes
from sansa.web.schema import (
    ClassCreate,
    ClassInfo,
    ClassUpdate,
    ErrorOut,
    ExportRequest,
    ExportStatus,
    ImageInfo,
    ImageList,
    JobState,
    ObjectEdit,
    ObjectOptionsIn,
    PolygonsOut,
    PromoteRequest,
    PropagateStatus,
    ReferenceOut,
    ReferenceRequest,
    ReviewList,
    ReviewRequest,
    ServerInfo,
    SessionState,
    TargetOut,
    UndoRequest,
)
from sansa.web.service import SansaService
from sansa.web.session import Session

STATIC = Path(__file__).parent / "static"
DEFAULT_HOST, DEFAULT_PORT = security.DEFAULT_HOST, security.DEFAULT_PORT
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 404, 409, 413, 415, 422)}
THUMB_SIDES = (160, 320)  # the gallery's and the targets grid's (static/app.js)
MaxSide = Annotated[int | None, Query(ge=16, le=4096, description="longer side of the returned image")]
ThumbSide = Annotated[int, Query(ge=16, le=4096, description="longer side of the returned image")]
REVISION_HEADER = "X-Sansa-Revision"
Revision = Annotated[
    int | None,
    Header(alias=REVISION_HEADER, description="the session revision the change was made on (stale: 409)"),
]
Undoing = Annotated[
    int,
    Query(ge=0, le=1000, description="this change is the page's undo of that many changes (their undo steps dropped)"),
]
Hide = Annotated[list[str] | None, Query(description="classes left out of the overlay")]


def create_app(
    predictor: SansaPredictor,
    folder: str | os.PathLike[str],
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    cache_size: int = 32,
    model_name: str | None = None,
    token: str | None = None,
    allow_hosts: Sequence[str] = (),
) -> FastAPI:
    """The app serving ``folder`` with ``predictor``'s model.

    Args:
        predictor: the loaded predictor (from :func:`sansa.cli.common.load_predictor` or by hand).
        folder: the only folder images are read from (and uploads written to).
        max_upload_bytes: the largest image upload or mask prompt accepted.
        cache_size: target image encodings kept in memory.
        model_name: shown on the page (default: the model's input size).
        token: the token every API call must carry (default: the folder's, kept in ``.sansa/web/token``
            across restarts, made at the first start; ``app.state.token``).
        allow_hosts: names besides the bound address and ``localhost`` the server may be reached as.

    Sessions are saved in ``folder/.sansa/web/``; the page resumes the last one. Thumbnails of
    the folder are made in the background from the start.
    """
    service = SansaService(predictor, ImageFolder(folder, max_upload_bytes), cache_size=cache_size)
    app = FastAPI(
        title="SANSA", summary="Few-shot segmentation of a folder from a few marked references", responses=ERRORS
    )
    app.state.service = service
    info = ServerInfo(
        folder=str(service.folder.root),
        model=model_name or f"SANSA ({predictor.model.image_size} px)",
        device=str(predictor.device),
        max_upload_bytes=max_upload_bytes,
        formats=_export_formats(),
    )
    _install_errors(app, max_upload_bytes)
    token = service.store.token(security.new_token, security.check_token(token) if token else None)
    security.install(app, token, allow_hosts)  # Host, Origin and token checks before anything else
    _add_image_routes(app, service, info)
    _add_session_routes(app, service)
    _add_review_and_export_routes(app, service)
    features.add_routes(app, service)  # the PCA feature layer and the review list's margins
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        page = security.page_html((STATIC / "index.html").read_text(encoding="utf-8"), app.state.token)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(
            STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
        )

    service.folder.warm_thumbnails(THUMB_SIDES)
    return app


def _install_errors(app: FastAPI, max_upload_bytes: int) -> None:
    # A mask prompt travels as base64 in JSON (4/3 of its bytes), plus the rest of the request.
    body_limit = max_upload_bytes * 4 // 3 + 1024 * 1024

    @app.exception_handler(SansaError)
    def sansa_error(_: Request, err: SansaError) -> JSONResponse:
        body = {"detail": str(err), **({"stale": True} if isinstance(err, Stale) else {})}
        return JSONResponse(body, status_code=status_of(err))

    @app.exception_handler(OSError)
    def os_error(_: Request, err: OSError) -> JSONResponse:  # a full disk, a folder made read-only meanwhile
        where = f"{err.filename}: " if err.filename else ""  # one line, naming the file
        return JSONResponse({"detail": f"could not read or write {where}{err.strerror or err}"}, status_code=507)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body') or 'body'}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > body_limit:
            return JSONResponse(
                {"detail": f"request of {human_size(int(length))} is over the limit of {human_size(body_limit)}"},
                status_code=413,
            )
        return await call_next(request)


def _add_image_routes(app: FastAPI, service: SansaService, info: ServerInfo) -> None:
    folder = service.folder

    @app.get("/api/info")
    def get_info() -> ServerInfo:
        return info

    @app.get("/api/images")
    def list_images() -> ImageList:
        return folder.list()

    @app.get("/api/images/{name}/thumb", response_class=Response)
    def thumbnail(name: str, max_side: ThumbSide = 384) -> Response:
        return Response(
            folder.thumbnail(name, max_side), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"}
        )

    @app.get("/api/images/{name:path}", response_class=FileResponse)
    def image(name: str) -> FileResponse:
        return FileResponse(folder.path(name), headers={"Cache-Control": "private, max-age=60"})

    @app.post("/api/images", status_code=201)
    def upload(file: Annotated[UploadFile, File(description="an image file")]) -> ImageInfo:
        data = file.file.read(folder.max_upload_bytes + 1)
        if len(data) > folder.max_upload_bytes:
            raise TooLarge(f"upload {file.filename!r}: over the limit of {human_size(folder.max_upload_bytes)}")
        return folder.save_upload(file.filename, data)


def _add_session_routes(app: FastAPI, service: SansaService) -> None:
    @app.post("/api/sessions", status_code=201)
    def new_session() -> SessionState:
        return service.state(service.create_session())

    @app.get("/api/sessions/current")
    def current_session() -> SessionState:
        return service.state(service.current_session())

    @app.get("/api/sessions/{sid}")
    def get_session(sid: str) -> SessionState:
        return service.state(service.session(sid))

    @app.post("/api/sessions/{sid}/classes", status_code=201)
    def add_class(sid: str, body: ClassCreate, response: Response, revision: Revision = None) -> ClassInfo:
        with _change(service, sid, revision, response) as session:
            return service.add_class(session, body.name, body.color)

    @app.patch("/api/sessions/{sid}/classes/{name}")
    def update_class(
        sid: str, name: str, body: ClassUpdate, response: Response, revision: Revision = None
    ) -> ClassInfo:
        with _change(service, sid, revision, response) as session:
            return service.update_class(session, name, body.name, body.color)

    @app.delete("/api/sessions/{sid}/classes/{name}")
    def remove_class(sid: str, name: str, response: Response, revision: Revision = None) -> SessionState:
        with _change(service, sid, revision, response) as session:
            service.remove_class(session, name)
        return service.state(session)

    @app.post("/api/sessions/{sid}/trash/{trash_id}/restore")
    def restore_class(sid: str, trash_id: str, response: Response, revision: Revision = None) -> SessionState:
        with _change(service, sid, revision, response) as session:
            service.restore_class(session, trash_id)
        return service.state(session)

    @app.put("/api/sessions/{sid}/references")
    def put_reference(
        sid: str, body: ReferenceRequest, response: Response, revision: Revision = None, undo: Undoing = 0
    ) -> ReferenceOut:
        with _change(service, sid, revision, response) as session:
            return service.put_reference(session, body, undo)

    @app.post("/api/sessions/{sid}/references/undo")
    def undo_reference(sid: str, body: UndoRequest, response: Response, revision: Revision = None) -> SessionState:
        with _change(service, sid, revision, response) as session:
            service.undo(session, body.image, body.label)
        return service.state(session)

    @app.post("/api/sessions/{sid}/references/promote")
    def promote(sid: str, body: PromoteRequest, response: Response, revision: Revision = None) -> ReferenceOut:
        with _change(service, sid, revision, response) as session:
            return service.promote(session, body.image, body.label)

    @app.get("/api/sessions/{sid}/references/{ref_id}/polygons")
    def reference_polygons(
        sid: str,
        ref_id: str,
        tolerance: Annotated[
            float | None, Query(ge=0, le=100, description="pixels a vertex may stray from the mask's edge")
        ] = None,
    ) -> PolygonsOut:
        return service.polygons(service.session(sid), ref_id, tolerance)

    @app.delete("/api/sessions/{sid}/references/{ref_id}")
    def remove_reference(
        sid: str,
        ref_id: str,
        response: Response,
        revision: Revision = None,
        keep_fix: Annotated[bool, Query(description="a fixed class erased to nothing stays fixed (empty)")] = False,
        undo: Undoing = 0,
    ) -> SessionState:
        with _change(service, sid, revision, response) as session:
            service.remove_reference(session, ref_id, keep_fix, undo)
        return service.state(session)

    @app.get("/api/sessions/{sid}/targets/{name}")
    def target(sid: str, name: str, max_side: MaxSide = None, hide: Hide = None) -> TargetOut:
        return _target_out(service, service.session(sid), name, max_side, hide)

    @app.post("/api/sessions/{sid}/targets/{name}/objects")
    def edit_objects(
        sid: str,
        name: str,
        body: ObjectEdit,
        response: Response,
        revision: Revision = None,
        max_side: MaxSide = None,
        hide: Hide = None,
    ) -> TargetOut:
        """Delete, merge, split, accept, reject, undo or reset the image's objects (sansa.web.objects)."""
        with _change(service, sid, revision, response) as session:
            objects.edit(service, session, name, body)
            service.save(session)
        return _target_out(service, session, name, max_side, hide)

    @app.put("/api/sessions/{sid}/objects/options")
    def object_options(sid: str, body: ObjectOptionsIn, response: Response, revision: Revision = None) -> SessionState:
        with _change(service, sid, revision, response) as session:
            service.set_object_options(session, body.model_dump(exclude_none=True))
        return service.state(session)

    @app.get("/api/sessions/{sid}/targets/{name}/overlay.png", response_class=Response)
    def overlay(sid: str, name: str, max_side: MaxSide = None, hide: Hide = None) -> Response:
        session = service.session(sid)
        with service.lock:
            composed = shown(service, session, name, max_side)
        return Response(
            _overlay(session, composed.label_map, composed.labels, hide, max_side),
            media_type="image/png",
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/api/sessions/{sid}/propagate", status_code=202)
    def start_propagation(sid: str) -> PropagateStatus:
        return propagate.start(service, service.session(sid))

    @app.get("/api/sessions/{sid}/propagate")
    def propagation(sid: str) -> PropagateStatus:
        return propagate.status(service.session(sid))

    @app.delete("/api/sessions/{sid}/propagate")
    def cancel_propagation(sid: str) -> PropagateStatus:
        session = service.session(sid)
        if session.job is not None:
            session.job.cancel()
            session.job.join(timeout=30)
        return propagate.status(session)


def _add_review_and_export_routes(app: FastAPI, service: SansaService) -> None:
    zip_response: dict[int | str, dict[str, Any]] = {200: {"content": {"application/zip": {}}}}

    @app.get("/api/sessions/{sid}/review")
    def review(sid: str) -> ReviewList:
        return review_list(service, service.session(sid))

    @app.put("/api/sessions/{sid}/review/{name}")
    def decide(sid: str, name: str, body: ReviewRequest, response: Response, revision: Revision = None) -> ReviewList:
        with _change(service, sid, revision, response) as session:
            service.review(session, name, body.state)
        return review_list(service, session)

    @app.post("/api/sessions/{sid}/exports", status_code=202)
    def start_export(sid: str, body: ExportRequest) -> ExportStatus:
        return exporting.start(service, service.session(sid), body.formats, body.options())

    @app.get("/api/sessions/{sid}/exports/{export_id}")
    def export_status(sid: str, export_id: str) -> ExportStatus:
        return exporting.job_of(service.session(sid), export_id).status()

    @app.delete("/api/sessions/{sid}/exports/{export_id}")
    def cancel_export(sid: str, export_id: str) -> ExportStatus:
        job = exporting.job_of(service.session(sid), export_id)
        job.cancel()
        job.join(timeout=30)
        return job.status()

    @app.get("/api/sessions/{sid}/exports/{export_id}/download", response_class=FileResponse, responses=zip_response)
    def download(sid: str, export_id: str) -> FileResponse:
        job = exporting.job_of(service.session(sid), export_id)
        if job.state != JobState.DONE:
            raise Conflict(f"export {export_id!r}: not finished ({job.state.value}, {job.done} of {job.total})")
        return FileResponse(job.path, media_type="application/zip", filename=exporting.ZIP_NAME)

    @app.get("/api/sessions/{sid}/export", response_class=FileResponse, responses=zip_response)
    def export(
        sid: str, formats: Annotated[list[str] | None, Query(description="default: sansa.export's")] = None
    ) -> FileResponse:
        job = exporting.ExportJob(service, service.session(sid), formats)
        job.start().join()
        if job.state != JobState.DONE:
            job.discard()
            raise SansaError(f"export: {job.error}")
        return FileResponse(
            job.path, media_type="application/zip", filename=exporting.ZIP_NAME, background=BackgroundTask(job.discard)
        )


@contextmanager
def _change(service: SansaService, sid: str, revision: int | None, response: Response) -> Iterator[Session]:
    """A change of session ``sid`` made on ``revision``: refused (409) when another tab changed the
    session since; the answer carries the session's new revision (``X-Sansa-Revision``)."""
    session = service.session(sid)
    with service.lock:
        service.expect(session, revision)
        yield session
        response.headers[REVISION_HEADER] = str(session.revision)


def _target_out(
    service: SansaService, session: Session, name: str, max_side: int | None, hide: list[str] | None
) -> TargetOut:
    """What image ``name`` shows: its classes, overlay and objects (rejected ones listed too)."""
    with service.lock:
        composed = shown(service, session, name, max_side)
        version = session.version
    png = _overlay(session, composed.label_map, composed.labels, hide, max_side)
    return TargetOut(
        name=name,
        version=version,
        source=composed.source,
        stale=composed.stale,
        edited=composed.edited,
        classes=target_classes(composed),
        overlay_png=render.data_url(png),
        objects=objects.object_outs(composed),
        object_map_png=render.data_url(objects.id_map_png(composed.object_map, max_side)),
    )


def _overlay(
    session: Session, label_map: np.ndarray, labels: list[str], hide: list[str] | None, max_side: int | None
) -> bytes:
    """The overlay PNG of a composed map, classes in ``hide`` left out."""
    if hide:
        hidden = [i for i, label in enumerate(labels, start=1) if label in hide]
        label_map = np.where(np.isin(label_map, hidden), 0, label_map).astype(np.uint16)
    return render.overlay_png(label_map, session.colors(labels), max_side)


def _export_formats() -> list[str]:
    return format_names()


def run(
    app: FastAPI,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` until interrupted, optionally opening the page in the default browser.

    The socket is bound first (``sock``, from :func:`sansa.web.security.listen`, or made here: a bad port, a port in use
    or an unknown host is a one-line :class:`SansaError`); the address with the token is printed
    only once the server is up.
    """
    import uvicorn

    sock = sock or security.listen(host, port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    shown = "127.0.0.1" if host in security.WILDCARDS else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={app.state.token}"
    threading.Thread(target=_announce_when_up, args=(server, url, open_browser), daemon=True).start()
    server.run(sockets=[sock])


def _announce_when_up(server, url: str, open_browser: bool) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    print(f"sansa serve: {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        webbrowser.open(url)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = DEFAULT_HOST, port: int = 0) -> Iterator[str]:
    """Run ``app`` on a real socket in a background thread (port 0: any free one); yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
