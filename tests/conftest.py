"""Shared fixtures: configs composed from the real ``graphmm/conf/`` through Hydra's compose API."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from graphmm.config import CONF_DIR

os.environ.setdefault("DGLBACKEND", "pytorch")

DIGITS = "graphmm.data.load_digits"


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """``make_cfg(overrides)``: the composed root config, on CPU, quiet, writing to tmp_path.

    ``data_model=False`` (the default) leaves out the wide path that
    ``graphmm/conf/data_model/digits_hetero_gnn.yaml`` turns on for the graph model on
    ``digits``, unless the overrides set ``model.wide`` themselves: its fit (about 5 s
    of cross-validation) would otherwise run in every test that trains on ``digits``.
    The tests of that file and of ``make train``'s accuracy pass ``data_model=True``.
    """

    def _make(overrides: Sequence[str] = (), output: bool = True, data_model: bool = False) -> DictConfig:
        extra = ["trainer.device=cpu", "trainer.progress=false"]
        if output:
            extra.append(f"output_dir={tmp_path / 'run'}")
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*extra, *overrides])
        own = any(o.lstrip("+~").startswith("model.wide=") for o in overrides)
        if not (data_model or own) and cfg.data.get("_target_") == DIGITS and cfg.model.get("wide") == "auto":
            cfg.model.wide = None
        return cfg

    return _make
