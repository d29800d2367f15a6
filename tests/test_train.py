"""End-to-end training through ``train(cfg)`` and the Hydra command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from graphmm.config import ConfigError
from graphmm.train import train
from graphmm.utils import load_checkpoint, resolve_device

TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1"]


def test_tiny_train_writes_metrics_and_safe_checkpoints(make_cfg, tmp_path):
    cfg = make_cfg(TINY)
    metrics = train(cfg)
    out = tmp_path / "run"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for key in ("test/acc", "test/f1", "test/loss", "val/acc", "best_epoch", "epochs"):
        assert key in metrics
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["epochs"] == 2
    assert metrics["steps"] == 2 * 3  # limit_train_batches=3 per epoch
    for png in ("curves.png", "confusion.png"):
        with Image.open(out / png) as im:
            im.load()
            assert im.size[0] > 200 and im.size[1] > 200
    confusion = [list(map(int, r[1:])) for r in csv.reader(open(out / "confusion.csv"))][1:]
    assert sum(map(sum, confusion)) == 270  # every test sample counted once
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["config"]["model"]["hidden"] == 16
    assert best["builder"]["text"]["vocab"]["itos"][:2] == ["<pad>", "<unk>"]
    assert any(k.endswith("weight") for k in best["model"])


def test_same_seed_same_metrics(make_cfg, tmp_path):
    a = train(make_cfg([*TINY, f"output_dir={tmp_path / 'a'}"]))
    b = train(make_cfg([*TINY, f"output_dir={tmp_path / 'b'}"]))
    for k in ("test/acc", "test/loss", "val/acc", "val/loss"):
        assert a[k] == b[k], k


def test_train_learns_from_one_modality_at_a_time(make_cfg):
    # a short but real run: image-only digits must beat chance (0.1) by a wide margin
    cfg = make_cfg(
        ["data.modalities=[image]", "trainer.max_epochs=8", "model.hidden=32", "model.num_layers=1"]
    )
    assert train(cfg)["test/acc"] > 0.3


def test_invalid_config_fails_before_any_work(make_cfg, tmp_path):
    cfg = make_cfg(["model.hidden=30", "model.heads=4"])
    with pytest.raises(ConfigError, match="model.heads"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_cuda_request_without_usable_cuda_says_what_to_do(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the CPU-only message")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    # torch sees a GPU but the installed DGL is the CPU build from PyPI
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA build"):
        resolve_device("cuda")


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    return subprocess.run(
        [sys.executable, "-m", "graphmm.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_multirun_writes_one_dir_per_job_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    res = _run_cli(["-m", "model.conv=sum,gcn", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file()
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["overrides"].split()[0] for r in rows] == ["model.conv=sum", "model.conv=gcn"]
    assert all(r["status"] == "ok" and 0 <= float(r["test/acc"]) <= 1 for r in rows)
    assert "| job |" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_cli_rejects_unknown_key_at_once(tmp_path):
    res = _run_cli(["model.hiden=3"], cwd=tmp_path)
    assert res.returncode != 0
    assert "hiden" in res.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("metrics.json"))


@pytest.mark.slow
def test_default_experiment_reaches_target_accuracy(make_cfg):
    """The `make train` job: the tri-modal default on embedded digits, test acc >= 0.95."""
    metrics = train(make_cfg())
    assert metrics["test/acc"] >= 0.95, metrics


def test_default_model_passes_messages_across_modalities(make_cfg):
    """With the default graph and depth, changing the image changes the states of
    word and frame nodes: the summary route (patch -> summary -> summary -> word)
    is within reach of the layers, so fusion is not left to the readout alone."""
    from hydra.utils import instantiate

    from graphmm.data import Sample
    from graphmm.train import build_model

    cfg = make_cfg()
    builder = instantiate(cfg.graph)
    torch.manual_seed(0)
    base = Sample(text="a seven", image=torch.rand(1, 8, 8), audio=0.1 * torch.randn(2400), sample_rate=8000)
    builder.fit([base])
    model = build_model(cfg.model, builder, num_classes=10).eval()
    other = base.replace(image=torch.rand(1, 8, 8))
    with torch.no_grad():
        h1, h2 = model.encode(builder(base)), model.encode(builder(other))
    assert not torch.allclose(h1["patch"], h2["patch"])
    for nt in ("word", "frame"):
        assert (h1[nt] - h2[nt]).abs().max() > 1e-4, f"image never reaches {nt} nodes"
