"""Hydra callbacks."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from graphmm.utils import atomic_write_bytes

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


#: Written into a failed sweep job's folder: the one-line error, then the traceback.
ERROR_FILE = "error.txt"


def one_line_error(err: BaseException) -> str:
    """``ConfigError: model.heads=5 must divide model.hidden=64 ...``: the exception's
    class and its message with every line break and run of spaces made one space."""
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def record_failure(job_dir: str | Path, err: BaseException) -> str:
    """Write ``err`` to ``<job_dir>/error.txt`` (its one-line form, a blank line, the
    traceback) and return the one-line form, which :func:`summarize_sweep` reports."""
    line = one_line_error(err)
    text = line + "\n\n" + "".join(traceback.format_exception(err))
    atomic_write_bytes(Path(job_dir) / ERROR_FILE, text.encode())
    return line


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep folder: parallel jobs (joblib) that finish at
    once then rewrite the summary one after the other, and the last one to write has
    seen every job that finished before it."""
    if fcntl is None:  # not POSIX: the atomic writes still never leave a torn file
        yield
        return
    with open(sweep_dir / ".summary.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Collect every job's ``metrics.json`` and overrides under ``sweep_dir`` and write
    ``summary.csv`` and ``summary.md`` there (atomically, under a lock, so that jobs
    finishing in parallel can each call it).

    A job's ``status`` is ``ok`` (it wrote ``metrics.json``), ``failed`` (its last
    attempt left ``error.txt``; the row's ``error`` is that file's first line) or
    ``incomplete`` (neither file: still running, or killed).

    Returns:
        One row per job directory, ordered by job number.
    """
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir):
        rows = _sweep_rows(sweep_dir)
        if rows:
            _write_summary(sweep_dir, rows)
    return rows


def _started_at(job_dir: Path) -> float:
    """When the job's latest attempt started: the time Hydra wrote its overrides file."""
    try:
        return (job_dir / ".hydra" / "overrides.yaml").stat().st_mtime
    except FileNotFoundError:
        return float("-inf")


def _sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    jobs.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    rows: list[dict[str, Any]] = []
    for job in jobs:
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row: dict[str, Any] = {"job": job.name, "overrides": " ".join(overrides or [])}
        metrics_file, error_file = job / "metrics.json", job / ERROR_FILE
        # error.txt is removed when a job starts, so if present it is the latest attempt,
        # even where an earlier attempt of the same job left metrics.json
        if error_file.exists():
            lines = error_file.read_text().splitlines()
            row.update(status="failed", error=lines[0] if lines else "")
        elif metrics_file.exists():
            row.update(status="ok", **json.loads(metrics_file.read_text()))
            timing = job / "timing.json"
            if timing.exists():
                row.update(json.loads(timing.read_text()))
        else:
            row["status"] = "incomplete"
        rows.append(row)
    return rows


def _write_summary(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(sweep_dir / "summary.csv", buf.getvalue().encode())
    shown = [
        k
        for k in ("job", "overrides", "status", "test/acc", "test/f1", "val/acc", "test/exact", "test/wer",
                  "val/exact", "val/wer", "epochs", "time_s", "error")
        if k in keys
    ]

    def fmt(v: Any) -> str:
        text = f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))
        if len(text) > _MD_CELL:  # the whole error is in summary.csv and the job's error.txt
            text = text[: _MD_CELL - 3] + "..."
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in shown) + " |" for r in rows]
    atomic_write_bytes(sweep_dir / "summary.md", ("\n".join(lines) + "\n").encode())


#: Longest cell of summary.md (a long error message would make the table unreadable).
_MD_CELL = 200


def sweep_size(overrides: Sequence[str], params: Mapping[str, str] | None = None) -> int | None:
    """Jobs that Hydra's basic sweeper runs for these overrides: the product of the
    sizes of every choice or range sweep (``model.conv=sum,gcn``, ``seed=range(3)``),
    including the sweeper's own ``params``. ``None`` when a sweep has no fixed size
    (an interval, which only a sampling sweeper such as Optuna can use)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = list(overrides) + [f"{k}={v}" for k, v in (params or {}).items()]
    n = 1
    for o in OverridesParser.create().parse_overrides(items):
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                return None
            n *= len(list(o.sweep_string_iterator()))
    return n


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([str(o) for o in overrides])


def _is_multirun(config: DictConfig) -> bool:
    return str(config.hydra.get("mode", "")).endswith("MULTIRUN")


class MultirunSummary(Callback):
    """Progress and summary of a ``-m`` multirun, with any launcher.

    Each job logs ``sweep job k/N`` with the overrides the sweep chose for it when it
    starts (N: the grid size, or the number of trials of a sampling sweeper), and
    ``job <dir> (<overrides>) completed: <monitor>=<value>`` or ``... failed:
    <Error>: <message>`` when it ends. A failed job's error and traceback go to its
    ``error.txt``.

    ``summary.csv`` and ``summary.md`` are rewritten in the sweep folder as each job
    ends (in the job's own process, so it works with the joblib and SLURM launchers
    too), so they exist even when Hydra stops the sweep on a failed job: Hydra runs
    every job of a batch, then re-raises the first failure and exits with status 1.
    When a sweep ends without that (e.g. Optuna's ``max_failure_rate`` tolerated the
    failures) but a job failed, the process still exits with status 1.
    """

    def __init__(self) -> None:
        self.total: int | None = None
        # the keys the sweep varies (`model.heads` of `model.heads=5,4`, a sweeper's params):
        # each job's label shows its values of these; None: unknown, show every override
        self.swept: frozenset[str] | None = None
        # wall-clock start of this multirun: a job whose overrides file is older did not run
        # in it (Hydra rewrites ``.hydra/`` at each job's start), e.g. another sweep's job
        # left under a named ``hydra.sweep.subdir`` in a reused folder
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        sweeper = config.hydra.get("sweeper") or {}
        if "n_trials" in sweeper:
            self.total = int(sweeper.n_trials)
        else:
            try:
                self.total = sweep_size(list(config.hydra.overrides.task), sweeper.get("params") or {})
            except Exception:  # an unusual sweeper syntax: progress without a total
                self.total = None
        try:
            sweeps = [o for o in _parse(config.hydra.overrides.task) if o.is_sweep_override()]
            self.swept = frozenset([o.key_or_group for o in sweeps] + [str(k) for k in sweeper.get("params") or {}])
        except Exception:  # as above
            self.swept = None
        log.info("sweep of %s jobs -> %s", self.total if self.total is not None else "?", config.hydra.sweep.dir)

    def _label(self, config: DictConfig) -> tuple[int, str]:
        """``(k, "job <num> (<swept overrides>)")``, k counting from 1 for ``k/N``."""
        num = int(config.hydra.job.get("num", 0) or 0)
        overrides = list(config.hydra.overrides.task)
        try:
            swept = [o.input_line or "" for o in _parse(overrides)
                     if self.swept is None or o.key_or_group in self.swept]
        except Exception:  # an override the parser refuses: show them all
            swept = [str(o) for o in overrides]
        return num + 1, f"job {num}" + (f" ({' '.join(swept)})" if swept else "")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        (job_dir / ERROR_FILE).unlink(missing_ok=True)  # an earlier attempt's error is not this one's
        k, label = self._label(config)
        total = f"/{self.total}" if self.total is not None else ""
        log.info("sweep job %d%s: %s -> %s", k, total, label, job_dir)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        _, label = self._label(config)
        value = getattr(job_return, "_return_value", None)
        if getattr(job_return, "status", None) == JobStatus.FAILED:
            err = value if isinstance(value, BaseException) else RuntimeError(str(value))
            log.error("%s failed: %s", label, record_failure(config.hydra.runtime.output_dir, err))
        else:
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            log.info("%s completed: %s=%s", label, config.get("trainer", {}).get("monitor", "value"), shown)
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            rows = summarize_sweep(sweep_dir)
        except Exception as err:  # a summary problem must not hide the job's own result
            log.warning("could not update the sweep summary in %s: %s", sweep_dir, one_line_error(err))
            return
        rows = self._ours(rows, sweep_dir)
        done = [r for r in rows if r["status"] != "incomplete"]
        failed = [r["job"] for r in rows if r["status"] == "failed"]
        if failed and self.total is not None and len(done) >= self.total:
            log.error("sweep: %d of %d jobs failed (jobs %s); summary: %s", len(failed), len(rows),
                      ", ".join(failed), sweep_dir / "summary.md")

    def _ours(self, rows: list[dict[str, Any]], sweep_dir: Path) -> list[dict[str, Any]]:
        """The rows of this sweep's jobs: a folder reused by a rerun may hold other sweeps'
        jobs too. Numbered jobs count below the sweep's size (when known); any job counts
        only if it started after this multirun did (when known)."""
        if self.total is not None:
            rows = [r for r in rows if not str(r["job"]).isdigit() or int(r["job"]) < self.total]
        if self.started is not None:
            # 2 s of slack for file systems with coarse timestamps
            rows = [r for r in rows if _started_at(sweep_dir / str(r["job"])) >= self.started - 2.0]
        return rows

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize_sweep(sweep_dir)
        if not rows:
            return
        log.info("sweep summary (%d jobs): %s", len(rows), sweep_dir / "summary.md")
        print((sweep_dir / "summary.md").read_text())
        ours = self._ours(rows, sweep_dir)
        bad = [r["job"] for r in ours if r["status"] != "ok"]
        if bad:
            log.error("sweep: %d of %d jobs did not finish (jobs %s); see %s", len(bad), len(ours),
                      ", ".join(bad), sweep_dir / "summary.md")
            # SystemExit, not an exception: Hydra turns a callback's exceptions into warnings
            sys.exit(1)
