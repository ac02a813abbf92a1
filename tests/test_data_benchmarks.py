"""Benchmark readers on miniature datasets in each layout: folds, episodes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from minidata import BUILDERS, rect

from sansa.data import DatasetError, build_dataset, load_episodes, sample_episodes, save_episodes
from sansa.data.episode import image_of
from sansa.data.episodes import episode_list


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One data root holding every miniature benchmark (folder: under ``my_data``)."""
    root = tmp_path_factory.mktemp("data")
    for name, build in BUILDERS.items():
        build(root / "my_data" if name == "folder" else root)
    return root


def dataset(data, benchmark, fold=0, split="test", shots=1):
    root = data / "my_data" if benchmark == "folder" else data
    return build_dataset(benchmark, root, fold, split, shots)


# (benchmark, fold, split, shots, expected class ids)
MEMBERSHIP = [
    ("coco20i", 0, "test", 1, [0, 4]),  # fold 0 = index % 4 == 0; class 8 has a single image
    ("coco20i", 0, "train", 1, [1, 2, 3, 5, 6, 7]),
    ("coco20i", 1, "test", 1, [1, 5]),
    ("coco20i", 0, "test", 3, [0, 4]),  # supports may repeat: two images are enough for any K
    ("pascal5i", 0, "test", 1, [0, 1]),
    ("pascal5i", 2, "test", 1, [10, 11]),
    ("pascal5i", 0, "train", 1, [5, 6, 10, 11, 15, 16]),
    ("pascal5i", 0, "test", 2, [0, 1]),
    ("fss1000", 0, "test", 1, [0, 1]),  # sorted names: cat, dog
    ("fss1000", 0, "train", 1, [0]),
    ("lvis92i", 0, "test", 1, [1, 11]),  # every 10th of the classes with >= 2 images, from F
    ("lvis92i", 4, "test", 1, [5, 15]),
    ("lvis92i", 0, "test", 2, []),  # the authors' rule: only class 1 has > 2 images, 1 // 10 = 0 per fold
    ("pascalpart", 0, "test", 1, [0]),  # cat+HEAD (cat+TAIL has no val images)
    ("pascalpart", 3, "test", 1, [0]),  # aeroplane+BODY (aeroplane+TAIL excluded)
    ("pacopart", 0, "test", 1, [10]),  # members 10, 14; 14 has a single val image
    ("pacopart", 1, "test", 1, [11, 15]),
    ("pacopart", 1, "test", 2, []),  # same membership, none usable with 2 images
    ("pacopart", 0, "train", 1, [11, 12, 13, 14, 15, 16, 17]),  # 14 is not tested at 1 shot: trained on
    ("folder", 0, "test", 1, [0, 1]),
]


@pytest.mark.parametrize(("benchmark", "fold", "split", "shots", "expected"), MEMBERSHIP)
def test_fold_membership(data, benchmark, fold, split, shots, expected):
    assert dataset(data, benchmark, fold, split, shots).class_ids() == expected


@pytest.mark.parametrize(
    ("benchmark", "fold", "names"),
    [
        ("coco20i", 0, ["person", "airplane"]),
        ("pascal5i", 0, ["aeroplane", "bicycle"]),
        ("fss1000", 0, ["cat", "dog"]),
        ("pascalpart", 0, ["cat+HEAD"]),
        ("pascalpart", 3, ["aeroplane+BODY"]),
        ("folder", 0, ["cat", "dog"]),
    ],
)
def test_class_names(data, benchmark, fold, names):
    ds = dataset(data, benchmark, fold)
    assert [ds.class_name(c) for c in ds.class_ids()] == names


# (benchmark, fold, expected default episode count)
COUNTS = [
    ("coco20i", 0, 1000),
    ("pascal5i", 0, 1000),
    ("fss1000", 0, 6),
    ("lvis92i", 0, 2300),
    ("pascalpart", 0, 3),
    ("pacopart", 1, 2500),
    ("folder", 0, 6),
]  # Pascal-Part: min(val lists, 2500)


@pytest.mark.parametrize(("benchmark", "fold", "count"), COUNTS)
def test_episode_counts_and_rules(data, benchmark, fold, count):
    ds = dataset(data, benchmark, fold)
    episodes = sample_episodes(ds, shots=1, seed=0)
    assert len(episodes) == count
    classes = ds.class_ids()
    for e in episodes:
        assert e.class_id in classes
        assert e.query in ds.images_of(e.class_id)
        assert all(s in ds.images_of(e.class_id) for s in e.supports)
        assert image_of(e.query) not in {image_of(s) for s in e.supports}


def test_every_image_is_a_query_once(data):
    ds = dataset(data, "fss1000")
    queries = [e.query for e in sample_episodes(ds, shots=2, seed=3)]
    assert queries == [k for c in ds.class_ids() for k in ds.images_of(c)]


@pytest.mark.parametrize("benchmark", ["lvis92i", "pascalpart"])
def test_cycled_classes(data, benchmark):
    ds = dataset(data, benchmark)
    classes = ds.class_ids()
    episodes = sample_episodes(ds, shots=1, count=7, seed=0)
    assert [e.class_id for e in episodes] == [classes[i % len(classes)] for i in range(7)]


def test_pascal5i_cycles_the_split_file(data):
    ds = dataset(data, "pascal5i")
    episodes = sample_episodes(ds, shots=1, count=7, seed=0)
    pairs = ds.queries()
    assert [(e.query, e.class_id) for e in episodes] == [pairs[i % len(pairs)] for i in range(7)]


@pytest.mark.parametrize(("benchmark", "fold"), [(b, f) for b, f, _ in COUNTS])
def test_query_and_supports_show_the_class(data, benchmark, fold):
    ds = dataset(data, benchmark, fold)
    for e in sample_episodes(ds, shots=1, count=4, seed=1):
        for key in (e.query, *e.supports):
            image, mask = ds.load(key, e.class_id)
            assert image.dtype == np.uint8 and image.shape == (*mask.shape, 3)
            assert mask.any(), f"{key} has no pixel of class {e.class_id}"


def test_part_datasets_crop_to_the_object(data):
    ds = dataset(data, "pascalpart")
    key = ds.images_of(0)[0]
    assert key.endswith("#1")  # object 0 is a cat without a head
    image, mask = ds.load(key, 0)
    x0, y0, x1, y1 = rect(0)
    assert mask.shape == (y1 - y0, x1 - x0)
    assert mask[:4].all() and not mask[4:].any()  # the head: the object's top 4 rows


@pytest.mark.parametrize("benchmark", ["coco20i", "lvis92i", "pacopart", "folder"])
def test_episodes_depend_only_on_the_seed(data, benchmark):
    fold = 1 if benchmark == "pacopart" else 0
    first = sample_episodes(dataset(data, benchmark, fold), shots=1, count=50, seed=7)
    again = sample_episodes(dataset(data, benchmark, fold), shots=1, count=50, seed=7)
    other = sample_episodes(dataset(data, benchmark, fold), shots=1, count=50, seed=8)
    assert first == again
    assert first != other


def test_episode_json_round_trip(data, tmp_path):
    episodes = episode_list(dataset(data, "coco20i"), shots=2, count=5, seed=4)
    path = save_episodes(episodes, tmp_path / "sub" / "episodes.json")
    assert load_episodes(path) == episodes
    assert not list(path.parent.glob(".*tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a readable episode list"),
        ('{"format": "other"}', "not an episode list"),
        ('{"format": "sansa-episodes/1", "dataset": "x", "shots": 1, "seed": 0, "episodes": [{}]}', "malformed"),
    ],
)
def test_bad_episode_files(tmp_path, content, message):
    path = tmp_path / "e.json"
    path.write_text(content)
    with pytest.raises(Exception, match=message) as err:
        load_episodes(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("benchmark", "fold", "message"),
    [
        ("coco20i", 0, "COCO2014: not found"),
        ("fss1000", 0, "FSS-1000: not found"),
        ("coco20i", 4, "fold: coco20i has folds 0..3"),
        ("imagenet", 0, "benchmark: unknown"),
    ],
)
def test_build_errors(tmp_path, benchmark, fold, message):
    with pytest.raises(DatasetError, match=message):
        build_dataset(benchmark, tmp_path, fold)


def test_too_few_images_for_distinct_supports(data):
    ds = dataset(data, "pascalpart", shots=1)  # Pascal-Part's supports are distinct images
    with pytest.raises(Exception, match="has 2 support images besides the query, 3 needed"):
        sample_episodes(ds, shots=3, seed=0)
