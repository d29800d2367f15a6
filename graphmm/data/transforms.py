"""Sample-level transforms applied while batching."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from graphmm.data.sample import MODALITIES, Sample


class ModalityDropout:
    """Drop whole modalities from training samples at random (ModDrop, Neverova et al.
    2016, https://arxiv.org/abs/1501.00102).

    Each present modality of each sample is removed with probability ``p``,
    independently, but at least one modality always stays. A fused model then cannot
    lean on one modality alone, and it learns to cope when one is missing at test time.

    Args:
        p: drop probability per modality, in [0, 1).

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> drop = ModalityDropout(0.5)
        >>> out = drop([Sample(text="seven", image=torch.zeros(1, 8, 8))])
        >>> len(out[0].modalities) >= 1
        True
    """

    def __init__(self, p: float = 0.25) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"modality dropout p must be in [0, 1), got {p}")
        self.p = float(p)

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        if self.p == 0.0 or not samples:
            return list(samples)
        present = torch.tensor([[getattr(s, m) is not None for m in MODALITIES] for s in samples])
        drop = (torch.rand(present.shape) < self.p) & present
        # where everything present would go, keep one present modality (the one with the highest draw)
        all_gone = (present & ~drop).sum(1) == 0
        keep = torch.where(present, torch.rand(present.shape), torch.full(present.shape, -1.0)).argmax(1)
        drop[all_gone, keep[all_gone]] = False
        out = []
        for s, row in zip(samples, drop.tolist()):
            gone = {m: None for m, d in zip(MODALITIES, row) if d}
            if "audio" in gone:
                gone["sample_rate"] = None
            out.append(s.replace(**gone) if gone else s)
        return out

    def __repr__(self) -> str:
        return f"ModalityDropout(p={self.p})"
