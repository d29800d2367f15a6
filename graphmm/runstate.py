"""What a run needs to continue exactly where it stopped: data order, RNG states, and
the rotation of checkpoint files."""

from __future__ import annotations

import logging
import random
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import Dataset, Sampler

from graphmm.config import ConfigError
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
    builds the batch and whether or not the run was resumed; with ``augment_seeds`` each
    sample also carries the seed its batch's augmentation draws from."""

    def __init__(
        self, samples: Sequence[Sample], seed: int, drop: ModalityDropout | None = None, augment_seeds: bool = False
    ) -> None:
        self.samples, self.seed, self.drop = list(samples), seed, drop
        #: tag each sample with an augmentation seed from (seed, epoch, index) (graphmm.data.augment)
        self.augment_seeds = augment_seeds

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, i = key
        s = self.samples[i]
        if self.drop is not None:
            s = self.drop(s, torch.Generator().manual_seed(_mix(self.seed, epoch, i)))
        if self.augment_seeds:
            from graphmm.data.augment import with_seed

            s = with_seed(s, _mix(self.seed, epoch, i, 1))  # 1: not the modality-dropout stream
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

    ``resume="auto"`` (or ``"last"``, once the caller has picked the run's folder)
    takes the newest valid checkpoint in ``folder``; a corrupt or unreadable one is
    reported and the previous one is tried. Any other value is a path to one
    checkpoint, which must load.
    """
    if resume in ("auto", "last"):
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


# ---------------------------------------------------------------- the config of a resumed run
#: Config keys that may differ between a checkpoint and the run that resumes from it:
#: they change how long or where the run goes, or what it shows, not what a step
#: computes. Every other difference stops the resume (see :func:`check_resume_config`).
RESUME_SAFE_KEYS: frozenset[str] = frozenset({
    "trainer.max_epochs",  # the schedule is rebuilt for the new length (rebuild_scheduler)
    "trainer.scheduler.T_max",  # follows max_epochs by default; rebuilt the same way
    "trainer.patience",  # follows max_epochs by default; the count of epochs without progress is kept
    "trainer.num_workers",  # data order and modality dropout depend only on (seed, epoch, index)
    "trainer.cache_dir",  # cached features are the computed ones
    "trainer.cache_memory_mb",  # how much of the cache stays in memory
    "trainer.checkpoint_every_n_steps",
    "trainer.keep_checkpoints",
    "trainer.test_missing_modalities",  # only adds test reports at the end
    "trainer.progress",
    "trainer.logger",
    "trainer.device",  # where it runs, to move a run between machines (floating-point rounding may differ)
    "output_dir",  # a checkpoint given by path may continue in another folder
})

#: Keys that differ between a run and its resume by design; never reported.
RESUME_IGNORED_KEYS: frozenset[str] = frozenset({"trainer.resume", "trainer.resume_force"})

_ABSENT = object()  # a key that one of the two configs does not have


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value  # lists compare as a whole
    return flat


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two resolved configs, as
    ``{key: (old, new)}`` in key order; a key only one side has appears with
    ``"<absent>"`` on the other. :data:`RESUME_IGNORED_KEYS` are left out.

    >>> config_diff({"seed": 3, "trainer": {"resume": None}}, {"seed": 7, "trainer": {"resume": "auto"}})
    {'seed': (3, 7)}
    """
    a, b = _flatten(_task_as_target(old)), _flatten(_task_as_target(new))
    diff = {}
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        # a key that a later version added, unset (``graph.video: null``, an augmentation
        # setting of 0) or only read by another task (model.pretrain.*), changes nothing
        if (va is _ABSENT or vb is _ABSENT) and (_unset(vb if va is _ABSENT else va) or key.startswith("model.pretrain.")):
            continue
        if key not in RESUME_IGNORED_KEYS and va != vb:
            diff[key] = tuple("<absent>" if v is _ABSENT else v for v in (va, vb))
    return diff


def _unset(value: Any) -> bool:
    """Whether a value means "off": ``None``, empty, zero or false."""
    return value is None or value == {} or (isinstance(value, (bool, int, float)) and not value)


def _task_as_target(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """``model.task`` as a ``{_target_: ...}`` node whether it was written by name
    (``classification``, as earlier versions stored it) or by class."""
    model = cfg.get("model")
    task = model.get("task") if isinstance(model, Mapping) else None
    if not isinstance(task, str):
        return cfg
    from graphmm.tasks import task_class

    try:
        cls = task_class(task)
    except Exception:  # an unknown name: compare as written
        return cfg
    return {**cfg, "model": {**model, "task": {"_target_": f"{cls.__module__}.{cls.__qualname__}"}}}


def _changes(diff: Mapping[str, tuple[Any, Any]], limit: int = 12) -> str:
    """``key: old -> new`` for each difference, on one line."""

    def show(v: Any) -> str:
        return v if v == "<absent>" else repr(v)

    shown = [f"{k}: {show(old)} -> {show(new)}" for k, (old, new) in list(diff.items())[:limit]]
    more = f", and {len(diff) - limit} more" if len(diff) > limit else ""
    return ", ".join(shown) + more


_FIX = (
    "pass trainer.resume_force=true to continue anyway, or start a new run directory (another output_dir, "
    "without trainer.resume)"
)


def check_resume_config(
    saved: Mapping[str, Any] | None, current: Mapping[str, Any], source: str | Path, force: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Compare the config a checkpoint was written with to the one resuming from it.

    Differences in :data:`RESUME_SAFE_KEYS` are logged and accepted; any other one
    raises :class:`~graphmm.config.ConfigError` (one line naming every differing key,
    old and new value, and the fix), unless ``force``, which logs a warning instead.
    A checkpoint without a stored config (``saved=None``) is refused the same way.

    Args:
        saved: the checkpoint's ``"config"`` (resolved), or ``None``.
        current: this run's resolved config.
        source: the checkpoint, named in messages.
        force: ``trainer.resume_force``.

    Returns:
        The differences the resume applies, ``{key: (old, new)}``: the safe ones, and
        with ``force`` all of them.
    """
    if saved is None:
        if not force:
            raise ConfigError(
                f"cannot resume from {source}: it stores no config to compare with this run's (written by an older "
                f"graphmm); {_FIX}"
            )
        log.warning("%s stores no config; resuming unchecked (trainer.resume_force=true)", source)
        return {}
    diff = config_diff(saved, current)
    unsafe = {k: v for k, v in diff.items() if k not in RESUME_SAFE_KEYS}
    safe = {k: v for k, v in diff.items() if k in RESUME_SAFE_KEYS}
    if unsafe and not force:
        raise ConfigError(
            f"cannot resume from {source}: the config differs from the one it was written with in "
            f"{_changes(unsafe)}; {_FIX}"
        )
    if unsafe:
        log.warning(
            "resuming from %s with a changed config (trainer.resume_force=true): %s; the checkpoint's weights, "
            "optimizer and RNG states are restored as saved", source, _changes(unsafe),
        )
    if safe:
        log.info("resuming with changes that are safe to make: %s", _changes(safe))
    return diff if force else safe


def rebuild_scheduler(
    factory: Callable[[torch.optim.Optimizer], LRScheduler], optimizer: torch.optim.Optimizer, steps: int
) -> LRScheduler:
    """A scheduler from ``factory`` (this run's config) brought to ``steps`` steps, as
    if the run had used it from its start: after ``trainer.max_epochs`` changed, the
    cosine schedule runs to the new end instead of climbing back up after the old one.

    The optimizer's learning rates are reset to their ``initial_lr`` first, and the
    scheduler is stepped ``steps`` times (once per finished epoch, as training steps
    it), so the rate equals that of a fresh run with the new schedule at this epoch.
    """
    for group in optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])
    with warnings.catch_warnings():
        # replaying the schedule steps it before the optimizer steps; that is the point here
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`", category=UserWarning)
        scheduler = factory(optimizer)
        for _ in range(steps):
            scheduler.step()
    return scheduler


def load_weights(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """``module.load_state_dict(weights)``; a mismatch is one line (how many tensors
    differ in shape or are missing), not one line per tensor."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        text = str(err)
        n_shape = text.count("size mismatch for ")
        parts = [f"{n_shape} tensors differ in shape"] if n_shape else []
        for line in text.splitlines():
            for label in ("Missing", "Unexpected"):
                if f"{label} key(s) in state_dict:" in line:
                    parts.append(f"{line.count(chr(34)) // 2} {label.lower()} tensors")
        detail = ", ".join(parts) or text.strip().splitlines()[0]
        raise ConfigError(
            f"cannot resume from {source}: its weights do not fit the model this config builds ({detail}); "
            f"the model, graph and data settings must be the checkpoint's, even with trainer.resume_force=true"
        ) from None


def find_last_run(root: Path) -> Path | None:
    """The folder directly under ``root`` whose newest resumable checkpoint was
    written last (by modification time), or ``None`` when no folder holds one. For a
    Hydra run directory ``outputs/<name>/<time>``, ``root`` is ``outputs/<name>``."""
    best: tuple[float, str, Path] | None = None
    for run in root.iterdir() if root.is_dir() else []:
        ckpts = list_checkpoints(run / "checkpoints") if run.is_dir() else []
        if ckpts:
            key = (ckpts[0].stat().st_mtime, run.name, run)
            best = key if best is None or key[:2] > best[:2] else best
    return None if best is None else best[2]
