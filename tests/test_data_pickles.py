"""Split/annotation pickles go through a restricted unpickler: plain data loads, nothing runs.

Every malicious pickle below would create ``marker`` if any of it were executed; afterwards
the marker must not exist and the error must be one line naming the file.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from minidata import build_coco

from sansa.data import DatasetError, build_dataset
from sansa.data.pickles import UnsafePickleError, load_pickle, loads


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


class Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _global(module: str, name: str, arg: str, protocol: int = 0) -> bytes:
    """A hand-written pickle calling ``module.name(arg)`` (no need for the callable to exist here)."""
    if protocol == 0:
        return f"c{module}\n{name}\n(V{arg}\ntR.".encode()

    # protocol 4: STACK_GLOBAL
    def short(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data

    return b"\x80\x04" + short(module) + short(name) + b"\x93" + short(arg) + b"\x85R."


def malicious(marker: Path) -> dict[str, bytes]:
    """Name -> pickle bytes; each would write the marker file if executed."""
    shell = f"touch {marker}"
    code = _touch(marker)
    return {
        "os.system": pickle.dumps(Reduce(os.system, shell)),
        "os.system, protocol 2": pickle.dumps(Reduce(os.system, shell), protocol=2),
        "posix.system, protocol 0 text": _global("posix", "system", shell),
        "subprocess.Popen": pickle.dumps(Reduce(subprocess.Popen, ["touch", str(marker)])),
        "subprocess.check_call": pickle.dumps(Reduce(subprocess.check_call, ["touch", str(marker)])),
        "builtins.eval": pickle.dumps(Reduce(eval, code)),
        "builtins.exec": pickle.dumps(Reduce(exec, code)),
        "__builtin__.eval, protocol 0 text": _global("__builtin__", "eval", code),
        "builtins.exec, protocol 0 text": _global("builtins", "exec", code),
        "builtins.getattr, protocol 4": _global("builtins", "getattr", "x", protocol=4),
        "numpy.load (not an array reconstructor)": _global("numpy", "load", str(marker), protocol=4),
        "numpy.testing runstring": _global("numpy.testing._private.utils", "runstring", code),
        "dotted name os.system via STACK_GLOBAL": _global("builtins", "__import__.os.system", shell, protocol=4),
        "nested: {class: [name, os.system]}": pickle.dumps({3: ["val2014/a.jpg", Reduce(os.system, shell)]}),
        "nested in a numpy object array": pickle.dumps({0: np.array([Reduce(eval, code)], dtype=object)}),
        "copyreg._reconstructor": pickle.dumps(
            Reduce(__import__("copyreg")._reconstructor, object, object, None), protocol=0
        ),
        "persistent id": b"\x80\x04\x8c\x01x\x94Q.",
        "builtins.bytes(10**10): 10 GB": _global("builtins", "bytes", "x", protocol=4).replace(
            b"\x8c\x01x", b"\x8a\x05\x00\xe4\x0bT\x02"
        ),
        "builtins.bytearray(10**10), protocol 0 text": b"c__builtin__\nbytearray\n(I10000000000\ntR.",
        "_codecs.encode with a non-text codec": pickle.dumps(
            Reduce(__import__("_codecs").encode, "eJz", "zlib_codec"), protocol=2
        ),
    }


@pytest.mark.parametrize("case", list(malicious(Path("/m"))))
def test_malicious_pickle_runs_nothing(tmp_path, case):
    marker = tmp_path / "marker"
    path = tmp_path / "fold0.pkl"
    path.write_bytes(malicious(marker)[case])
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    message = str(err.value)
    assert not marker.exists(), f"{case}: code ran"
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "not loaded" in message or "not a readable pickle" in message


@pytest.mark.parametrize("data", [b"", b"not a pickle", pickle.dumps({1: ["a"]})[:-3], b"\x80\x05\xff"])
def test_damaged_pickle_is_one_line(data):
    with pytest.raises(UnsafePickleError, match=r"^fold1\.pkl: not a readable pickle") as err:
        loads(data, "fold1.pkl")
    assert "\n" not in str(err.value)


PLAIN = [
    {0: ["train2014/a.jpg", "train2014/b.jpg"], 4: []},  # COCO/HSNet split
    {7: {"val2017/x.jpg": {"annotations": [{"segmentation": [[1.0, 2.0, 3.0, 4.0]], "bbox": (1, 2, 3, 4)}]}}},
    {
        "cid2img": {3: [{12: "/d/coco/val2017/x.jpg"}]},
        "img2anno": {12: [{"category_id": np.int64(3), "obj_bbox": np.float32(1.5)}]},
    },
    {"mask": np.arange(6, dtype=np.uint8).reshape(2, 3), "f": np.zeros(2), "s": {1, 2}, "b": b"\x00\xff"},
    OrderedDict([(2, "b"), (1, "a")]),
]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("index", range(len(PLAIN)))
def test_plain_data_loads_unchanged(protocol, index):
    value = PLAIN[index]
    loaded = loads(pickle.dumps(value, protocol=protocol))
    assert repr(loaded) == repr(value)
    assert type(loaded) is type(value)


def test_dataset_reader_refuses_a_malicious_split(tmp_path):
    data = build_coco(tmp_path / "data")
    marker = tmp_path / "marker"
    split = data / "COCO2014" / "splits" / "val" / "fold0.pkl"
    split.write_bytes(malicious(marker)["os.system"])
    with pytest.raises(DatasetError, match="fold0.pkl: not loaded: this pickle refers to posix.system"):
        build_dataset("coco20i", data, 0)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["os.system", "builtins.exec, protocol 0 text", "nested: {class: [name, os.system]}"])
def test_sansa_eval_exits_2_naming_the_file(tmp_path, case):
    data = build_coco(tmp_path / "data")
    marker = tmp_path / "marker"
    split = data / "COCO2014" / "splits" / "val" / "fold0.pkl"
    split.write_bytes(malicious(marker)[case])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sansa",
            "eval",
            "--benchmark",
            "coco20i",
            "--data",
            str(data),
            "--episodes",
            "1",
            "--size",
            "32",
            "--out",
            str(tmp_path / "out"),
            "--backbone",
            "test_tiny",
            "--random-weights",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(split) in lines[0] and "not loaded" in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert not marker.exists()


# ---- what a pickle may allocate (issue 22) ------------------------------------------------------

GLOBAL_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"


def _reduce(func: bytes, args: bytes) -> bytes:
    """Protocol-0 text: ``func(*args)`` with ``func`` a ``c<module>\\n<name>\\n`` and ``args`` a tuple."""
    return func + args + b"R"


def _array_state(shape: str, dtype: str, data: bytes) -> bytes:
    """An array built as numpy pickles one (``_reconstruct(ndarray, (0,), b'b')``), with a hostile state."""
    head = _reduce(GLOBAL_RECONSTRUCT, b"(cnumpy\nndarray\n(I0\ntS'b'\ntp0\n")
    dtype_obj = _reduce(b"cnumpy\ndtype\n", f"(V{dtype}\nI00\nI01\nt".encode())
    return head + b"(I1\n" + f"({shape}t".encode() + dtype_obj + b"I00\n" + data + b"tb."


def _memo_copies(func: str, item: bytes, calls: int) -> bytes:
    """A protocol-4 pickle: ``[func(x), func(x), ...]`` with one memoised ``x`` (5 bytes per call)."""
    body = b"\x80\x04]\x94(" + b"\x8c\x08builtins\x8c" + bytes([len(func)]) + func.encode() + b"\x93\x94"
    body += item + b"\x94\x85R"  # func(x); x is memo 1
    body += b"h\x01h\x02\x85R" * (calls - 1)  # memo 0: the list, 1: func, 2: x
    return body + b"e."


# (case, pickle bytes, what the one line says): each is refused before the allocation it asks for
ALLOCATING = [
    ("numpy.ndarray((3e8,), object): 50 bytes, 2.4 GB", b"cnumpy\nndarray\n((I300000000\ntVO\ntR.", "called directly"),
    ("_reconstruct of 3e8 objects", _reduce(GLOBAL_RECONSTRUCT, b"(cnumpy\nndarray\n(I300000000\ntS'O'\ntR."),
     "object arrays are not loaded"),
    ("_reconstruct of 2^31 bytes", _reduce(GLOBAL_RECONSTRUCT, b"(cnumpy\nndarray\n(I2147483648\ntS'b'\ntR."),
     "over the 1073741824 bytes"),
    ("_reconstruct of a 100 MB sub-array dtype", _reduce(GLOBAL_RECONSTRUCT, b"(cnumpy\nndarray\n(I1\nt"
     + _reduce(b"cnumpy\ndtype\n", b"(Vu1\nI00\nI01\nt")[:-1] + b"R" + b"tR."), "a non-empty array"),
    ("object array state with a short list (crashed numpy)", _array_state("I100000000\n", "O8", b"(lp1\nI1\na"),
     "object arrays are not loaded"),
    ("uint8 state of 1e9 with 2 bytes of data", _array_state("I1000000000\n", "u1", b"C\x0212"),
     "whose data is not in the file"),
    ("uint8 state of 2^31", _array_state("I2147483648\n", "u1", b"C\x0212"), "over the 1073741824 bytes"),
    ("float state with a list as data", _array_state("I4\n", "f8", b"(lp1\nI1\na"), "whose data is not in the file"),
    ("list(one memoised 32768-character string) x 1000", _memo_copies("list", b"\x8d" + (65536).to_bytes(8, "little")
     + "é".encode() * 32768, 1000), "builtins.list of 32768 items: over the"),
    ("bytearray(one memoised 1 MB bytes) x 2000", _memo_copies("bytearray", b"B" + (2**20).to_bytes(4, "little")
     + b"x" * 2**20, 2000), "builtins.bytearray of 1048576 items: over the"),
    ("str(a list sharing one string)", b"\x80\x04\x8c\x08builtins\x8c\x03str\x93]\x94(\x8c\x03abc\x94"
     + b"h\x01" * 100 + b"e\x85R.", "refers to builtins.str of a list"),
]  # fmt: skip


@pytest.mark.parametrize("case, data, message", ALLOCATING, ids=[a[0] for a in ALLOCATING])
def test_a_pickle_cannot_allocate_more_than_its_bound(tmp_path, case, data, message):
    import tracemalloc

    path = tmp_path / "fold0.pkl"
    path.write_bytes(data)
    tracemalloc.start()
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    text = str(err.value)
    assert text.startswith(f"{path}: not loaded: this pickle refers to") and "\n" not in text, text
    assert message in text, text
    assert peak < 1.1 * 2**30 and (peak < 64 * 2**20 or "over the" in message), f"{peak} bytes allocated"


def test_object_arrays_of_plain_data_are_refused_too():
    with pytest.raises(UnsafePickleError, match="object arrays are not loaded"):
        loads(pickle.dumps({"a": np.array(["x", 1], dtype=object)}), "fold0.pkl")


def test_arrays_in_shared_and_nested_containers_load_as_plain_arrays():
    shared = np.arange(4, dtype=np.int16)
    value = {"a": [shared, (shared, {"b": shared})], "c": OrderedDict(d=np.zeros((2, 2), np.float32))}
    for protocol in (2, 4, 5):
        loaded = loads(pickle.dumps(value, protocol=protocol))
        assert repr(loaded) == repr(value)
        arrays = [loaded["a"][0], loaded["a"][1][0], loaded["a"][1][1]["b"], loaded["c"]["d"]]
        assert all(type(a) is np.ndarray for a in arrays)
        assert loaded["a"][0] is loaded["a"][1][0]  # shared stays shared


def test_a_defaultdict_keeps_its_factory():
    from collections import defaultdict

    value = defaultdict(list, {1: ["a"]})
    loaded = loads(pickle.dumps(value, protocol=2))
    assert loaded.default_factory is list and loaded == value


# (benchmark, file, wrong plain data, what the one line says is expected)
WRONG_LAYOUT = [
    ("coco20i", "COCO2014/splits/val/fold0.pkl", ["val2014/a.jpg"], "expected a dict of class index -> list"),
    ("coco20i", "COCO2014/splits/val/fold0.pkl", np.arange(3), "found a numpy array (3,) int64"),
    ("coco20i", "COCO2014/splits/val/fold0.pkl", {0: "val2014/a.jpg"}, "found a dict of 1 items laid out otherwise"),
    ("lvis92i", "LVIS/lvis_val.pkl", {1: ["a.jpg"]}, "expected a dict of class id -> {image path"),
    ("lvis92i", "LVIS/lvis_val.pkl", {1: {"a.jpg": {"annotations": [3]}}}, "laid out otherwise"),
    ("pacopart", "PACO-Part/paco/paco_part_val.pkl", {"cid2img": []}, "expected a dict with 'cid2img'"),
    ("pacopart", "PACO-Part/paco/paco_part_train.pkl", [1, 2], "found a list of 2 items"),
]


@pytest.mark.parametrize(
    "benchmark, name, value, message", WRONG_LAYOUT, ids=[f"{w[0]}-{w[3][:30]}" for w in WRONG_LAYOUT]
)
def test_a_split_pickle_in_the_wrong_layout_is_one_line(tmp_path, benchmark, name, value, message):
    import minidata

    root = tmp_path / "data"
    {"coco20i": minidata.build_coco, "lvis92i": minidata.build_lvis, "pacopart": minidata.build_paco}[benchmark](root)
    (root / name).write_bytes(pickle.dumps(value))
    with pytest.raises(DatasetError) as err:
        build_dataset(benchmark, root, 0)
    text = str(err.value)
    assert text.startswith(f"{root / name}: expected ") and message in text and "\n" not in text, text
