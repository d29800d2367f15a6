"""Prediction and attention from a saved checkpoint, in process and on the command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from graphmm.config import CONF_DIR, to_container
from graphmm.data import Sample
from graphmm.graphs import CrossModalBuilder, MultimodalGraphBuilder
from graphmm.nn import GraphClassifier
from graphmm.cli.predict import main
from graphmm.predict import (
    UsageError,
    explain,
    load_predictor,
    received_attention,
    top_k,
    write_explanation,
)
from graphmm.tasks import evaluate_classifier as evaluate
from graphmm.train import build_model, load_splits, make_loader, train
from graphmm.utils import save_checkpoint

# two layers, so that the first one also runs the relations into summary nodes
SMALL = ["debug=fast", "trainer.max_epochs=1", "data.split=[0.9,0.05,0.05]", "model.hidden=16", "model.heads=2", "model.num_layers=2"]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=["trainer.device=cpu", "trainer.progress=false", *overrides])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained GAT model: (config, checkpoint path, the first 64 test samples)."""
    out = tmp_path_factory.mktemp("run")
    cfg = _compose([*SMALL, f"output_dir={out}"])
    train(cfg)
    splits, _ = load_splits(cfg.data)
    return cfg, out / "checkpoints" / "best.pt", splits["test"][:64]


@pytest.fixture(scope="module")
def files(run, tmp_path_factory):
    """One test sample written as files: its 8x8 image as a PNG, a 32x32 copy, an 8 kHz WAV and its text."""
    d = tmp_path_factory.mktemp("files")
    s = run[2][3]
    im = Image.fromarray((s.image[0].numpy() * 255).round().astype(np.uint8))
    im.save(d / "digit.png")
    im.resize((32, 32), Image.Resampling.NEAREST).save(d / "big.png")
    sf.write(d / "tone.wav", s.audio.numpy(), s.sample_rate, subtype="FLOAT")
    return {"image": str(d / "digit.png"), "big": str(d / "big.png"), "audio": str(d / "tone.wav"),
            "text": s.text, "dir": d}


def test_predict_reproduces_evaluation(run):
    cfg, ckpt, test = run
    predictor = load_predictor(ckpt)
    assert not predictor.model.training and predictor.num_classes == 10
    probs = predictor.predict(test)
    assert probs.shape == (len(test), 10)
    assert torch.allclose(probs.sum(-1), torch.ones(len(test)), atol=1e-5)
    loader = make_loader(test, predictor.builder, cfg.trainer.eval_batch_size, False, 0, cfg.seed)
    _, preds = evaluate(predictor.model, loader, torch.device("cpu"), 10)
    assert torch.equal(probs.argmax(-1), preds)
    ranked = top_k(probs[:2], 3, predictor.class_names)
    assert [r["rank"] for r in ranked[0]] == [1, 2, 3] and ranked[0][0]["class"] == int(preds[0])
    assert ranked[0][0]["prob"] >= ranked[0][1]["prob"] >= ranked[0][2]["prob"]


def test_sample_from_files_matches_training_format(run, files):
    predictor = load_predictor(run[1].parent.parent)  # the run folder works too
    s = predictor.sample_from_files(image=files["image"], audio=files["audio"], text=files["text"])
    assert s.image.shape == (1, 8, 8) and s.sample_rate == 8000
    assert torch.allclose(s.image, run[2][3].image, atol=0.5 / 255 + 1e-6)  # 8-bit round trip
    assert torch.allclose(s.audio, run[2][3].audio)
    big = predictor.sample_from_files(image=files["big"])  # resized to the training size
    assert big.image.shape == (1, 8, 8) and big.audio is None and big.text is None
    assert predictor.predict([s]).shape == (1, 10)
    with pytest.raises(UsageError, match="at least one input"):
        predictor.sample_from_files()


def test_explain_attention_is_a_softmax_per_relation(run, files):
    predictor = load_predictor(run[1])
    s = run[2][3]
    g = predictor.graph([s])
    with torch.no_grad():
        logits, attention = predictor.model.explain(g)
        assert torch.allclose(logits, predictor.model(g), atol=1e-6)
    assert ("patch", "to_summary", "summary") in attention  # first layer only
    for cet, layers in attention.items():
        _, dst = g.edges(etype=cet)
        has_in = torch.bincount(dst, minlength=g.num_nodes(cet[2])) > 0
        for a in layers:
            assert a.shape == (g.num_edges(cet), 2)
            sums = torch.zeros(g.num_nodes(cet[2]), 2).index_add_(0, dst, a)
            assert torch.allclose(sums[has_in], torch.ones_like(sums[has_in]), atol=1e-5), cet

    expl = explain(predictor, s)
    assert expl.patch_route == "summary" and expl.frame_route == "summary"
    # one layer of patch -> summary attention: the patches' weights sum to 1
    assert expl.patch_mass.shape == (9,) and expl.patch_mass.sum() == pytest.approx(1.0, abs=1e-5)
    assert expl.frame_mass.shape == (g.num_nodes("frame"),)
    for row in expl.relations:
        assert row["attention_mass"] == pytest.approx(row["attending_nodes"] * row["layers"], abs=1e-3)
        assert row["message_norm"] is not None and row["message_norm"] > 0
    paths = write_explanation(expl, s, predictor, files["dir"] / "explain")
    assert set(paths) == {"image_attention.png", "audio_attention.png", "relations.csv", "relations.png"}
    for name, size in (("image_attention.png", (700, 360)), ("audio_attention.png", (700, 320)),
                       ("relations.png", (800, 400))):
        with Image.open(paths[name]) as im:
            im.load()
            assert im.size == size, name
    rows = list(csv.DictReader(open(paths["relations.csv"])))
    assert {r["relation"] for r in rows} == {":".join(c) for c in attention}
    assert float(rows[0]["attention_mass"]) == max(float(r["attention_mass"]) for r in rows)


def test_received_attention_prefers_direct_cross_modal_relations():
    builder = MultimodalGraphBuilder(audio=None, cross=CrossModalBuilder(summary=True, bipartite=[["word", "patch"]]))
    s = Sample(text="a handwritten seven", image=torch.rand(1, 8, 8))
    builder.fit([s])
    g = builder(s)
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=8, conv_kwargs={"heads": 2}).eval()
    with torch.no_grad():
        _, attention = model.explain(g)
    mass, rels, route = received_attention(g, attention, "patch")
    assert route == "direct" and rels == [("patch", "rev_cross", "word")]
    # three words each spread one unit of attention (per layer) over the 9 patches
    assert mass.shape == (g.num_nodes("patch"),) and mass.sum() == pytest.approx(3 * len(attention[rels[0]]), abs=1e-5)
    assert received_attention(g, attention, "frame")[2] == "none"


def test_explain_needs_an_attention_model(tmp_path):
    cfg = _compose(["model.conv=sum", "model.hidden=8", f"output_dir={tmp_path}"])
    builder = instantiate(cfg.graph)
    s = Sample(text="a seven", image=torch.rand(1, 8, 8), audio=0.1 * torch.randn(2000), sample_rate=8000, label=7)
    builder.fit([s])
    model = build_model(cfg.model, builder, 10)
    save_checkpoint(tmp_path / "sum.pt", {"model": model.state_dict(), "config": to_container(cfg),
                                          "builder": builder.state_dict(), "num_classes": 10, "epoch": 0})
    predictor = load_predictor(tmp_path / "sum.pt")
    assert predictor.predict([s]).shape == (1, 10)
    with pytest.raises(ValueError, match="conv='sum'.*model.conv=gat"):
        explain(predictor, s)
    with pytest.raises(ValueError, match="conv='sum'"):
        predictor.model.explain(predictor.graph([s]))


def test_cli_errors_are_one_line(run, files, capsys, tmp_path):
    ckpt = str(run[1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(np.random.default_rng(0).bytes(200))
    wav = (tmp_path / "full.wav")
    sf.write(wav, np.zeros(4000, dtype=np.float32), 8000)
    (tmp_path / "cut.wav").write_bytes(wav.read_bytes()[:1000])
    cases = [
        ([f"ckpt_path={tmp_path / 'missing.pt'}", "input.text=a seven"], 1, "missing.pt' does not exist"),
        ([f"ckpt_path={ckpt}", f"input.image={broken}"], 1, "broken.png' is not an image"),
        ([f"ckpt_path={ckpt}", f"input.audio={tmp_path / 'cut.wav'}"], 1, "cut.wav' is truncated"),
        ([f"ckpt_path={ckpt}"], 2, "at least one input"),
        ([f"ckpt_path={ckpt}", "input.text=x", "output=yaml"], 2, "output=text or output=json"),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("graphmm.predict: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    # what Hydra refuses while composing (an unknown key, a value of the wrong type) is
    # Hydra's own message, naming the key, without a traceback
    for argv, message in ((["ckpt_path=x", "inputs.text=x"], "Key 'inputs' not in 'PredictConfig'"),
                          (["top_k=many"], "top_k=many")):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_cli_is_a_hydra_app_that_writes_nothing_else(run, files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Hydra's grammar: a text with quotes, colons, brackets or '=' is quoted for Hydra
    assert main([f"ckpt_path={run[1]}", "output=json", "input.text='it\\'s 7: [seven] = 7'"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"]["text"] == "it's 7: [seven] = 7"
    assert main([f"ckpt_path={run[1]}", "input.text=one, two"]) == 1  # unquoted commas: Hydra says how to quote
    assert "quote the value" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: python -m graphmm predict" in out and "top_k: 5" in out and "video: null" in out
    assert sorted(os.listdir(tmp_path)) == []  # no outputs/, .hydra/ or log file from a prediction


def test_cli_json_and_explain_in_a_subprocess(run, files, tmp_path):
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    cmd = [sys.executable, "-m", "graphmm", "predict", f"ckpt_path={run[1]}", f"input.image={files['image']}",
           f"input.audio={files['audio']}", f"input.text={files['text']}", "top_k=3", "output=json",
           "explain=true", f"explain_dir={tmp_path / 'expl'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["rank"] for r in result["top_k"]] == [1, 2, 3]
    assert len(result["probs"]) == 10 and sum(result["probs"]) == pytest.approx(1.0, abs=1e-4)
    predictor = load_predictor(run[1])
    s = predictor.sample_from_files(image=files["image"], audio=files["audio"], text=files["text"])
    assert result["probs"] == pytest.approx(predictor.predict([s])[0].tolist(), abs=1e-5)
    assert result["inputs"]["image_shape"] == [1, 8, 8]
    for path in result["explain"]["files"].values():
        assert os.path.isfile(path) and path.startswith(str(tmp_path / "expl"))


def test_text_file_input_and_warnings_for_inputs_without_signal(run, files, capsys, tmp_path):
    ckpt = str(run[1])
    words = " ".join(["seven"] * 5000)  # over max_tokens=2048, and too long for many shells' ARG_MAX
    (tmp_path / "big.txt").write_text(words, encoding="utf-8")
    sf.write(tmp_path / "silence.wav", np.zeros(4000, np.float32), 8000)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "grey.png")

    def answer(*argv):
        assert main([f"ckpt_path={ckpt}", "output=json", *argv]) == 0
        return json.loads(capsys.readouterr().out)

    result = answer(f"input.text_file={tmp_path / 'big.txt'}", f"input.audio={tmp_path / 'silence.wav'}")
    assert result["inputs"]["text_chars"] == len(words) and result["inputs"]["text"] is None
    predictor = load_predictor(run[1])
    s = predictor.sample_from_files(audio=tmp_path / "silence.wav", text=words)
    assert result["probs"] == pytest.approx(predictor.predict([s])[0].tolist(), abs=1e-5)
    assert [w.split(" ")[0] for w in result["warnings"]] == ["audio", "text"]
    assert "silent" in result["warnings"][0] and "max_tokens=2048" in result["warnings"][1]
    assert answer("input.text=   ", f"input.image={tmp_path / 'grey.png'}")["warnings"] == [
        "text is empty (no word): it carries no signal", "image is constant (every pixel 0.502): it carries no signal"]
    assert "all <unk>" in answer("input.text=zzyzx qwfp")["warnings"][0]
    assert answer(f"input.image={files['image']}", f"input.audio={files['audio']}",
                  f"input.text={files['text']}")["warnings"] == []
    assert main([f"ckpt_path={ckpt}", "input.text=x", f"input.text_file={tmp_path / 'big.txt'}"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([f"ckpt_path={ckpt}", f"input.text_file={tmp_path / 'gone.txt'}"]) == 1
    assert "gone.txt' does not exist" in capsys.readouterr().err
    assert main([f"ckpt_path={ckpt}", f"input.audio={tmp_path / 'silence.wav'}"]) == 0
    assert "warning: audio is silent" in capsys.readouterr().out


def test_latency_benchmark_times_the_real_command_and_its_phases(run):
    from benchmarks.latency import measure, report

    got = measure(run[1], repeats=1)
    phases = got["phases_s"]
    assert list(phases) == ["interpreter", "imports", "hydra", "load", "build", "forward", "exit"]
    assert all(v >= 0 for v in phases.values()) and phases["imports"] > phases["load"]
    assert got["wall_s"] > 0 and "| forward |" in report(got)
