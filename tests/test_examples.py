"""The code examples people copy: the README's Python blocks run, docstring examples hold.

The README's blocks run in order in one namespace, in a folder holding the images they name,
with the released model swapped for the tiny random one (each swap is checked to still match the
README's text, so an edited example cannot silently escape). Docstrings' ``>>>`` examples run as
doctests; their ``::`` code blocks must name real things (``Job.from_dict`` exists,
``ReferenceEntry.create`` does not).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_codebase import MODULES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# README text -> what the test runs instead (no download, no GPU)
TINY = 'SansaPredictor.from_checkpoint(None, model="test_tiny", device="cpu")'
STAND_INS = {
    'SansaPredictor.from_pretrained("sansa-universal")': TINY,
    'ModelSpec(model="sansa-universal")': 'ModelSpec(backbone="test_tiny", random_weights=True, device="cpu")',
}


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def _images(folder: Path) -> None:
    """The files the README's examples name: 320 x 320 photos with a bright square (the object)."""
    rng = np.random.default_rng(0)
    picture = (rng.random((320, 320, 3)) * 80).astype(np.uint8)
    picture[60:280, 40:300] = 220
    for name in ("ref.jpg", "ref2.jpg", "ref3.jpg", "target.jpg", "photos/a.jpg", "photos/b.jpg"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(folder / name)
    mask = np.zeros((320, 320), np.uint8)
    mask[60:280, 40:300] = 255
    Image.fromarray(mask).save(folder / "ref3_cat.png")


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    text = "\n".join(blocks)
    for original in STAND_INS:
        assert original in text, f"README no longer says {original}: update STAND_INS"
    _images(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # examples that name the checkout's files
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        for original, stand_in in STAND_INS.items():
            block = block.replace(original, stand_in)
        if "FolderWriter(" in block:  # "write segmentations yourself" starts from a predictor with references
            exec('predictor.add_reference("ref.jpg", box=[40, 60, 300, 280], label="dog")', namespace)
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "labels" / "annotations.json").is_file()  # the Job example ran
    assert (tmp_path / "out" / "classes.json").is_file()  # the FolderWriter example ran


def _modules_with_doctests() -> list[str]:
    return sorted(m for m, path in MODULES.items() if ">>> " in path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("module", _modules_with_doctests())
def test_docstring_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _code_blocks(module: str) -> list[str]:
    """The ``::`` blocks of a module's docstrings that are Python code (layouts and diagrams are not)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    blocks = []
    for node in [tree, *ast.walk(tree)]:
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        docstring = ast.get_docstring(node) or ""
        for match in re.finditer(r"::\n\n((?:[ \t]+.*\n?|\n)+)", docstring + "\n"):
            code = textwrap.dedent(match.group(1))
            try:
                parsed = ast.parse(code)
            except SyntaxError:
                continue
            if any(isinstance(n, ast.Call) for n in ast.walk(parsed)):
                blocks.append(code)
    return blocks


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; ``None`` for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _missing_names(module: str, code: str) -> list[str]:
    """``Name.attr`` chains in ``code`` whose name is the module's or imported by ``code``, and
    whose attribute does not exist (variables the example makes itself are not checked)."""
    known = dict(vars(importlib.import_module(module)))
    parsed = ast.parse(code)
    for node in ast.walk(parsed):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported = importlib.import_module(node.module)
            known.update({a.asname or a.name: getattr(imported, a.name, None) for a in node.names})
        elif isinstance(node, ast.Import):
            known.update({a.asname or a.name.split(".")[0]: importlib.import_module(a.name) for a in node.names})
    assigned = {n.id for n in ast.walk(parsed) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    missing = []
    for node in ast.walk(parsed):
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        if not chain or chain[0] in assigned or chain[0] not in known:
            continue
        value = known[chain[0]]
        for depth, attribute in enumerate(chain[1:], start=1):
            if not hasattr(value, attribute):
                missing.append(".".join(chain[: depth + 1]))
                break
            value = getattr(value, attribute)
            if not isinstance(value, type) and not hasattr(value, "__path__") and not callable(value):
                break  # an instance: its attributes are the example's business
    return missing


def _modules_with_code_blocks() -> list[str]:
    return sorted(m for m in MODULES if not m.endswith("__main__") and _code_blocks(m))


@pytest.mark.parametrize("module", _modules_with_code_blocks())
def test_docstring_code_blocks_name_real_things(module):
    missing = [name for code in _code_blocks(module) for name in _missing_names(module, code)]
    assert missing == []


def test_a_made_up_name_in_an_example_is_caught():
    """The check above catches the defect it was written for (a call to a method that does not exist)."""
    code = 'from sansa.labeling import ReferenceEntry\nReferenceEntry.create("ref.jpg", "dog")\n'
    assert _missing_names("sansa.labeling.job", code) == ["ReferenceEntry.create"]
    assert _missing_names("sansa.labeling.job", code.replace("create", "from_dict")) == []
