"""open_clip towers as node featurizers, and the CLIP-space ``clip_knn`` relation.

Every test runs a tiny open_clip architecture registered for the tests (width 32,
two blocks, 8 x 8 patches on 32 x 32 images, a 16-token context) with random weights
saved to a temporary file and loaded back by path: nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from graphmm.clip import (
    ClipImageGraphBuilder,
    ClipTextGraphBuilder,
    cross_topk,
    file_sha256,
    load_clip,
    load_tokenizer,
    register_model_config,
    resolve_weights,
)
from graphmm.data import Sample
from graphmm.graphs import CrossModalBuilder, ImageGraphBuilder, MultimodalGraphBuilder
from graphmm.graphtypes import NodeBlock
from graphmm.nn import ClassificationHead, HeteroGNN, NodeEncoders, TypeReadout

TINY = "graphmm-test-tiny"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
GRID = 4  # 32 / 8


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """Random weights of the tiny architecture, saved as a checkpoint file."""
    folder = tmp_path_factory.mktemp("clip")
    register_model_config(TINY, TINY_CFG, folder)
    torch.manual_seed(0)
    model = load_clip(TINY, shared=False).model
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return str(path)


def _image_builder(ckpt: str, tmp_path, **kw) -> ClipImageGraphBuilder:
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return ClipImageGraphBuilder(TINY, checkpoint=ckpt, **kw)


def _text_builder(ckpt: str, tmp_path, **kw) -> ClipTextGraphBuilder:
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return ClipTextGraphBuilder(TINY, checkpoint=ckpt, **kw)


def _spec(ckpt: str, frozen: bool) -> dict:
    return {"type": "open_clip", "name": TINY, "checkpoint": ckpt, "frozen": frozen}


# ---------------------------------------------------------------------- loading
def test_weights_come_from_the_file_and_stay_frozen(ckpt):
    bundle = load_clip(TINY, checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=True)
    state = bundle.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert bundle.weights_id == file_sha256(ckpt)
    assert not any(p.requires_grad for p in bundle.model.parameters())
    assert load_clip(TINY, checkpoint=ckpt) is bundle  # memoised for the builders of one recipe


def test_missing_checkpoint_file_says_how_to_supply_one(tmp_path):
    missing = str(tmp_path / "nowhere" / "open_clip_pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"does not exist.*checkpoint=/path/to/file"):
        ClipImageGraphBuilder("ViT-B-32", checkpoint=missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip("ViT-B-32", checkpoint=missing)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown CLIP model name 'ViT-B-33'.*Did you mean"):
        ClipImageGraphBuilder("ViT-B-33")
    with pytest.raises(ValueError, match="unknown CLIP model name"):
        NodeEncoders({"patch": 32}, 16, featurizers={"patch": {"type": "open_clip", "name": "no-such-clip"}})
    with pytest.raises(ValueError, match="hf-hub: downloads"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")


def test_a_pretrained_tag_needs_a_local_file():
    with pytest.raises(ValueError, match=r"never downloads.*checkpoint=/path/to/that/file"):
        resolve_weights("ViT-B-32", pretrained="openai")
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag"):
        resolve_weights("ViT-B-32", pretrained="no-such-tag")


def test_a_file_of_another_architecture_is_refused(ckpt, tmp_path):
    wider = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "width": 48}}
    register_model_config(TINY + "-wide", wider, tmp_path)
    with pytest.raises(ValueError, match=r"(?s)could not load CLIP weights.*matches the checkpoint"):
        load_clip(TINY + "-wide", checkpoint=ckpt)


def test_patch_size_must_be_the_towers(ckpt, tmp_path):
    with pytest.raises(ValueError, match="patch_size=4.*8 x 8"):
        _image_builder(ckpt, tmp_path, patch_size=4)
    with pytest.raises(ValueError, match="do not overlap"):
        _image_builder(ckpt, tmp_path, stride=4)
    with pytest.raises(ValueError, match="RGB"):
        _image_builder(ckpt, tmp_path).validate(torch.rand(4, 8, 8), "sample 0")


# ---------------------------------------------------------------------- image features
def test_patch_nodes_are_clip_tokens_on_clips_grid(ckpt, tmp_path):
    builder = _image_builder(ckpt, tmp_path, neighbors=4, layer=0)
    images = [torch.rand(1, 8, 8), torch.rand(3, 20, 30)]
    block = builder.build(images)
    assert block.counts.tolist() == [GRID * GRID, GRID * GRID]
    assert block.data["clip"].shape == (2 * GRID * GRID, 32)
    assert "pixels" not in block.data  # frozen: the encoder reads `clip`
    rc = block.data["rc"]
    rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    assert torch.equal(rc[:16], torch.stack([rows, cols], -1).reshape(-1, 2))  # row-major, like CLIP's tokens
    # 4-neighbour adjacency on the 4 x 4 grid: 24 undirected pairs per image
    assert len(block.edges[("patch", "adjacent", "patch")][0]) == 2 * 2 * 24

    # reference: open_clip's own transform from create_model_and_transforms, the tower's NCHW grid
    bundle = load_clip(TINY, checkpoint=ckpt)
    x = torch.stack([bundle.transform(im.expand(3, -1, -1)) for im in images])
    ref = bundle.model.visual.forward_intermediates(x, indices=[0], intermediates_only=True, output_fmt="NCHW")
    grid = ref["image_intermediates"][0]  # (2, 32, 4, 4)
    sample = torch.repeat_interleave(torch.arange(2), 16)
    expected = grid[sample, :, rc[:, 0], rc[:, 1]]
    torch.testing.assert_close(block.data["clip"], expected, rtol=1e-4, atol=1e-5)


def test_grayscale_is_repeated_to_rgb(ckpt, tmp_path):
    builder = _image_builder(ckpt, tmp_path, cache=False)
    gray = torch.rand(1, 12, 12)
    a = builder.build([gray]).data["clip"]
    b = builder.build([gray.expand(3, -1, -1).clone()]).data["clip"]
    torch.testing.assert_close(a, b)


def test_empty_image_batch_keeps_the_widths(ckpt, tmp_path):
    frozen = _image_builder(ckpt, tmp_path).build([])
    tuned = _image_builder(ckpt, tmp_path, frozen=False).build([])
    assert frozen.data["clip"].shape == (0, 32) and tuned.data["pixels"].shape == (0, 3 * 8 * 8)


# ---------------------------------------------------------------------- text features
def test_words_pool_their_bpe_pieces(ckpt, tmp_path):
    builder = _text_builder(ckpt, tmp_path, layer=-1)
    text = "It's 123 sevens"
    words = builder.tokens(text)
    assert words == ["it's", "123", "sevens"]
    pieces = [builder.pieces(w) for w in words]
    assert [len(p) for p in pieces][:2] == [2, 3]  # it + 's ; 1 + 2 + 3
    block = builder.build([text])

    # reference: open_clip's tokenizer on the whole text gives the same sequence
    tok = load_tokenizer(TINY)
    ids = tok([text])
    flat = [i for p in pieces for i in p]
    assert ids[0, 1 : 1 + len(flat)].tolist() == flat
    model = load_clip(TINY, checkpoint=ckpt).model
    x = model.token_embedding(ids) + model.positional_embedding
    _, inter = model.transformer.forward_intermediates(x, attn_mask=model.attn_mask, indices=[1])
    states = inter[0][0]
    start = 1
    expected = []
    for p in pieces:
        expected.append(states[start : start + len(p)].mean(0))
        start += len(p)
    torch.testing.assert_close(block.data["clip"], torch.stack(expected), rtol=1e-4, atol=1e-5)


def test_text_is_cut_at_clips_context(ckpt, tmp_path):
    builder = _text_builder(ckpt, tmp_path)
    text = " ".join(["seven"] * 40)
    words = builder.tokens(text)
    assert sum(len(builder.pieces(w)) for w in words) <= 16 - 2 < sum(len(builder.pieces(w)) for w in words + ["seven"])
    block = builder.build([text, "", "a b"])
    assert block.counts.tolist() == [len(words), 0, 2]
    assert block.data["clip"].shape == (len(words) + 2, 32)


# ---------------------------------------------------------------------- model side
def _graph(ckpt, tmp_path, frozen: bool, joint: bool = False, clip_knn: int = 0):
    builder = MultimodalGraphBuilder(
        text=_text_builder(ckpt, tmp_path, frozen=frozen, joint=joint),
        image=_image_builder(ckpt, tmp_path, frozen=frozen, joint=joint, neighbors=8, knn=2),
        audio=None,
        cross=CrossModalBuilder(summary=True, clip_knn=clip_knn),
    )
    samples = [
        Sample(text="a handwritten seven", image=torch.rand(1, 8, 8), label=7),
        Sample(text="it's a 2 on a page", label=2),
        Sample(image=torch.rand(1, 8, 8), label=1),
        Sample(text="one", image=torch.rand(1, 8, 8), label=1),
    ]
    builder.fit(samples)
    graph, labels = builder.collate(samples)
    return builder, graph, labels


def test_finetuned_towers_reproduce_the_frozen_features(ckpt, tmp_path):
    _, g_frozen, _ = _graph(ckpt, tmp_path, frozen=True)
    _, g_tuned, _ = _graph(ckpt, tmp_path, frozen=False)
    assert "pixels" in g_tuned.nodes["patch"].data and "bpe" in g_tuned.nodes["word"].data
    tuned = {"word": _spec(ckpt, False), "patch": _spec(ckpt, False)}
    enc = NodeEncoders({"word": 10, "patch": 32}, 16, featurizers=tuned)
    for nt in ("word", "patch"):
        z = enc.pretrained[nt].clip_states(g_tuned)
        if nt == "word":  # same texts in both graphs: features are comparable node by node
            torch.testing.assert_close(z, g_frozen.nodes[nt].data["clip"], rtol=1e-4, atol=1e-5)
        assert z.shape == (g_tuned.num_nodes(nt), 32)
    # the patch path on its own: pixels reassemble into the preprocessed image
    builder = _image_builder(ckpt, tmp_path, frozen=False, cache=False)
    images = [torch.rand(1, 8, 8), torch.rand(3, 16, 16)]
    tuned = builder.build(images)
    frozen = _image_builder(ckpt, tmp_path, cache=False).build(images)
    import dgl

    g = dgl.heterograph({("patch", "adjacent", "patch"): tuned.edges[("patch", "adjacent", "patch")]},
                        num_nodes_dict={"patch": int(tuned.counts.sum())})
    g.nodes["patch"].data.update(tuned.data)
    g.set_batch_num_nodes({"patch": tuned.counts})
    g.set_batch_num_edges({("patch", "adjacent", "patch"): torch.tensor([g.num_edges() // 2] * 2)})
    torch.testing.assert_close(enc.pretrained["patch"].clip_states(g), frozen.data["clip"], rtol=1e-4, atol=1e-5)


def test_frozen_clip_gets_no_gradient_finetuned_clip_does(ckpt, tmp_path):
    builder, g, _ = _graph(ckpt, tmp_path, frozen=True)
    frozen = NodeEncoders(builder.in_dims, 16, featurizers={"word": _spec(ckpt, True), "patch": _spec(ckpt, True)})
    assert not any("tower" in n for n, _ in frozen.named_parameters())  # CLIP is not part of the model
    sum(h.sum() for h in frozen(g).values()).backward()
    for tower in (builder.image.tower(), builder.text.tower()):
        assert all(not p.requires_grad and p.grad is None for p in tower.parameters())
    assert not g.nodes["patch"].data["clip"].requires_grad
    assert frozen.pretrained["patch"].proj.weight.grad is not None

    builder, g, _ = _graph(ckpt, tmp_path, frozen=False)
    tuned = NodeEncoders(builder.in_dims, 16, featurizers={"word": _spec(ckpt, False), "patch": _spec(ckpt, False)})
    tuned.train()
    sum(h.pow(2).sum() for h in tuned(g).values()).backward()
    for nt in ("word", "patch"):
        params = list(tuned.pretrained[nt].tower.parameters())
        assert params and all(p.requires_grad for p in params)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), nt
    # the shared copy the builders use is untouched
    assert all(p.grad is None for p in load_clip(TINY, checkpoint=ckpt).model.parameters())


class _TinyClassifier(torch.nn.Module):
    """The GraphClassifier pipeline (encoders -> HeteroGNN -> readout -> head) with CLIP featurizers."""

    def __init__(self, builder: MultimodalGraphBuilder, featurizers: dict, hidden: int = 16) -> None:
        super().__init__()
        rels = [r for r in builder.canonical_etypes]
        self.encoders = NodeEncoders(builder.in_dims, hidden, featurizers=featurizers)
        self.gnn = HeteroGNN(
            rels, hidden, num_layers=2, conv="gat", conv_kwargs={"heads": 2}, output_ntypes=["patch", "word"]
        )
        self.readout = TypeReadout(["patch", "word"], hidden, pool="mean", fusion="concat")
        self.head = ClassificationHead(self.readout.out_dim, 10)

    def forward(self, g):
        return self.head(self.readout(g, self.gnn(g, self.encoders(g))))


@pytest.mark.parametrize("frozen", [True, False])
def test_one_training_step_with_clip_features_and_clip_knn(ckpt, tmp_path, frozen):
    builder, g, labels = _graph(ckpt, tmp_path, frozen=frozen, joint=True, clip_knn=3)
    assert ("word", "clip_knn", "patch") in g.canonical_etypes
    assert ("patch", "rev_clip_knn", "word") in g.canonical_etypes
    # words of samples with an image link to min(3, 16) patches of the same sample
    src, _ = g.edges(etype=("word", "clip_knn", "patch"))
    has_image = g.batch_num_nodes("patch")[torch.repeat_interleave(torch.arange(4), g.batch_num_nodes("word"))] > 0
    assert len(src) == 3 * int(has_image.sum())
    model = _TinyClassifier(builder, {"word": _spec(ckpt, frozen), "patch": _spec(ckpt, frozen)})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = F.cross_entropy(model(g), labels)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("encoders.pretrained.patch.proj") for n in changed)
    assert any(".tower." in n for n in changed) == (not frozen)


# ---------------------------------------------------------------------- cache
def test_feature_cache_hits_and_invalidation(ckpt, tmp_path):
    images = [torch.rand(1, 8, 8), torch.rand(1, 8, 8)]
    first = _image_builder(ckpt, tmp_path)
    feats = first.build(images).data["clip"]
    assert first.cache_info()["misses"] == 2 and first.cache_info()["hits"] == 0
    first.build(images)  # the next epoch: from memory
    assert first.cache_info()["hits"] == 2

    again = _image_builder(ckpt, tmp_path)  # a new run: from disk, CLIP never runs
    again._tower = torch.nn.Identity()  # would fail if called
    torch.testing.assert_close(again.build(images).data["clip"], feats)
    assert again.cache_info()["hits"] == 2 and again.cache_info()["misses"] == 0

    # another layer, or other preprocessing: recomputed
    other_layer = _image_builder(ckpt, tmp_path, layer=0)
    other_layer.build(images)
    assert other_layer.cache_info()["misses"] == 2
    squash = _image_builder(ckpt, tmp_path, preprocess={"resize_mode": "squash", "interpolation": "bilinear"})
    squash.build(images)
    assert squash.cache_info()["misses"] == 2

    # new weights in the same file: a new SHA-256, so recomputed, and different
    state = torch.load(ckpt, weights_only=True)
    path = str(tmp_path / "weights.bin")
    torch.save(state, path)
    old_hash = file_sha256(path)
    _image_builder(path, tmp_path).build(images)
    unchanged = _image_builder(path, tmp_path)
    torch.testing.assert_close(unchanged.build(images).data["clip"], feats)
    assert unchanged.cache_info()["hits"] == 2
    state["visual.conv1.weight"] = state["visual.conv1.weight"] * 2
    torch.save(state, path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_sha256(path) != old_hash
    new = _image_builder(path, tmp_path)
    out = new.build(images).data["clip"]
    assert new.cache_info()["misses"] == 2 and not torch.allclose(out, feats)

    text = _text_builder(ckpt, tmp_path)
    text.build(["a seven", "a two"])
    text2 = _text_builder(ckpt, tmp_path)
    text2.build(["a two", "a seven", "a seven"])
    assert text2.cache_info()["hits"] == 3 and text2.cache_info()["misses"] == 0


def test_builders_pickle_without_the_model(ckpt, tmp_path):
    builder = _image_builder(ckpt, tmp_path, cache=False)
    images = [torch.rand(1, 8, 8)]
    feats = builder.build(images).data["clip"]
    clone = pickle.loads(pickle.dumps(builder))
    assert clone._bundle is None
    torch.testing.assert_close(clone.build(images).data["clip"], feats)


# ---------------------------------------------------------------------- clip_knn
def _brute_force(emb_a, counts_a, emb_b, counts_b, k):
    pairs = set()
    off_a = torch.cumsum(counts_a, 0) - counts_a
    off_b = torch.cumsum(counts_b, 0) - counts_b
    for s in range(len(counts_a)):
        for i in range(int(counts_a[s])):
            a = int(off_a[s]) + i
            sims = [
                (float(F.cosine_similarity(emb_a[a], emb_b[int(off_b[s]) + j], dim=0)), j)
                for j in range(int(counts_b[s]))
            ]
            for _, j in sorted(sims, key=lambda t: -t[0])[:k]:
                pairs.add((a, int(off_b[s]) + j))
    return pairs


@pytest.mark.parametrize("k,chunk", [(1, 4096), (3, 5), (7, 1)])
def test_clip_knn_matches_brute_force(k, chunk):
    gen = torch.Generator().manual_seed(k)
    counts_a = torch.tensor([3, 0, 5, 2, 4, 1])
    counts_b = torch.tensor([6, 4, 2, 0, 9, 16])
    emb_a = torch.randn(int(counts_a.sum()), 8, generator=gen)
    emb_b = torch.randn(int(counts_b.sum()), 8, generator=gen) * 3
    src, dst = cross_topk(emb_a, counts_a, emb_b, counts_b, k, chunk=chunk)
    got = list(zip(src.tolist(), dst.tolist()))
    assert len(got) == len(set(got))
    assert set(got) == _brute_force(emb_a, counts_a, emb_b, counts_b, k)


def test_clip_knn_relation_in_the_cross_builder():
    counts_w, counts_p = torch.tensor([2, 3]), torch.tensor([4, 4])
    blocks = {
        "word": NodeBlock("word", counts_w, {"clip_emb": torch.randn(5, 6)}),
        "patch": NodeBlock("patch", counts_p, {"clip_emb": torch.randn(8, 6)}),
    }
    cross = CrossModalBuilder(clip_knn=2)
    assert cross.ntypes == {"word", "patch"}
    assert cross.relations(["word", "patch"]) == [("word", "clip_knn", "patch"), ("patch", "rev_clip_knn", "word")]
    _, edges = cross.build(blocks, 2)
    src, dst = edges[("word", "clip_knn", "patch")]
    assert torch.equal(edges[("patch", "rev_clip_knn", "word")][0], dst)
    assert set(zip(src.tolist(), dst.tolist())) == _brute_force(
        blocks["word"].data["clip_emb"], counts_w, blocks["patch"].data["clip_emb"], counts_p, 2
    )
    del blocks["patch"].data["clip_emb"]
    with pytest.raises(ValueError, match=r"ClipImageGraphBuilder\(..., joint=True\)"):
        cross.build(blocks, 2)
    with pytest.raises(ValueError, match="clip_knn must be >= 0"):
        CrossModalBuilder(clip_knn=-1)


# ---------------------------------------------------------------------- specs and config
def test_learned_featurizers_are_todays_encoders():
    dims = {"word": 20, "patch": 12, "frame": 8, "summary": 3}
    torch.manual_seed(0)
    plain = NodeEncoders(dims, 16)
    torch.manual_seed(0)
    learned = NodeEncoders(dims, 16, featurizers={"word": {"type": "learned"}, "patch": None})
    assert plain.state_dict().keys() == learned.state_dict().keys()
    assert all(torch.equal(v, learned.state_dict()[k]) for k, v in plain.state_dict().items())


def test_featurizer_spec_errors(ckpt):
    with pytest.raises(ValueError, match="is not one of"):
        NodeEncoders({"word": 5}, 8, featurizers={"word": {"type": "bert"}})
    with pytest.raises(ValueError, match="encodes \\['patch', 'word'\\] nodes only"):
        NodeEncoders({"frame": 5}, 8, featurizers={"frame": {"type": "open_clip", "name": TINY}})
    with pytest.raises(ValueError, match="needs name="):
        NodeEncoders({"patch": 5}, 8, featurizers={"patch": {"type": "open_clip"}})
    with pytest.raises(ValueError, match="unknown key"):
        NodeEncoders({"patch": 5}, 8, featurizers={"patch": {"type": "open_clip", "name": TINY, "ckpt": "x"}})
    with pytest.raises(ValueError, match="layer=5 is out of range"):
        NodeEncoders({"patch": 5}, 8, featurizers={"patch": {"type": "open_clip", "name": TINY, "layer": 5}})


def test_frozen_encoder_on_a_plain_graph_says_how_to_build_it(ckpt):
    plain = MultimodalGraphBuilder(text=None, audio=None, cross=None, image=ImageGraphBuilder())
    g = plain(Sample(image=torch.rand(1, 8, 8)))
    enc = NodeEncoders({"patch": 16}, 8, featurizers={"patch": _spec(ckpt, True)})
    with pytest.raises(KeyError, match=r"ClipImageGraphBuilder\(frozen=True\)"):
        enc(g)


def test_graph_schemas_instantiate_the_clip_builders(ckpt, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphmm.clip.schemas import ClipCrossModalConf, ClipImageGraphConf, ClipTextGraphConf, FeaturizerConf
    from graphmm.config import GraphConf

    cfg = OmegaConf.merge(
        OmegaConf.structured(GraphConf),
        {"image": ClipImageGraphConf(), "text": ClipTextGraphConf(), "cross": ClipCrossModalConf()},
        {
            "audio": None,
            "image": {"name": TINY, "checkpoint": ckpt, "joint": True, "cache_dir": str(tmp_path), "neighbors": 8},
            "text": {"name": TINY, "checkpoint": ckpt, "joint": True, "cache_dir": str(tmp_path)},
            "cross": {"clip_knn": 2},
        },
    )
    builder = instantiate(cfg, _convert_="all")
    assert isinstance(builder.image, ClipImageGraphBuilder) and isinstance(builder.text, ClipTextGraphBuilder)
    assert builder.image.grid == (GRID, GRID) and builder.cross.clip_knn == 2
    g = builder(Sample(text="a seven", image=torch.rand(1, 8, 8)))
    assert g.num_edges(("word", "clip_knn", "patch")) == 2 * 2
    spec = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(FeaturizerConf), _spec(ckpt, True)))
    assert NodeEncoders(builder.in_dims, 8, featurizers={"patch": spec, "word": spec})(g)["patch"].shape == (16, 8)


# ---------------------------------------------------------------------- docs
def test_docs_python_examples_run(capsys):
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "clip.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)
    assert blocks
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})
    out = capsys.readouterr().out
    assert "tensor([16,  0])" in out and "'patch': (16, 64)" in out



@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "fine-tuned"])
def test_digits_clip_experiment_trains_from_the_command_line_config(ckpt, make_cfg, tmp_path, frozen):
    """``experiment=digits_clip`` composed by Hydra, pointed at a local checkpoint,
    trains and tests end to end; the fine-tuned run's best checkpoint reloads."""
    from graphmm.predict import load_predictor
    from graphmm.train import train

    cfg = make_cfg([
        "experiment=digits_clip", f"model.encoders.patch.name={TINY}", f"model.encoders.patch.checkpoint={ckpt}",
        f"model.encoders.patch.frozen={str(frozen).lower()}", f"graph.image.cache_dir={tmp_path / 'cache'}",
        "debug=fast", "trainer.limit_train_batches=2", "trainer.max_epochs=1", "trainer.eval_batch_size=64",
        "model.hidden=16", "model.heads=2", "model.num_layers=1", "data.split=[0.1,0.05,0.85]",
    ])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    run = tmp_path / "run"
    predictor = load_predictor(run / "checkpoints" / "best.pt")
    assert predictor.predict([Sample(text="a seven", image=torch.rand(1, 8, 8))]).shape == (1, 10)
