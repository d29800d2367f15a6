r"""Digit sequences: a strip of handwritten digits, their sounds, and the words to say.

Each sample holds 1 to ``max_digits`` digits. Its **image** is the digits' images side
by side (a ``C x H x nW`` strip), its **audio** the digits' sounds one after another,
each after a random gap, and its **target** the digit words, e.g. ``"three one four"``.
A generation model reads the strip aloud (image), transcribes the sounds (audio), or
both.

Two sources, one assembly:

* :func:`load_digits_seq` (``experiment=digits_seq``) is embedded and needs no files:
  scikit-learn's 8x8 handwritten digits and DTMF telephone tones, as in
  :mod:`graphmm.data.digits`.
* :func:`load_avdigits_seq` (``experiment=avdigits_seq``) uses real data in the
  ``../shared/data`` layout: MNIST images (``mnist/train.npz``) and Free Spoken Digit
  recordings (``fsdd/recordings``).

In both, the digit images and recordings of the val and test splits are never seen
in training: the pools of single digits are split first, and each split's sequences
draw only from their own pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphmm.data.digits import (
    DIGIT_WORDS,
    DigitsConfig,
    _make_audio,
    _sklearn_digits,
    _stratified_split,
    merge_config,
)
from graphmm.data.sample import Sample

__all__ = ["DigitSeqConfig", "load_digits_seq", "load_avdigits_seq", "assemble_sequences"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_STREAM = {"pool": 0, "seq": 1, "image": 2, "audio": 3, "gap": 4, "presence": 5}


@dataclass
class DigitSeqConfig:
    """Settings of the embedded digit-sequence dataset.

    Args:
        modalities (tuple[str, ...]): ``("image", "audio")`` or one of them.
            Default: both.
        min_digits (int): Fewest digits in a sample. Default: ``1``.
        max_digits (int): Most digits in a sample. Default: ``4``.
        num_samples (tuple[int, int, int]): Sequences in train/val/test.
            Default: ``(3000, 300, 500)``.
        image_presence (float): Probability that a sample has its image (with two
            modalities; a sample always keeps one). Default: ``1.0``.
        audio_presence (float): Likewise for audio. Default: ``1.0``.
        image_noise_std (float): Std of Gaussian pixel noise (pixels in ``[0, 1]``).
            Default: ``0.1``.
        audio_snr_db (float, optional): SNR of white noise per tone, in dB; ``None``
            for none. Default: ``10.0``.
        audio_drop_tone (float): Probability that a digit's tone pair lacks one tone.
            Default: ``0.0``.
        audio_duration (tuple[float, float]): Tone duration range, seconds.
            Default: ``(0.08, 0.2)``.
        audio_gap (tuple[float, float]): Silence before each digit, seconds.
            Default: ``(0.03, 0.12)``.
        sample_rate (int): Audio sample rate. Default: ``8000``.
        digit_split (tuple[float, float, float]): How the single digit images are
            divided among train/val/test (stratified). Default: ``(0.7, 0.15, 0.15)``.
        seed (int): Seed of every draw. Default: ``0``.
    """

    modalities: tuple[str, ...] = ("image", "audio")
    min_digits: int = 1
    max_digits: int = 4
    num_samples: tuple[int, int, int] = (3000, 300, 500)
    image_presence: float = 1.0
    audio_presence: float = 1.0
    image_noise_std: float = 0.1
    audio_snr_db: float | None = 10.0
    audio_drop_tone: float = 0.0
    audio_duration: tuple[float, float] = (0.08, 0.2)
    audio_gap: tuple[float, float] = (0.03, 0.12)
    sample_rate: int = 8000
    digit_split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


def _resolve(config: DigitSeqConfig | Mapping[str, Any] | None, overrides: dict[str, Any]) -> DigitSeqConfig:
    cfg = merge_config(DigitSeqConfig, config, overrides)
    for name in ("modalities", "num_samples", "audio_duration", "audio_gap", "digit_split"):
        setattr(cfg, name, tuple(getattr(cfg, name)))
    bad = [m for m in cfg.modalities if m not in ("image", "audio")]
    if bad or not cfg.modalities:
        raise ValueError(f"modalities must be a non-empty subset of ('image', 'audio'), got {cfg.modalities}")
    if not 1 <= cfg.min_digits <= cfg.max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {cfg.min_digits}, {cfg.max_digits}")
    if len(cfg.num_samples) != 3 or min(cfg.num_samples) < 1:
        raise ValueError(f"num_samples must be three positive train/val/test counts, got {cfg.num_samples}")
    for name in ("image_presence", "audio_presence", "audio_drop_tone"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {getattr(cfg, name)}")
    return cfg


def _draw_sequences(
    n: int, lo: int, hi: int, pool_labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lengths ``(n,)``, digits ``(L,)`` and pool indices ``(L,)`` of ``n`` sequences
    (``L`` = total digits); each digit is drawn uniformly, then one pool item of it."""
    lengths, digits = _draw_digits(n, lo, hi, rng)
    return lengths, digits, _pick(pool_labels, digits, rng)


def _draw_digits(n: int, lo: int, hi: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lengths ``(n,)`` in ``[lo, hi]`` and the digits ``(L,)`` of ``n`` sequences, one
    draw of each from ``rng`` (both sources of sequences use this)."""
    lengths = rng.integers(lo, hi + 1, size=n)
    digits = rng.integers(0, 10, size=int(lengths.sum()))
    return lengths, digits


def assemble_sequences(
    name: str,
    lengths: np.ndarray,
    digits: np.ndarray,
    images: torch.Tensor | None,
    clips: Sequence[torch.Tensor] | None,
    sample_rate: int | None,
    presence: np.ndarray | None = None,
    prefix: str = "digits_seq",
) -> list[Sample]:
    r"""Samples from flat per-digit pieces: image strips, concatenated clips, words.

    Args:
        name: Split name, used in the ids ``"<prefix>/<name>/<i>"``.
        lengths: Digits per sample, int ``(n,)``.
        digits: Every sample's digits one after another, int ``(L,)``, :math:`L = \sum`
            ``lengths``.
        images: Digit images ``(L, C, H, W)`` in ``[0, 1]`` or ``None``.
        clips: ``L`` mono waveforms (each with its leading gap) or ``None``.
        sample_rate: Rate of ``clips``.
        presence: Bool ``(n, 2)``: which samples keep (image, audio). Default: all.
        prefix: Id prefix.

    Returns:
        list[Sample]: Sample :math:`i` has ``image`` ``(C, H, k_i W)``, ``audio``
        (the :math:`k_i` clips joined), ``target`` the words, e.g. ``"three one four"``.
    """
    ends = np.cumsum(lengths)
    starts = ends - lengths
    strips = list(torch.split(images, lengths.tolist())) if images is not None else None
    out = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        keep_img = images is not None and (presence is None or bool(presence[i, 0]))
        keep_aud = clips is not None and (presence is None or bool(presence[i, 1]))
        image = torch.cat(list(strips[i]), dim=-1).contiguous() if keep_img else None  # type: ignore[index]
        audio = torch.cat(list(clips[a:b])) if keep_aud else None  # type: ignore[index]
        out.append(
            Sample(
                image=image,
                audio=audio,
                sample_rate=sample_rate if keep_aud else None,
                target=" ".join(DIGIT_WORDS[int(d)] for d in digits[a:b]),
                id=f"{prefix}/{name}/{i}",
            )
        )
    return out


def _presence(n: int, cfg: DigitSeqConfig, rng: np.random.Generator) -> np.ndarray:
    probs = np.array([cfg.image_presence, cfg.audio_presence])
    present = rng.random((n, 2)) < probs
    fallback = rng.integers(0, 2, size=n)
    empty = ~present.any(1)
    present[empty, fallback[empty]] = True
    return present


def load_digits_seq(
    config: DigitSeqConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, list[Sample]]:
    """Generate the embedded digit-sequence dataset (no files needed).

    Images are scikit-learn's 8x8 digits (plus Gaussian noise), sounds the digits'
    DTMF tone pairs (random duration, level and gap, white noise), as in
    :mod:`graphmm.data.digits`.

    Args:
        config: Settings; a mapping is read as ``DigitSeqConfig(**config)``.
        **overrides: Field values replacing those of ``config``.

    Returns:
        dict[str, list[Sample]]: ``{"train", "val", "test"}``; each sample has
        ``target`` and no ``label``.

    Shapes:
        - image: :math:`(1, 8, 8k)` for :math:`k` digits.
        - audio: :math:`(T,)`, the :math:`k` gaps and tones.

    Example:
        >>> splits = load_digits_seq(num_samples=(4, 2, 2), seed=1)
        >>> s = splits["train"][0]
        >>> s.target, tuple(s.image.shape)
        ('six five five', (1, 8, 24))
    """
    cfg = _resolve(config, overrides)

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, _STREAM[stream]])

    images, labels = _sklearn_digits()
    pools = _stratified_split(labels, cfg.digit_split, rng("pool"))
    audio_cfg = DigitsConfig(
        audio_snr_db=cfg.audio_snr_db, audio_drop_tone=cfg.audio_drop_tone, audio_duration=cfg.audio_duration,
        audio_offset=cfg.audio_gap, sample_rate=cfg.sample_rate,
    )
    seq_rng, img_rng, aud_rng, pres_rng = rng("seq"), rng("image"), rng("audio"), rng("presence")
    out: dict[str, list[Sample]] = {}
    for k, name in enumerate(SPLITS):
        pool = pools[k]
        lengths, digits, idx = _draw_sequences(cfg.num_samples[k], cfg.min_digits, cfg.max_digits,
                                               labels[pool], seq_rng)
        imgs = clips = None
        if "image" in cfg.modalities:
            x = images[pool[idx]] + cfg.image_noise_std * img_rng.standard_normal((len(idx), 8, 8))
            imgs = torch.from_numpy(np.clip(x, 0.0, 1.0).astype(np.float32))[:, None]
        if "audio" in cfg.modalities:
            wave, stop = _make_audio(digits, audio_cfg, aud_rng)
            w = torch.from_numpy(wave)
            clips = [w[j, : int(stop[j])] for j in range(len(digits))]
        presence = _presence(len(lengths), cfg, pres_rng) if len(cfg.modalities) == 2 else None
        out[name] = assemble_sequences(name, lengths, digits, imgs, clips, cfg.sample_rate, presence)
    return out


def load_avdigits_seq(
    root: str,
    min_digits: int = 1,
    max_digits: int = 4,
    num_samples: Sequence[int] = (6000, 600, 1000),
    modalities: Sequence[str] = ("image", "audio"),
    sample_rate: int = 8000,
    gap: Sequence[float] = (0.05, 0.2),
    val_fraction: float = 0.1,
    seed: int = 0,
    mnist: str = "mnist/train.npz",
    fsdd: str = "fsdd/recordings",
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
) -> dict[str, list[Sample]]:
    """Digit sequences from real data: MNIST strips and Free Spoken Digit recordings.

    Pools: the recordings follow the Free Spoken Digit rule (takes 0-4 test, the rest
    train, ``val_fraction`` of train for validation, seeded), or, with ``test_speakers``,
    are speaker-independent (every recording of those speakers is test, none of them
    is heard in training or validation; ``val_speakers`` likewise for validation);
    MNIST's ``train.npz`` is
    split into the same fractions as the recordings (seeded, stratified), so no image
    or recording of a val/test sequence occurs in training.

    Args:
        root: Folder in the ``../shared/data`` layout.
        min_digits, max_digits: Digits per sample. Default: ``1, 4``.
        num_samples: Sequences in train/val/test. Default: ``(6000, 600, 1000)``.
        modalities: Subset of ``("image", "audio")``. Default: both.
        sample_rate: Recordings are resampled to this rate. Default: ``8000``.
        gap: Range of the silence before each recording, seconds. Default: ``(0.05, 0.2)``.
        val_fraction: Fraction of the train pools kept for validation. Default: ``0.1``.
        seed: Seed of every draw. Default: ``0``.
        mnist: Path of the image arrays under ``root``. Default: ``"mnist/train.npz"``.
        fsdd: Folder of the recordings under ``root``. Default: ``"fsdd/recordings"``.
        test_speakers: Speakers whose recordings make the test pool (``["george"]``);
            ``None`` (default): the takes rule.
        val_speakers: Speakers whose recordings make the validation pool (default: none).

    Returns:
        dict[str, list[Sample]]: ``{"train", "val", "test"}`` with ``target`` set.

    Raises:
        FileNotFoundError: ``root`` lacks the images or the recordings.
        ValueError: An unknown test or validation speaker, validation speakers without
            or among the test speakers, or no speaker left for training.
    """
    from graphmm.data.audio_folder import read_audio_records
    from graphmm.data.images import read_image_arrays

    base = _shared_layout(root, mnist, fsdd)
    cfg = _resolve(None, {"modalities": tuple(modalities), "min_digits": min_digits, "max_digits": max_digits,
                          "num_samples": tuple(num_samples)})
    rngs = {k: np.random.default_rng([seed, v]) for k, v in _STREAM.items()}

    records = read_audio_records(str(base / fsdd), sample_rate=sample_rate)
    rec_labels = np.array([int(r.label) for r in records])
    rec_pools = _recording_pools(records, val_fraction, rngs["pool"], test_speakers, val_speakers)
    images, img_labels = read_image_arrays(str(base / mnist))
    fractions = tuple(len(p) / len(records) for p in rec_pools)
    img_pools = _stratified_split(img_labels.numpy(), fractions, rngs["pool"])

    out: dict[str, list[Sample]] = {}
    for k, name in enumerate(SPLITS):
        # one draw of digits per sequence, then an image and a recording of each digit
        lengths, digits = _draw_digits(cfg.num_samples[k], cfg.min_digits, cfg.max_digits, rngs["seq"])
        imgs = clips = None
        if "image" in cfg.modalities:
            pick = _pick(img_labels.numpy()[img_pools[k]], digits, rngs["image"])
            imgs = images[torch.from_numpy(img_pools[k][pick])]
        if "audio" in cfg.modalities:
            pick = _pick(rec_labels[rec_pools[k]], digits, rngs["audio"])
            gaps = rngs["gap"].uniform(gap[0], gap[1], size=len(digits))
            clips = [
                torch.cat([torch.zeros(int(round(g * sample_rate))), records[int(j)].audio])
                for g, j in zip(gaps, rec_pools[k][pick])
            ]
        out[name] = assemble_sequences(name, lengths, digits, imgs, clips, sample_rate, prefix="avdigits_seq")
    return out


def _shared_layout(root: str, *parts: str) -> Path:
    """``root`` as a path, after checking that it holds each of ``parts``."""
    base = Path(root)
    for part in parts:
        if not (base / part).exists():
            raise FileNotFoundError(
                f"{base / part} does not exist; data.root must be a folder in the ../shared/data layout "
                f"(mnist/train.npz and fsdd/recordings/)"
            )
    return base


def _recording_pools(records: Sequence[Any], val_fraction: float, rng: np.random.Generator,
                     test_speakers: Sequence[str] | None = None,
                     val_speakers: Sequence[str] | None = None) -> list[np.ndarray]:
    """Indices of the train, val and test recordings: the Free Spoken Digit rule (takes
    0-4 test) or the recordings of ``test_speakers``, then a seeded ``val_fraction`` of
    the train recordings for validation, or the recordings of ``val_speakers``."""
    if val_speakers:
        if not test_speakers:
            raise ValueError("data.val_speakers needs data.test_speakers (a speaker-independent split)")
        if set(val_speakers) & set(test_speakers):
            raise ValueError(f"data.val_speakers {sorted(set(val_speakers) & set(test_speakers))} are also test "
                             "speakers; give other speakers")
    if test_speakers:
        speakers = {r.speaker for r in records}
        unknown = sorted(set(test_speakers) - speakers)
        if unknown:
            raise ValueError(f"data.test_speakers: no recording of {unknown}; the speakers are {sorted(speakers - {None})}")
        if not speakers - set(test_speakers):
            raise ValueError("data.test_speakers names every speaker: none is left for training")
        test_rec = np.array([r.speaker in set(test_speakers) for r in records])
    else:
        test_rec = np.array([r.take is not None and r.take < 5 for r in records])
    train_rec = np.flatnonzero(~test_rec)
    val_mask = np.zeros(len(records), dtype=bool)
    if val_speakers:
        from graphmm.data.audio_folder import speaker_mask

        val_mask = speaker_mask(records, val_speakers, "data.val_speakers")
        if not (~test_rec & ~val_mask).any():
            raise ValueError("data.test_speakers and data.val_speakers name every speaker: none is left for training")
    else:
        val_mask[rng.permutation(train_rec)[: int(round(val_fraction * len(train_rec)))]] = True
    return [np.flatnonzero(~test_rec & ~val_mask), np.flatnonzero(val_mask), np.flatnonzero(test_rec)]


def _pick(pool_labels: np.ndarray, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each digit, a uniformly drawn index into the pool among items of that digit."""
    by_digit = [np.flatnonzero(pool_labels == d) for d in range(10)]
    empty = [d for d in range(10) if len(by_digit[d]) == 0]
    if empty:
        raise ValueError(f"the pool has no item of digit(s) {empty}; every digit 0-9 needs at least one")
    counts = np.array([len(b) for b in by_digit])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = np.floor(rng.random(len(digits)) * counts[digits]).astype(np.int64)
    return np.concatenate(by_digit)[offsets[digits] + pick]
