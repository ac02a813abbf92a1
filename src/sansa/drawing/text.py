"""Text on pictures (the overlay legend) in any script: class names as users wrote them.

Fonts, first that has a character's glyph wins:

1. DejaVu Sans, shipped by matplotlib (a dependency): Latin with accents, Greek, Cyrillic,
   Arabic, Hebrew, Armenian, Georgian, many symbols.
2. A CJK font of the system, where one is installed (Noto Sans CJK, Source Han, WenQuanYi,
   Droid Sans Fallback, ...): no dependency ships one.
3. matplotlib's *Last Resort* font: a box naming the character's Unicode block, never a ``?``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from PIL import ImageDraw, ImageFont

_CJK_FILE_HINTS = ("cjk", "wqy", "droidsansfallback", "sourcehan", "unifont", "ipag", "takao", "nanum", "ukai")


def _matplotlib_font(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """The fallback chain's font files (those that exist), in order."""
    system: list[Path] = []
    try:
        from matplotlib import font_manager

        system = sorted(
            Path(f)
            for f in font_manager.findSystemFonts()
            if any(hint in os.path.basename(f).lower().replace("-", "").replace("_", "") for hint in _CJK_FILE_HINTS)
        )
    except (ImportError, OSError):
        system = []
    chain = [_matplotlib_font("DejaVuSans.ttf"), *system, _matplotlib_font("LastResortHE-Regular.ttf")]
    return tuple(path for path in chain if path.is_file())


@lru_cache(maxsize=4096)
def font_index(char: str) -> int:
    """The index in :func:`font_files` of the first font that has ``char`` (the last font if none)."""
    files = font_files()
    for index, path in enumerate(files):
        if _face(path).get_char_index(ord(char)):
            return index
    return len(files) - 1


@lru_cache(maxsize=16)
def _face(path: Path):
    from matplotlib.ft2font import FT2Font

    return FT2Font(str(path))


@lru_cache(maxsize=64)
def _font(index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_files()[index]), size)


def runs(text: str) -> list[tuple[int, str]]:
    """``text`` cut into runs drawn with one font each: ``[(font index, characters), ...]``."""
    out: list[tuple[int, str]] = []
    for char in text:
        index = font_index(char)
        if out and out[-1][0] == index:
            out[-1] = (index, out[-1][1] + char)
        else:
            out.append((index, char))
    return out


def text_width(text: str, size: int) -> int:
    """Width in pixels of ``text`` drawn at ``size`` pixels."""
    return round(sum(_font(index, size).getlength(chars) for index, chars in runs(text)))


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill: tuple[int, int, int]) -> None:
    """Draw ``text`` with its top-left corner at ``xy`` (pixels), each character in the first font
    of :func:`font_files` that has it."""
    x, y = xy
    for index, chars in runs(text):
        font = _font(index, size)
        draw.text((x, y), chars, font=font, fill=fill)
        x += round(font.getlength(chars))
