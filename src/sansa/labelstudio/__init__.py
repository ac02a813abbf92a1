"""Few-shot labelling inside Label Studio: an ML backend speaking Label Studio's protocol.

The annotated tasks of a Label Studio project are SANSA's references (brush and polygon regions
as masks, rectangles as boxes, keypoints as points); every other task gets a prediction in the
project's own control type. Start it with ``sansa label-studio`` and connect it under the
project's Settings > Model. Parts:

* :mod:`~sansa.labelstudio.rle`: Label Studio's brush RLE (encode/decode);
* :mod:`~sansa.labelstudio.config`: the labelling config (image key, controls, classes);
* :mod:`~sansa.labelstudio.results`: results <-> prompts and masks;
* :mod:`~sansa.labelstudio.remote`: Label Studio's API and images;
* :mod:`~sansa.labelstudio.backend`: :class:`SansaBackend`, the per-project state;
* :mod:`~sansa.labelstudio.server`: the FastAPI app (needs the ``web`` extra).
"""

from sansa.labelstudio.backend import SansaBackend
from sansa.labelstudio.config import LabelConfig, parse_config
from sansa.labelstudio.remote import LabelStudio

__all__ = ["LabelConfig", "LabelStudio", "SansaBackend", "parse_config"]
