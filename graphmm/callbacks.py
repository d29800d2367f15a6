"""Hydra callbacks."""

from __future__ import annotations

import csv
import json
import logging
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
    shown = [k for k in ("job", "overrides", "status", "test/acc", "test/f1", "val/acc", "epochs", "time_s") if k in keys]

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in shown) + " |" for r in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return rows


class MultirunSummary(Callback):
    """After a ``-m`` multirun, write a table of all jobs' metrics to the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize_sweep(sweep_dir)
        if rows:
            log.info("sweep summary (%d jobs): %s", len(rows), sweep_dir / "summary.md")
            print((sweep_dir / "summary.md").read_text())
