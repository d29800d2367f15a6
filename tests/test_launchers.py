"""The Hydra launcher and sweeper presets: graphmm/conf/hydra/launcher/graphmm_*.yaml and
graphmm/conf/hparams_search/optuna.yaml compose, instantiate and (slow tests) run sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from graphmm.config import CONF_DIR, validate_config

ROOT = Path(CONF_DIR).parents[1]  # the repository (graphmm/conf -> .)
TINY = ["debug=fast", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.device=cpu"]


def _compose(overrides: Sequence[str], sweep_dir: Path, hydra: bool = True) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(
            "config",
            overrides=["trainer.progress=false", f"hydra.sweep.dir={sweep_dir}", *overrides],
            return_hydra_config=hydra,
        )


def test_joblib_preset_composes(tmp_path):
    cfg = _compose(["hydra/launcher=graphmm_joblib"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"
    # the plugin's own fields are there to override
    assert "pre_dispatch" in launcher and "batch_size" in launcher
    validate_config(_compose(["hydra/launcher=graphmm_joblib", f"output_dir={tmp_path}"], tmp_path, hydra=False))


def test_slurm_preset_instantiates_and_renders_an_sbatch_script_without_a_cluster(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = _compose(["hydra/launcher=graphmm_slurm", "hydra.launcher.partition=cpu"], tmp_path)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    assert params["setup"] == ["export OMP_NUM_THREADS=8"]

    launcher = instantiate(cfg.hydra.launcher)
    # Hydra's plugin discovery may load the module a second time, so compare by name
    assert type(launcher).__qualname__ == SlurmLauncher.__qualname__ and launcher._EXECUTOR == "slurm"
    assert launcher.params["partition"] == "cpu" and launcher.params["cpus_per_task"] == 8

    # the executor the launcher would build (its launch() maps the same keys), up to
    # the sbatch script; nothing is submitted, so no cluster is needed (submitit only
    # looks for `srun` to tell that it runs on one)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    executor = submitit.AutoExecutor(
        folder=params["submitit_folder"], cluster="slurm", slurm_max_num_timeout=params["max_num_timeout"]
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{
        k if k in base else f"slurm_{k}": v
        for k, v in params.items()
        if k not in {"submitit_folder", "max_num_timeout", "_target_"}
    })
    script = _make_sbatch_string(command="python -m graphmm.train", folder=tmp_path, **executor._executor.parameters)
    for line in ("#SBATCH --partition=cpu", "#SBATCH --cpus-per-task=8", "#SBATCH --time=120",
                 "#SBATCH --mem=16GB", "export OMP_NUM_THREADS=8"):
        assert line in script, (line, script)


def test_optuna_preset_composes_with_a_valid_search_space(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import (
        create_optuna_distribution_from_override,
    )
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    cfg = _compose(["hparams_search=optuna"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize" and cfg.trainer.monitor == "val/acc"
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed

    parser = OverridesParser.create()
    space = {
        o.get_key_element(): create_optuna_distribution_from_override(o)
        for o in parser.parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    }
    assert space["trainer.optimizer.lr"] == LogUniformDistribution(1e-4, 1e-2)
    assert isinstance(space["model.hidden"], CategoricalDistribution)
    # every point of the space is a valid run config (GAT heads divide every width)
    for conv in space["model.conv"].choices:
        for hidden in space["model.hidden"].choices:
            job = _compose(["hparams_search=optuna", f"model.conv={conv}", f"model.hidden={hidden}",
                            f"output_dir={tmp_path}"], tmp_path, hydra=False)
            validate_config(job)


def _run_sweep(args: Sequence[str], sweep_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "graphmm.train", *args, *TINY, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.mark.slow
def test_joblib_launcher_runs_a_two_job_multirun(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _run_sweep(["-m", "hydra/launcher=graphmm_joblib", "seed=0,1"], sweep)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multirun = yaml.safe_load((sweep / "multirun.yaml").read_text())
    assert multirun["hydra"]["launcher"]["_target_"].endswith("JoblibLauncher")
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and metrics["steps"] == 1
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",ok," in line for line in summary[1:])


@pytest.mark.slow
def test_optuna_sweep_maximises_the_validation_metric(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _run_sweep(["hparams_search=optuna", "hydra.sweeper.n_trials=2"], sweep)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    val = [json.loads((sweep / j / "metrics.json").read_text())["val/acc"] for j in ("0", "1")]
    # main() returns the monitored validation metric; the study keeps the largest
    assert result["best_value"] == pytest.approx(max(val))
    assert set(result["best_params"]) == {"trainer.optimizer.lr", "model.hidden", "model.conv"}


@pytest.mark.slow
def test_a_plain_install_ships_the_configs(tmp_path):
    """``pip install .`` (not editable) carries graphmm/conf, so ``python -m graphmm.train``
    composes its config from any directory."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    assert (site / "graphmm" / "conf" / "config.yaml").is_file()
    assert (site / "graphmm" / "conf" / "experiment" / "mr.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import graphmm.config as c; print(c.CONF_DIR)"
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=300)
    assert where.stdout.strip() == str(site / "graphmm" / "conf"), where.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "graphmm.train", "experiment=mr", "--cfg", "job"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "name: mr" in res.stdout and "max_epochs: 12" in res.stdout
