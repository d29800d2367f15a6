"""The no-graph classifiers (``model=transformer``, ``model=late_fusion``), testing with a
modality removed, directional patch relations, and the table code of benchmarks/realdata."""

from __future__ import annotations

import dgl
import pytest
import torch

from graphmm.data import Sample
from graphmm.graphs import ImageGraphBuilder, MultimodalGraphBuilder
from graphmm.graphs.image import DIRECTIONS
from graphmm.nn import GraphClassifier, LateFusionClassifier, SequenceClassifier
from graphmm.train import train, without_each_modality

MODELS = (SequenceClassifier, LateFusionClassifier)


def _samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    return [
        Sample(text="a small seven", image=torch.rand(1, 8, 8, generator=g),
               audio=torch.randn(1200, generator=g), sample_rate=8000, label=7),
        Sample(text="one", label=1),
        Sample(image=torch.rand(1, 8, 8, generator=g), label=3),
        Sample(audio=torch.randn(900, generator=g), sample_rate=8000, label=2),
    ]


@pytest.fixture(scope="module")
def builder() -> MultimodalGraphBuilder:
    b = MultimodalGraphBuilder()
    b.fit(_samples())
    return b


@pytest.mark.parametrize("cls", MODELS)
def test_logits_finite_for_every_modality_mix(builder, cls):
    torch.manual_seed(0)
    model = cls(builder.in_dims, builder.canonical_etypes, 10, hidden=16).eval()
    empty = Sample(label=0)
    out = model(builder.batch([*_samples(), empty]))
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls", MODELS)
def test_a_sample_does_not_see_the_others(builder, cls):
    torch.manual_seed(0)
    model = cls(builder.in_dims, builder.canonical_etypes, 10, hidden=16).eval()
    s = _samples()
    other = s[2].replace(image=torch.rand(1, 12, 12))  # different content and more nodes
    a = model(builder.batch([s[0], s[2]]))[0]
    b = model(builder.batch([s[0], other]))[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", MODELS)
def test_one_sgd_step_lowers_the_loss(builder, cls):
    torch.manual_seed(0)
    model = cls(builder.in_dims, builder.canonical_etypes, 10, hidden=16, dropout=0.0)
    g, y = builder.batch(_samples()), torch.tensor([s.label for s in _samples()])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(g), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("pool", ["mean", "max", "attention"])
def test_late_fusion_gives_a_missing_modality_zeros(builder, pool):
    torch.manual_seed(0)
    model = LateFusionClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=16, pool=pool).eval()
    s = _samples()
    mixed = builder.batch([s[1], s[0], s[2]])  # text only, all three, image only
    h = model.encoders(mixed)
    pooled, _ = model.pool.pool_types(mixed, {t: model.phi[t](x) for t, x in h.items()})
    assert pooled["patch"][0].abs().sum() == 0 and pooled["frame"][0].abs().sum() == 0
    assert pooled["word"][2].abs().sum() == 0 and pooled["frame"][2].abs().sum() == 0
    assert pooled["patch"][1].abs().sum() > 0
    alone = model(builder.batch([s[1]]))
    torch.testing.assert_close(model(mixed)[0], alone[0], atol=1e-6, rtol=0)
    with torch.no_grad():  # what the image and audio encoders compute cannot matter to a text-only sample
        for t in ("patch", "frame"):
            for p in model.phi[t].parameters():
                p.add_(1.0)
    torch.testing.assert_close(model(mixed)[0], alone[0], atol=1e-6, rtol=0)
    assert not torch.allclose(model(mixed)[1], alone[0])


def test_sequence_classifier_checks_heads(builder):
    with pytest.raises(ValueError, match="heads=3 must divide hidden=16"):
        SequenceClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=16, heads=3)


def test_without_each_modality():
    s = _samples()
    out = without_each_modality(s)
    assert sorted(out) == ["audio", "image", "text"]
    # only the first sample has a second modality to fall back on
    for m, (with_m, without_m) in out.items():
        assert with_m == [s[0]]
        assert [x.modalities for x in without_m] == [tuple(t for t in ("text", "image", "audio") if t != m)]
    assert out["audio"][1][0].sample_rate is None
    assert s[0].image is not None  # the originals are untouched
    # a modality the model does not read is no fallback: text+image with only image used
    assert without_each_modality([s[0]], used=["image"]) == {}
    assert without_each_modality([s[1], Sample(text="two", label=2)]) == {}


# ---------------------------------------------------------------- directional patch relations
@pytest.mark.parametrize("neighbors", [4, 8])
def test_directional_relations_split_adjacent_by_direction(neighbors):
    img = [torch.rand(1, 12, 16), torch.rand(1, 8, 8)]
    plain = ImageGraphBuilder(patch_size=4, neighbors=neighbors).build(img)
    block = ImageGraphBuilder(patch_size=4, neighbors=neighbors, directional=True).build(img)
    names = [r for _, r, _ in ImageGraphBuilder(neighbors=neighbors, directional=True).relations]
    assert names == [f"adj_{d}" for d in DIRECTIONS[:neighbors]]
    assert sorted(r for _, r, _ in block.edges) == sorted(names)
    # together they are exactly the undirected adjacency
    union = torch.cat([torch.stack(block.edges[("patch", n, "patch")]) for n in names], 1)
    want = torch.stack(plain.edges[("patch", "adjacent", "patch")])
    assert sorted(map(tuple, union.T.tolist())) == sorted(map(tuple, want.T.tolist()))
    rc = block.data["rc"]
    offset = {"r": (0, 1), "l": (0, -1), "d": (1, 0), "u": (-1, 0),
              "dr": (1, 1), "ul": (-1, -1), "dl": (1, -1), "ur": (-1, 1)}
    for n in names:
        src, dst = block.edges[("patch", n, "patch")]
        assert len(src) > 0
        assert (rc[src] - rc[dst] == torch.tensor(offset[n[4:]])).all(), n


def test_directional_graph_trains_with_a_relation_per_direction():
    b = MultimodalGraphBuilder(image=ImageGraphBuilder(patch_size=4, stride=2, neighbors=8, directional=True),
                               text=None, audio=None)
    samples = [Sample(image=torch.rand(1, 8, 8), label=i % 2) for i in range(4)]
    b.fit(samples)
    g = b.batch(samples)
    model = GraphClassifier(b.in_dims, b.canonical_etypes, 2, hidden=16, conv="gcn")
    assert {r for _, r, _ in model.canonical_etypes} >= {f"adj_{d}" for d in DIRECTIONS}
    assert model(g).shape == (4, 2)
    # the batched graph equals the per-sample graphs batched by DGL
    ref = dgl.batch([b(s) for s in samples])
    for et in g.canonical_etypes:
        assert torch.equal(torch.stack(g.edges(etype=et)), torch.stack(ref.edges(etype=et))), et


# ---------------------------------------------------------------- Hydra end to end
@pytest.mark.parametrize("model", ["transformer", "late_fusion"])
def test_experiment_with_a_no_graph_model(make_cfg, model):
    cfg = make_cfg([f"model={model}", "debug=fast", "trainer.test_missing_modalities=true", "model.hidden=16"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    # digits has text, image and audio: one extra test per modality removed, on the samples
    # that have it and something else, which are also scored as they are
    for m in ("text", "image", "audio"):
        assert 0.0 <= metrics[f"test_without_{m}/acc"] <= 1.0
        assert 0.0 <= metrics[f"test_with_{m}/acc"] <= 1.0
        assert metrics[f"test_without_{m}/n"] > 0


def test_missing_modality_metrics_score_the_model_without_it(make_cfg, tmp_path):
    """``test_without_image/acc`` is the saved model's accuracy on those samples without their images."""
    from graphmm.predict import load_predictor
    from graphmm.train import load_splits

    cfg = make_cfg(["debug=fast", "model.hidden=16", "model.heads=2", "trainer.test_missing_modalities=true"])
    metrics = train(cfg)
    splits, _ = load_splits(cfg.data)
    predictor = load_predictor(tmp_path / "run")
    builder = predictor.builder
    used = [m for m, b in (("text", builder.text), ("image", builder.image), ("audio", builder.audio)) if b]
    for split in ("val", "test"):  # validation too: robustness can be chosen without the test split
        with_m, without_m = without_each_modality(splits[split], used)["image"]
        assert metrics[f"{split}_without_image/n"] == len(with_m)
        for prefix, samples in ((f"{split}_with_image", with_m), (f"{split}_without_image", without_m)):
            pred = predictor.model(builder.batch(samples)).argmax(-1)
            acc = float((pred == torch.tensor([x.label for x in samples])).float().mean())
            assert abs(acc - metrics[f"{prefix}/acc"]) < 1e-6, prefix


def test_missing_modality_metrics_are_off_by_default(make_cfg):
    metrics = train(make_cfg(["debug=fast", "model.hidden=16", "model.heads=2"]))
    assert not any(k.startswith("test_without_") for k in metrics)


# ---------------------------------------------------------------- benchmarks/realdata table
def test_realdata_table_picks_the_conv_on_validation():
    from benchmarks.realdata import _job_key, tables

    assert _job_key(["experiment=mr", "model=hetero_gnn", "model.conv=gcn", "seed=2",
                     "trainer.cache_dir='/tmp/a b,c'"]) == ("mr", "gnn-gcn", 2)
    assert _job_key(["experiment=avdigits", "model=late_fusion", "seed=0"]) == ("avdigits", "late_fusion", 0)
    assert _job_key(["experiment=mr", "model=hetero_gnn", "model.conv=gat", "model.wide=null", "seed=1"]) == (
        "mr", "gnn-gat-nowide", 1)

    def runs(test, val, **extra):
        return [{"test/acc": t, "val/acc": v, "time_s": 1.0, **extra} for t, v in zip(test, val)]

    results = {
        "mr": {
            "TF-IDF 1-2-gram + LinearSVC": [{"test/acc": 0.77, "time_s": 1.0}],
            # gcn has the best test accuracy but not the best validation accuracy: gat is chosen
            "gnn-gcn": runs([0.80, 0.80, 0.80], [0.70, 0.70, 0.70]),
            "gnn-gat": runs([0.76, 0.75, 0.74], [0.75, 0.75, 0.75]),
        },
        "avdigits": {
            "gnn-gat": runs([1.0, 1.0, 0.99], [1.0, 1.0, 1.0],
                            **{"test_without_image/acc": 0.98, "test_without_audio/acc": 0.9}),
        },
    }
    results["mr"]["gnn-gat-nowide"] = runs([0.70, 0.71, 0.72], [0.70, 0.71, 0.72])
    results["mr"]["gnn-gat"] = runs([0.76, 0.75, 0.74], [0.75, 0.75, 0.75], **{"wide/val_acc": 0.74, "wide/test_acc": 0.73})
    text = "\n".join(tables(results, [0, 1, 2]))
    # the target for MR (78); the best model outside the framework is named
    assert "| mr | gat | 75.00 ± 1.00 | TF-IDF 1-2-gram + LinearSVC | 77.00 | 78.00 | missed |" in text
    assert "| avdigits | gat | 99.67 ± 0.58 |  | nan | 99.60 | met |" in text
    # ablations: what the wide path adds on validation, and the wide path alone
    assert "| mr | graph, conv=gat, without the wide path | 71.00 ± 1.00 | 71.00 ± 1.00 | +4.00 |" in text
    assert "| mr | the wide path alone (its fit in the runs above) | 74.00 ± 0.00 | 73.00 ± 0.00 | +1.00 |" in text
    assert "| graph, conv=gat | 99.67 ± 0.58 | 98.00 ± 0.00 (-1.67) | 90.00 ± 0.00 (-9.67) |" in text


def test_realdata_baselines_are_cached_per_seed(tmp_path, monkeypatch):
    """A rerun with one more seed fits that seed's seeded baselines only, and no
    deterministic baseline again."""
    import benchmarks.realdata as realdata

    calls = []

    def fake(dataset, data, seeds, quick, deterministic=True):
        calls.append((list(seeds), deterministic))
        out = {"CNN": {str(s): {"test/acc": 0.5 + s / 10} for s in seeds}}
        if deterministic:
            out["LogReg"] = {"once": {"test/acc": 0.4}}
        return out

    monkeypatch.setattr(realdata, "baselines", fake)
    monkeypatch.setenv("GRAPHMM_DATA", str(tmp_path))  # run() sets it; restored afterwards
    realdata.run(["fsdd"], [], [0], False, tmp_path, tmp_path, jobs=1)
    section = realdata.run(["fsdd"], [], [0, 1], False, tmp_path, tmp_path, jobs=1)
    assert calls == [([0], True), ([1], False)]
    assert "| fsdd | CNN | 55.00 ± 7.07 |" in section and "| fsdd | LogReg | 40.00 |" in section
    assert "`python -m benchmarks.realdata --datasets fsdd --models --seeds 0 1`" in section
    realdata.run(["fsdd"], [], [1, 0], False, tmp_path, tmp_path, jobs=1)
    assert len(calls) == 2
    # --table-only: the same table from what the work dir holds, and a clear refusal when
    # a seed (or a sweep) is missing
    table = realdata.run(["fsdd"], [], [0, 1], False, tmp_path, tmp_path, jobs=1, table_only=True)
    assert "| fsdd | CNN | 55.00 ± 7.07 |" in table and "--table-only" in table and len(calls) == 2
    with pytest.raises(SystemExit, match="no baselines of fsdd for seeds \\[2\\]"):
        realdata.run(["fsdd"], [], [2], False, tmp_path, tmp_path, jobs=1, table_only=True)
    with pytest.raises(SystemExit, match="sweeps does not exist"):
        realdata.run(["fsdd"], ["gnn-gat"], [0], False, tmp_path, tmp_path, jobs=1, table_only=True)
    (tmp_path / "sweeps").mkdir()
    with pytest.raises(SystemExit, match="unfinished or missing jobs .*fsdd/gnn-gat"):
        realdata.run(["fsdd"], ["gnn-gat"], [0], False, tmp_path, tmp_path, jobs=1, table_only=True)


def test_realdata_lists_unfinished_jobs_instead_of_failing(tmp_path):
    """A failed or killed sweep job is listed (with its error) and the others still count."""
    import json

    import yaml

    from benchmarks.realdata import read_sweep

    def job(name, seed, metrics=None, error=None):
        d = tmp_path / "graph" / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            ["experiment=mr", "model=hetero_gnn", "model.conv=gat", f"seed={seed}"]))
        if metrics:
            (d / "metrics.json").write_text(json.dumps(metrics))
        if error:
            (d / "error.txt").write_text(error + "\nTraceback ...")

    job("mr-gnn-gat-seed0", 0, {"test/acc": 0.8, "val/acc": 0.7})
    job("mr-gnn-gat-seed1", 1, error="RuntimeError: out of memory")
    job("mr-gnn-gat-seed2", 2)  # killed: neither file
    with pytest.raises(RuntimeError, match="has no metrics.json"):
        read_sweep(tmp_path, ["mr"], ["gnn-gat"], [0, 1, 2])
    unfinished: list[str] = []
    out = read_sweep(tmp_path, ["mr"], ["gnn-gat"], [0, 1, 2], unfinished)
    assert [r["test/acc"] for r in out[("mr", "gnn-gat")]] == [0.8]
    assert len(unfinished) == 2
    assert "seed1 (failed: RuntimeError: out of memory)" in unfinished[0]
    assert unfinished[1].endswith("seed2 (incomplete)")


def test_realdata_section_names_the_unfinished_jobs(tmp_path, monkeypatch):
    import benchmarks.realdata as realdata

    test_realdata_lists_unfinished_jobs_instead_of_failing(tmp_path / "sweeps")
    monkeypatch.setattr(realdata, "baselines", lambda *a, **k: {"LogReg": {"once": {"test/acc": 0.5}}})
    monkeypatch.setattr(realdata, "sweep", lambda name, *a: tmp_path / name)
    monkeypatch.setenv("GRAPHMM_DATA", str(tmp_path))
    section = realdata.run(["mr"], ["gnn-gat"], [0, 1, 2], False, tmp_path, tmp_path, jobs=1)
    assert "**Jobs that did not finish** (2;" in section
    assert "out of memory" in section and "| mr | graph, conv=gat | 80.00 |" in section
