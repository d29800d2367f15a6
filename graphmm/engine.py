"""The training loop: an :class:`Engine` that runs epochs of optimizer steps and
validation, and :class:`Callback` objects that do everything else at its hooks.

The loop (:meth:`Engine.fit`) is epochs -> batches -> one optimizer step, then
validation once per epoch. Checkpoints (:class:`CheckpointCallback`), early stopping
(:class:`EarlyStopping`), the weight average (:class:`EMACallback`), the
non-finite-loss check (:class:`NonFiniteLossGuard`), experiment loggers
(:class:`LoggerCallback`) and progress bars (:class:`ProgressCallback`) are each one
callback, in the shape of Lightning's ``Callback``; graphmm does not depend on
Lightning. :func:`graphmm.train.train` composes an engine from the config.

Hooks run in the order of ``Engine.callbacks``; every hook of :class:`Callback` is a
no-op, so a callback overrides only the ones it needs. What a resumed run needs is in
:class:`RunState` (saved in every checkpoint under ``"run"``) and in what callbacks add
to a checkpoint in :meth:`Callback.on_save_checkpoint`.

Example:
    >>> class CountSteps(Callback):
    ...     def __init__(self):
    ...         self.steps = 0
    ...     def on_train_batch_end(self, engine, loss):
    ...         self.steps += 1
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from graphmm.ddp import DistContext
from graphmm.loggers import make_logger
from graphmm.progress import progress_bar
from graphmm.runstate import checkpoint_name, load_weights, prune_checkpoints, rng_state, set_rng_state
from graphmm.tasks import LOWER_IS_BETTER, Task
from graphmm.utils import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

__all__ = [
    "Callback", "CheckpointCallback", "EarlyStopping", "EMACallback", "Engine", "LoggerCallback",
    "NonFiniteLossGuard", "ProgressCallback", "RunState", "improved",
]


@dataclass
class RunState:
    """Where a run is; saved in every checkpoint as ``"run"`` (:meth:`state_dict`).

    Attributes:
        epoch: The epoch in progress (or just finished, when ``epoch_end``).
        epoch_end: The checkpoint this state came from was written at an epoch's end.
        batch: Batches of ``epoch`` done.
        step: Optimizer steps done.
        running: Sum of ``loss * batch size`` over this epoch's batches (this process).
        seen: Samples in ``running``.
        best: Best value of the monitored metric.
        best_loss: Validation loss at the best epoch: breaks ties of the monitored metric.
        best_epoch: Epoch of ``best``; ``-1`` before the first validation.
        bad_epochs: Epochs since the last improvement.
        stopped: Early stopping ended the run.
        history: One row per finished epoch (``epoch``, ``train/loss``, ``val/*``).
    """

    epoch: int = 0
    epoch_end: bool = False
    batch: int = 0
    step: int = 0
    running: float = 0.0
    seen: int = 0
    best: float | None = None
    best_loss: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self, epoch_end: bool) -> dict[str, Any]:
        """Plain values for a checkpoint written mid-epoch or at an epoch's end."""
        return {**dataclasses.asdict(self), "epoch_end": epoch_end}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the values of a checkpoint's ``"run"``; keys it lacks keep their value."""
        for f in dataclasses.fields(self):
            if f.name in state:
                setattr(self, f.name, state[f.name])

    def start_epoch(self) -> None:
        """Forget the position in the epoch (the next epoch starts at its first batch)."""
        self.batch, self.running, self.seen = 0, 0.0, 0


def improved(
    monitor: str, value: float, best: float | None, loss: float | None = None, best_loss: float | None = None
) -> bool:
    """Whether ``value`` of ``monitor`` beats ``best``. An exact tie on a metric
    other than the loss goes to the lower validation loss: accuracy on a few hundred
    samples ties often, and of two epochs with equal accuracy the one with the lower
    loss gives the validation labels more probability."""
    if best is None:
        return True
    if value == best and loss is not None and best_loss is not None and monitor.split("/")[-1] != "loss":
        return loss < best_loss
    return value < best if monitor.split("/")[-1] in LOWER_IS_BETTER else value > best


class Callback:
    """Base class of the engine's callbacks; every hook does nothing.

    Hooks, in the order a run calls them: :meth:`setup` (once, when the engine is
    built), :meth:`on_load_checkpoint` (when resuming), :meth:`on_fit_start`; per
    epoch :meth:`on_train_epoch_start`, per batch :meth:`on_before_backward`,
    :meth:`on_optimizer_step`, :meth:`on_train_batch_end`; then
    :meth:`on_validation_start`, :meth:`on_validation_end`, :meth:`on_train_epoch_end`;
    :meth:`on_fit_end`, :meth:`on_test_end`, and :meth:`teardown` (always, also after
    an error). :meth:`on_save_checkpoint` runs whenever a checkpoint is written and
    :meth:`on_log` whenever the engine logs scalars.
    """

    def setup(self, engine: Engine) -> None:
        """The engine has its model, optimizer and loaders (not yet the DDP wrapper);
        nothing has run yet."""

    def on_load_checkpoint(self, engine: Engine, checkpoint: Mapping[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` put into ``checkpoint``."""

    def on_save_checkpoint(self, engine: Engine, checkpoint: dict[str, Any]) -> None:
        """Add entries to ``checkpoint`` (plain types and tensors) before it is written."""

    def on_fit_start(self, engine: Engine) -> None:
        """Training is about to start (or to continue, when resumed)."""

    def on_train_epoch_start(self, engine: Engine) -> None:
        """An epoch starts; ``engine.state.batch`` batches of it are already done."""

    def on_before_backward(self, engine: Engine, loss: torch.Tensor) -> None:
        """The loss of a batch, before the gradients are computed."""

    def on_optimizer_step(self, engine: Engine) -> None:
        """Right after ``optimizer.step()``, before the step is counted."""

    def on_train_batch_end(self, engine: Engine, loss: float) -> None:
        """A batch's step is counted in ``engine.state``; ``loss`` is its mean loss."""

    def on_validation_start(self, engine: Engine) -> None:
        """The epoch's batches are done; validation follows."""

    def on_validation_end(self, engine: Engine, row: dict[str, float]) -> None:
        """The epoch's history row (``epoch``, ``train/loss``, ``val/*``) was appended."""

    def on_train_epoch_end(self, engine: Engine) -> None:
        """The epoch is over and ``engine.state`` points at the next one's start."""

    def on_fit_end(self, engine: Engine) -> None:
        """The last epoch is over (or early stopping ended training)."""

    def on_test_end(self, engine: Engine, metrics: dict[str, float], predictions: Any) -> None:
        """The best weights were tested; ``engine.extra_metrics`` takes further results."""

    def on_log(self, engine: Engine, scalars: Mapping[str, float]) -> None:
        """Scalars at ``engine.state.step``."""

    def teardown(self, engine: Engine) -> None:
        """The run is over, also after an error: release files and bars."""


class Engine:
    """Trains ``model`` on ``loaders["train"]``, validating on ``loaders["val"]`` every
    epoch, and tests on ``loaders["test"]`` (:meth:`test`).

    Args:
        model: The module to train.
        task: Its loss and evaluation (:class:`graphmm.tasks.Task`).
        optimizer: Over ``model``'s parameters.
        loaders: ``"train"`` (its sampler an :class:`~graphmm.runstate.EpochSampler`),
            ``"val"`` and ``"test"``; see :func:`graphmm.train.make_loader`.
        splits: The samples of ``"val"`` and ``"test"``, in loader order.
        device: Where batches go.
        max_epochs: Epochs of the whole run.
        batch_size: Global training batch (to skip the done part of an epoch on resume).
        scheduler: Stepped once per epoch. Default: ``None``.
        callbacks: Run at each hook, in this order. Default: none.
        grad_clip: Gradient norm clipping; ``None`` or ``0``: none. Default: ``None``.
        label_smoothing: Of the training loss. Default: ``0.0``.
        limit_train_batches: Batches per epoch at most. Default: ``None`` (all).
        ctx: The DDP context; the default is a single process.
        progress: Show the evaluation bars. Default: ``False``.
    """

    def __init__(
        self, model: torch.nn.Module, task: Task, optimizer: torch.optim.Optimizer, loaders: Mapping[str, DataLoader],
        splits: Mapping[str, Sequence[Any]], device: torch.device, *, max_epochs: int, batch_size: int,
        scheduler: Any = None, callbacks: Sequence[Callback] = (), grad_clip: float | None = None,
        label_smoothing: float = 0.0, limit_train_batches: int | None = None, ctx: DistContext | None = None,
        progress: bool = False,
    ) -> None:
        self.model, self.task, self.optimizer, self.scheduler = model, task, optimizer, scheduler
        self.loaders, self.splits, self.device = dict(loaders), splits, device
        self.max_epochs, self.batch_size, self.grad_clip = max_epochs, batch_size, grad_clip
        self.label_smoothing, self.limit_train_batches = label_smoothing, limit_train_batches
        self.ctx, self.progress, self.callbacks = ctx or DistContext(), progress, list(callbacks)
        self.eval_model: torch.nn.Module = model  # EMACallback evaluates its average instead
        self.state = RunState()
        self.first_epoch = 0  # where fit() starts
        self.resumed, self.resume_source = False, ""
        self.extra_metrics: dict[str, float] = {}  # results of on_test_end hooks, in metrics.json after test/*
        self.call("setup")  # before DDP wraps the model: an average starts from this process's weights
        # DDP averages the gradients of the replicas; a sample without some modality leaves
        # that encoder unused in a step, hence find_unused_parameters
        self.train_model = (
            torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
            if self.ctx.enabled else model
        )

    def call(self, hook: str, *args: Any) -> None:
        """Run ``hook`` of every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def log(self, scalars: Mapping[str, float]) -> None:
        """Hand ``scalars`` at the current step to the callbacks (:meth:`Callback.on_log`)."""
        self.call("on_log", scalars)

    def restore(
        self, checkpoint: Mapping[str, Any], source: str | Path,
        rebuild_scheduler: Callable[[Any], Any] | None = None,
    ) -> None:
        """Continue from a resumable checkpoint: weights, optimizer, scheduler, state,
        what callbacks saved, and last the RNG states (nothing may draw after them).

        ``rebuild_scheduler``, when given, maps the restored scheduler to the one this
        run uses (e.g. a schedule rebuilt for a changed ``trainer.max_epochs``).
        """
        load_weights(self.model, checkpoint["train_model"], source)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            if rebuild_scheduler is not None:
                self.scheduler = rebuild_scheduler(self.scheduler)
        self.state.load_state_dict(checkpoint["run"])
        self.resumed, self.resume_source = True, str(source)
        self.call("on_load_checkpoint", checkpoint)
        set_rng_state(checkpoint["rng"])

    def checkpoint(self, epoch_end: bool) -> dict[str, Any]:
        """The engine's part of a resumable checkpoint; callbacks add theirs."""
        return {
            "model": self.eval_model.state_dict(),
            "train_model": self.model.state_dict(),
            "ema": None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "run": self.state.state_dict(epoch_end),
            "epoch_end": epoch_end,
            "rng": rng_state(),
        }

    def fit(self) -> None:
        """Train from ``state`` to ``max_epochs`` or an early stop."""
        s = self.state
        self.first_epoch = s.epoch + 1 if s.epoch_end else s.epoch
        if s.epoch_end:
            s.start_epoch()
        self.call("on_fit_start")
        for epoch in [] if s.stopped else range(self.first_epoch, self.max_epochs):
            s.epoch = epoch
            self.train_epoch()
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            if self.scheduler is not None:
                self.scheduler.step()
            self.validate(lr)
            s.start_epoch()
            self.call("on_train_epoch_end")
            if s.stopped:
                break
        self.call("on_fit_end")

    def train_epoch(self) -> None:
        """The batches of ``state.epoch`` not done yet, one optimizer step each."""
        s, loader, limit = self.state, self.loaders["train"], self.limit_train_batches
        self.model.train()
        loader.sampler.set_epoch(s.epoch, skip=s.batch * self.batch_size)
        self.call("on_train_epoch_start")
        for g, y in loader:
            if limit is not None and s.batch >= limit:
                break
            self.train_step(g.to(self.device), y.to(self.device))

    def train_step(self, g: Any, y: torch.Tensor) -> None:
        """Loss, backward, clipping, optimizer step on one batch."""
        loss = self.task.loss(self.train_model, g, y, self.label_smoothing)
        self.call("on_before_backward", loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.call("on_optimizer_step")
        s, value = self.state, float(loss)
        s.step += 1
        s.batch += 1
        s.running += value * y.shape[0]
        s.seen += y.shape[0]
        self.call("on_train_batch_end", value)

    def evaluate(self, split: str, desc: str, final: bool = False) -> tuple[dict[str, float], Any]:
        """``task.evaluate`` of the evaluated model on ``split``: metrics and predictions."""
        return self.task.evaluate(self.eval_model, self.loaders[split], self.splits[split], self.device,
                                  progress=self.progress, desc=desc, final=final, ctx=self.ctx)

    def validate(self, lr: float) -> None:
        """Validate the epoch, append its history row, log it."""
        s = self.state
        self.call("on_validation_start")
        val, _ = self.evaluate("val", "val")
        running, seen = map(sum, zip(*self.ctx.all_gather((s.running, s.seen))))
        row = {"epoch": s.epoch, "train/loss": running / max(seen, 1), **{f"val/{k}": v for k, v in val.items()}}
        s.history.append(row)
        self.log({"train/epoch_loss": row["train/loss"], **{f"val/{k}": v for k, v in val.items()}, "lr": lr,
                  "epoch": s.epoch})
        log.info("epoch %d: train/loss=%.4f %s", s.epoch, row["train/loss"], fmt(val, "val"))
        self.call("on_validation_end", row)

    def test(self) -> tuple[dict[str, float], dict[str, float], Any]:
        """Validation and test metrics of the evaluated model, with the final decoding;
        also the test predictions. Runs :meth:`Callback.on_test_end`."""
        val, _ = self.evaluate("val", "val (best)", final=True)
        test, predictions = self.evaluate("test", "test", final=True)
        self.log({f"test/{k}": v for k, v in test.items()})
        self.call("on_test_end", test, predictions)
        return val, test, predictions


def fmt(metrics: Mapping[str, float], prefix: str) -> str:
    """``prefix/key=value`` pairs with four decimals, for the log."""
    return " ".join(f"{prefix}/{k}={v:.4f}" for k, v in metrics.items())


# ---------------------------------------------------------------- callbacks
class NonFiniteLossGuard(Callback):
    """Stop at the first non-finite loss (on any process), before it reaches the
    weights; the message names the epoch, the step and where the good checkpoints are."""

    def __init__(self, ckpt_dir: Path) -> None:
        self.ckpt_dir = ckpt_dir

    def on_before_backward(self, engine: Engine, loss: torch.Tensor) -> None:
        if not engine.ctx.all_finite(loss):
            raise FloatingPointError(
                f"non-finite loss {float(loss)} at epoch {engine.state.epoch}, step {engine.state.step}; stopping. "
                f"The last good checkpoints are in {self.ckpt_dir}"
            )


class EMACallback(Callback):
    """Evaluate and checkpoint an exponential moving average of the weights (and
    buffers), updated after every optimizer step: it smooths the epoch-to-epoch noise
    that early stopping would pick up. Saved in checkpoints as ``"ema"``.

    Args:
        decay: Weight of the old average, in ``(0, 1)``.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: AveragedModel | None = None

    def setup(self, engine: Engine) -> None:
        self.average = AveragedModel(engine.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        engine.eval_model = self.average.module

    def on_optimizer_step(self, engine: Engine) -> None:
        self.average.update_parameters(engine.model)

    def on_save_checkpoint(self, engine: Engine, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.average.state_dict()

    def on_load_checkpoint(self, engine: Engine, checkpoint: Mapping[str, Any]) -> None:
        if checkpoint.get("ema") is not None:
            load_weights(self.average, checkpoint["ema"], engine.resume_source)


class EarlyStopping(Callback):
    """Track the best value of ``monitor`` (``engine.state.best``, ``best_epoch``) and
    stop after ``patience`` epochs without improvement (:func:`improved`: an exact tie
    goes to the lower validation loss).

    Args:
        monitor: ``val/<metric>``; lower is better for :data:`graphmm.tasks.LOWER_IS_BETTER`.
        patience: Epochs without improvement before stopping.
    """

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor, self.patience = monitor, patience

    def on_load_checkpoint(self, engine: Engine, checkpoint: Mapping[str, Any]) -> None:
        # a changed trainer.patience undoes, or makes, an early stop
        engine.state.stopped = engine.state.bad_epochs >= self.patience

    def on_validation_end(self, engine: Engine, row: dict[str, float]) -> None:
        s = engine.state
        if improved(self.monitor, row[self.monitor], s.best, row.get("val/loss"), s.best_loss):
            s.best, s.best_loss, s.best_epoch, s.bad_epochs = row[self.monitor], row.get("val/loss"), s.epoch, 0
        else:
            s.bad_epochs += 1
        if s.bad_epochs >= self.patience:
            s.stopped = True
            log.info("early stop at epoch %d: no %s improvement for %d epochs", s.epoch, self.monitor, self.patience)


class CheckpointCallback(Callback):
    """Resumable checkpoints ``step-<n>[-end].pt`` every ``every_n_steps`` steps and at
    every epoch's end (the newest ``keep`` kept), and ``best.pt``: the weights of the
    epoch :class:`EarlyStopping` marks best, loaded back for testing at the end. Only
    rank 0 writes. Place it after :class:`EarlyStopping` and :class:`EMACallback`.

    Args:
        ckpt_dir: The folder.
        keep: Resumable checkpoints kept.
        every_n_steps: Also checkpoint mid-epoch; ``None``: only at epoch ends.
        extra: Entries of every checkpoint and of ``best.pt`` besides the weights (the
            config, the graph builder's and the task's state), computed when writing.
    """

    def __init__(self, ckpt_dir: Path, keep: int, every_n_steps: int | None = None,
                 extra: Callable[[], dict[str, Any]] = dict) -> None:
        self.ckpt_dir, self.keep, self.every_n_steps, self.extra = ckpt_dir, keep, every_n_steps, extra
        # a copy of the best weights, so that any checkpoint can rebuild best.pt
        self.best_weights: dict[str, torch.Tensor] | None = None

    def save_best(self, engine: Engine) -> None:
        """Write ``best.pt`` from :attr:`best_weights` (rank 0)."""
        if engine.ctx.is_main:
            save_checkpoint(self.ckpt_dir / "best.pt",
                            {"model": self.best_weights, **self.extra(), "epoch": engine.state.best_epoch})

    def save(self, engine: Engine, epoch_end: bool) -> None:
        """Write a resumable checkpoint and prune older ones; refuse diverged weights."""
        # never let a diverged model replace the last good checkpoint on disk
        if not all(bool(torch.isfinite(p).all()) for p in engine.model.parameters()):
            raise FloatingPointError(
                f"the weights became non-finite at epoch {engine.state.epoch}, step {engine.state.step}; stopping. "
                f"The last good checkpoints are in {self.ckpt_dir}"
            )
        if not engine.ctx.is_main:
            return
        checkpoint = {**engine.checkpoint(epoch_end), "best_model": self.best_weights, **self.extra()}
        engine.call("on_save_checkpoint", checkpoint)
        save_checkpoint(self.ckpt_dir / checkpoint_name(engine.state.step, epoch_end), checkpoint)
        prune_checkpoints(self.ckpt_dir, self.keep)

    def on_load_checkpoint(self, engine: Engine, checkpoint: Mapping[str, Any]) -> None:
        self.best_weights = checkpoint.get("best_model")
        if self.best_weights is not None:
            self.save_best(engine)

    def on_train_batch_end(self, engine: Engine, loss: float) -> None:
        if self.every_n_steps and engine.state.step % self.every_n_steps == 0:
            self.save(engine, epoch_end=False)

    def on_train_epoch_end(self, engine: Engine) -> None:
        if engine.state.best_epoch == engine.state.epoch:  # this epoch is the new best
            self.best_weights = copy.deepcopy(engine.eval_model.state_dict())
            self.save_best(engine)
        self.save(engine, epoch_end=True)

    def on_fit_end(self, engine: Engine) -> None:
        engine.ctx.barrier()  # best.pt is written by rank 0
        best = load_checkpoint(self.ckpt_dir / "best.pt", map_location=engine.device)
        engine.eval_model.load_state_dict(best["model"])


class LoggerCallback(Callback):
    """Scalars to an experiment logger (:func:`graphmm.loggers.make_logger`), against
    the global step: ``train/loss`` every step, whatever the engine logs otherwise.

    A resumed run appends to the same folder and hides what the interrupted run wrote
    after its checkpoint (steps > ``state.step``); a fresh run hides whatever an
    earlier run left there. Loggers draw no random numbers.

    Args:
        kind: ``trainer.logger`` (``None``: none; also on processes other than rank 0).
        run_dir: The run directory.
    """

    def __init__(self, kind: str | None, run_dir: Path) -> None:
        self.kind, self.run_dir = kind, run_dir
        self.logger: Any = None  # made at fit start, when the step a resumed run continues from is known

    def on_fit_start(self, engine: Engine) -> None:
        kind = self.kind if engine.ctx.is_main else None
        self.logger = make_logger(kind, self.run_dir, purge_step=engine.state.step + 1 if engine.resumed else 0)

    def on_train_batch_end(self, engine: Engine, loss: float) -> None:
        self.logger.log_scalars({"train/loss": loss}, engine.state.step)

    def on_log(self, engine: Engine, scalars: Mapping[str, float]) -> None:
        if self.logger is not None:
            self.logger.log_scalars(scalars, engine.state.step)

    def on_save_checkpoint(self, engine: Engine, checkpoint: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.flush()  # the events never lag behind the checkpoint a resumed run starts from

    def teardown(self, engine: Engine) -> None:
        if self.logger is not None:
            self.logger.close()


class ProgressCallback(Callback):
    """Bars for the epochs (with the train loss and the validation metrics) and for
    each epoch's batches (with the running loss), via :func:`graphmm.progress.progress_bar`.

    Args:
        enabled: Draw them (:func:`graphmm.progress.bars_enabled`).
        monitor: Also shown on the epoch bar.
    """

    def __init__(self, enabled: bool, monitor: str) -> None:
        self.enabled, self.monitor = enabled, monitor
        self.epochs: Any = None
        self.batches: Any = None

    def on_fit_start(self, engine: Engine) -> None:
        self.epochs = progress_bar(enabled=self.enabled, desc="epochs", initial=engine.first_epoch,
                                   total=engine.max_epochs, leave=True)

    def on_train_epoch_start(self, engine: Engine) -> None:
        s, limit = engine.state, engine.limit_train_batches
        todo = s.batch + len(engine.loaders["train"])  # batches of this epoch, done ones included
        self.batches = progress_bar(enabled=self.enabled, desc=f"epoch {s.epoch}", initial=s.batch,
                                    total=todo if limit is None else min(limit, todo))

    def on_train_batch_end(self, engine: Engine, loss: float) -> None:
        self.batches.update()
        self.batches.set_postfix(loss=f"{engine.state.running / engine.state.seen:.4f}")

    def on_validation_start(self, engine: Engine) -> None:
        self.batches.close()

    def on_validation_end(self, engine: Engine, row: dict[str, float]) -> None:
        shown = {"loss": f"{row['train/loss']:.4f}"}
        # the task's headline metric (acc, exact), if it has one, then the monitored one
        for key in ("val/acc", "val/exact", self.monitor):
            if key in row:
                shown[key.replace("/", "_")] = f"{row[key]:.4f}"
        self.epochs.set_postfix(shown)

    def on_train_epoch_end(self, engine: Engine) -> None:
        self.epochs.update()

    def teardown(self, engine: Engine) -> None:
        for bar in (self.batches, self.epochs):
            if bar is not None:
                bar.close()
