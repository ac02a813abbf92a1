"""Reading the field's split/annotation pickles without letting them run code.

A pickle names the functions it calls to rebuild its objects; :func:`load_pickle` allows only
the plain containers and numpy types the benchmarks' pickles hold (HSNet/Matcher/SANSA split
files: dicts, lists, tuples, strings, numbers, numpy arrays and scalars). Any other name
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``numpy.load``, a class of some
package, ...) stops the load before anything is called: :class:`UnsafePickleError`, one line
naming the file and the refused name.

What a pickle may allocate is bounded before anything is allocated: ``bytes(n)`` with a size is
refused, and so is every numpy array whose size the file does not hold itself (an array's data must
be in the pickle, byte for byte; all arrays together at most :data:`MAX_ARRAY_BYTES`). Object arrays
are refused whatever their size (numpy would build them from the pickle's own references, and a
short element list crashes numpy).
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy._core import multiarray, numeric

from sansa.errors import SansaError


class UnsafePickleError(SansaError):
    """A pickle refers to a callable outside the allow-list (or is not a readable pickle)."""


def _numpy(module: Any, name: str) -> dict[tuple[str, str], Any]:
    """The same numpy callable under its numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) names."""
    short = module.__name__.rsplit(".", 1)[1]
    return {(f"numpy.{core}.{short}", name): getattr(module, name) for core in ("core", "_core")}


MAX_ARRAY_BYTES = 1 << 30  # what one pickle may allocate: its arrays and copies, all together
_ITEM_BYTES = 64  # charged per item a builtin constructor copies (a list of one-character strings)
_COPYING = {
    name: kind for kind in (set, frozenset, list, dict, tuple, str, bytes, bytearray) for name in [kind.__name__]
}
_BUILTINS = ("builtins", "__builtin__")


def _ndarray_called(*args: Any) -> None:
    raise pickle.UnpicklingError("refers to numpy.ndarray called directly (an array whose data is not in the file)")


# The array reconstructors are the unpickler's own (they count what is allocated): these names
# stand for them in find_class.
_RECONSTRUCT = set(_numpy(multiarray, "_reconstruct"))  # ndarray.__reduce__
_FROMBUFFER = set(_numpy(numeric, "_frombuffer"))  # ndarray.__reduce_ex__ with protocol 5

# (module, name) -> the object it stands for. Only constructors of inert data: calling them
# with any arguments builds a value, never runs a command or imports a module.
ALLOWED: dict[tuple[str, str], Any] = {
    **_numpy(multiarray, "scalar"),  # numpy scalars (np.int64(3), np.float32(0.5)); data from the file
    ("numpy", "ndarray"): _ndarray_called,  # only ever the subtype argument of _reconstruct
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("_codecs", "encode"): lambda text, encoding="utf-8": _encode(text, encoding),
    **{
        (module, name): obj
        for module in ("builtins", "__builtin__")
        for name, obj in (
            ("int", int),
            ("float", float),
            ("complex", complex),
            ("bool", bool),
        )
    },
}


def _sized(kind: type, args: tuple[Any, ...]) -> None:
    """``bytes(...)``/``bytearray(...)`` from data only: ``bytes(10**10)`` would allocate 10 GB."""
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError(f"refers to builtins.{kind.__name__} with a size ({args[0]})")


def _encode(text: Any, encoding: str) -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(text, 'latin1')``: text encodings only."""

    if not isinstance(text, str) or not isinstance(encoding, str):
        raise pickle.UnpicklingError("refers to _codecs.encode with non-text arguments")
    if not getattr(codecs.lookup(encoding), "_is_text_encoding", True):
        raise pickle.UnpicklingError(f"refers to _codecs.encode with the non-text codec {encoding!r}")
    return text.encode(encoding)


class _Budget:
    """Bytes of array data one load may still allocate."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.arrays = 0

    def spend(self, size: int, what: str) -> None:
        if size > self.left:
            raise pickle.UnpicklingError(f"refers to {what}: over the {MAX_ARRAY_BYTES} bytes a pickle may allocate")
        self.left -= size

    def take(self, dtype: Any, shape: Any) -> int:
        """Count an array of ``shape`` and ``dtype`` (refusing object dtypes); its size in bytes."""
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError(f"refers to a numpy array of {dtype} (object arrays are not loaded)")
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"refers to a numpy array of shape {str(shape)[:60]}")
        size = dtype.itemsize
        for n in shape:
            size *= n
        if size > self.left:
            raise pickle.UnpicklingError(
                f"refers to a numpy array of shape {shape} {dtype} ({size} bytes): over the "
                f"{MAX_ARRAY_BYTES} bytes a pickle may allocate"
            )
        self.left -= size
        self.arrays += 1
        return size


class _Copying:
    """A builtin constructor that copies its argument (``list(x)``, ``set(x)``, ``str(x)``): each
    call is charged to the load's budget before it runs, since one memoised argument can be
    copied by any number of calls."""

    def __init__(self, kind: type, budget: _Budget) -> None:
        self.kind, self.budget = kind, budget

    def __call__(self, *args: Any) -> Any:
        if self.kind in (bytes, bytearray):
            _sized(self.kind, args)
        if self.kind is str and args and not isinstance(args[0], (str, bytes, bytearray)):
            raise pickle.UnpicklingError(f"refers to builtins.str of a {type(args[0]).__name__}")
        items = sum(len(a) for a in args if isinstance(a, (str, bytes, bytearray, list, tuple, dict, set, frozenset)))
        size = items * (1 if self.kind in (bytes, bytearray) else _ITEM_BYTES)
        self.budget.spend(size, f"builtins.{self.kind.__name__} of {items} items")
        return self.kind(*args)


class _CheckedArray(np.ndarray):
    """An array being unpickled: its state is checked before numpy allocates (then a plain ndarray)."""

    _budget: _Budget

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("refers to a numpy array with an unknown state")
        shape, dtype, data = state[-4], state[-3], state[-1]
        size = self._budget.take(dtype, shape)
        if not isinstance(data, (bytes, bytearray)) or len(data) != size:
            raise pickle.UnpicklingError(f"refers to a numpy array of {shape} {dtype} whose data is not in the file")
        super().__setstate__(state)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, budget: _Budget) -> None:
        super().__init__(file)
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        if (module, name) in _FROMBUFFER:
            return self._frombuffer
        if module in _BUILTINS and name in _COPYING:
            return _Copying(_COPYING[name], self.budget)
        if (module, name) == ("collections", "defaultdict"):
            return self._defaultdict
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refers to {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("uses a persistent id")

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array whose state follows."""
        if subtype is not _ndarray_called:
            raise pickle.UnpicklingError("refers to numpy's _reconstruct of something other than an ndarray")
        dtype = np.dtype(dtype)
        if self.budget.take(dtype, shape):  # numpy writes (0,): the data comes with the state, from the file
            raise pickle.UnpicklingError(f"refers to numpy's _reconstruct of a non-empty array {shape} {dtype}")
        array = cast(_CheckedArray, multiarray._reconstruct(_CheckedArray, shape, dtype))
        array._budget = self.budget
        return array

    @staticmethod
    def _defaultdict(factory: Any = None, *args: Any) -> defaultdict:
        return defaultdict(factory.kind if isinstance(factory, _Copying) else factory, *args)

    def _frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        """numpy's protocol-5 reconstructor: the data is the buffer, of the file's own bytes."""
        self.budget.take(dtype, shape)
        array: np.ndarray = numeric._frombuffer(buffer, dtype, shape, order)  # type: ignore[attr-defined]
        return array


def _plain(value: Any, seen: dict[int, Any]) -> Any:
    """``value`` with every :class:`_CheckedArray` in it (in dicts, lists, tuples) a plain ndarray."""
    if not isinstance(value, (dict, list, tuple, _CheckedArray)):
        return value
    if id(value) in seen:  # shared or cyclic: converted once
        return seen[id(value)]
    seen[id(value)] = value
    if isinstance(value, _CheckedArray):
        seen[id(value)] = value.view(np.ndarray)
    elif isinstance(value, dict):
        for key, item in value.items():
            value[key] = _plain(item, seen)
    elif isinstance(value, list):
        value[:] = [_plain(item, seen) for item in value]
    else:
        seen[id(value)] = tuple(_plain(item, seen) for item in value)
    return seen[id(value)]


def loads(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` allowing only plain data (see :data:`ALLOWED`); ``source`` names it in errors."""
    try:
        budget = _Budget(MAX_ARRAY_BYTES)
        value = _RestrictedUnpickler(io.BytesIO(data), budget).load()
        return _plain(value, {}) if budget.arrays else value
    except pickle.UnpicklingError as err:
        text = str(err)
        if text.startswith(("refers to", "uses a")):
            raise UnsafePickleError(
                f"{source}: not loaded: this pickle {text}, and only plain data "
                f"(dicts, lists, strings, numbers, numpy arrays) is allowed"
            ) from None
        raise UnsafePickleError(f"{source}: not a readable pickle ({text})") from None
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeError,
    ) as err:
        raise UnsafePickleError(
            f"{source}: not a readable pickle ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file through the restricted unpickler.

    Raises:
        UnsafePickleError: the file names anything but plain data, or is not a pickle.
        OSError: the file cannot be read.
    """
    path = Path(path)
    return loads(path.read_bytes(), str(path))
