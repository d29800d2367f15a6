"""Scale pieces: the blocked exact kNN and the windowed kNN, splitting and joining
node blocks, batch validation, and the pieces benchmarks/perf.py builds on."""

from __future__ import annotations

import itertools

import pytest
import torch

import graphmm.graphs._util as util
from graphmm.data import Sample
from graphmm.graphs import ImageGraphBuilder, MultimodalGraphBuilder
from graphmm.graphtypes import NodeBlock
from graphmm.graphs._util import (
    concat_blocks,
    knn_in_grid,
    knn_in_groups,
    knn_query_block,
    split_block,
)


def brute_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The specification: per point, the k smallest (distance, index) pairs, self excluded."""
    g, n, _ = x.shape
    kk = max(0, min(k, n - 1))
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    out = torch.empty(g, n, kk, dtype=torch.int64)
    for gi, i in itertools.product(range(g), range(n)):
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: (float(d[gi, i, j]), j))
        out[gi, i] = torch.tensor(ranked[:kk], dtype=torch.int64)
    return out


def previous_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The implementation this one replaced: all candidates at once, one topk per row."""
    g, n, _ = x.shape
    kk = min(k, n - 1)
    if kk <= 0:
        return torch.empty(g, n, 0, dtype=torch.int64)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    d[:, torch.arange(n), torch.arange(n)] = float("inf")
    return torch.topk(d, kk, dim=-1, largest=False, sorted=True).indices


# ---------------------------------------------------------------- exact kNN
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 17])
@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_knn_matches_brute_force_for_tiny_and_short_groups(n, k):
    gen = torch.Generator().manual_seed(n * 10 + k)
    for x in (torch.rand(3, n, 2, generator=gen), (torch.rand(2, n, 3, generator=gen) * 2).round()):
        ref = brute_knn(x, k)
        for chunk, cand in [(1, 1), (2, 3), (4, None), (2048, None)]:
            got = knn_in_groups(x, k, chunk=chunk, candidate_chunk=cand)
            assert got.dtype == torch.int64 and torch.equal(got, ref), (chunk, cand)


def test_knn_breaks_ties_by_lower_index():
    x = torch.zeros(1, 6, 2)  # every distance is 0
    assert knn_in_groups(x, 3, chunk=2, candidate_chunk=2).tolist() == [
        [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    ]
    # ties straddling block borders: candidates 1..4 all at distance 1 from point 0
    x = torch.tensor([[[0.0], [1.0], [-1.0], [1.0], [-1.0], [5.0]]])
    assert knn_in_groups(x, 3, chunk=1, candidate_chunk=2)[0, 0].tolist() == [1, 2, 3]


def test_knn_equals_the_previous_implementation_without_ties():
    x = torch.rand(2, 700, 16, generator=torch.Generator().manual_seed(0))
    ref = previous_knn(x, 8)
    assert torch.equal(knn_in_groups(x, 8), ref)
    assert torch.equal(knn_in_groups(x, 8, chunk=97, candidate_chunk=130), ref)
    assert torch.equal(knn_query_block(x, 300, 50, 8, 64), ref[:, 300:350])


def test_knn_memory_is_bounded_by_the_blocks(monkeypatch):
    # no distance block ever exceeds chunk x candidate_chunk, whatever the group size
    sizes = []
    original = util._euclid

    def recording(q, c):
        sizes.append(q.shape[0] * q.shape[1] * c.shape[1])
        return original(q, c)

    monkeypatch.setattr(util, "_euclid", recording)
    x = torch.rand(1, 3000, 4, generator=torch.Generator().manual_seed(1))
    got = knn_in_groups(x, 5, chunk=256, candidate_chunk=512)
    assert max(sizes) <= 256 * 512 < 3000 * 3000 and len(sizes) == 12 * 6
    monkeypatch.setattr(util, "_euclid", original)
    assert torch.equal(got, previous_knn(x, 5))
    # many small groups share a block, still within the bound
    sizes.clear()
    monkeypatch.setattr(util, "_euclid", recording)
    knn_in_groups(torch.rand(500, 9, 3), 4, chunk=16, candidate_chunk=16)
    # 3 groups of 9 x 9 distances fit a 16 x 16 block: ceil(500 / 3) blocks
    assert max(sizes) <= 16 * 16 and len(sizes) == -(-500 // 3)


def test_knn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x\\[None\\]"):
        knn_in_groups(torch.rand(5, 2), 2)
    with pytest.raises(ValueError, match="chunk"):
        knn_in_groups(torch.rand(1, 5, 2), 2, chunk=0)


# ---------------------------------------------------------------- windowed kNN
def brute_window(x: torch.Tensor, nh: int, nw: int, k: int, radius: int) -> torch.Tensor:
    wh, ww = min(2 * radius + 1, nh), min(2 * radius + 1, nw)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    rows = []
    for i in range(nh * nw):
        r, c = divmod(i, nw)
        r0, c0 = min(max(r - radius, 0), nh - wh), min(max(c - radius, 0), nw - ww)
        cand = [a * nw + b for a in range(r0, r0 + wh) for b in range(c0, c0 + ww) if a * nw + b != i]
        rows.append(sorted(cand, key=lambda j: (float(d[0, i, j]), j))[: min(k, wh * ww - 1)])
    return torch.tensor(rows, dtype=torch.int64).reshape(1, nh * nw, -1)


@pytest.mark.parametrize("nh, nw, radius, k", [(5, 7, 1, 3), (6, 4, 2, 8), (1, 9, 1, 2), (4, 4, 0, 3), (3, 3, 1, 20)])
def test_window_knn_matches_brute_force(nh, nw, radius, k):
    gen = torch.Generator().manual_seed(nh * nw)
    for x in (torch.rand(1, nh * nw, 3, generator=gen), (torch.rand(1, nh * nw, 2, generator=gen) * 2).round()):
        assert torch.equal(knn_in_grid(x, (nh, nw), k, radius, chunk=5), brute_window(x, nh, nw, k, radius))


def test_window_covering_the_grid_is_the_exact_search():
    x = (torch.rand(3, 24, 4, generator=torch.Generator().manual_seed(3)) * 3).round()
    assert torch.equal(knn_in_grid(x, (4, 6), 5, radius=3), knn_in_groups(x, 5))
    with pytest.raises(ValueError, match="grid shape"):
        knn_in_grid(x, (5, 5), 2, 1)


# ---------------------------------------------------------------- blocks
def test_split_and_concat_blocks_round_trip():
    b = MultimodalGraphBuilder(image=ImageGraphBuilder(patch_size=4, stride=2, neighbors=8, knn=3))
    images = [torch.rand(1, 8, 8), torch.rand(1, 12, 8), torch.rand(1, 8, 8)]
    block = b.image.build(images)
    parts = split_block(block)
    assert [int(p.counts) for p in parts] == block.counts.tolist()
    for p, im in zip(parts, images):  # each part is that image built alone
        alone = b.image.build([im])
        for key in alone.data:
            assert torch.equal(p.data[key], alone.data[key])
        for rel, (s, d) in alone.edges.items():
            got = sorted(zip(*(t.tolist() for t in p.edges[rel])))
            assert got == sorted(zip(s.tolist(), d.tolist()))
    joined = concat_blocks(parts, "patch")
    assert torch.equal(joined.counts, block.counts)
    for rel, (s, d) in block.edges.items():
        assert sorted(zip(*(t.tolist() for t in joined.edges[rel]))) == sorted(zip(s.tolist(), d.tolist()))
    cross_sample = {("patch", "x", "patch"): (torch.tensor([0]), torch.tensor([1]))}
    bad = NodeBlock("patch", torch.tensor([1, 1]), {}, cross_sample)
    with pytest.raises(ValueError, match="different samples"):
        split_block(bad)


# ---------------------------------------------------------------- batch validation
def test_validate_batch_equals_validate_and_reports_the_first_bad_sample():
    b = MultimodalGraphBuilder()
    good = [Sample(text="a b", image=torch.rand(1, 8, 8), audio=0.1 * torch.randn(2000), sample_rate=8000, id=i)
            for i in range(4)]
    good.append(Sample(audio=0.1 * torch.randn(4000, dtype=torch.float64), sample_rate=16000, id="resampled"))
    batch = b.validate_batch(good)
    for i, s in enumerate(good):
        one = b.validate(s, i)
        assert batch[i].keys() == one.keys()
        assert all(torch.equal(batch[i][k], one[k]) for k in ("image", "audio") if k in one)
    bad = list(good)
    bad[1] = good[1].replace(image=torch.full((1, 8, 8), 2.0))       # the first bad sample ...
    bad[3] = good[3].replace(audio=torch.full((2000,), float("nan")))  # ... and a later one
    with pytest.raises(ValueError, match="index 1.*values must lie in"):
        b.validate_batch(bad)
    with pytest.raises(ValueError, match="'x' \\(index 2\\): audio has NaN"):
        b.batch([good[0], good[1], good[2].replace(id="x", audio=torch.full((3000,), float("inf")))])


def test_build_tensors_is_what_batch_assembles():
    b = MultimodalGraphBuilder()
    samples = [Sample(text="one two three", image=torch.rand(1, 8, 8)),
               Sample(audio=0.1 * torch.randn(3000), sample_rate=8000)]
    t, g = b.build_tensors(samples), b.batch(samples)
    assert t.num_nodes == {nt: g.num_nodes(nt) for nt in g.ntypes}
    for r in g.canonical_etypes:
        assert torch.equal(torch.stack(t.edges[r]), torch.stack(g.edges(etype=r)))
        assert torch.equal(t.batch_num_edges[r], g.batch_num_edges(r))


# ---------------------------------------------------------------- benchmark pieces
def test_benchmark_models_and_containers_agree():
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Batch

    from benchmarks.perf import (
        NodeTransformer,
        PygHeteroGAT,
        synthetic_sample,
        to_heterodata,
    )
    from graphmm.nn import GraphClassifier

    b = MultimodalGraphBuilder()
    for n in (100, 400):
        assert b(synthetic_sample(n, 0)).num_nodes() == n
    samples = [synthetic_sample(100, s) for s in range(2)]
    g = b.batch(samples)
    data = Batch.from_data_list([to_heterodata(b.build_tensors([s])) for s in samples])
    for r in g.canonical_etypes:
        assert torch.equal(data[r].edge_index, torch.stack(g.edges(etype=r)))
    dgl_model = GraphClassifier(b.in_dims, b.canonical_etypes, 10, hidden=16, num_layers=3, conv="gat",
                                conv_kwargs={"heads": 4}, fusion="concat")
    pyg_model = PygHeteroGAT(b.in_dims, b.canonical_etypes, 10, hidden=16)
    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(dgl_model) == count(pyg_model)  # the same architecture
    assert pyg_model(data).shape == dgl_model(g).shape == NodeTransformer(b.in_dims, 10, hidden=16)(g).shape == (2, 10)


def test_image_builder_knn_radius_uses_the_window_search():
    """`knn_radius=r`: each patch's `similar` in-edges come from its k nearest patches
    within the (2r+1)^2 window, as `knn_in_grid` finds them, in both batched and
    per-sample builds."""
    from graphmm.graphs import ImageGraphBuilder

    images = [torch.rand(1, 20, 16), torch.rand(1, 12, 12)]
    wb = ImageGraphBuilder(patch_size=4, neighbors=4, knn=3, knn_radius=1)
    block = wb.build(images)
    src, dst = block.edges[("patch", "similar", "patch")]
    offset = 0
    for im in images:
        nh, nw = im.shape[1] // 4, im.shape[2] // 4
        n = nh * nw
        pixels = block.data["pixels"][offset : offset + n]
        nbr = knn_in_grid(pixels[None], (nh, nw), 3, 1)[0] + offset
        mine = (dst >= offset) & (dst < offset + n)
        got = sorted(zip(dst[mine].tolist(), src[mine].tolist()))
        assert got == sorted((i + offset, int(j)) for i in range(n) for j in nbr[i])
        alone_src, alone_dst = wb.build([im]).edges[("patch", "similar", "patch")]
        assert sorted(zip(alone_dst.tolist(), alone_src.tolist())) == [(d - offset, s_ - offset) for d, s_ in got]
        offset += n
    rsrc, rdst = block.edges[("patch", "rev_similar", "patch")]
    assert torch.equal(rsrc, dst) and torch.equal(rdst, src)


def test_validate_many_defers_to_a_subclass_validate():
    from graphmm.graphs import AudioGraphBuilder

    class Louder(AudioGraphBuilder):
        def validate(self, audio, sample_rate, where):
            return 2 * super().validate(audio, sample_rate, where)

    b = MultimodalGraphBuilder(text=None, image=None, audio=Louder(), cross=None)
    clip = 0.1 * torch.randn(2000)
    assert torch.equal(b.validate_batch([Sample(audio=clip, sample_rate=8000)])[0]["audio"], 2 * clip)


def test_epoch_and_inference_parts_run_both_pipelines():
    pytest.importorskip("torch_geometric")
    from benchmarks.perf import avdigits_sized_sample, bench_epoch, bench_inference, epoch_table, inference_table

    s = avdigits_sized_sample(3)
    assert s.image.shape == (1, 28, 28) and s.audio.shape == (8000,) and s.text is None and s.label == 3
    epoch = bench_epoch(rounds=1, n_batches=2, batch_size=3, datasets=("avdigits",))
    (row,) = epoch
    assert row["dataset"] == "avdigits" and row["samples"] == 6
    # 28 x 28 in 4 x 4 patches: 49 patches; 1 s of audio: 61 frames; 2 summary nodes
    assert row["nodes_per_graph"] == 49 + 61 + 2
    # warm-up and one timed round, two batches of 3 each: both paths trained every sample twice
    assert row["samples_trained"] == {"graphmm": 12, "pyg": 12}
    assert set(row["samples_per_s"]) == {"graphmm", "pyg"} and all(v > 0 for v in row["samples_per_s"].values())
    assert len(epoch_table(epoch)) == 3
    infer = bench_inference(rounds=1, n_batches=1, batch_size=4, datasets=("avdigits",))
    (row,) = infer
    assert row["samples"] == 4 and set(row["samples_per_s"]) == {"graphmm", "pyg", "graphmm_build", "pyg_build"}
    # forward alone and build + forward, warm-up and one round each
    assert row["samples_seen"] == {"graphmm": 16, "pyg": 16}
    assert len(inference_table(infer)) == 3


def test_epoch_models_match_and_the_cli_lists_the_new_parts():
    pytest.importorskip("torch_geometric")
    from benchmarks.perf import PARTS, default_models, train_recipe

    assert {"epoch", "inference", "latency"} <= set(PARTS)
    builder = train_recipe("experiment=avdigits").fit([])
    assert builder.text is None and builder.image.stride == 4
    ours, pyg = default_models(builder)
    assert pyg.hidden == 64 and len(pyg.convs) == 3
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in pyg.parameters())


def test_perf_device_cuda_refuses_clearly_without_a_gpu():
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf", "--device", "cuda", "--only", "epoch"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--device cuda is not usable: torch sees no CUDA device" in out.stderr
