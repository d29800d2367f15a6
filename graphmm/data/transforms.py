"""Sample-level transforms applied while batching."""

from __future__ import annotations

import torch

from graphmm.data.sample import Sample


class ModalityDropout:
    """Drop whole modalities from a training sample at random (ModDrop, Neverova et al.
    2016, https://arxiv.org/abs/1501.00102).

    Each present modality is removed with probability ``p``, independently, but at
    least one modality always stays. A fused model then cannot lean on one modality
    alone, and it learns to cope when one is missing at test time.

    Args:
        p: drop probability per modality, in [0, 1).

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> drop = ModalityDropout(0.5)
        >>> s = drop(Sample(text="seven", image=torch.zeros(1, 8, 8)), torch.Generator().manual_seed(0))
        >>> len(s.modalities) >= 1
        True
    """

    def __init__(self, p: float = 0.25) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"modality dropout p must be in [0, 1), got {p}")
        self.p = float(p)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        """The sample with some modalities removed; draws from ``generator`` (or the
        global torch generator), so a seeded generator makes the choice reproducible."""
        present = list(sample.modalities)
        if self.p == 0.0 or not present:
            return sample
        draws = torch.rand(len(present), generator=generator)
        gone = [m for m, d in zip(present, draws.tolist()) if d < self.p]
        if len(gone) == len(present):
            # keep the modality whose draw was highest, so at least one stays
            gone.remove(present[int(draws.argmax())])
        if not gone:
            return sample
        return sample.without(*gone)

    def __repr__(self) -> str:
        return f"ModalityDropout(p={self.p})"
