r"""``digits``: the embedded default dataset, a handwritten digit in three modalities.

Every example is one of the 1,797 real 8x8 handwritten digits bundled with
scikit-learn, paired with

- **audio**: the digit's DTMF telephone tone pair (low row tone + high column tone),
  with random duration, level, leading silence, additive white noise and, sometimes,
  one of the two tones missing;
- **text**: a short sentence that names the digit for a fraction of the samples and is
  label-free filler otherwise.

The defaults are calibrated so that no modality is enough on its own but all of them
together are: logistic regression on simple features (pixels, time-averaged
log-spectrum, bag-of-words) reaches a test accuracy of about 0.84 (image), 0.83
(audio), 0.36 (text) and 0.98 (all three concatenated), averaged over five seeds.

A dropped tone is what makes audio ambiguous in a structured way: with only the
:math:`f_{\text{high}} = 1336` Hz tone left, the digit is one of 2, 5, 8 or 0, and the
image has to decide between them.

Nothing is downloaded and nothing is written to disk; the same :class:`DigitsConfig`
always produces exactly the same samples and split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from graphmm.data.sample import MODALITIES, Sample

__all__ = ["DIGIT_WORDS", "DTMF_FREQS", "DigitsConfig", "load_digits", "merge_config"]

T = TypeVar("T")

#: English word for each digit, indexed by the digit.
DIGIT_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)

#: DTMF (low, high) tone frequencies in Hz for each digit key.
DTMF_FREQS: dict[int, tuple[float, float]] = {
    1: (697.0, 1209.0), 2: (697.0, 1336.0), 3: (697.0, 1477.0),
    4: (770.0, 1209.0), 5: (770.0, 1336.0), 6: (770.0, 1477.0),
    7: (852.0, 1209.0), 8: (852.0, 1336.0), 9: (852.0, 1477.0),
    0: (941.0, 1336.0),
}

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Sentences that name the digit. "{digit}" is the word; "a {digit}" becomes "an eight".
_INFORMATIVE_TEMPLATES: tuple[str, ...] = (
    "the number is {digit}",
    "i wrote a {digit} here",
    "this looks like a {digit}",
    "it is the digit {digit}",
    "a handwritten {digit}",
    "my answer is {digit}",
)
# Label-free sentences sharing most of the vocabulary above, so that only the digit
# word itself carries information. "{filler}" is replaced by a random word.
_NEUTRAL_TEMPLATES: tuple[str, ...] = (
    "the number is hidden",
    "i wrote a {filler} here",
    "this looks like a {filler}",
    "it is the {filler} again",
    "a handwritten {filler}",
    "my answer is unclear",
    "hard to read this {filler}",
    "see the picture",
)
# No digit words ("one", "two", ...) may appear here.
_FILLER_WORDS: tuple[str, ...] = (
    "scribble", "mark", "shape", "sketch", "drawing",
    "note", "symbol", "stroke", "figure", "squiggle",
)

# Independent random streams, so that changing one modality's knobs leaves the split
# and the other modalities untouched.
_STREAM = {"split": 0, "presence": 1, "text": 2, "image": 3, "audio": 4}

_FADE_S = 0.005  # linear fade in/out so tone edges do not click (spectral splatter)


@dataclass
class DigitsConfig:
    """Settings of the ``digits`` dataset; the defaults are the calibrated benchmark.

    Args:
        modalities (tuple[str, ...]): Modalities generated at all, a subset of
            ``("text", "image", "audio")``; e.g. ``("image",)`` for an image-only
            ablation. Default: all three.
        text_presence (float): Probability that a sample has text. Default: ``1.0``.
        image_presence (float): Probability that a sample has an image. Default: ``1.0``.
        audio_presence (float): Probability that a sample has audio. Default: ``1.0``.
            A sample that draws no modality at all gets one of the enabled ones.
        text_informative (float): Fraction of texts that name the digit; the rest are
            label-free filler. Default: ``0.3``.
        image_noise_std (float): Std of additive Gaussian pixel noise (pixels are in
            ``[0, 1]`` and clipped back). Default: ``0.15``.
        image_occlusion_prob (float): Probability that a square block of the image is
            blanked out. Default: ``0.3``.
        image_occlusion_size (int): Side of the blanked square, in pixels. Default: ``4``.
        audio_snr_db (float, optional): Signal-to-noise ratio of the additive white noise
            in dB; ``None`` for noiseless audio. Default: ``5.0``.
        audio_drop_tone (float): Probability that one of the two DTMF tones (chosen at
            random) is missing. Default: ``0.25``.
        audio_duration (tuple[float, float]): Range of the tone duration in seconds.
            Default: ``(0.12, 0.30)``.
        audio_offset (tuple[float, float]): Range of the leading silence in seconds.
            Default: ``(0.03, 0.08)``.
        audio_amplitude (tuple[float, float]): Range of the tone amplitude.
            Default: ``(0.2, 0.6)``.
        sample_rate (int): Audio sample rate in Hz. Default: ``8000``.
        split (tuple[float, float, float]): Train/val/test fractions (stratified by
            label). Default: ``(0.7, 0.15, 0.15)``.
        seed (int): Seed of every random draw. Default: ``0``.
    """

    modalities: tuple[str, ...] = MODALITIES
    text_presence: float = 1.0
    image_presence: float = 1.0
    audio_presence: float = 1.0
    text_informative: float = 0.3
    image_noise_std: float = 0.15
    image_occlusion_prob: float = 0.3
    image_occlusion_size: int = 4
    audio_snr_db: float | None = 5.0
    audio_drop_tone: float = 0.25
    audio_duration: tuple[float, float] = (0.12, 0.30)
    audio_offset: tuple[float, float] = (0.03, 0.08)
    audio_amplitude: tuple[float, float] = (0.2, 0.6)
    sample_rate: int = 8000
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


def load_digits(
    config: DigitsConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, list[Sample]]:
    """Generate the ``digits`` dataset and its fixed stratified split.

    Args:
        config (DigitsConfig or Mapping, optional): Settings; a mapping is read as
            ``DigitsConfig(**config)``. Default: ``DigitsConfig()``.
        **overrides: Field values replacing those of ``config``, e.g.
            ``load_digits(modalities=("image",))``.

    Returns:
        dict[str, list[Sample]]: ``{"train", "val", "test"}`` lists of samples, each in
        increasing order of the underlying scikit-learn image index. Every sample has
        ``label`` (0-9), ``target`` (the digit word, e.g. ``"seven"``) and
        ``id`` ``"digits/<split>/<position>"``.

    Shapes:
        - image: :math:`(1, 8, 8)` float32 in ``[0, 1]``
        - audio: :math:`(T,)` float32, :math:`T = \\text{sample\\_rate} \\cdot
          (\\text{offset} + \\text{duration})`, peak in ``[-1, 1]``

    Raises:
        ValueError: If a setting is out of range.
        TypeError: If an override names no field of :class:`DigitsConfig`.

    Example:
        >>> splits = load_digits()
        >>> {k: len(v) for k, v in splits.items()}
        {'train': 1258, 'val': 269, 'test': 270}
    """
    cfg = _resolve_config(config, overrides)

    images, labels = _sklearn_digits()
    n = len(labels)

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, _STREAM[stream]])

    split_idx = _stratified_split(labels, cfg.split, rng("split"))
    present = _draw_presence(n, cfg, rng("presence"))

    texts = _make_text(labels, cfg, rng("text")) if "text" in cfg.modalities else None
    imgs = _make_images(images, cfg, rng("image")) if "image" in cfg.modalities else None
    audio, lengths = (
        _make_audio(labels, cfg, rng("audio")) if "audio" in cfg.modalities else (None, None)
    )

    out: dict[str, list[Sample]] = {}
    for name, idx in zip(SPLITS, split_idx):
        samples = []
        for pos, i in enumerate(idx.tolist()):
            has = present[i]
            samples.append(
                Sample(
                    text=texts[i] if has[0] else None,
                    # Clone each row: a view would pickle the whole array into workers.
                    image=torch.from_numpy(imgs[i].copy()) if has[1] else None,
                    audio=torch.from_numpy(audio[i, : lengths[i]].copy()) if has[2] else None,
                    sample_rate=cfg.sample_rate if has[2] else None,
                    label=int(labels[i]),
                    target=DIGIT_WORDS[labels[i]],
                    id=f"digits/{name}/{pos}",
                )
            )
        out[name] = samples
    return out


def merge_config(cls: type[T], config: T | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> T:
    """``config`` (an instance of dataclass ``cls``, a mapping of its fields, or ``None``
    for its defaults) with ``overrides`` applied; ``TypeError`` naming unknown fields."""
    if config is None:
        config = cls()
    elif isinstance(config, Mapping):
        config = cls(**dict(config))
    elif not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__} or a mapping, got {type(config).__name__}.")
    valid = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"Unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(valid)}.")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def _resolve_config(
    config: DigitsConfig | Mapping[str, Any] | None, overrides: dict[str, Any]
) -> DigitsConfig:
    cfg = merge_config(DigitsConfig, config, overrides)
    # Hydra hands sequences over as lists; normalise so the config stays hashable.
    cfg.modalities = tuple(cfg.modalities)
    cfg.split = tuple(float(x) for x in cfg.split)
    cfg.audio_duration = tuple(float(x) for x in cfg.audio_duration)
    cfg.audio_offset = tuple(float(x) for x in cfg.audio_offset)
    cfg.audio_amplitude = tuple(float(x) for x in cfg.audio_amplitude)
    _check_config(cfg)
    return cfg


def _check_config(cfg: DigitsConfig) -> None:
    bad = [m for m in cfg.modalities if m not in MODALITIES]
    if bad or not cfg.modalities:
        raise ValueError(
            f"modalities must be a non-empty subset of {MODALITIES}, got {cfg.modalities}."
        )
    for name in ("text_presence", "image_presence", "audio_presence", "text_informative",
                 "image_occlusion_prob", "audio_drop_tone"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} is a probability and must lie in [0, 1], got {v}.")
    if all(getattr(cfg, f"{m}_presence") == 0.0 for m in cfg.modalities):
        raise ValueError(
            f"Every enabled modality {cfg.modalities} has presence 0; raise one presence "
            "probability or enable another modality."
        )
    if cfg.image_noise_std < 0:
        raise ValueError(f"image_noise_std must be >= 0, got {cfg.image_noise_std}.")
    if not 0 <= cfg.image_occlusion_size <= 8:
        raise ValueError(
            "image_occlusion_size must be in [0, 8] (images are 8x8), "
            f"got {cfg.image_occlusion_size}."
        )
    if len(cfg.split) != 3 or min(cfg.split) < 0 or not np.isclose(sum(cfg.split), 1.0):
        raise ValueError(
            "split must be three non-negative train/val/test fractions summing to 1, "
            f"got {cfg.split}."
        )
    highest = max(f for pair in DTMF_FREQS.values() for f in pair)
    if cfg.sample_rate <= 2 * highest:
        raise ValueError(
            f"sample_rate={cfg.sample_rate} cannot represent the {highest:.0f} Hz DTMF tone; "
            f"use more than {2 * highest:.0f} Hz (e.g. 8000)."
        )
    for name in ("audio_duration", "audio_offset", "audio_amplitude"):
        lo, hi = getattr(cfg, name)
        if not 0 <= lo <= hi:
            raise ValueError(
                f"{name} must be a (low, high) range with 0 <= low <= high, got {(lo, hi)}."
            )
    if cfg.audio_duration[0] < 2 * _FADE_S:
        raise ValueError(
            f"audio_duration must start at {2 * _FADE_S} s or more, got {cfg.audio_duration}."
        )
    if cfg.audio_amplitude[0] <= 0:
        raise ValueError(f"audio_amplitude must be positive, got {cfg.audio_amplitude}.")


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, 8, 8) float32 in [0, 1] and labels (N,) int64."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return images, bunch.target.astype(np.int64)


def _stratified_split(
    labels: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Per class, shuffle and cut by ``fractions``; return sorted index arrays."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        n_val = min(n_val, len(idx) - n_train)
        for k, chunk in enumerate(np.split(idx, [n_train, n_train + n_val])):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _draw_presence(n: int, cfg: DigitsConfig, rng: np.random.Generator) -> np.ndarray:
    """Bool (N, 3) mask of present modalities in ``MODALITIES`` order."""
    probs = np.array(
        [getattr(cfg, f"{m}_presence") if m in cfg.modalities else 0.0 for m in MODALITIES]
    )
    # Draw for all three modalities, enabled or not, so one knob does not shift the rest.
    present = rng.random((n, 3)) < probs
    fallback = rng.choice(3, size=n, p=probs / probs.sum())
    empty = ~present.any(axis=1)
    present[empty, fallback[empty]] = True
    return present


def _make_text(labels: np.ndarray, cfg: DigitsConfig, rng: np.random.Generator) -> list[str]:
    """One sentence per sample; only the informative ones depend on the label."""
    n = len(labels)
    informative = rng.random(n) < cfg.text_informative
    info_t = rng.integers(len(_INFORMATIVE_TEMPLATES), size=n)
    neutral_t = rng.integers(len(_NEUTRAL_TEMPLATES), size=n)
    filler = rng.integers(len(_FILLER_WORDS), size=n)
    texts = []
    for i in range(n):
        if informative[i]:
            word = DIGIT_WORDS[labels[i]]
            s = _INFORMATIVE_TEMPLATES[info_t[i]]
            if word[0] in "aeiou":
                s = s.replace("a {digit}", "an {digit}")
            texts.append(s.format(digit=word))
        else:
            texts.append(_NEUTRAL_TEMPLATES[neutral_t[i]].format(filler=_FILLER_WORDS[filler[i]]))
    return texts


def _make_images(images: np.ndarray, cfg: DigitsConfig, rng: np.random.Generator) -> np.ndarray:
    """Occlude and add noise; return float32 (N, 1, 8, 8) in [0, 1]."""
    n, h, w = images.shape
    k = cfg.image_occlusion_size
    occluded = rng.random(n) < cfg.image_occlusion_prob
    r0 = rng.integers(0, h - k + 1, size=n)
    c0 = rng.integers(0, w - k + 1, size=n)
    noise = rng.standard_normal((n, h, w), dtype=np.float32)
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    block = (
        (rows >= r0[:, None, None]) & (rows < r0[:, None, None] + k)
        & (cols >= c0[:, None, None]) & (cols < c0[:, None, None] + k)
        & occluded[:, None, None]
    )
    out = np.where(block, 0.0, images) + cfg.image_noise_std * noise
    return np.clip(out, 0.0, 1.0).astype(np.float32)[:, None]


def _make_audio(
    labels: np.ndarray, cfg: DigitsConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise all DTMF clips at once in a padded (N, T_max) array.

    Returns:
        tuple[np.ndarray, np.ndarray]: float32 waveforms :math:`(N, T_{max})` (zero past
        each clip's end) and int64 clip lengths :math:`(N,)`.
    """
    n, sr = len(labels), cfg.sample_rate
    freqs = np.array([DTMF_FREQS[int(d)] for d in labels])  # (N, 2) low, high
    duration = rng.uniform(*cfg.audio_duration, size=n)
    offset = rng.uniform(*cfg.audio_offset, size=n)
    amp = rng.uniform(*cfg.audio_amplitude, size=n)
    # "Twist": real keypads send the two tones at slightly different levels.
    twist = 10.0 ** (rng.uniform(-3.0, 3.0, size=n) / 20.0)
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 2))
    drop = rng.random(n) < cfg.audio_drop_tone
    drop_which = rng.integers(0, 2, size=n)

    start = np.round(offset * sr).astype(np.int64)
    stop = start + np.round(duration * sr).astype(np.int64)
    t_max = int(stop.max())
    noise = rng.standard_normal((n, t_max), dtype=np.float32)

    gains = np.stack([amp, amp * twist], axis=1)  # (N, 2)
    gains[drop, drop_which[drop]] = 0.0
    # float32 keeps the phase error below 1e-3 rad for clips of a few seconds and
    # halves the cost of the (N, T) sines.
    f32 = np.float32
    t = np.arange(t_max, dtype=f32)[None, :]  # (1, T)
    fade = f32(_FADE_S * sr)
    env = np.clip(np.minimum(t - start[:, None], stop[:, None] - t) / fade, 0.0, 1.0)
    omega = (2 * np.pi * freqs / sr).astype(f32)  # (N, 2) radians per sample
    wave = np.zeros((n, t_max), dtype=f32)
    for j in range(2):  # two tones, each vectorised over all samples
        tone = np.sin(omega[:, j, None] * t + phase[:, j, None].astype(f32))
        wave += gains[:, j, None].astype(f32) * tone
    wave *= env

    if cfg.audio_snr_db is not None:
        # Power of a sum of sinusoids at distinct frequencies is sum(a^2) / 2.
        signal_rms = np.sqrt((gains**2).sum(axis=1) / 2.0)
        noise_std = signal_rms / 10.0 ** (cfg.audio_snr_db / 20.0)
        wave += noise_std[:, None].astype(f32) * noise
    wave *= t < stop[:, None]
    # Rescale loud clips so the peak stays within [-1, 1] without clipping artefacts.
    peak = np.abs(wave).max(axis=1)
    wave /= np.maximum(peak, 1.0)[:, None].astype(f32)
    return wave, stop
