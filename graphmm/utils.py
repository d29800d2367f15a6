"""Run plumbing: seeding, devices, atomic writes and safe checkpoint loading."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

DGL_CUDA_HINT = (
    "DGL from PyPI (dgl==2.1.0) is a CPU-only build. For trainer.device=cuda install DGL's CUDA "
    "build matching torch 2.2.1, e.g. `pip install dgl==2.1.0 -f "
    "https://data.dgl.ai/wheels/torch-2.2/cu121/repo.html`, or run with trainer.device=cpu."
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch (all devices) and DGL."""
    import dgl

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    dgl.seed(seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` to a usable device.

    ``cuda`` fails with a clear message when torch sees no GPU or when the installed
    DGL cannot place graphs on it; ``auto`` then falls back to the CPU.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("cuda", "auto"):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or auto")
    problem = None
    if not torch.cuda.is_available():
        problem = "torch sees no CUDA device"
    else:
        import dgl

        try:
            dgl.graph(([0], [0])).to("cuda")
        except Exception as err:  # DGL raises DGLError from its C library
            problem = f"DGL cannot use CUDA ({str(err).splitlines()[0]}). {DGL_CUDA_HINT}"
    if problem is None:
        return torch.device("cuda")
    if name == "auto":
        return torch.device("cpu")
    raise RuntimeError(f"trainer.device=cuda is not usable: {problem}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one,
    never a torn one: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a dict of tensors and plain Python values."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only,
    so a file carrying a pickled code payload is refused instead of run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"cannot load checkpoint {str(path)!r} safely: {err}") from err
