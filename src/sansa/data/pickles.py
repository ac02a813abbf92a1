"""Reading the field's split/annotation pickles without letting them run code.

A pickle names the functions it calls to rebuild its objects; :func:`load_pickle` allows only
the plain containers and numpy types the benchmarks' pickles hold (HSNet/Matcher/SANSA split
files: dicts, lists, tuples, strings, numbers, numpy arrays and scalars). Any other name
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``numpy.load``, a class of some
package, ...) stops the load before anything is called: :class:`UnsafePickleError`, one line
naming the file and the refused name.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray, numeric

from sansa.errors import SansaError


class UnsafePickleError(SansaError):
    """A pickle refers to a callable outside the allow-list (or is not a readable pickle)."""


def _numpy(module: Any, name: str) -> dict[tuple[str, str], Any]:
    """The same numpy callable under its numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) names."""
    short = module.__name__.rsplit(".", 1)[1]
    return {(f"numpy.{core}.{short}", name): getattr(module, name) for core in ("core", "_core")}


# (module, name) -> the object it stands for. Only constructors of inert data: calling them
# with any arguments builds a value, never runs a command or imports a module.
ALLOWED: dict[tuple[str, str], Any] = {
    **_numpy(multiarray, "_reconstruct"),  # ndarray.__reduce__
    **_numpy(numeric, "_frombuffer"),  # ndarray.__reduce_ex__ with protocol 5
    **_numpy(multiarray, "scalar"),  # numpy scalars (np.int64(3), np.float32(0.5))
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("_codecs", "encode"): lambda text, encoding="utf-8": _encode(text, encoding),
    **{
        (module, name): obj
        for module in ("builtins", "__builtin__")
        for name, obj in (
            ("set", set),
            ("frozenset", frozenset),
            ("list", list),
            ("dict", dict),
            ("tuple", tuple),
            ("int", int),
            ("float", float),
            ("str", str),
            ("complex", complex),
            ("bool", bool),
            ("bytes", lambda *a: _sized(bytes, a)),
            ("bytearray", lambda *a: _sized(bytearray, a)),
        )
    },
}


def _sized(kind: type, args: tuple) -> Any:
    """``bytes(...)``/``bytearray(...)`` from data only: ``bytes(10**10)`` would allocate 10 GB."""
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError(f"refers to builtins.{kind.__name__} with a size ({args[0]})")
    return kind(*args)


def _encode(text: Any, encoding: str) -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(text, 'latin1')``: text encodings only."""
    import codecs

    if not isinstance(text, str) or not isinstance(encoding, str):
        raise pickle.UnpicklingError("refers to _codecs.encode with non-text arguments")
    if not getattr(codecs.lookup(encoding), "_is_text_encoding", True):
        raise pickle.UnpicklingError(f"refers to _codecs.encode with the non-text codec {encoding!r}")
    return text.encode(encoding)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refers to {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("uses a persistent id")


def loads(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` allowing only plain data (see :data:`ALLOWED`); ``source`` names it in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
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
