"""DistributedDataParallel: two CPU processes (gloo) against one process over the same global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from graphmm.ddp import DistContext, shard_global_batches
from graphmm.runstate import EpochSampler

# Image-only graphs without summary nodes: every parameter gets a gradient in every step.
# (A parameter that gets none, e.g. of a relation that no sample has, is skipped by the
# optimizer in one process but receives a zero gradient under DDP, so AdamW's weight
# decay still shrinks it there; see graphmm.ddp.)
COMMON = [
    "data.modalities=[image]", "graph.text=null", "graph.audio=null", "graph.cross.summary=false", "trainer.max_epochs=2", "trainer.batch_size=64", "model.dropout=0",
    "trainer.modality_dropout=0", "trainer.progress=false", "model.hidden=32", "model.heads=2",
    "trainer.device=cpu",
    # SGD: Adam's near sign-like steps on near-zero gradients would amplify the float
    # noise of summation order into differences of about one learning rate per step
    "trainer.optimizer._target_=torch.optim.SGD", "trainer.optimizer.lr=0.1",
    # the largest weight difference after 40 steps depends on the trajectory, measured
    # with this config: seed 1 6e-8, seed 2 1.2e-7, seed 0 3e-5 (one of its steps sits
    # near a kink, where the summation-order noise of the two halves is amplified)
    "seed=1",
]


def test_shards_cover_each_global_batch() -> None:
    order = list(range(23))
    shards = [list(shard_global_batches(order, 8, r, 2)) for r in range(2)]
    assert shards[0][:4] == [0, 1, 2, 3] and shards[1][:4] == [4, 5, 6, 7]
    assert len(shards[0]) == len(shards[1]) == 11  # 23 -> 22: the last batch cut to a multiple of 2
    assert sorted(shards[0] + shards[1]) == order[:22]
    with pytest.raises(ValueError, match="multiple"):
        list(shard_global_batches(order, 7, 0, 2))
    # evaluation shares: every item exactly once
    ev = [EpochSampler(23, 0, shuffle=False, rank=r, world_size=3).indices() for r in range(3)]
    assert sorted(sum(ev, [])) == list(range(23))
    # one process: the plain order
    s = EpochSampler(23, 5, shuffle=True, batch_size=8)
    assert sorted(s.indices()) == list(range(23)) and len(s) == 23
    assert DistContext().all_gather(3) == [3] and DistContext().all_finite(torch.tensor(1.0))


def test_ddp_without_torchrun_says_how_to_launch(make_cfg, monkeypatch) -> None:
    from graphmm.train import train

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        train(make_cfg(["trainer.strategy=ddp", *COMMON]))


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "graphmm.train", *COMMON, f"output_dir={tmp_path / 'single'}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "graphmm.train", *COMMON, "trainer.strategy=ddp", f"output_dir={tmp_path / 'ddp'}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # the same optimizer steps on the same global batches: weights agree up to float
    # summation order (gradients averaged over two halves instead of one batch);
    # measured here: at most 6e-8 apart after 40 steps
    last = sorted((tmp_path / "single" / "checkpoints").glob("step-*-end.pt"))[-1].name
    a = torch.load(tmp_path / "single" / "checkpoints" / last, weights_only=True)
    b = torch.load(tmp_path / "ddp" / "checkpoints" / last, weights_only=True)
    assert a["run"]["step"] == b["run"]["step"] == 40  # 2 epochs x ceil(1258 / 64)
    for key, value in a["train_model"].items():
        torch.testing.assert_close(b["train_model"][key], value, atol=1e-5, rtol=1e-5, msg=key)
    ma = json.loads((tmp_path / "single" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # metrics of the whole split, gathered from both processes
    for key in ("val/acc", "test/acc", "test/loss"):
        assert abs(ma[key] - mb[key]) < 0.01, (key, ma[key], mb[key])
