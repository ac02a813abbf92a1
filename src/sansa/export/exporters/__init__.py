"""The built-in output formats, one module each; the module's name is the format's name.

Each module defines ``EXPORTER``, an :class:`sansa.export.exporter.Exporter` subclass. A new
format is a new module here (see :mod:`sansa.export.exporter`).
"""
