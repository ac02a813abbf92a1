"""A Label Studio project's labelling config, reduced to what the backend needs.

Label Studio describes a project in XML: an object tag (``<Image name="image" value="$image"/>``)
and control tags naming it (``<BrushLabels name="tag" toName="image"><Label value="cat"/>...``).
The backend reads references from, and writes predictions to, the controls of the kinds in
:data:`CONTROL_TYPES` that label an ``<Image>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from sansa.errors import SansaError

#: control tag -> the ``type`` of its results (and the key of the label list in ``value``)
CONTROL_TYPES = {
    "BrushLabels": "brushlabels",
    "PolygonLabels": "polygonlabels",
    "RectangleLabels": "rectanglelabels",
    "KeyPointLabels": "keypointlabels",
}


@dataclass(frozen=True)
class Control:
    """One labelling control: ``name`` (``from_name``), the image it labels (``to_name``), its
    result ``type`` (``brushlabels``, ...), its class names, and whether it is one of Label
    Studio's smart tools (``smart="true"``: clicks and boxes sent to the model as prompts)."""

    name: str
    to_name: str
    type: str
    labels: tuple[str, ...]
    smart: bool = False


@dataclass(frozen=True)
class LabelConfig:
    """The image to read and the controls to read and write.

    Attributes:
        image_name: the ``<Image>`` tag's ``name`` (results' ``to_name``).
        image_key: the task data key holding the image URL (``value="$image"`` -> ``image``).
        controls: the supported controls labelling that image, in config order.
    """

    image_name: str
    image_key: str
    controls: tuple[Control, ...]

    @property
    def labels(self) -> list[str]:
        """Every class name of the controls, in config order, without repeats."""
        return list(dict.fromkeys(label for control in self.controls for label in control.labels))

    def control_for(self, label: str) -> Control:
        """The control predictions of ``label`` are written in: the first that has the class,
        smart tools (prompts for the model) only when no other control has it."""
        having = [c for c in self.controls if label in c.labels]
        for control in sorted(having, key=lambda c: c.smart):
            return control
        raise SansaError(f"label config: no control has the class {label!r}")

    def control_named(self, name: str) -> Control | None:
        """The control whose ``name`` is ``name`` (a result's ``from_name``), if supported."""
        return next((c for c in self.controls if c.name == name), None)


def parse_config(xml: str) -> LabelConfig:
    """Parse a labelling config.

    Raises :class:`SansaError` (one line) when the XML is broken or has no ``<Image>`` labelled
    by a BrushLabels, PolygonLabels, RectangleLabels or KeyPointLabels control.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise SansaError("label config: empty (the project has no labelling config)")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise SansaError(f"label config: not valid XML ({err})") from None
    images = {tag.get("name"): tag.get("value", "") for tag in root.iter("Image") if tag.get("name")}
    controls = []
    for tag in root.iter():
        kind = CONTROL_TYPES.get(tag.tag)
        name, to_name = tag.get("name"), tag.get("toName")
        if kind is None or not name or not to_name or to_name not in images:
            continue
        labels = tuple(value for label in tag.iter("Label") if (value := label.get("value")))
        if labels:
            smart = (tag.get("smart") or tag.get("smartOnly") or "").lower() == "true"
            controls.append(Control(name, to_name, kind, labels, smart))
    if not controls:
        supported = ", ".join(CONTROL_TYPES)
        raise SansaError(f"label config: no {supported} control with labels on an <Image> tag")
    image_name = controls[0].to_name
    key = images[image_name]
    if not key.startswith("$") or len(key) < 2:
        raise SansaError(f'label config: <Image name={image_name!r}> needs value="$key" (got {key!r})')
    return LabelConfig(image_name, key[1:], tuple(c for c in controls if c.to_name == image_name))
