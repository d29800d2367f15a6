"""On-disk cache of preprocessed per-sample features, keyed by content and config.

Building a graph spends most of its time on per-sample preprocessing: log-mel
frames of a clip, the patches (and their kNN) of an image, the token ids of a text,
the frozen CLIP tokens of an image. Those depend only on the sample's content and on
the settings and fitted state (or the weights) of whatever computes them, so they can
be computed once and reused by every epoch and by every job of a sweep that shares
the settings. :class:`FeatureCache` stores such values under a folder named after a
fingerprint of the settings: another setting gives another folder, so a config
change can never read stale features. The graph builders
(:meth:`graphmm.graphs.MultimodalGraphBuilder.use_cache`) and the optional CLIP
featurizers use this one class.

Writes are atomic (temporary file, ``fsync``, rename), so concurrent sweep jobs,
DataLoader workers and interrupted runs never leave a torn entry that another job
would read, and entries are read with ``torch.load(weights_only=True)``, so a cache
folder cannot run code. A corrupt or unreadable entry counts as a miss and is
rewritten.

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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from graphmm.utils import atomic_write_bytes

__all__ = ["CACHE_FORMAT", "FeatureCache", "default_cache_dir", "fingerprint"]

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



def default_cache_dir(*parts: str) -> Path:
    """``$GRAPHMM_CACHE``, else ``$XDG_CACHE_HOME/graphmm``, else ``~/.cache/graphmm``,
    followed by ``parts`` (e.g. ``default_cache_dir("clip")``).

    Example:
        >>> default_cache_dir("clip").name
        'clip'
    """
    root = os.environ.get("GRAPHMM_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = os.path.join(xdg, "graphmm")
    return Path(root).joinpath(*parts)


def _owned(value: Any) -> Any:
    """``value`` with every tensor detached, on the CPU and owning exactly its bytes.

    A row of a batched output is a view whose storage is the whole batch; saved as it
    is, every entry would store (and the memory layer would hold) the whole batch.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)
        return t
    if isinstance(value, Mapping):
        return {k: _owned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_owned(v) for v in value)
    return value


#: What a small tensor costs in memory beyond its data (the tensor and storage objects,
#: allocator rounding), counted by the memory budget: an image's patches and edges are a
#: few kB in some 20 tensors, so their data alone would be a third of what they hold.
TENSOR_OVERHEAD_BYTES = 1024


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (nested mappings, lists and tuples), each tensor
    counted with :data:`TENSOR_OVERHEAD_BYTES` more."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size() + TENSOR_OVERHEAD_BYTES
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


class FeatureCache:
    """Values (tensors and plain containers) stored on disk under content keys.

    Entries live in ``<root>/<namespace>/<key[:2]>/<key>.pt`` where ``namespace`` is
    the fingerprint of ``key_parts`` and :data:`CACHE_FORMAT`: put everything the
    values depend on besides the entry key into ``key_parts`` (the settings and the
    fitted state, or the weights' hash, of whatever computes them), so that changing
    any of it reads and writes a different folder. ``<root>/<namespace>/meta.json``
    records a readable summary of the parts.

    Loaded and stored values are also kept in memory (``memory=True``), so a value is
    read from disk at most once per process; ``memory_mb`` bounds that layer (least
    recently used entries go first). Neither the memory copy nor the counts are
    pickled: a DataLoader worker starts with empty ones and reads the disk.

    A value that is a mapping of named features can be filled in over time:
    ``get(key, fields)`` is a miss unless the entry holds every field, and
    ``put(key, value, merge=True)`` adds fields to what the entry already holds.

    Args:
        root: cache folder, shared by every run and sweep job that should reuse
            entries; ``None`` keeps values in memory only.
        key_parts: what the values depend on besides the entry key (fingerprinted).
        memory: keep values in memory after the first load or store.
        memory_mb: budget of the memory layer in MiB (tensor data plus
            :data:`TENSOR_OVERHEAD_BYTES` per tensor); ``None``: unbounded.

    Attributes:
        stats: counts of ``hits`` (memory or disk), ``misses`` and ``writes`` (stores).

    Shapes:
        Values are stored as given; tensors keep dtype and shape (on the CPU).

    Example:
        >>> import tempfile, torch
        >>> cache = FeatureCache(tempfile.mkdtemp(), {"checkpoint": "abc", "layer": -1}, memory_mb=64)
        >>> key = fingerprint("an image")
        >>> cache.put(key, {"tokens": torch.ones(2, 3)})
        >>> cache.get(key, ("tokens", "emb")) is None          # no "emb" yet: a miss
        True
        >>> cache.put(key, {"emb": torch.zeros(2)}, merge=True)
        >>> sorted(cache.get(key, ("tokens", "emb")))
        ['emb', 'tokens']
        >>> cache.stats
        {'hits': 1, 'misses': 1, 'writes': 2}
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        key_parts: Any = (),
        memory: bool = True,
        memory_mb: float | None = None,
    ) -> None:
        if root is None and not memory:
            raise ValueError("FeatureCache(root=None) keeps values in memory only; it needs memory=True")
        if memory_mb is not None and memory_mb < 0:
            raise ValueError(f"memory_mb must be >= 0 or None, got {memory_mb}")
        self.root = Path(root) if root is not None else None
        self.key_parts = key_parts
        self.namespace = fingerprint(CACHE_FORMAT, key_parts)
        self.memory = bool(memory)
        self.memory_bytes = int(memory_mb * 2**20) if memory_mb is not None else None
        self.stats = {"hits": 0, "misses": 0, "writes": 0}
        self._mem: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._used = 0

    @property
    def folder(self) -> Path | None:
        """``<root>/<namespace>``: this cache's entries (``None`` in memory only)."""
        return self.root / self.namespace if self.root is not None else None

    def path(self, key: str) -> Path:
        """The file of entry ``key``."""
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError(f"cache keys must be non-empty [A-Za-z0-9_-] strings, got {key!r}; use fingerprint(...)")
        if self.folder is None:
            raise ValueError("this FeatureCache keeps values in memory only (root=None); its entries have no file")
        return self.folder / key[:2] / f"{key}.pt"

    def get(self, key: str, fields: Iterable[str] = ()) -> Any | None:
        """The value stored under ``key``, or ``None`` (a miss).

        With ``fields``, the value must be a mapping that holds every one of them;
        one without them all is a miss (and stays stored, for ``put(merge=True)``).
        """
        fields = tuple(fields)
        if key in self._mem:
            self._mem.move_to_end(key)
            value = self._mem[key]
        else:
            value = self._load(key)
            if value is not None:
                self._remember(key, value)
        if value is None or (fields and not (isinstance(value, Mapping) and all(f in value for f in fields))):
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        return value

    def put(self, key: str, value: Any, merge: bool = False) -> None:
        """Store ``value`` (tensors and plain containers only) atomically under ``key``.

        Tensors are stored detached, on the CPU and compact (a view into a batch
        stores its own rows only). ``merge=True``: a mapping ``value`` is merged over
        the mapping the entry already holds (its keys win).
        """
        value = _owned(value)
        if merge and isinstance(value, Mapping):
            old = self._mem[key] if key in self._mem else self._load(key)
            if isinstance(old, Mapping):
                value = {**old, **value}
        if self.folder is not None:
            buf = io.BytesIO()
            torch.save(value, buf)
            if not (self.folder / "meta.json").is_file():
                self._write_meta()
            atomic_write_bytes(self.path(key), buf.getvalue())
        self.stats["writes"] += 1
        self._remember(key, value)

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        """``get(key)``, or on a miss ``compute()``, stored under ``key`` and returned."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __contains__(self, key: str) -> bool:
        return key in self._mem or (self.folder is not None and self.path(key).is_file())

    def keys(self) -> Iterable[str]:
        """Keys of the entries on disk (in memory, for a memory-only cache)."""
        if self.folder is None:
            return iter(list(self._mem))
        return (p.stem for p in self.folder.glob("*/*.pt")) if self.folder.is_dir() else iter(())

    def clear_memory(self) -> None:
        """Forget the in-memory copies (the disk entries stay, the counts too)."""
        self._mem.clear()
        self._sizes.clear()
        self._used = 0

    def info(self) -> dict[str, Any]:
        """:attr:`stats` plus ``folder`` (a string or ``None``) and ``in_memory`` (entries)."""
        folder = self.folder
        return {**self.stats, "folder": str(folder) if folder is not None else None, "in_memory": len(self._mem)}

    # ------------------------------------------------------------------ internals
    def _load(self, key: str) -> Any | None:
        """The entry on disk, or ``None`` when there is none or it cannot be read."""
        if self.folder is None:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torn, truncated or unsafe: any failure is a miss
            log.warning("feature cache entry %s is unreadable (%s); recomputing it", path, err)
            return None

    def _remember(self, key: str, value: Any) -> None:
        """Keep ``value`` in the memory layer, dropping the least recently used
        entries beyond ``memory_bytes``; a value larger than the budget is not kept."""
        if not self.memory:
            return
        self._used -= self._sizes.pop(key, 0)
        self._mem.pop(key, None)
        size = _nbytes(value) if self.memory_bytes is not None else 0
        if self.memory_bytes is not None and size > self.memory_bytes:
            return
        self._mem[key] = value
        self._sizes[key] = size
        self._used += size
        while self.memory_bytes is not None and self._used > self.memory_bytes:
            dropped, _ = self._mem.popitem(last=False)
            self._used -= self._sizes.pop(dropped)

    def _write_meta(self) -> None:
        def plain(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                return f"tensor{tuple(obj.shape)} {obj.dtype} #{fingerprint(obj)[:12]}"
            if isinstance(obj, Mapping):
                return {str(k): plain(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [plain(v) for v in obj] if len(obj) <= 64 else f"{len(obj)} items #{fingerprint(obj)[:12]}"
            return obj if isinstance(obj, (str, int, float, bool)) or obj is None else repr(obj)

        assert self.folder is not None
        meta = {"format": CACHE_FORMAT, "namespace": self.namespace, "key_parts": plain(self.key_parts)}
        atomic_write_bytes(self.folder / "meta.json", (json.dumps(meta, indent=2, default=repr) + "\n").encode())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mem"] = OrderedDict()
        state["_sizes"] = {}
        state["_used"] = 0
        state["stats"] = dict.fromkeys(self.stats, 0)  # counts are per process
        return state

    def __repr__(self) -> str:
        root = str(self.root) if self.root is not None else None
        return (
            f"FeatureCache(root={root!r}, namespace={self.namespace[:12]}, hits={self.stats['hits']}, "
            f"misses={self.stats['misses']}, in_memory={len(self._mem)})"
        )
