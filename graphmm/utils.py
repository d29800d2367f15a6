"""Run plumbing: seeding, devices, atomic writes and safe checkpoint loading."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

def dgl_cuda_hint() -> str:
    """What to install for ``trainer.device=cuda``: DGL's CUDA build for the installed
    DGL, torch and CUDA versions (the PyPI wheel of DGL is CPU-only).

    Example:
        >>> "data.dgl.ai/wheels/torch-" in dgl_cuda_hint()
        True
    """
    import dgl

    dgl_version = dgl.__version__.split("+")[0]
    torch_version = torch.__version__.split("+")[0]
    cuda = (torch.version.cuda or "12.1").replace(".", "")
    major_minor = ".".join(torch_version.split(".")[:2])
    return (
        f"the installed DGL ({dgl.__version__}) has no CUDA support (DGL on PyPI is a CPU-only build). For "
        f"trainer.device=cuda install DGL's CUDA build for torch {torch_version}, e.g. `pip install "
        f"dgl=={dgl_version} -f https://data.dgl.ai/wheels/torch-{major_minor}/cu{cuda}/repo.html`, "
        "or run with trainer.device=cpu."
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
            problem = f"DGL cannot use CUDA ({str(err).splitlines()[0]}): {dgl_cuda_hint()}"
    if problem is None:
        return torch.device("cuda")
    if name == "auto":
        return torch.device("cpu")
    raise RuntimeError(f"trainer.device=cuda is not usable: {problem}")


#: How :func:`atomic_write_bytes` names its temporary files (``.<name>.<random>.tmp``);
#: :func:`remove_orphaned_temp_files` deletes the ones a killed write left behind.
TEMP_GLOB = ".*.tmp"


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new, exclusively created temporary file next to ``path``.

    Created with mode ``0o666`` so that the kernel applies the process umask, as a
    plain ``open(path, "w")`` does (``tempfile.mkstemp`` would force ``0o600``, and
    the rename would carry that mode to the final file).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {str(path)!r}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one,
    never a torn one: a temporary file in the same folder, fsync, then rename. The
    file's mode follows the umask (``0o644`` under the usual ``022``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
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


def remove_orphaned_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write_bytes` that a killed process
    left in ``folder`` (not in its subfolders); returns the removed paths.

    Call it only where no other process is writing at the same time (a run's own
    folders at its start), never on a folder shared by concurrent jobs such as a
    feature cache.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.glob(TEMP_GLOB)):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


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
    so a file carrying a pickled code payload is refused instead of run.

    Every failure is one line naming the file: ``FileNotFoundError`` when it is
    missing, ``RuntimeError`` when it is empty, truncated or corrupt, or holds objects
    other than tensors and plain containers. None of them suggests
    ``weights_only=False``, which would run whatever code the file carries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise RuntimeError(f"{path}: the checkpoint file is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as err:
        raise RuntimeError(f"{path}: cannot read the checkpoint file: {err.strerror}") from None
    except pickle.UnpicklingError as err:
        # torch's text advises weights_only=False; keep only its reason (e.g. the class it refused)
        text = str(err)
        reason = _first_line(text.split(_UNPICKLER, 1)[1] if _UNPICKLER in text else text) or type(err).__name__
        raise RuntimeError(
            f"cannot load checkpoint {str(path)!r} safely: it holds something other than tensors and plain "
            f"containers, or is corrupt ({reason})"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        # what torch's zip reader raises on a cut or damaged file, e.g. "PytorchStreamReader
        # failed reading zip archive: failed finding central directory", EOFError, EINVAL
        reason = _first_line(str(err))
        if isinstance(err, RuntimeError) and not _ZIP_ERROR.search(str(err)):
            # not the file's bytes (e.g. a CUDA tensor loaded without CUDA): say what torch said
            raise RuntimeError(f"cannot load checkpoint {str(path)!r}: {reason}") from None
        if not isinstance(err, RuntimeError):
            reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
        raise RuntimeError(f"{path}: the checkpoint file is truncated or corrupt ({size} bytes): {reason}") from None


_UNPICKLER = "WeightsUnpickler error:"
# torch's zip reader (caffe2's inline_container) on a damaged archive
_ZIP_ERROR = re.compile(r"PytorchStreamReader|inline_container|zip archive|archive is corrupted")


def _first_line(text: str) -> str:
    # torch's advice to pass weights_only=False is never passed on: it would run the file's code
    line = text.strip().splitlines()[0] if text.strip() else ""
    return "" if "weights_only" in line else line


def library_default(target: str, name: str) -> Any:
    """The default of parameter ``name`` of ``target`` (a dotted path, as ``_target_``;
    ``Class.method`` for a method): the one place a model default is written.

    The config schemas (:mod:`graphmm.config`, the modality plug-ins' ``graph.<name>``
    schemas) take their defaults from the library's signatures, so a library user who
    builds ``GraphClassifier(...)`` or ``ImageGraphBuilder(...)`` gets what ``python -m
    graphmm.train`` builds; ``tests/test_defaults.py`` checks the other constructors.

    Example:
        >>> library_default("graphmm.graphs.ImageGraphBuilder", "patch_size")
        4
    """
    import inspect

    from hydra.utils import get_object

    param = inspect.signature(get_object(target)).parameters[name]
    if param.default is inspect.Parameter.empty:
        raise TypeError(f"{target}() has no default for {name!r}, so a schema cannot take it from there")
    return param.default
