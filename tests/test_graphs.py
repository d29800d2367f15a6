"""Graph builders: edge counts on known inputs, batching, reverse relations, bad input."""

from __future__ import annotations

import subprocess
import sys

import dgl
import pytest
import torch

from graphmm.data import Sample
from graphmm.graphs import (
    AudioGraphBuilder,
    CrossModalBuilder,
    ImageGraphBuilder,
    MultimodalGraphBuilder,
    TextGraphBuilder,
    Vocab,
    to_networkx,
    tokenize,
)


def edge_set(g: dgl.DGLGraph, etype: tuple[str, str, str]) -> set[tuple[int, int]]:
    s, d = g.edges(etype=etype)
    return set(zip(s.tolist(), d.tolist()))


def image_only(**kw) -> MultimodalGraphBuilder:
    return MultimodalGraphBuilder(text=None, audio=None, cross=None, image=ImageGraphBuilder(**kw))


# ---------------------------------------------------------------- image
def test_patch_grid_3x3_four_neighbours_has_12_undirected_edges():
    g = image_only(patch_size=4, neighbors=4)(Sample(image=torch.rand(1, 12, 12)))
    assert g.num_nodes("patch") == 9
    edges = edge_set(g, ("patch", "adjacent", "patch"))
    undirected = {tuple(sorted(e)) for e in edges}
    assert len(undirected) == 12 and len(edges) == 24
    # row-major numbering: 0-1, 0-3 are neighbours, 0-4 (diagonal) is not
    assert (0, 1) in edges and (1, 0) in edges and (0, 3) in edges and (0, 4) not in edges


def test_patch_grid_3x3_eight_neighbours_has_20_undirected_edges():
    g = image_only(patch_size=4, neighbors=8)(Sample(image=torch.rand(1, 12, 12)))
    undirected = {tuple(sorted(e)) for e in edge_set(g, ("patch", "adjacent", "patch"))}
    assert len(undirected) == 20
    assert (0, 4) in undirected and (2, 4) in undirected and (0, 8) not in undirected


def test_patch_stride_pixels_and_positions():
    img = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8) / 128
    g = image_only(patch_size=4, stride=2, neighbors=4)(Sample(image=img))
    assert g.num_nodes("patch") == 9  # (8 - 4) // 2 + 1 = 3 per side
    rc = g.nodes["patch"].data["rc"]
    assert rc[5].tolist() == [1, 2]
    pix = g.nodes["patch"].data["pixels"]
    assert pix.shape == (9, 2 * 4 * 4)
    # patch (1, 2) starts at pixel (2, 4): its pixels, channel-major
    expected = img[:, 2:6, 4:8].reshape(-1)
    assert torch.equal(pix[5], expected)
    span = g.nodes["patch"].data["span"]
    assert torch.allclose(span[5], torch.tensor([4 / 8, 8 / 8]))


def test_knn_similar_matches_brute_force_and_has_reverse():
    torch.manual_seed(0)
    img = torch.rand(1, 16, 16)
    k = 3
    g = image_only(patch_size=4, neighbors=0, knn=k)(Sample(image=img))
    x = g.nodes["patch"].data["pixels"].double()
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    ref = {(int(j), i) for i in range(len(x)) for j in torch.topk(d[i], k, largest=False).indices}
    got = edge_set(g, ("patch", "similar", "patch"))
    assert got == ref
    assert all(s != t for s, t in got)
    assert edge_set(g, ("patch", "rev_similar", "patch")) == {(t, s) for s, t in got}


def test_knn_clipped_to_available_patches():
    g = image_only(patch_size=4, neighbors=0, knn=10)(Sample(image=torch.rand(1, 8, 8)))
    assert g.num_edges(("patch", "similar", "patch")) == 4 * 3


# ---------------------------------------------------------------- text
def test_text_relations_on_known_sentence():
    b = MultimodalGraphBuilder(text=TextGraphBuilder(window=3), image=None, audio=None, cross=None)
    g = b(Sample(text="a b c d"))
    assert g.num_nodes("word") == 4
    assert edge_set(g, ("word", "next", "word")) == {(0, 1), (1, 2), (2, 3)}
    assert edge_set(g, ("word", "rev_next", "word")) == {(1, 0), (2, 1), (3, 2)}
    undirected = {tuple(sorted(e)) for e in edge_set(g, ("word", "cooccur", "word"))}
    assert undirected == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)}
    assert g.num_edges(("word", "cooccur", "word")) == 10
    assert g.nodes["word"].data["pos"].tolist() == [0, 1, 2, 3]


def test_empty_text_gives_zero_word_nodes():
    b = MultimodalGraphBuilder()
    g = b(Sample(text=""))
    assert g.num_nodes("word") == 0
    assert g.num_nodes("summary") == 0
    bg = b.batch([Sample(text=""), Sample(text="one word")])
    assert bg.batch_num_nodes("word").tolist() == [0, 2]


def test_tokenize_and_vocab():
    assert tokenize("It's 7, SEVEN!") == ["it's", "7", ",", "seven", "!"]
    v = Vocab.build([["a", "b", "a"], ["c", "a", "b"]], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]
    assert v.lookup(["a", "c", "b"]).tolist() == [2, 1, 3]
    assert Vocab.from_state_dict(v.state_dict()) == v


def test_unfitted_builder_hashes_words_stably():
    b = TextGraphBuilder(hash_buckets=100)
    ids = b.ids(["seven", "three", "seven"])
    assert ids[0] == ids[2] and 2 <= int(ids.min()) and int(ids.max()) < 102
    assert b.vocab_size == 102
    b.fit(["seven three", "seven"])
    assert b.vocab_size == len(b.vocab) == 4
    assert b.ids(["seven", "unseen"]).tolist() == [2, 1]


# ---------------------------------------------------------------- audio
def test_audio_frames_and_temporal_window():
    b = MultimodalGraphBuilder(text=None, image=None, cross=None, audio=AudioGraphBuilder(window=2))
    g = b(Sample(audio=torch.randn(4000) * 0.1, sample_rate=8000))
    assert g.num_nodes("frame") == 1 + (4000 - 256) // 128 == 30
    assert g.nodes["frame"].data["mel"].shape == (30, 40)
    assert g.num_edges(("frame", "next", "frame")) == 29 + 28
    assert edge_set(g, ("frame", "rev_next", "frame")) == {(t, s) for s, t in edge_set(g, ("frame", "next", "frame"))}
    time = g.nodes["frame"].data["time"]
    assert torch.allclose(time[:2], torch.tensor([128 / 8000, 256 / 8000]))


def test_audio_is_resampled():
    b = MultimodalGraphBuilder(text=None, image=None, cross=None)
    g = b(Sample(audio=torch.randn(8000) * 0.1, sample_rate=16000))  # 0.5 s -> 4000 samples
    assert g.num_nodes("frame") == 30


def _audio_only(normalize: str = "global") -> MultimodalGraphBuilder:
    return MultimodalGraphBuilder(text=None, image=None, cross=None, audio=AudioGraphBuilder(normalize=normalize))


def _noise_clips() -> list[Sample]:
    """Three training clips of white noise, of different lengths and levels."""
    return [Sample(audio=torch.randn(int(n)) * a, sample_rate=8000) for n, a in zip([3000, 4000, 5000], [0.1, 0.5, 1.0])]


def test_audio_normalisation_per_clip_and_global():
    clip = Sample(audio=torch.randn(4000), sample_rate=8000)
    b = _audio_only("clip")
    assert torch.allclose(b(clip).nodes["frame"].data["mel"].mean(0), torch.zeros(40), atol=1e-4)

    torch.manual_seed(0)
    train = _noise_clips()
    b = _audio_only("global")
    raw = b.batch(train).nodes["frame"].data["mel"]  # before fit: identity
    b.fit(train)
    mel = b.batch(train).nodes["frame"].data["mel"]
    assert torch.allclose(mel.mean(0), torch.zeros(40), atol=1e-4)
    assert torch.allclose(mel.std(0, unbiased=False), torch.ones(40), atol=1e-3)
    assert torch.allclose(mel, (raw - raw.mean(0)) / raw.std(0, unbiased=False), atol=1e-3)
    fresh = _audio_only()
    fresh.load_state_dict(b.state_dict())
    assert torch.allclose(fresh(clip).nodes["frame"].data["mel"], b(clip).nodes["frame"].data["mel"])


def test_audio_clip_mean_normalisation_removes_a_gain_and_keeps_the_spread():
    torch.manual_seed(0)
    train = _noise_clips()
    b = _audio_only("clip_mean")
    raw = [b(s).nodes["frame"].data["mel"] for s in train]  # before fit: the clip means removed only
    assert all(torch.allclose(r.mean(0), torch.zeros(40), atol=1e-4) for r in raw)
    assert not torch.allclose(raw[0].std(0), torch.ones(40), atol=0.1)  # unlike "clip", no per-clip scaling
    b.fit(train)
    mel = b.batch(train).nodes["frame"].data["mel"]
    centred = torch.cat(raw)
    assert torch.allclose(mel, (centred - centred.mean(0)) / centred.std(0, unbiased=False), atol=1e-3)
    # a gain is a constant offset of the log-mel: the clip's features do not change
    clip = torch.randn(4000) * 0.3
    quiet, loud = (b(Sample(audio=clip * gain, sample_rate=8000)).nodes["frame"].data["mel"] for gain in (1.0, 4.0))
    assert torch.allclose(quiet, loud, atol=1e-3)
    glob = _audio_only("global").fit(train)
    quiet, loud = (glob(Sample(audio=clip * gain, sample_rate=8000)).nodes["frame"].data["mel"] for gain in (1.0, 4.0))
    assert not torch.allclose(quiet, loud, atol=1e-1)
    fresh = _audio_only("clip_mean")
    fresh.load_state_dict(b.state_dict())
    assert torch.allclose(fresh.batch(train).nodes["frame"].data["mel"], mel)
    with pytest.raises(ValueError, match="clip_mean"):
        AudioGraphBuilder(normalize="cmn")


# ---------------------------------------------------------------- cross-modal
def test_cross_modal_relations_counts():
    b = MultimodalGraphBuilder(
        image=ImageGraphBuilder(patch_size=4),
        cross=CrossModalBuilder(bipartite=[["text", "image"]], summary=True, align=[["frame", "word"]]),
    )
    s = Sample(text="one two", image=torch.rand(1, 8, 8), audio=torch.randn(4000) * 0.1, sample_rate=8000)
    g = b(s)
    assert g.num_edges(("word", "cross", "patch")) == 2 * 4
    assert edge_set(g, ("patch", "rev_cross", "word")) == {(t, s_) for s_, t in edge_set(g, ("word", "cross", "patch"))}
    assert g.num_nodes("summary") == 3
    assert g.nodes["summary"].data["modality"].tolist() == [0, 1, 2]
    assert g.num_edges(("summary", "summary_link", "summary")) == 6
    assert g.num_edges(("frame", "to_summary", "summary")) == g.num_nodes("frame")
    aligned = edge_set(g, ("frame", "aligned", "word"))
    span = g.nodes["frame"].data["span"]
    for f in range(g.num_nodes("frame")):
        words = {w for ff, w in aligned if ff == f}
        expect = {w for w in (0, 1) if span[f, 0] < (w + 1) / 2 and w / 2 < span[f, 1]}
        assert words == expect
    assert {w for _, w in aligned} == {0, 1}


def test_summary_only_for_present_modalities():
    b = MultimodalGraphBuilder()
    bg = b.batch([Sample(text="hi there"), Sample(image=torch.rand(1, 8, 8)), Sample()])
    assert bg.batch_num_nodes("summary").tolist() == [1, 1, 0]
    assert bg.nodes["summary"].data["modality"].tolist() == [0, 1]
    assert bg.num_edges(("summary", "summary_link", "summary")) == 0


def test_recipe_without_relations_is_refused():
    with pytest.raises(ValueError, match="no relation"):
        image_only(neighbors=0)


def test_cross_relation_needs_enabled_modality():
    with pytest.raises(ValueError, match="no enabled modality produces"):
        MultimodalGraphBuilder(audio=None, cross=CrossModalBuilder(bipartite=[["word", "frame"]]))
    with pytest.raises(ValueError, match="unknown node type"):
        CrossModalBuilder(bipartite=[["word", "pixel"]])


# ---------------------------------------------------------------- batching
def _mixed_samples() -> list[Sample]:
    torch.manual_seed(1)
    return [
        Sample(text="the number seven", image=torch.rand(1, 8, 8), audio=torch.randn(3000) * 0.1, sample_rate=8000),
        Sample(text="just text"),
        Sample(image=torch.rand(1, 12, 8)),
        Sample(audio=torch.randn(2000) * 0.1, sample_rate=8000, text=""),
        Sample(),
        Sample(text="a b", image=torch.rand(1, 8, 12), audio=torch.randn(5000) * 0.1, sample_rate=8000),
    ]


def test_batch_equals_per_sample_graphs():
    b = MultimodalGraphBuilder(
        image=ImageGraphBuilder(patch_size=4, stride=2, neighbors=8, knn=2),
        cross=CrossModalBuilder(summary=True, bipartite=[["word", "patch"]], align=[["patch", "frame"]]),
    )
    samples = _mixed_samples()
    bg = b.batch(samples)
    assert bg.batch_size == len(samples)
    ref = dgl.batch([b(s) for s in samples])
    for nt in bg.ntypes:
        assert torch.equal(bg.batch_num_nodes(nt), ref.batch_num_nodes(nt)), nt
        for k in ref.nodes[nt].data:
            assert torch.allclose(bg.nodes[nt].data[k], ref.nodes[nt].data[k], atol=1e-5), (nt, k)
    for et in bg.canonical_etypes:
        assert torch.equal(bg.batch_num_edges(et), ref.batch_num_edges(et)), et
        assert edge_set(bg, et) == edge_set(ref, et), et
    for one, s in zip(dgl.unbatch(bg), samples):
        single = b(s)
        for et in single.canonical_etypes:
            assert edge_set(one, et) == edge_set(single, et)


def test_every_directed_relation_has_its_reverse():
    b = MultimodalGraphBuilder(
        image=ImageGraphBuilder(knn=2),
        cross=CrossModalBuilder(summary=True, bipartite=[["word", "frame"]], align=[["word", "patch"]]),
    )
    g = b.batch(_mixed_samples())
    rels = set(g.canonical_etypes)
    symmetric = {"cooccur", "adjacent", "summary_link"}
    for s, r, d in rels:
        if r in symmetric:
            e = edge_set(g, (s, r, d))
            assert e == {(v, u) for u, v in e}, r
        elif not r.startswith("rev_"):
            assert (d, f"rev_{r}", s) in rels
            assert edge_set(g, (d, f"rev_{r}", s)) == {(v, u) for u, v in edge_set(g, (s, r, d))}


def test_schema_is_fixed_and_in_dims_match_features():
    b = MultimodalGraphBuilder()
    b.fit([Sample(text="a b c", image=torch.rand(1, 8, 8))])
    g1, g2 = b(Sample(text="x")), b(Sample(image=torch.rand(1, 8, 8)))
    assert g1.canonical_etypes == g2.canonical_etypes == sorted(b.canonical_etypes)
    assert g1.nodes["patch"].data["pixels"].shape == (0, b.in_dims["patch"])
    assert g2.nodes["patch"].data["pixels"].shape[1] == b.in_dims["patch"]
    assert g2.nodes["frame"].data["mel"].shape[1] == b.in_dims["frame"]
    assert b.in_dims["word"] == len(b.text.vocab)


def test_default_builder_handles_any_valid_sample():
    b = MultimodalGraphBuilder()
    for s in _mixed_samples():
        g = b(s)
        assert g.batch_size == 1


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "sample, message",
    [
        (Sample(id="tiny", image=torch.rand(1, 3, 3)), "smaller than one 4 x 4 patch"),
        (Sample(id="short", audio=torch.randn(100), sample_rate=8000), "shorter than one frame"),
        (Sample(id="nanimg", image=torch.full((1, 8, 8), float("nan"))), "NaN or inf"),
        (Sample(id="infwav", audio=torch.full((4000,), float("inf")), sample_rate=8000), "NaN or inf"),
        (Sample(id="rank2", image=torch.rand(8, 8)), "rank 3"),
        (Sample(id="rank2wav", audio=torch.randn(2, 4000), sample_rate=8000), "1-D waveform"),
        (Sample(id="uint8", image=torch.zeros(1, 8, 8, dtype=torch.uint8)), "float tensor"),
        (Sample(id="intwav", audio=torch.zeros(4000, dtype=torch.int16), sample_rate=8000), "float waveform"),
        (Sample(id="norate", audio=torch.randn(4000)), "sample_rate"),
        (Sample(id="range", image=torch.full((1, 8, 8), 255.0)), r"\[0, 1\]"),
        (Sample(id="notstr", text=7), "text must be a str"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_names_sample_and_problem(sample, message):
    b = MultimodalGraphBuilder()
    with pytest.raises(ValueError, match=message) as err:
        b.batch([Sample(text="fine"), sample])
    assert repr(sample.id) in str(err.value) and "index 1" in str(err.value)


def test_bad_input_without_id_names_index():
    with pytest.raises(ValueError, match="sample at index 2"):
        MultimodalGraphBuilder().batch([Sample(), Sample(), Sample(image=torch.rand(1, 2, 2))])


def test_not_a_sample():
    with pytest.raises(ValueError, match="expected graphmm.data.Sample"):
        MultimodalGraphBuilder().batch([{"text": "hi"}])  # type: ignore[list-item]


def test_wrong_channel_count():
    b = MultimodalGraphBuilder(image=ImageGraphBuilder(channels=1))
    with pytest.raises(ValueError, match="3 channels, the builder expects 1"):
        b(Sample(id="rgb", image=torch.rand(3, 8, 8)))


# ---------------------------------------------------------------- export, import
def test_to_networkx_counts_per_type():
    b = MultimodalGraphBuilder(cross=CrossModalBuilder(summary=True, bipartite=[["word", "patch"]]))
    g = b.batch(_mixed_samples()[:2])
    nxg = to_networkx(g)
    assert nxg.number_of_nodes() == g.num_nodes()
    assert nxg.number_of_edges() == g.num_edges()
    for nt in g.ntypes:
        assert sum(1 for _, d in nxg.nodes(data=True) if d["ntype"] == nt) == g.num_nodes(nt)
    for et in g.canonical_etypes:
        cet = ":".join(et)
        assert sum(1 for *_, d in nxg.edges(data=True) if d["canonical_etype"] == cet) == g.num_edges(et)


def test_graphs_import_without_hydra():
    code = "import sys, graphmm.graphs, graphmm.nn; assert 'hydra' not in sys.modules, 'hydra imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mel_power_is_torchaudios_mel_spectrogram():
    """The builder's power from the real view of the STFT equals torchaudio's
    ``MelSpectrogram(power=2)`` (complex ``abs().pow(2)``), window and mel bank included."""
    gen = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(3, 4000, generator=gen)
    for kw in ({}, {"n_fft": 400, "win_length": 300, "hop_length": 160, "n_mels": 23, "sample_rate": 16000}):
        builder = AudioGraphBuilder(**kw)
        torch.testing.assert_close(builder._mel_power(wave), builder._mel(wave), rtol=1e-5, atol=1e-6)


def test_long_clips_give_the_same_frames_in_mel_passes(monkeypatch):
    import graphmm.graphs.audio as audio_mod

    gen = torch.Generator().manual_seed(0)
    clips = [0.1 * torch.randn(256 + 128 * 3000, generator=gen), 0.1 * torch.randn(256 + 128 * 200, generator=gen)]
    builder = AudioGraphBuilder(window=2)
    monkeypatch.setattr(audio_mod, "MEL_CHUNK_FRAMES", 10**9)
    whole = builder.build(clips)
    for chunk in (4096, 1000, 7):  # passes of several clips, uneven last passes
        monkeypatch.setattr(audio_mod, "MEL_CHUNK_FRAMES", chunk)
        parts = builder.build(clips)
        assert parts.data["mel"].shape == whole.data["mel"].shape == (3001 + 201, 40)
        torch.testing.assert_close(parts.data["mel"], whole.data["mel"], rtol=0, atol=1e-5)
        assert all(torch.equal(a, b) for k in whole.edges for a, b in zip(parts.edges[k], whole.edges[k]))


@pytest.mark.parametrize("neighbors", [4, 8])
@pytest.mark.parametrize("radius", [None, 2])
def test_image_relations_come_out_sorted_so_the_batch_need_not_sort_them(neighbors, radius):
    """``adjacent`` and ``rev_similar`` leave the image builder sorted by (src, dst) and
    ``similar`` by dst (``build_tensors`` then needs no O(E log E) sort), with the same
    edges as the plain definition: grid neighbours in both directions, k nearest."""
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(1, h, w, generator=gen) for h, w in ((8, 8), (4, 12), (12, 4), (4, 4), (8, 16))]
    block = ImageGraphBuilder(patch_size=4, neighbors=neighbors, knn=3, knn_radius=radius).build(images)

    def key(rel: tuple[str, str, str], by_dst: bool = False) -> torch.Tensor:
        src, dst = block.edges[rel]
        return (dst * 10**6 + src) if by_dst else (src * 10**6 + dst)

    for rel, by_dst in ((("patch", "adjacent", "patch"), False), (("patch", "rev_similar", "patch"), False),
                        (("patch", "similar", "patch"), True)):
        k = key(rel, by_dst)
        assert bool((k[1:] > k[:-1]).all()), rel
    # adjacency: symmetric, and each patch's neighbours are exactly the in-grid offsets
    src, dst = block.edges[("patch", "adjacent", "patch")]
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert pairs == {(d, s) for s, d in pairs}
    rc = block.data["rc"]
    delta = (rc[dst] - rc[src]).abs()
    assert bool((delta.max(1).values == 1).all())
    if neighbors == 4:
        assert bool((delta.sum(1) == 1).all())
    # 2 x 2 grid of the 8 x 8 image, 8-neighbourhood: each patch sees the other 3
    assert int((src < 4).sum()) == (12 if neighbors == 8 else 8)
    # the batch sorts `similar` by (src, dst) with a stable sort of its sources alone
    builder = MultimodalGraphBuilder(text=None, audio=None, cross=None,
                                     image=ImageGraphBuilder(patch_size=4, neighbors=neighbors, knn=3, knn_radius=radius))
    batch_src, batch_dst = builder.build_tensors([Sample(image=x) for x in images]).edges[("patch", "similar", "patch")]
    k = batch_src * 10**6 + batch_dst
    assert bool((k[1:] > k[:-1]).all())
    assert torch.equal(k.sort().values, key(("patch", "similar", "patch")).sort().values)


@pytest.mark.parametrize("window", [1, 2, 4])
def test_sequence_relations_come_out_sorted_with_the_plain_edges(window):
    """Text ``next``/``rev_next``/``cooccur`` and audio ``next``/``rev_next`` leave their
    builders sorted by (src, dst), so the batch needs no sort, and hold exactly the
    pairs of the definition: same sequence, ``j - i`` in the relation's offsets."""
    gen = torch.Generator().manual_seed(0)
    clips = [0.1 * torch.randn(n, generator=gen) for n in (256, 256 + 128 * 5, 256 + 128 * 2, 256 + 128)]
    audio = AudioGraphBuilder(window=window).build(clips)
    texts = ["one two three four five", "a", "", "x y", "the cat sat on the mat again"]
    text = TextGraphBuilder(window=window + 1).build(texts)

    def plain(counts: torch.Tensor, offsets: list[int]) -> set[tuple[int, int]]:
        out, start = set(), 0
        for n in counts.tolist():
            out |= {(start + i, start + i + o) for i in range(n) for o in offsets if 0 <= i + o < n}
            start += n
        return out

    w = window
    cases = [(audio, ("frame", "next", "frame"), range(1, w + 1)), (audio, ("frame", "rev_next", "frame"), range(-w, 0)),
             (text, ("word", "next", "word"), [1]), (text, ("word", "rev_next", "word"), [-1]),
             (text, ("word", "cooccur", "word"), [o for o in range(-w, w + 1) if o])]
    for block, rel, offsets in cases:
        src, dst = block.edges[rel]
        k = src * 10**6 + dst
        assert bool((k[1:] > k[:-1]).all()), rel
        assert set(zip(src.tolist(), dst.tolist())) == plain(block.counts, list(offsets)), rel


# ---------------------------------------------------------------- word vectors
def _reference_ppmi_vectors(docs, vocab_size, window, alpha=0.75):
    """The definition, one pair at a time (a test oracle, not the library's way)."""
    import numpy as np

    c = np.zeros((vocab_size, vocab_size))
    for d in docs:
        d = d.tolist()
        for i in range(len(d)):
            for j in range(i + 1, min(len(d), i + window + 1)):
                c[d[i], d[j]] += 1
                c[d[j], d[i]] += 1
    word, ctx = c.sum(1), c.sum(0) ** alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(c * ctx.sum() / np.outer(word, ctx))
    ppmi = np.where((c > 0) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi)
    vec = u * np.sqrt(np.where(s > 1e-9 * s.max(), s, 0.0))  # the null space is arbitrary: no part of it
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 1e-9), ppmi


def test_ppmi_svd_vectors_follow_the_definition():
    from graphmm.graphs.text import ppmi_svd_vectors

    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(2, 9, (n,), generator=g) for n in (7, 3, 9, 1, 0, 6)]
    vec = ppmi_svd_vectors(docs, vocab_size=9, dim=9, window=2)
    ref, ppmi = _reference_ppmi_vectors(docs, 9, 2)
    assert vec.shape == (9, 9) and vec.dtype == torch.float32
    # at full rank the cosine similarities are the reference's (signs of the SVD aside)
    torch.testing.assert_close(vec @ vec.T, torch.from_numpy(ref @ ref.T).float(), atol=1e-4, rtol=1e-4)
    assert vec[:2].abs().sum() == 0  # ids 0 and 1 never occur: zero rows
    # truncated: fewer columns, more than the vocabulary pads with zeros
    assert ppmi_svd_vectors(docs, 9, dim=3, window=2).shape == (9, 3)
    wide = ppmi_svd_vectors(docs, 9, dim=12, window=2)
    assert wide.shape == (9, 12) and wide[:, 9:].abs().sum() == 0
    assert ppmi_svd_vectors([torch.tensor([], dtype=torch.int64)], 4, dim=2).abs().sum() == 0
    with pytest.raises(ValueError, match="dim >= 1"):
        ppmi_svd_vectors(docs, 9, dim=0)


def test_word_vectors_are_fitted_on_training_text_and_start_the_word_embedding(tmp_path):
    from graphmm.nn import GraphClassifier

    train = ["the cat sat on the mat", "the dog sat on the rug", "a car drove down the road",
             "a bus drove down the street", "the cat ate", "the dog ate"] * 3
    text = TextGraphBuilder(word_vectors=8, vector_window=2)
    builder = MultimodalGraphBuilder(text=text, image=None, audio=None).fit([Sample(text=t) for t in train])
    vec, stoi = text.vectors, text.vocab.stoi
    assert vec.shape == (len(text.vocab), 8)
    cos = vec @ vec.T
    # words of the same contexts are nearer than words of others
    assert cos[stoi["cat"], stoi["dog"]] > cos[stoi["cat"], stoi["car"]]
    assert cos[stoi["car"], stoi["bus"]] > cos[stoi["car"], stoi["dog"]]
    # the state (with the vectors) survives a safe load
    torch.save(builder.state_dict(), tmp_path / "b.pt")
    again = MultimodalGraphBuilder(text=TextGraphBuilder(word_vectors=8, vector_window=2), image=None, audio=None)
    again.load_state_dict(torch.load(tmp_path / "b.pt", weights_only=True))
    assert torch.equal(again.builders["text"].vectors, vec)

    torch.manual_seed(0)
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, 2, hidden=16)
    before = model.encoders.types["word"].embed.weight.detach().clone()
    assert builder.init_encoders(model) == ["word"]
    weight = model.encoders.types["word"].embed.weight.detach()
    cat = stoi["cat"]
    torch.testing.assert_close(weight[cat, :8], vec[cat] * 8 ** 0.5)
    assert torch.equal(weight[cat, 8:], before[cat, 8:])  # columns beyond the vectors keep their start
    assert torch.equal(weight[0], before[0])  # <pad> has no vector: untouched
    # without word vectors nothing changes
    plain = MultimodalGraphBuilder(image=None, audio=None).fit([Sample(text=t) for t in train])
    assert plain.builders["text"].vectors is None and plain.init_encoders(model) == []
    with pytest.raises(ValueError, match="word vectors must be"):
        model.encoders.types["word"].load_vectors(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="word_vectors must be >= 0"):
        TextGraphBuilder(word_vectors=-1)


def test_train_starts_the_word_embedding_from_word_vectors(make_cfg, tmp_path, caplog):
    import logging

    from graphmm.train import train

    cfg = make_cfg(["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1", "graph.image=null",
                    "graph.audio=null", "graph.text.word_vectors=8"])
    with caplog.at_level(logging.INFO, logger="graphmm.train"):
        metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert "encoders of word started from the training data's statistics" in caplog.text
    from graphmm.utils import load_checkpoint

    ckpt = load_checkpoint(next((tmp_path).rglob("best.pt")))
    assert ckpt["builder"]["text"]["vectors"].shape[1] == 8
