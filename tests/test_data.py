"""Tests for graphmm.data: Sample, SampleDataset and the embedded digits dataset."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest
import torch

from graphmm.data import (
    DIGIT_WORDS,
    DTMF_FREQS,
    DigitsConfig,
    Sample,
    SampleDataset,
    load_digits,
)

N_DIGITS = 1797  # images bundled with scikit-learn
SPLITS = ("train", "val", "test")
WORD_RE = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r")\b")


def _all(splits: dict[str, list[Sample]]) -> list[Sample]:
    return [s for name in SPLITS for s in splits[name]]


@pytest.fixture(scope="module")
def default() -> dict[str, list[Sample]]:
    return load_digits()


@pytest.fixture(scope="module")
def clean() -> dict[str, list[Sample]]:
    """Noiseless audio with both tones, unoccluded noiseless images."""
    return load_digits(
        audio_snr_db=None, audio_drop_tone=0.0, image_noise_std=0.0, image_occlusion_prob=0.0
    )


# --------------------------------------------------------------------------- Sample


def test_sample_modalities_order_and_subset() -> None:
    img, wav = torch.zeros(1, 8, 8), torch.zeros(100)
    assert Sample().modalities == ()
    assert Sample(text="hi").modalities == ("text",)
    assert Sample(audio=wav, sample_rate=8000, text="hi").modalities == ("text", "audio")
    assert Sample(image=img, audio=wav, text="").modalities == ("text", "image", "audio")


def test_sample_replace_eq_repr() -> None:
    s = Sample(text="a seven", image=torch.rand(1, 8, 8), label=7, id="x/0")
    r = s.replace(image=None)
    assert r.image is None and s.image is not None  # original untouched
    assert r.modalities == ("text",) and r.label == 7 and r.id == "x/0"
    assert s == s.replace(image=s.image.clone())
    assert s != s.replace(image=s.image + 1e-3)
    assert s != s.replace(image=s.image.double())
    assert s != r
    text = repr(s.replace(audio=torch.zeros(2400), sample_rate=8000))
    assert "[1, 8, 8]" in text and "[2400]@8000Hz" in text and "tensor(" not in text
    with pytest.raises(TypeError):
        hash(s)


# --------------------------------------------------------------------------- SampleDataset


def test_sample_dataset_basics(default: dict[str, list[Sample]]) -> None:
    ds = SampleDataset(default["train"])
    assert len(ds) == len(default["train"])
    assert ds[3] is default["train"][3]
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),)
    assert ds.labels.tolist() == [s.label for s in default["train"]]
    assert ds.num_classes == 10
    assert ds.modalities == ("text", "image", "audio")
    assert SampleDataset([Sample(label=1)], num_classes=5).num_classes == 5


def test_sample_dataset_errors() -> None:
    ds = SampleDataset([Sample(text="a", label=0), Sample(text="b", id="nolabel")])
    with pytest.raises(ValueError, match="nolabel"):
        ds.labels
    with pytest.raises(TypeError, match="Sample"):
        SampleDataset([{"text": "a"}])  # type: ignore[list-item]


# --------------------------------------------------------------------------- digits: determinism


def test_same_config_same_samples(default: dict[str, list[Sample]]) -> None:
    again = load_digits(DigitsConfig())
    for name in SPLITS:
        assert [s.id for s in again[name]] == [s.id for s in default[name]]
        assert all(a == b for a, b in zip(again[name], default[name]))


def test_other_seed_differs(default: dict[str, list[Sample]]) -> None:
    other = load_digits(seed=1)
    assert [s.label for s in other["train"]] != [s.label for s in default["train"]]
    assert not torch.equal(other["test"][0].audio[:50], default["test"][0].audio[:50]) or (
        other["test"][0].label != default["test"][0].label
    )


def test_knob_leaves_other_streams_alone(default: dict[str, list[Sample]]) -> None:
    # Changing the image noise must not reshuffle the split or redraw audio/text.
    noisier = load_digits(image_noise_std=0.3)
    for a, b in zip(_all(noisier), _all(default)):
        assert a.id == b.id and a.label == b.label and a.text == b.text
        assert torch.equal(a.audio, b.audio)
    assert any(not torch.equal(a.image, b.image) for a, b in zip(_all(noisier), _all(default)))


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    load_digits(seed=3)
    assert time.perf_counter() - start < 5.0  # ~0.2 s typically; loose for slow CI


# --------------------------------------------------------------------------- digits: split


def test_split_sizes_ids_and_targets(default: dict[str, list[Sample]]) -> None:
    sizes = {k: len(v) for k, v in default.items()}
    assert set(sizes) == set(SPLITS)
    assert sum(sizes.values()) == N_DIGITS
    for name, frac in zip(SPLITS, (0.7, 0.15, 0.15)):
        assert abs(sizes[name] - frac * N_DIGITS) <= 10
        assert [s.id for s in default[name]] == [f"digits/{name}/{i}" for i in range(sizes[name])]
    for s in _all(default):
        assert isinstance(s.label, int) and 0 <= s.label <= 9
        assert s.target == DIGIT_WORDS[s.label]


def test_split_is_disjoint_and_covers_every_image(clean: dict[str, list[Sample]]) -> None:
    from sklearn.datasets import load_digits as sk_load

    bunch = sk_load()
    # With noise and occlusion off, images are exactly the scikit-learn pixels / 16; as
    # multisets, the three splits together must be the whole collection, each once.
    ours = Counter((s.label, s.image.numpy().tobytes()) for s in _all(clean))
    ref = Counter(
        (int(y), (x / 16.0).astype(np.float32)[None].tobytes())
        for x, y in zip(bunch.images, bunch.target)
    )
    assert ours == ref


def test_split_is_stratified(default: dict[str, list[Sample]]) -> None:
    total = Counter(s.label for s in _all(default))
    for name, frac in zip(SPLITS, (0.7, 0.15, 0.15)):
        counts = Counter(s.label for s in default[name])
        for c in range(10):
            assert abs(counts[c] - frac * total[c]) <= 1.0, (name, c)


def test_custom_split_fractions() -> None:
    d = load_digits(split=[0.5, 0.25, 0.25], modalities=["image"])  # lists, as Hydra passes
    assert abs(len(d["train"]) - N_DIGITS / 2) <= 10
    assert abs(len(d["val"]) - len(d["test"])) <= 10


# --------------------------------------------------------------------------- digits: modalities


def test_image_shape_and_range(default: dict[str, list[Sample]]) -> None:
    imgs = torch.stack([s.image for s in _all(default)])
    assert imgs.shape == (N_DIGITS, 1, 8, 8) and imgs.dtype == torch.float32
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    assert imgs.std() > 0.1
    # Each sample owns its storage (a shared view would pickle the whole array).
    s = default["train"][0].image
    assert s.untyped_storage().nbytes() == s.numel() * s.element_size()


def test_image_occlusion_blanks_a_block() -> None:
    d = load_digits(
        modalities=("image",), image_noise_std=0.0, image_occlusion_prob=1.0, image_occlusion_size=4
    )
    for s in d["val"]:
        zero = (s.image[0] == 0).float()
        # Some 4x4 window is entirely zero in every occluded image.
        windows = zero.unfold(0, 4, 1).unfold(1, 4, 1).sum(dim=(-1, -2))
        assert windows.max() == 16, s.id


def test_audio_dtype_range_and_duration(default: dict[str, list[Sample]]) -> None:
    cfg = DigitsConfig()
    lo = (cfg.audio_duration[0] + cfg.audio_offset[0]) * cfg.sample_rate
    hi = (cfg.audio_duration[1] + cfg.audio_offset[1]) * cfg.sample_rate
    lengths = []
    for s in _all(default):
        assert s.sample_rate == 8000
        assert s.audio.dtype == torch.float32 and s.audio.dim() == 1
        assert s.audio.abs().max() <= 1.0
        assert s.audio.abs().max() > 0.05
        lengths.append(s.audio.numel())
    assert lo - 2 <= min(lengths) and max(lengths) <= hi + 2
    assert len(set(lengths)) > 100  # durations are random


def test_audio_starts_with_silence(clean: dict[str, list[Sample]]) -> None:
    lead = int(DigitsConfig().audio_offset[0] * 8000)
    for s in clean["val"]:
        assert s.audio[:lead].abs().max() == 0.0, s.id
        assert s.audio[lead:].abs().max() > 0.1, s.id


def test_audio_sample_rate_knob() -> None:
    d = load_digits(modalities=("audio",), sample_rate=16000)
    s = d["test"][0]
    assert s.sample_rate == 16000
    assert s.audio.numel() >= 0.15 * 16000


def _peak_hz(wave: torch.Tensor, sr: int, band: tuple[float, float]) -> float:
    n = 1 << 15  # zero-pad: 0.24 Hz bins at 8 kHz
    mag = torch.fft.rfft(wave.double(), n=n).abs()
    freqs = torch.fft.rfftfreq(n, d=1.0 / sr)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[inside][mag[inside].argmax()])


def test_dtmf_frequencies_match_table(clean: dict[str, list[Sample]]) -> None:
    seen = set()
    for s in clean["test"]:
        digit = s.label
        if digit in seen:
            continue
        seen.add(digit)
        low, high = DTMF_FREQS[digit]
        assert abs(_peak_hz(s.audio, 8000, (600, 1100)) - low) < 5, s.id
        assert abs(_peak_hz(s.audio, 8000, (1100, 1600)) - high) < 5, s.id
        # And those two are the strongest components overall.
        assert abs(_peak_hz(s.audio, 8000, (0, 4000)) - low) < 5 or abs(
            _peak_hz(s.audio, 8000, (0, 4000)) - high
        ) < 5
    assert seen == set(range(10))


def test_dropped_tone_leaves_one_tone() -> None:
    d = load_digits(modalities=("audio",), audio_snr_db=None, audio_drop_tone=1.0)
    for s in d["val"][:40]:
        spec = torch.fft.rfft(s.audio.double(), n=1 << 14).abs()
        freqs = torch.fft.rfftfreq(1 << 14, d=1 / 8000)

        def level(f: float) -> float:
            return float(spec[(freqs - f).abs() < 10].max())

        low, high = DTMF_FREQS[s.label]
        a, b = level(low), level(high)
        assert max(a, b) > 20 * min(a, b), s.id


def test_snr_knob_controls_noise() -> None:
    def silence_rms(snr: float) -> float:
        d = load_digits(modalities=("audio",), audio_snr_db=snr)
        return float(torch.stack([s.audio[:200].pow(2).mean() for s in d["val"]]).mean().sqrt())

    assert silence_rms(0.0) > 5 * silence_rms(20.0) > 0


def test_text_informative_fraction(default: dict[str, list[Sample]]) -> None:
    samples = _all(default)
    named = [WORD_RE.findall(s.text) for s in samples]
    informative = [w for w in named if w]
    frac = len(informative) / len(samples)
    assert abs(frac - 0.3) < 0.05
    for s, words in zip(samples, named):
        # A text names either nothing or exactly the right digit.
        assert words in ([], [DIGIT_WORDS[s.label]]), (s.id, s.text)
    assert len({s.text for s in samples if not WORD_RE.search(s.text)}) >= 10  # varied filler


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_text_informative_extremes(p: float) -> None:
    d = load_digits(modalities=("text",), text_informative=p)
    hits = [bool(WORD_RE.search(s.text)) for s in _all(d)]
    assert all(hits) if p == 1.0 else not any(hits)


def test_neutral_text_independent_of_label() -> None:
    d = load_digits(modalities=("text",), text_informative=0.0)
    by_label: dict[int, Counter] = {}
    for s in _all(d):
        by_label.setdefault(s.label, Counter())[s.text] += 1
    # Every label sees (almost) the same set of filler sentences.
    common = set.intersection(*(set(c) for c in by_label.values()))
    assert len(common) >= 10


def test_modalities_knob_image_only() -> None:
    d = load_digits(modalities=("image",))
    for s in _all(d):
        assert s.modalities == ("image",)
        assert s.audio is None and s.text is None and s.sample_rate is None
        assert s.label is not None


def test_presence_probability() -> None:
    d = load_digits(text_presence=0.5, image_presence=0.8, audio_presence=0.3)
    samples = _all(d)
    for m, p in (("text", 0.5), ("image", 0.8), ("audio", 0.3)):
        frac = np.mean([m in s.modalities for s in samples])
        # Plus a little from samples that drew nothing and got a fallback modality.
        assert p - 0.05 < frac < p + 0.07, (m, frac)
    assert all(s.modalities for s in samples)
    assert all((s.sample_rate is None) == (s.audio is None) for s in samples)


def test_presence_never_leaves_a_sample_empty() -> None:
    d = load_digits(modalities=("text", "audio"), text_presence=0.1, audio_presence=0.1)
    assert all(s.modalities and s.image is None for s in _all(d))


# --------------------------------------------------------------------------- digits: config


def test_config_from_mapping_and_overrides() -> None:
    a = load_digits({"modalities": ["text"], "seed": 2})
    b = load_digits(DigitsConfig(seed=2), modalities=("text",))
    assert [s.text for s in a["train"]] == [s.text for s in b["train"]]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"modalities": ("video",)}, ValueError, "subset"),
        ({"modalities": ()}, ValueError, "non-empty"),
        ({"text_informative": 1.5}, ValueError, "text_informative"),
        ({"split": (0.5, 0.2, 0.2)}, ValueError, "split"),
        ({"sample_rate": 2000}, ValueError, "8000"),
        ({"modalities": ("image",), "image_presence": 0.0}, ValueError, "presence"),
        ({"image_noise": 0.1}, TypeError, "image_noise_std"),
    ],
)
def test_config_errors(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        load_digits(**kwargs)


def test_dtmf_table_is_the_standard_keypad() -> None:
    rows = {697.0: (1, 2, 3), 770.0: (4, 5, 6), 852.0: (7, 8, 9), 941.0: (0,)}
    cols = {1209.0: (1, 4, 7), 1336.0: (2, 5, 8, 0), 1477.0: (3, 6, 9)}
    expected = {
        d: (r, c) for r, rd in rows.items() for c, cd in cols.items() for d in set(rd) & set(cd)
    }
    assert DTMF_FREQS == expected
    assert DIGIT_WORDS[7] == "seven" and len(DIGIT_WORDS) == 10
