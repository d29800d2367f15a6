"""The video modality plug-in (graphmm/modalities/video.py) and the moving_digits dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from graphmm.data.moving_digits import DIRECTIONS, MovingDigitsConfig, _render, load_moving_digits
from graphmm.graphs._util import concat_blocks, split_block
from graphmm.modalities.base import get_modality
from graphmm.modalities.video import VideoGraphBuilder, VideoGraphConf, VideoPatchEncoder

V = "vpatch"


def _clip(t: int, h: int = 8, w: int = 8, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, c, h, w, generator=torch.Generator().manual_seed(seed))


def _pairs(src: torch.Tensor, dst: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(src.tolist(), dst.tolist()))


def test_registered_as_a_modality_with_its_encoder_and_schema():
    spec = get_modality("video")
    assert (spec.ntype, spec.summary_id) == (V, 3)
    assert spec.builder is VideoGraphBuilder and spec.encoder is VideoPatchEncoder and spec.schema is VideoGraphConf
    # the builder's defaults are the schema's
    b, conf = VideoGraphBuilder(), VideoGraphConf()
    assert (b.patch_size, b.neighbors, b.temporal, b.temporal_window, b.channels) == (
        conf.patch_size, conf.neighbors, conf.temporal, conf.temporal_window, conf.channels)
    assert b.stride == conf.stride or (conf.stride is None and b.stride == b.patch_size)


@pytest.mark.parametrize("neighbors", [4, 8])
@pytest.mark.parametrize("window", [1, 2])
def test_spatial_edges_stay_in_a_frame_and_temporal_edges_join_one_cell(neighbors, window):
    b = VideoGraphBuilder(patch_size=2, stride=2, neighbors=neighbors, temporal_window=window)
    clip = b.check(_clip(4, 6, 8), None, "s")  # 3 x 4 grid per frame
    block = b.build([clip])
    t, rc = block.data["t"], block.data["rc"]
    assert block.counts.tolist() == [4 * 12] and t.tolist() == [f for f in range(4) for _ in range(12)]
    assert torch.allclose(block.data["tpos"], t / 3.0)
    assert block.data["pixels"].shape == (48, 4)
    s, d = block.edges[(V, "adjacent", V)]
    assert torch.equal(t[s], t[d])  # never across frames
    step = (rc[s] - rc[d]).abs()
    assert int(step.max()) == 1 and (neighbors == 8) == bool((step.sum(1) == 2).any())
    pairs_per_frame = 17 if neighbors == 4 else 17 + 12  # 3x4 grid: 9 + 8 straight, 6 + 6 diagonal
    assert len(s) == 2 * 4 * pairs_per_frame
    s, d = block.edges[(V, "temporal", V)]
    assert torch.equal(rc[s], rc[d])  # the same grid cell
    gap = t[d] - t[s]
    assert int(gap.min()) == 1 and int(gap.max()) == window
    assert len(s) == 12 * sum(4 - k for k in range(1, window + 1))
    rs, rd = block.edges[(V, "rev_temporal", V)]
    assert torch.equal(rs, d) and torch.equal(rd, s)


def test_temporal_false_leaves_the_relation_out():
    b = VideoGraphBuilder(patch_size=4, temporal=False)
    assert b.relations == [(V, "adjacent", V)]
    block = b.build([b.check(_clip(3), None, "s")])
    assert set(block.edges) == {(V, "adjacent", V)}
    assert VideoGraphBuilder(patch_size=4, neighbors=0).relations == [(V, "temporal", V), (V, "rev_temporal", V)]


def test_batch_of_clips_of_different_length_and_size_equals_per_sample_builds():
    b = VideoGraphBuilder(patch_size=4, stride=2, neighbors=8, temporal_window=2)
    clips = [_clip(5, seed=1), _clip(1, seed=2), _clip(3, 12, 8, seed=3), _clip(2, seed=4)]
    batch = b.build(clips)
    assert batch.counts.tolist() == [5 * 9, 1 * 9, 3 * 15, 2 * 9]
    assert (V, "temporal", V) in batch.edges and batch.data["tpos"][45:54].eq(0).all()  # one frame: tpos 0
    singles = [b.build([c]) for c in clips]
    for got, want in zip(split_block(batch), singles):
        assert got.data.keys() == want.data.keys()
        for k in want.data:
            assert torch.equal(got.data[k], want.data[k]), k
        for rel in b.relations:
            assert _pairs(*got.edges[rel]) == _pairs(*want.edges[rel]), rel
    again = concat_blocks(singles, V)
    for rel in b.relations:
        assert _pairs(*again.edges[rel]) == _pairs(*batch.edges[rel])
    empty = b.build([])
    assert empty.counts.tolist() == [] and empty.data["pixels"].shape == (0, 16)


def test_pixels_are_the_frames_patches():
    b = VideoGraphBuilder(patch_size=2, stride=2)
    clip = _clip(2, 4, 4, c=3)
    block = b.fit([clip]).build([clip])
    assert b.in_dim == 12 and block.data["pixels"].shape == (8, 12)
    # node (t=1, r=1, c=0): rows 2-3, cols 0-1 of frame 1, channel-major
    want = clip[1, :, 2:4, 0:2].reshape(-1)
    assert torch.equal(block.data["pixels"][4 + 2], want)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros((2, 1, 8, 8), np.float32), "must be a torch.Tensor"),
        (torch.rand(1, 8, 8), r"rank 4 .*video\[:, None\]"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "divide uint8"),
        (torch.rand(0, 1, 8, 8), "no frames"),
        (torch.rand(2, 0, 8, 8), "no channels"),
        (torch.rand(2, 3, 8, 8), "3 channels, the builder expects 1"),
        (torch.rand(2, 1, 3, 8), "smaller than one 4 x 4 patch"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN or inf"),
        (torch.full((2, 1, 8, 8), 1.5), r"values must lie in \[0, 1\]"),
    ],
)
def test_bad_clips_name_the_sample_and_the_problem(value, match):
    b = VideoGraphBuilder(patch_size=4, channels=1)
    with pytest.raises(ValueError, match=f"^sample 'v7' \\(index 2\\): .*{match}"):
        b.check(value, None, "sample 'v7' (index 2)")
    good = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=f"^sample 'v7' \\(index 2\\): .*{match}"):
        b.check_many([good, good, value], [None] * 3, ["a", "b", "sample 'v7' (index 2)"])


def test_check_many_equals_check_and_reports_the_first_error():
    b = VideoGraphBuilder(patch_size=4)
    clips = [torch.rand(2, 1, 8, 8, dtype=torch.float64), torch.rand(3, 1, 8, 8)]
    got = b.check_many(clips, [None, None], ["a", "b"])
    assert all(g.dtype == torch.float32 and torch.equal(g, b.check(c, None, "x")) for g, c in zip(got, clips))
    nan, short = torch.full((2, 1, 8, 8), float("nan")), torch.rand(2, 1, 2, 2)
    with pytest.raises(ValueError, match="^a: .*NaN"):  # the earlier clip's value error, not b's shape error
        b.check_many([nan, short], [None, None], ["a", "b"])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="temporal_window"):
        VideoGraphBuilder(temporal_window=0)
    with pytest.raises(ValueError, match="neighbors"):
        VideoGraphBuilder(neighbors=6)
    with pytest.raises(ValueError, match="patch_size"):
        VideoGraphBuilder(patch_size=0)


def test_fit_state_dict_round_trip_and_repr():
    b = VideoGraphBuilder(patch_size=4, stride=2)
    b.fit([torch.rand(3, 3, 12, 10), torch.rand(2, 3, 12, 10)])
    assert b.state_dict() == {"channels": 3, "frame_size": [12, 10]}
    other = VideoGraphBuilder(patch_size=4, stride=2)
    other.load_state_dict(b.state_dict())
    assert (other.channels, other.frame_size, other.in_dim) == (3, (12, 10), 48)
    with pytest.raises(ValueError, match="mixed channel counts"):
        VideoGraphBuilder().fit([torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8)])
    assert repr(b) == "VideoGraphBuilder(patch_size=4, stride=2, neighbors=4, temporal=True)"
    assert "temporal_window=3" in repr(VideoGraphBuilder(temporal_window=3))


def test_read_npy_and_png_folder(tmp_path):
    b = VideoGraphBuilder(patch_size=4)
    frames = (np.random.default_rng(0).random((4, 8, 8)) * 255).round().astype(np.uint8)
    np.save(tmp_path / "clip.npy", frames)
    got = b.read(tmp_path / "clip.npy")
    assert got.shape == (4, 1, 8, 8) and got.dtype == torch.float32
    assert torch.allclose(got[:, 0], torch.from_numpy(frames / 255.0).float())
    floats = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "f.npy", floats)
    assert torch.equal(b.read(tmp_path / "f.npy"), torch.from_numpy(floats))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1, 0):  # written out of order; read by sorted name
        Image.fromarray(frames[i % 4]).save(folder / f"frame_{i:02d}.png")
    from_png = b.read(folder)
    assert from_png.shape == (4, 1, 8, 8)
    assert torch.allclose(from_png[:, 0], torch.from_numpy(frames[[0, 1, 2, 2]] / 255.0).float(), atol=1e-6)
    b.check(from_png, None, "png")  # what read gives, check accepts
    # after fit: converted to the training channels and frame size
    b.fit([torch.rand(2, 1, 16, 16)])
    rgb = np.random.default_rng(2).random((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "rgb.npy", rgb)
    assert b.read(tmp_path / "rgb.npy").shape == (2, 1, 16, 16)
    assert b.read(folder).shape == (4, 1, 16, 16)


def test_read_errors_name_the_file(tmp_path):
    b = VideoGraphBuilder()
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        b.read(tmp_path / "nope.npy")
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"flat\.npy.*\(T, H, W\) or \(T, C, H, W\)"):
        b.read(tmp_path / "flat.npy")
    np.save(tmp_path / "ints.npy", np.zeros((2, 8, 8), np.int64))
    with pytest.raises(ValueError, match=r"ints\.npy.*uint8 or float"):
        b.read(tmp_path / "ints.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"bad\.npy.*not a readable"):
        b.read(tmp_path / "bad.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png frames"):
        b.read(tmp_path / "empty")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected a .npy array"):
        b.read(tmp_path / "clip.mp4")


def test_encoder_shape_position_codes_and_gradient():
    b = VideoGraphBuilder(patch_size=4, stride=4)
    clip = b.check(_clip(3), None, "s")
    data = b.fit([clip]).build([clip]).data
    enc = VideoPatchEncoder(b.in_dim, 9)  # odd width: the grid code fills 8 columns
    h = enc(data)
    assert h.shape == (12, 9)
    # same pixels and cell, other frame: only tpos differs
    same = {k: v.clone() for k, v in data.items()}
    same["pixels"][:] = data["pixels"][0]
    same["grid"][:] = data["grid"][0]
    same["rc"][:] = data["rc"][0]
    hs = enc(same)
    assert not torch.allclose(hs[0], hs[4]) and torch.allclose(hs[4], hs[5])
    moved = dict(data, rc=data["rc"] + 1)  # the grid code moves with the cell
    assert not torch.allclose(enc(moved), h)
    h.sum().backward()
    assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0
    with pytest.raises(KeyError, match="no field 'tpos'"):
        enc({k: v for k, v in data.items() if k != "tpos"})


def test_moving_digits_render_moves_the_digit_one_step_per_frame():
    digits = np.zeros((4, 8, 8), np.float32)
    digits[:, 3, 3] = 1.0  # one lit pixel per digit
    cfg = MovingDigitsConfig(noise_std=0.0)
    video = _render(digits, np.arange(4), cfg, np.random.default_rng(0), np.random.default_rng(1))
    assert video.shape == (4, 6, 1, 16, 16)
    for clip, direction in zip(video, DIRECTIONS):
        where = np.array([np.argwhere(f[0] == 1.0)[0] for f in clip])  # (T, 2) lit pixel per frame
        step = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}[direction]
        assert (np.diff(where, axis=0) == step).all(), direction


def test_moving_digits_config_errors():
    with pytest.raises(ValueError, match="travels 15 px.*canvas >= 23"):
        load_moving_digits(frames=6, speed=3)
    with pytest.raises(ValueError, match="frames must be >= 2"):
        load_moving_digits(frames=1)
    with pytest.raises(TypeError, match="Unknown MovingDigitsConfig field"):
        load_moving_digits(colour=True)


def test_moving_digits_is_seeded_with_40_labels():
    a, b = load_moving_digits(), load_moving_digits()
    assert {k: len(v) for k, v in a.items()} == {"train": 1256, "val": 271, "test": 270}
    assert all(x == y for k in a for x, y in zip(a[k], b[k]))  # same seed: the same clips
    labels = torch.tensor([s.label for v in a.values() for s in v])
    assert int(labels.min()) == 0 and int(labels.max()) == 39 and len(labels.unique()) == 40
    s = a["test"][5]
    assert s.video.shape == (6, 1, 16, 16) and s.video.dtype == torch.float32
    assert 0.0 <= float(s.video.min()) and float(s.video.max()) <= 1.0
    digit, direction = divmod(s.label, 4)
    assert s.target.endswith(f"moving {DIRECTIONS[direction]}") and s.id == "moving_digits/test/5"
    other = load_moving_digits(seed=1)["train"]
    assert not torch.equal(other[0].video, a["train"][0].video)
    # an opposite direction is, frame set for frame set, the same clip played backwards:
    # the mean frame of each direction pair is alike, the first frames are not
    clips = torch.stack([s.video for s in a["train"]])[:, :, 0]
    dirs = torch.tensor([s.label % 4 for s in a["train"]])
    right, left = clips[dirs == 0], clips[dirs == 1]
    assert (right.mean((0, 1)) - left.mean((0, 1))).abs().max() < 0.05
    assert (right[:, 0].mean(0) - left[:, 0].mean(0)).abs().max() > 0.1


# ---------------------------------------------------------------- through the core
TINY = ["experiment=moving_digits", "debug=fast", "trainer.max_epochs=1", "data.split=[0.9,0.05,0.05]",
        "model.hidden=16", "model.heads=2", "model.num_layers=2"]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A tiny model trained on moving_digits through train(cfg): (run dir, metrics, a test clip)."""
    from hydra import compose, initialize_config_dir

    from graphmm.config import CONF_DIR
    from graphmm.train import train

    out = tmp_path_factory.mktemp("video_run")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.device=cpu", "trainer.progress=false",
                                                       *TINY, f"output_dir={out}"])
    metrics = train(cfg)
    metrics = metrics[0] if isinstance(metrics, tuple) else metrics
    return out, metrics, load_moving_digits(split=(0.9, 0.05, 0.05))["test"][0]


def test_experiment_trains_end_to_end(video_run):
    out, metrics, _ = video_run
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (out / "checkpoints" / "best.pt").is_file() and (out / "metrics.json").is_file()
    from graphmm.predict import load_predictor

    predictor = load_predictor(out / "checkpoints" / "best.pt")
    video = predictor.builder.builders["video"]
    assert isinstance(video, VideoGraphBuilder) and (video.channels, video.frame_size) == (1, (16, 16))
    assert (V, "temporal", V) in predictor.builder.canonical_etypes


def test_ablation_without_temporal_relations_composes_and_builds(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(["experiment=moving_digits", "graph.video.temporal=false"])
    builder = instantiate(cfg.graph)
    assert (V, "temporal", V) not in builder.canonical_etypes and (V, "adjacent", V) in builder.canonical_etypes


@pytest.mark.parametrize("form", ["npy", "png"])
def test_predict_reads_a_clip_from_npy_or_a_png_folder(video_run, tmp_path, form):
    import json
    import os
    import subprocess
    import sys

    from graphmm.predict import load_predictor

    out, _, clip = video_run
    frames = (clip.video[:, 0].numpy() * 255).round().astype(np.uint8)  # (T, H, W)
    if form == "npy":
        path = tmp_path / "clip.npy"
        np.save(path, frames)
    else:
        path = tmp_path / "frames"
        path.mkdir()
        for t, f in enumerate(frames):
            Image.fromarray(f).save(path / f"{t:03d}.png")
    cmd = [sys.executable, "-m", "graphmm.predict", f"ckpt_path={out / 'checkpoints' / 'best.pt'}",
           f"input.video={path}", "top_k=3", "output=json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DGLBACKEND": "pytorch"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["probs"]) == 40 and sum(result["probs"]) == pytest.approx(1.0, abs=1e-4)
    predictor = load_predictor(out / "checkpoints" / "best.pt")
    s = predictor.sample_from_files(video=path)
    assert torch.allclose(s.video, clip.video, atol=0.5 / 255 + 1e-6)  # the 8-bit round trip
    assert result["probs"] == pytest.approx(predictor.predict([s])[0].tolist(), abs=1e-5)


def test_inspect_draws_a_video_sample(video_run, tmp_path):
    from collections import Counter

    import networkx as nx

    from graphmm.cli.inspect_graph import main

    out, _, _ = video_run
    png, graphml = tmp_path / "g.png", tmp_path / "g.graphml"
    assert main([f"ckpt_path={out / 'checkpoints' / 'best.pt'}", "split=test", "index=0", f"out={png}",
                 f"graphml={graphml}"]) == 0
    with Image.open(png) as im:
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100
    back = nx.read_graphml(graphml, force_multigraph=True)
    assert Counter(a["ntype"] for _, a in back.nodes(data=True))[V] == 6 * 9  # 6 frames x 3 x 3 patches
    rels = Counter(a["canonical_etype"] for _, _, a in back.edges(data=True))
    assert rels[f"{V}:temporal:{V}"] == 5 * 9 and rels[f"{V}:adjacent:{V}"] == 6 * 2 * 12
