"""What a run needs to continue exactly where it stopped: data order, RNG states, and
the rotation of checkpoint files."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from graphmm.data import ModalityDropout, Sample
from graphmm.utils import load_checkpoint

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^step-(\d{8})(-end)?\.pt$")


def _mix(*parts: int) -> int:
    # tuples of ints hash the same in every process (PYTHONHASHSEED only affects str/bytes)
    return hash(tuple(parts)) & 0x7FFF_FFFF_FFFF_FFFF


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs: a permutation that depends only on
    ``(seed, epoch)``, so a resumed run sees the same order, and can start ``skip``
    items into the epoch.

    Across ``world_size`` processes (DDP) every process draws the same order and keeps
    its share: in training (``batch_size`` given) a contiguous chunk of every global
    batch (see :func:`graphmm.ddp.shard_global_batches`); in evaluation every
    ``world_size``-th item, so the shares cover the split exactly.

    Args:
        n: dataset size.
        seed: run seed.
        shuffle: permute (training) or keep the order (evaluation).
        batch_size: global batch size, for training shards. Default: ``None``.
        rank: this process. Default: ``0``.
        world_size: processes. Default: ``1``.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool = True, batch_size: int | None = None, rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start epoch ``epoch``, ``skip`` items (of the global order) in."""
        self.epoch, self.skip = epoch, skip

    def indices(self) -> list[int]:
        """This process's dataset indices for the current epoch, in order."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=gen)[self.skip :].tolist()
        else:
            order = list(range(self.skip, self.n))
        if self.world_size == 1:
            return order
        if self.batch_size is None:
            return order[self.rank :: self.world_size]
        from graphmm.ddp import shard_global_batches

        return list(shard_global_batches(order, self.batch_size, self.rank, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices():
            yield self.epoch, i

    def __len__(self) -> int:
        if self.world_size == 1:
            return max(self.n - self.skip, 0)
        return len(self.indices())


class EpochView(Dataset):
    """Samples addressed by ``(epoch, index)``; modality dropout, when on, draws from a
    generator seeded by ``(seed, epoch, index)``, so it is the same whichever worker
    builds the batch and whether or not the run was resumed."""

    def __init__(self, samples: Sequence[Sample], seed: int, drop: ModalityDropout | None = None) -> None:
        self.samples, self.seed, self.drop = list(samples), seed, drop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, i = key
        s = self.samples[i]
        if self.drop is not None:
            s = self.drop(s, torch.Generator().manual_seed(_mix(self.seed, epoch, i)))
        return s


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (loadable with
    ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int, epoch_end: bool) -> str:
    return f"step-{step:08d}{'-end' if epoch_end else ''}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Resumable checkpoints in ``folder``, newest first (by step, epoch end after mid-epoch)."""
    found = []
    for p in folder.glob("step-*.pt") if folder.is_dir() else []:
        m = _CKPT_RE.match(p.name)
        if m:
            found.append(((int(m.group(1)), m.group(2) is not None), p))
    return [p for _, p in sorted(found, reverse=True)]


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest resumable checkpoints."""
    for p in list_checkpoints(folder)[keep:]:
        p.unlink(missing_ok=True)


def load_resume_state(resume: str, folder: Path, map_location: torch.device) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint to resume from, or ``None`` for a fresh start.

    ``resume="auto"`` takes the newest valid checkpoint in ``folder``; a corrupt or
    unreadable one is reported and the previous one is tried. Any other value is a
    path to one checkpoint, which must load.
    """
    if resume == "auto":
        for path in list_checkpoints(folder):
            try:
                state = load_checkpoint(path, map_location=map_location)
                if "train_model" not in state or "epoch_end" not in state:
                    raise RuntimeError("not a resumable graphmm checkpoint")
            except Exception as err:  # a torn or corrupt file: say so, try the previous one
                log.warning("checkpoint %s is unusable (%s); falling back to the previous one", path, err)
                continue
            return state, path
        return None
    path = Path(resume)
    state = load_checkpoint(path, map_location=map_location)
    if "train_model" not in state:
        raise ValueError(f"trainer.resume={resume!r} is not a resumable graphmm checkpoint")
    return state, path
