"""Generation head: decoding, batching isolation, missing modalities, vocabulary, data."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from graphmm.config import ConfigError, validate_config
from graphmm.data import Sample
from graphmm.data.sequences import load_digits_seq
from graphmm.data.targets import TargetVocab
from graphmm.graphs import CrossModalBuilder, MultimodalGraphBuilder
from graphmm.nn import GenerationHead, GraphSeq2Seq, SequenceSeq2Seq, pack_node_states
from graphmm.tasks import GenerationTask, sequence_metrics
from graphmm.train import screen_samples, train


@pytest.fixture(scope="module")
def seq_splits() -> dict[str, list[Sample]]:
    return load_digits_seq(num_samples=(48, 16, 16), seed=3)


def _builder(samples) -> MultimodalGraphBuilder:
    b = MultimodalGraphBuilder(text=False, cross=CrossModalBuilder(summary=True, align=[("patch", "frame")]))
    return b.fit(samples)


def _model(builder, vocab, **kw) -> GraphSeq2Seq:
    torch.manual_seed(0)
    opts = dict(hidden=32, num_layers=2, conv_kwargs={"heads": 2}, decoder_layers=1, decoder_heads=2, dropout=0.0)
    opts.update(kw)
    return GraphSeq2Seq(builder.in_dims, builder.canonical_etypes, len(vocab), **opts)


# ---------------------------------------------------------------------- vocabulary
def test_vocab_round_trip_through_safe_torch_load(tmp_path) -> None:
    vocab = TargetVocab(level="char").fit(["three one", "four"])
    torch.save(vocab.state_dict(), tmp_path / "v.pt")
    loaded = TargetVocab.from_state_dict(torch.load(tmp_path / "v.pt", weights_only=True))
    assert loaded.itos == vocab.itos and loaded.level == "char"
    ids = vocab.encode("four one")
    assert loaded.encode("four one") == ids
    assert loaded.decode(ids) == "four one"


def test_vocab_empty_and_unknown_targets() -> None:
    vocab = TargetVocab().fit(["one two", "two three"])
    with pytest.raises(ValueError, match="sample 'x/1'.*empty"):
        vocab.encode("   ", where="sample 'x/1'")
    ids = vocab.encode("one nine")  # documented default: unknown words become <unk>
    assert ids[2] == vocab.unk_id
    strict = TargetVocab(on_unknown="raise").fit(["one two"])
    with pytest.raises(ValueError, match=r"sample 'x/2'.*\['nine'\]"):
        strict.encode("one nine", where="sample 'x/2'")
    with pytest.raises(ValueError, match="corrupt"):
        TargetVocab.from_state_dict({**vocab.state_dict(), "itos": ["one", "two"]})


def test_generation_task_screens_targets() -> None:
    task = GenerationTask()
    splits = {
        "train": [Sample(image=torch.rand(1, 8, 8), target="one", id="a"),
                  Sample(image=torch.rand(1, 8, 8), target="  ", id="empty"),
                  Sample(image=torch.rand(1, 8, 8), id="none")],
        "val": [], "test": [],
    }
    builder = MultimodalGraphBuilder(text=False, audio=False)
    with pytest.raises(ValueError, match="'empty'.*empty"):
        screen_samples(splits, builder, "raise", task=task)
    kept, skipped = screen_samples(splits, builder, "skip", task=task)
    assert [s.id for s in kept["train"]] == ["a"] and skipped["train"] == 2


# ---------------------------------------------------------------------- decoding
def test_pack_node_states_isolates_graphs(seq_splits) -> None:
    samples = seq_splits["train"][:3]
    g = _builder(samples).batch(samples)
    states = {nt: torch.arange(g.num_nodes(nt), dtype=torch.float32)[:, None] + 1 for nt in ("patch", "frame")}
    mem, pad, type_id, _ = pack_node_states(g, states, ["patch", "frame"])
    for b in range(3):
        n_p, n_f = int(g.batch_num_nodes("patch")[b]), int(g.batch_num_nodes("frame")[b])
        assert int((~pad[b]).sum()) == n_p + n_f
        p0 = int(g.batch_num_nodes("patch")[:b].sum())
        f0 = int(g.batch_num_nodes("frame")[:b].sum())
        expect = torch.cat([states["patch"][p0 : p0 + n_p], states["frame"][f0 : f0 + n_f]])
        assert torch.equal(mem[b, : n_p + n_f], expect)
        assert type_id[b, n_p : n_p + n_f].eq(1).all()
        assert mem[b, n_p + n_f :].eq(0).all()


def test_beam_width_one_equals_greedy(seq_splits) -> None:
    samples = seq_splits["train"][:8]
    builder = _builder(samples)
    vocab = TargetVocab().fit(s.target for s in samples)
    model = _model(builder, vocab).eval()
    memory, pad = model.memory_of(builder.batch(samples))
    greedy = model.head.greedy(memory, pad, max_len=7)
    for alpha in (0.0, 1.0):
        beam = model.head.beam_search(memory, pad, beam_width=1, max_len=7, length_penalty=alpha)
        assert torch.equal(beam, greedy)


def test_exhaustive_beam_finds_the_most_likely_sequence() -> None:
    """With a beam as wide as the search space, beam search is exact: compare it with
    scoring every sequence of up to ``max_len`` tokens by teacher forcing."""
    torch.manual_seed(1)
    vocab_size, max_len = 5, 3
    head = GenerationHead(8, vocab_size, num_layers=1, nhead=2, dropout=0.0).eval()
    memory, pad = torch.randn(2, 4, 8), torch.tensor([[False] * 4, [False, False, True, True]])
    best = head.beam_search(memory, pad, beam_width=vocab_size**max_len, max_len=max_len)

    def logp(b: int, seq: list[int]) -> float:
        tokens = torch.tensor([[head.bos_id, *seq]])
        lp = torch.log_softmax(head(memory[b : b + 1], pad[b : b + 1], tokens[:, :-1]), -1)[0]
        return float(lp.gather(1, tokens[0, 1:, None]).sum())

    for b in range(2):
        cands = []
        for n in range(1, max_len + 1):
            for seq in itertools.product(range(vocab_size), repeat=n):
                ended = head.eos_id in seq
                if ended and seq.index(head.eos_id) != n - 1:
                    continue  # tokens after <eos> are never generated
                if not ended and n < max_len:
                    continue  # without <eos>, only sequences cut at max_len
                cands.append((logp(b, list(seq)), list(seq)))
        score, seq = max(cands)
        got = [t for t in best[b].tolist()]
        got = got[: got.index(head.eos_id) + 1] if head.eos_id in got else got[:max_len]
        assert got == seq, (b, got, seq, score)


def test_other_samples_do_not_change_a_samples_output(seq_splits) -> None:
    samples = seq_splits["train"][:3]
    builder = _builder(samples)
    vocab = TargetVocab().fit(s.target for s in samples)
    model = _model(builder, vocab).eval()
    tokens = vocab.batch([s.target for s in samples])[:, :-1]
    g = builder.batch(samples)
    base = model(g, tokens)
    base_gen = model.generate(g, beam_width=3)
    g2 = builder.batch(samples)
    # perturb every node of sample 1 (features, and all its node types)
    for nt in ("patch", "frame"):
        counts = g2.batch_num_nodes(nt)
        start, end = int(counts[:1].sum()), int(counts[:2].sum())
        for key, val in g2.nodes[nt].data.items():
            if val.is_floating_point():
                val = val.clone()
                val[start:end] = torch.randn_like(val[start:end]) * 10
                g2.nodes[nt].data[key] = val
    out = model(g2, tokens)
    gen = model.generate(g2, beam_width=3)
    assert not torch.allclose(out[1], base[1])
    for b in (0, 2):
        torch.testing.assert_close(out[b], base[b], atol=1e-5, rtol=1e-5)
        # the same tokens; the padding after them follows the batch's longest output
        assert torch.equal(gen[b][gen[b] != vocab.pad_id], base_gen[b][base_gen[b] != vocab.pad_id])
    # a different neighbour (more nodes, so more padding) changes nothing either
    longer = [samples[0], seq_splits["train"][10], samples[2]]
    out3 = model(builder.batch(longer), vocab.batch([s.target for s in longer])[:, :-1])
    torch.testing.assert_close(out3[0, : tokens.shape[1]], base[0], atol=1e-5, rtol=1e-5)


def test_generation_with_missing_modalities(seq_splits) -> None:
    full = seq_splits["train"][0]
    samples = [full, full.replace(audio=None, sample_rate=None), full.replace(image=None), Sample(target="one")]
    builder = _builder(seq_splits["train"])
    vocab = TargetVocab().fit(s.target for s in seq_splits["train"])
    for cls in (GraphSeq2Seq, SequenceSeq2Seq):
        torch.manual_seed(0)
        model = cls(builder.in_dims, builder.canonical_etypes, len(vocab), hidden=32, decoder_heads=2,
                    conv_kwargs={"heads": 2}).eval()
        g = builder.batch(samples)
        assert g.batch_num_nodes("frame").tolist()[1] == 0 and g.batch_num_nodes("patch").tolist()[2] == 0
        logits = model(g, vocab.batch([s.target for s in samples])[:, :-1])
        assert torch.isfinite(logits).all()
        for beam in (1, 3):
            out = model.generate(g, beam_width=beam, max_len=6)
            assert out.shape[0] == 4 and out.shape[1] <= 6


def test_decoder_overfits_sixteen_samples(seq_splits) -> None:
    samples = seq_splits["train"][:16]
    builder = _builder(samples)
    vocab = TargetVocab().fit(s.target for s in samples)
    model = _model(builder, vocab, num_layers=1)
    g, y = builder.batch(samples), vocab.batch([s.target for s in samples])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        loss = model.loss(g, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            texts = [vocab.decode(r) for r in model.generate(g, max_len=8)]
            model.train()
            if texts == [s.target for s in samples]:
                break
    model.eval()
    for beam in (1, 4):
        texts = [vocab.decode(r) for r in model.generate(g, beam_width=beam, max_len=8)]
        assert texts == [s.target for s in samples], (float(loss), texts)


def test_sequence_metrics() -> None:
    m = sequence_metrics(["one two three", "four"], ["one two three", "five"])
    assert m["exact"] == 0.5
    assert m["wer"] == pytest.approx(1 / 4)
    assert 0.0 < m["cer"] < 1.0
    assert sequence_metrics(["a b c d"], ["a b c d"])["bleu"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- data
def test_digits_seq_is_deterministic_and_well_formed() -> None:
    a = load_digits_seq(num_samples=(20, 5, 5), seed=7, max_digits=3)
    b = load_digits_seq(num_samples=(20, 5, 5), seed=7, max_digits=3)
    assert a == b
    for s in a["train"]:
        k = len(s.target.split())
        assert 1 <= k <= 3
        assert tuple(s.image.shape) == (1, 8, 8 * k)
        assert s.audio.ndim == 1 and s.sample_rate == 8000 and s.label is None
    audio_only = load_digits_seq(num_samples=(5, 5, 5), modalities=["audio"])
    assert all(s.image is None and s.audio is not None for s in audio_only["test"])
    with pytest.raises(ValueError, match="min_digits"):
        load_digits_seq(min_digits=3, max_digits=2)


# ---------------------------------------------------------------------- config and run
def test_generation_config_checks(make_cfg) -> None:
    cfg = make_cfg(["experiment=digits_seq", "model.decoder_heads=5"])
    with pytest.raises(ConfigError, match="model.decoder_heads"):
        validate_config(cfg)
    cfg = make_cfg(["experiment=digits_seq", "trainer.monitor=val/acc"])
    with pytest.raises(ConfigError, match="trainer.monitor"):
        validate_config(cfg)
    cfg = make_cfg(["experiment=digits_seq", "model.target_level=byte"])
    with pytest.raises(ConfigError, match="model.target_level"):
        validate_config(cfg)


@pytest.mark.parametrize(
    "overrides",
    [["experiment=digits_seq"], ["experiment=digits_seq_audio"], ["experiment=digits_seq_image"],
     ["experiment=digits_seq", "model=transformer_seq2seq"], ["experiment=digits_seq", "model.target_level=char"]],
    ids=["image+audio", "audio", "image", "sequence-baseline", "char-level"],
)
def test_digits_seq_run_end_to_end(make_cfg, tmp_path, overrides) -> None:
    cfg = make_cfg([
        *overrides, "data.num_samples=[64,16,16]", "trainer.max_epochs=2", "model.hidden=32",
        "model.decoder_heads=2", "model.heads=2", "model.num_layers=1", "model.beam_width=2",
    ])
    metrics = train(cfg)
    out = tmp_path / "run"
    for key in ("test/wer", "test/cer", "test/bleu", "test/exact", "val/exact"):
        assert 0.0 <= metrics[key] <= max(1.0, metrics[key])
    assert json.loads((out / "metrics.json").read_text())["test/exact"] == metrics["test/exact"]
    rows = (out / "generations.csv").read_text().splitlines()
    assert rows[0] == "id,target,generated,exact" and len(rows) == 17
    assert (out / "curves.png").stat().st_size > 0
    ckpt = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["task"] == "generation"
    assert TargetVocab.from_state_dict(ckpt["target_vocab"]).itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_predict_reproduces_run_generations_in_a_new_process(make_cfg, tmp_path) -> None:
    import csv
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf
    from PIL import Image

    from graphmm.predict import load_predictor

    cfg = make_cfg([
        "experiment=digits_seq", "data.num_samples=[64,16,16]", "trainer.max_epochs=2", "model.hidden=32",
        "model.decoder_heads=2", "model.heads=2", "model.num_layers=1", "model.beam_width=2",
    ])
    train(cfg)
    out = tmp_path / "run"
    with open(out / "generations.csv") as f:
        expected = [row["generated"] for row in csv.DictReader(f)]
    predictor = load_predictor(out / "checkpoints" / "best.pt")
    test = load_digits_seq(num_samples=(64, 16, 16))["test"]
    assert predictor.task == "generation" and predictor.beam_width == 2
    assert predictor.generate(test) == expected
    with pytest.raises(ValueError, match="generate"):
        predictor.predict(test[:1])

    s = test[0]
    Image.fromarray((s.image[0].numpy() * 255).round().astype(np.uint8)).save(tmp_path / "strip.png")
    sf.write(tmp_path / "digits.wav", s.audio.numpy(), s.sample_rate)
    res = subprocess.run(
        [sys.executable, "-m", "graphmm.predict", f"ckpt_path={out}", f"input.image={tmp_path / 'strip.png'}",
         f"input.audio={tmp_path / 'digits.wav'}", "output=json", "beam_width=1"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert isinstance(result["generated"], str) and result["beam_width"] == 1
    assert result["inputs"]["image_shape"] == list(s.image.shape)



SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "fsdd").is_dir(), reason=f"real data not found at {SHARED_DATA}")
def test_avdigits_seq_on_real_data(make_cfg, tmp_path) -> None:
    cfg = make_cfg([
        "experiment=avdigits_seq", f"data.root={SHARED_DATA}", "data.num_samples=[24,8,8]", "debug=fast",
        "trainer.progress=false", "model.hidden=32", "model.heads=2", "model.decoder_heads=2", "model.num_layers=1",
    ])
    metrics = train(cfg)
    assert {"test/wer", "test/exact"} <= set(metrics)
    rows = (tmp_path / "run" / "generations.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[1].startswith("avdigits_seq/test/0,")
    from graphmm.data.sequences import load_avdigits_seq

    with pytest.raises(FileNotFoundError, match="shared/data layout"):
        load_avdigits_seq(str(tmp_path))


def test_avdigits_seq_validation_speakers_are_a_pool_of_their_own() -> None:
    """With val_speakers the validation pool is every recording of those speakers and
    nothing of them is in train; bad combinations fail with the key's name."""
    from types import SimpleNamespace

    import numpy as np

    from graphmm.data.sequences import _recording_pools

    records = [SimpleNamespace(speaker=spk, take=t, path=f"{d}_{spk}_{t}.wav", label=str(d))
               for spk in ("ann", "bob", "cy", "dee") for d in range(3) for t in range(4)]
    rng = np.random.default_rng(0)
    train, val, test = _recording_pools(records, 0.1, rng, ["ann"], ["bob", "cy"])
    assert {records[i].speaker for i in test} == {"ann"}
    assert {records[i].speaker for i in val} == {"bob", "cy"} and len(val) == 24
    assert {records[i].speaker for i in train} == {"dee"} and len(train) + len(val) + len(test) == len(records)
    with pytest.raises(ValueError, match="val_speakers needs data.test_speakers"):
        _recording_pools(records, 0.1, rng, None, ["bob"])
    with pytest.raises(ValueError, match=r"val_speakers \['ann'\] are also test speakers"):
        _recording_pools(records, 0.1, rng, ["ann"], ["ann", "bob"])
    with pytest.raises(ValueError, match=r"val_speakers \['zed'\] have no clip"):
        _recording_pools(records, 0.1, rng, ["ann"], ["zed"])
    with pytest.raises(ValueError, match="none is left for training"):
        _recording_pools(records, 0.1, rng, ["ann", "bob"], ["cy", "dee"])


@pytest.mark.skipif(not (SHARED_DATA / "fsdd").is_dir(), reason=f"real data not found at {SHARED_DATA}")
def test_avdigits_seq_speaker_split_never_hears_the_test_speaker(make_cfg) -> None:
    import numpy as np

    from graphmm.data.audio_folder import read_audio_records
    from graphmm.data.sequences import _recording_pools, load_avdigits_seq

    records = read_audio_records(str(SHARED_DATA / "fsdd" / "recordings"), sample_rate=8000)
    train, val, test = _recording_pools(records, 0.1, np.random.default_rng(0), ["george", "lucas"])
    assert {records[i].speaker for i in test} == {"george", "lucas"}
    assert not {records[i].speaker for i in [*train, *val]} & {"george", "lucas"}
    assert len(train) + len(val) + len(test) == len(records) and len(test) == 1000
    with pytest.raises(ValueError, match=r"no recording of \['bob'\]"):
        load_avdigits_seq(str(SHARED_DATA), num_samples=[4, 2, 2], test_speakers=["bob"])
    cfg = make_cfg(["experiment=avdigits_seq_speakers", f"data.root={SHARED_DATA}"])
    assert cfg.data.test_speakers == ["george"] and cfg.data.modalities == ["audio"] and cfg.graph.image is None
    assert cfg.data.val_speakers == ["jackson"] and cfg.graph.audio.normalize == "clip"


def test_generation_model_on_a_dataset_without_targets_fails_before_loading(make_cfg) -> None:
    cfg = make_cfg(["data=textcls", "data.name=mr", "model=graph_seq2seq", "trainer.monitor=val/wer",
                    "graph.image=null", "graph.audio=null"])
    with pytest.raises(ConfigError, match="model.task=generation needs target texts.*load_textcls"):
        validate_config(cfg)
