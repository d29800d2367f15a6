"""On-disk cache of frozen CLIP features, and the hashes that key it.

A cache is one folder per *namespace*: the SHA-256 of a JSON description of
everything that changes the features (the checkpoint's SHA-256, the model name, the
layer, the preprocessing config, ...). Inside it each item (an image, a text) is one
``.pt`` file named by the SHA-256 of the item's content. Changing any part of the
namespace, for example a new checkpoint file at the same path or another layer,
therefore reads and writes another folder: nothing stale is ever served. Files are
written atomically (a temporary file, then ``os.replace``), so concurrent writers
(DataLoader workers) and killed jobs leave whole files only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphmm.utils import atomic_write_bytes

__all__ = ["FeatureCache", "content_hash", "default_cache_dir", "file_sha256", "weights_fingerprint"]

_FILE_HASHES: dict[tuple[str, int, int], str] = {}
#: what torch.load raises on a truncated, corrupt or foreign file
_UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, memoised by ``(real path, size, mtime)``.

    Hashing a 600 MB checkpoint takes a second or two; the memo makes every later
    call free until the file changes (a new size or modification time).

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{str(p)!r} is not a file")
    st = p.stat()
    key = (os.path.realpath(p), st.st_size, st.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return digest


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes of every tensor).

    Used instead of a file hash for models built with random weights, so that their
    features are cached only for exactly those weights.
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def content_hash(*parts: torch.Tensor | str | bytes) -> str:
    """SHA-256 of tensors (dtype, shape and bytes), strings and bytes, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(part, str):
            h.update(b"S|" + part.encode("utf-8") + b"\x00")
        else:
            h.update(b"B|" + bytes(part) + b"\x00")
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$GRAPHMM_CACHE/clip``, else ``$XDG_CACHE_HOME/graphmm/clip``, else ``~/.cache/graphmm/clip``."""
    root = os.environ.get("GRAPHMM_CACHE")
    if root:
        return Path(root) / "clip"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "graphmm" / "clip"


class FeatureCache:
    """Features per item, on disk and in a bounded in-memory LRU.

    Args:
        root: folder of all namespaces; ``None`` keeps features in memory only.
        key: what the features depend on (JSON-serialisable); its SHA-256 names the
            namespace folder, and it is written there as ``key.json`` for people.
        memory_mb: budget of the in-memory LRU (it holds what an epoch re-reads).

    Example:
        >>> import tempfile, torch
        >>> cache = FeatureCache(tempfile.mkdtemp(), {"checkpoint": "abc", "layer": -1})
        >>> cache.get("item", ("tokens",)) is None
        True
        >>> cache.put("item", {"tokens": torch.ones(2, 3)})
        >>> cache.get("item", ("tokens",))["tokens"].shape
        torch.Size([2, 3])
    """

    def __init__(self, root: str | os.PathLike[str] | None, key: Mapping[str, Any], memory_mb: float = 256.0) -> None:
        self.key = json.loads(json.dumps(dict(key), sort_keys=True, default=str))
        self.namespace = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.folder = Path(root) / self.namespace[:24] if root is not None else None
        self.memory_bytes = int(memory_mb * 2**20)
        self._memory: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._used = 0
        self.hits = 0
        self.misses = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = self.folder / "key.json"
            if not meta.exists():
                self._atomic_write_text(meta, json.dumps(self.key, indent=2, sort_keys=True))

    # ------------------------------------------------------------------ paths and IO
    def _path(self, item: str) -> Path:
        assert self.folder is not None
        return self.folder / item[:2] / f"{item}.pt"

    @staticmethod
    def _atomic_write_bytes(path: Path, data: bytes) -> None:
        atomic_write_bytes(path, data)

    @classmethod
    def _atomic_write_text(cls, path: Path, text: str) -> None:
        cls._atomic_write_bytes(path, text.encode("utf-8"))

    def _remember(self, item: str, value: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in value.values())
        if size > self.memory_bytes:
            return
        old = self._memory.pop(item, None)
        if old is not None:
            self._used -= sum(t.numel() * t.element_size() for t in old.values())
        self._memory[item] = value
        self._used += size
        while self._used > self.memory_bytes and self._memory:
            _, dropped = self._memory.popitem(last=False)
            self._used -= sum(t.numel() * t.element_size() for t in dropped.values())

    # ------------------------------------------------------------------ API
    def get(self, item: str, fields: Iterable[str]) -> dict[str, torch.Tensor] | None:
        """The cached tensors of ``item`` if it holds every name in ``fields``, else ``None``."""
        fields = tuple(fields)
        value = self._memory.get(item)
        if value is not None:
            self._memory.move_to_end(item)
        elif self.folder is not None and self._path(item).is_file():
            try:
                value = torch.load(self._path(item), map_location="cpu", weights_only=True)
            except _UNREADABLE:  # a truncated or foreign file: recompute and overwrite it
                value = None
            if isinstance(value, dict):
                self._remember(item, value)
            else:
                value = None
        if value is None or any(f not in value for f in fields):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, item: str, value: Mapping[str, torch.Tensor]) -> None:
        """Store ``value`` (merged over what ``item`` already holds) in memory and on disk."""
        merged = dict(self._memory.get(item) or {})
        if not merged and self.folder is not None and self._path(item).is_file():
            try:
                merged = dict(torch.load(self._path(item), map_location="cpu", weights_only=True))
            except _UNREADABLE:
                merged = {}
        merged.update({k: v.detach().cpu().contiguous() for k, v in value.items()})
        self._remember(item, merged)
        if self.folder is not None:
            path = self._path(item)
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            torch.save(merged, buf)
            self._atomic_write_bytes(path, buf.getvalue())

    def info(self) -> dict[str, Any]:
        """``{"hits", "misses", "folder", "in_memory"}``."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "folder": str(self.folder) if self.folder is not None else None,
            "in_memory": len(self._memory),
        }

    def __repr__(self) -> str:
        folder = str(self.folder) if self.folder else None
        return f"FeatureCache(folder={folder!r}, hits={self.hits}, misses={self.misses})"
