r"""Training-time augmentation, per modality, applied inside the batch build.

An augmentation has up to two hooks, both batch-wide and vectorised:

* ``raw(values, generator)``: the batch's checked inputs of its modality, before
  nodes are made (images are warped, waveforms shifted, scaled and resampled);
* ``nodes(block, generator)``: the :class:`~graphmm.graphtypes.NodeBlock` the
  modality built (SpecAugment masks over log-mel frames, word dropout over tokens).

:class:`Augmentations` holds one per modality name and is what
:meth:`graphmm.graphs.MultimodalGraphBuilder.batch` takes (``augment=``); training
switches it on for the training loader only (``augment=default`` in Hydra, or
``augment.image.rotate=10``). Every draw comes from the generator passed in, so a
seeded generator gives the same batch twice; in training the generator's seed mixes
``(seed, epoch, index)`` of the batch's samples, as modality dropout does, so the
augmented batches do not depend on the workers or on a resume.

A modality plug-in adds its own with :func:`register_augmentation`.

Example:
    >>> import torch
    >>> from graphmm.data.augment import Augmentations, ImageAugment
    >>> aug = Augmentations(image=ImageAugment(shift=0.1, rotate=10.0))
    >>> aug
    Augmentations(image=ImageAugment(shift=0.1, rotate=10.0, scale=0.0, elastic=0.0, elastic_sigma=3.0))
    >>> imgs = [torch.rand(1, 8, 8), torch.rand(1, 8, 8)]
    >>> a = aug["image"].raw(imgs, torch.Generator().manual_seed(0))
    >>> b = aug["image"].raw(imgs, torch.Generator().manual_seed(0))
    >>> [x.shape for x in a], all(torch.equal(x, y) for x, y in zip(a, b))
    ([torch.Size([1, 8, 8]), torch.Size([1, 8, 8])], True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
import torch.nn.functional as F

from graphmm.graphtypes import NodeBlock
from graphmm.graphs._util import segment_offsets

__all__ = [
    "AudioAugment",
    "Augmentation",
    "Augmentations",
    "ImageAugment",
    "TextAugment",
    "augment_schema",
    "batch_generator",
    "get_augmentation",
    "list_augmentations",
    "register_augmentation",
    "with_seed",
]

T = TypeVar("T")

#: Token id of ``<unk>`` in every graphmm vocabulary (``<pad>`` is 0).
UNK_ID = 1


@runtime_checkable
class Augmentation(Protocol):
    """What the batch build calls; both hooks are optional (see the module docstring)."""

    def raw(self, values: list[Any], generator: torch.Generator) -> list[Any]: ...

    def nodes(self, block: NodeBlock, generator: torch.Generator) -> NodeBlock: ...


_REGISTRY: dict[str, type] = {}


def register_augmentation(modality: str) -> Callable[[T], T]:
    """Class decorator: the augmentation of ``modality`` (its keyword arguments are its
    config keys, ``augment.<modality>.<key>``)."""

    def deco(cls: T) -> T:
        _REGISTRY[modality] = cls  # type: ignore[assignment]
        return cls

    return deco


def get_augmentation(modality: str) -> type:
    """The augmentation class registered for ``modality``.

    Raises:
        KeyError: None is; the message lists the modalities that have one.
    """
    if modality not in _REGISTRY:
        raise KeyError(f"no augmentation for modality {modality!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[modality]


def list_augmentations() -> list[str]:
    """Modalities with a registered augmentation."""
    return sorted(_REGISTRY)


def _uniform(n: int, amplitude: float, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` draws from :math:`U(-a, a)`."""
    return (torch.rand(n, generator=generator) * 2 - 1) * amplitude


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"augment: {name}={value} must be {bound}")


@register_augmentation("image")
@dataclass
class ImageAugment:
    r"""Random affine and elastic warps of images, one ``grid_sample`` per image size.

    Per image :math:`i`, with :math:`u \sim U(-1, 1)` drawn independently,

    .. math::

        \theta_i = \begin{bmatrix} s_i\cos\phi_i & -s_i\sin\phi_i & t^x_i \\
                                     s_i\sin\phi_i & s_i\cos\phi_i & t^y_i \end{bmatrix},
        \quad \phi_i = u\,\tfrac{\pi}{180}\,\text{rotate},\;
        s_i = 1 + u\,\text{scale},\; t_i = 2u\,\text{shift}

    in the normalised coordinates of :func:`torch.nn.functional.affine_grid`, plus,
    with ``elastic > 0``, a displacement field of white noise smoothed by a Gaussian of
    width ``elastic_sigma`` pixels and scaled to ``elastic`` pixels at its peak.
    Pixels that come from outside the image repeat its border.

    Args:
        shift: Largest translation, as a fraction of the image side. Default: ``0.0``.
        rotate: Largest rotation in degrees. Default: ``0.0``.
        scale: Largest relative zoom in or out. Default: ``0.0``.
        elastic: Largest elastic displacement in pixels (``0``: off). Default: ``0.0``.
        elastic_sigma: Smoothness of the elastic field in pixels. Default: ``3.0``.

    Shapes:
        - ``raw``: a list of ``(C, H, W)`` images in, the same shapes out.
    """

    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    elastic: float = 0.0
    elastic_sigma: float = 3.0

    def __post_init__(self) -> None:
        _check_range("image.shift", self.shift, 0.0, 1.0)
        _check_range("image.rotate", self.rotate, 0.0, 180.0)
        _check_range("image.scale", self.scale, 0.0, 0.9)
        _check_range("image.elastic", self.elastic, 0.0)
        _check_range("image.elastic_sigma", self.elastic_sigma, 0.1)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.shift, self.rotate, self.scale, self.elastic))

    def _elastic_field(self, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, H, W, 2)`` smooth displacements in normalised units."""
        noise = torch.rand(n, 2, h, w, generator=generator) * 2 - 1
        radius = max(1, int(math.ceil(3 * self.elastic_sigma)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / self.elastic_sigma) ** 2)
        kernel = kernel / kernel.sum()
        # separable blur, each displacement channel on its own
        field = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="replicate"),
                         kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1), groups=2)
        field = F.conv2d(F.pad(field, (0, 0, radius, radius), mode="replicate"),
                         kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1), groups=2)
        peak = field.flatten(1).abs().amax(1).clamp_min(1e-8).view(n, 1, 1, 1)
        pixels = field / peak * self.elastic  # (n, 2, H, W), at most `elastic` pixels
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]).view(1, 2, 1, 1)
        return (pixels * scale).permute(0, 2, 3, 1)

    def raw(self, values: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """Warp each image; images of one size are warped in one batched call."""
        if not self.active or not values:
            return list(values)
        n = len(values)
        # draws for the whole batch first, so an image's warp does not depend on the sizes of the others
        phi = _uniform(n, math.radians(self.rotate), generator)
        s = 1 + _uniform(n, self.scale, generator)
        t = _uniform(2 * n, 2 * self.shift, generator).view(n, 2)
        cos, sin = torch.cos(phi) / s, torch.sin(phi) / s  # sampling grid: the inverse map
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
        out: list[torch.Tensor] = list(values)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(values):
            groups.setdefault(tuple(img.shape), []).append(i)
        for shape, idx in groups.items():
            c, h, w = shape
            index = torch.tensor(idx)
            batch = torch.stack([values[i] for i in idx]).to(torch.float32)
            grid = F.affine_grid(theta[index], [len(idx), c, h, w], align_corners=False)
            if self.elastic > 0:
                grid = grid + self._elastic_field(len(idx), h, w, generator)
            warped = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
            for k, i in enumerate(idx):
                out[i] = warped[k].to(values[i].dtype)
        return out


@register_augmentation("audio")
@dataclass
class AudioAugment:
    r"""Waveform gain, time shift and speed, and SpecAugment masks over log-mel frames.

    On the waveform :math:`x` of each clip (``raw``):
    :math:`x \leftarrow \mathrm{clip}_{[-1,1]}(10^{g/20} x)` with
    :math:`g \sim U(-\text{gain\_db}, \text{gain\_db})`; a shift (not circular) by up to
    ``shift`` of its length (zeros fill the gap); a speed change by a factor in
    :math:`[1-\text{speed}, 1+\text{speed}]` (linear resampling, so the clip gets
    shorter or longer and its frames follow). On the frames (``nodes``), SpecAugment:
    ``time_masks`` spans of up to ``time_width`` frames and ``freq_masks`` bands of up
    to ``freq_width`` mel bins per clip are set to 0, the mean of the normalised log-mel.

    Args:
        gain_db: Largest gain change in dB. Default: ``0.0``.
        shift: Largest time shift, as a fraction of the clip. Default: ``0.0``.
        speed: Largest relative speed change. Default: ``0.0``.
        time_masks: Time masks per clip. Default: ``0``.
        time_width: Largest time mask, in frames. Default: ``4``.
        freq_masks: Frequency masks per clip. Default: ``0``.
        freq_width: Largest frequency mask, in mel bins. Default: ``4``.

    Shapes:
        - ``raw``: a list of ``(T,)`` waveforms in, ``(T',)`` out.
        - ``nodes``: the frame block's ``mel`` ``(N, n_mels)``, masked in a copy (the input block is unchanged).
    """

    gain_db: float = 0.0
    shift: float = 0.0
    speed: float = 0.0
    time_masks: int = 0
    time_width: int = 4
    freq_masks: int = 0
    freq_width: int = 4

    def __post_init__(self) -> None:
        _check_range("audio.gain_db", self.gain_db, 0.0)
        _check_range("audio.shift", self.shift, 0.0, 1.0)
        _check_range("audio.speed", self.speed, 0.0, 0.9)
        for name in ("time_masks", "time_width", "freq_masks", "freq_width"):
            _check_range(f"audio.{name}", getattr(self, name), 0)

    @property
    def active(self) -> bool:
        return bool(self.gain_db or self.shift or self.speed or self.time_masks or self.freq_masks)

    @property
    def changes_raw(self) -> bool:
        return bool(self.gain_db or self.shift or self.speed)

    def raw(self, values: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """Gain, shift and speed of each waveform (each a handful of tensor ops)."""
        if not values or not (self.gain_db or self.shift or self.speed):
            return list(values)
        n = len(values)
        gain = 10 ** (_uniform(n, self.gain_db, generator) / 20)
        shift = _uniform(n, self.shift, generator)
        speed = 1 + _uniform(n, self.speed, generator)
        out = []
        for i, wave in enumerate(values):  # clips differ in length: one short loop over the batch
            x = (wave * gain[i]).clamp(-1.0, 1.0)
            k = int(round(float(shift[i]) * x.numel()))
            if k:
                x = torch.cat([x.new_zeros(k), x[:-k]]) if k > 0 else torch.cat([x[-k:], x.new_zeros(-k)])
            if self.speed:
                length = max(2, int(round(x.numel() / float(speed[i]))))
                x = F.interpolate(x.view(1, 1, -1), size=length, mode="linear", align_corners=False).view(-1)
            out.append(x)
        return out

    def nodes(self, block: NodeBlock, generator: torch.Generator) -> NodeBlock:
        """SpecAugment over the frames of all clips at once."""
        mel = block.data.get("mel")
        if mel is None or mel.numel() == 0 or not (self.time_masks or self.freq_masks):
            return block
        counts = block.counts
        b, n_mels = len(counts), mel.shape[1]
        offsets, seg = segment_offsets(counts)
        t = torch.arange(mel.shape[0]) - offsets[seg]  # (N,) frame index within its clip
        keep = torch.ones_like(mel, dtype=torch.bool)
        if self.time_masks:
            width = (torch.rand(b, self.time_masks, generator=generator) * (self.time_width + 1)).long()
            start = (torch.rand(b, self.time_masks, generator=generator) * (counts[:, None] - width + 1).clamp_min(1)).long()
            lo, hi = start[seg], (start + width)[seg]  # (N, masks)
            keep &= ~((t[:, None] >= lo) & (t[:, None] < hi)).any(1, keepdim=True)
        if self.freq_masks:
            width = (torch.rand(b, self.freq_masks, generator=generator) * (self.freq_width + 1)).long()
            start = (torch.rand(b, self.freq_masks, generator=generator) * (n_mels - width + 1).clamp_min(1)).long()
            bins = torch.arange(n_mels)
            band = ((bins[None, None, :] >= start[..., None]) & (bins[None, None, :] < (start + width)[..., None])).any(1)
            keep &= ~band[seg]  # (N, n_mels)
        data = dict(block.data, mel=mel * keep)
        return NodeBlock(ntype=block.ntype, counts=block.counts, data=data, edges=block.edges)


@register_augmentation("text")
@dataclass
class TextAugment:
    r"""Word dropout: each word node's token becomes ``<unk>`` with probability ``word_dropout``.

    The node stays (its position and edges are kept), so the text's structure is
    intact and only its identity is hidden, as unseen words are at test time.

    Args:
        word_dropout: Probability per word. Default: ``0.0``.

    Shapes:
        - ``nodes``: the word block's ``token`` ``(N,)`` in, the same shape out.
    """

    word_dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_range("text.word_dropout", self.word_dropout, 0.0, 1.0)

    @property
    def active(self) -> bool:
        return self.word_dropout > 0

    def nodes(self, block: NodeBlock, generator: torch.Generator) -> NodeBlock:
        """Replace a random share of the tokens by ``<unk>``."""
        token = block.data.get("token")
        if token is None or token.numel() == 0 or self.word_dropout == 0:
            return block
        drop = torch.rand(token.shape, generator=generator) < self.word_dropout
        data = dict(block.data, token=torch.where(drop, torch.full_like(token, UNK_ID), token))
        return NodeBlock(ntype=block.ntype, counts=block.counts, data=data, edges=block.edges)


class Augmentations(Mapping[str, Any]):
    """The augmentation of each modality, by modality name (a read-only mapping).

    Build it from keyword arguments (``Augmentations(image=ImageAugment(rotate=10))``)
    or from a config mapping (:meth:`from_config`); modalities left out, or whose
    settings are all zero, are not augmented.
    """

    def __init__(self, **augmentations: Any) -> None:
        self._augs = {k: v for k, v in augmentations.items() if v is not None}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Augmentations | None:
        """``{modality: {key: value}}`` (the ``augment`` config) to an :class:`Augmentations`;
        ``None`` or an empty mapping gives ``None``.

        Raises:
            KeyError: A modality without a registered augmentation.
            ValueError: A setting out of range, or an unknown key.
        """
        if not cfg:
            return None
        made = {}
        for modality, settings in cfg.items():
            if settings is None:
                continue
            kind = get_augmentation(str(modality))
            known = {f.name for f in fields(kind)}
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"augment.{modality}: unknown keys {unknown}; known: {sorted(known)}")
            aug = kind(**dict(settings))
            if getattr(aug, "active", True):  # all-zero settings: no augmentation at all
                made[str(modality)] = aug
        return cls(**made) if made else None

    def __getitem__(self, modality: str) -> Any:
        return self._augs[modality]

    def __iter__(self) -> Iterator[str]:
        return iter(self._augs)

    def __len__(self) -> int:
        return len(self._augs)

    def raw(self, modality: str, values: list[Any], generator: torch.Generator) -> list[Any]:
        """``values`` through the modality's ``raw`` hook (unchanged without one)."""
        hook = getattr(self._augs.get(modality), "raw", None)
        return hook(values, generator) if hook is not None and values else values

    def nodes(self, modality: str, block: NodeBlock, generator: torch.Generator) -> NodeBlock:
        """``block`` through the modality's ``nodes`` hook (unchanged without one)."""
        hook = getattr(self._augs.get(modality), "nodes", None)
        return hook(block, generator) if hook is not None else block

    def changes_raw(self, modality: str) -> bool:
        """Whether the modality's inputs are changed before building (the feature cache
        then cannot serve them)."""
        aug = self._augs.get(modality)
        if aug is None or not hasattr(aug, "raw"):
            return False
        return bool(getattr(aug, "changes_raw", getattr(aug, "active", True)))

    def state(self) -> dict[str, dict[str, Any]]:
        """Plain settings per modality (what the config holds)."""
        return {k: asdict(v) for k, v in self._augs.items()}

    def __repr__(self) -> str:
        return f"Augmentations({', '.join(f'{k}={v!r}' for k, v in self._augs.items())})"


#: The attribute by which a training sample carries its augmentation seed
#: (:func:`with_seed`, set by :class:`graphmm.runstate.EpochView`).
SEED_ATTR = "_augment_seed"


def with_seed(sample: Any, seed: int) -> Any:
    """A shallow copy of ``sample`` that carries ``seed`` for :func:`batch_generator`."""
    out = copy.copy(sample)
    setattr(out, SEED_ATTR, int(seed))
    return out


def batch_generator(samples: Sequence[Any]) -> torch.Generator:
    """The generator of one augmented batch: seeded by the samples' seeds in order
    (:func:`with_seed`), so the batch is the same in any worker and after a resume;
    samples without one draw the seed from torch's global generator."""
    seeds = [getattr(s, SEED_ATTR, None) for s in samples]
    if not seeds or any(s is None for s in seeds):
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    h = 0xCBF29CE484222325  # FNV-1a over the 64-bit seeds
    for s in seeds:
        h = ((h ^ (s & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(h & 0x7FFFFFFFFFFFFFFF)


def augment_schema() -> type:
    """``trainer.augment``'s schema: one field per registered augmentation, each its
    dataclass with every setting 0 (off), so ``trainer.augment.image.rotate=10`` turns
    one on."""
    names = list_augmentations()
    cls = make_dataclass(
        "AugmentConf", [(m, get_augmentation(m), field(default_factory=get_augmentation(m))) for m in names]
    )
    cls.__module__ = __name__
    cls.__doc__ = "``trainer.augment``: per modality, the training-time augmentation (all off by default)."
    return cls
