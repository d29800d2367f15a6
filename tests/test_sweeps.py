"""What the command line prints and leaves behind: a sweep with a failed job still
writes its summary and exits non-zero (basic and joblib launchers), ``--help`` lists
only real options, bars stay out of log files, and a run starts with one line, not
the whole config."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from graphmm.callbacks import (
    ERROR_FILE,
    MultirunSummary,
    one_line_error,
    record_failure,
    summarize_sweep,
)
from graphmm.config import CONF_DIR, ConfigError
from graphmm.progress import bars_enabled, progress_bar

ROOT = Path(CONF_DIR).parents[1]  # the repository (graphmm/conf -> .)
TINY = ["debug=fast", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.device=cpu"]


def _cli(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}
    env.pop("HYDRA_FULL_ERROR", None)  # the exit status of an ordinary run
    kwargs.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "graphmm.train", *args], cwd=ROOT, env=env, text=True,
                          timeout=600, check=False, **kwargs)


def _job(sweep: Path, name: str, overrides: list[str]) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return job


# ---------------------------------------------------------------- the summary, in-process
def test_one_line_error_names_the_class_and_joins_the_lines():
    assert one_line_error(ConfigError("model.heads=5 must divide\n  model.hidden=64")) == (
        "ConfigError: model.heads=5 must divide model.hidden=64"
    )
    assert one_line_error(KeyError()) == "KeyError"


def test_summary_lists_ok_failed_and_incomplete_jobs(tmp_path):
    ok = _job(tmp_path, "0", ["model.conv=gcn"])
    (ok / "metrics.json").write_text('{"test/acc": 0.5, "epochs": 1}')
    failed = _job(tmp_path, "1", ["model.heads=5"])
    try:
        raise ConfigError("model.heads=5 must divide model.hidden=64 | not 3")
    except ConfigError as err:
        assert record_failure(failed, err) == "ConfigError: model.heads=5 must divide model.hidden=64 | not 3"
    # a metrics.json left by an earlier attempt does not hide the latest attempt's failure
    (failed / "metrics.json").write_text('{"test/acc": 0.9, "epochs": 1}')
    _job(tmp_path, "2", ["model.conv=sage"])  # started, never finished
    error_text = (failed / ERROR_FILE).read_text()
    assert "Traceback" in error_text and "raise ConfigError" in error_text

    rows = summarize_sweep(tmp_path)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed"), ("2", "incomplete")]
    table = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert table[1]["error"] == "ConfigError: model.heads=5 must divide model.hidden=64 | not 3"
    assert table[1]["test/acc"] == "" and table[0]["test/acc"] == "0.5"
    md = (tmp_path / "summary.md").read_text().splitlines()
    assert len(md) == 5 and md[0].endswith("| error |")
    # the pipe inside the message is escaped, so the row keeps the header's column count
    assert md[3].count(" | ") == md[0].count(" | ") and "hidden=64 \\| not 3" in md[3]


def test_multirun_end_exits_non_zero_when_a_job_did_not_finish(tmp_path, capsys):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    (_job(tmp_path, "0", ["seed=0"]) / "metrics.json").write_text('{"test/acc": 0.5}')
    MultirunSummary().on_multirun_end(config)  # all ok: returns
    assert "| 0 | seed=0 | ok |" in capsys.readouterr().out
    _job(tmp_path, "1", ["seed=1"])
    this_sweep = MultirunSummary()
    this_sweep.total = 1  # job 1 is a longer earlier sweep's, left in a reused folder
    this_sweep.on_multirun_end(config)
    with pytest.raises(SystemExit) as exit_:
        MultirunSummary().on_multirun_end(config)
    assert exit_.value.code == 1
    assert "| 1 | seed=1 | incomplete |" in (tmp_path / "summary.md").read_text()


def test_multirun_end_ignores_jobs_that_did_not_start_in_this_multirun(tmp_path):
    """Named run folders (``hydra.sweep.subdir=${name}-seed${seed}``) in a reused sweep folder:
    an earlier sweep's unfinished job does not fail a rerun that never ran it."""
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    old = _job(tmp_path, "digits-seed1", ["seed=1"])  # killed in an earlier sweep
    os.utime(old / ".hydra" / "overrides.yaml", (time.time() - 600,) * 2)
    rerun = MultirunSummary()
    rerun.started = time.time()
    (_job(tmp_path, "digits-seed0", ["seed=0"]) / "metrics.json").write_text('{"test/acc": 0.5}')
    rerun.on_multirun_end(config)  # returns: its only job finished
    _job(tmp_path, "digits-seed2", ["seed=2"])  # this rerun's job, unfinished
    with pytest.raises(SystemExit):
        rerun.on_multirun_end(config)


# ---------------------------------------------------------------- real sweeps
@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=graphmm_joblib"]], ids=["basic", "joblib"])
def test_sweep_with_a_failed_job_still_summarises_and_exits_non_zero(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    proc = _cli(["-m", *launcher, "model.heads=5,4", *TINY, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode != 0, proc.stdout[-3000:]
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["job"], r["overrides"].split()[0], r["status"]) for r in rows] == [
        ("0", "model.heads=5", "failed"), ("1", "model.heads=4", "ok")]
    assert rows[0]["error"].startswith("ConfigError: model.heads=5 must divide model.hidden=64")
    assert "\n" not in rows[0]["error"] and rows[1]["error"] == "" and 0 <= float(rows[1]["test/acc"]) <= 1
    md = (sweep / "summary.md").read_text()
    assert "| 0 | model.heads=5" in md and "| 1 | model.heads=4" in md and "failed" in md
    assert "Traceback" in (sweep / "0" / ERROR_FILE).read_text()
    # the job's log line reads as a sentence, in the console and in the job's own log
    line = "job 0 (model.heads=5) failed: ConfigError: model.heads=5 must divide model.hidden=64"
    assert line in proc.stdout and line in (sweep / "0" / "train.log").read_text()
    assert "monitored value" not in proc.stdout


# ---------------------------------------------------------------- --help
def test_help_lists_the_groups_without_the_schemas():
    proc = _cli(["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "_schema" not in proc.stdout
    listed = dict(line.split(": ", 1) for line in groups.strip().splitlines()[1:] if ": " in line)
    assert {"data", "debug", "experiment", "graph", "hparams_search", "model", "trainer"} <= set(listed)
    assert "digits" in listed["data"].split(", ") and "hetero_gnn" in listed["model"].split(", ")
    # schema-only groups (graph/image, graph/text, graph/cross) and Hydra's own are not listed; a
    # plug-in modality's switch (+graph/video=default) is a real option and is
    assert not any(g.startswith("hydra") or g in ("graph/image", "graph/text", "graph/cross") for g in listed)
    assert listed.get("graph/video") == "default"
    assert "trainer:\n  max_epochs:" in proc.stdout  # the config section is still there


# ---------------------------------------------------------------- bars and the start of a run
def test_bars_only_on_a_terminal_and_when_asked():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert bars_enabled(True, Tty()) and not bars_enabled(True, io.StringIO())
    assert not bars_enabled(False, Tty()) and not bars_enabled(False, io.StringIO())
    out = io.StringIO()
    assert list(progress_bar(range(3), enabled=False, file=out)) == [0, 1, 2] and out.getvalue() == ""


@pytest.mark.slow
def test_a_run_logged_to_files_has_no_bars_and_starts_with_one_line(tmp_path):
    run = tmp_path / "run"
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        # progress=true: bars are asked for (debug=fast turns them off), yet the files get none
        proc = _cli([*TINY, "trainer.progress=true", f"hydra.run.dir={run}"], stdout=out, stderr=err,
                    capture_output=False)
    log, err = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert proc.returncode == 0, err[-3000:]
    for text in (log, err):
        assert "\x1b[A" not in text and "\r" not in text and "%|" not in text, text[-2000:]
    assert "epoch 0: train/loss=" in log  # one line per epoch instead
    start = [line for line in log.splitlines() if "][graphmm.train][INFO] - run digits:" in line]
    assert len(start) == 1 and "data=digits model=hetero_gnn(conv=gat" in start[0] and str(run) in start[0]
    # the composed config is in the run directory, not in the log
    assert "_target_: graphmm.data.load_digits" not in log
    assert OmegaConf.load(run / ".hydra" / "config.yaml").trainer.max_epochs == 1


def test_describe_run_is_one_line_naming_the_choices(make_cfg, tmp_path):
    from graphmm.train import describe_run

    line = describe_run(make_cfg(["model.hidden=32", "trainer.max_epochs=3"]),
                        {"data": "digits", "model": "hetero_gnn", "experiment": None})
    assert line == (f"run digits: data=digits model=hetero_gnn(conv=gat, hidden=32, layers=3) trainer(max_epochs=3, "
                    f"batch_size=64, lr=0.003, device=cpu) seed=0 -> {tmp_path / 'run'}")
    # without Hydra's choices the classes are named; a baseline has no `conv` to show
    line = describe_run(make_cfg(["experiment=mr", "model=transformer"]))
    assert "model=SequenceClassifier(hidden=64, layers=3)" in line and "data=load_textcls" in line
    assert "\n" not in line and "conv=" not in line
