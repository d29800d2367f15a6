"""The unit of data in graphmm: one multimodal example.

A :class:`Sample` holds raw modalities (text, image, audio waveform) plus an optional
label and target. Any modality may be missing; graph builders turn the modalities that
are present into nodes of one heterograph and validate the tensors they receive.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Sample", "MODALITIES"]

#: Every modality a :class:`Sample` can carry, in canonical order.
MODALITIES: tuple[str, ...] = ("text", "image", "audio")


@dataclass(eq=False, repr=False)
class Sample:
    """One multimodal example; each modality is optional.

    The class is a plain container: it does not check shapes or ranges, because the
    graph builders that consume a sample validate what they use and raise errors
    naming :attr:`id`.

    Args:
        text (str, optional): Raw text. Default: ``None``.
        image (torch.Tensor, optional): float32 image with values in ``[0, 1]``.
            Default: ``None``.
        audio (torch.Tensor, optional): float32 mono waveform with peak in ``[-1, 1]``.
            Default: ``None``.
        sample_rate (int, optional): Samples per second of :attr:`audio`; required when
            audio is given. Default: ``None``.
        label (int, optional): Class index. Default: ``None``.
        target (str, optional): Text to generate, for sequence outputs. Default: ``None``.
        id (str or int, optional): Identifier used in error messages. Default: ``None``.

    Shapes:
        - image: :math:`(C, H, W)`
        - audio: :math:`(T,)`

    Equality compares every field, tensors with :func:`torch.equal`, so two samples
    generated from the same configuration compare equal.

    Example:
        >>> s = Sample(text="a seven", image=torch.zeros(1, 8, 8), label=7, id="ex/0")
        >>> s.modalities
        ('text', 'image')
        >>> s
        Sample(id='ex/0', label=7, text='a seven', image=[1, 8, 8])
    """

    text: str | None = None
    image: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    sample_rate: int | None = None
    label: int | None = None
    target: str | None = None
    id: str | int | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities that are present, a subset of ``("text", "image", "audio")``
        in that order."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def where(self, index: int) -> str:
        """How error messages name this sample: its ``id`` if it has one, with its
        position ``index`` in the batch or split.

        >>> Sample(id="cat-3").where(5), Sample().where(5)
        ("sample 'cat-3' (index 5)", 'sample at index 5')
        """
        return f"sample {self.id!r} (index {index})" if self.id is not None else f"sample at index {index}"

    def replace(self, **changes: Any) -> Sample:
        """Return a copy with some fields changed; the original is left untouched.

        Args:
            **changes: Field names and their new values, e.g. ``audio=None`` to drop
                the audio modality.

        Returns:
            Sample: A new sample (tensors are shared, not copied).
        """
        return dataclasses.replace(self, **changes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
                if not (
                    isinstance(a, torch.Tensor)
                    and isinstance(b, torch.Tensor)
                    and a.dtype == b.dtype
                    and torch.equal(a, b)
                ):
                    return False
            elif a != b:
                return False
        return True

    # Mutable container: equality is by value, so it must not be hashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"id={self.id!r}"]
        if self.label is not None:
            parts.append(f"label={self.label}")
        if self.text is not None:
            text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
            parts.append(f"text={text!r}")
        if self.image is not None:
            parts.append(f"image={list(self.image.shape)}")
        if self.audio is not None:
            parts.append(f"audio={list(self.audio.shape)}@{self.sample_rate}Hz")
        if self.target is not None:
            parts.append(f"target={self.target!r}")
        return f"Sample({', '.join(parts)})"
