r"""``moving_digits``: an embedded video dataset whose label needs space and time.

Each clip shows one of scikit-learn's 1,797 real 8x8 handwritten digits moving in a
straight line across a small dark canvas, ``speed`` pixels per frame, in one of four
directions (:data:`DIRECTIONS`: right, left, down, up), with Gaussian pixel noise. The
label is :math:`4 \cdot \mathrm{digit} + \mathrm{direction}` (40 classes): the digit
is read in space, the direction only from the order of the frames.

The start positions are drawn so that time *order* is what tells opposite directions
apart: along the axis of motion a clip moving right starts uniformly in
:math:`[0, F - D]` and one moving left in :math:`[D, F]` (:math:`F` the free space
``canvas - 8``, :math:`D` = ``speed * (frames - 1)`` the distance travelled), so the
set of frames of a clip moving right is, in distribution, that of a clip moving left
played backwards. A frame whose index is unknown, or the unordered bag of all frames
or patches, therefore leaves right/left and down/up ambiguous; the position across the
axis of motion is uniform in :math:`[0, F]`.

Nothing is downloaded or written; the same :class:`MovingDigitsConfig` always gives
the same clips and the same split (stratified by label, seeded).

Example:
    >>> from graphmm.data.moving_digits import load_moving_digits
    >>> splits = load_moving_digits()
    >>> {k: len(v) for k, v in splits.items()}
    {'train': 1256, 'val': 271, 'test': 270}
    >>> s = splits["train"][0]
    >>> tuple(s.video.shape), s.label, s.target
    ((6, 1, 16, 16), 2, 'zero moving down')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphmm.data.digits import DIGIT_WORDS, SPLITS, _sklearn_digits, _stratified_split, merge_config
from graphmm.data.sample import Sample

__all__ = ["DIRECTIONS", "MovingDigitsConfig", "load_moving_digits"]

#: Directions of motion, by their index in the label ``4 * digit + direction``.
DIRECTIONS: tuple[str, ...] = ("right", "left", "down", "up")
# (row step, column step) of each direction, per frame
_STEPS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)], dtype=np.int64)
_DIGIT = 8  # side of a scikit-learn digit

# Independent random streams, so that one knob does not reshuffle the others.
_STREAM = {"split": 0, "direction": 1, "start": 2, "noise": 3}


@dataclass
class MovingDigitsConfig:
    """Settings of the ``moving_digits`` dataset (the defaults are the benchmark's).

    Args:
        canvas (int): Side of the square frames, in pixels (>= 8). Default: ``16``.
        frames (int): Frames per clip :math:`T` (>= 2). Default: ``6``.
        speed (int): Pixels the digit moves per frame (>= 1). Default: ``1``.
        noise_std (float): Std of the additive Gaussian pixel noise, drawn anew for
            every frame (pixels are clipped to ``[0, 1]``). Default: ``0.1``.
        split (tuple[float, float, float]): Train/val/test fractions, stratified by
            label. Default: ``(0.7, 0.15, 0.15)``.
        seed (int): Seed of every random draw. Default: ``0``.
    """

    canvas: int = 16
    frames: int = 6
    speed: int = 1
    noise_std: float = 0.1
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


def load_moving_digits(
    config: MovingDigitsConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, list[Sample]]:
    """Generate the ``moving_digits`` clips and their fixed stratified split.

    Args:
        config: Settings; a mapping is read as ``MovingDigitsConfig(**config)``.
            Default: ``MovingDigitsConfig()``.
        **overrides: Field values replacing those of ``config``.

    Returns:
        ``{"train", "val", "test"}`` lists of samples in increasing order of the
        scikit-learn image index. Each has ``video``, ``label`` in ``0..39``
        (``4 * digit + direction``), ``target`` (e.g. ``"seven moving up"``) and ``id``
        ``"moving_digits/<split>/<position>"``.

    Shapes:
        - video: :math:`(T, 1, \\text{canvas}, \\text{canvas})` float32 in ``[0, 1]``.

    Raises:
        ValueError: A setting is out of range, naming it.
        TypeError: An override names no field of :class:`MovingDigitsConfig`.
    """
    cfg = merge_config(MovingDigitsConfig, config, overrides)
    cfg.split = tuple(float(x) for x in cfg.split)  # Hydra passes a list
    _check_config(cfg)

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, _STREAM[stream]])

    digits, numbers = _sklearn_digits()
    directions = rng("direction").integers(len(DIRECTIONS), size=len(numbers))
    videos = _render(digits, directions, cfg, rng("start"), rng("noise"))
    labels = numbers * len(DIRECTIONS) + directions
    out: dict[str, list[Sample]] = {}
    for name, idx in zip(SPLITS, _stratified_split(labels, cfg.split, rng("split"))):
        out[name] = [
            Sample(
                video=torch.from_numpy(videos[i].copy()),  # own memory: a view would pickle the whole array
                label=int(labels[i]),
                target=f"{DIGIT_WORDS[numbers[i]]} moving {DIRECTIONS[directions[i]]}",
                id=f"moving_digits/{name}/{pos}",
            )
            for pos, i in enumerate(idx.tolist())
        ]
    return out


def _check_config(cfg: MovingDigitsConfig) -> None:
    if cfg.canvas < _DIGIT:
        raise ValueError(f"canvas must be >= {_DIGIT} (the digits are {_DIGIT}x{_DIGIT}), got {cfg.canvas}")
    if cfg.frames < 2:
        raise ValueError(f"frames must be >= 2 (a direction needs two frames), got {cfg.frames}")
    if cfg.speed < 1:
        raise ValueError(f"speed must be >= 1 pixel per frame, got {cfg.speed}")
    travel = cfg.speed * (cfg.frames - 1)
    if travel > cfg.canvas - _DIGIT:
        raise ValueError(
            f"a digit moving {cfg.speed} px for {cfg.frames} frames travels {travel} px, more than the "
            f"{cfg.canvas - _DIGIT} px a {cfg.canvas}x{cfg.canvas} canvas leaves; use canvas >= {_DIGIT + travel}, "
            f"fewer frames or a lower speed"
        )
    if cfg.noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {cfg.noise_std}")
    if len(cfg.split) != 3 or min(cfg.split) < 0 or not np.isclose(sum(cfg.split), 1.0):
        raise ValueError(f"split must be three non-negative train/val/test fractions summing to 1, got {cfg.split}")


def _render(
    digits: np.ndarray,
    direction: np.ndarray,
    cfg: MovingDigitsConfig,
    start_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """All clips at once, digit ``i`` moving in ``DIRECTIONS[direction[i]]``: float32
    ``(N, T, 1, S, S)`` in ``[0, 1]``.

    Positions are the digit's top-left corner, ``(N, T, 2)``, from one start per clip
    plus ``t`` steps; the digits are pasted with one fancy-indexed assignment.
    """
    n, t_len, side = len(digits), cfg.frames, cfg.canvas
    free, travel = side - _DIGIT, cfg.speed * (cfg.frames - 1)
    step = _STEPS[direction] * cfg.speed  # (N, 2)
    # along the motion: forward moves start in [0, free - travel], backward ones in
    # [travel, free], so a clip and its time reversal are equally likely
    along = start_rng.integers(0, free - travel + 1, size=n) + np.where(step.sum(1) < 0, travel, 0)
    across = start_rng.integers(0, free + 1, size=n)
    vertical = step[:, 0] != 0
    start = np.where(vertical[:, None], np.stack([along, across], 1), np.stack([across, along], 1))
    pos = start[:, None, :] + np.arange(t_len)[None, :, None] * step[:, None, :]  # (N, T, 2)

    videos = np.zeros((n, t_len, side, side), dtype=np.float32)
    k = np.arange(_DIGIT)
    rows = pos[:, :, 0, None, None] + k[None, None, :, None]  # (N, T, 8, 1)
    cols = pos[:, :, 1, None, None] + k[None, None, None, :]  # (N, T, 1, 8)
    videos[np.arange(n)[:, None, None, None], np.arange(t_len)[None, :, None, None], rows, cols] = digits[:, None]
    videos += cfg.noise_std * noise_rng.standard_normal(videos.shape, dtype=np.float32)
    return np.clip(videos, 0.0, 1.0)[:, :, None]
