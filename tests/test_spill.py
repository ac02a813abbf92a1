"""The on-disk collections a run's driver keeps its per-target state in (sansa.spill)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from sansa.errors import SansaError
from sansa.spill import PAGE, NameSet, SpilledList, SpilledMapping, temporary_folder


def json_mapping() -> SpilledMapping[dict]:
    return SpilledMapping(lambda value: json.dumps(value).encode(), json.loads)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("set", "b", 1), ("set", "a", 2)], {"a": 2, "b": 1}),
        ([("set", "a", 1), ("set", "a", 3)], {"a": 3}),  # set again: replaced
        ([("set", "a", 1), ("del", "a", None)], {}),
        ([("default", "a", 1), ("default", "a", 2)], {"a": 1}),  # setdefault keeps the first
        ([("many", "a", 1), ("many", "a", 5), ("set", "é", 0)], {"a": 5, "é": 0}),  # a later item wins
    ],
)
def test_mapping_behaves_as_a_dict_sorted(steps, expected):
    spilled, plain = json_mapping(), {}
    for step, key, value in steps:
        if step == "set":
            spilled[key] = plain[key] = value
        elif step == "del":
            del spilled[key], plain[key]
        elif step == "default":
            assert spilled.setdefault(key, value) == plain.setdefault(key, value)
        else:
            spilled.update_many([(key, value)])
            plain[key] = value
    assert plain == expected
    assert dict(spilled.sorted_items()) == expected and list(spilled) == sorted(expected)
    assert len(spilled) == len(expected)
    assert all(key in spilled for key in expected) and "missing" not in spilled
    assert spilled.get("missing") is None
    with pytest.raises(KeyError):
        del spilled["missing"]


def test_names_iterate_in_pythons_sort_order_across_pages():
    """Keys and names come back sorted as Python sorts str (UTF-8 byte order is code point order),
    over several pages: what a merge with a sorted listing relies on."""
    names = [f"{prefix}{i:04d}" for prefix in ("b/", "a/", "Z", "é", "日本/", "a b/") for i in range(PAGE // 2)]
    spilled = NameSet(reversed(names))
    assert list(spilled) == sorted(names) and len(spilled) == len(names)
    mapping: SpilledMapping[str] = SpilledMapping(str, str)
    mapping.update_many((name, name.upper()) for name in names)
    assert list(mapping) == sorted(names)


@pytest.mark.parametrize(
    ("added", "asked", "known"),
    [
        (["a", "b"], ["a", "c"], {"a"}),
        ([], ["a"], set()),
        ([f"n{i}" for i in range(1200)], ["n0", "n1199", "x"], {"n0", "n1199"}),
    ],
)
def test_name_set(added, asked, known):
    names = NameSet()
    names += added
    names += added  # twice: still once each
    assert len(names) == len(set(added)) and names.known(asked) == known
    assert names == sorted(set(added)) and names == set(added)
    assert [name in names for name in asked] == [name in known for name in asked]


def test_list_keeps_order_and_indexes_like_a_list():
    items = [[i, f"t{i}"] for i in range(2 * PAGE + 3)]
    spilled = SpilledList(json.dumps, json.loads)
    spilled.extend(items[:5])
    spilled += items[5:]
    spilled.append([-1, "last"])
    items.append([-1, "last"])
    assert len(spilled) == len(items) and list(spilled) == items and spilled == items
    for index in (0, 1, PAGE, -1, -2):
        assert spilled[index] == items[index]
    for part in (slice(3, 7), slice(PAGE - 2, PAGE + 2), slice(None, None, 500), slice(-3, None)):
        assert spilled[part] == items[part]
    with pytest.raises(IndexError):
        spilled[len(items)]


def test_threads_share_one_collection():
    names, mapping = NameSet(), SpilledMapping(str, str)

    def work(worker: int) -> None:
        for i in range(200):
            names.add(f"{i}")
            mapping.setdefault(f"{i}", f"{worker}")
            mapping[f"w{worker}-{i}"] = "x"

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(names) == 200 and len(mapping) == 200 + 4 * 200 == len(list(mapping))


def test_a_full_temporary_folder_is_one_line_and_keeps_what_was_stored():
    """SQLite's "database or disk is full" (the temporary folder out of room; here its page limit)
    is one line naming the folder and what to do; what was stored before stays readable."""
    names = NameSet(["kept"])
    pages = names._db.rows("PRAGMA page_count")[0][0]
    names._db.script(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(SansaError) as caught:
        names.update(f"{i:0200d}" for i in range(5000))
    message = str(caught.value)
    assert message.startswith(f"{temporary_folder()}: ")
    assert "\n" not in message and "full" in message and "SQLITE_TMPDIR" in message
    assert "kept" in names


@pytest.mark.skipif(os.name != "posix", reason="SQLite's Unix order of temporary folders")
@pytest.mark.parametrize(
    ("sqlite_tmpdir", "tmpdir", "expected"),
    [("a", "b", "a"), (None, "b", "b"), (None, None, "/var/tmp"), ("missing", "b", "b")],
)
def test_temporary_folder_is_where_sqlite_writes(tmp_path, monkeypatch, sqlite_tmpdir, tmpdir, expected):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    for variable, value in (("SQLITE_TMPDIR", sqlite_tmpdir), ("TMPDIR", tmpdir)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, str(tmp_path / value))
    if expected == "/var/tmp" and not os.access("/var/tmp", os.W_OK):
        pytest.skip("no writable /var/tmp here")
    assert temporary_folder() == (expected if expected.startswith("/") else str(tmp_path / expected))
