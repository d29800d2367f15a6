"""The import-time DGL/torch check (graphmm/_compat.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dgl
import torch

from graphmm._compat import DGL_WHEEL_INDEX, dgl_import_message, dgl_torch_builds

DGL_DIR = Path(dgl.__file__).parent


def _fake_dgl(root: Path, sparse: list[str], graphbolt: list[str]) -> Path:
    for sub, names in (("dgl_sparse", sparse), ("graphbolt", graphbolt)):
        (root / sub).mkdir()
        for name in names:
            (root / sub / name).touch()
    return root


def test_builds_need_both_libraries_and_sort_numerically(tmp_path):
    root = _fake_dgl(
        tmp_path,
        sparse=["libdgl_sparse_pytorch_2.1.0.so", "libdgl_sparse_pytorch_2.2.1.so", "libdgl_sparse_pytorch_2.10.0.so"],
        graphbolt=["libgraphbolt_pytorch_2.2.1.so", "libgraphbolt_pytorch_2.10.0.so", "README", "libgraphbolt.so"],
    )
    # 2.1.0 lacks graphbolt; 2.10.0 sorts after 2.2.1 (not as a string)
    assert dgl_torch_builds(root) == ["2.2.1", "2.10.0"]
    assert dgl_torch_builds(tmp_path / "missing") == []


def test_builds_of_the_installed_dgl_include_the_installed_torch():
    assert torch.__version__.split("+")[0] in dgl_torch_builds(DGL_DIR)


def test_message_for_a_version_mismatch():
    err = FileNotFoundError("Cannot find DGL C++ graphbolt library at /x/libgraphbolt_pytorch_2.3.1.so")
    msg = dgl_import_message(err, "2.3.1+cu121", "2.1.0", ["2.1.0", "2.2.0", "2.2.1"], "/x")
    assert "FileNotFoundError: Cannot find DGL C++ graphbolt library" in msg
    assert "torch 2.3.1+cu121" in msg and "ships libraries for torch 2.1.0, 2.2.0, 2.2.1 only" in msg
    assert "pip install 'torch==2.2.1'" in msg  # the newest torch this DGL fits
    assert "pip install -c constraints.txt -e ." in msg
    assert DGL_WHEEL_INDEX.format(minor="2.3", cuda="cu121/") in msg  # keeps the CUDA flavour
    cpu = dgl_import_message(err, "2.4.0", "2.1.0", ["2.2.1"])
    assert DGL_WHEEL_INDEX.format(minor="2.4", cuda="") in cpu


def test_message_when_the_library_exists_but_does_not_load():
    err = ImportError("Cannot load DGL C++ sparse library")
    msg = dgl_import_message(err, "2.2.1+cu121", "2.1.0", ["2.2.0", "2.2.1"])
    assert "including torch 2.2.1" in msg and "not a version mismatch" in msg
    assert "pip install 'torch==" not in msg


def test_message_when_no_library_is_shipped():
    msg = dgl_import_message(RuntimeError("Cannot find the files."), "2.2.1", "2.1.0", [], "/x")
    assert "no compiled libraries" in msg and "/x" in msg and "--force-reinstall" in msg


def _import_graphmm_with(patch: str) -> dict:
    """Run ``patch`` then ``import graphmm`` in a fresh interpreter; report what it raised."""
    code = f"""
import json, sys
import torch
{patch}
try:
    import graphmm
except ImportError as e:
    print(json.dumps({{"type": type(e).__name__, "msg": str(e), "cause": type(e.__cause__).__name__}}))
else:
    print(json.dumps({{"type": None}}))
"""
    env = {**os.environ, "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_with_a_torch_this_dgl_was_not_built_for():
    # DGL picks its library by torch.__version__, so a patched version takes the real failing path.
    got = _import_graphmm_with("torch.__version__ = '2.3.1'")
    assert got["type"] == "ImportError" and got["cause"] == "FileNotFoundError", got
    builds = dgl_torch_builds(DGL_DIR)
    assert f"ships libraries for torch {', '.join(builds)} only" in got["msg"]
    assert f"pip install 'torch=={builds[-1]}'" in got["msg"]
    assert DGL_WHEEL_INDEX.format(minor="2.3", cuda="") in got["msg"]


def test_import_with_a_module_dgl_needs_missing():
    # dgl.graphbolt imports torchdata, which DGL's wheel does not always bring along
    got = _import_graphmm_with("sys.modules['torchdata'] = None")
    assert got["type"] == "ImportError" and got["cause"] == "ModuleNotFoundError", got
    assert "DGL imports 'torchdata', which is not installed: pip install 'torchdata" in got["msg"]


def test_import_without_dgl():
    got = _import_graphmm_with("sys.modules['dgl'] = None")
    assert got["type"] == "ImportError" and got["cause"] == "ModuleNotFoundError", got
    assert got["msg"].startswith("graphmm needs DGL (dgl") and "constraints.txt" in got["msg"]
