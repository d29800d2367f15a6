"""Sweep progress: the size of a basic sweep from its overrides."""

from __future__ import annotations

import pytest

from graphmm.callbacks import sweep_size


@pytest.mark.parametrize(
    ("overrides", "params", "expected"),
    [
        (["model.conv=sum,gcn,gat"], None, 3),
        (["model.conv=sum,gcn", "seed=range(3)", "trainer.max_epochs=5"], None, 6),
        (["data.modalities=[image,audio]"], {"model.hidden": "32,64"}, 2),
        (["model.hidden=choice(16,32)"], {"model.conv": "sum,gcn,gat,sage"}, 8),
        (["trainer.optimizer.lr=interval(0.001,0.1)"], None, None),
        ([], None, 1),
    ],
)
def test_sweep_size(overrides, params, expected) -> None:
    assert sweep_size(overrides, params) == expected
