"""``python -m graphmm pretrain [overrides]`` (also ``python -m graphmm.pretrain``):
self-supervised pretraining (:mod:`graphmm.pretrain`) of the model a config describes.

It is the training app with ``model.task=pretrain`` and ``trainer.monitor=val/loss``,
writing under ``outputs/pretrain/<name>/``; every other key works as in ``train``::

    python -m graphmm pretrain experiment=mr trainer.max_epochs=20
    python -m graphmm train experiment=mr model.init_from=outputs/pretrain/mr/<run>/checkpoints/best.pt
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from graphmm.cli import train as train_cli

__all__ = ["PRETRAIN_OVERRIDES", "main"]

#: Put before the user's overrides, so that any of them can be overridden again.
PRETRAIN_OVERRIDES: tuple[str, ...] = (
    "model.task=pretrain",
    "trainer.monitor=val/loss",
    "hydra.run.dir=outputs/pretrain/${name}/${now:%Y-%m-%d_%H-%M-%S}",
    "hydra.sweep.dir=multirun/pretrain/${name}/${now:%Y-%m-%d_%H-%M-%S}",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training app as a pretraining run; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    return train_cli.main([*PRETRAIN_OVERRIDES, *args])


if __name__ == "__main__":
    sys.exit(main())
