"""Plots: each PNG exists, decodes and has the size its figure asks for."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from graphmm.data import Sample
from graphmm.graphs import MultimodalGraphBuilder, tokenize
from graphmm.viz import (
    draw_graph,
    patch_pixel_map,
    plot_audio_attention,
    plot_confusion,
    plot_history,
    plot_patch_attention,
    plot_relation_mass,
    write_classification_artefacts,
)

ROWS = [
    {"epoch": 0, "train/loss": 2.1, "val/loss": 1.8, "val/acc": 0.40, "val/f1": 0.35},
    {"epoch": 1, "train/loss": 1.2, "val/loss": 1.1, "val/acc": 0.65, "val/f1": 0.60},
    {"epoch": 2, "train/loss": 0.8, "val/loss": 0.9, "val/acc": 0.75, "val/f1": 0.72},
]


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()  # decodes the whole file
        return im.size


def test_plot_history_from_csv(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    out = plot_history(path, tmp_path / "plots" / "curves.png", figsize=(6, 3), dpi=50)
    assert _size(out) == (300, 150)


def test_plot_history_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.csv"):
        plot_history(tmp_path / "history.csv", tmp_path / "c.png")
    (tmp_path / "empty.csv").write_text("epoch,train/loss\n")
    with pytest.raises(ValueError, match="no rows"):
        plot_history(tmp_path / "empty.csv", tmp_path / "c.png")


def test_confusion_counts_and_png(tmp_path):
    y_true = torch.tensor([0, 0, 1, 2, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 2, 0, 2])
    cm = plot_confusion(y_true, y_pred, ["a", "b", "c", "d"], tmp_path / "cm.png", figsize=(4, 4), dpi=50)
    want = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        want[t, p] += 1
    assert np.array_equal(cm, want)
    assert _size(tmp_path / "cm.png") == (200, 200)
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(y_true, y_pred, ["a", "b"], tmp_path / "x.png")


def test_write_classification_artefacts(tmp_path):
    y_true, y_pred = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 2, 1])
    paths = write_classification_artefacts(tmp_path / "out", ROWS, y_true, y_pred, ["zero", "one", "two"])
    assert set(paths) == {"curves.png", "confusion.png", "confusion.csv"}
    assert _size(paths["curves.png"]) == (800, 320)
    assert _size(paths["confusion.png"]) == (500, 450)
    rows = list(csv.reader(open(paths["confusion.csv"])))
    assert rows[0] == ["true\\predicted", "zero", "one", "two"]
    assert rows[2] == ["one", "0", "1", "1"]
    # without names or history: 0..C-1 and no curves
    paths = write_classification_artefacts(tmp_path / "bare", [], y_true, y_pred, None)
    assert set(paths) == {"confusion.png", "confusion.csv"}


def test_patch_pixel_map_averages_overlapping_patches():
    rc = torch.tensor([[0, 0], [0, 1]])
    heat = patch_pixel_map(torch.tensor([1.0, 3.0]), rc, (4, 6), patch_size=4, stride=2)
    assert heat[0, 0] == 1.0 and heat[0, 2] == 2.0 and heat[0, 5] == 3.0
    assert np.isnan(patch_pixel_map(torch.tensor([1.0]), rc[:1], (5, 5), 4, 2)[4, 4])


def test_attention_plots(tmp_path):
    image = torch.rand(1, 8, 8)
    rc = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij"), -1).reshape(-1, 2)
    out = plot_patch_attention(image, torch.rand(9), rc, 4, 2, tmp_path / "img.png", figsize=(6, 3), dpi=40)
    assert _size(out) == (240, 120)
    out = plot_patch_attention(torch.rand(3, 8, 8), torch.rand(9), rc, 4, 2, tmp_path / "rgb.png")
    assert _size(out) == (700, 360)
    out = plot_audio_attention(torch.randn(40, 20), torch.linspace(0.016, 0.32, 20), torch.rand(20),
                               tmp_path / "audio.png")
    assert _size(out) == (700, 320)
    with pytest.raises(ValueError, match="logmel"):
        plot_audio_attention(torch.randn(40, 20), torch.rand(19), torch.rand(19), tmp_path / "bad.png")
    rows = [{"relation": "a:r:b", "attention_mass": 3.0, "message_norm": 1.0},
            {"relation": "b:s:a", "attention_mass": 1.0, "message_norm": None}]
    assert _size(plot_relation_mass(rows, tmp_path / "rel.png")) == (800, 400)


def test_draw_graph_of_a_sample(tmp_path):
    builder = MultimodalGraphBuilder()
    s = Sample(text="a handwritten seven", image=torch.rand(1, 8, 8), audio=0.1 * torch.randn(3000), sample_rate=8000)
    g = builder(s)
    out = draw_graph(g, tmp_path / "g.png", image=s.image, patch_geometry=(4, 4), tokens=tokenize(s.text),
                     figsize=(6, 5), dpi=50)
    assert _size(out) == (300, 250)
    # a sample without audio or image still draws
    assert _size(draw_graph(builder(Sample(text="only words")), tmp_path / "t.png")) == (900, 700)
    with pytest.raises(ValueError, match="one sample"):
        draw_graph(builder.batch([s, s]), tmp_path / "b.png")
