"""The training engine (graphmm.engine), its callbacks, ``fit(cfg) -> (metrics, objects)``
and tasks chosen by ``_target_`` or by registered name (graphmm.tasks)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from graphmm.config import ConfigError, validate_config
from graphmm.ddp import DistContext
from graphmm.engine import Callback, EarlyStopping, Engine, RunState
from graphmm.tasks import ClassificationTask, GenerationTask, list_tasks, make_task, task_class
from graphmm.train import build_engine, fit, make_loader, prepare_data

TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1"]


class Recorder(Callback):
    """Counts every hook it sees, and the step at each batch end."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.steps: list[int] = []

    def __getattribute__(self, name: str):
        if name.startswith("on_") or name in ("setup", "teardown"):
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)

    def on_train_batch_end(self, engine: Engine, loss: float) -> None:
        self.steps.append(engine.state.step)


def test_fit_returns_the_metrics_and_the_tested_objects(make_cfg, tmp_path):
    metrics, run = fit(make_cfg(TINY))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert run.out == tmp_path / "run" and run.engine.state.step == metrics["steps"]
    # the returned model, builder and task reproduce the test score: they are what was tested
    loader = make_loader(run.splits["test"], run.builder, 64, shuffle=False, collate_fn=run.task.collate(run.builder))
    again, _ = run.task.evaluate(run.model, loader, run.splits["test"], torch.device("cpu"))
    assert again["acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert isinstance(run.task, ClassificationTask) and run.task.num_classes == 10


def test_hooks_run_once_per_batch_epoch_and_run(make_cfg, tmp_path):
    cfg = make_cfg(TINY)
    validate_config(cfg)
    data = prepare_data(cfg, tmp_path / "run")
    engine = build_engine(cfg, data, tmp_path / "run", torch.device("cpu"), DistContext())
    recorder = Recorder()
    engine.callbacks.append(recorder)
    engine.fit()
    engine.test()
    epochs, per_epoch = cfg.trainer.max_epochs, cfg.trainer.limit_train_batches
    assert recorder.steps == list(range(1, epochs * per_epoch + 1))
    c = recorder.calls
    assert c["on_train_batch_end"] == c["on_before_backward"] == c["on_optimizer_step"] == epochs * per_epoch
    assert c["on_train_epoch_start"] == c["on_validation_end"] == c["on_train_epoch_end"] == epochs
    assert c["on_fit_start"] == c["on_fit_end"] == c["on_test_end"] == 1
    assert c["on_save_checkpoint"] == epochs  # one epoch-end checkpoint each, none mid-epoch here
    assert [row["epoch"] for row in engine.state.history] == list(range(epochs))
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


class _Stub:
    """The part of an engine that EarlyStopping reads."""

    def __init__(self) -> None:
        self.state = RunState()


def test_early_stopping_counts_stale_epochs_and_breaks_ties_by_val_loss():
    stop, engine = EarlyStopping("val/acc", patience=2), _Stub()
    rows = [(0.5, 1.0), (0.6, 0.9), (0.6, 0.8), (0.6, 0.85), (0.55, 0.7)]  # (val/acc, val/loss)
    for epoch, (acc, loss) in enumerate(rows):
        engine.state.epoch = epoch
        stop.on_validation_end(engine, {"val/acc": acc, "val/loss": loss})
    s = engine.state
    assert (s.best, s.best_loss, s.best_epoch) == (0.6, 0.8, 2)  # the tie at 0.6 went to the lower loss
    assert s.bad_epochs == 2 and s.stopped
    wer = EarlyStopping("val/wer", patience=5)
    engine = _Stub()
    for epoch, value in enumerate([0.5, 0.3, 0.4]):
        engine.state.epoch = epoch
        wer.on_validation_end(engine, {"val/wer": value, "val/loss": 1.0})
    assert engine.state.best_epoch == 1 and not engine.state.stopped  # lower WER is better


def test_a_resumed_run_with_more_patience_is_no_longer_stopped():
    state = RunState(bad_epochs=3, stopped=True)
    engine = _Stub()
    engine.state.load_state_dict(state.state_dict(epoch_end=True))
    EarlyStopping("val/acc", patience=5).on_load_checkpoint(engine, {})
    assert not engine.state.stopped and engine.state.epoch_end


def test_run_state_round_trips_and_reads_older_checkpoints():
    state = RunState(epoch=3, batch=2, step=17, best=0.5, best_epoch=2, history=[{"epoch": 0, "train/loss": 1.0}])
    saved = state.state_dict(epoch_end=False)
    again = RunState()
    again.load_state_dict(saved)
    assert again == state
    old = {k: v for k, v in saved.items() if k != "best_loss"}  # a key an older checkpoint may lack
    older = RunState()
    older.load_state_dict(old)
    assert older.best_loss is None and older.step == 17


def test_tasks_are_chosen_by_target_or_registered_name(make_cfg):
    assert {"classification", "generation"} <= set(list_tasks())
    assert task_class({"_target_": "graphmm.tasks.GenerationTask"}) is task_class("generation") is GenerationTask
    cfg = make_cfg(["experiment=digits_seq", "model.beam_width=3", "model.target_level=char"])
    assert cfg.model.task == {"_target_": "graphmm.tasks.GenerationTask"}
    task = make_task(cfg.model)
    assert isinstance(task, GenerationTask) and task.beam_width == 3 and task.vocab.level == "char"
    by_name = make_cfg(["experiment=digits_seq", "model.task=generation"])
    validate_config(by_name)
    assert isinstance(make_task(by_name.model), GenerationTask)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.task=nonsense"], r"model.task='nonsense' is not one of \['classification', 'generation'"),
        (["++model.task.beam_width=3"], r"set the task's options in the model config instead \(e.g. model.beam_width"),
        (["model.task._target_=graphmm.engine.Engine"], "is not a graphmm.tasks.Task subclass"),
        (["model.task=generation"], "needs a text generator.*model=graph_seq2seq"),
        (["experiment=digits_seq", "trainer.monitor=val/acc"], r"not a metric of model.task=generation"),
    ],
)
def test_a_wrong_task_fails_validation_naming_the_fix(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(make_cfg(overrides))
