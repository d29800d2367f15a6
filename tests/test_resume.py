"""Resuming checks its config: refused changes, safe changes, ``resume=last``, and the
checkpoint files themselves (orphaned temporary files, empty or cut files, modes)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

import graphmm.train as train_module
from graphmm.config import CONF_DIR, ConfigError, to_container
from graphmm.runstate import (
    RESUME_SAFE_KEYS,
    check_resume_config,
    config_diff,
    list_checkpoints,
    load_resume_state,
    rebuild_scheduler,
)
from graphmm.train import train
from graphmm.utils import load_checkpoint, save_checkpoint, write_json

# two epochs of three steps, a checkpoint after every step, all of them kept
BASE = [
    "debug=fast",
    "model.hidden=8",
    "model.heads=2",
    "model.num_layers=1",
    "trainer.checkpoint_every_n_steps=1",
    "trainer.keep_checkpoints=20",
    "trainer.device=cpu",
    "trainer.progress=false",
]
STEPS_PER_EPOCH = 3


def _compose(overrides: Sequence[str], out: Path | None) -> DictConfig:
    extra = [f"output_dir={out}"] if out is not None else []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[*BASE, *extra, *overrides])


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One finished two-epoch run (umask 022); tests resume copies of it."""
    out = tmp_path_factory.mktemp("base") / "run"
    with _umask(0o022):
        train(_compose([], out))
    return out


def _copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


@contextmanager
def _hydra_run(overrides: Sequence[str], run_dir: Path, mode: RunMode = RunMode.RUN) -> Iterator[DictConfig]:
    """The config as ``python -m graphmm.train`` sees it: Hydra's run directory is
    ``run_dir`` and ``output_dir`` is not set."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        full = compose("config", overrides=[*BASE, *overrides], return_hydra_config=True)
    with open_dict(full):
        full.hydra.runtime.output_dir = str(run_dir)
        full.hydra.mode = mode
    HydraConfig.instance().set_config(full)
    try:
        with open_dict(full):
            del full["hydra"]  # as Hydra's run_job does
        yield full
    finally:
        HydraConfig.instance().cfg = None


def _messages(caplog, level: int) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == level)


# ---------------------------------------------------------------- the stored config
def test_every_checkpoint_stores_the_composed_config(base):
    ckpts = list_checkpoints(base / "checkpoints")
    assert len(ckpts) == 2 * (STEPS_PER_EPOCH + 1)  # every step, plus each epoch's end
    want = to_container(_compose([], base))
    for path in [*ckpts, base / "checkpoints" / "best.pt"]:
        assert load_checkpoint(path)["config"] == want, path.name


def test_config_diff_names_every_changed_key_and_ignores_the_resume_keys():
    old = {"seed": 3, "model": {"hidden": 64, "dims": [1, 2]}, "trainer": {"resume": None, "resume_force": False}}
    new = {"seed": 7, "model": {"hidden": 64, "dims": [1, 3], "extra": 1}, "trainer": {"resume": "auto"}}
    assert config_diff(old, new) == {"model.dims": ([1, 2], [1, 3]), "model.extra": ("<absent>", 1), "seed": (3, 7)}
    assert config_diff(old, old) == {}


# ---------------------------------------------------------------- refused changes
def test_a_changed_seed_is_refused_before_any_data_load(base, tmp_path, monkeypatch):
    run = _copy(base, tmp_path / "run")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())

    def no_data(*_a, **_k):
        raise AssertionError("the data were loaded before the config was checked")

    monkeypatch.setattr(train_module, "load_splits", no_data)
    with pytest.raises(ConfigError) as err:
        train(_compose(["seed=7", "trainer.resume=auto"], run))
    msg = str(err.value)
    assert "seed: 0 -> 7" in msg
    assert "trainer.resume_force=true" in msg and "new run directory" in msg
    assert "model." not in msg and "trainer.resume:" not in msg  # only what differs, not the resume key
    assert "\n" not in msg
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing written


def test_a_changed_width_is_one_line_not_one_per_tensor(base, tmp_path):
    run = _copy(base, tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        train(_compose(["model.hidden=32", "trainer.resume=auto"], run))
    msg = str(err.value)
    assert "model.hidden: 8 -> 32" in msg
    assert "size mismatch" not in msg and "\n" not in msg
    # forcing cannot make the weights fit: still one line, with the count
    with pytest.raises(ConfigError) as err:
        train(_compose(["model.hidden=32", "trainer.resume=auto", "trainer.resume_force=true"], run))
    msg = str(err.value)
    assert "do not fit" in msg and "tensors differ in shape" in msg
    assert "size mismatch" not in msg and "\n" not in msg


def test_resume_force_continues_and_warns_naming_the_keys(base, tmp_path, caplog):
    run = _copy(base, tmp_path / "run")
    with caplog.at_level(logging.INFO):
        metrics = train(_compose(["seed=7", "trainer.resume=auto", "trainer.resume_force=true"], run))
    warnings = _messages(caplog, logging.WARNING)
    assert "trainer.resume_force=true" in warnings and "seed: 0 -> 7" in warnings
    assert "resumed from" in _messages(caplog, logging.INFO)
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * STEPS_PER_EPOCH


def test_a_checkpoint_without_a_stored_config_needs_resume_force(base, tmp_path, caplog):
    run = _copy(base, tmp_path / "run")
    newest = list_checkpoints(run / "checkpoints")[0]
    state = load_checkpoint(newest)
    del state["config"]  # as written before checkpoints carried their config
    save_checkpoint(newest, state)
    with pytest.raises(ConfigError, match="stores no config") as err:
        train(_compose(["trainer.resume=auto"], run))
    assert "trainer.resume_force=true" in str(err.value)
    with caplog.at_level(logging.WARNING):
        train(_compose(["trainer.resume=auto", "trainer.resume_force=true"], run))
    assert "stores no config" in _messages(caplog, logging.WARNING)


# ---------------------------------------------------------------- safe changes
def test_safe_keys_are_accepted_and_logged(caplog):
    old = {"seed": 0, "trainer": {"num_workers": 0, "keep_checkpoints": 2}}
    new = {"seed": 0, "trainer": {"num_workers": 2, "keep_checkpoints": 5}}
    assert {"trainer.num_workers", "trainer.keep_checkpoints"} <= RESUME_SAFE_KEYS
    with caplog.at_level(logging.INFO, logger="graphmm.runstate"):
        applied = check_resume_config(old, new, "ckpt.pt")
    assert applied == {"trainer.keep_checkpoints": (2, 5), "trainer.num_workers": (0, 2)}
    assert "trainer.num_workers: 0 -> 2" in caplog.text and "trainer.keep_checkpoints: 2 -> 5" in caplog.text


def _fresh_cosine_lr(t_max: int, epoch: int, lr: float = 3e-3) -> float:
    """The rate a run that used ``T_max=t_max`` from its start trains epoch ``epoch`` with."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    for _ in range(epoch):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


def test_more_epochs_rebuild_the_schedule_for_the_new_end(base, tmp_path, caplog):
    run = _copy(base, tmp_path / "run")
    with caplog.at_level(logging.INFO):
        metrics = train(_compose(["trainer.max_epochs=3", "trainer.resume=auto"], run))
    applied = _messages(caplog, logging.INFO)
    assert "trainer.max_epochs: 2 -> 3" in applied and "trainer.scheduler.T_max: 2 -> 3" in applied
    assert metrics["epochs"] == 3 and metrics["steps"] == 3 * STEPS_PER_EPOCH
    # a mid-epoch checkpoint holds the rate its step trained with
    lrs = {}
    for path in list_checkpoints(run / "checkpoints"):
        if not path.name.endswith("-end.pt"):
            state = load_checkpoint(path)
            lrs[state["run"]["step"]] = state["optimizer"]["param_groups"][0]["lr"]
    assert sorted(lrs) == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    rates = [lrs[s] for s in sorted(lrs)]
    assert all(b <= a for a, b in zip(rates, rates[1:])), rates  # never climbs back up
    for step in range(2 * STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 1):  # the added epoch
        assert lrs[step] == pytest.approx(_fresh_cosine_lr(3, 2), rel=1e-12)
    assert lrs[2 * STEPS_PER_EPOCH + 1] > 0  # the old schedule (T_max=2) would train it at 0
    last = load_checkpoint(list_checkpoints(run / "checkpoints")[0])
    assert last["scheduler"]["T_max"] == 3 and last["config"]["trainer"]["max_epochs"] == 3


def test_rebuild_scheduler_equals_a_fresh_schedule_at_that_epoch():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    for _ in range(3):
        opt.step()
        old.step()
    new = rebuild_scheduler(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10), opt, old.last_epoch)
    assert new.last_epoch == 3 and new.T_max == 10
    assert opt.param_groups[0]["lr"] == pytest.approx(_fresh_cosine_lr(10, 3, lr=1.0), rel=1e-12)


# ---------------------------------------------------------------- where to resume
def test_resume_last_continues_the_newest_run_of_that_name(base, tmp_path, caplog):
    root = tmp_path / "outputs" / "digits"
    old, newer = _copy(base, root / "old"), _copy(base, root / "newer")
    for run, mtime in ((old, 1_000_000), (newer, 2_000_000)):
        for p in list_checkpoints(run / "checkpoints"):
            os.utime(p, (mtime, mtime))
    fresh = root / "2030-01-01_00-00-00"
    with _hydra_run(["trainer.resume=last", "trainer.max_epochs=3"], fresh) as cfg, caplog.at_level(logging.INFO):
        metrics = train(cfg)
    assert f"trainer.resume=last: continuing {newer}" in _messages(caplog, logging.INFO)
    assert metrics["epochs"] == 3
    end = f"step-{3 * STEPS_PER_EPOCH:08d}-end.pt"
    assert (newer / "checkpoints" / end).is_file() and not (old / "checkpoints" / end).exists()
    assert not (fresh / "checkpoints").exists()


def test_resume_auto_in_a_new_run_directory_warns_with_the_command(base, tmp_path, caplog):
    root = tmp_path / "outputs" / "digits"
    old = _copy(base, root / "old")
    fresh = root / "2030-01-01_00-00-00"
    with _hydra_run(["trainer.resume=auto", "seed=0"], fresh) as cfg, caplog.at_level(logging.WARNING):
        train(cfg)
    warning = _messages(caplog, logging.WARNING)
    assert f"found no checkpoint in {fresh}" in warning and "starting fresh" in warning
    assert "python -m graphmm.train" in warning and "seed=0 trainer.resume=last" in warning
    assert f"output_dir={old} trainer.resume=auto" in warning
    assert "trainer.resume=auto trainer.resume=last" not in warning  # the old resume override is replaced
    assert (fresh / "checkpoints" / "best.pt").is_file()  # it did start over, as it said


def test_resume_last_in_a_sweep_is_refused(base, tmp_path):
    _copy(base, tmp_path / "multirun" / "digits" / "0")
    with _hydra_run(["trainer.resume=last"], tmp_path / "multirun" / "digits" / "1", RunMode.MULTIRUN) as cfg:
        with pytest.raises(ConfigError, match="resume=last .* sweep .* output_dir=<run dir> trainer.resume=auto"):
            train(cfg)


# ---------------------------------------------------------------- checkpoint files
def test_orphaned_temp_files_are_removed_at_the_next_start(base, tmp_path, caplog):
    run = _copy(base, tmp_path / "run")
    orphans = [run / "checkpoints" / ".step-00000007.pt.0123456789ab.tmp", run / ".metrics.json.x1y2z3.tmp"]
    for p in orphans:
        p.write_bytes(b"half a checkpoint")
    unrelated = run / "notes.tmp"  # not a temporary file of ours
    unrelated.write_text("keep me")
    with caplog.at_level(logging.INFO):
        train(_compose(["trainer.resume=auto"], run))
    assert not any(p.exists() for p in orphans)
    assert unrelated.read_text() == "keep me"
    assert "removed 1 temporary file(s)" in caplog.text and orphans[0].name in caplog.text


def test_empty_and_truncated_checkpoints_give_one_clear_line(base, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(RuntimeError) as err:
        load_checkpoint(empty)
    assert str(err.value) == f"{empty}: the checkpoint file is empty (0 bytes)"
    whole = (base / "checkpoints" / "best.pt").read_bytes()
    for n in (10, len(whole) // 2, len(whole) - 10):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(whole[:n])
        with pytest.raises(RuntimeError) as err:
            load_checkpoint(cut)
        msg = str(err.value)
        assert msg.startswith(f"{cut}: the checkpoint file is truncated or corrupt ({n} bytes)"), msg
        assert "\n" not in msg and "weights_only" not in msg


def test_an_empty_newest_checkpoint_falls_back_to_the_previous_one(base, tmp_path, caplog):
    run = _copy(base, tmp_path / "run")
    newest, previous = list_checkpoints(run / "checkpoints")[:2]
    newest.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="graphmm.runstate"):
        state, path = load_resume_state("auto", run / "checkpoints", torch.device("cpu"))
    assert path == previous and "train_model" in state
    assert "empty (0 bytes)" in caplog.text and "weights_only" not in caplog.text


def test_code_payload_refusal_does_not_advise_weights_only_false(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"x": os.system}, evil)
    with pytest.raises(RuntimeError, match="cannot load checkpoint .* safely") as err:
        load_checkpoint(evil)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_run_outputs_follow_the_umask(base, tmp_path):
    files = [base / "metrics.json", base / "timing.json", base / "checkpoints" / "best.pt",
             *list_checkpoints(base / "checkpoints")]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}  # written under umask 022
    with _umask(0o027):
        write_json(tmp_path / "m.json", {"a": 1})
        save_checkpoint(tmp_path / "c.pt", {"a": torch.ones(1)})
    assert oct((tmp_path / "m.json").stat().st_mode & 0o777) == "0o640"
    assert oct((tmp_path / "c.pt").stat().st_mode & 0o777) == "0o640"
