"""The hashes of CLIP weights that key the CLIP feature cache.

Frozen CLIP features are stored in the one on-disk cache of graphmm,
:class:`graphmm.cache.FeatureCache`, under a namespace made of everything that
changes them: the SHA-256 of the checkpoint file (:func:`file_sha256`, or
:func:`weights_fingerprint` for random weights), the model name, the layer, the
preprocessing config, ... Changing any part of it, for example a new checkpoint file
at the same path or another layer, therefore reads and writes another folder: nothing
stale is ever served.

Example:
    >>> import copy, torch
    >>> m = torch.nn.Linear(2, 2)
    >>> same = copy.deepcopy(m)
    >>> weights_fingerprint(m) == weights_fingerprint(same)
    True
    >>> with torch.no_grad():
    ...     _ = same.bias.add_(1.0)
    >>> weights_fingerprint(m) == weights_fingerprint(same)
    False
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["file_sha256", "weights_fingerprint"]

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


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
