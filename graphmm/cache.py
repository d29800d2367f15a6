"""On-disk cache of preprocessed per-sample features, keyed by content and config.

Building a graph spends most of its time on per-sample preprocessing: log-mel
frames of a clip, the patches (and their kNN) of an image, the token ids of a text.
Those depend only on the sample's content and on the graph builder's settings and
fitted state, so they can be computed once and reused by every epoch and by every
job of a sweep that shares the settings. :class:`FeatureCache` stores such values
under a folder named after a fingerprint of the settings: another setting gives
another folder, so a config change can never read stale features.

Writes are atomic (temporary file, ``fsync``, rename), so concurrent sweep jobs
and interrupted runs never leave a torn entry that another job would read, and
entries are read with ``torch.load(weights_only=True)``, so a cache folder cannot
run code. A corrupt or unreadable entry counts as a miss and is rewritten.

Example:
    >>> import tempfile, torch
    >>> from graphmm.cache import FeatureCache, fingerprint
    >>> root = tempfile.mkdtemp()
    >>> cache = FeatureCache(root, key_parts={"n_mels": 40})
    >>> key = fingerprint(torch.arange(4.0))
    >>> cache.get(key) is None
    True
    >>> cache.put(key, {"mel": torch.ones(2, 40)})
    >>> FeatureCache(root, key_parts={"n_mels": 40}).get(key)["mel"].shape   # another process, same settings
    torch.Size([2, 40])
    >>> FeatureCache(root, key_parts={"n_mels": 20}).get(key) is None        # other settings: other entries
    True
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import logging
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from graphmm.utils import atomic_write_bytes

__all__ = ["CACHE_FORMAT", "FeatureCache", "fingerprint"]

log = logging.getLogger(__name__)

#: Bumped whenever the layout of cached values changes; part of every namespace.
CACHE_FORMAT = 1

T = TypeVar("T")


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical, type-tagged encoding of ``obj`` to the hash ``h``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        # bool before int: True and 1 must not collide
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, float):
        h.update(b"float:" + struct.pack("<d", obj))
    elif isinstance(obj, bytes):
        h.update(b"bytes:%d:" % len(obj) + obj)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
        # raw bytes through a uint8 view, so every dtype (bfloat16 included) hashes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray:{a.dtype.str}:{a.shape}:".encode() + a.tobytes())
    elif isinstance(obj, enum.Enum):
        _feed(h, (type(obj).__qualname__, obj.value))
    elif isinstance(obj, os.PathLike):
        _feed(h, ("path", os.fspath(obj)))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        _feed(h, (type(obj).__qualname__, dataclasses.asdict(obj)))
    elif isinstance(obj, Mapping):
        items = sorted(((repr(k), k, v) for k, v in obj.items()), key=lambda kv: kv[0])
        h.update(b"map:%d:" % len(items))
        for _, k, v in items:
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(b"%s:%d:" % (type(obj).__name__.encode(), len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (set, frozenset)):
        _feed(h, ("set", sorted(obj, key=repr)))
    else:
        raise TypeError(
            f"cannot fingerprint a {type(obj).__name__}; pass plain values (None, bool, int, float, str, "
            "bytes, tensors, arrays, and lists/tuples/dicts of them), e.g. the object's state_dict()"
        )


def fingerprint(*parts: Any) -> str:
    """A stable hex digest of ``parts``: equal for equal content in every process.

    Tensors hash by dtype, shape and bytes (not by identity), mappings by their sorted
    items, so the digest is a content key. Floats hash by their exact bits.

    Args:
        *parts: plain values, tensors, arrays, and (nested) lists, tuples and dicts of them.

    Returns:
        a 40-character hex string (BLAKE2b, 20 bytes).

    Raises:
        TypeError: a part is of a type without a canonical encoding.

    Example:
        >>> fingerprint(torch.zeros(3)) == fingerprint(torch.zeros(3))
        True
        >>> fingerprint(torch.zeros(3)) == fingerprint(torch.zeros(3, dtype=torch.float64))
        False
    """
    h = hashlib.blake2b(digest_size=20)
    _feed(h, parts)
    return h.hexdigest()


class FeatureCache:
    """Values (tensors and plain containers) stored on disk under content keys.

    Entries live in ``<root>/<namespace>/<key[:2]>/<key>.pt`` where ``namespace`` is
    the fingerprint of ``key_parts`` and :data:`CACHE_FORMAT`: put everything the
    values depend on besides the entry key into ``key_parts`` (the settings and the
    fitted state of whatever computes them), so that changing any of it reads and
    writes a different folder. ``<root>/<namespace>/meta.json`` records a readable
    summary of the parts.

    Loaded and stored values are also kept in memory (``memory=True``), so a value is
    read from disk at most once per process. Neither the memory copy nor the counts
    are pickled: a DataLoader worker starts with empty ones and reads the disk.

    Args:
        root: cache folder, shared by every run and sweep job that should reuse entries.
        key_parts: what the values depend on besides the entry key (fingerprinted).
        memory: keep values in memory after the first load or store.

    Attributes:
        stats: counts of ``hits`` (memory or disk), ``misses`` and ``writes``.

    Shapes:
        Values are stored as given; tensors keep dtype and shape.
    """

    def __init__(self, root: str | os.PathLike[str], key_parts: Any = (), memory: bool = True) -> None:
        self.root = Path(root)
        self.key_parts = key_parts
        self.namespace = fingerprint(CACHE_FORMAT, key_parts)
        self.memory = bool(memory)
        self.stats = {"hits": 0, "misses": 0, "writes": 0}
        self._mem: dict[str, Any] = {}

    @property
    def folder(self) -> Path:
        """``<root>/<namespace>``: this cache's entries."""
        return self.root / self.namespace

    def path(self, key: str) -> Path:
        """The file of entry ``key``."""
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError(f"cache keys must be non-empty [A-Za-z0-9_-] strings, got {key!r}; use fingerprint(...)")
        return self.folder / key[:2] / f"{key}.pt"

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or ``None`` (a miss)."""
        if key in self._mem:
            self.stats["hits"] += 1
            return self._mem[key]
        path = self.path(key)
        if path.is_file():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - torn, truncated or unsafe: any failure is a miss
                log.warning("feature cache entry %s is unreadable (%s); recomputing it", path, err)
            else:
                self.stats["hits"] += 1
                if self.memory:
                    self._mem[key] = value
                return value
        self.stats["misses"] += 1
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (tensors and plain containers only) atomically under ``key``."""
        buf = io.BytesIO()
        torch.save(value, buf)
        if not (self.folder / "meta.json").is_file():
            self._write_meta()
        atomic_write_bytes(self.path(key), buf.getvalue())
        self.stats["writes"] += 1
        if self.memory:
            self._mem[key] = value

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        """``get(key)``, or on a miss ``compute()``, stored under ``key`` and returned."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __contains__(self, key: str) -> bool:
        return key in self._mem or self.path(key).is_file()

    def keys(self) -> Iterable[str]:
        """Keys of the entries on disk."""
        return (p.stem for p in self.folder.glob("*/*.pt")) if self.folder.is_dir() else iter(())

    def clear_memory(self) -> None:
        """Forget the in-memory copies (the disk entries stay)."""
        self._mem.clear()

    def _write_meta(self) -> None:
        def plain(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                return f"tensor{tuple(obj.shape)} {obj.dtype} #{fingerprint(obj)[:12]}"
            if isinstance(obj, Mapping):
                return {str(k): plain(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [plain(v) for v in obj] if len(obj) <= 64 else f"{len(obj)} items #{fingerprint(obj)[:12]}"
            return obj if isinstance(obj, (str, int, float, bool)) or obj is None else repr(obj)

        meta = {"format": CACHE_FORMAT, "namespace": self.namespace, "key_parts": plain(self.key_parts)}
        atomic_write_bytes(self.folder / "meta.json", (json.dumps(meta, indent=2, default=repr) + "\n").encode())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mem"] = {}
        state["stats"] = dict.fromkeys(self.stats, 0)  # counts are per process
        return state

    def __repr__(self) -> str:
        return (
            f"FeatureCache(root={str(self.root)!r}, namespace={self.namespace[:12]}, "
            f"entries_in_memory={len(self._mem)})"
        )
