"""Ultralytics YOLO segmentation labels: ``class x1 y1 x2 y2 ...`` per connected part.

Class indices are 0-based (``labels[i]`` is ``i``, one less than the class id of the other
formats); coordinates are polygon vertices divided by the image width and height (0..1).

YOLO readers draw polygons with ``cv2.fillPoly`` on pixel indices, Ultralytics truncating the
vertices, supervision rounding them. So each vertex is put a quarter pixel into the pixel it
stands for (``index + 0.25``), which both turn back into that index: the outline of the
boundary pixels, drawn back to exactly the mask's pixels (holes cut around, see
:mod:`sansa.export.shapes`). A one-pixel part is a polygon of four equal vertices (one pixel).
"""

from __future__ import annotations

import numpy as np

from sansa.export.shapes import polygons


def label_lines(label_map: np.ndarray, labels: list[str]) -> list[str]:
    """One line per connected part of each class in ``label_map`` (``uint16 [H, W]``)."""
    height, width = label_map.shape
    scale = np.array([width, height], dtype=np.float64)
    lines = []
    for index in range(len(labels)):
        for points in polygons(label_map == index + 1):
            coords = ((np.floor(points) + 0.25) / scale).clip(0.0, 1.0).reshape(-1)
            lines.append(" ".join([str(index), *(f"{v:.6f}" for v in coords)]))
    return lines


def parse_lines(text: str, height: int, width: int) -> list[tuple[int, np.ndarray]]:
    """``(class index, float32 [P, 2] pixel vertices)`` per line of a label file."""
    shapes = []
    for line in text.splitlines():
        values = line.split()
        if values:
            xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
            shapes.append((int(values[0]), xy.astype(np.float32)))
    return shapes


def data_yaml(labels: list[str]) -> str:
    """``data.yaml`` text for Ultralytics: ``images/`` for training and validation, the class names.

    It has no ``path:`` key on purpose: Ultralytics then takes the folder of ``data.yaml`` as the
    dataset root, so the folder loads from any working directory and after being moved or zipped
    (``path: .`` would be taken from the working directory).
    """
    import yaml

    body = yaml.safe_dump(
        {"train": "images", "val": "images", "nc": len(labels), "names": dict(enumerate(labels))},
        sort_keys=False,
        allow_unicode=True,
    )
    return (
        "# SANSA labels for Ultralytics YOLO segmentation: labels/<stem>.txt match images/<stem>.<ext>;\n"
        "# paths are relative to this file: `yolo train data=path/to/data.yaml` works from anywhere\n" + body
    )
