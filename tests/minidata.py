"""Miniature benchmarks written in the exact layouts the readers expect (a few tiny images each).

Every object is a rectangle; the image is grey 40 with the object's pixels at 220, so an
"oracle" can read the mask off the image (``image[..., 0] > 127``) when no resize happens.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

H, W = 24, 32


def rect(i: int) -> tuple[int, int, int, int]:
    """A rectangle ``(x0, y0, x1, y1)`` that varies with ``i``."""
    x0, y0 = 2 + (3 * i) % 12, 2 + (2 * i) % 8
    return x0, y0, x0 + 10 + i % 5, y0 + 8 + i % 4


def rect_mask(i: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    x0, y0, x1, y1 = rect(i)
    m[y0:y1, x0:x1] = True
    return m


def save_image(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = np.where(mask, 220, 40).astype(np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path, quality=95)


def save_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(obj))
    else:
        path.write_text(json.dumps(obj))


def polygon(i: int) -> list[list[float]]:
    x0, y0, x1, y1 = rect(i)
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


# -- COCO-20i: fold 0 tests classes 0, 4, 8, ...; class 8 has a single image (unusable at 1 shot)
COCO_IMAGES = {0: 3, 4: 4, 8: 1, 1: 3, 5: 2, 2: 3, 3: 3, 6: 3, 7: 3}


def build_coco(root: Path) -> Path:
    base = root / "COCO2014"
    lists: dict[str, dict[int, list[str]]] = {"val": {}, "trn": {}}
    n = 0
    for c, count in COCO_IMAGES.items():
        for part, folder in (("val", "val2014"), ("trn", "train2014")):
            for _ in range(count):
                name = f"{folder}/COCO_{folder}_{n:012d}.jpg"
                mask = rect_mask(n)
                save_image(base / name, mask)
                save_png(base / "annotations" / name.replace(".jpg", ".png"), mask * (c + 1))
                lists[part].setdefault(c, []).append(name)
                n += 1
    for fold in range(4):
        val = {c: lists["val"].get(c, []) for c in range(80) if c % 4 == fold}
        trn = {c: lists["trn"].get(c, []) for c in range(80) if c % 4 != fold}
        dump(base / "splits" / "val" / f"fold{fold}.pkl", val)
        dump(base / "splits" / "trn" / f"fold{fold}.pkl", trn)
    return root


# -- PASCAL-5i: two usable classes per fold (5F, 5F+1), class 5F+2 with one image
def build_pascal(root: Path) -> Path:
    base = root / "VOC2012"
    n = 0
    for part in ("val", "trn"):
        for fold in range(4):
            lines = []
            for c, count in ((5 * fold, 3), (5 * fold + 1, 2), (5 * fold + 2, 1)):
                for _ in range(count):
                    name = f"2008_{n:06d}"
                    mask = rect_mask(n)
                    save_image(base / "JPEGImages" / f"{name}.jpg", mask)
                    save_png(base / "SegmentationClassAug" / f"{name}.png", np.where(mask, c + 1, 0))
                    lines.append(f"{name}__{c + 1}")
                    n += 1
            (base / "splits" / part).mkdir(parents=True, exist_ok=True)
            (base / "splits" / part / f"fold{fold}.txt").write_text("\n".join(lines) + "\n")
    return root


# -- FSS-1000: test classes cat (3 images), dog (3); train ant; val bee
FSS_SPLITS = {"test": ["dog", "cat"], "trn": ["ant"], "val": ["bee"]}


def build_fss(root: Path) -> Path:
    base = root / "FSS-1000"
    n = 0
    for split, names in FSS_SPLITS.items():
        for name in names:
            for i in range(1, 4):
                mask = rect_mask(n)
                save_image(base / "data" / name / f"{i}.jpg", mask)
                save_png(base / "data" / name / f"{i}.png", mask * 255)
                n += 1
        (base / "splits").mkdir(parents=True, exist_ok=True)
        (base / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


# -- LVIS-92i: classes 1..25 with 2 val images each, class 1 with 3; class 99 with 1 image (never a member)
def lvis_counts() -> dict[int, int]:
    counts = {c: 2 for c in range(1, 26)}
    counts[1] = 3
    counts[99] = 1
    return counts


def build_lvis(root: Path) -> Path:
    base = root / "LVIS"
    files = [f"val2017/{i:012d}.jpg" for i in range(4)]
    for i, name in enumerate(files):  # the image shows object i; annotations need not match pixels
        save_image(base / "coco" / name, rect_mask(i))
    val = {
        c: {files[(c + k) % 4]: {"annotations": [{"segmentation": polygon((c + k) % 4)}]} for k in range(count)}
        for c, count in lvis_counts().items()
    }
    train_files = [f"train2017/{i:012d}.jpg" for i in range(3)]
    for i, name in enumerate(train_files):
        save_image(base / "coco" / name, rect_mask(i))
    train = {
        c: {name: {"annotations": [{"segmentation": polygon(i)}]} for i, name in enumerate(train_files)}
        for c in range(1, 31)
    }
    dump(base / "lvis_val.pkl", val)
    dump(base / "lvis_train.pkl", train)
    return root


# -- Pascal-Part: animals = cat+HEAD (3 val images, each with a headless cat too), cat+TAIL (train only);
#    vehicles = aeroplane+BODY, aeroplane+TAIL (excluded by the protocol)
def _part_object(name: str, i: int, parts: list[str]) -> dict:
    x0, y0, x1, y1 = rect(i)
    part = np.zeros((H, W), dtype=bool)
    part[y0 : y0 + 4, x0:x1] = True
    return {
        "name": name,
        "bndbox": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1},
        "parts": [{"name": p, "mask": [rle(part)]} for p in parts],
    }


def build_pascal_part(root: Path) -> Path:
    base = root / "Pascal-Part" / "VOCdevkit" / "VOC2010"
    ids = {split: [f"2010_{split}_{i}" for i in range(3)] for split in ("train", "val")}
    for split in ids:
        for i, image_id in enumerate(ids[split]):
            save_image(base / "JPEGImages" / f"{image_id}.jpg", rect_mask(i))
            objects = [
                _part_object("cat", i + 5, ["TAIL"]),
                _part_object("cat", i, ["HEAD", "EAR"]),
                _part_object("aeroplane", i, ["BODY", "TAIL"]),
            ]
            dump(base / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json", {"object": objects})
    both = {"train": ids["train"], "val": ids["val"]}
    index = {
        "animals": {"object": {"cat": {"part": {"HEAD": both, "TAIL": {"train": ids["train"], "val": []}}}}},
        "indoor": {"object": {}},
        "person": {"object": {}},
        "vehicles": {"object": {"aeroplane": {"part": {"BODY": both, "TAIL": both}}}},
    }
    dump(base / "all_obj_part_to_image.json", index)
    return root


# -- PACO-Part: 8 classes 10..17 (train order); fold 0 = 10, 14. Class 14 has 1 val image (not a member).
PACO_VAL_IMAGES = {10: 3, 11: 2, 12: 2, 13: 2, 14: 1, 15: 2, 16: 2, 17: 2}


def build_paco(root: Path) -> Path:
    base = root / "PACO-Part"
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        cid2img: dict[int, list[dict]] = {}
        img2anno: dict[int, list[dict]] = {}
        for i in range(3):
            name = f"{folder}/{i:012d}.jpg"
            save_image(base / "coco" / name, rect_mask(i))
            x0, y0, x1, y1 = rect(i)
            img_id = 1000 * (split == "val") + i
            img2anno[img_id] = [
                {
                    "category_id": c,
                    "obj_ann_id": 7,
                    "obj_bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": [[x0, y0, x1, y0, x1, y0 + 4, x0, y0 + 4]],
                }
                for c, count in PACO_VAL_IMAGES.items()
                if i < (count if split == "val" else 3)
            ]
            for a in img2anno[img_id]:
                cid2img.setdefault(a["category_id"], []).append({img_id: f"/datasets/coco/{name}"})
        dump(base / "paco" / f"paco_part_{split}.pkl", {"cid2img": cid2img, "img2anno": img2anno})
    return root


# -- a folder of images with masks (PNG, so the oracle reads masks exactly)
def build_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> Path:
    n = 0
    for name in classes:
        for i in range(per_class):
            mask = rect_mask(n)
            save_image(root / name / "images" / f"{i}.png", mask)
            save_png(root / name / "masks" / f"{i}.png", mask * 255)
            n += 1
    return root


BUILDERS = {
    "coco20i": build_coco,
    "pascal5i": build_pascal,
    "fss1000": build_fss,
    "lvis92i": build_lvis,
    "pascalpart": build_pascal_part,
    "pacopart": build_paco,
    "folder": build_folder,
}


# -- masks for the scribble statistics (tests/test_data_prompts.py), at the benchmarks' sizes
def _ellipse(size: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def _box(size: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


SCRIBBLE_MASKS = {
    "large ellipse 640": lambda: _ellipse(640, 320, 300, 250, 200),
    "box 200x120 at 518": lambda: _box(518, 150, 200, 350, 320),
    "thin bar 6 px at 640": lambda: _box(640, 40, 300, 600, 306),
    "two blobs at 518": lambda: _ellipse(518, 100, 100, 40, 60) | _ellipse(518, 400, 380, 70, 30),
    "12-pixel speck at 518": lambda: _box(518, 250, 250, 254, 253),
}
