"""SANSA: few-shot semantic segmentation with Segment Anything 2.

Mark an object in one or a few reference images, segment objects of the same class in any
number of target images::

    from sansa import SansaPredictor
    predictor = SansaPredictor.from_pretrained("sansa-universal")
    predictor.add_reference("ref.jpg", box=[40, 60, 300, 280])
    prediction = predictor.predict("target.jpg")   # .mask bool [H, W], .logits, .score
    seg = predictor.segment("target.jpg")          # every class: .label_map, .objects, .to_supervision()

Importing this package has no side effects: heavy modules (torch, sam2) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sansa._version import __version__

_EXPORTS = {
    "SansaPredictor": "sansa.predictor",
    "Prediction": "sansa.records",
    "Segmentation": "sansa.records",
    "SegmentedObject": "sansa.records",
    "FailedTarget": "sansa.records",
    "ObjectOptions": "sansa.records",
    "Prompt": "sansa.records",
    "Reference": "sansa.records",
    "SansaModel": "sansa.model.sansa",
    "build_sansa": "sansa.model.build",
    "SansaError": "sansa.errors",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from sansa.errors import SansaError
    from sansa.model.build import build_sansa
    from sansa.model.sansa import SansaModel
    from sansa.predictor import SansaPredictor
    from sansa.records import (
        FailedTarget,
        ObjectOptions,
        Prediction,
        Prompt,
        Reference,
        Segmentation,
        SegmentedObject,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sansa' has no attribute {name!r}")
