"""Shape of the package: short functions, and no core module that imports the CLIP plug-in."""

from __future__ import annotations

import ast
from pathlib import Path

import graphmm

PACKAGE = Path(graphmm.__file__).parent
#: The longest a function may be, docstring included: one screen to read at once.
MAX_FUNCTION_LINES = 80


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def test_no_function_is_longer_than_a_screen():
    long = [f"{rel}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for rel, tree in _modules() for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_core_modules_never_import_the_clip_plugin():
    offenders = []
    for rel, tree in _modules():
        if rel.startswith("clip/"):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "open_clip" or n.startswith(("graphmm.clip", "open_clip.")) for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
