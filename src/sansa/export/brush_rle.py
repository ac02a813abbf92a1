"""Label Studio's brush RLE: the ``value.rle`` list of a ``brushlabels`` result.

The format (Label Studio's front end uses thi.ng's ``rle-pack``) encodes a flat ``uint8`` array
of ``H * W * 4`` values, the RGBA pixels of the brush layer in row-major order. As a bit stream,
most significant bit first:

* header: 32 bits value count, 5 bits word size - 1 (8-bit words: 7), four 4-bit run-length
  field sizes - 1 (``3, 4, 8, 16`` bits here);
* then runs: 1 bit "repeat", 2 bits picking a field size, ``size`` bits run length - 1, then
  one word (repeat) or ``length`` words (literal);
* zero bits up to a whole byte; the list holds the bytes as ints.

A mask pixel is ``255`` in all four channels and ``0`` elsewhere, as Label Studio's own
converter (``mask2rle``) writes it; decoding reads the alpha channel.
"""

from __future__ import annotations

import numpy as np

from sansa.errors import SansaError

WORD_BITS = 8
RUN_FIELD_BITS = (3, 4, 8, 16)
MAX_RUN = 1 << RUN_FIELD_BITS[-1]
_HEADER_FIELDS = [(32, None), (5, WORD_BITS - 1)] + [(4, bits - 1) for bits in RUN_FIELD_BITS]


def encode(mask: np.ndarray) -> list[int]:
    """Brush RLE of a mask.

    Args:
        mask: ``bool [H, W]`` (any nonzero value counts as the object).

    Returns:
        The bytes of the RLE as a list of ints (Label Studio's ``value.rle``).
    """
    if mask.ndim != 2:
        raise SansaError(f"mask: expected a 2-D array, got shape {tuple(mask.shape)}")
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    lengths, values = _runs(flat)
    lengths, values = lengths * 4, values.astype(np.int64) * 255  # each pixel is 4 equal channel values
    lengths, values = _split_long_runs(lengths, values)
    header = _header_bits(flat.size * 4)
    bits = np.concatenate([header, _run_bits(lengths, values)])
    return np.packbits(bits).tolist()  # packbits pads the last byte with zeros


def decode(rle: list[int] | np.ndarray, height: int, width: int) -> np.ndarray:
    """``bool [H, W]`` from a brush RLE: the pixels whose alpha is nonzero.

    Raises :class:`SansaError` when the RLE is not ``H * W * 4`` values long or is cut short. The
    length is checked from the RLE's header before anything is allocated, so a crafted header
    cannot make it allocate more than the image's ``H * W * 4`` bytes.
    """
    try:
        data = np.asarray(rle, dtype=np.uint8)
    except (TypeError, ValueError, OverflowError):
        raise SansaError("rle: expected a list of byte values (0..255)") from None
    values = decode_values(data, expected=height * width * 4)
    return values.reshape(height, width, 4)[:, :, 3] > 0


def decode_values(data: np.ndarray, expected: int | None = None) -> np.ndarray:
    """The flat ``uint8`` array a brush RLE encodes (all channels).

    Args:
        data: the RLE's bytes.
        expected: the value count it must hold (``H * W * 4``); checked against the header
            before the output is allocated (:class:`SansaError` if it differs).
    """
    if data.ndim != 1:
        raise SansaError("rle: expected a flat list of byte values")
    reader = _BitReader(np.unpackbits(np.asarray(data, dtype=np.uint8)))
    count = reader.read(32)
    if expected is not None and count != expected:
        raise SansaError(f"rle: holds {count} values, not the image's H x W x 4 = {expected}")
    word = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        repeat = reader.read(1)
        j = min(count, i + 1 + reader.read(sizes[reader.read(2)]))
        if repeat:
            out[i:j] = reader.read(word)
        else:
            out[i:j] = [reader.read(word) for _ in range(j - i)]
        i = j
    return out


class _BitReader:
    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits
        self.position = 0

    def read(self, size: int) -> int:
        end = self.position + size
        if end > len(self.bits):
            raise SansaError("rle: ends before all values are read (truncated or not a brush RLE)")
        value = 0
        for bit in self.bits[self.position : end].tolist():
            value = (value << 1) | bit
        self.position = end
        return value


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths and values of the runs of equal values of a 1-D array."""
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=flat.dtype)
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    lengths = np.diff(np.append(starts, flat.size))
    return lengths.astype(np.int64), flat[starts]


def _split_long_runs(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of at most :data:`MAX_RUN` values (the longest a 16-bit length field holds)."""
    pieces = -(-lengths // MAX_RUN)
    values = np.repeat(values, pieces)
    split = np.full(int(pieces.sum()), MAX_RUN, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    split[last] = lengths - (pieces - 1) * MAX_RUN
    return split, values


def _header_bits(count: int) -> np.ndarray:
    fields = [(size, count if value is None else value) for size, value in _HEADER_FIELDS]
    return np.concatenate([_bits_of(np.array([value]), np.array([size])) for size, value in fields])


def _run_bits(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each run as ``1`` (repeat), the field index, length - 1 and the value."""
    field = np.searchsorted(np.array([1 << b for b in RUN_FIELD_BITS]), lengths)  # smallest field that fits
    field_bits = np.array(RUN_FIELD_BITS)[field]
    widths = 1 + 2 + field_bits + WORD_BITS
    codes = (1 << (widths - 1)) | (field << (field_bits + WORD_BITS)) | ((lengths - 1) << WORD_BITS) | values
    return _bits_of(codes, widths)


def _bits_of(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The low ``widths[i]`` bits of each ``codes[i]``, most significant first, concatenated."""
    codes = np.asarray(codes, dtype=np.int64)
    widest = int(np.max(widths)) if len(codes) else 0
    shifts = np.arange(widest - 1, -1, -1)
    bits = (codes[:, None] >> shifts[None, :]) & 1
    keep = shifts[None, :] < np.asarray(widths)[:, None]
    return bits[keep].astype(np.uint8)
