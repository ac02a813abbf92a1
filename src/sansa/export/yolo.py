"""Ultralytics YOLO segmentation labels: ``class x1 y1 x2 y2 ...`` per connected part.

Class indices are 0-based (``labels[i]`` is ``i``, one less than the class id of the other
formats); coordinates are polygon vertices divided by the image width and height (0..1).
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
            coords = (points / scale).clip(0.0, 1.0).reshape(-1)
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
    """``data.yaml`` text: class names for Ultralytics (put or link the images in ``images/``)."""
    import yaml

    body = yaml.safe_dump(
        {"path": ".", "train": "images", "val": "images", "nc": len(labels),
         "names": dict(enumerate(labels))},
        sort_keys=False, allow_unicode=True,
    )
    return "# SANSA labels for Ultralytics YOLO segmentation; labels/<stem>.txt match images/<stem>.<ext>\n" + body
