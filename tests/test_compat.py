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


# ---------------------------------------------------------------- deferred DGL packages
def _run(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned here."""
    full = {k: v for k, v in os.environ.items() if k != "GRAPHMM_EAGER_DGL"}
    full.update({"DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1", **env})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_STATE = """
import json, sys, types
import graphmm, dgl
state = {"graphbolt_loaded": "dgl.graphbolt" in sys.modules, "pandas": "pandas" in sys.modules,
         "torchdata": "torchdata" in sys.modules, "data": type(dgl.data).__name__,
         "gb": type(dgl.graphbolt).__name__, "finders": [type(f).__name__ for f in sys.meta_path]}
"""


def test_import_graphmm_leaves_graphbolt_and_the_dgl_datasets_for_later():
    got = _run(_STATE + "print(json.dumps(state))")
    assert got["graphbolt_loaded"] is False and got["pandas"] is False and got["torchdata"] is False, got
    assert got["data"] == "DeferredInitModule" and got["gb"] == "DeferredModule"
    assert "_DeferringFinder" not in got["finders"]  # only there during `import dgl`


def test_nothing_is_deferred_when_asked_or_when_dgl_came_first():
    eager = _run(_STATE + "print(json.dumps(state))", GRAPHMM_EAGER_DGL="1")
    assert eager["graphbolt_loaded"] and eager["data"] == "module" and eager["gb"] == "module", eager
    first = _run("import dgl\n" + _STATE + "print(json.dumps(state))")
    assert first["graphbolt_loaded"] and first["data"] == "module" and first["gb"] == "module", first


def test_deferred_packages_load_on_first_use_as_one_module():
    code = _STATE + """
import dgl.distributed.dist_graph as dg
stand_in = dg.gb
cls = stand_in.FusedCSCSamplingGraph           # first use, through DGL's own reference
import dgl.graphbolt as gb                      # the import statement: the real package
from dgl.graphbolt import FusedCSCSamplingGraph
ds = dgl.data.MiniGCDataset                     # a dataset class: dgl.data's __init__ runs
from dgl.data import CoraGraphDataset
import dgl.data.citation_graph as cg
print(json.dumps({
    "real": sys.modules["dgl.graphbolt"] is gb and dgl.graphbolt is gb and type(gb) is types.ModuleType,
    "same_class": cls is FusedCSCSamplingGraph is gb.FusedCSCSamplingGraph,
    "forwards": stand_in.__file__ == gb.__file__ and set(dir(stand_in)) == set(dir(gb)),
    "data": type(dgl.data).__name__, "same_dataset": CoraGraphDataset is cg.CoraGraphDataset,
    "dataset_module": ds.__module__,
}))
"""
    got = _run(code)
    assert got == {"real": True, "same_class": True, "forwards": True, "data": "module", "same_dataset": True,
                   "dataset_module": "dgl.data.minigc"}, got


def test_a_graphbolt_submodule_imported_first_is_not_loaded_twice():
    code = """
import json, sys
import graphmm, dgl
import dgl.graphbolt.impl as impl_first       # before anything touched dgl.graphbolt
import dgl.graphbolt as gb
print(json.dumps({"one": gb.impl is impl_first is sys.modules["dgl.graphbolt.impl"],
                  "stand_in_agrees": dgl.distributed.dist_graph.gb.impl is impl_first}))
"""
    assert _run(code) == {"one": True, "stand_in_agrees": True}


def test_dgl_looks_the_same_deferred_or_not():
    code = """
import json
import graphmm, dgl
names = lambda m: sorted(n for n in dir(m) if not n.startswith("_"))
print(json.dumps({"dgl": names(dgl), "data": names(dgl.data), "graphbolt": names(dgl.graphbolt),
                  "distributed": names(dgl.distributed), "dataloading": names(dgl.dataloading)}))
"""
    deferred, eager = _run(code), _run(code, GRAPHMM_EAGER_DGL="1")
    assert deferred == eager
