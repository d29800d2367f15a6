"""The fused relation layer (graphmm.nn.fused) computes what one module per relation
computes: outputs, attention and every gradient, on real builder batches and on the
corner cases (empty relations, missing modalities, zero-node types, output_ntypes)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import dgl
import pytest
import torch

import graphmm.nn.fused as fused_mod
import graphmm.nn.hetero as hetero_mod
from graphmm.data import load_digits
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.nn import GraphClassifier, HeteroGNN
from graphmm.nn.fused import RelationIndex, fused_forward, fused_kernel

HIDDEN = 16

#: (conv, conv_kwargs) of every fused conv variant.
FUSED_CASES = [
    ("gat", {"heads": 4}),
    ("gat", {"heads": 2, "concat": False}),
    ("gat", {"heads": 1, "negative_slope": 0.1, "bias": False}),
    ("gcn", {}),
    ("gcn", {"norm": "right"}),
    ("gcn", {"norm": "left", "bias": False}),
    ("gcn", {"norm": "none"}),
    ("sum", {}),
    ("sum", {"linear": True}),
]
#: One default case per fused conv.
ONE_PER_CONV = [FUSED_CASES[0], FUSED_CASES[3], FUSED_CASES[-1]]
CASE_IDS = [f"{c}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for c, kw in FUSED_CASES]


@pytest.fixture(scope="module")
def builder_and_samples():
    splits = load_digits()
    builder = MultimodalGraphBuilder().fit(splits["train"])
    return builder, splits["train"][:6]


@pytest.fixture
def kernels(monkeypatch):
    """Counts the layer calls of fused models with autograd by path: a kernel name, or None
    (per relation); :func:`assert_same`'s passes without autograd are not counted."""
    ran: Counter = Counter()
    for name in ("_gat", "_gcn", "_sum"):
        def spy(*args, _original=getattr(fused_mod, name), _name=name):
            ran[_name] += torch.is_grad_enabled()
            return _original(*args)

        monkeypatch.setattr(fused_mod, name, spy)
    original = hetero_mod.RelationGraphConv.forward

    def forward(self, g, inputs, return_attention=False, index=None):
        before = sum(ran.values())
        out = original(self, g, inputs, return_attention, index)
        if index is not None and sum(ran.values()) == before and torch.is_grad_enabled():
            ran[None] += 1  # a fused model ran per relation
        return out

    monkeypatch.setattr(hetero_mod.RelationGraphConv, "forward", forward)
    return ran


def _pair(etypes, conv, kwargs, **gnn_kwargs):
    torch.manual_seed(0)
    ref = HeteroGNN(etypes, HIDDEN, conv=conv, conv_kwargs=kwargs, fused=False, **gnn_kwargs)
    # random biases, so that a missing or doubled bias shows
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    fused = HeteroGNN(etypes, HIDDEN, conv=conv, conv_kwargs=kwargs, fused=True, **gnn_kwargs)
    fused.load_state_dict(ref.state_dict())
    return ref.eval(), fused.eval()


def _run(model, g, h, attention):
    model.zero_grad(set_to_none=True)
    h = {k: v.clone().requires_grad_() for k, v in h.items()}
    if attention:
        out, attn = model(g, h, return_attention=True)
    else:
        out, attn = model(g, h), {}
    # a fixed random cotangent per output, so every output element matters
    gen = torch.Generator().manual_seed(1)
    loss = sum((v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for _, v in sorted(out.items()))
    for _, layers in sorted(attn.items()):
        loss = loss + sum((a * torch.randn(a.shape, generator=gen)).sum() for a in layers)
    loss.backward()
    grads = {k: v.grad for k, v in h.items()}
    params = {n: p.grad for n, p in model.named_parameters()}
    return out, attn, grads, params


def assert_same(ref, fused, g, h, attention=False, atol=1e-5, rtol=1e-4):
    out_r, attn_r, grad_r, par_r = _run(ref, g, h, attention)
    out_f, attn_f, grad_f, par_f = _run(fused, g, h, attention)
    assert out_r.keys() == out_f.keys()
    for k in out_r:
        torch.testing.assert_close(out_f[k], out_r[k], atol=atol, rtol=rtol, msg=f"output {k}")
    # without autograd the fused path works in place and in buffers kept with the graph's
    # index: twice, so that the second pass reuses the first one's buffers
    with torch.no_grad():
        for _ in range(2):
            out_n = fused(g, {k: v.clone() for k, v in h.items()})
            for k in out_r:
                torch.testing.assert_close(out_n[k], out_r[k].detach(), atol=atol, rtol=rtol,
                                           msg=f"output {k} without autograd")
    assert attn_r.keys() == attn_f.keys()
    for cet in attn_r:
        assert len(attn_r[cet]) == len(attn_f[cet])
        for a_r, a_f in zip(attn_r[cet], attn_f[cet]):
            assert a_f.shape == (g.num_edges(cet), a_r.shape[1])
            torch.testing.assert_close(a_f, a_r, atol=atol, rtol=rtol, msg=f"attention {cet}")
    for k in grad_r:
        if grad_r[k] is None:
            assert grad_f[k] is None or not grad_f[k].any(), k
        else:
            torch.testing.assert_close(grad_f[k], grad_r[k], atol=atol, rtol=rtol, msg=f"grad of h[{k}]")
    assert par_r.keys() == par_f.keys()
    for n in par_r:
        if par_r[n] is None:
            assert par_f[n] is None or not par_f[n].any(), n
        else:
            assert par_f[n] is not None, f"{n} got no gradient on the fused path"
            torch.testing.assert_close(par_f[n], par_r[n], atol=atol, rtol=rtol, msg=f"grad of {n}")


def _inputs(g, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {nt: torch.randn(g.num_nodes(nt), HIDDEN, generator=gen) for nt in g.ntypes}


def _expected_kernel(conv):
    return {"gat": "_gat", "gcn": "_gcn", "sum": "_sum"}[conv]


# ---------------------------------------------------------------- equality
@pytest.mark.parametrize("aggregate", ["sum", "mean"])
@pytest.mark.parametrize("conv,kwargs", FUSED_CASES, ids=CASE_IDS)
def test_fused_equals_per_relation_on_a_builder_batch(builder_and_samples, kernels, conv, kwargs, aggregate):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:4])
    ref, fused = _pair(builder.canonical_etypes, conv, kwargs, aggregate=aggregate, num_layers=2)
    assert_same(ref, fused, g, _inputs(g), attention=conv == "gat")
    assert kernels == {_expected_kernel(conv): 2}


@pytest.mark.parametrize("sparse", [True, False], ids=["torch-sparse", "dgl-kernels"])
def test_both_gat_backends_and_float64(builder_and_samples, kernels, monkeypatch, sparse):
    """The CPU path (sparse products; relations into much smaller types sum their
    sources first) and DGL's kernels (GPUs) agree with the reference, in float64 to
    round-off."""
    monkeypatch.setattr(fused_mod, "SPARSE_ON_CPU", sparse)
    builder, samples = builder_and_samples
    g = builder.batch(samples[:4])
    layout = RelationIndex(g).plan(list(g.canonical_etypes)).attention_layout(4, split=sparse)
    if sparse:  # frames far outnumber summary nodes: frame -> summary sums first
        assert layout.summed is not None and layout.projected is not None
        assert "frame" in layout.af_src and "summary" in layout.af_dst
    else:
        assert layout.summed is None and layout.projected is None
    ref, fused = _pair(builder.canonical_etypes, "gat", {"heads": 4})
    assert_same(ref, fused, g, _inputs(g), attention=True)
    h = {k: v.double() for k, v in _inputs(g).items()}
    assert_same(ref.double(), fused.double(), g, h, attention=True, atol=1e-10, rtol=1e-9)
    assert kernels == {"_gat": 6}


@pytest.mark.parametrize("limit", [0.0, 1.0], ids=["all-scores", "shared-groups-only"])
def test_edges_alone_in_their_group_need_no_score(builder_and_samples, kernels, monkeypatch, limit):
    """A group (one relation's in-edges of one node) of a single edge has attention 1:
    computing the scores of shared groups only gives the reference's outputs, gradients
    and attention, in float64 to round-off, with autograd and without."""
    monkeypatch.setattr(fused_mod, "SHARED_EDGES_MAX", limit)
    builder, samples = builder_and_samples
    g = builder.batch(samples[:4])
    layout = RelationIndex(g).plan(list(g.canonical_etypes)).attention_layout(4, split=True)
    counts = torch.bincount(layout.group_rows)
    alone = int((counts.index_select(0, layout.group_rows) == 1).sum())
    assert 0 < alone < layout.group_rows.shape[0]  # the batch has both kinds (e.g. `next`, `similar`)
    if limit:
        assert layout.shared is not None and layout.shared.shape[0] == layout.group_rows.shape[0] - alone
    else:
        assert layout.shared is None
    ref, fused = _pair(builder.canonical_etypes, "gat", {"heads": 4}, num_layers=2)
    h = {k: v.double() for k, v in _inputs(g).items()}
    assert_same(ref.double(), fused.double(), g, h, attention=True, atol=1e-10, rtol=1e-9)
    assert kernels == {"_gat": 2}


@pytest.mark.parametrize("conv,kwargs", FUSED_CASES, ids=CASE_IDS)
def test_missing_modalities_and_empty_relations(builder_and_samples, kernels, conv, kwargs):
    """Samples without audio (every frame relation empty) and one without an image."""
    builder, samples = builder_and_samples
    batch = [dataclasses.replace(s, audio=None) for s in samples[:3]] + [
        dataclasses.replace(samples[3], image=None, audio=None)]
    g = builder.batch(batch)
    assert g.num_nodes("frame") == 0 and g.num_edges(("frame", "next", "frame")) == 0
    assert any(g.num_edges(c) == 0 for c in g.canonical_etypes)
    ref, fused = _pair(builder.canonical_etypes, conv, kwargs)
    assert_same(ref, fused, g, _inputs(g), attention=conv == "gat")
    assert kernels[_expected_kernel(conv)] == 3


@pytest.mark.parametrize("conv,kwargs", ONE_PER_CONV, ids=["gat", "gcn", "sum"])
def test_a_single_sample_and_a_text_only_sample(builder_and_samples, kernels, conv, kwargs):
    builder, samples = builder_and_samples
    ref, fused = _pair(builder.canonical_etypes, conv, kwargs)
    assert_same(ref, fused, builder(samples[0]), _inputs(builder(samples[0])), attention=conv == "gat")
    text_only = builder(dataclasses.replace(samples[1], image=None, audio=None))
    assert text_only.num_nodes("patch") == 0 and text_only.num_nodes("frame") == 0
    assert_same(ref, fused, text_only, _inputs(text_only, seed=2), attention=conv == "gat")


@pytest.mark.parametrize("conv,kwargs", FUSED_CASES, ids=CASE_IDS)
def test_zero_node_types_and_zero_edge_relations(kernels, conv, kwargs):
    g = dgl.heterograph({
        ("word", "next", "word"): ([0, 1, 1], [1, 2, 0]),
        ("word", "to_summary", "summary"): ([0, 1, 2], [0, 0, 0]),
        ("summary", "rev_to_summary", "word"): ([0, 0], [0, 2]),
        ("patch", "adjacent", "patch"): ([], []),
        ("patch", "to_summary", "summary"): ([], []),
        ("summary", "rev_to_summary", "patch"): ([], []),
        ("frame", "next", "frame"): ([], []),
    }, num_nodes_dict={"word": 3, "summary": 1, "patch": 0, "frame": 0})
    ref, fused = _pair(g.canonical_etypes, conv, kwargs)
    out_f = fused(g, _inputs(g))
    assert out_f["patch"].shape == (0, HIDDEN) and out_f["frame"].shape == (0, HIDDEN)
    assert_same(ref, fused, g, _inputs(g), attention=conv == "gat")
    # every relation empty, every type with nodes but the ones without
    empty = dgl.heterograph({c: ([], []) for c in g.canonical_etypes},
                            {"word": 2, "summary": 1, "patch": 0, "frame": 0})
    assert_same(ref, fused, empty, _inputs(empty), attention=conv == "gat")
    assert kernels[_expected_kernel(conv)] == 9  # three calls, three layers


@pytest.mark.parametrize("conv,kwargs", ONE_PER_CONV, ids=["gat", "gcn", "sum"])
def test_output_ntypes_last_layer_runs_fewer_relations(builder_and_samples, kernels, conv, kwargs):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:3])
    ref, fused = _pair(builder.canonical_etypes, conv, kwargs, output_ntypes=["word", "patch"])
    assert fused.layers[-1].skip and all(c[2] in ("word", "patch") for c in fused.layers[-1].mod_dict)
    assert_same(ref, fused, g, _inputs(g), attention=conv == "gat")
    out = fused(g, _inputs(g))
    assert set(out) == set(g.ntypes)


@pytest.mark.parametrize("outputs,padded", [(["word", "patch", "frame"], True), (["word", "patch"], False)],
                         ids=["summary-dropped", "frame-dropped-too"])
def test_last_layer_on_the_earlier_layers_plan(builder_and_samples, kernels, outputs, padded):
    """The last layer's missing relations into summary nodes are a small share: on a
    graph's first pass it runs on the other layers' plan with zero weights for them (one
    index per batch), from the second pass on on a plan of its own; relations into
    frames are too large a share and get the layer's own plan at once."""
    builder, samples = builder_and_samples
    ref, fused = _pair(builder.canonical_etypes, "gat", {"heads": 2}, output_ntypes=outputs)
    last = fused.layers[-1]
    for dropout in (0.0, 0.5):  # with attention dropout the padded edges draw masks as well
        for mod in last.mod_dict.values():
            mod.attn_drop.p = dropout
        fused.train()
        g = builder.batch(samples[:4])  # a new graph: a first pass
        torch.manual_seed(1)
        out = fused(g, _inputs(g))
        assert set(out) == set(g.ntypes) and all(out[t].isfinite().all() for t in out)
        out["word"].sum().backward()
        assert all(p.grad is None or p.grad.isfinite().all() for p in fused.parameters())
        fused.zero_grad()
        assert len(RelationIndex.of(g)._plans) == (1 if padded else 2)
    for mod in last.mod_dict.values():
        mod.attn_drop.p = 0.0
    fused.eval()
    # the first (autograd) pass of assert_same runs padded, its later passes on the own plan
    g = builder.batch(samples[:4])
    assert_same(ref, fused, g, _inputs(g), attention=True)
    index = RelationIndex.of(g)
    assert len(index._plans) == 2
    rels = [c for c in g.canonical_etypes if c in last.mod_dict]
    assert fused_mod.wider_plan(index, rels, g.canonical_etypes, last.mod_dict, _inputs(g)["word"]) is None
    fresh = RelationIndex(g)
    assert fused_mod.wider_plan(fresh, rels, g.canonical_etypes, last.mod_dict, _inputs(g)["word"]) is None
    fresh.plan(g.canonical_etypes).attention_layout(2, split=True)  # what the first layers leave
    wider = fused_mod.wider_plan(fresh, rels, g.canonical_etypes, last.mod_dict, _inputs(g)["word"])
    assert (wider is not None) == padded
    if padded:
        assert [m is None for m in wider[1]] == [c[2] not in outputs for c in g.canonical_etypes]
        assert fused_mod.wider_plan(fresh, rels, g.canonical_etypes, last.mod_dict, _inputs(g)["word"]) is None


def test_only_relations_that_sum_first(kernels):
    """Every relation goes into a type with far fewer nodes: no projected rows at all."""
    g = dgl.heterograph({("a", "to", "s"): ([0, 1, 2, 3, 5, 7], [0, 0, 1, 1, 1, 0]),
                         ("b", "to", "s"): ([0, 1, 2, 3], [1, 1, 1, 1])}, {"a": 8, "b": 9, "s": 2})
    ref, fused = _pair(g.canonical_etypes, "gat", {"heads": 2}, num_layers=1)
    layout = RelationIndex(g).plan(list(g.canonical_etypes)).attention_layout(2, split=True)
    assert not layout.pf_src and layout.af_dst == {"s": [0, 1]}
    assert_same(ref, fused, g, _inputs(g), attention=True)
    assert kernels == {"_gat": 1}


def test_a_node_without_in_edges_gets_every_relations_bias():
    g = dgl.heterograph({("a", "r", "b"): ([0], [0]), ("b", "s", "b"): ([], []), ("a", "q", "b"): ([], [])},
                        {"a": 1, "b": 2})
    ref, fused = _pair(g.canonical_etypes, "gat", {"heads": 2}, num_layers=1)
    layer = fused.layers[0]
    h = _inputs(g)
    out = layer(g, h, index=RelationIndex(g))["b"]
    biases = sum(layer.mod_dict[c].bias for c in g.canonical_etypes)
    torch.testing.assert_close(out[1], biases)  # node 1 of b has no in-edge at all
    torch.testing.assert_close(out, layer(g, h)["b"])


def test_relations_without_input_types_are_left_out(builder_and_samples, kernels):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:2])
    _, fused = _pair(builder.canonical_etypes, "gat", {"heads": 2}, num_layers=1)
    layer = fused.layers[0]
    h = {k: v for k, v in _inputs(g).items() if k != "frame"}  # no input for frames
    out = layer(g, h, index=RelationIndex(g))
    assert "frame" not in out and kernels == {"_gat": 1}
    torch.testing.assert_close(out, layer(g, h), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- the model
def test_classifier_logits_and_explanations_equal_with_fused_on_and_off(builder_and_samples):
    builder, samples = builder_and_samples
    g = builder.batch(samples)
    torch.manual_seed(0)
    fused = GraphClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=HIDDEN, conv_kwargs={"heads": 4})
    ref = GraphClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=HIDDEN, conv_kwargs={"heads": 4},
                          fused=False)
    assert fused.gnn.fused and not ref.gnn.fused
    assert list(fused.state_dict()) == list(ref.state_dict())  # same checkpoints
    ref.load_state_dict(fused.state_dict())
    fused.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(g), ref(g), atol=1e-5, rtol=1e-4)
        (lf, af), (lr, ar) = fused.explain(g), ref.explain(g)
    torch.testing.assert_close(lf, lr, atol=1e-5, rtol=1e-4)
    assert af.keys() == ar.keys()
    for cet in ar:
        for a, b in zip(af[cet], ar[cet]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # training: the same loss gradient for every parameter
    fused.train(), ref.train()
    y = torch.tensor([s.label for s in samples])
    for model in (fused, ref):
        torch.manual_seed(3)  # the same dropout masks (HeteroGNN's and the head's)
        torch.nn.functional.cross_entropy(model(g), y).backward()
    for (n, p), (_, q) in zip(fused.named_parameters(), ref.named_parameters()):
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), n
        else:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_the_config_switches_the_fused_path(make_cfg):
    from graphmm.train import build_model

    builder = MultimodalGraphBuilder()
    on = build_model(make_cfg(["model.hidden=16"]).model, builder, num_classes=3)
    off = build_model(make_cfg(["model.hidden=16", "model.fused=false"]).model, builder, num_classes=3)
    assert on.gnn.fused and not off.gnn.fused
    gen = build_model(make_cfg(["model=graph_seq2seq", "model.fused=false", "model.hidden=16"]).model, builder,
                      vocab_size=7, max_len=5)
    assert not gen.gnn.fused


# ---------------------------------------------------------------- dropout
def test_feat_and_attention_dropout_have_the_reference_distribution():
    """In training, each relation drops its own inputs (one mask shared by the source
    and destination side of a relation within one node type) and its own attention.
    Over many draws of one layer, the fused path's outputs have the reference's means
    and spreads, and, like the reference's, outputs of the two types fed by relations
    from the same source type stay uncorrelated (one mask for both would correlate
    them). ReLU scores make the destination scores, hence their mask, matter."""
    g = dgl.heterograph({
        ("a", "self", "a"): ([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0]),
        ("b", "cross", "a"): ([0, 1, 0], [0, 1, 1]),
        ("a", "back", "b"): ([0, 2, 1], [0, 1, 1]),
    }, {"a": 3, "b": 2})
    kwargs = {"heads": 2, "feat_drop": 0.5, "attn_drop": 0.3, "negative_slope": 0.0}
    ref, fused = _pair(g.canonical_etypes, "gat", kwargs, num_layers=1)
    ref.train(), fused.train()
    gen = torch.Generator().manual_seed(5)
    h = {nt: 3 * torch.randn(g.num_nodes(nt), HIDDEN, generator=gen) for nt in g.ntypes}
    draws, n_a = 3000, 3 * HIDDEN

    # the draws as copies of the graph in one batch: every dropout mask is per node or
    # per edge, so each copy draws its own, as a separate forward pass would
    copies = dgl.batch([g] * draws)
    h_copies = {nt: x.repeat(draws, 1) for nt, x in h.items()}

    def draw(model, index):
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.layers[0](copies, h_copies, index=index)
        return torch.cat([out["a"].reshape(draws, -1), out["b"].reshape(draws, -1)], dim=1)

    v_r, v_f = draw(ref, None), draw(fused, RelationIndex(copies))
    se = ((v_r.var(0) + v_f.var(0)) / draws).sqrt()
    assert ((v_f.mean(0) - v_r.mean(0)).abs() / se).max() < 4.5
    ratio = v_f.std(0) / v_r.std(0)
    assert 0.88 < ratio.min() and ratio.max() < 1.12, (ratio.min(), ratio.max())
    for v in (v_r, v_f):
        assert torch.corrcoef(v.T)[:n_a, n_a:].abs().max() < 0.2
    assert not torch.allclose(v_f[0], v_f[1])  # dropout does act


# ---------------------------------------------------------------- fallbacks
@pytest.mark.parametrize("conv,kwargs,aggregate", [
    ("sage", {}, "sum"),
    ("gat", {"heads": 2}, "max"),
    ("gcn", {}, "min"),
    ("gat", {"heads": 2, "activation": "elu"}, "sum"),
    ("gcn", {"activation": "relu"}, "sum"),
])
def test_unsupported_layers_run_per_relation(builder_and_samples, kernels, conv, kwargs, aggregate):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:2])
    ref, fused = _pair(builder.canonical_etypes, conv, kwargs, aggregate=aggregate, num_layers=1)
    assert_same(ref, fused, g, _inputs(g), atol=0, rtol=0)
    assert kernels == {None: 1}
    mods = list(fused.layers[0].mod_dict.values())
    with pytest.raises(ValueError, match="fused=False"):
        fused_forward(mods, RelationIndex(g).plan(list(fused.layers[0].mod_dict)), _inputs(g), aggregate)


def test_a_module_with_hooks_runs_its_layer_per_relation(builder_and_samples, kernels):
    """Forward hooks (graphmm.predict records per-relation outputs) see every relation."""
    builder, samples = builder_and_samples
    g = builder.batch(samples[:2])
    _, fused = _pair(builder.canonical_etypes, "gat", {"heads": 2}, num_layers=2)
    seen = []
    handle = fused.layers[0].mod_dict[("word", "next", "word")].register_forward_hook(
        lambda mod, args, out: seen.append(args[0].num_edges()))
    fused(g, _inputs(g))
    handle.remove()
    assert seen == [g.num_edges(("word", "next", "word"))]
    assert kernels == {None: 1, "_gat": 1}
    assert fused_kernel([], "sum") is None


def test_graphs_beyond_the_edge_limit_run_per_relation(builder_and_samples, kernels, monkeypatch):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:2])
    ref, fused = _pair(builder.canonical_etypes, "gat", {"heads": 2}, num_layers=1)
    monkeypatch.setattr(fused_mod, "FUSED_MAX_EDGES", g.num_edges() - 1)
    assert_same(ref, fused, g, _inputs(g), atol=0, rtol=0)
    assert kernels == {}  # no index: the layers ran as the reference


# ---------------------------------------------------------------- the index
def test_relation_index_rows_and_plan_cache(builder_and_samples):
    builder, samples = builder_and_samples
    g = builder.batch(samples[:2])
    index = RelationIndex(g)
    rels = list(g.canonical_etypes)
    plan = index.plan(rels)
    assert index.plan(tuple(rels)) is plan and index.plan(rels[:-1]) is not plan
    assert plan.graph.num_edges() == g.num_edges() == plan.agg_graph.num_edges()
    for r, cet in enumerate(rels):
        src, dst = g.edges(etype=cet)
        s, _, t = cet
        sl = slice(plan.edge_offset[r], plan.edge_offset[r + 1])
        n_s, n_t = len(plan.src_types[s]), len(plan.dst_types[t])
        slot_s, slot_t = plan.src_types[s].index(r), plan.dst_types[t].index(r)
        assert torch.equal(plan.src_rows[sl], plan.src_offset[s] + src * n_s + slot_s)
        assert torch.equal(plan.group_rows[sl], plan.dst_offset[t] + dst * n_t + slot_t)
        assert torch.equal(plan.node_rows[sl], plan.node_offset[t] + dst)
    out_deg, in_deg = plan.degrees()
    r = rels.index(("patch", "adjacent", "patch"))
    sl = slice(plan.edge_offset[r], plan.edge_offset[r + 1])
    sub = g[("patch", "adjacent", "patch")]
    src, dst = sub.edges()
    assert torch.equal(out_deg[sl], sub.out_degrees(src)) and torch.equal(in_deg[sl], sub.in_degrees(dst))


# ---------------------------------------------------------------- in place without autograd
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per-relation"])
@pytest.mark.parametrize("activation", ["relu", "gelu", None])
def test_without_autograd_the_in_place_update_is_the_same_function(builder_and_samples, monkeypatch, fused,
                                                                   activation):
    """Under no_grad the layers sum relations, activate, add the residual and normalise
    in place (LayerNorm in passes of rows): the same outputs as with autograd, the
    caller's inputs untouched, and what forward hooks saw left as it was."""
    monkeypatch.setattr(hetero_mod, "NORM_ROWS", 7)  # several passes, an uneven last one
    builder, samples = builder_and_samples
    g = builder.batch(samples[:4])
    torch.manual_seed(0)
    model = HeteroGNN(builder.canonical_etypes, HIDDEN, conv="gat", conv_kwargs={"heads": 2}, fused=fused,
                      activation=activation).eval()
    h = _inputs(g)
    kept = {k: v.clone() for k, v in h.items()}
    with_grad = model(g, {k: v.clone().requires_grad_() for k, v in h.items()})
    seen = []
    handle = model.layers[1].mod_dict[("word", "next", "word")].register_forward_hook(
        lambda mod, args, out: seen.append((out, out.clone())))
    with torch.no_grad():
        without = model(g, h)
    handle.remove()
    for k in with_grad:
        torch.testing.assert_close(without[k], with_grad[k].detach(), atol=1e-6, rtol=1e-5)
        assert torch.equal(h[k], kept[k])
    assert len(seen) == 1 and torch.equal(seen[0][0], seen[0][1])
