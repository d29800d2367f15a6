"""A map-style PyTorch dataset over a list of :class:`~graphmm.data.Sample`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from graphmm.data.sample import Sample

__all__ = ["SampleDataset"]


class SampleDataset(Dataset):
    """Wrap a list of samples as a :class:`torch.utils.data.Dataset`.

    Items are returned unchanged; turning samples into graphs is the job of a graph
    builder used as (or inside) the ``collate_fn``.

    Args:
        samples (Sequence[Sample]): The samples. The list is copied, the samples are not.
        num_classes (int, optional): Number of classes. When ``None`` it is inferred as
            ``max(label) + 1`` over the labelled samples. Default: ``None``.

    Shapes:
        - labels: :math:`(N,)` int64

    Example:
        >>> ds = SampleDataset([Sample(text="a two", label=2), Sample(text="a one", label=1)])
        >>> len(ds), ds.num_classes, ds.labels.tolist()
        (2, 3, [2, 1])
    """

    def __init__(self, samples: Sequence[Sample], num_classes: int | None = None) -> None:
        self.samples: list[Sample] = list(samples)
        for i, s in enumerate(self.samples):
            if not isinstance(s, Sample):
                raise TypeError(
                    f"SampleDataset expects graphmm.data.Sample items, got "
                    f"{type(s).__name__} at position {i}; wrap raw data in Sample(...)."
                )
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self._num_classes = num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def labels(self) -> torch.Tensor:
        """int64 tensor of shape :math:`(N,)` with every sample's label.

        Raises:
            ValueError: If a sample has no label.
        """
        missing = [
            s.id if s.id is not None else i for i, s in enumerate(self.samples) if s.label is None
        ]
        if missing:
            raise ValueError(
                f"{len(missing)} sample(s) have no label (first: {missing[0]!r}); "
                "set Sample.label for classification datasets."
            )
        return torch.tensor([s.label for s in self.samples], dtype=torch.long)

    @property
    def num_classes(self) -> int:
        """Number of classes: the value given to the constructor, else ``max(label) + 1``."""
        if self._num_classes is not None:
            return self._num_classes
        labels = [s.label for s in self.samples if s.label is not None]
        if not labels:
            raise ValueError(
                "num_classes cannot be inferred: no sample has a label; pass num_classes=."
            )
        return max(labels) + 1

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present in at least one sample, in canonical order."""
        from graphmm.modalities import list_modalities

        seen = {m for s in self.samples for m in s.modalities}
        return tuple(m for m in list_modalities() if m in seen)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, modalities={self.modalities})"
