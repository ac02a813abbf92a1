"""Load a YOLO dataset with Ultralytics (run in its own venv); print what it found as JSON.

Usage: python yolo_ultralytics.py DATA_YAML. Output: ``{"names": [...], "train": dir, "images":
{stem: {"instances": n, "pixels": {class name: n}, "segments": [[class index, [pixel index, ...]], ...]}}}``;
pixels as Ultralytics draws each polygon (``polygon2mask``, no downsampling), per class and per
label line (flat ``row * width + column`` indices), instances as many as its dataset counted.
"""

import json
import sys
from pathlib import Path

import numpy as np
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset, polygon2mask

data = check_det_dataset(sys.argv[1])
names = [data["names"][i] for i in range(data["nc"])]
dataset = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False, imgsz=64)
images = {}
for label in dataset.labels:
    height, width = label["shape"]
    drawn = [
        (int(cls), polygon2mask((height, width), [segment * [width, height]]).astype(bool))
        for segment, cls in zip(label["segments"], label["cls"].ravel(), strict=True)
    ]
    pixels = {}
    for index, name in enumerate(names):
        mask = np.zeros((height, width), bool)
        for cls, segment_mask in drawn:
            if cls == index:
                mask |= segment_mask
        pixels[name] = int(mask.sum())
    segments = [[cls, np.flatnonzero(m).tolist()] for cls, m in drawn]
    stem = Path(label["im_file"]).relative_to(data["train"]).with_suffix("").as_posix()
    images[stem] = {"instances": len(label["cls"]), "pixels": pixels, "segments": segments}
print(json.dumps({"names": names, "train": str(data["train"]), "images": images}))
