"""The installed package's version (``0.0.0+source`` when run from a source tree without install).

Kept in its own module so that lower layers (exports, the labelling run) can stamp files with it
without importing the package root.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sansa-segment")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
