"""Import-time check that DGL's compiled libraries fit the installed torch.

Each DGL build ships its C++ libraries (``dgl_sparse``, ``graphbolt``) once per torch
release it was built against, named after that release
(``dgl_sparse/libdgl_sparse_pytorch_2.2.1.so``), and ``import dgl`` loads the one named
after ``torch.__version__``. Any other torch fails deep inside DGL with
``FileNotFoundError: Cannot find DGL C++ graphbolt library at ...``, which says neither
which torch versions would work nor how to get a matching pair. :func:`import_dgl`
replaces that with an :class:`ImportError` that does.

``graphmm/__init__.py`` calls :func:`import_dgl` before anything else: nearly every
graphmm module needs DGL, so the package checks once, up front, rather than leaving the
first model or graph import to fail with DGL's own message.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Optional, Sequence

# DGL's own wheel index: one page per torch minor (and CUDA flavour) with the DGL builds
# for it; PyPI carries only DGL 2.1.0, built for torch 2.0.0-2.2.1.
DGL_WHEEL_INDEX = "https://data.dgl.ai/wheels/torch-{minor}/{cuda}repo.html"
DGL_INSTALL_PAGE = "https://www.dgl.ai/pages/start.html"

# The libraries `import dgl` loads per torch version (dgl/sparse/__init__.py and
# dgl/graphbolt/__init__.py); a torch version is supported only if both are there.
_LIB_DIRS = {"dgl_sparse": "dgl_sparse_pytorch", "graphbolt": "graphbolt_pytorch"}

# Import names that differ from the pip name, among the modules DGL imports without
# declaring them in its wheel (pandas, yaml, torchdata).
_PIP_NAMES = {"yaml": "pyyaml"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def dgl_torch_builds(dgl_dir: str | os.PathLike) -> list[str]:
    """The torch versions a DGL installation ships compiled libraries for.

    Args:
        dgl_dir: The ``dgl`` package directory (the one holding ``libdgl.so``).

    Returns:
        Versions such as ``["2.0.0", ..., "2.2.1"]``, oldest first, that have both a
        ``dgl_sparse`` and a ``graphbolt`` library; empty if there are none (a broken
        or non-wheel install).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ["dgl_sparse/libdgl_sparse_pytorch_2.2.1.so",
        ...                  "graphbolt/libgraphbolt_pytorch_2.2.1.so",
        ...                  "dgl_sparse/libdgl_sparse_pytorch_2.1.0.so"]:  # no graphbolt: unusable
        ...         (Path(tmp) / name).parent.mkdir(exist_ok=True)
        ...         (Path(tmp) / name).touch()
        ...     print(dgl_torch_builds(tmp))
        ['2.2.1']
    """
    found: Optional[set[str]] = None
    for sub, stem in _LIB_DIRS.items():
        # Linux libfoo_2.2.1.so, macOS libfoo_2.2.1.dylib, Windows foo_2.2.1.dll
        pattern = re.compile(rf"^(?:lib)?{stem}_(\d+\.\d+\.\d+)\.(?:so|dylib|dll)$")
        folder = Path(dgl_dir) / sub
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        versions = {m.group(1) for m in map(pattern.match, names) if m}
        found = versions if found is None else found & versions
    return sorted(found or (), key=_version_key)


def _declared(package: str) -> str:
    """``package`` with the version range graphmm's metadata declares (pyproject.toml)."""
    try:
        requires = importlib.metadata.requires("graphmm") or []
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return package
    for req in requires:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        if name.lower() == package and "extra ==" not in req:
            return req.split(";")[0].replace(" ", "")
    return package


def dgl_import_message(
    error: BaseException,
    torch_version: str,
    dgl_version: str,
    builds: Sequence[str],
    dgl_dir: str | os.PathLike | None = None,
) -> str:
    """What went wrong importing DGL, and the install commands that fix it.

    Args:
        error: What ``import dgl`` raised.
        torch_version: ``torch.__version__`` (a local tag such as ``+cu121`` is kept for
            the CUDA flavour of the wheel index).
        dgl_version: The installed DGL's version.
        builds: :func:`dgl_torch_builds` of that DGL.
        dgl_dir: Where that DGL is installed, for the message. Default: ``None``.

    Returns:
        A multi-line message for an :class:`ImportError`.
    """
    base, _, local = torch_version.partition("+")
    minor = ".".join(base.split(".")[:2])
    cuda = f"{local}/" if local.startswith("cu") else ""
    where = f" (at {dgl_dir})" if dgl_dir else ""
    head = (
        f"graphmm could not import DGL {dgl_version}{where}: {type(error).__name__}: {error}\n"
        f"graphmm works with {_declared('torch')} and {_declared('dgl')}."
    )
    pair = (
        f"  - keep torch {torch_version} and install the DGL built for it from DGL's wheel index:\n"
        f"      pip install '{_declared('dgl')}' -f {DGL_WHEEL_INDEX.format(minor=minor, cuda=cuda)}\n"
        f"    (other CUDA builds and conda: {DGL_INSTALL_PAGE})"
    )
    if not builds:
        return (
            f"{head}\nThis DGL has no compiled libraries for any torch version{where}; the install "
            f"is incomplete or not a DGL wheel. Reinstall it:\n"
            f"  - pip install --force-reinstall 'dgl==2.1.0' 'torch==2.2.1' (the PyPI pair), or\n{pair}"
        )
    listed = ", ".join(builds)
    if base in builds:
        # The file for this torch is there, so loading it failed for another reason,
        # typically a CUDA build of DGL without its CUDA runtime, or a torch of another ABI.
        return (
            f"{head}\nThis DGL ships libraries for torch {listed}, including torch {base}, so this is "
            f"not a version mismatch: a library was found but did not load (a CUDA build of DGL "
            f"needs the CUDA runtime its torch uses). Reinstall a matching pair:\n"
            f"  - from a graphmm checkout, the tested set: pip install -c constraints.txt -e .\n{pair}"
        )
    return (
        f"{head}\nDGL loads a compiled library built for one torch release. Installed: torch "
        f"{torch_version}; DGL {dgl_version} ships libraries for torch {listed} only. Either:\n"
        f"  - install a torch this DGL was built for, with the torchvision/torchaudio of that "
        f"release: pip install 'torch=={builds[-1]}'\n"
        f"    (from a graphmm checkout, the tested set: pip install -c constraints.txt -e .), or\n{pair}"
    )


def import_dgl() -> None:
    """Import DGL, turning a failure into an :class:`ImportError` that says how to fix it.

    Raises:
        ImportError: DGL is missing, a module it needs is missing, or its compiled
            libraries do not fit the installed torch. The original error is chained.
    """
    import torch  # a broken torch is not DGL's problem: let its own error through

    try:
        import dgl  # noqa: F401
    except ModuleNotFoundError as err:
        if importlib.util.find_spec("dgl") is None:
            raise ImportError(
                f"graphmm needs DGL ({_declared('dgl')}): pip install 'dgl==2.1.0' 'torch==2.2.1' "
                f"(the PyPI pair), or from a graphmm checkout pip install -c constraints.txt -e ."
            ) from err
        module = (err.name or "").split(".")[0]
        if module and module != "dgl" and importlib.util.find_spec(module) is None:
            hint = f"pip install '{_declared(_PIP_NAMES.get(module, module))}'"
            raise ImportError(f"DGL imports {module!r}, which is not installed: {hint}") from err
        # a submodule missing from an installed package (torch.xyz): versions that do not fit
        _raise_mismatch(err, torch.__version__)
    except (ImportError, OSError, RuntimeError) as err:
        # DGL raises FileNotFoundError (an OSError) for a missing per-torch library,
        # ImportError when one does not load, OSError from ctypes for libdgl.so itself, and
        # RuntimeError when libdgl.so is not found at all.
        _raise_mismatch(err, torch.__version__)


def _raise_mismatch(err: BaseException, torch_version: str) -> None:
    """Raise the :func:`dgl_import_message` ImportError for the installed DGL, chained to ``err``."""
    spec = importlib.util.find_spec("dgl")
    dgl_dir = Path(spec.origin).parent if spec and spec.origin else None
    try:
        dgl_version = importlib.metadata.version("dgl")
    except importlib.metadata.PackageNotFoundError:
        dgl_version = "(version unknown)"
    builds = dgl_torch_builds(dgl_dir) if dgl_dir else []
    raise ImportError(dgl_import_message(err, torch_version, dgl_version, builds, dgl_dir)) from err
