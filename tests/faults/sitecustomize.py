"""Fault injection for subprocess tests: loaded only when a test puts this folder on PYTHONPATH.

``SANSA_FAULT`` (JSON) names one fault at the write layer, :mod:`sansa.atomic`'s final rename of a
file whose path matches ``match`` (``fnmatch``):

* ``{"action": "kill", "match": "*/run.json", "nth": 1, "when": "before"}``: SIGKILL the process
  before (or ``"after"``) the ``nth`` matching file is moved into place.
* ``{"action": "enospc", "after": 5}``: the disk is full from the 6th file on: every later write
  fails with ``ENOSPC`` (as ``write()`` reports it), as a full disk does until space is freed.
* ``{"action": "pause", "match": "*/.sansa/parts/*", "dir": "/tmp/x"}``: at the first match,
  create ``dir/paused`` and wait until ``dir/go`` exists (to start a second run meanwhile); no
  other file is moved into place meanwhile (renames take turns under one lock).

Nothing here is imported by sansa itself; without ``SANSA_FAULT`` this file does nothing.
"""

import errno
import fnmatch
import json
import os
import signal
import threading
import time
import types

_SPEC = os.environ.get("SANSA_FAULT")

if _SPEC:
    import sansa.atomic as _atomic

    _fault = json.loads(_SPEC)
    _state = {"matches": 0, "files": 0}
    _real_replace = os.replace
    _turns = threading.Lock()

    def _replace(src, dst):
        with _turns:
            return _faulty_replace(src, dst)

    def _faulty_replace(src, dst):
        _state["files"] += 1
        action = _fault["action"]
        if action == "enospc":
            if _state["files"] > _fault["after"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _real_replace(src, dst)
        if not fnmatch.fnmatch(str(dst), _fault["match"]):
            return _real_replace(src, dst)
        _state["matches"] += 1
        if _state["matches"] != _fault.get("nth", 1):
            return _real_replace(src, dst)
        if action == "pause":
            folder = _fault["dir"]
            open(os.path.join(folder, "paused"), "w").close()
            while not os.path.exists(os.path.join(folder, "go")):
                time.sleep(0.05)
            return _real_replace(src, dst)
        if _fault.get("when") == "after":
            _real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)

    class _Os(types.ModuleType):
        """``os`` as sansa.atomic sees it, with ``replace`` faulty."""

        def __getattr__(self, name):
            return getattr(os, name)

    _proxy = _Os("os")
    _proxy.replace = _replace
    _atomic.os = _proxy
