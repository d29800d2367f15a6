"""The wide path (issue 15): a linear model of a sample's own node inputs, fitted to its
optimum before the graph model trains, with out-of-fold logits for training."""

from __future__ import annotations

import dgl
import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from graphmm.data import Sample
from graphmm.graphs import ImageGraphBuilder, MultimodalGraphBuilder
from graphmm.nn import GraphClassifier, WidePath
from graphmm.nn.wide import _BIGRAM_PRIME, _HASH_MOD, _mix32, _row_hashes, bigram_ids, parse_wide
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


def _bag_of_words_problem(n: int = 120, vocab: int = 12, classes: int = 3, seed: int = 0):
    """Documents drawn from class-dependent word distributions, and their labels."""
    rng = np.random.default_rng(seed)
    topic = rng.dirichlet(np.ones(vocab) * 0.5, size=classes)
    labels = rng.integers(0, classes, n)
    docs = [list(rng.choice(vocab, size=rng.integers(1, 9), p=topic[y])) for y in labels]
    return docs, labels


def _dense(wide: WidePath, g: dgl.DGLGraph) -> np.ndarray:
    rows, cols, vals = wide.design(g)
    x = torch.zeros(g.batch_size, int(wide.widths.sum()))
    x[rows, cols] = vals
    return x.numpy()


def test_words_design_is_sklearns_tfidf():
    """``words`` rows are scikit-learn's TF-IDF (sublinear tf, smoothed idf, l2 norm) of
    the token ids, with the idf fitted on the training rows only."""
    docs, labels = _bag_of_words_problem()
    train_docs, test_docs = docs[:80], docs[80:]
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    g_tr, g_te = _word_graphs(train_docs), _word_graphs(test_docs)
    wide.fit([(g_tr, torch.as_tensor(labels[:80]))], [], cs=[1.0], folds=0)
    vec = TfidfVectorizer(sublinear_tf=True, token_pattern=r"\S+", vocabulary=[str(i) for i in range(12)])
    vec.fit([" ".join(map(str, d)) for d in train_docs])
    ref = vec.transform([" ".join(map(str, d)) for d in test_docs]).toarray()
    np.testing.assert_allclose(_dense(wide, g_te), ref, atol=1e-6)


def test_the_wide_path_alone_is_a_logistic_regression_at_its_optimum():
    """The fitted weights minimise ``C * sum CE + ||W||^2 / 2`` (intercept unpenalised):
    the gradient, computed here by autograd, vanishes; and they score like
    scikit-learn's logistic regression on the same rows."""
    docs, labels = _bag_of_words_problem()
    g, y = _word_graphs(docs), torch.as_tensor(labels)
    wide = WidePath({"word": 12}, 3, {"word": "ngrams"}, buckets=31).eval()
    fit = wide.fit([(g, y)], [(g, y)], cs=[0.5], folds=0, max_iter=10_000, tol=1e-10)
    assert fit.c == 0.5 and fit.cols == 12 + 31
    x = torch.as_tensor(_dense(wide, g), dtype=torch.float64)

    def gradient(w0: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
        w, b = w0.double().clone().requires_grad_(True), b0.double().clone().requires_grad_(True)
        loss = 0.5 * torch.nn.functional.cross_entropy(x @ w + b, y, reduction="sum") + w.pow(2).sum() / 2
        loss.backward()
        return torch.cat([w.grad.reshape(-1), b.grad])

    at_fit = gradient(wide.coef(), wide.bias.detach())
    at_zero = gradient(torch.zeros_like(wide.coef()), torch.zeros_like(wide.bias))
    assert at_fit.norm() < 1e-3 * at_zero.norm()  # the solver's tolerance, float32 weights
    w = wide.coef()
    assert w.detach().abs().max() > 0.1  # a real fit, not all zeros
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x.numpy(), labels)
    np.testing.assert_allclose(torch.softmax(wide(g), -1).detach().numpy(), ref.predict_proba(x.numpy()), atol=1e-4)


def test_without_folds_c_is_chosen_on_validation():
    docs, labels = _bag_of_words_problem(n=200, seed=1)
    g_tr, y_tr = _word_graphs(docs[:120]), torch.as_tensor(labels[:120])
    g_va, y_va = _word_graphs(docs[120:]), torch.as_tensor(labels[120:])
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    fit = wide.fit([(g_tr, y_tr)], [(g_va, y_va)], cs=[1e-4, 1.0], folds=0)
    assert fit.selected_by == "validation" and set(fit.scores) == {("tfidf", 1e-4), ("tfidf", 1.0)}
    assert fit.scores["tfidf", 1.0] > fit.scores["tfidf", 1e-4]  # near-zero weights predict one class
    assert fit.c == 1.0 and fit.val_acc == fit.scores["tfidf", 1.0]


def test_c_is_chosen_by_cross_validation_on_the_training_rows():
    """Each C's score is the accuracy of its out-of-fold predictions, as scikit-learn
    fitted on the other folds gives them; the best is chosen, whatever validation says."""
    docs, labels = _bag_of_words_problem(n=150, seed=4)
    g, y = _word_graphs(docs), torch.as_tensor(labels)
    g_va, y_va = _word_graphs(docs[:30]), torch.as_tensor((labels[:30] + 1) % 3)  # validation labels all wrong
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    cs = [1e-3, 0.3, 30.0]
    fit = wide.fit([(g, y)], [(g_va, y_va)], cs=cs, folds=3, tol=1e-10, max_iter=10_000)
    assert fit.selected_by == "cross-validation"
    x = _dense(wide, g)  # TF-IDF: the idf is fitted on all training rows, without labels
    fold = (_mix32(_row_hashes(wide.raw_block(g, 0), g.batch_size) % _HASH_MOD) % 3).numpy()
    for c in cs:
        pred = np.zeros(len(labels), dtype=np.int64)
        for f in range(3):
            held = fold == f
            pred[held] = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x[~held], labels[~held]).predict(x[held])
        assert fit.scores["tfidf", c] == pytest.approx((pred == labels).mean())
    assert fit.scores["tfidf", fit.c] == max(fit.scores.values()) == fit.oof_acc
    assert fit.val_acc is not None and fit.val_acc < 0.5  # scored, not used to choose


def test_out_of_fold_logits_are_those_of_the_model_without_the_fold():
    docs, labels = _bag_of_words_problem(n=90, seed=2)
    g, y = _word_graphs(docs), torch.as_tensor(labels)
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    fit = wide.fit([(g, y)], [], cs=[2.0], folds=3, tol=1e-10, max_iter=10_000)
    assert fit.oof_acc is not None and fit.oof_acc < fit.train_acc
    x = _dense(wide, g)
    eval_logits = wide.eval()(g).detach().numpy()
    train_logits = wide.train()(g).detach().numpy()
    assert not np.allclose(eval_logits, train_logits)
    # rebuild the folds from the content hashes and refit each fold by hand
    fold = (_mix32(_row_hashes(wide.raw_block(g, 0), g.batch_size) % _HASH_MOD) % 3).numpy()
    for f in range(3):
        held = fold == f
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(x[~held], labels[~held])
        ours = torch.log_softmax(torch.as_tensor(train_logits[held]), -1).numpy()
        # a model with the fold in would differ by tenths; solver tolerance and a float32 table by less
        np.testing.assert_allclose(ours, ref.predict_log_proba(x[held]), atol=2e-3)


def test_cells_are_a_linear_model_of_the_pixels():
    """Non-overlapping patches by grid cell: the row is the image's pixels (each column
    over its training std), so the fit is logistic regression on the raw image."""
    torch.manual_seed(0)
    images = torch.rand(40, 1, 8, 8)
    labels = (images[:, 0, :4].mean((1, 2)) > images[:, 0, 4:].mean((1, 2))).long()
    builder = MultimodalGraphBuilder(text=False, audio=False, image=ImageGraphBuilder(patch_size=4), cross=None)
    samples = [Sample(image=im, label=int(y)) for im, y in zip(images, labels)]
    builder.fit(samples)
    g = builder.batch(samples)
    wide = WidePath(builder.in_dims, 2, {"patch": "cells"})
    fit = wide.fit([(g, labels)], [(g, labels)], cs=[4.0], folds=0)
    assert tuple(wide.grid[0].tolist()) == (2, 2) and fit.cols == 4 * 16
    x = _dense(wide, g)
    # column (cell r*2+c, pixel j) is pixel (4r + j // 4, 4c + j % 4) of the image
    cells = images.reshape(40, 2, 4, 2, 4).permute(0, 1, 3, 2, 4).reshape(40, 64).numpy()
    np.testing.assert_allclose(x, cells / cells.std(0), rtol=1e-4)
    assert fit.train_acc > 0.9


def test_moments_are_band_means_and_mean_squares():
    g = dgl.batch([
        dgl.heterograph({("frame", "next", "frame"): ([], [])}, num_nodes_dict={"frame": n}) for n in (3, 0, 2)
    ])
    mel = torch.randn(5, 4)
    g.nodes["frame"].data["mel"] = mel
    wide = WidePath({"frame": 4}, 2, {"frame": "moments"})
    block = wide.raw_block(g, 0)
    x = torch.zeros(3, 8)
    x[block.rows, block.cols] = block.vals
    torch.testing.assert_close(x[0], torch.cat([mel[:3].mean(0), (mel[:3] ** 2).mean(0)]))
    assert x[1].abs().sum() == 0  # no frames: no entries
    torch.testing.assert_close(x[2], torch.cat([mel[3:].mean(0), (mel[3:] ** 2).mean(0)]))
    with pytest.raises(KeyError, match="no field 'pixels'"):
        WidePath({"frame": 4}, 2, {"frame": "moments:pixels"}).raw_block(g, 0)


def test_bigrams_stay_within_a_sample_and_equal_a_per_sample_reference():
    texts = ["the cat sat on the mat", "dogs bark", "a", "the cat ran"]
    samples = [Sample(text=t, label=0) for t in texts]
    builder = MultimodalGraphBuilder(image=False, audio=False).fit(samples)
    g = builder.batch(samples)
    wide = WidePath(builder.in_dims, 2, {"word": "ngrams"}, buckets=97)
    block = wide.raw_block(g, 0)
    vocab = builder.in_dims["word"]

    expected: dict[tuple[int, int], float] = {}
    for b, s in enumerate(samples):  # one sample at a time: no boundary to cross
        tok = builder(s).nodes["word"].data["token"].tolist()
        for t in tok + [(x * _BIGRAM_PRIME + y) % 97 + vocab for x, y in zip(tok, tok[1:])]:
            expected[(b, t)] = expected.get((b, t), 0) + 1
    got = {(int(r), int(c)): float(v) for r, c, v in zip(block.rows, block.cols, block.vals)}
    assert got == expected

    # the pair (mat, dogs) at the boundary of samples 0 and 1 is no bigram of anyone
    tok, pos = g.nodes["word"].data["token"], g.nodes["word"].data["pos"]
    seg_all = torch.repeat_interleave(torch.arange(g.batch_size), g.batch_num_nodes("word"))
    bi, _ = bigram_ids(tok, pos, seg_all, 10**9)
    boundary = int(tok[5]) * _BIGRAM_PRIME + int(tok[6])
    assert boundary not in bi.tolist() and len(bi) == 5 + 1 + 0 + 2


def test_a_modality_absent_from_training_gets_no_columns(caplog):
    """``wide=auto`` on a text + image schema trained on text alone (one modality of a
    multimodal recipe, as experiment=digits_text_only): the cells term gets an empty
    grid and a warning, the fit runs on the words, and an image seen later adds nothing."""
    words = ["one", "two", "three", "four"]
    samples = [Sample(text=f"{words[i % 4]} {words[(i + 1) % 4]}", label=i % 2) for i in range(24)]
    builder = MultimodalGraphBuilder(audio=False).fit(samples)
    wide = WidePath(builder.in_dims, 2, parse_wide("auto", list(builder.in_dims)))
    g, y = builder.collate(samples)
    with caplog.at_level("WARNING", logger="graphmm.nn.wide"):
        fit = wide.fit([(g, y)], [(g, y)], cs=[1.0], folds=0)
    i = [t.ntype for t in wide.terms].index("patch")
    assert wide.grid[i].tolist() == [0, 0] and "no training sample has 'patch' nodes" in caplog.text
    assert fit.train_acc > 0.9
    with_image = builder.batch([samples[0].replace(image=torch.rand(1, 8, 8)), samples[0]])
    torch.testing.assert_close(wide(with_image)[0], wide(with_image)[1])


def _multimodal_fit(folds: int = 2):
    torch.manual_seed(0)
    words = ["one", "two", "three", "four", "five", "six"]
    samples = [
        Sample(text=" ".join(words[(i + j) % 6] for j in range(3)), image=(torch.rand(1, 8, 8) + (i % 2)) / 2,
               label=i % 2, id=i)
        for i in range(30)
    ]
    builder = MultimodalGraphBuilder(audio=False).fit(samples)
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, 2, hidden=16, conv_kwargs={"heads": 2},
                            wide="auto", wide_c=[1.0], wide_folds=folds)
    model.fit_wide([builder.collate(samples)], [builder.collate(samples)])
    return builder, samples, model


def test_out_of_fold_lookup_is_per_modality():
    """A training sample that lost a modality (modality dropout) still finds the
    out-of-fold score of the modality it kept."""
    builder, samples, model = _multimodal_fit()
    wide = model.wide.train()
    full = builder.batch(samples)
    text_only = builder.batch([s.without("image") for s in samples])
    _, text_oof = wide._oof_lookup(1, _row_hashes(wide.raw_block(full, 1), len(samples)))
    hit, _ = wide._oof_lookup(1, _row_hashes(wide.raw_block(text_only, 1), len(samples)))
    assert bool(hit.all())
    # the text-only row scores the bias plus the text block's out-of-fold score
    assert [str(t) for t in wide.terms] == ["patch:cells(pixels)", "word:ngrams"]
    torch.testing.assert_close(wide(text_only), wide.bias + text_oof)


def test_a_fitted_wide_path_round_trips_through_a_checkpoint(tmp_path):
    builder, samples, model = _multimodal_fit()
    g = builder.batch(samples)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = GraphClassifier(builder.in_dims, builder.canonical_etypes, 2, hidden=16, conv_kwargs={"heads": 2},
                            wide="auto", wide_c=[1.0], wide_folds=2)
    assert not fresh.wide.fitted
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    for mode in (True, False):
        model.wide.train(mode), fresh.wide.train(mode)
        torch.testing.assert_close(fresh.wide(g), model.wide(g))
    assert torch.equal(fresh.wide.grid, model.wide.grid)


def test_the_model_starts_as_its_wide_path():
    """The head starts at zero, so before the GNN trains the model is the linear model."""
    builder, samples, model = _multimodal_fit()
    g = builder.batch(samples)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(g), model.wide(g))
        torch.testing.assert_close(model.explain(g)[0], model(g))


def test_wide_option_errors_name_the_key():
    builder = MultimodalGraphBuilder()
    with pytest.raises(ValueError, match="model.wide='bigrams' is not one of"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide="bigrams")
    with pytest.raises(ValueError, match="node types \\['video'\\]"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide={"video": "cells"})
    with pytest.raises(ValueError, match="'pixel' is not one of"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide={"patch": "pixel"})
    with pytest.raises(ValueError, match="model.wide_c"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide="auto", wide_c=[0.0])
    with pytest.raises(ValueError, match=r"model.wide_weighting must be .*\['tfidf', 'nb'\], got \['bm25'\]"):
        GraphClassifier(builder.in_dims, builder.canonical_etypes, 3, wide="auto", wide_weighting=["bm25"])
    assert GraphClassifier(builder.in_dims, builder.canonical_etypes, 3).wide is None  # off by default
    assert [str(t) for t in parse_wide("auto", builder.in_dims)] == [
        "frame:moments(mel)", "patch:cells(pixels)", "word:ngrams"]


TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1"]


def test_wide_auto_trains_end_to_end_and_predicts(make_cfg, tmp_path):
    cfg = make_cfg([*TINY, "model.wide=auto", "model.wide_c=[1.0,4.0]", "model.wide_folds=3"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["epochs"] == 2
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    assert state["wide.weight"].abs().sum() > 0  # fitted, and saved with the model
    # only the columns training rows used: the text's few words and bigrams, not every bucket
    assert len(state["wide.columns"]) == state["wide.weight"].shape[0] < cfg.model.wide_buckets
    assert state["wide.oof_keys"].shape[0] == 3  # frame, patch, word
    from graphmm.predict import load_predictor

    predictor = load_predictor(tmp_path / "run")
    assert predictor.model.wide.fitted


def test_a_resumed_run_reports_the_wide_fit_it_loaded(make_cfg, tmp_path):
    """``wide/*`` (the linear model's own fit) stays in ``metrics.json`` when a run is
    resumed from a checkpoint, where the fit is loaded rather than redone."""
    import json

    cfg = make_cfg([*TINY, "model.wide=auto", "model.wide_c=[1.0]", "model.wide_folds=3"])
    first = train(cfg)
    assert {"wide/val_acc", "wide/test_acc", "wide/c"} <= first.keys()
    again = train(make_cfg([*TINY, "model.wide=auto", "model.wide_c=[1.0]", "model.wide_folds=3",
                            "trainer.resume=last", "trainer.max_epochs=3"]))
    assert again["epochs"] == 3
    for key in ("wide/val_acc", "wide/test_acc", "wide/c"):
        assert again[key] == first[key], key
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["wide/c"] == first["wide/c"]


def _nb_reference(docs: list[list[int]], labels: np.ndarray, vocab: int) -> np.ndarray:
    """NBSVM's log-count ratios per class (one against the rest) from binarised counts,
    the max of their absolute values per column; a plain loop."""
    x = np.zeros((len(docs), vocab))
    for i, d in enumerate(docs):
        x[i, d] = 1.0
    ratios = []
    for k in np.unique(labels):
        p, q = 1 + x[labels == k].sum(0), 1 + x[labels != k].sum(0)
        ratios.append(np.log(p / p.sum()) - np.log(q / q.sum()))
    return np.abs(np.stack(ratios)).max(0)


def test_nb_weighting_is_the_indicator_times_the_log_count_ratio():
    docs, labels = _bag_of_words_problem()
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    fit = wide.fit([(_word_graphs(docs[:80]), torch.as_tensor(labels[:80]))], [], cs=[1.0], folds=0,
                   weightings=["nb"])
    assert fit.weighting == wide.weighting == "nb"
    r = _nb_reference(docs[:80], labels[:80], 12)
    expected = np.zeros((40, 12))
    for i, d in enumerate(docs[80:]):
        expected[i, d] = r[d]  # a repeated token counts once
    np.testing.assert_allclose(_dense(wide, _word_graphs(docs[80:])), expected, rtol=1e-5)
    # two classes: r_0 = -r_1, so the scale is NBSVM's |r|
    two = labels[:80] % 2
    x = np.zeros((80, 12))
    for i, d in enumerate(docs[:80]):
        x[i, d] = 1.0
    p, q = 1 + x[two == 1].sum(0), 1 + x[two == 0].sum(0)
    np.testing.assert_allclose(_nb_reference(docs[:80], two, 12), np.abs(np.log(p / p.sum()) - np.log(q / q.sum())))


def test_the_weighting_is_chosen_with_c_and_kept_by_the_checkpoint(tmp_path):
    docs, labels = _bag_of_words_problem(n=200, seed=3)
    g_tr, y_tr = _word_graphs(docs[:120]), torch.as_tensor(labels[:120])
    g_va, y_va = _word_graphs(docs[120:]), torch.as_tensor(labels[120:])
    both = WidePath({"word": 12}, 3, {"word": "ngrams"}, buckets=31)
    fit = both.fit([(g_tr, y_tr)], [(g_va, y_va)], cs=[0.5, 4.0], folds=3, weightings=["tfidf", "nb"])
    assert {w for w, _ in fit.scores} == {"tfidf", "nb"} and both.weighting == fit.weighting
    for weighting in ("tfidf", "nb"):  # each weighting alone scores what the joint fit recorded for it
        alone = WidePath({"word": 12}, 3, {"word": "ngrams"}, buckets=31)
        single = alone.fit([(g_tr, y_tr)], [(g_va, y_va)], cs=[0.5, 4.0], folds=3, weightings=[weighting])
        for c in (0.5, 4.0):
            assert single.scores[weighting, c] == pytest.approx(fit.scores[weighting, c])
    assert fit.scores[fit.weighting, fit.c] == max(fit.scores.values())
    torch.save(both.state_dict(), tmp_path / "w.pt")
    fresh = WidePath({"word": 12}, 3, {"word": "ngrams"}, buckets=31)
    fresh.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert fresh.weighting == fit.weighting
    torch.testing.assert_close(fresh.eval()(g_va), both.eval()(g_va))
    # a state written before the weighting existed loads as TF-IDF
    old = {k: v for k, v in both.state_dict().items() if k != "nb"}
    fresh.load_state_dict(old)
    assert fresh.weighting == "tfidf"
    with pytest.raises(ValueError, match="wide_weighting"):
        fresh.fit([(g_tr, y_tr)], [], cs=[1.0], folds=0, weightings=["bm25"])


def test_nb_out_of_fold_scores_take_the_ratios_of_the_folds_own_rows():
    """No held-out label reaches its out-of-fold score: each refit's ratios come from
    the other folds alone."""
    docs, labels = _bag_of_words_problem(n=90, seed=2)
    g, y = _word_graphs(docs), torch.as_tensor(labels)
    wide = WidePath({"word": 12}, 3, {"word": "words"})
    wide.fit([(g, y)], [], cs=[2.0], folds=3, tol=1e-10, max_iter=10_000, weightings=["nb"])
    train_logits = wide.train()(g).detach().numpy()
    fold = (_mix32(_row_hashes(wide.raw_block(g, 0), g.batch_size) % _HASH_MOD) % 3).numpy()
    for f in range(3):
        held = fold == f
        kept = [d for d, h in zip(docs, held) if not h]
        r = _nb_reference(kept, labels[~held], 12)
        x = np.zeros((len(docs), 12))
        for i, d in enumerate(docs):
            x[i, d] = r[d]
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(x[~held], labels[~held])
        ours = torch.log_softmax(torch.as_tensor(train_logits[held]), -1).numpy()
        np.testing.assert_allclose(ours, ref.predict_log_proba(x[held]), atol=2e-3)
