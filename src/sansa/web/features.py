"""What SANSA sees, in the web app: an image's PCA feature map as a layer, and each target's margin.

- ``GET /api/sessions/{sid}/targets/{name}/features.png``: the first three principal components of
  the image's stride-16 features (after the adapters) as RGB, the size of the image (at most
  ``max_side``). The components and the colour scale are fitted on the session's reference images
  (on the image itself before there is any), so colours compare from one image to the next.
- ``GET /api/sessions/{sid}/margins``: per target with a current result, the lowest margin of its
  class regions (:mod:`sansa.inspection.clusters`): below 0, a region is nearer another class's
  references than its own. The review list sorts by it.

Both reuse the service's cached encodings (:meth:`SansaService.features`).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from fastapi import FastAPI, Query, Response
from PIL import Image
from pydantic import BaseModel

from sansa.inspection.clusters import summarize
from sansa.inspection.features import Region, pool_regions
from sansa.inspection.pca import color_range, fit_pca, to_rgb
from sansa.web import render
from sansa.web.service import SansaService, Session

MaxSide = Annotated[int | None, Query(ge=16, le=4096, description="longer side of the returned image")]


class Margins(BaseModel):
    """Each target's lowest class-region margin; ``null`` until it is propagated with the current
    references (or with fewer than two classes)."""

    margins: dict[str, float | None]


def _top(service: SansaService, name: str) -> np.ndarray:
    """``float32 [C, h, w]``: image ``name``'s stride-16 features (cached encoding)."""
    return service.features(name).top[0].float().cpu().numpy()


def pca_map(service: SansaService, session: Session, name: str) -> np.ndarray:
    """``uint8 [h, w, 3]``: image ``name``'s features on the first three components of the
    session's reference images' features (of its own before there is any reference)."""
    with service.lock:
        basis = sorted(session.reference_images()) or [name]
        basis_tops = [_top(service, n) for n in basis]
        rows = np.concatenate([t.reshape(t.shape[0], -1).T for t in basis_tops])
        top = _top(service, name)
    projection = fit_pca(rows, 3)
    low, high = color_range(projection(rows))
    cells = projection(top.reshape(top.shape[0], -1).T)
    return to_rgb(cells, low, high).reshape(top.shape[1], top.shape[2], 3)


def pca_png(service: SansaService, session: Session, name: str, max_side: int | None = None) -> bytes:
    """:func:`pca_map` as a PNG the size of the image (at most ``max_side``), cells kept sharp."""
    cells = pca_map(service, session, name)
    height, width = service.folder.load(name).shape[:2]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    return render.to_png(Image.fromarray(cells).resize((width, height), Image.Resampling.NEAREST))


def margins(service: SansaService, session: Session) -> dict[str, float | None]:
    """Each target's lowest class-region margin (``None`` without a current result)."""
    with service.lock:
        names: list[str] = []
        regions: list[Region] = []
        for slot in session.slots.values():
            if slot.image not in names:
                names.append(slot.image)
            regions.append(Region(names.index(slot.image), slot.reference.label, slot.mask, True))
        out: dict[str, float | None] = {}
        for target in service.targets(session):
            result = service.current_result(session, target)
            out[target] = None
            if result is None:
                continue
            label_map = result.label_map
            for class_id, label in enumerate(result.labels, start=1):
                mask = label_map == class_id
                if mask.any():
                    if target not in names:
                        names.append(target)
                    regions.append(Region(names.index(target), label, mask, False))
        if not regions or len({r.label for r in regions}) < 2:
            return out
        tops = torch.from_numpy(np.stack([_top(service, n) for n in names]))
    pooled = pool_regions(tops, regions)
    _, found = summarize(
        pooled, [r.label for r in regions], [r.is_reference for r in regions], [names[r.image] for r in regions]
    )
    for margin in found:
        if margin.margin is not None:
            current = out.get(margin.image)
            out[margin.image] = margin.margin if current is None else min(current, margin.margin)
    return out


def add_routes(app: FastAPI, service: SansaService) -> None:
    """The two routes of this module."""

    @app.get("/api/sessions/{sid}/targets/{name}/features.png", response_class=Response)
    def features_png(sid: str, name: str, max_side: MaxSide = None) -> Response:
        png = pca_png(service, service.session(sid), name, max_side)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/sessions/{sid}/margins")
    def target_margins(sid: str) -> Margins:
        return Margins(margins=margins(service, service.session(sid)))
