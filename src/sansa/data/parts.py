"""Part segmentation benchmarks (Matcher's annotations): Pascal-Part and PACO-Part.

A class is an ``object+part`` pair. Query and supports are cropped to the box of one object
that has the part, so keys name an object as well as an image: ``<image>#<object>``.

Pascal-Part layout under the data root::

    Pascal-Part/VOCdevkit/VOC2010/
      JPEGImages/<id>.jpg                              PASCAL VOC 2010 images
      all_obj_part_to_image.json                       {"animals"|"indoor"|"person"|"vehicles":
                                                        {"object": {obj: {"part": {part: {"train": [id, ...],
                                                                                           "val": [id, ...]}}}}}}
      Annotations_Part_json_merged_part_classes/<id>.json
                                                       {"object": [{"name", "bndbox": {xmin, ymin, xmax, ymax},
                                                                    "parts": [{"name", "mask": [RLE, ...]}]}]}

(Matcher's ``pascal.zip`` + the VOC2010 and Pascal-Part archives.) Fold ``F`` is the super-category
``animals, indoor, person, vehicles``; its classes are the ``obj+part`` pairs with both train and
val images (``aeroplane+TAIL`` excluded), in the JSON's order; episodes cycle over them. As the
authors' ``datasets/pascal_part.py``: the query is an entry of the class's image list, then a
random object of the class's object name in it, drawn again when that object lacks the part, so
an object ``o`` of image ``i`` is drawn with weight ``(times i is listed) / (objects named obj in
i)``; supports the same, from distinct images other than the query's. Episodes: the total length
of the super-category's val lists (every object/part pair), at most 2500 (the authors' ``'trn'``
length check never fires for this dataset).

PACO-Part layout under the data root::

    PACO-Part/
      coco/train2017/*.jpg, coco/val2017/*.jpg         COCO 2017 images
      paco/paco_part_train.pkl, paco_part_val.pkl      {"cid2img": {cid: [{img_id: "<...>/<split>/<file>.jpg"}]},
                                                        "img2anno": {img_id: [{"category_id", "obj_ann_id",
                                                                              "obj_bbox": [x, y, w, h],
                                                                              "segmentation"}]}}

(Matcher's ``paco.zip``.) As the authors' ``datasets/paco_part.py``: fold ``F`` (4 folds) holds
every 4th class of the training pickle's class order starting at ``F`` (``len // 4`` classes),
restricted to classes with more than ``K`` validation images (deduplicated by image id); training
uses every other class of the training pickle. Test episodes: a class uniformly, an image of it
uniformly, then one of its objects of the class uniformly; supports with replacement from the
other images; an episode whose object box crops to nothing is drawn again whole. 2500 episodes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sansa.data.common import (
    DatasetError,
    Layout,
    Split,
    as_split,
    crop,
    decode_segmentation,
    dict_of,
    list_of,
    load_rgb,
    read_json,
    read_pickle,
    require,
    union,
)
from sansa.data.episode import OBJECT_SEPARATOR, Sampling

PASCAL_PART_FOLDS = ("animals", "indoor", "person", "vehicles")
PACO_FOLDS = 4
PACO_PICKLE = Layout(
    "a dict with 'cid2img' (class id -> [{image id: path}, ...]) and 'img2anno' (image id -> "
    "[{'category_id', 'obj_ann_id', ...}, ...]) (Matcher's paco_part_*.pkl)",
    lambda value: (
        isinstance(value, dict)
        and dict_of(list_of(lambda e: isinstance(e, dict)))(value.get("cid2img"))
        and dict_of(list_of(lambda a: isinstance(a, dict) and {"category_id", "obj_ann_id"} <= a.keys()))(
            value.get("img2anno")
        )
    ),
)
PASCAL_HINT = "Pascal-Part: VOC2010 + Matcher's part annotations, see README, Benchmarks"
PACO_HINT = "PACO-Part: COCO 2017 images + Matcher's paco_part_*.pkl, see README, Benchmarks"


class PascalPart:
    """Pascal-Part, one super-category (fold). Keys are ``<image id>#<object index>``."""

    sampling = Sampling.CYCLE_CLASSES
    episodes: int = 2500  # at most; see the module docstring
    image_size = 518
    distinct_supports = True

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        if not 0 <= fold < len(PASCAL_PART_FOLDS):
            raise DatasetError(f"fold: Pascal-Part has folds 0-3, got {fold}")
        self.base: Path = require(Path(root) / "Pascal-Part" / "VOCdevkit" / "VOC2010", PASCAL_HINT)
        self.split: Split = as_split(split)
        part_split = "train" if self.split is Split.TRAIN else "val"
        index = read_json(self.base / "all_obj_part_to_image.json", PASCAL_HINT)
        objects = index[PASCAL_PART_FOLDS[fold]]["object"]
        self._names: list[str] = []
        self._ids: list[list[str]] = []  # each class's image list as given (an image may be listed twice)
        for obj, info in objects.items():
            for part, lists in info["part"].items():
                if lists["train"] and lists["val"] and f"{obj}+{part}" != "aeroplane+TAIL":
                    self._names.append(f"{obj}+{part}")
                    self._ids.append([str(i) for i in lists[part_split]])
        total = sum(len(lists[part_split]) for info in objects.values() for lists in info["part"].values())
        self.episodes = min(total, self.episodes)
        self._shots = shots
        self.name: str = f"pascalpart-fold{fold}-{self.split.value}"
        self._objects: dict[int, list[str]] = {}
        self._annotation = lru_cache(maxsize=256)(self._read_annotation)

    def class_ids(self) -> list[int]:
        return [c for c in range(len(self._names)) if len(self._image_set(c)) > self._shots]

    def class_name(self, class_id: int) -> str:
        return self._names[class_id]

    def _image_set(self, class_id: int) -> set[str]:
        return {k.split(OBJECT_SEPARATOR)[0] for k in self.images_of(class_id)}

    def images_of(self, class_id: int) -> list[str]:
        """Objects that have the part; each class's annotation files are read on first use."""
        if class_id not in self._objects:
            obj, part = self._names[class_id].split("+")
            self._objects[class_id] = [
                f"{image_id}{OBJECT_SEPARATOR}{i}"
                for image_id in dict.fromkeys(self._ids[class_id])
                for i, o in enumerate(self._annotation(image_id)["object"])
                if o["name"] == obj and any(p["name"] == part for p in o["parts"])
            ]
        return self._objects[class_id]

    def key_weights(self, class_id: int) -> list[float]:
        """``(times the image is listed) / (objects of the class's object name in it)`` per key."""
        obj = self._names[class_id].split("+")[0]
        listed = self._ids[class_id]
        weights = []
        for key in self.images_of(class_id):
            image_id = key.split(OBJECT_SEPARATOR)[0]
            named = sum(o["name"] == obj for o in self._annotation(image_id)["object"])
            weights.append(listed.count(image_id) / named)
        return weights

    def _read_annotation(self, image_id: str) -> dict[str, Any]:
        return read_json(self.base / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json", PASCAL_HINT)

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image_id, _, index = key.partition(OBJECT_SEPARATOR)
        part = self._names[class_id].split("+")[1]
        image = load_rgb(self.base / "JPEGImages" / f"{image_id}.jpg")
        height, width = image.shape[:2]
        obj = self._annotation(image_id)["object"][int(index)]
        masks = [decode_segmentation(m, height, width) for p in obj["parts"] if p["name"] == part for m in p["mask"]]
        box = obj["bndbox"]
        return crop(
            image, union(masks, height, width), (int(box["xmin"]), int(box["ymin"]), int(box["xmax"]), int(box["ymax"]))
        )


class PacoPart:
    """PACO-Part, one fold and split. Keys are ``<path under coco/>#<object annotation id>``."""

    sampling = Sampling.RANDOM
    episodes = 2500
    image_size = 640

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        if not 0 <= fold < PACO_FOLDS:
            raise DatasetError(f"fold: PACO-Part has folds 0-3, got {fold}")
        self.base: Path = require(Path(root) / "PACO-Part", PACO_HINT)
        self.split: Split = as_split(split)
        train = read_pickle(self.base / "paco" / "paco_part_train.pkl", PACO_HINT, PACO_PICKLE)
        val = read_pickle(self.base / "paco" / "paco_part_val.pkl", PACO_HINT, PACO_PICKLE)
        order = list(train["cid2img"])
        members = [order[fold + PACO_FOLDS * v] for v in range(len(order) // PACO_FOLDS)]
        val_images = {c: len({next(iter(e)) for e in entries}) for c, entries in val["cid2img"].items()}
        tested = [c for c in members if val_images.get(c, 0) > shots]
        anno = train if self.split is Split.TRAIN else val
        self._img2anno = anno["img2anno"]
        self._path_ids: dict[str, object] = {}  # "train2017/x.jpg" -> the pickle's image id
        self._keys = {c: self._object_keys(c, imgs) for c, imgs in anno["cid2img"].items()}
        if self.split is Split.TRAIN:
            self._classes = [c for c in order if c not in set(tested) and len(self._images(c)) > 1]
        else:
            self._classes = [c for c in tested if len(self._images(c)) > 1]
        self.name: str = f"pacopart-fold{fold}-{self.split.value}"

    def _object_keys(self, class_id: int, images: list[dict[str, Any]]) -> list[str]:
        keys: dict[str, None] = {}
        for entry in images:
            for img_id, file_name in entry.items():
                path = "/".join(str(file_name).split("/")[-2:])
                for a in self._img2anno.get(img_id, []):
                    if a["category_id"] == class_id:
                        keys[f"{path}{OBJECT_SEPARATOR}{a['obj_ann_id']}"] = None
                self._path_ids[path] = img_id
        return list(keys)

    def _images(self, class_id: int) -> set[str]:
        return {k.split(OBJECT_SEPARATOR)[0] for k in self._keys.get(class_id, [])}

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return f"paco-{class_id}"

    def images_of(self, class_id: int) -> list[str]:
        return self._keys[class_id]

    def usable(self, key: str) -> bool:
        """Whether the object's box crops to at least one pixel (the authors redraw the episode)."""
        path, _, obj = key.partition(OBJECT_SEPARATOR)
        box = next(a["obj_bbox"] for a in self._img2anno[self._path_ids[path]] if str(a["obj_ann_id"]) == obj)
        x, y, w, h = box
        return int(x + w) > int(x) and int(y + h) > int(y)

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        path, _, obj = key.partition(OBJECT_SEPARATOR)
        image = load_rgb(self.base / "coco" / path)
        height, width = image.shape[:2]
        annos = [
            a
            for a in self._img2anno[self._path_ids[path]]
            if a["category_id"] == class_id and str(a["obj_ann_id"]) == obj
        ]
        masks = [decode_segmentation(a["segmentation"], height, width) for a in annos]
        x, y, w, h = annos[0]["obj_bbox"]
        return crop(image, union(masks, height, width), (int(x), int(y), int(x + w), int(y + h)))
