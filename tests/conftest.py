"""Shared fixtures: configs composed from the real ``graphmm/conf/`` through Hydra's compose API."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from graphmm.config import CONF_DIR

os.environ.setdefault("DGLBACKEND", "pytorch")


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """``make_cfg(overrides)``: the composed root config, on CPU, quiet, writing to tmp_path."""

    def _make(overrides: Sequence[str] = (), output: bool = True) -> DictConfig:
        extra = ["trainer.device=cpu", "trainer.progress=false"]
        if output:
            extra.append(f"output_dir={tmp_path / 'run'}")
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=[*extra, *overrides])

    return _make
