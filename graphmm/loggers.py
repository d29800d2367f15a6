"""Experiment loggers for :func:`graphmm.train.train` (``trainer.logger``).

``null`` logs nothing beyond ``train.log``, ``history.csv`` and ``metrics.json``;
``tensorboard`` also writes scalars with :class:`torch.utils.tensorboard.SummaryWriter`
into ``<run dir>/tensorboard/``. Every scalar is logged against the global optimizer
step, so that a resumed run can purge what the interrupted one wrote after its
checkpoint and keep appending to the same folder.

Loggers never draw random numbers, so they cannot change a run's results.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional

#: Accepted values of ``trainer.logger`` (``None`` is also accepted: no logger).
LOGGERS = ("tensorboard",)

TENSORBOARD_DIR = "tensorboard"


class NullLogger:
    """Accepts everything, writes nothing."""

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(NullLogger):
    """Scalars into ``log_dir`` with a :class:`~torch.utils.tensorboard.SummaryWriter`.

    Args:
        log_dir: the event folder; created if needed, appended to if it exists.
        purge_step: when resuming, the first step the new run will write: events the
            interrupted run wrote at or after it are hidden by TensorBoard, so that
            curves continue without duplicates.
    """

    def __init__(self, log_dir: str | Path, purge_step: Optional[int] = None) -> None:
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), global_step=int(step))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def require(kind: Optional[str]) -> None:
    """Fail at once, saying what to install, when the package ``kind`` needs is missing."""
    if kind != "tensorboard":
        return
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "trainer.logger=tensorboard needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or set trainer.logger=null)",
            name="tensorboard",
        ) from err


def make_logger(kind: Optional[str], run_dir: str | Path, purge_step: Optional[int] = None) -> NullLogger:
    """The logger for ``trainer.logger=kind`` writing under ``run_dir``."""
    if kind is None:
        return NullLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(Path(run_dir) / TENSORBOARD_DIR, purge_step=purge_step)
    raise ValueError(f"unknown logger {kind!r}; known: {[None, *LOGGERS]}")
