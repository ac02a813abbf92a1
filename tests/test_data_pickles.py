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
