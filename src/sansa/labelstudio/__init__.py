"""Few-shot labelling inside Label Studio: an ML backend speaking Label Studio's protocol.

The annotated tasks of a Label Studio project are SANSA's references (brush and polygon regions
as masks, rectangles as boxes, keypoints as points); every other task gets a prediction in the
project's own control type. Start it with ``sansa label-studio`` and connect it under the
project's Settings > Model. Parts:

* :mod:`~sansa.export.brush_rle`: Label Studio's brush RLE (encode/decode, shared with the export);
* :mod:`~sansa.labelstudio.config`: the labelling config (image key, controls, classes);
* :mod:`~sansa.labelstudio.results`: results <-> prompts and masks;
* :mod:`~sansa.labelstudio.remote`: Label Studio's API and images;
* :mod:`~sansa.labelstudio.backend`: :class:`SansaBackend`, the per-project state;
* :mod:`~sansa.labelstudio.server`: the FastAPI app (needs the ``web`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what checkers see of the lazy exports below
    from sansa.labelstudio.backend import SansaBackend as SansaBackend
    from sansa.labelstudio.config import LabelConfig as LabelConfig
    from sansa.labelstudio.config import parse_config as parse_config
    from sansa.labelstudio.remote import LabelStudio as LabelStudio

# Loaded on first use: the brush RLE codec (used by the export formats) must not pull in torch.
_EXPORTS = {
    "SansaBackend": "sansa.labelstudio.backend",
    "LabelConfig": "sansa.labelstudio.config",
    "parse_config": "sansa.labelstudio.config",
    "LabelStudio": "sansa.labelstudio.remote",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sansa.labelstudio' has no attribute {name!r}")
