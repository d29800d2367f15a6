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

**What is left for later.** ``import dgl`` executes two packages that graphmm never
uses and that cost more than half of it: ``dgl.graphbolt`` (sampling and on-disk
datasets; imported by ``dgl.distributed``, which ``dgl.dataloading`` imports; it brings
torchdata, pydantic and PyYAML) and the ``__init__`` of ``dgl.data`` (every dataset class,
with pandas and ``scipy.spatial``; DGL itself needs only ``dgl.data.utils``). On these
machines that is 0.43 of the 0.72 s ``import graphmm`` takes after ``import torch``. When
graphmm is the first to import DGL, :func:`import_dgl` leaves both for their first use,
and only the moment they run changes:

* ``dgl.graphbolt``: DGL's modules that refer to it (``from .. import graphbolt as gb``,
  used only inside functions) get a :class:`DeferredModule`, which imports the real
  package through the ordinary import system at its first attribute access and answers
  every access from it. ``sys.modules`` never holds the stand-in: ``import dgl.graphbolt``
  or ``from dgl.graphbolt import ...`` load the real package as always, and put it on
  ``dgl.graphbolt``.
* ``dgl.data`` is imported as a :class:`DeferredInitModule`: a package with its
  ``__path__``, so its submodules (``dgl.data.utils``) import as usual, whose
  ``__init__.py`` runs at the first access of an attribute it does not have yet
  (``dgl.data.CoraGraphDataset``, ``from dgl.data import ...``, ``dir``), after which
  it is a plain module, the same as one imported whole.

This is not done when DGL is already imported, when ``GRAPHMM_EAGER_DGL=1`` is set
(:data:`EAGER_DGL_ENV`), or when a deferred part could not load (no graphbolt library for
this torch, or a module it imports is missing): then ``import dgl`` runs as it always
does and fails, if it must, with the messages below.
"""

from __future__ import annotations

import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any, Optional, Sequence

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


#: DGL subpackages that :func:`import_dgl` replaces by a :class:`DeferredModule`, each
#: with the third-party modules it imports (all must be installed for it to be deferred).
DEFERRED_DGL_IMPORTS: dict[str, tuple[str, ...]] = {
    "graphbolt": ("torchdata", "pandas", "pydantic", "yaml"),
}

#: DGL packages whose ``__init__`` :func:`import_dgl` runs on first use
#: (:class:`DeferredInitModule`), with the third-party modules that ``__init__`` imports.
DEFERRED_DGL_INITS: dict[str, tuple[str, ...]] = {
    "data": ("pandas", "scipy", "networkx", "requests", "tqdm", "yaml", "pydantic"),
}

#: Set to ``1`` to import DGL whole, as ``import dgl`` does without graphmm.
EAGER_DGL_ENV = "GRAPHMM_EAGER_DGL"


class DeferredModule(types.ModuleType):
    """Stand-in for a module that is imported at its first use.

    Every attribute access (``gb.FusedCSCSamplingGraph``, ``gb.__file__``) imports the
    real module with :func:`importlib.import_module`, once, and is answered by it;
    setting or deleting attributes goes to the real module too. The stand-in is never
    put in ``sys.modules``, so ``import`` statements always get the real module.

    Args:
        name: The real module's full name, e.g. ``"dgl.graphbolt"``.

    Example:
        >>> import sys
        >>> sys.modules.pop("colorsys", None) and None
        >>> cs = DeferredModule("colorsys")
        >>> "colorsys" in sys.modules
        False
        >>> cs.rgb_to_hsv(1.0, 0.0, 0.0), "colorsys" in sys.modules
        ((0.0, 1.0, 1.0), True)
        >>> cs.__name__, repr(cs).startswith("<module 'colorsys'")
        ('colorsys', True)
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # reentrant: the real module's own import may use the stand-in
        types.ModuleType.__setattr__(self, "_deferred_lock", threading.RLock())
        types.ModuleType.__setattr__(self, "_deferred_real", None)

    def _deferred_module(self) -> types.ModuleType:
        get = types.ModuleType.__getattribute__
        real = get(self, "_deferred_real")
        if real is None:
            with get(self, "_deferred_lock"):
                # the import system puts the real module in sys.modules and on its parent
                real = importlib.import_module(get(self, "__name__"))
                spec = get(real, "__spec__")
                if spec is None or not getattr(spec, "_initializing", False):  # not mid-import
                    types.ModuleType.__setattr__(self, "_deferred_real", real)
        return real

    def __getattribute__(self, attr: str) -> Any:
        if attr in ("_deferred_module", "_deferred_lock", "_deferred_real"):
            return types.ModuleType.__getattribute__(self, attr)
        return getattr(self._deferred_module(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._deferred_module(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._deferred_module(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._deferred_module())

    def __repr__(self) -> str:
        return repr(self._deferred_module())


_INIT_LOCK = threading.RLock()


class DeferredInitModule(types.ModuleType):
    """A package imported without running its ``__init__.py`` until it is needed.

    It has what the import system gives every package (``__spec__``, ``__path__``,
    ``__file__``, ...), so its submodules import as usual. The first access of an
    attribute it does not have yet, and ``dir()``, run its ``__init__.py`` in it (the
    submodules already imported are reused, as for any package) and make it a plain
    :class:`types.ModuleType`; if ``__init__.py`` raises, the error propagates and the
    next access tries again.

    Example:
        >>> import importlib.util, sys
        >>> saved = {k: sys.modules.pop(k) for k in ("dbm", "dbm.dumb") if k in sys.modules}
        >>> spec = importlib.util.find_spec("dbm")
        >>> mod = importlib.util.module_from_spec(spec)  # what the import system makes
        >>> mod.__class__ = DeferredInitModule  # instead of running dbm/__init__.py
        >>> sys.modules["dbm"] = mod
        >>> import dbm.dumb  # a submodule imports, dbm/__init__.py has not run
        >>> type(mod).__name__, "whichdb" in vars(mod)
        ('DeferredInitModule', False)
        >>> callable(mod.whichdb), type(mod).__name__  # the first missing attribute runs it
        (True, 'module')
        >>> sys.modules.update(saved)
    """

    def __getattr__(self, attr: str) -> Any:
        _run_init(self)
        return getattr(self, attr)

    def __dir__(self) -> list[str]:
        _run_init(self)
        return dir(self)


def _run_init(module: types.ModuleType) -> None:
    with _INIT_LOCK:
        if type(module) is not DeferredInitModule:  # another thread ran it
            return
        loader = module.__spec__.loader
        module.__class__ = types.ModuleType  # from here on, missing attributes are missing
        try:
            loader.exec_module(module)
        except BaseException:
            module.__class__ = DeferredInitModule
            raise


class _DeferringLoader(importlib.abc.Loader):
    """Imports a DGL package as the real loader would, except what is deferred.

    ``dgl`` itself runs its ``__init__.py`` with a :class:`DeferredModule` already set for
    each of ``stand_ins``, so ``from .. import graphbolt`` in DGL's modules finds the
    attribute and imports nothing; ``dgl.data`` (``defer_init``) becomes a
    :class:`DeferredInitModule`. The module's ``__loader__`` and ``__spec__.loader`` are
    the real loader's.
    """

    def __init__(self, loader: importlib.abc.Loader, stand_ins: Sequence[str] = (), defer_init: bool = False) -> None:
        self.loader = loader
        self.stand_ins = tuple(stand_ins)
        self.defer_init = defer_init

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        if self.defer_init:
            # only now: while the import system fills in __path__ & co., it probes them
            module.__class__ = DeferredInitModule
            return
        for sub in self.stand_ins:
            setattr(module, sub, DeferredModule(f"{module.__name__}.{sub}"))
        self.loader.exec_module(module)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds ``dgl`` and the packages of ``defer_init`` as the path finder does, with a
    :class:`_DeferringLoader`; it is on ``sys.meta_path`` only during ``import dgl``."""

    def __init__(self, stand_ins: Sequence[str], defer_init: Sequence[str]) -> None:
        self.stand_ins = tuple(stand_ins)
        self.defer_init = {f"dgl.{name}" for name in defer_init}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "dgl" and fullname not in self.defer_init:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _DeferringLoader(spec.loader, self.stand_ins if fullname == "dgl" else (),
                                       defer_init=fullname != "dgl")
        return spec


def deferrable_dgl_packages(torch_version: str) -> tuple[list[str], list[str]]:
    """The DGL packages that :func:`import_dgl` can leave for later here.

    A package is deferred only where importing it now would succeed, so deferring never
    hides an import error: DGL is found and not yet imported, :data:`EAGER_DGL_ENV` is
    not set, DGL ships its libraries for ``torch_version`` (:func:`dgl_torch_builds`), and
    the third-party modules the package imports are installed.

    Args:
        torch_version: ``torch.__version__``.

    Returns:
        ``(stand_ins, deferred_inits)``: names of :data:`DEFERRED_DGL_IMPORTS` and of
        :data:`DEFERRED_DGL_INITS`, e.g. ``(["graphbolt"], ["data"])``; empty lists when
        nothing is deferred.
    """
    if "dgl" in sys.modules or os.environ.get(EAGER_DGL_ENV, "") not in ("", "0"):
        return [], []
    spec = importlib.util.find_spec("dgl")
    if spec is None or spec.origin is None:
        return [], []
    if torch_version.split("+")[0] not in dgl_torch_builds(Path(spec.origin).parent):
        return [], []

    def ready(table: dict[str, tuple[str, ...]]) -> list[str]:
        return [sub for sub, needs in table.items() if all(_installed(m) for m in needs)]

    return ready(DEFERRED_DGL_IMPORTS), ready(DEFERRED_DGL_INITS)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent
        return False


def runs_as_command(argv: Sequence[str] | None = None) -> bool:
    """Whether this interpreter was started to run a graphmm command: ``python -m graphmm
    ...``, ``python -m graphmm.<module> ...`` or the ``graphmm`` script.

    Such a process is graphmm's own, so its imports may be frozen out of the cyclic
    garbage collector (:func:`gc.freeze`); in a user's program that imports graphmm the
    collector is left as it was.

    Args:
        argv: The interpreter's command line; default :data:`sys.orig_argv`.
    """
    args = list(sys.orig_argv if argv is None else argv)[1:]
    # the interpreter's own options first (torchrun starts its workers with `python -u -m ...`)
    while args and args[0].startswith("-") and args[0] not in ("-m", "-c", "-"):
        args = args[2:] if args[0] in ("-X", "-W") else args[1:]
    if len(args) >= 2 and args[0] == "-m":
        return args[1] == "graphmm" or args[1].startswith("graphmm.")
    return bool(args) and not args[0].startswith("-") and Path(args[0]).name == "graphmm"


def import_dgl() -> None:
    """Import DGL, turning a failure into an :class:`ImportError` that says how to fix it.

    Where it can (:func:`deferrable_dgl_packages`), the import leaves ``dgl.graphbolt``
    and the ``__init__`` of ``dgl.data`` for their first use (see the module's docstring).
    In a process that runs a graphmm command (:func:`runs_as_command`) the objects the
    import made are then frozen (:func:`gc.freeze`): otherwise the collector's first pass
    after it walks all of them (some 10^6; about 0.07 s of a 2 s prediction).

    Raises:
        ImportError: DGL is missing, a module it needs is missing, or its compiled
            libraries do not fit the installed torch. The original error is chained.
    """
    # torch and DGL make some 10^6 objects as they import, none of them garbage: the cyclic
    # collector would walk them all several times over (0.1-0.3 s on these machines)
    collecting = gc.isenabled()
    gc.disable()
    try:
        import torch  # a broken torch is not DGL's problem: let its own error through

        stand_ins, inits = deferrable_dgl_packages(torch.__version__)
        finder = _DeferringFinder(stand_ins, inits) if stand_ins or inits else None
        if finder is not None:
            sys.meta_path.insert(0, finder)
        try:
            _import_dgl_checked(torch.__version__)
        finally:
            if finder is not None:
                sys.meta_path.remove(finder)
    finally:
        if runs_as_command():
            gc.freeze()
        if collecting:
            gc.enable()


def _import_dgl_checked(torch_version: str) -> None:
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
        _raise_mismatch(err, torch_version)
    except (ImportError, OSError, RuntimeError) as err:
        # DGL raises FileNotFoundError (an OSError) for a missing per-torch library,
        # ImportError when one does not load, OSError from ctypes for libdgl.so itself, and
        # RuntimeError when libdgl.so is not found at all.
        _raise_mismatch(err, torch_version)


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
