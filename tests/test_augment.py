"""Augmentations: shapes kept, deterministic under a seed, and each does what it says."""

from __future__ import annotations

import pytest
import torch

from graphmm.data import Sample
from graphmm.data.augment import AudioAugment, Augmentations, ImageAugment, TextAugment, list_augmentations
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.graphtypes import NodeBlock


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_for_the_built_in_modalities():
    assert {"image", "audio", "text"} <= set(list_augmentations())


def test_image_warps_keep_shapes_and_repeat_under_a_seed():
    imgs = [torch.rand(1, 8, 8), torch.rand(3, 12, 10), torch.rand(1, 8, 8)]
    aug = ImageAugment(shift=0.2, rotate=20, scale=0.1, elastic=1.5)
    a, b = aug.raw(imgs, gen(1)), aug.raw(imgs, gen(1))
    assert [x.shape for x in a] == [x.shape for x in imgs]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = aug.raw(imgs, gen(2))
    assert not torch.equal(a[0], c[0])  # another seed, another warp
    assert not torch.equal(a[0], imgs[0])


def test_image_shift_moves_the_content():
    img = torch.zeros(1, 9, 9)
    img[0, 4, 4] = 1.0  # one bright pixel in the centre
    out = ImageAugment(shift=0.3).raw([img] * 16, gen(0))
    centres = [divmod(int(o.flatten().argmax()), 9) for o in out]
    assert len(set(centres)) > 3  # moved to several places
    assert all(o.max() > 0.2 for o in out)  # and not lost


def test_zero_settings_are_the_identity():
    imgs = [torch.rand(1, 8, 8)]
    assert ImageAugment().raw(imgs, gen())[0] is imgs[0]
    wave = [torch.randn(800)]
    assert AudioAugment().raw(wave, gen())[0] is wave[0]


def test_audio_raw_gain_shift_speed():
    wave = 0.1 * torch.sin(torch.linspace(0, 200, 4000))
    gained = AudioAugment(gain_db=6).raw([wave] * 8, gen(0))
    ratios = [float(g.abs().max() / wave.abs().max()) for g in gained]
    assert all(10 ** (-6 / 20) - 1e-4 <= r <= 10 ** (6 / 20) + 1e-4 for r in ratios) and len(set(ratios)) == 8
    sped = AudioAugment(speed=0.2).raw([wave] * 8, gen(0))
    assert all(3300 <= s.numel() <= 5000 for s in sped) and len({s.numel() for s in sped}) > 1
    shifted = AudioAugment(shift=0.25).raw([wave], gen(3))[0]
    assert shifted.shape == wave.shape and not torch.equal(shifted, wave)
    zeros = (shifted == 0).nonzero()
    assert len(zeros) >= 1  # the gap is filled with silence


def test_specaugment_masks_spans_and_bands_per_clip():
    counts = torch.tensor([20, 0, 30])
    mel = torch.ones(50, 16)
    block = NodeBlock("frame", counts, {"mel": mel, "time": torch.zeros(50)})
    out = AudioAugment(time_masks=2, time_width=5, freq_masks=1, freq_width=4).nodes(block, gen(0))
    assert out.data["mel"].shape == (50, 16) and torch.equal(out.data["time"], block.data["time"])
    assert torch.equal(mel, torch.ones(50, 16))  # the input is not modified
    masked = out.data["mel"] == 0
    for lo, hi in ((0, 20), (20, 50)):
        clip = masked[lo:hi]
        rows, cols = clip.all(1), clip.all(0)
        assert rows.sum() <= 2 * 5 and cols.sum() <= 4  # at most the asked widths
        assert clip.any()
        # masked rows of one clip form at most two contiguous spans
        runs = int((rows[1:] & ~rows[:-1]).sum() + rows[0])
        assert runs <= 2
    again = AudioAugment(time_masks=2, time_width=5, freq_masks=1, freq_width=4).nodes(block, gen(0))
    assert torch.equal(out.data["mel"], again.data["mel"])


def test_word_dropout_rate_and_structure():
    token = torch.randint(2, 100, (20000,))
    block = NodeBlock("word", torch.tensor([20000]), {"token": token, "pos": torch.arange(20000)})
    out = TextAugment(word_dropout=0.25).nodes(block, gen(0))
    dropped = (out.data["token"] == 1).float().mean()
    assert abs(float(dropped) - 0.25) < 0.02
    kept = out.data["token"] != 1
    assert torch.equal(out.data["token"][kept], token[kept]) and torch.equal(out.data["pos"], block.data["pos"])


def test_from_config_checks_keys_and_ranges():
    aug = Augmentations.from_config({"image": {"rotate": 10}, "text": {"word_dropout": 0.1}, "audio": None})
    assert sorted(aug) == ["image", "text"] and aug["image"].rotate == 10
    assert Augmentations.from_config({}) is None and Augmentations.from_config(None) is None
    with pytest.raises(ValueError, match=r"augment.image: unknown keys \['rotation'\]"):
        Augmentations.from_config({"image": {"rotation": 10}})
    with pytest.raises(ValueError, match="text.word_dropout=1.5 must be in"):
        Augmentations.from_config({"text": {"word_dropout": 1.5}})
    with pytest.raises(KeyError, match="no augmentation for modality 'smell'"):
        Augmentations.from_config({"smell": {"x": 1}})


def _samples(n: int = 6) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    return [Sample(text=f"the digit is {i} seven", image=torch.rand(1, 8, 8, generator=g),
                   audio=0.1 * torch.randn(3000, generator=g), sample_rate=8000, label=i % 3, id=f"s{i}")
            for i in range(n)]


def test_batch_build_with_augmentation_is_deterministic_and_differs_from_plain():
    samples = _samples()
    builder = MultimodalGraphBuilder().fit(samples)
    aug = Augmentations(image=ImageAugment(rotate=15, shift=0.1), audio=AudioAugment(time_masks=1, freq_masks=1),
                        text=TextAugment(word_dropout=0.5))
    plain = builder.batch(samples)
    a = builder.batch(samples, augment=aug, generator=gen(5))
    b = builder.batch(samples, augment=aug, generator=gen(5))
    for nt in plain.ntypes:
        assert a.num_nodes(nt) == plain.num_nodes(nt)
        for k, v in a.nodes[nt].data.items():
            assert torch.equal(v, b.nodes[nt].data[k]), (nt, k)
    assert not torch.equal(a.nodes["patch"].data["pixels"], plain.nodes["patch"].data["pixels"])
    assert not torch.equal(a.nodes["frame"].data["mel"], plain.nodes["frame"].data["mel"])
    assert (a.nodes["word"].data["token"] == 1).any()
    assert a.canonical_etypes == plain.canonical_etypes


AUG = ["trainer.augment.image.rotate=15", "trainer.augment.image.shift=0.1", "trainer.augment.audio.time_masks=1",
       "trainer.augment.text.word_dropout=0.2"]
TINY = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1", "trainer.modality_dropout=0"]


def test_training_with_augmentation_repeats_under_a_seed_and_differs_without(make_cfg, tmp_path):
    from graphmm.train import train

    a = train(make_cfg([*TINY, *AUG, f"output_dir={tmp_path / 'a'}"]))
    b = train(make_cfg([*TINY, *AUG, f"output_dir={tmp_path / 'b'}"]))
    plain = train(make_cfg([*TINY, f"output_dir={tmp_path / 'c'}"]))
    assert a["val/loss"] == b["val/loss"] and a["test/acc"] == b["test/acc"]
    history = [(tmp_path / r / "history.csv").read_text().splitlines()[1] for r in "abc"]
    assert history[0] == history[1] and history[0] != history[2]  # the training loss of epoch 0 moved


def test_training_batches_are_augmented_and_evaluation_batches_are_not(make_cfg):
    from pathlib import Path

    from graphmm.ddp import DistContext
    from graphmm.train import build_engine, prepare_data

    cfg = make_cfg([*TINY, *AUG])
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg, out)
    engine = build_engine(cfg, data, out, torch.device("cpu"), DistContext())
    train_loader = engine.loaders["train"]
    train_loader.sampler.set_epoch(0, 0)
    g, _ = next(iter(train_loader))
    idx = [i for _, i in list(iter(train_loader.sampler))[: train_loader.batch_size]]
    plain = data.builder.batch([data.splits["train"][i] for i in idx])
    assert (g.nodes["word"].data["token"] == 1).float().mean() > (plain.nodes["word"].data["token"] == 1).float().mean()
    assert not torch.equal(g.nodes["patch"].data["pixels"], plain.nodes["patch"].data["pixels"])
    val = engine.loaders["val"]
    gv, _ = next(iter(val))
    ref = data.builder.batch(data.splits["val"][: val.batch_size])
    assert torch.equal(gv.nodes["patch"].data["pixels"], ref.nodes["patch"].data["pixels"])
    assert torch.equal(gv.nodes["word"].data["token"], ref.nodes["word"].data["token"])


def test_bad_augmentation_settings_fail_before_the_run(make_cfg):
    from graphmm.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=r"trainer.augment: text.word_dropout=1.5 must be in \[0.0, 1.0\]"):
        validate_config(make_cfg(["trainer.augment.text.word_dropout=1.5"]))
