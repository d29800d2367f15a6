"""Drawing one sample's graph, and GraphML export that round-trips through networkx."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import networkx as nx
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from graphmm.data import Sample
from graphmm.graphs import CrossModalBuilder, ImageGraphBuilder, MultimodalGraphBuilder
from graphmm.cli.inspect_graph import InspectConfig, load_sample, main
from graphmm.cli.predict import InputConfig
from graphmm.graphs import draw_sample_graph, graphml_ready, write_graphml
from graphmm.predict import UsageError


def _sample() -> Sample:
    return Sample(text="the number is seven", image=torch.rand(1, 8, 8), audio=0.1 * torch.randn(3000),
                  sample_rate=8000, label=7, id="s0")


def _builder() -> MultimodalGraphBuilder:
    return MultimodalGraphBuilder(
        image=ImageGraphBuilder(patch_size=4, stride=2, neighbors=8, knn=2),
        cross=CrossModalBuilder(summary=True, bipartite=[["word", "patch"]], align=[["frame", "word"]]),
    )


def test_graphml_round_trips_with_counts_per_type(tmp_path):
    builder = _builder()
    g = builder.batch([_sample(), Sample(text="no image", id="s1")])
    path = write_graphml(g, tmp_path / "g.graphml")
    back = nx.read_graphml(path, force_multigraph=True)
    assert isinstance(back, nx.MultiDiGraph)
    nodes = Counter(a["ntype"] for _, a in back.nodes(data=True))
    assert nodes == {nt: g.num_nodes(nt) for nt in g.ntypes if g.num_nodes(nt)}
    edges = Counter(a["canonical_etype"] for _, _, a in back.edges(data=True))
    assert edges == {":".join(c): g.num_edges(c) for c in g.canonical_etypes if g.num_edges(c)}
    # ids and attributes survive with their types
    patch = back.nodes["patch:4"]
    assert patch["ntype"] == "patch" and patch["id"] == 4 and patch["graph"] == 0
    assert (patch["rc0"], patch["rc1"]) == (1, 1) and isinstance(patch["grid0"], float)
    assert back.nodes["word:1"]["graph"] == 0 and back.nodes["word:4"]["graph"] == 1
    u, v, a = next(iter(back.edges(data=True)))
    assert a["canonical_etype"].split(":")[0] == back.nodes[u]["ntype"]
    assert a["canonical_etype"].split(":")[2] == back.nodes[v]["ntype"]


def test_graphml_ready_uses_plain_values():
    nxg = graphml_ready(_builder()(_sample()))
    for _, a in nxg.nodes(data=True):
        assert all(isinstance(v, bool | int | float | str) for v in a.values())
    assert all(isinstance(n, str) for n in nxg.nodes)


def test_draw_sample_graph_png(tmp_path):
    png, g = draw_sample_graph(_builder(), _sample(), tmp_path / "graph.png", include_reverse=True)
    with Image.open(png) as im:
        im.load()
        assert im.size == (900, 700)
    assert g.num_nodes("patch") == 9 and g.num_nodes("word") == 4


def test_load_sample_from_the_dataset_and_from_files(tmp_path):
    builder, s = load_sample(InspectConfig(split="val", index=2))
    assert s.id == "digits/val/2" and isinstance(builder, MultimodalGraphBuilder)
    with pytest.raises(UsageError, match="out of range"):
        load_sample(InspectConfig(split="test", index=10_000))
    with pytest.raises(UsageError, match="split='dev'"):
        load_sample(InspectConfig(split="dev"))
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    sf.write(tmp_path / "x.wav", np.zeros((4000, 2), dtype=np.float32), 16000)
    args = InspectConfig(input=InputConfig(image=str(tmp_path / "x.png"), audio=str(tmp_path / "x.wav"), text="hi"))
    builder, s = load_sample(args)
    assert s.image.shape == (3, 12, 16) and s.sample_rate == 8000 and s.audio.shape == (2000,)
    assert builder(s).num_nodes("frame") > 0


def test_cli_errors(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    assert main([f"input.image={tmp_path / 'broken.png'}", f"out={tmp_path / 'g.png'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("graphmm.inspect: error: ") and "broken.png" in err and err.count("\n") == 1
    assert main([f"ckpt_path={tmp_path / 'none.pt'}"]) == 1
    assert "none.pt' does not exist" in capsys.readouterr().err
    assert main(["idx=3"]) == 1  # Hydra's message, naming the key
    assert "Key 'idx' not in 'InspectConfig'" in capsys.readouterr().err
    assert main(["split=dev"]) == 2
    assert capsys.readouterr().err == "graphmm.inspect: error: split='dev': choose one of ['test', 'train', 'val']\n"


def test_cli_in_a_subprocess(tmp_path):
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    cmd = [sys.executable, "-m", "graphmm", "inspect", "split=test", "index=3", f"out={tmp_path / 'g.png'}",
           f"graphml={tmp_path / 'g.graphml'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "digits/test/3" in proc.stdout and "patch=9" in proc.stdout
    with Image.open(tmp_path / "g.png") as im:
        im.load()
        assert im.size == (900, 700)
    back = nx.read_graphml(tmp_path / "g.graphml")
    assert Counter(a["ntype"] for _, a in back.nodes(data=True))["patch"] == 9
