"""COCO-20i (HSNet split files): 80 classes, 4 folds, 1000 test episodes per fold.

Layout under the data root (as HSNet, Matcher and SANSA use it)::

    COCO2014/
      train2014/COCO_train2014_*.jpg          images (cocodataset.org train2014.zip)
      val2014/COCO_val2014_*.jpg              images (val2014.zip)
      annotations/train2014/*.png             semantic masks, pixel = class index + 1 (0 = background)
      annotations/val2014/*.png               (HSNet's train2014.zip / val2014.zip mask archives)
      splits/trn/fold{0..3}.pkl               {class index 0..79: ["train2014/COCO_train2014_*.jpg", ...]}
      splits/val/fold{0..3}.pkl               {class index: ["val2014/COCO_val2014_*.jpg", ...]}

The split pickles ship with HSNet (``data/splits/coco``) and Matcher (``datasets/COCO2014/splits``);
the mask archives are linked from SANSA's ``docs/data.md``. Fold ``F`` tests the classes whose
0-based index is ``F mod 4``; training uses the other 60 classes' ``trn`` lists.

Sampling (the authors' ``datasets/coco.py``): a class uniformly, then an entry of its list
uniformly (an image listed twice is twice as likely), supports with replacement among the
entries that are not the query. A class needs two images (the authors' loop hangs on one);
the shot count does not matter (supports may repeat).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sansa.data.common import Layout, Split, as_split, dict_of, list_of, load_rgb, read_label_png, read_pickle, require
from sansa.data.episode import Sampling

FOLDS = 4
HINT = "COCO-20i: see `sansa eval --help` / README, Benchmarks, for the layout and downloads"
CLASS_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()


FOLD_PICKLE = Layout(
    "a dict of class index -> list of image paths (HSNet's fold pickle)", dict_of(list_of(lambda _: True))
)


def fold_classes(fold: int) -> list[int]:
    """The 20 test classes of a fold: 0-based index ``= fold mod 4``."""
    return [c for c in range(len(CLASS_NAMES)) if c % FOLDS == fold]


class Coco20i:
    """COCO-20i, one fold and split. Keys are paths relative to ``COCO2014/``."""

    sampling = Sampling.RANDOM
    episodes = 1000
    image_size = 640

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        self.base: Path = require(Path(root) / "COCO2014", HINT)
        self.split: Split = as_split(split)
        held_out = fold_classes(fold)
        part = "trn" if self.split is Split.TRAIN else "val"
        lists = read_pickle(self.base / "splits" / part / f"fold{fold}.pkl", HINT, FOLD_PICKLE)
        wanted = [c for c in range(len(CLASS_NAMES)) if c not in held_out] if part == "trn" else held_out
        self._entries = {c: [str(name) for name in lists.get(c, [])] for c in wanted}
        self._images = {c: list(dict.fromkeys(entries)) for c, entries in self._entries.items()}
        self._classes = [c for c in wanted if len(self._images[c]) > 1]
        self.name: str = f"coco20i-fold{fold}-{self.split.value}"

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return CLASS_NAMES[class_id]

    def images_of(self, class_id: int) -> list[str]:
        return self._images[class_id]

    def key_weights(self, class_id: int) -> list[int]:
        """How often each image is listed (the authors draw list entries)."""
        counts: dict[str, int] = {}
        for name in self._entries[class_id]:
            counts[name] = counts.get(name, 0) + 1
        return [counts[k] for k in self._images[class_id]]

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image = load_rgb(self.base / key)
        labels = read_label_png(self.base / "annotations" / Path(key).with_suffix(".png"))
        return image, labels == class_id + 1
