"""Self-supervised pretraining: the objectives, the pretrain command, and model.init_from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from graphmm.config import ConfigError, validate_config
from graphmm.data import Sample, load_digits
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.nn import GraphClassifier
from graphmm.pretrain import MaskedNodePretrainer, PretrainTask, load_pretrained, masked_targets
from graphmm.runstate import config_diff
from graphmm.utils import load_checkpoint

TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=2"]


@pytest.fixture(scope="module")
def digits():
    splits = load_digits()
    builder = MultimodalGraphBuilder().fit(splits["train"])
    return splits, builder


def _pretrainer(builder, samples, **kw):
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, num_classes=10, hidden=16, num_layers=2)
    return MaskedNodePretrainer(model, masked_targets(builder, builder.batch(samples[:8])), **kw)


def test_targets_come_from_the_modality_registry(digits):
    splits, builder = digits
    targets = masked_targets(builder, builder.batch(splits["train"][:4]))
    assert targets["word"] == ("token", "class", builder.in_dims["word"])
    assert targets["patch"][:2] == ("pixels", "regress") and targets["frame"][:2] == ("mel", "regress")
    assert "summary" not in targets


def test_masked_content_is_hidden_from_the_encoders(digits):
    splits, builder = digits
    pre = _pretrainer(builder, splits["train"], mask_rate=0.5)
    g = builder.batch(splits["train"][:16])
    seen = {}
    pre.model.encoders.register_forward_pre_hook(lambda mod, args: seen.update(
        token=args[0].nodes["word"].data["token"].clone(), pixels=args[0].nodes["patch"].data["pixels"].clone()))
    tokens, pixels = g.nodes["word"].data["token"].clone(), g.nodes["patch"].data["pixels"].clone()
    pre(g, generator=torch.Generator().manual_seed(0))
    hidden_tokens = seen["token"] != tokens
    assert hidden_tokens.any() and (seen["token"][hidden_tokens] == 1).all()
    zeroed = (seen["pixels"] == 0).all(1) & ~(pixels == 0).all(1)
    assert 0.3 < float(zeroed.float().mean()) < 0.7
    # the graph's own data is untouched
    assert torch.equal(g.nodes["word"].data["token"], tokens) and torch.equal(g.nodes["patch"].data["pixels"], pixels)


def test_loss_terms_are_deterministic_under_a_generator_and_learnable(digits):
    splits, builder = digits
    torch.manual_seed(0)
    pre = _pretrainer(builder, splits["train"])
    g = builder.batch(splits["train"][:64])
    pre.eval()  # no dropout: the masks alone would vary
    a = pre(g, generator=torch.Generator().manual_seed(3))
    b = pre(g, generator=torch.Generator().manual_seed(3))
    pre.train()
    assert torch.equal(a, b) and set(pre.last) == {"mask/word", "mask/patch", "mask/frame", "contrast"}
    opt = torch.optim.Adam(pre.parameters(), lr=3e-3)
    first = float(a)
    for _ in range(30):
        opt.zero_grad()
        loss = pre(g, generator=torch.Generator().manual_seed(3))
        loss.backward()
        opt.step()
    assert float(loss) < 0.8 * first


def test_contrast_pairs_the_modalities_of_one_sample():
    pre = _pretrainer(*_text_image_builder())
    g_builder, samples = _text_image_builder()
    g = g_builder.batch(samples)
    states = pre.model.gnn(g, pre.model.encoders(g))
    loss = pre._contrast(g, states)
    assert loss.dim() == 0 and float(loss) > 0
    # a batch where no sample has two modalities has no pair to contrast
    lone = g_builder.batch([s.without("image") for s in samples])
    assert float(pre._contrast(lone, pre.model.gnn(lone, pre.model.encoders(lone)))) == 0.0


def _text_image_builder():
    gen = torch.Generator().manual_seed(0)
    samples = [Sample(text=f"digit {i} seven", image=torch.rand(1, 8, 8, generator=gen)) for i in range(6)]
    return MultimodalGraphBuilder(audio=None).fit(samples), samples


def test_eval_inputs_join_training_without_labels():
    task = PretrainTask()
    splits = {"train": [Sample(text="a", label=0)], "val": [Sample(text="b", label=1)], "test": [Sample(text="c", label=2)]}
    assert task.prepare_splits(splits)["train"] == splits["train"]
    task.conf.eval_inputs = True
    joined = task.prepare_splits(splits)["train"]
    assert [s.text for s in joined] == ["a", "b", "c"] and [s.label for s in joined] == [0, None, None]


def test_pretrain_command_then_train_from_it(make_cfg, tmp_path):
    from graphmm.cli import main
    from graphmm.ddp import DistContext
    from graphmm.train import build_engine, prepare_data

    pre_dir = tmp_path / "pre"
    assert main(["pretrain", *TINY, "trainer.device=cpu", f"output_dir={pre_dir}"]) == 0
    metrics = json.loads((pre_dir / "metrics.json").read_text())
    assert "val/loss" in metrics and "test/loss" in metrics and "val/acc" not in metrics
    ckpt = load_checkpoint(pre_dir / "checkpoints" / "best.pt")
    assert ckpt["task"] == "pretrain" and any(k.startswith("heads.") for k in ckpt["model"])

    cfg = make_cfg([*TINY, f"model.init_from={pre_dir}"])
    validate_config(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True)
    data = prepare_data(cfg, out)
    assert data.builder.state_dict() == ckpt["builder"]  # the pretraining run's vocabulary, not refitted
    engine = build_engine(cfg, data, out, torch.device("cpu"), DistContext())
    own = engine.model.state_dict()
    for k, v in ckpt["model"].items():
        name = k[len("model."):]
        if name.startswith(("encoders.", "gnn.")):
            assert torch.equal(own[name], v), name


def test_init_from_errors_are_config_errors(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        validate_config(make_cfg([*TINY, f"model.init_from={tmp_path / 'none.pt'}"]))
    model = GraphClassifier({"word": 5}, [("word", "next", "word")], num_classes=2, hidden=8)
    torch.save({"model": {"head.weight": torch.zeros(1)}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="holds no encoder or GNN weights"):
        load_pretrained(model, tmp_path / "x.pt")
    other = GraphClassifier({"word": 7}, [("word", "next", "word")], num_classes=2, hidden=8)
    torch.save({"model": other.state_dict()}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="of another shape"):
        load_pretrained(model, tmp_path / "y.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "z.pt")
    assert load_pretrained(model, tmp_path / "z.pt") == sorted(k for k in model.state_dict()
                                                              if k.startswith(("encoders.", "gnn.")))


def test_new_keys_left_at_their_defaults_are_no_resume_difference():
    old = {"trainer": {"max_epochs": 3}, "model": {"hidden": 8}}
    new = {"trainer": {"max_epochs": 3, "augment": {"image": {"rotate": 0.0}, "text": {"word_dropout": 0.0}}},
           "model": {"hidden": 8, "init_from": None, "pretrain": {"mask_rate": 0.15}}}
    assert config_diff(old, new) == {}
    new["trainer"]["augment"]["image"]["rotate"] = 10.0
    assert config_diff(old, new) == {"trainer.augment.image.rotate": ("<absent>", 10.0)}
