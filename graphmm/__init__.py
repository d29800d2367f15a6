"""graphmm: graph-centric multimodal learning on DGL heterographs."""

import os as _os

# DGL picks its backend from this variable; set it before the first `import dgl`
# so that importing graphmm never prints DGL's backend notice.
_os.environ.setdefault("DGLBACKEND", "pytorch")

# Import DGL now, so a torch that this DGL has no compiled library for fails here with
# the matching versions and install commands instead of DGL's "Cannot find DGL C++ ...".
from graphmm._compat import import_dgl as _import_dgl  # noqa: E402

_import_dgl()



def _version() -> str:
    """The version, written once: in ``pyproject.toml``, read from the installed
    package's metadata, else (a source tree on ``sys.path`` that pip never installed)
    from the ``pyproject.toml`` next to the package, else ``0+unknown``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graphmm")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def __getattr__(name: str) -> str:
    # `graphmm.__version__` is read from the package metadata on first use, not at import:
    # finding the metadata scans every installed distribution (about 0.06 s)
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
