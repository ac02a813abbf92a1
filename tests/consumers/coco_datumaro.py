"""Import a COCO dataset folder with datumaro (run in its own venv); print what it found as JSON.

Usage: python coco_datumaro.py DATASET_DIR. Output: ``{"names": [...], "images": {item id:
{"media": bool (the image file exists), "size": [h, w], "pixels": {class name: n},
"masks": [[class name, pixels, [x, y, w, h]], ...]}}}`` (masks: one per annotation, with its bbox).
"""

import json
import os
import sys

import datumaro as dm
import numpy as np

dataset = dm.Dataset.import_from(sys.argv[1], "coco_instances")
labels = dataset.categories()[dm.AnnotationType.label]
names = [label.name for label in labels]
images = {}
for item in dataset:
    height, width = item.media.size
    masks = {name: np.zeros((height, width), bool) for name in names}
    each = []
    for annotation in item.annotations:
        if isinstance(annotation, dm.Mask):
            masks[names[annotation.label]] |= annotation.image.astype(bool)
            box = [float(v) for v in annotation.get_bbox()]
            each.append([names[annotation.label], int(annotation.image.astype(bool).sum()), box])
    images[item.id] = {
        "media": os.path.isfile(item.media.path),
        "size": [height, width],
        "pixels": {name: int(mask.sum()) for name, mask in masks.items()},
        "masks": each,
    }
print(json.dumps({"names": names, "images": images}))
