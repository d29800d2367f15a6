"""``python -m graphmm train [overrides]`` (also ``python -m graphmm.train``): the
Hydra wrapper over :func:`graphmm.train.train`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from graphmm.cli import run_app
from graphmm.config import CONF_DIR, ConfigError
from graphmm.train import describe_run, train

__all__ = ["app", "main"]

log = logging.getLogger("graphmm.train")

#: Metrics printed on the last line, in this order, where the run has them.
SHOWN_METRICS: tuple[str, ...] = (
    "test/acc", "test/f1", "test/exact", "test/wer", "test/cer", "test/bleu", "val/acc", "val/exact",
)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float:
    """Train one composed config; returns the monitored validation metric, so that
    sweepers tune on validation and never on test.

    It logs one INFO line naming the run (:func:`~graphmm.train.describe_run`); the
    whole composed config goes to DEBUG (``hydra.verbose=true``) and is in the run
    directory's ``.hydra/config.yaml``, so a sweep's log does not repeat it for every job.
    """
    log.info("%s", describe_run(cfg, HydraConfig.get().runtime.choices))
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    try:
        metrics = train(cfg)
    except ConfigError as err:
        # A config that cannot run is the user's to fix, not a bug: one line, no
        # traceback. A sweep re-raises so that its summary records the job's error.
        if HydraConfig.get().mode == RunMode.MULTIRUN or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("config error: %s", err)
        sys.exit(1)
    shown = [k for k in SHOWN_METRICS if k in metrics]
    print("  ".join([*(f"{k}={metrics[k]:.4f}" for k in shown), f"epochs={metrics['epochs']}"]))
    return metrics[cfg.trainer.monitor]


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`app` on ``argv`` (default: the command line); returns the exit code."""
    return run_app(app, argv, "graphmm.train")


if __name__ == "__main__":
    sys.exit(main())
