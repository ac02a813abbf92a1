"""See what SANSA sees: the image features memory matching uses, with and without the adapters.

- :func:`inspect_features` encodes references and targets once, segments the targets, and returns
  an :class:`Inspection`: per-image PCA maps (one colour scale for all images), one feature per
  object projected on three principal components, and per-class cluster numbers.
- :mod:`sansa.inspection.pca`, :mod:`~sansa.inspection.features`, :mod:`~sansa.inspection.clusters`
  and :mod:`~sansa.inspection.pictures` are the parts, usable on features from elsewhere.

``sansa inspect`` is the command line of it; the web app shows the PCA map as a layer.
"""

from sansa.inspection.clusters import ClassSummary, TargetMargin, summarize
from sansa.inspection.features import ADAPTED, PLAIN, Region
from sansa.inspection.pca import Projection, feature_maps, fit_pca
from sansa.inspection.report import FILES, Inspection, inspect_features

__all__ = [
    "ADAPTED",
    "FILES",
    "PLAIN",
    "ClassSummary",
    "Inspection",
    "Projection",
    "Region",
    "TargetMargin",
    "feature_maps",
    "fit_pca",
    "inspect_features",
    "summarize",
]
