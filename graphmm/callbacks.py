"""Hydra callbacks."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Collect every job's ``metrics.json`` and overrides under ``sweep_dir`` and write
    ``summary.csv`` and ``summary.md`` there. Jobs without metrics are listed as failed.

    Returns:
        One row per job directory, ordered by job number.
    """
    sweep_dir = Path(sweep_dir)
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    jobs.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    rows: list[dict[str, Any]] = []
    for job in jobs:
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row: dict[str, Any] = {"job": job.name, "overrides": " ".join(overrides or [])}
        metrics_file = job / "metrics.json"
        if metrics_file.exists():
            row.update(status="ok", **json.loads(metrics_file.read_text()))
            timing = job / "timing.json"
            if timing.exists():
                row.update(json.loads(timing.read_text()))
        else:
            row["status"] = "failed"
        rows.append(row)
    if not rows:
        return rows
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    shown = [
        k
        for k in ("job", "overrides", "status", "test/acc", "test/f1", "val/acc", "test/exact", "test/wer",
                  "val/exact", "val/wer", "epochs", "time_s")
        if k in keys
    ]

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in shown) + " |" for r in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return rows


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


def _is_multirun(config: DictConfig) -> bool:
    return str(config.hydra.get("mode", "")).endswith("MULTIRUN")


class MultirunSummary(Callback):
    """Progress and summary of a ``-m`` multirun.

    Each job logs ``sweep job k/N`` with its overrides when it starts and its headline
    metrics when it ends (N: the grid size, or the number of trials of a sampling
    sweeper); after the sweep, a table of every job's metrics goes to ``summary.csv``
    and ``summary.md`` in the sweep folder.
    """

    def __init__(self) -> None:
        self.total: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.get("sweeper") or {}
        if "n_trials" in sweeper:
            self.total = int(sweeper.n_trials)
        else:
            try:
                self.total = sweep_size(list(config.hydra.overrides.task), sweeper.get("params") or {})
            except Exception:  # an unusual sweeper syntax: progress without a total
                self.total = None
        log.info("sweep of %s jobs -> %s", self.total if self.total is not None else "?", config.hydra.sweep.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        num = int(config.hydra.job.get("num", 0) or 0) + 1
        total = f"/{self.total}" if self.total is not None else ""
        log.info("sweep job %d%s: %s", num, total, " ".join(config.hydra.overrides.task))

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        num = int(config.hydra.job.get("num", 0) or 0) + 1
        total = f"/{self.total}" if self.total is not None else ""
        value = getattr(job_return, "_return_value", None)
        status = getattr(getattr(job_return, "status", None), "name", "done")
        log.info("sweep job %d%s %s: monitored value %s", num, total, status.lower(), value)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize_sweep(sweep_dir)
        if rows:
            log.info("sweep summary (%d jobs): %s", len(rows), sweep_dir / "summary.md")
            print((sweep_dir / "summary.md").read_text())
