"""The authors' evaluation protocol, benchmark by benchmark, on miniature data in their layouts.

The authors' dataset code (ClaudiaCuttano/SANSA ``datasets/*.py``; HSNet ``data/pascal.py``) is
not a dependency: each test states what their rules give, computed by hand, and checks the
episodes sansa draws against it (frequencies by a chi-square test where the rule is a
distribution).
"""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
from minidata import _part_object, build_coco, dump, save_image, save_png
from PIL import Image
from scipy.stats import chisquare

from sansa.data import build_dataset, sample_episodes
from sansa.data.common import squash
from sansa.data.episode import image_of
from sansa.data.episodes import key_weights
from sansa.evaluation import evaluate
from sansa.metrics import intersection_union

DRAWS = 3000


def fits(observed: Counter, expected: dict, draws: int) -> float:
    """Chi-square p-value of observed counts against expected probabilities."""
    keys = list(expected)
    total = sum(expected.values())
    return chisquare([observed.get(k, 0) for k in keys], [draws * expected[k] / total for k in keys]).pvalue


def repeated(episode) -> bool:
    return len(set(episode.supports)) < len(episode.supports)


# -- common: the mask resize ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("mask", "size", "torch_nearest", "pil_nearest"),
    [
        # 3 -> 2: output i takes input floor(i * 3 / 2) = 0, 1 (PIL NEAREST: floor((i + 0.5) * 3 / 2) = 0, 2)
        ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], 2, [[0, 0], [0, 1]], [[0, 0], [0, 0]]),
        # 2 -> 3: rows/cols floor(i * 2 / 3) = 0, 0, 1 (PIL: 0, 1, 1)
        ([[1, 0], [0, 1]], 3, [[1, 1, 0], [1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 1], [0, 1, 1]]),
    ],
)
def test_masks_resized_by_torch_nearest_not_pil(mask, size, torch_nearest, pil_nearest):
    mask = np.array(mask, dtype=bool)
    image = np.zeros((*mask.shape, 3), dtype=np.uint8)
    assert squash(image, mask, size)[1].astype(int).tolist() == torch_nearest
    pil = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
    assert pil.astype(int).tolist() == pil_nearest  # what sansa did before: a half-pixel shift


# -- COCO-20i ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = build_coco(tmp_path_factory.mktemp("coco"))
    split = root / "COCO2014" / "splits" / "val" / "fold0.pkl"
    lists = pickle.loads(split.read_bytes())
    lists[4] = lists[4] + [lists[4][0]]  # the first image of class 4 listed twice
    split.write_bytes(pickle.dumps(lists))
    return root


def test_coco20i_protocol(coco):
    ds = build_dataset("coco20i", coco, 0, "test", shots=5)
    assert ds.class_ids() == [0, 4]  # class 8 has one image: the authors' support loop never ends
    first = ds.images_of(4)[0]
    episodes = sample_episodes(ds, shots=5, count=DRAWS, seed=0)
    classes = Counter(e.class_id for e in episodes)
    assert fits(classes, {0: 1, 4: 1}, DRAWS) > 1e-3  # a class uniformly
    queries = Counter(e.query for e in episodes if e.class_id == 4)
    expected = {k: (2 if k == first else 1) for k in ds.images_of(4)}  # list entries uniformly
    assert fits(queries, expected, classes[4]) > 1e-3
    for e in episodes:
        assert e.query not in e.supports and len(e.supports) == 5
    # class 0: 3 images, so 5 supports from the 2 others always repeat
    assert all(repeated(e) for e in episodes if e.class_id == 0)


# -- LVIS-92i: a shuffled-key pickle, 1 and 5 shots -----------------------------------------
LVIS_ORDER = [17, 3, 25, 8, 11, 1, 30, 22, 5, 14, 9, 27, 2, 19, 6, 12, 28, 4, 21, 15, 7, 24, 10, 29, 13]
LVIS_SIX = LVIS_ORDER[::2]  # these 13 classes have 6 images, the others 2; class 99 has 1


@pytest.fixture(scope="module")
def lvis(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvis")
    anno = {"annotations": [{"segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]}]}
    val = {c: {f"val2017/{c:03d}{i}.jpg": anno for i in range(6 if c in LVIS_SIX else 2)} for c in LVIS_ORDER}
    val[99] = {"val2017/099.jpg": anno}
    train = {c: {f"train2017/{c:03d}{i}.jpg": anno for i in range(2)} for c in [40, *LVIS_ORDER[::-1]]}
    dump(root / "LVIS" / "lvis_val.pkl", val)
    dump(root / "LVIS" / "lvis_train.pkl", train)
    return root


# (fold, shots, expected classes, in the order episodes cycle through them)
LVIS_FOLDS = [
    # 1 shot: the 25 classes with > 1 image, in key order; fold F = positions F and F + 10
    (0, 1, [17, 9]),
    (3, 1, [8, 19]),
    (9, 1, [14, 15]),
    # 5 shots: the 13 classes with > 5 images in key order, 17 25 11 30 5 9 2 6 28 21 7 10 13;
    # one class per fold (13 // 10): another partition (sorted ids would give 2, 5, 6, ...)
    (0, 5, [17]),
    (1, 5, [25]),
    (3, 5, [30]),
    (9, 5, [21]),
]


@pytest.mark.parametrize(("fold", "shots", "expected"), LVIS_FOLDS)
def test_lvis92i_fold_membership(lvis, fold, shots, expected):
    ds = build_dataset("lvis92i", lvis, fold, "test", shots=shots)
    assert ds.class_ids() == expected
    episodes = sample_episodes(ds, shots=shots, count=7, seed=0)
    assert [e.class_id for e in episodes] == [expected[i % len(expected)] for i in range(7)]


def test_lvis92i_training_classes(lvis):
    train = build_dataset("lvis92i", lvis, 0, "train", shots=1)
    assert train.class_ids() == [40, *[c for c in LVIS_ORDER[::-1] if c not in (17, 9)]]


@pytest.mark.parametrize(("shots", "fold", "images"), [(1, 0, 6), (3, 0, 6), (5, 0, 6), (5, 3, 6), (1, 3, 2)])
def test_lvis92i_supports_with_repeats(lvis, shots, fold, images):
    ds = build_dataset("lvis92i", lvis, fold, "test", shots=shots)
    episodes = sample_episodes(ds, shots=shots, count=DRAWS, seed=1)
    for e in episodes:
        assert e.query not in e.supports
    # with replacement from the n - 1 other images: P(no repeat) = (n-1)! / (n-1-K)! / (n-1)^K
    first = [e for e in episodes if e.class_id == ds.class_ids()[0]]
    others = images - 1
    no_repeat = np.prod([(others - k) / others for k in range(shots)]) if shots <= others else 0.0
    share = np.mean([repeated(e) for e in first])
    assert share == pytest.approx(1 - no_repeat, abs=0.04)


# -- FSS-1000: palette masks, supports with repeats ----------------------------------------
@pytest.fixture(scope="module")
def fss(tmp_path_factory):
    root = tmp_path_factory.mktemp("fss")
    base = root / "FSS-1000"
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    for name in ("ant", "bee"):
        for i in range(1, 11):
            save_image(base / "data" / name / f"{i}.jpg", mask.astype(bool))
            save_png(base / "data" / name / f"{i}.png", mask * 255)
    white = Image.fromarray(mask, mode="P")
    white.putpalette([0, 0, 0, 255, 255, 255])
    white.save(base / "data" / "ant" / "1.png")  # palette index 1 = white: the object
    dark = Image.fromarray(mask, mode="P")
    dark.putpalette([0, 0, 0, 0, 0, 128])
    dark.save(base / "data" / "ant" / "2.png")  # index 1 = navy, luminance 14 < 128: background
    Image.fromarray(mask * 200, mode="L").save(base / "data" / "ant" / "3.png")  # grey 200: object
    Image.fromarray(mask * 100, mode="L").save(base / "data" / "ant" / "4.png")  # grey 100: background
    (base / "splits").mkdir()
    (base / "splits" / "test.txt").write_text("bee\nant\n")
    return root


@pytest.mark.parametrize(
    ("key", "area"), [("ant/1.jpg", 16), ("ant/2.jpg", 0), ("ant/3.jpg", 16), ("ant/4.jpg", 0), ("ant/5.jpg", 16)]
)
def test_fss1000_masks_read_as_the_authors(fss, key, area):
    """``convert('L') >= 128``: a palette mask by its colours' luminance, not its indices."""
    ds = build_dataset("fss1000", fss)
    assert int(ds.load(key, 0)[1].sum()) == area


def test_fss1000_protocol(fss):
    ds = build_dataset("fss1000", fss)
    names = ["1", "10", "2", "3", "4", "5", "6", "7", "8", "9"]  # sorted paths, as their glob
    episodes = sample_episodes(ds, shots=5, seed=0)
    assert [e.query for e in episodes] == [f"{c}/{n}.jpg" for c in ("ant", "bee") for n in names]
    many = sample_episodes(ds, shots=5, count=DRAWS, seed=2)
    assert all(e.query not in e.supports for e in many)
    # 10 images: P(repeat among 5 supports from 9) = 1 - 9*8*7*6*5 / 9^5 = 0.744
    assert np.mean([repeated(e) for e in many]) == pytest.approx(1 - 15120 / 59049, abs=0.03)
    supports = Counter(s for e in many if e.query == "ant/1.jpg" for s in e.supports)
    assert fits(supports, {f"ant/{n}.jpg": 1 for n in names if n != "1"}, sum(supports.values())) > 1e-3


# -- Pascal-Part: object weighting, distinct supports, episode count -------------------------
@pytest.fixture(scope="module")
def pascal_part(tmp_path_factory):
    root = tmp_path_factory.mktemp("pascalpart")
    base = root / "Pascal-Part" / "VOCdevkit" / "VOC2010"
    images = {  # image id -> objects (name, parts)
        "A": [("cat", ["HEAD"]), ("cat", ["HEAD"])],
        "B": [("cat", ["HEAD"]), ("cat", ["TAIL"]), ("dog", ["HEAD"])],
        "C": [("cat", []), ("cat", ["HEAD"]), ("cat", ["LEG"])],
        "D": [("cat", ["HEAD"]), ("dog", ["HEAD"])],
        "T": [("cat", ["HEAD"]), ("bus", ["DOOR"])],
        "V": [("bus", ["DOOR"])],
        "W": [("bus", ["DOOR"])],
    }
    for i, (image_id, objects) in enumerate(images.items()):
        save_image(base / "JPEGImages" / f"{image_id}.jpg", np.ones((24, 32), bool))
        dump(
            base / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json",
            {"object": [_part_object(name, i + j, parts) for j, (name, parts) in enumerate(objects)]},
        )
    index = {
        "animals": {
            "object": {
                "cat": {
                    "part": {
                        "HEAD": {"train": ["T"], "val": ["A", "B", "B", "C", "D"]},  # B listed twice
                        "TAIL": {"train": [], "val": ["B"]},
                    }
                },  # no train images: not a class
                "dog": {"part": {"HEAD": {"train": ["T"], "val": ["B", "D"]}}},
            }
        },
        "indoor": {"object": {}},
        "person": {"object": {}},
        "vehicles": {
            "object": {
                "bus": {
                    "part": {"DOOR": {"train": ["T"], "val": ["V", "W"]}, "WHEEL": {"train": [], "val": ["V"] * 2600}}
                }
            }
        },
    }
    dump(base / "all_obj_part_to_image.json", index)
    return root


def test_pascalpart_query_weights(pascal_part):
    """The authors pick a listed image, then an object named ``cat``, and retry when it lacks the part:
    object ``o`` of image ``i`` has weight (times i is listed) / (cats in i)."""
    ds = build_dataset("pascalpart", pascal_part, 0, "test", shots=1)
    assert [ds.class_name(c) for c in ds.class_ids()] == ["cat+HEAD", "dog+HEAD"]
    expected = {"A#0": 1 / 2, "A#1": 1 / 2, "B#0": 2 / 2, "C#1": 1 / 3, "D#0": 1}
    assert dict(zip(ds.images_of(0), key_weights(ds, 0), strict=True)) == pytest.approx(expected)
    episodes = sample_episodes(ds, shots=1, count=2 * DRAWS, seed=0)
    queries = Counter(e.query for e in episodes if e.class_id == 0)
    assert fits(queries, expected, DRAWS) > 1e-3
    uniform_images = {"A#0": 1 / 8, "A#1": 1 / 8, "B#0": 1 / 4, "C#1": 1 / 4, "D#0": 1 / 4}
    assert fits(queries, uniform_images, DRAWS) < 1e-6  # sansa's former rule is rejected


def test_pascalpart_supports_and_episode_count(pascal_part):
    ds = build_dataset("pascalpart", pascal_part, 0, "test", shots=2)
    assert ds.class_ids() == [0]  # dog+HEAD has two images: too few for 2 distinct supports
    assert ds.episodes == 8  # the val lists of the super-category: 5 + 1 + 2, under 2500
    for e in sample_episodes(ds, shots=2, seed=0):
        images = [image_of(k) for k in (e.query, *e.supports)]
        assert len(set(images)) == 3  # distinct images, none the query's
    vehicles = build_dataset("pascalpart", pascal_part, 3, "test", shots=1)
    assert vehicles.episodes == 2500  # 2 + 2600 entries (bus+WHEEL is not a class but counts)
    assert len(sample_episodes(vehicles, shots=1, seed=0)) == 2500


# -- PACO-Part: membership at 1 and 2 shots, dedup by image id, objects, empty boxes --------
@pytest.fixture(scope="module")
def paco(tmp_path_factory):
    root = tmp_path_factory.mktemp("paco")
    base = root / "PACO-Part"
    seg = [[2.0, 2.0, 8.0, 2.0, 8.0, 6.0, 2.0, 6.0]]
    val_images = {10: 3, 11: 2, 12: 4, 13: 2, 14: 1, 15: 2, 16: 3, 17: 2}  # class -> images
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        cid2img, img2anno = {}, {}
        for i in range(4):
            save_image(base / "coco" / folder / f"{i}.jpg", np.ones((12, 12), bool))
            img_id = 100 * (split == "val") + i
            annos = []
            for c, count in val_images.items():
                if i < (count if split == "val" else 2):
                    annos.append({"category_id": c, "obj_ann_id": 1, "obj_bbox": [1, 1, 9, 9], "segmentation": seg})
                    cid2img.setdefault(c, []).append({img_id: f"/x/coco/{folder}/{i}.jpg"})
            img2anno[img_id] = annos
        if split == "val":
            cid2img[11].append({101: "/x/coco/val2017/1.jpg"})  # a duplicate entry: counted once
            img2anno[100].append({"category_id": 12, "obj_ann_id": 2, "obj_bbox": [1, 1, 9, 9], "segmentation": seg})
            img2anno[101].append(
                {"category_id": 12, "obj_ann_id": 3, "obj_bbox": [1, 1, 0.5, 9], "segmentation": seg}
            )  # crops to nothing: never drawn
        dump(base / "paco" / f"paco_part_{split}.pkl", {"cid2img": cid2img, "img2anno": img2anno})
    return root


# (fold, split, shots, expected): members = train order [10..17][F::4]; tested if > K val images
PACO_FOLDS = [
    (0, "test", 1, [10]),
    (0, "test", 2, [10]),
    (1, "test", 1, [11, 15]),
    (1, "test", 2, []),
    (2, "test", 2, [12, 16]),
    (0, "train", 1, [11, 12, 13, 14, 15, 16, 17]),
    (1, "train", 2, [10, 11, 12, 13, 14, 15, 16, 17]),  # nothing tested at 2 shots: every class trains
]


@pytest.mark.parametrize(("fold", "split", "shots", "expected"), PACO_FOLDS)
def test_pacopart_fold_membership(paco, fold, split, shots, expected):
    assert build_dataset("pacopart", paco, fold, split, shots=shots).class_ids() == expected


def test_pacopart_protocol(paco):
    """Class uniformly, image uniformly, object uniformly; supports with replacement from the other
    images; an episode holding object 1.jpg#3 (its box crops to nothing) is drawn again whole.

    By hand, for class 12 (images 0-3, image 0 with objects 1 and 2, image 1 with 1 and 3): a query
    outside image 1 (3/4) keeps both supports clear of 1.jpg#3 with (1 - 1/3 * 1/2)^2 = 25/36; the
    query 1.jpg#1 (1/8) always passes; so class 12 survives with 3/4 * 25/36 + 1/8 = 93/144, class 16
    with 1.
    """
    ds = build_dataset("pacopart", paco, 2, "test", shots=2)
    episodes = sample_episodes(ds, shots=2, count=DRAWS, seed=0)
    assert fits(Counter(e.class_id for e in episodes), {12: 93 / 144, 16: 1}, DRAWS) > 1e-3
    keys = [k for e in episodes if e.class_id == 12 for k in (e.query, *e.supports)]
    assert "val2017/1.jpg#3" not in keys
    queries = Counter(e.query for e in episodes if e.class_id == 12)
    clear = 25 / 36
    expected = {
        "val2017/0.jpg#1": clear / 8,
        "val2017/0.jpg#2": clear / 8,
        "val2017/1.jpg#1": 1 / 8,
        "val2017/2.jpg#1": clear / 4,
        "val2017/3.jpg#1": clear / 4,
    }
    assert fits(queries, expected, sum(queries.values())) > 1e-3
    for e in episodes:
        assert image_of(e.query) not in {image_of(s) for s in e.supports}


# -- PASCAL-5i: boundaries ignored; empty supports -----------------------------------------
class Truth:
    """Predicts a fixed mask for every query."""

    def __init__(self, mask):
        self.mask, self.references = mask, []

    def segment(self, references, query, reuse_key=None):
        self.references.append(references)
        return self.mask


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    root = tmp_path_factory.mktemp("pascal")
    base = root / "VOC2012"
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[1:3, 1:3] = 1  # aeroplane
    labels[0, :] = 255  # boundary row
    speck = np.zeros((4, 4), dtype=np.uint8)
    speck[3, 3] = 1  # vanishes when resized to 2x2 (rows/cols 0 and 2 are kept)
    lines = []
    for name, values in (("q", labels), ("s", speck)):
        save_image(base / "JPEGImages" / f"{name}.jpg", values == 1)
        save_png(base / "SegmentationClassAug" / f"{name}.png", values)
        lines.append(f"{name}__1")
    for part in ("val", "trn"):
        (base / "splits" / part).mkdir(parents=True)
        for fold in range(4):
            (base / "splits" / part / f"fold{fold}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_pascal5i_ignores_boundary_pixels(pascal):
    ds = build_dataset("pascal5i", pascal, 0)
    episode = next(e for e in sample_episodes(ds, shots=1, count=2, seed=0) if e.query == "q")
    truth = np.zeros((4, 4), dtype=bool)
    truth[1:3, 1:3] = True
    everything = truth.copy()
    everything[0, :] = True  # also claims the boundary row: ignored, so still perfect
    for prediction in (truth, everything):
        result = evaluate(ds, [episode], Truth(prediction), image_size=4, progress=False)
        assert result.miou == 1.0 and result.fb_iou == 1.0
        assert result.scores[0].union == (8, 4)  # 16 pixels - 4 boundary: 8 background, 4 object
    inter, union = intersection_union(np.zeros((4, 4), bool), truth, ignore=~truth)
    assert inter.tolist() == [0, 0] and union.tolist() == [4, 4]  # only the 4 object pixels are scored


@pytest.mark.parametrize(
    ("prompt", "field", "value"),
    [
        ("mask", "mask", np.zeros((2, 2), bool)),
        ("point", "points", [[0, 0]]),
        ("box", "box", [0, 0, 0, 0]),
        ("scribble", "scribble", [[0, 0]]),
    ],
)
def test_empty_support_prompted_as_the_authors(pascal, prompt, field, value):
    ds = build_dataset("pascal5i", pascal, 0)
    episode = next(e for e in sample_episodes(ds, shots=1, count=2, seed=0) if e.query == "q")
    assert episode.supports == ("s",)
    segmenter = Truth(np.zeros((2, 2), bool))
    result = evaluate(ds, [episode], segmenter, prompt=prompt, image_size=2, progress=False)
    ((image, support_prompt),) = segmenter.references[0]
    assert np.array_equal(getattr(support_prompt, field), value)
    assert result.scores[0].empty_supports == 1 and result.to_json()["empty_supports"] == 1


# -- every benchmark reader: images as stored (the authors ignore EXIF orientation) ---------
def test_benchmark_images_are_read_as_stored_not_exif_rotated(coco):
    ds = build_dataset("coco20i", coco, 0)
    key = ds.images_of(0)[0]
    path = coco / "COCO2014" / key
    stored = np.asarray(Image.open(path).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    image, mask = ds.load(key, 0)
    assert image.shape[:2] == mask.shape == stored.shape[:2]  # 24 x 32, not turned to 32 x 24
    assert np.abs(image.astype(int) - stored).max() <= 8  # re-encoded JPEG, same orientation
