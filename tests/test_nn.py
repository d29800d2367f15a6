"""Tests for graphmm.nn: relation convs, registry, encoders, HeteroGNN, readout, model."""

from __future__ import annotations

import warnings

import dgl
import pytest
import torch

from graphmm.nn import (
    ClassificationHead,
    GraphClassifier,
    HeteroGNN,
    NodeEncoders,
    SumConv,
    TypeReadout,
    build_conv,
    get_conv,
    list_convs,
    register_conv,
)
from graphmm.nn import registry as registry_mod

NTYPES = ("word", "patch", "frame", "summary")
SCHEMA = [
    ("word", "next", "word"),
    ("word", "rev_next", "word"),
    ("word", "cooccur", "word"),
    ("patch", "adjacent", "patch"),
    ("patch", "similar", "patch"),
    ("patch", "rev_similar", "patch"),
    ("frame", "next", "frame"),
    ("frame", "rev_next", "frame"),
    ("word", "cross", "patch"),
    ("patch", "rev_cross", "word"),
    ("frame", "aligned", "word"),
    ("word", "rev_aligned", "frame"),
    ("word", "to_summary", "summary"),
    ("summary", "rev_to_summary", "word"),
    ("patch", "to_summary", "summary"),
    ("summary", "rev_to_summary", "patch"),
    ("frame", "to_summary", "summary"),
    ("summary", "rev_to_summary", "frame"),
    ("summary", "summary_link", "summary"),
]
VOCAB, PATCH_DIM, N_MELS = 30, 12, 8
IN_DIMS = {"word": VOCAB, "patch": PATCH_DIM, "frame": N_MELS, "summary": 3}
CONV_CASES = {
    "sum": {"linear": True},
    "gcn": {},
    "gat": {"heads": 2},
    "sage": {},
}


def make_sample(
    n_word: int,
    n_patch: int,
    n_frame: int,
    *,
    seed: int = 0,
    edges_per_rel: int = 5,
    only: tuple[str, str, str] | None = None,
    empty: tuple[tuple[str, str, str], ...] = (),
) -> dgl.DGLGraph:
    """A graph in the full schema with random edges and node data.

    ``only``: the single relation that gets edges; ``empty``: relations forced to
    have zero edges. A summary node exists for each present modality.
    """
    gen = torch.Generator().manual_seed(seed)
    counts = {"word": n_word, "patch": n_patch, "frame": n_frame}
    modality = [i for i, t in enumerate(("word", "patch", "frame")) if counts[t] > 0]
    counts["summary"] = len(modality)
    data = {}
    for cet in SCHEMA:
        s, _, d = cet
        n_e = edges_per_rel if counts[s] and counts[d] else 0
        if (only is not None and cet != only) or cet in empty:
            n_e = 0
        src = torch.randint(0, max(counts[s], 1), (n_e,), generator=gen)
        dst = torch.randint(0, max(counts[d], 1), (n_e,), generator=gen)
        if s == d and n_e:
            # No self-loops, so a cross-node gradient can only come from messages.
            dst = torch.where(dst == src, (dst + 1) % counts[d], dst)
        data[cet] = (src, dst)
    g = dgl.heterograph(data, num_nodes_dict=counts)
    g.nodes["word"].data["token"] = torch.randint(0, VOCAB, (n_word,), generator=gen)
    g.nodes["word"].data["pos"] = torch.arange(n_word)
    g.nodes["word"].data["span"] = torch.rand(n_word, 2, generator=gen)
    g.nodes["patch"].data["pixels"] = torch.rand(n_patch, PATCH_DIM, generator=gen)
    g.nodes["patch"].data["rc"] = torch.randint(0, 4, (n_patch, 2), generator=gen)
    g.nodes["patch"].data["grid"] = torch.rand(n_patch, 2, generator=gen)
    g.nodes["patch"].data["span"] = torch.rand(n_patch, 2, generator=gen)
    g.nodes["frame"].data["mel"] = torch.randn(n_frame, N_MELS, generator=gen)
    g.nodes["frame"].data["time"] = torch.rand(n_frame, generator=gen)
    g.nodes["frame"].data["tpos"] = torch.rand(n_frame, generator=gen)
    g.nodes["frame"].data["span"] = torch.rand(n_frame, 2, generator=gen)
    g.nodes["summary"].data["modality"] = torch.tensor(modality, dtype=torch.int64)
    return g


def make_model(conv: str = "gat", **kwargs) -> GraphClassifier:
    torch.manual_seed(0)
    defaults = dict(hidden=8, num_layers=2, conv=conv, conv_kwargs=CONV_CASES.get(conv), dropout=0.0)
    defaults.update(kwargs)
    return GraphClassifier(IN_DIMS, SCHEMA, num_classes=3, **defaults)


def dense_adj(src: torch.Tensor, dst: torch.Tensor, n_dst: int, n_src: int) -> torch.Tensor:
    """A[i, j] = number of edges j -> i."""
    adj = torch.zeros(n_dst, n_src, dtype=torch.float64)
    adj.index_put_((dst, src), torch.ones(len(src), dtype=torch.float64), accumulate=True)
    return adj


# ---------------------------------------------------------------- SumConv


def test_sumconv_matches_dense_homogeneous() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 12
    src = torch.randint(0, n, (40,), generator=gen)  # may contain multi-edges and self-loops
    dst = torch.randint(0, n, (40,), generator=gen)
    g = dgl.graph((src, dst), num_nodes=n)
    h = torch.randn(n, 5, dtype=torch.float64, generator=gen)
    conv = SumConv()
    assert len(list(conv.parameters())) == 0
    out = conv(g, h)
    ref = torch.relu(h + dense_adj(src, dst, n, n) @ h)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # Identity activation keeps negative values: the exact pre-activation sum.
    torch.testing.assert_close(SumConv(activation=None)(g, h), h + dense_adj(src, dst, n, n) @ h)


def test_sumconv_matches_dense_bipartite() -> None:
    gen = torch.Generator().manual_seed(2)
    n_src, n_dst = 7, 4
    src = torch.randint(0, n_src, (15,), generator=gen)
    dst = torch.randint(0, n_dst, (15,), generator=gen)
    g = dgl.heterograph({("word", "cross", "patch"): (src, dst)}, {"word": n_src, "patch": n_dst})
    hs = torch.randn(n_src, 3, dtype=torch.float64, generator=gen)
    hd = torch.randn(n_dst, 3, dtype=torch.float64, generator=gen)
    out = SumConv()(g, (hs, hd))
    ref = torch.relu(hd + dense_adj(src, dst, n_dst, n_src) @ hs)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="pair"):
        SumConv()(g, hs)


def test_sumconv_linear_matches_dense() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 9
    src = torch.randint(0, n, (20,), generator=gen)
    dst = torch.randint(0, n, (20,), generator=gen)
    g = dgl.graph((src, dst), num_nodes=n)
    h = torch.randn(n, 4, dtype=torch.float64, generator=gen)
    conv = SumConv(4, 6, linear=True).double()
    with torch.no_grad():
        conv.bias.normal_()
    out = conv(g, h)
    ref = torch.relu((h + dense_adj(src, dst, n, n) @ h) @ conv.weight + conv.bias)
    assert out.shape == (n, 6)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_sumconv_zero_edges_zero_nodes_and_width_errors() -> None:
    g = dgl.heterograph({("frame", "aligned", "word"): ([], [])}, {"frame": 0, "word": 3})
    h = torch.randn(3, 4)
    out = SumConv()(g, (torch.zeros(0, 4), h))
    torch.testing.assert_close(out, torch.relu(h))
    empty = dgl.heterograph({("frame", "next", "frame"): ([], [])}, {"frame": 0})
    assert SumConv(4, 8, linear=True)(empty, torch.zeros(0, 4)).shape == (0, 8)
    with pytest.raises(ValueError, match="linear=True"):
        SumConv(4, 8)


# ---------------------------------------------------------------- wrappers


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_wrappers_contract_bipartite_zero_in_degree_and_empty(name: str) -> None:
    kwargs = CONV_CASES[name]
    g = dgl.heterograph(
        {("word", "cross", "patch"): ([0, 1, 1], [0, 0, 2]), ("frame", "aligned", "word"): ([], [])},
        {"word": 4, "patch": 5, "frame": 0},
    )
    conv = build_conv(name, (6, 6), 6, **kwargs)
    out = conv(g["word", "cross", "patch"], (torch.randn(4, 6), torch.randn(5, 6)))
    assert out.shape == (5, 6)  # patches 1, 3, 4 have no in-edges
    assert torch.isfinite(out).all()
    out = conv(g["frame", "aligned", "word"], (torch.zeros(0, 6), torch.randn(4, 6)))
    assert out.shape == (4, 6) and torch.isfinite(out).all()
    homo = dgl.graph(([0, 1], [1, 2]), num_nodes=4)  # node 0 and 3: zero in-degree
    out = build_conv(name, 6, 6, **kwargs)(homo, torch.randn(4, 6))
    assert out.shape == (4, 6) and torch.isfinite(out).all()


def test_gat_attention_sums_to_one_over_in_edges() -> None:
    gen = torch.Generator().manual_seed(4)
    n = 10
    src = torch.randint(0, n, (30,), generator=gen)
    dst = torch.randint(0, n - 2, (30,), generator=gen)  # the last two nodes get no in-edges
    g = dgl.graph((src, dst), num_nodes=n)
    conv = build_conv("gat", 8, 8, heads=4)
    out, attn = conv(g, torch.randn(n, 8, generator=gen), get_attention=True)
    assert out.shape == (n, 8) and attn.shape == (30, 4)
    assert (attn >= 0).all()
    per_node = torch.zeros(n, 4).index_add_(0, dst, attn)
    has_in = g.in_degrees() > 0
    torch.testing.assert_close(per_node[has_in], torch.ones(int(has_in.sum()), 4))
    assert torch.all(per_node[~has_in] == 0)


def _dgl_gat_like(conv) -> "dgl.nn.GATConv":
    """DGL's own GATConv holding the parameters of a graphmm GATLayer."""
    from dgl.nn.pytorch import GATConv

    in_feats = (conv.fc_src.in_features, conv.fc_dst.in_features) if hasattr(conv, "fc_src") else conv.fc.in_features
    ref = GATConv(in_feats, conv._head_feats, conv._heads, allow_zero_in_degree=True, bias=conv.bias is not None)
    with torch.no_grad():
        for name in ("fc", "fc_src", "fc_dst"):
            if hasattr(conv, name):
                getattr(ref, name).weight.copy_(getattr(conv, name).weight)
        ref.attn_l.copy_(conv.attn_l.view(ref.attn_l.shape))
        ref.attn_r.copy_(conv.attn_r.view(ref.attn_r.shape))
        if conv.bias is not None:
            ref.bias.copy_(conv.bias)
    return ref


@pytest.mark.parametrize("case", ["same_type", "bipartite_shared_w", "bipartite_own_w", "block"])
def test_gat_matches_dgl_gatconv(case: str) -> None:
    """The layer computes DGL's GATConv, with the score a^T W h folded into one
    product h @ (W^T a): outputs, attention and gradients agree with DGL's module."""
    gen = torch.Generator().manual_seed(5)
    n_src, n_dst = 12, (12 if case == "same_type" else 7)
    src = torch.randint(0, n_src, (40,), generator=gen)
    dst = torch.randint(0, n_dst, (40,), generator=gen)
    if case == "same_type":
        g = dgl.heterograph({("patch", "adjacent", "patch"): (src, dst)})
    else:
        g = dgl.heterograph({("word", "cross", "patch"): (src, dst)}, num_nodes_dict={"word": n_src, "patch": n_dst})
    if case == "block":
        g = dgl.to_block(dgl.graph((src, dst % 5), num_nodes=n_src), dst_nodes=torch.arange(5))
    conv = build_conv("gat", (8, 6) if case == "bipartite_own_w" else 8, 8, heads=2)
    torch.nn.init.normal_(conv.bias)
    ref = _dgl_gat_like(conv)
    x = torch.randn(g.num_src_nodes(), 8, generator=gen, requires_grad=True)
    if case in ("same_type", "block"):
        feat = x
    else:
        feat = (x, torch.randn(n_dst, 6 if case == "bipartite_own_w" else 8, generator=gen))
    out, attn = conv(g, feat, get_attention=True)
    ref_out, ref_attn = ref(g, feat, get_attention=True)
    torch.testing.assert_close(out, ref_out.flatten(1))
    torch.testing.assert_close(attn, ref_attn.squeeze(-1))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (ref_grad,) = torch.autograd.grad(ref_out.square().sum(), x)
    torch.testing.assert_close(grad, ref_grad)


def test_relation_sum_equals_dgl_stack_then_sum() -> None:
    """RelationGraphConv adds the relations into one type pairwise; the result is
    DGL's HeteroGraphConv (stack, then sum) bit for bit."""
    from dgl.nn.pytorch import HeteroGraphConv

    from graphmm.nn.hetero import RelationGraphConv

    gen = torch.Generator().manual_seed(3)
    edges = {("patch", r, "patch"): (torch.randint(0, 9, (30,), generator=gen), torch.randint(0, 9, (30,), generator=gen))
             for r in ("adj_r", "adj_l", "adj_d")}
    g = dgl.heterograph(edges)
    mods = {cet: build_conv("gat", 8, 8, heads=2) for cet in g.canonical_etypes}
    h = {"patch": torch.randn(9, 8, generator=gen)}
    ours = RelationGraphConv(mods, aggregate="sum")(g, h)["patch"]
    ref = HeteroGraphConv({cet[1]: m for cet, m in mods.items()}, aggregate="sum")(g, h)["patch"]
    assert torch.equal(ours, ref)


def test_gat_concat_false_averages_full_width_heads() -> None:
    g = dgl.graph(([0, 1], [1, 2]), num_nodes=3)
    conv = build_conv("gat", 4, 6, heads=4, concat=False)
    assert conv(g, torch.randn(3, 4)).shape == (3, 6)  # 4 does not divide 6: fine without concat
    assert conv.attn_l.shape == (4, 6)


def test_gat_heads_must_divide_hidden() -> None:
    with pytest.raises(ValueError, match="heads=3 .*hidden|does not divide"):
        build_conv("gat", 10, 10, heads=3)
    with pytest.raises(ValueError, match="does not divide"):
        GraphClassifier(IN_DIMS, SCHEMA, 3, hidden=10, conv="gat", conv_kwargs={"heads": 3})
    with pytest.raises(ValueError, match="does not divide"):
        HeteroGNN([], hidden=10, conv="gat", conv_kwargs={"heads": 4})


# ---------------------------------------------------------------- registry


def test_registry_lists_unknown_and_warns_on_duplicate() -> None:
    assert {"sum", "gcn", "gat", "sage"} <= set(list_convs())
    assert list_convs() == sorted(list_convs())
    with pytest.raises(ValueError) as err:
        get_conv("nope")
    for name in ("sum", "gcn", "gat", "sage"):
        assert name in str(err.value)
    assert isinstance(build_conv("sum", 4, 4), SumConv)

    def factory_a(i, o, **kw):
        return SumConv(i, o, **kw)

    def factory_b(i, o, **kw):
        return SumConv(i, o, **kw)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the first registration must not warn
            register_conv("test_dup")(factory_a)
        with pytest.warns(UserWarning, match="already registered"):
            register_conv("test_dup")(factory_b)
        assert get_conv("test_dup") is factory_b
    finally:
        registry_mod._CONV_REGISTRY.pop("test_dup", None)
    with pytest.raises(ValueError, match="test_dup|Unknown"):
        get_conv("test_dup")


def test_unknown_names_are_listed() -> None:
    with pytest.raises(ValueError, match="gat"):
        make_model("nope")
    with pytest.raises(ValueError, match="attention"):
        make_model("sum", conv_kwargs=None, pool="median")
    with pytest.raises(ValueError, match="concat"):
        make_model("sum", conv_kwargs=None, fusion="film")
    with pytest.raises(ValueError, match="mean"):
        make_model("sum", conv_kwargs=None, aggregate="prod")
    with pytest.raises(ValueError, match="relu"):
        make_model("sum", conv_kwargs=None, activation="swishy")


# ---------------------------------------------------------------- encoders


def test_node_encoders_shapes_zero_nodes_and_position() -> None:
    g = make_sample(5, 3, 0)
    enc = NodeEncoders(IN_DIMS, hidden=8)
    out = enc(g)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "word": (5, 8), "patch": (3, 8), "frame": (0, 8), "summary": (2, 8)
    }
    # Same token at different positions must differ (position is encoded).
    g.nodes["word"].data["token"] = torch.full((5,), 4)
    words = enc(g)["word"]
    assert not torch.allclose(words[0], words[1])
    # Types missing from in_dims are skipped.
    assert set(NodeEncoders({"word": VOCAB}, 8)(g)) == {"word"}
    g.nodes["word"].data["token"][0] = VOCAB
    with pytest.raises(ValueError, match="in_dims"):
        enc(g)
    with pytest.raises(ValueError, match="supported"):
        NodeEncoders({"video": 3}, 8)


# ---------------------------------------------------------------- HeteroGNN


def test_heterognn_modules_keyed_by_canonical_etype() -> None:
    gnn = HeteroGNN(SCHEMA, hidden=8, conv="sum")
    layer = gnn.layers[0]
    assert len(layer.mods) == len(SCHEMA)
    assert layer.mod_dict[("word", "next", "word")] is not layer.mod_dict[("frame", "next", "frame")]
    assert (
        layer.mod_dict[("summary", "rev_to_summary", "word")]
        is not layer.mod_dict[("summary", "rev_to_summary", "patch")]
    )


def test_heterognn_untouched_node_type_keeps_state() -> None:
    g = dgl.heterograph(
        {("word", "next", "word"): ([0, 1], [1, 2]), ("patch", "adjacent", "patch"): ([0], [1])},
        {"word": 3, "patch": 2},
    )
    gnn = HeteroGNN([("word", "next", "word")], hidden=4, conv="gcn", dropout=0.0)
    with pytest.raises(KeyError, match="canonical_etypes"):
        gnn(g, {"word": torch.randn(3, 4), "patch": torch.randn(2, 4)})
    g2 = dgl.heterograph(
        {("word", "next", "word"): ([0, 1], [1, 2])}, {"word": 3, "patch": 2}
    )
    h = {"word": torch.randn(3, 4), "patch": torch.randn(2, 4)}
    out = gnn(g2, h)
    torch.testing.assert_close(out["patch"], h["patch"])
    assert not torch.allclose(out["word"], h["word"])


def test_heterognn_return_attention_per_relation_and_layer() -> None:
    g = make_sample(5, 4, 3)
    gnn = HeteroGNN(SCHEMA, hidden=8, num_layers=3, conv="gat", conv_kwargs={"heads": 2})
    h = NodeEncoders(IN_DIMS, 8)(g)
    out, attn = gnn(g, h, return_attention=True)
    assert set(attn) == set(SCHEMA)
    for cet, per_layer in attn.items():
        assert len(per_layer) == 3
        assert all(a.shape == (g.num_edges(cet), 2) for a in per_layer)
    with pytest.raises(ValueError, match="gat"):
        HeteroGNN(SCHEMA, hidden=8, conv="sage")(g, h, return_attention=True)


@pytest.mark.parametrize("conv", ["sum", "sum_plain", "gcn", "gat", "sage"])
def test_each_relation_passes_messages(conv: str) -> None:
    """With edges on one relation only, the destination depends on the source nodes."""
    name, kwargs = ("sum", {}) if conv == "sum_plain" else (conv, CONV_CASES[conv])
    torch.manual_seed(0)
    gnn = HeteroGNN(
        SCHEMA, hidden=16, num_layers=1, conv=name, conv_kwargs=kwargs, dropout=0.0, activation="elu"
    )
    for cet in SCHEMA:
        g = make_sample(4, 4, 4, only=cet, edges_per_rel=3)
        src, dst = g.edges(etype=cet)
        h = {nt: torch.randn(g.num_nodes(nt), 16, requires_grad=True) for nt in g.ntypes}
        out = gnn(g, h)
        # Within one layer, a node's state only mixes with others through edges, so
        # the gradient of one destination row w.r.t. its source row is the message.
        # (A plain sum would vanish: LayerNorm rows have a constant sum at init.)
        probe = torch.randn(16)
        (grad,) = torch.autograd.grad((out[cet[2]][dst[0]] * probe).sum(), h[cet[0]])
        assert grad[src[0]].abs().sum() > 0, f"{conv}: no message along {cet}"
        unreached = torch.ones(g.num_nodes(cet[0]), dtype=torch.bool)
        unreached[src[dst == dst[0]]] = False
        if cet[0] == cet[2]:
            unreached[dst[0]] = False  # the residual path
        assert torch.all(grad[unreached] == 0)


@pytest.mark.parametrize("conv", sorted(CONV_CASES))
def test_every_relation_module_gets_gradient(conv: str) -> None:
    """Every relation module of the classifier matters to its output."""
    model = make_model(conv)
    g = dgl.batch([make_sample(6, 5, 4, seed=s) for s in range(2)])
    loss = torch.nn.functional.cross_entropy(model(g), torch.tensor([0, 2]))
    loss.backward()
    last = len(model.gnn.layers) - 1
    for i, layer in enumerate(model.gnn.layers):
        # summary nodes are not pooled, so the last layer has no relations into them
        expected = [c for c in SCHEMA if not (i == last and c[2] == "summary")]
        assert sorted(layer.mod_dict) == sorted(expected)
        assert layer.skip == frozenset(set(SCHEMA) - set(expected))
        for cet in expected:
            params = list(layer.mod_dict[cet].parameters())
            assert params, f"{conv}: {cet} has no parameters"
            total = sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
            assert total > 0, f"{conv}: layer {i} relation {cet} got no gradient"


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize("conv", sorted(CONV_CASES))
def test_zero_edges_and_zero_nodes_forward_backward(conv: str) -> None:
    model = make_model(conv)
    # No audio at all (0 frame nodes, all frame relations empty) and two relations
    # between present types with zero edges.
    g = make_sample(5, 4, 0, empty=(("word", "cooccur", "word"), ("patch", "rev_cross", "word")))
    assert g.num_nodes("frame") == 0 and g.num_edges(("word", "cooccur", "word")) == 0
    logits = model(g)
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


@pytest.mark.parametrize("pool", ["mean", "max", "attention"])
@pytest.mark.parametrize("fusion", ["concat", "attention"])
@pytest.mark.parametrize("conv", ["sum", "gat"])
def test_mixed_modality_batch_finite_and_batch_invariant(conv: str, pool: str, fusion: str) -> None:
    model = make_model(conv, pool=pool, fusion=fusion, dropout=0.1).eval()
    samples = [
        make_sample(5, 0, 0, seed=1),  # text only
        make_sample(0, 4, 0, seed=2),  # image only
        make_sample(0, 0, 6, seed=3),  # audio only
        make_sample(4, 3, 5, seed=4),  # everything
        make_sample(0, 0, 0, seed=5),  # nothing at all
    ]
    g = dgl.batch(samples)
    with torch.no_grad():
        logits = model(g)
        assert logits.shape == (5, 3) and torch.isfinite(logits).all()
        # A sample's logits do not depend on the rest of the batch.
        for i, s in enumerate(samples):
            torch.testing.assert_close(model(s)[0], logits[i], atol=1e-5, rtol=1e-4)
    model.train()
    model(g).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_readout_presence_mask_and_pooling() -> None:
    samples = [make_sample(3, 0, 2), make_sample(0, 4, 0), make_sample(0, 0, 0)]
    g = dgl.batch(samples)
    ntypes = ["frame", "patch", "summary", "word"]
    h = {nt: torch.randn(g.num_nodes(nt), 4) for nt in ntypes}
    readout = TypeReadout(ntypes, 4, pool="mean", fusion="concat")
    expected = torch.tensor(
        [[True, False, True, True], [False, True, True, False], [False, False, False, False]]
    )
    assert torch.equal(readout.presence(g), expected)
    pooled, present = readout.pool_types(g, h)
    assert torch.equal(present, expected)
    torch.testing.assert_close(pooled["word"][0], h["word"].mean(0))
    assert torch.all(pooled["word"][1:] == 0)
    z = readout(g, h)
    assert z.shape == (3, 4 * 4 + 4) == (3, readout.out_dim)
    torch.testing.assert_close(z[:, -4:], expected.float())
    assert torch.all(z[2] == 0)
    torch.testing.assert_close(z[1, 4:8], h["patch"].mean(0))  # patch block, graph 1
    # max pooling
    pooled, _ = TypeReadout(ntypes, 4, pool="max").pool_types(g, h)
    torch.testing.assert_close(pooled["patch"][1], h["patch"].max(0).values)
    assert torch.all(pooled["patch"][0] == 0)
    # attention pooling of a constant set returns the constant (weights sum to 1)
    ro = TypeReadout(ntypes, 4, pool="attention")
    with torch.no_grad():
        ro.gates["frame"].weight.normal_()
    hc = dict(h)
    hc["frame"] = torch.ones(g.num_nodes("frame"), 1) * torch.tensor([1.0, -2.0, 3.0, 0.5])
    pooled, _ = ro.pool_types(g, hc)
    torch.testing.assert_close(pooled["frame"][0], torch.tensor([1.0, -2.0, 3.0, 0.5]))


def test_attention_fusion_ignores_missing_types() -> None:
    g = dgl.batch([make_sample(4, 0, 0), make_sample(0, 0, 0)])
    ntypes = ["frame", "patch", "word"]
    h = {nt: torch.randn(g.num_nodes(nt), 4) for nt in ntypes}
    ro = TypeReadout(ntypes, 4, pool="mean", fusion="attention")
    z = ro(g, h)
    # Only `word` is present in graph 0: it gets all the weight.
    torch.testing.assert_close(z[0], h["word"].mean(0))
    assert torch.all(z[1] == 0)
    ro = TypeReadout(ntypes, 4, pool="attention", fusion="attention")
    z = ro(g, {nt: h[nt] for nt in ntypes})
    assert torch.isfinite(z).all()


# ---------------------------------------------------------------- head / model / docs


def test_classification_head() -> None:
    assert ClassificationHead(10, 4)(torch.randn(2, 10)).shape == (2, 4)
    head = ClassificationHead(10, 4, hidden=16, dropout=0.5)
    assert head.fc_hidden.out_features == 16
    assert head(torch.randn(3, 10)).shape == (3, 4)


def test_model_encode_and_hydra_instantiate() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "graphmm.nn.GraphClassifier",
            "hidden": 8,
            "conv": "gat",
            "conv_kwargs": {"heads": 2},
            "pool": "attention",
            "fusion": "concat",
            "head_hidden": 16,
        }
    )
    etypes = OmegaConf.create([list(e) for e in SCHEMA])  # lists, as YAML gives them
    model = instantiate(cfg, in_dims=IN_DIMS, canonical_etypes=etypes, num_classes=4)
    g = dgl.batch([make_sample(3, 2, 0), make_sample(0, 2, 5)])
    states = model.encode(g)
    assert {k: tuple(v.shape) for k, v in states.items()} == {
        "word": (3, 8), "patch": (4, 8), "frame": (5, 8), "summary": (4, 8)
    }
    assert model(g).shape == (2, 4)
    # Relations touching a type without an encoder are dropped.
    small = GraphClassifier({"word": VOCAB}, SCHEMA, 2, hidden=8, conv="sum")
    assert small.canonical_etypes == [e for e in SCHEMA if e[0] == e[2] == "word"]
    assert small(g).shape == (2, 2)



def test_modality_heads_loss_follows_its_definition_and_trains_every_head() -> None:
    import torch.nn.functional as F

    from graphmm.tasks import ClassificationTask

    torch.manual_seed(0)
    model = make_model("gat", modality_heads=0.5)
    assert sorted(model.modality_heads) == ["frame", "patch", "word"]
    samples = [make_sample(5, 0, 0, seed=1), make_sample(0, 4, 3, seed=2), make_sample(4, 3, 5, seed=3)]
    g, y = dgl.batch(samples), torch.tensor([0, 1, 2])
    model.eval()
    with torch.no_grad():
        logits, per_type = model(g, modality_logits=True)
        torch.testing.assert_close(logits, model(g))  # the heads do not change the prediction
        states = model.encode(g)
        pooled, present = model.readout.pool_types(g, states)
        # the definition, one type and one sample at a time
        terms = []
        for i, t in enumerate(model.readout.ntypes):
            rows = [b for b in range(3) if present[b, i]]
            own = model.modality_heads[t](pooled[t])
            torch.testing.assert_close(per_type[t], own)
            if rows:
                terms.append(torch.stack([F.cross_entropy(own[b:b + 1], y[b:b + 1]) for b in rows]).mean())
        expected = F.cross_entropy(logits, y) + 0.5 * torch.stack(terms).mean()
        torch.testing.assert_close(ClassificationTask().loss(model, g, y, 0.0), expected)
    # every head gets a gradient from the samples that have its type (here: all three types)
    model.train()
    ClassificationTask().loss(model, g, y, 0.0).backward()
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in model.modality_heads.values())
    # a batch with one pooled type: the mean runs over that type only
    text_only = dgl.batch([make_sample(5, 0, 0, seed=4), make_sample(3, 0, 0, seed=5)])
    yt = torch.tensor([1, 2])
    with torch.no_grad():
        _, per_type = model(text_only, modality_logits=True)
        torch.testing.assert_close(model.modality_loss(text_only, per_type, yt),
                                   0.5 * F.cross_entropy(per_type["word"], yt))
    # without heads: plain cross-entropy, and asking for them is an error
    plain = make_model("gat")
    assert plain.modality_heads is None
    with pytest.raises(ValueError, match="modality_heads > 0"):
        plain(g, modality_logits=True)
    with pytest.raises(ValueError, match="modality_heads must be >= 0"):
        make_model("gat", modality_heads=-1.0)
