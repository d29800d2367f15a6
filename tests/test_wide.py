"""The wide path (issue 15): a linear model of a sample's own node inputs beside the graph."""

from __future__ import annotations

import dgl
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from graphmm.data import Sample
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.nn import GraphClassifier, WidePath
from graphmm.nn.wide import _BIGRAM_PRIME, bigram_ids
from graphmm.train import train
from graphmm.utils import load_checkpoint


def _word_graphs(docs: list[list[int]]) -> dgl.DGLGraph:
    """A batch of word-only graphs with the ``token`` and ``pos`` fields the builder gives."""
    graphs = []
    for doc in docs:
        g = dgl.heterograph({("word", "next", "word"): ([], [])}, num_nodes_dict={"word": len(doc)})
        g.nodes["word"].data.update({"token": torch.tensor(doc, dtype=torch.int64),
                                     "pos": torch.arange(len(doc))})
        graphs.append(g)
    return dgl.batch(graphs)


def _bag_of_words_problem(n: int = 80, vocab: int = 10, classes: int = 3, seed: int = 0):
    """Documents drawn from class-dependent word distributions, their labels and counts."""
    rng = np.random.default_rng(seed)
    topic = rng.dirichlet(np.ones(vocab) * 0.5, size=classes)
    labels = rng.integers(0, classes, n)
    docs = [list(rng.choice(vocab, size=rng.integers(0, 9), p=topic[y])) for y in labels]
    counts = np.zeros((n, vocab))
    for i, doc in enumerate(docs):
        np.add.at(counts[i], doc, 1)
    return docs, labels, counts


def test_the_wide_path_alone_is_a_logistic_regression():
    """Same objective as sklearn's L2 multinomial logistic regression on the unigram
    counts (``C * sum CE + ||W||^2 / 2``, intercept unpenalised): same optimum."""
    docs, labels, counts = _bag_of_words_problem()
    n, vocab, classes, C = len(docs), counts.shape[1], 3, 0.5
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(counts, labels)

    torch.manual_seed(0)
    wide = WidePath({"word": vocab}, classes, {"word": "words"}, norm="sum").double()
    g, y = _word_graphs(docs), torch.as_tensor(labels)
    opt = torch.optim.LBFGS(wide.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def objective():
        weight = wide.ids["word"].weight
        return torch.nn.functional.cross_entropy(wide(g), y) + weight.pow(2).sum() / (2 * C * n)

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    coef = wide.ids["word"].weight.detach().T.numpy()  # (classes, vocab), as sklearn's coef_
    np.testing.assert_allclose(coef, ref.coef_, atol=1e-4)
    # intercepts are unpenalised, so only their differences between classes are defined
    ours, theirs = wide.bias.detach().numpy(), ref.intercept_
    np.testing.assert_allclose(ours - ours.mean(), theirs - theirs.mean(), atol=1e-4)
    np.testing.assert_allclose(torch.softmax(wide(g), -1).detach().numpy(), ref.predict_proba(counts), atol=1e-5)
    sk_loss = -np.log(ref.predict_proba(counts)[np.arange(n), labels]).mean() + (ref.coef_**2).sum() / (2 * C * n)
    assert float(objective()) == pytest.approx(sk_loss, abs=1e-8)
    assert coef.std() > 0.1  # a real fit, not all zeros


def test_length_norms_scale_the_counts():
    """``mean``/``sqrt`` equal the ``sum`` model on counts divided by n or sqrt(n)."""
    docs = [[1, 2, 2], [], [3, 1, 1, 1]]
    g = _word_graphs(docs)
    out = {}
    for norm in ("sum", "mean", "sqrt"):
        wide = WidePath({"word": 5}, 2, {"word": "words"}, norm=norm)
        with torch.no_grad():
            wide.ids["word"].weight.copy_(torch.arange(10.0).reshape(5, 2))
        out[norm] = wide(g)
    n = torch.tensor([3.0, 1.0, 4.0])[:, None]  # an empty sample divides by 1 (and is 0)
    torch.testing.assert_close(out["mean"], out["sum"] / n)
    torch.testing.assert_close(out["sqrt"], out["sum"] / n.sqrt())
    assert out["sum"][1].abs().sum() == 0


def test_bigrams_stay_within_a_sample_and_equal_a_per_sample_reference():
    texts = ["the cat sat on the mat", "dogs bark", "a", "the cat ran"]
    samples = [Sample(text=t, label=0) for t in texts]
    builder = MultimodalGraphBuilder(image=False, audio=False).fit(samples)
    g = builder.batch(samples)
    wide = WidePath(builder.in_dims, 2, {"word": "ngrams"}, buckets=97)
    ids, seg = wide.term_ids(g, "word")
    vocab = builder.in_dims["word"]

    expected_ids, expected_seg = [], []
    for b, s in enumerate(samples):  # one sample at a time: no boundary to cross
        tok = builder(s).nodes["word"].data["token"].tolist()
        bigrams = [(x * _BIGRAM_PRIME + y) % 97 + vocab for x, y in zip(tok, tok[1:])]
        expected_ids += tok + bigrams
        expected_seg += [b] * (len(tok) + len(bigrams))
    assert sorted(zip(seg.tolist(), ids.tolist())) == sorted(zip(expected_seg, expected_ids))
    assert len(ids) == sum(len(t.split()) for t in texts) + sum(len(t.split()) - 1 for t in texts)

    # the pair (mat, dogs) at the boundary of samples 0 and 1 is no bigram of anyone
    tok, pos = g.nodes["word"].data["token"], g.nodes["word"].data["pos"]
    seg_all = torch.repeat_interleave(torch.arange(g.batch_size), g.batch_num_nodes("word"))
    bi, _ = bigram_ids(tok, pos, seg_all, 10**9)
    boundary = int(tok[5]) * _BIGRAM_PRIME + int(tok[6])
    assert boundary not in bi.tolist() and len(bi) == 5 + 1 + 0 + 2


def test_dense_terms_are_a_linear_model_of_the_mean_field():
    g = dgl.batch([
        dgl.heterograph({("patch", "adjacent", "patch"): ([], [])}, num_nodes_dict={"patch": n}) for n in (3, 0)
    ])
    g.nodes["patch"].data["pixels"] = torch.randn(3, 4)
    wide = WidePath({"patch": 4}, 2, {"patch": "pixels"})
    torch.nn.init.normal_(wide.dense["patch"].weight)
    out = wide(g)
    torch.testing.assert_close(out[0], wide.dense["patch"](g.nodes["patch"].data["pixels"].mean(0)))
    assert torch.equal(out[1], torch.zeros(2))  # no patches: the intercept alone
    with pytest.raises(KeyError, match="no field 'mel'"):
        WidePath({"patch": 4}, 2, {"patch": "mel"})(g)


def test_wide_option_errors_name_the_key():
    builder = MultimodalGraphBuilder()
    with pytest.raises(ValueError, match="model.wide='bigrams' is not one of"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide="bigrams")
    with pytest.raises(ValueError, match="node types \\['video'\\]"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide={"video": "pixels"})
    assert GraphClassifier(builder.in_dims, builder.canonical_etypes, 3).wide is None  # off by default


def test_graph_classifier_adds_the_wide_logits():
    samples = [Sample(text="one two three", label=0), Sample(text="four", image=torch.rand(1, 8, 8), label=1)]
    builder = MultimodalGraphBuilder().fit(samples)
    g = builder.batch(samples)
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, 2, hidden=16, conv_kwargs={"heads": 2},
                            wide="ngrams").eval()
    base = model(g)
    torch.nn.init.normal_(model.wide.ids["word"].weight)
    with torch.no_grad():
        assert torch.allclose(model(g), base + model.wide(g))
        assert torch.allclose(model.explain(g)[0], model(g))


TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1"]


def test_wide_ngrams_trains_end_to_end(make_cfg, tmp_path):
    cfg = make_cfg([*TINY, "model.wide={word:ngrams,patch:pixels}", "model.wide_dropout=0.1"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["epochs"] == 2
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    # trained away from their zero start, and saved with the model
    assert state["wide.ids.word.weight"].abs().sum() > 0
    assert state["wide.dense.patch.weight"].abs().sum() > 0
    assert state["wide.ids.word.weight"].shape[0] == cfg.model.wide_buckets + state["encoders.types.word.embed.weight"].shape[0]
