"""Training: ``python -m graphmm.train [overrides]`` (or ``python -m graphmm train``).

:func:`train` is a plain function of a composed config, used by the command line,
by tests and by benchmarks alike; :func:`fit` also returns the trained objects
(:class:`TrainedRun`); the thin Hydra wrapper is :mod:`graphmm.cli.train`. The loop itself is a
:class:`graphmm.engine.Engine` that :func:`build_engine` composes from the config.
"""

from __future__ import annotations

import csv
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm  # the type of progress_bar()'s bars

from graphmm.config import CONF_DIR, ConfigError, check_writable, to_container, validate_config
from graphmm.data import ModalityDropout, Sample
from graphmm.data.augment import Augmentations
from graphmm.ddp import DistContext, init_distributed
from graphmm.engine import (
    Callback,
    CheckpointCallback,
    EarlyStopping,
    EMACallback,
    Engine,
    LoggerCallback,
    NonFiniteLossGuard,
    ProgressCallback,
    fmt,
)
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.loggers import require
from graphmm.progress import bars_enabled, progress_bar
from graphmm.runstate import (
    EpochSampler,
    EpochView,
    check_resume_config,
    config_diff,
    find_last_run,
    load_resume_state,
    rebuild_scheduler,
)
from graphmm.tasks import ClassificationTask, Task, build_model, make_task, task_class
from graphmm.utils import remove_orphaned_temp_files, resolve_device, seed_everything, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")


def output_dir(cfg: DictConfig) -> Path:
    """``cfg.output_dir`` if set, else Hydra's run directory, else ``./outputs/<name>``."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / str(cfg.name)


def run_directory(cfg: DictConfig) -> Path:
    """The folder a run writes to: :func:`output_dir`, except that
    ``trainer.resume=last`` continues in the folder beside it with the newest
    resumable checkpoint (for Hydra's ``outputs/<name>/<time>``: the last run of that
    name); without one the run starts fresh where it is. Outside Hydra and without
    ``output_dir`` the folder is always ``outputs/<name>``, and ``last`` is ``auto``."""
    out = output_dir(cfg)
    if cfg.trainer.get("resume") != "last" or not (cfg.get("output_dir") or HydraConfig.initialized()):
        return out
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            "trainer.resume=last picks one earlier run, which the jobs of a sweep cannot share; give each job "
            "its folder instead: output_dir=<run dir> trainer.resume=auto"
        )
    last = find_last_run(out.parent)
    if last is None:
        log.warning("trainer.resume=last: no run directory in %s holds a checkpoint; starting fresh in %s",
                    out.parent, out)
        return out
    if last != out:
        log.info("trainer.resume=last: continuing %s, the run in %s with the newest checkpoint "
                 "(this log stays in %s)", last, out.parent, out)
    return last


def _resume_command(last: Path) -> str:
    """The command that continues ``last``: this run's overrides with ``trainer.resume=last``."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "trainer.resume"]
    command = shlex.join(["python", "-m", "graphmm.train", *kept, "trainer.resume=last"])
    return f"{command} (or output_dir={shlex.quote(str(last))} trainer.resume=auto)"


def find_resume(
    cfg: DictConfig, out: Path, device: torch.device
) -> tuple[dict[str, Any], Path, dict[str, tuple[Any, Any]]] | None:
    """The checkpoint ``trainer.resume`` asks for, checked against ``cfg``.

    Returns ``(state, path, changes)``, ``changes`` being the config differences the
    resume applies (:func:`graphmm.runstate.check_resume_config`), or ``None`` for a
    fresh start. ``trainer.resume=auto`` in a new Hydra run directory (no
    ``output_dir`` given) while an earlier run of the same name has checkpoints logs a
    warning with the command that continues that run.

    Raises:
        ConfigError: the config differs from the checkpoint's in a key that is not
            safe to change, and ``trainer.resume_force`` is false.
    """
    tcfg = cfg.trainer
    found = load_resume_state(tcfg.resume, out / "checkpoints", device)
    if found is None:
        # a single run's time-stamped folder of its own (a sweep job's neighbours are the other jobs)
        new_dir = not cfg.get("output_dir") and HydraConfig.initialized() and HydraConfig.get().mode != RunMode.MULTIRUN
        last = find_last_run(out.parent) if tcfg.resume == "auto" and new_dir else None
        if last is not None and last != out:
            log.warning(
                "trainer.resume=auto found no checkpoint in %s: without output_dir every run gets a new directory; "
                "starting fresh. To continue the last run of %r (%s), run: %s",
                out, str(cfg.name), last, _resume_command(last),
            )
        else:
            log.info("trainer.resume=%s: no checkpoint in %s, starting fresh", tcfg.resume, out / "checkpoints")
        return None
    state, path = found
    changes = check_resume_config(state.get("config"), to_container(cfg), path, force=bool(tcfg.get("resume_force")))
    return state, path, changes


def load_splits(data_cfg: DictConfig) -> tuple[dict[str, list[Sample]], str]:
    """Instantiate the ``data`` config: ``({"train", "val", "test"} -> samples, on_error)``."""
    kwargs = to_container(data_cfg)
    on_error = kwargs.pop("on_error", "raise")
    splits = instantiate(kwargs)
    missing = {"train", "val", "test"} - set(splits)
    if missing:
        raise ConfigError(f"data: the dataset returned no {sorted(missing)} split(s)")
    return splits, on_error


def make_loader(
    samples: Sequence[Sample],
    builder: MultimodalGraphBuilder,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    modality_dropout: float = 0.0,
    collate_fn: Any = None,
    ctx: DistContext | None = None,
    augment_seeds: bool = False,
) -> DataLoader:
    """A DataLoader whose workers build the batched graphs (``builder.collate``).

    Its sampler is an :class:`~graphmm.runstate.EpochSampler`: call
    ``loader.sampler.set_epoch(epoch, skip)`` before each epoch. The order and the
    modality dropout depend only on ``(seed, epoch, index)``, and so does the augmentation
    of a builder made by :meth:`~graphmm.graphs.MultimodalGraphBuilder.with_augment`
    (``augment_seeds=True`` gives each sample its seed). ``collate_fn`` defaults
    to ``builder.collate`` (graphs and labels); see :meth:`graphmm.tasks.Task.collate`.

    Under DDP (``ctx``) each process gets its share (:class:`~graphmm.runstate.EpochSampler`):
    a training loader's ``batch_size`` is the global batch, split evenly across the
    processes.
    """
    ctx = ctx or DistContext()
    drop = ModalityDropout(modality_dropout) if modality_dropout > 0 else None
    if shuffle and batch_size % ctx.world_size:
        raise ConfigError(
            f"trainer.batch_size={batch_size} is the global batch and must be a multiple of the "
            f"{ctx.world_size} processes"
        )
    return DataLoader(
        EpochView(samples, seed, drop, augment_seeds=augment_seeds),
        batch_size=batch_size // ctx.world_size if shuffle else batch_size,
        sampler=EpochSampler(len(samples), seed, shuffle=shuffle, batch_size=batch_size if shuffle else None,
                             rank=ctx.rank, world_size=ctx.world_size),
        num_workers=num_workers,
        collate_fn=collate_fn if collate_fn is not None else builder.collate,
        # its own generator, so iterating never draws from the global RNG
        generator=torch.Generator().manual_seed(seed),
    )


#: Columns of ``skipped.csv``: the step that left the item out (``read``: the dataset
#: loader, ``screen``: :func:`screen_samples`), its split (empty when the loader drops it
#: before splitting), its id (or index in its split), where it came from (file, or
#: ``manifest:line``) and why.
SKIPPED_COLUMNS: tuple[str, ...] = ("stage", "split", "id", "source", "reason")


def loader_skips(splits: Any) -> list[dict[str, str]]:
    """The items a file-based loader left out (``on_error=skip``), as ``skipped.csv`` rows.

    Reads :attr:`~graphmm.data.ManifestSplits.skipped_rows` (``(line, id, reason)``)
    or :attr:`~graphmm.data.io.DataSplits.skipped_items` (``(where, reason)``); a
    dataset without either gives ``[]``.
    """
    if getattr(splits, "skipped_rows", None) is not None:
        path = getattr(splits, "path", "")
        return [{"stage": "read", "split": "", "id": rid or "", "source": f"{path}:{line}", "reason": reason}
                for line, rid, reason in splits.skipped_rows]
    return [{"stage": "read", "split": "", "id": "", "source": where, "reason": reason}
            for where, reason in getattr(splits, "skipped_items", None) or []]


def count_truncated(splits: dict[str, list[Sample]], builder: MultimodalGraphBuilder) -> int:
    """Texts that ``graph.text.max_tokens`` cuts, over all splits (0 without a text builder)."""
    cut = getattr(builder.text, "truncated", None)
    if cut is None:
        return 0
    return sum(cut(s.text) for samples in splits.values() for s in samples if isinstance(s.text, str))


def screen_samples(
    splits: dict[str, list[Sample]],
    builder: MultimodalGraphBuilder,
    on_error: str,
    progress: bool = False,
    task: Task | None = None,
    record: list[dict[str, str]] | None = None,
) -> tuple[dict[str, list[Sample]], dict[str, int]]:
    """Check every sample once before training: its modalities (``builder.validate``)
    and what the task needs (a label, or a non-empty target; default: classification).

    With ``on_error="raise"`` the first bad sample stops the run with its split, id
    and problem; with ``"skip"`` each bad sample is logged (id and reason) and left
    out, and the counts per split are returned. ``progress`` shows a bar per split.
    ``record``, when given, receives one row per skipped sample in the columns of
    ``skipped.csv`` (:data:`SKIPPED_COLUMNS`).
    """
    task = task if task is not None else ClassificationTask()
    kept: dict[str, list[Sample]] = {}
    skipped: dict[str, int] = {}
    for name, samples in splits.items():
        good = []
        bar = progress_bar(samples, enabled=progress, desc=f"screen {name}", unit="sample")
        for i, s in enumerate(bar):
            try:
                builder.validate(s, i)
                task.check(s, i)
            except ValueError as err:
                if on_error == "raise":
                    raise ValueError(f"{name} split: {err} (set data.on_error=skip to leave such samples out)") from err
                log.warning("skipping %s sample %r: %s", name, s.id if s.id is not None else i, err)
                if record is not None:
                    record.append({"stage": "screen", "split": name, "id": str(s.id if s.id is not None else i),
                                   "source": "", "reason": str(err)})
                continue
            good.append(s)
        kept[name], skipped[name] = good, len(samples) - len(good)
    return kept, skipped


class _Ticking(Sequence[T]):
    """A read-only view of ``items`` that advances ``bar`` by one per item iterated,
    and says so on the bar once the iteration is over (what follows it is the rest
    of the work the bar stands for)."""

    def __init__(self, items: Sequence[T], bar: tqdm, after: str = "") -> None:
        self.items, self.bar, self.after = items, bar, after

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # type: ignore[override]
        return self.items[index]

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            yield item
            self.bar.update()
        if self.after:
            self.bar.set_postfix_str(self.after)


def fit_builder(builder: MultimodalGraphBuilder, samples: Sequence[Sample], progress: bool = False) -> None:
    """``builder.fit(samples)``, with a bar over the samples when ``progress``."""
    with progress_bar(total=len(samples), enabled=progress, desc="fit graph builder", unit="sample") as bar:
        builder.fit(_Ticking(samples, bar, after="vocabulary and feature statistics") if progress else samples)


@dataclass
class TrainedRun:
    """What :func:`fit` trained, for tests and benchmarks that go on using it.

    Attributes:
        model: The tested model: the best epoch's weights (their average, with
            ``trainer.ema_decay``), in eval mode on the run's device.
        builder: The fitted graph builder (``builder.batch(samples)`` feeds ``model``).
        task: The fitted task (classes, or the target vocabulary and decoding).
        splits: The screened ``train``/``val``/``test`` samples.
        engine: The engine, with its :class:`~graphmm.engine.RunState` and callbacks.
        out: The run directory.
    """

    model: torch.nn.Module
    builder: MultimodalGraphBuilder
    task: Task
    splits: dict[str, list[Sample]]
    engine: Engine
    out: Path


@dataclass
class _Data:
    """The screened data, the fitted builder and task, and the counts for metrics.json."""

    splits: dict[str, list[Sample]]
    builder: MultimodalGraphBuilder
    task: Task
    skipped: int
    truncated: int


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test one model; returns the metrics also written to ``metrics.json``.

    The same as :func:`fit`, without the trained objects.
    """
    return fit(cfg)[0]


def fit(cfg: DictConfig) -> tuple[dict[str, float], TrainedRun]:
    """Train and test one model; returns the metrics also written to ``metrics.json``
    and the trained objects (:class:`TrainedRun`).

    Steps: validate the config, seed, load and screen the data, fit the graph builder
    on the training split (vocabulary, audio statistics), train with early stopping on
    ``trainer.monitor`` keeping the best checkpoint, then evaluate that checkpoint on
    the test split. The loop is a :class:`graphmm.engine.Engine` with one callback per
    concern (checkpoints, early stopping, EMA, logger, progress, missing-modality test).

    A run writes checkpoints atomically after every epoch and every
    ``trainer.checkpoint_every_n_steps`` steps (``checkpoints/step-*.pt``, the newest
    ``trainer.keep_checkpoints`` kept) with everything needed to continue exactly:
    weights, optimizer, scheduler, EMA, RNG states, epoch, step and position in the
    epoch, early-stopping state, history and the composed config.
    ``trainer.resume=auto`` continues from the newest valid one in the run directory,
    ``trainer.resume=last`` from the newest run directory of the same name (see
    :func:`run_directory`), ``trainer.resume=<path>`` from that file; the result
    equals that of an uninterrupted run. A config that differs from the checkpoint's
    outside :data:`graphmm.runstate.RESUME_SAFE_KEYS` is refused, naming each key,
    unless ``trainer.resume_force=true``; a changed ``trainer.max_epochs`` rebuilds
    the learning-rate schedule for the new length.

    Files in the run directory: ``metrics.json`` (deterministic for a seed and
    config), ``timing.json``, ``history.csv`` (one row per epoch), ``curves.png``
    (loss and metrics per epoch), ``confusion.png`` and ``confusion.csv`` (test
    split), ``checkpoints/``; with ``trainer.logger=tensorboard`` also
    ``tensorboard/`` (scalars against the optimizer step: ``train/loss`` every step,
    ``train/epoch_loss``, ``val/loss``, ``val/acc``, ``val/f1``, ``lr`` and ``epoch``
    every epoch, ``test/*`` at the end), appended to when resuming.

    ``trainer.progress`` shows bars on stderr for screening, fitting the graph
    builder, epochs, batches and every evaluation; none of them draws random numbers.
    They appear only when stderr is a terminal (or in a Jupyter notebook), so a log
    file gets no redraw escapes; every epoch also logs one INFO line.

    ``trainer.strategy=ddp`` under ``torchrun`` trains with DistributedDataParallel
    (see :mod:`graphmm.ddp`): ``trainer.batch_size`` is the global batch, metrics are
    gathered from all processes, and only rank 0 writes files.
    """
    validate_config(cfg)
    tcfg = cfg.trainer
    require(tcfg.logger)  # a missing package fails now, not after the data are ready
    ctx = init_distributed(tcfg.device) if tcfg.strategy == "ddp" else DistContext()
    try:
        result = _run(cfg, ctx)
        ctx.barrier()  # no process leaves the group while another still uses it
        return result
    finally:
        if ctx.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(cfg: DictConfig, ctx: DistContext) -> tuple[dict[str, float], TrainedRun]:
    """:func:`fit` within one process of the run."""
    tcfg = cfg.trainer
    out = _prepare_run_dir(cfg, ctx)
    device = resolve_device(tcfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    # the checkpoint to continue from, checked against this config before any data are loaded
    resume = find_resume(cfg, out, device) if tcfg.resume else None
    seed_everything(cfg.seed)
    show = bars_enabled(tcfg.progress) and ctx.is_main  # never into a log file
    t0 = time.perf_counter()
    data = prepare_data(cfg, out, ctx, show)
    engine = build_engine(cfg, data, out, device, ctx, show, fit_wide=resume is None)
    if resume is not None:
        _restore(cfg, engine, data, *resume)
    try:
        engine.fit()
        val, test, predictions = engine.test()
    finally:
        engine.call("teardown")
    s = engine.state
    if ctx.is_main:
        _write_history(out / "history.csv", s.history)
        data.task.write_artefacts(out, s.history, data.splits["test"], predictions)
    metrics: dict[str, float] = {
        **{f"val/{k}": v for k, v in val.items()},
        **{f"test/{k}": v for k, v in test.items()},
        **engine.extra_metrics,
        "best_epoch": s.best_epoch,
        "epochs": len(s.history),
        "steps": s.step,
        "num_params": sum(p.numel() for p in engine.model.parameters()),
        "data/skipped": data.skipped,
        "data/truncated": data.truncated,
    }
    if ctx.is_main:
        write_json(out / "metrics.json", metrics)
        write_json(out / "timing.json", {"time_s": round(time.perf_counter() - t0, 2)})
    log.info("%s (best epoch %d) -> %s", fmt(test, "test"), s.best_epoch, out)
    return metrics, TrainedRun(engine.eval_model, data.builder, data.task, data.splits, engine, out)


def _prepare_run_dir(cfg: DictConfig, ctx: DistContext) -> Path:
    """The run directory (rank 0's, for every process), writable and without the
    temporary files an interrupted write left."""
    # every process writes into rank 0's folder (Hydra may time-stamp each differently)
    out = Path(ctx.broadcast(str(run_directory(cfg)) if ctx.is_main else None))
    if ctx.is_main:
        check_writable(out)
        for folder in (out, out / "checkpoints"):  # before this run writes anything there
            removed = remove_orphaned_temp_files(folder)
            if removed:
                log.info("removed %d temporary file(s) an interrupted write left in %s: %s", len(removed), folder,
                         ", ".join(p.name for p in removed))
    return out


def prepare_data(cfg: DictConfig, out: Path, ctx: DistContext | None = None, progress: bool = False) -> _Data:
    """Load and screen the data (``skipped.csv`` lists what was left out), fit the
    graph builder on the training split and the task on all splits."""
    ctx = ctx or DistContext()
    splits, on_error = load_splits(cfg.data)
    # one list of what was left out, the loader's drops and the screening's, so that the
    # `data:` line, metrics.json and skipped.csv give the same count
    skip_rows = loader_skips(splits)
    read_skipped = len(skip_rows) or int(getattr(splits, "skipped", 0))  # a loader that counts but does not list
    # names of the class ids, when the dataset knows them (e.g. string labels of a manifest)
    class_names = [str(c) for c in getattr(splits, "classes", None) or []] or None
    builder: MultimodalGraphBuilder = instantiate(cfg.graph)
    task = make_task(cfg.model)
    splits, skipped = screen_samples(splits, builder, on_error, progress=progress, task=task, record=skip_rows)
    splits = task.prepare_splits(splits)
    n_skipped = read_skipped + sum(skipped.values())
    if ctx.is_main and skip_rows:
        _write_rows(out / "skipped.csv", skip_rows, SKIPPED_COLUMNS)
    truncated = count_truncated(splits, builder)
    if truncated:
        log.warning(
            "text: truncated %d document(s) to graph.text.max_tokens=%d words (null keeps every word)",
            truncated, builder.text.max_tokens,
        )
    if cfg.model.get("init_from"):
        _builder_from_checkpoint(cfg, builder)
    else:
        fit_builder(builder, splits["train"], progress=progress)
    if cfg.trainer.cache_dir:
        # per-sample features reused by later epochs, runs and sweep jobs
        builder.use_cache(cfg.trainer.cache_dir, memory_mb=cfg.trainer.cache_memory_mb)
    task.fit(splits, class_names)
    log.info(
        "data: %s (skipped %d: %d while reading the files, %s by the sample checks%s)",
        {k: len(v) for k, v in splits.items()}, n_skipped, read_skipped, skipped,
        f"; listed in {out / 'skipped.csv'}" if skip_rows else "",
    )
    log.info("graph: %s", builder)
    return _Data(splits, builder, task, n_skipped, truncated)


def _builder_from_checkpoint(cfg: DictConfig, builder: MultimodalGraphBuilder) -> None:
    """``model.init_from``: the checkpoint's fitted builder (vocabulary, statistics), so
    that its weights see the inputs they were trained on; its graph recipe must be this one."""
    from graphmm.pretrain import checkpoint_path
    from graphmm.utils import load_checkpoint

    path = checkpoint_path(cfg.model.init_from)
    state = load_checkpoint(path, map_location="cpu")
    if "builder" not in state or "config" not in state:
        raise ConfigError(f"model.init_from={str(path)!r} is not a checkpoint of a graphmm run (no builder state)")
    diff = config_diff(state["config"].get("graph", {}), to_container(cfg.graph))
    if diff:
        shown = "; ".join(f"graph.{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:4])
        raise ConfigError(f"model.init_from={str(path)!r} was trained on another graph recipe ({shown}); "
                          f"use the same graph.* config")
    builder.load_state_dict(state["builder"])
    log.info("graph builder from %s (model.init_from): its vocabulary and statistics, not refitted", path)


def build_engine(
    cfg: DictConfig, data: _Data, out: Path, device: torch.device, ctx: DistContext, progress: bool = False,
    fit_wide: bool = True,
) -> Engine:
    """The model, optimizer, scheduler and loaders the config asks for, in an
    :class:`~graphmm.engine.Engine` with the callbacks of ``trainer``. A model with a
    wide path gets it fitted first (``fit_wide``; a resumed run loads it instead)."""
    tcfg, builder, task = cfg.trainer, data.builder, data.task
    model = build_model(cfg.model, builder, **task.model_kwargs())
    started = builder.init_encoders(model)  # e.g. graph.text.word_vectors
    if started:
        log.info("encoders of %s started from the training data's statistics", ", ".join(started))
    wide_metrics = {}
    if fit_wide and getattr(model, "wide", None) is not None:
        wide_metrics = fit_wide_path(model, builder, data.splits, tcfg.eval_batch_size, progress)
    if cfg.model.get("init_from"):
        from graphmm.pretrain import load_pretrained

        try:
            loaded = load_pretrained(model, cfg.model.init_from)
        except ValueError as err:  # another model config: the user's to fix, one line
            raise ConfigError(str(err)) from None
        log.info("model.init_from: %d encoder and GNN tensors from %s", len(loaded), cfg.model.init_from)
    model = task.wrap_model(model, builder, data.splits["train"]).to(device)
    optimizer = instantiate(tcfg.optimizer)(params=model.parameters())
    scheduler = instantiate(tcfg.scheduler)(optimizer=optimizer) if tcfg.scheduler is not None else None
    log.info("model: %d parameters", sum(p.numel() for p in model.parameters()))
    collate = task.collate(builder)
    evaluation = partial(make_loader, builder=builder, batch_size=tcfg.eval_batch_size, shuffle=False,
                         num_workers=tcfg.num_workers, seed=cfg.seed, collate_fn=collate, ctx=ctx)
    augment = Augmentations.from_config(to_container(tcfg.augment)) if tcfg.get("augment") is not None else None
    if augment is not None:
        log.info("augment (training batches only): %s", augment)
    train_builder = builder.with_augment(augment) if augment is not None else builder
    loaders = {
        "train": make_loader(data.splits["train"], train_builder, tcfg.batch_size, True, tcfg.num_workers, cfg.seed,
                             tcfg.modality_dropout, task.collate(train_builder), ctx, augment_seeds=augment is not None),
        "val": evaluation(data.splits["val"]),
        "test": evaluation(data.splits["test"]),
    }
    ckpt_dir = out / "checkpoints"
    extra = partial(_checkpoint_extra, to_container(cfg), builder, task, wide_metrics)
    callbacks: list[Callback] = [NonFiniteLossGuard(ckpt_dir)]
    if tcfg.ema_decay:
        callbacks.append(EMACallback(tcfg.ema_decay))
    callbacks += [
        EarlyStopping(tcfg.monitor, tcfg.patience),
        LoggerCallback(tcfg.logger, out),
        ProgressCallback(progress, tcfg.monitor),
        CheckpointCallback(ckpt_dir, tcfg.keep_checkpoints, tcfg.checkpoint_every_n_steps, extra),  # after the above
    ]
    if tcfg.test_missing_modalities:
        callbacks.append(MissingModalityTest(builder, data.splits, evaluation))
    engine = Engine(
        model, task, optimizer, loaders, data.splits, device, max_epochs=tcfg.max_epochs,
        batch_size=tcfg.batch_size, scheduler=scheduler, callbacks=callbacks, grad_clip=tcfg.grad_clip,
        label_smoothing=tcfg.label_smoothing, limit_train_batches=tcfg.limit_train_batches, ctx=ctx,
        progress=progress,
    )
    engine.extra_metrics.update(wide_metrics)
    return engine


def fit_wide_path(model: torch.nn.Module, builder: MultimodalGraphBuilder, splits: Mapping[str, Sequence[Sample]],
                  batch_size: int, progress: bool = False) -> dict[str, float]:
    """Fit ``model``'s wide path (:meth:`graphmm.nn.GraphClassifier.fit_wide`) on the
    training split, choosing its weighting and regularisation by cross-validation on the
    training rows; logs the fit.

    Returns the linear model's own scores for ``metrics.json``: ``wide/c`` (the chosen
    C), ``wide/val_acc``, ``wide/test_acc`` (reported, never used to choose) and
    ``wide/oof_acc`` (its out-of-fold accuracy on the training split).
    """
    t0 = time.perf_counter()

    def batches(name: str) -> Iterator[tuple[Any, torch.Tensor]]:
        samples = splits[name]
        starts = range(0, len(samples), batch_size)
        for i in progress_bar(starts, enabled=progress, desc=f"wide path: {name} rows", unit="batch"):
            yield builder.collate(samples[i : i + batch_size])

    fit = model.fit_wide(batches("train"), batches("val"))
    wide = model.wide.eval()
    with torch.no_grad():
        hits = [(wide(g).argmax(1) == y).sum().item() for g, y in batches("test")]
    metrics = {"wide/c": fit.c, "wide/val_acc": fit.val_acc if fit.val_acc is not None else float("nan"),
               "wide/test_acc": sum(hits) / max(len(splits["test"]), 1)}
    if fit.oof_acc is not None:
        metrics["wide/oof_acc"] = fit.oof_acc
    log.info("%s (%.1f s)", fit.summary(), time.perf_counter() - t0)
    return metrics


def _checkpoint_extra(config: dict[str, Any], builder: MultimodalGraphBuilder, task: Task,
                      wide_metrics: Mapping[str, float]) -> dict[str, Any]:
    """What every checkpoint and ``best.pt`` hold besides weights: the resolved config,
    the graph builder's and the task's state (what ``predict`` needs to rebuild the run),
    and the wide path's fit scores (a resumed run loads the fit instead of redoing it)."""
    return {"config": config, "builder": builder.state_dict(), **task.state_dict(),
            "wide_metrics": {k: float(v) for k, v in wide_metrics.items()}}


def _restore(
    cfg: DictConfig, engine: Engine, data: _Data, state: dict[str, Any], path: Path, changes: Mapping[str, Any]
) -> None:
    """Continue from ``state`` (found by :func:`find_resume`): the builder and the task
    first (``best.pt`` is rewritten with them), then the engine."""
    data.builder.load_state_dict(state["builder"])
    data.task.load_state_dict(state)
    # the wide path's fit scores, for metrics.json (checkpoints from before they were kept have none)
    wide = state.get("wide_metrics") or {}
    engine.extra_metrics.update(wide)
    rebuild = None
    if any(k.startswith("trainer.scheduler.") for k in changes):
        # e.g. T_max following a changed max_epochs: the new schedule, at the epoch reached
        rebuild = partial(_rebuilt_schedule, cfg.trainer.scheduler)
    engine.restore(state, path, rebuild)
    log.info("resumed from %s (epoch %d, step %d)", path, engine.state.epoch, engine.state.step)


def _rebuilt_schedule(scheduler_cfg: DictConfig, old: Any) -> Any:
    """The schedule ``scheduler_cfg`` builds, brought to the epoch ``old`` reached."""
    scheduler = rebuild_scheduler(instantiate(scheduler_cfg), old.optimizer, old.last_epoch)
    log.info("learning-rate schedule rebuilt for the new config: lr=%.6g at epoch %d",
             old.optimizer.param_groups[0]["lr"], scheduler.last_epoch)
    return scheduler


class MissingModalityTest(Callback):
    """``trainer.test_missing_modalities``: after the test, score the samples that have a
    modality and another one, as they are (``<split>_with_<m>/*``) and with that modality
    removed (``<split>_without_<m>/*``), and count them (``<split>_without_<m>/n``), on
    the validation and the test split; see :func:`without_each_modality`. The
    validation scores are there to choose a model's robustness on data other than the
    test's. The results go to ``metrics.json`` after ``test/*``.

    Args:
        builder: The fitted graph builder (which modalities the model reads).
        splits: The samples of ``"val"`` and ``"test"``.
        make_loader: ``samples -> DataLoader`` for evaluation.
    """

    def __init__(self, builder: MultimodalGraphBuilder, splits: Mapping[str, Sequence[Sample]],
                 make_loader: Callable[[Sequence[Sample]], DataLoader]) -> None:
        self.builder, self.splits, self.make_loader = builder, splits, make_loader

    def on_test_end(self, engine: Engine, metrics: dict[str, float], predictions: Any) -> None:
        without: dict[str, float] = {}
        used = list(self.builder.builders)
        for split in ("val", "test"):
            everything = self.splits[split]
            for modality, pair in without_each_modality(everything, used).items():
                for prefix, samples in zip((f"{split}_with_{modality}", f"{split}_without_{modality}"), pair):
                    if split == "test" and prefix.startswith("test_with_") and len(samples) == len(everything):
                        scores = metrics  # the whole test split: already scored
                    else:
                        scores, _ = engine.task.evaluate(engine.eval_model, self.make_loader(samples), samples,
                                                         engine.device, progress=engine.progress,
                                                         desc=prefix.replace("_", " "), final=True, ctx=engine.ctx)
                    without.update({f"{prefix}/{k}": v for k, v in scores.items()})
                without[f"{split}_without_{modality}/n"] = float(len(pair[0]))
        if without:
            engine.log(without)
            log.info("%s", " ".join(f"{k}={v:.4f}" for k, v in without.items()))
        engine.extra_metrics.update(without)


def without_each_modality(
    samples: Sequence[Sample], used: Sequence[str] | None = None
) -> dict[str, tuple[list[Sample], list[Sample]]]:
    """For each modality ``m`` in ``used``: the samples that have ``m`` and at least one
    other used modality, as they are and with ``m`` removed.

    Both lists hold the same samples in the same order, so a model's scores on the two
    compare like with like: the difference is what losing ``m`` costs. Samples without
    ``m``, or with nothing else the model reads, are left out of both. A modality no
    sample can lose gives no entry.

    Args:
        samples: Test samples.
        used: The modalities the model reads (e.g. the graph builder's); others are
            ignored. Default: every registered modality.

    Returns:
        ``{m: (with_m, without_m)}``.

    Example:
        >>> import torch
        >>> s = [Sample(text="a seven", image=torch.zeros(1, 4, 4), label=7), Sample(text="one", label=1)]
        >>> {m: [x.modalities for x in w] for m, (_, w) in without_each_modality(s).items()}
        {'text': [('image',)], 'image': [('text',)]}
    """
    from graphmm.modalities import list_modalities

    used = list_modalities() if used is None else list(used)
    out: dict[str, tuple[list[Sample], list[Sample]]] = {}
    for m in used:
        keep = [s for s in samples if m in s.modalities and (set(s.modalities) & set(used)) - {m}]
        if keep:
            out[m] = (keep, [s.without(m) for s in keep])
    return out


def _write_rows(path: Path, rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def describe_run(cfg: DictConfig, choices: Mapping[str, Any] | None = None) -> str:
    """One line naming what a run trains, e.g. ``run digits: data=digits
    model=hetero_gnn(conv=gat, hidden=64, layers=3) trainer(max_epochs=40, batch_size=64,
    lr=0.003, device=cpu) seed=0 -> outputs/digits/...``.

    Args:
        cfg: The composed config.
        choices: The option picked in each config group (Hydra's
            ``HydraConfig.get().runtime.choices``); a group without one is named by its
            ``_target_``'s class, and ``experiment``, ``hparams_search`` and ``debug``
            are named only when picked.
    """
    choices = dict(choices or {})

    def picked(group: str) -> str:
        if choices.get(group):
            return str(choices[group])
        return str(OmegaConf.select(cfg, f"{group}._target_", default="?")).rsplit(".", 1)[-1]

    model = cfg.model
    # `conv` only means something to the graph models; the baselines ignore it
    arch = [f"conv={model.conv}"] if "conv" in model and "Graph" in str(model.get("_target_", "Graph")) else []
    arch += [f"{label}={model[key]}" for key, label in (("hidden", "hidden"), ("num_layers", "layers")) if key in model]
    t = cfg.trainer
    trainer = [f"max_epochs={t.max_epochs}", f"batch_size={t.batch_size}",
               f"lr={OmegaConf.select(t, 'optimizer.lr', default='?')}", f"device={t.device}"]
    picks = [f"{g}={choices[g]}" for g in ("experiment", "hparams_search", "debug") if choices.get(g)]
    return (f"run {cfg.name}: data={picked('data')} model={picked('model')}({', '.join(arch)}) "
            f"trainer({', '.join(trainer)}) seed={cfg.seed} {' '.join(picks)}".rstrip()
            + f" -> {output_dir(cfg)}")


if __name__ == "__main__":
    # `python -m graphmm.train` (and `torchrun -m graphmm.train`): the command lives in graphmm.cli
    from graphmm.cli.train import main

    sys.exit(main())
