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

#: The modalities that are fields of :class:`Sample` itself; every other registered
#: modality (:func:`graphmm.modalities.list_modalities`) lives in :attr:`Sample.inputs`.
MODALITIES: tuple[str, ...] = ("text", "image", "audio")


@dataclass(init=False, eq=False, repr=False)
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
        inputs (dict, optional): Other registered modalities by name (see
            :mod:`graphmm.modalities`); they may also be passed as keywords,
            ``Sample(video=clip)``, and read as attributes, ``sample.video``.

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

    text: str | None
    image: torch.Tensor | None
    audio: torch.Tensor | None
    sample_rate: int | None
    label: int | None
    target: str | None
    id: str | int | None
    inputs: dict[str, Any]

    def __init__(
        self,
        text: str | None = None,
        image: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        sample_rate: int | None = None,
        label: int | None = None,
        target: str | None = None,
        id: str | int | None = None,  # noqa: A002 - the field's name
        inputs: dict[str, Any] | None = None,
        **modalities: Any,
    ) -> None:
        self.text, self.image, self.audio, self.sample_rate = text, image, audio, sample_rate
        self.label, self.target, self.id = label, target, id
        # an absent modality is not stored, so Sample(video=None) == Sample()
        extra = {k: v for k, v in dict(inputs or {}, **modalities).items() if v is not None}
        builtin = sorted(set(extra) & set(MODALITIES))
        if builtin:
            raise TypeError(f"Sample: {builtin} are fields of Sample itself; pass them as keywords "
                            f"(Sample({builtin[0]}=...)), not in inputs")
        if extra:
            from graphmm.modalities.base import check_modality_names

            check_modality_names(extra, "Sample")
        self.inputs = extra

    def __setstate__(self, state: dict[str, Any]) -> None:
        # samples pickled before Sample carried other modalities have no ``inputs``
        self.__dict__.update({"inputs": {}, **state})

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: other registered modalities
        if name.startswith("__") or name == "inputs":
            raise AttributeError(name)
        if name in self.inputs:
            return self.inputs[name]
        if name in _registered():
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities that are present, in the registry's order (``text``,
        ``image``, ``audio``, then the others)."""
        return tuple(m for m in _registered() if getattr(self, m) is not None)

    def where(self, index: int) -> str:
        """How error messages name this sample: its ``id`` if it has one, with its
        position ``index`` in the batch or split.

        >>> Sample(id="cat-3").where(5), Sample().where(5)
        ("sample 'cat-3' (index 5)", 'sample at index 5')
        """
        return f"sample {self.id!r} (index {index})" if self.id is not None else f"sample at index {index}"

    def without(self, *modalities: str) -> Sample:
        """A copy with ``modalities`` removed, with the fields that travel with each
        (audio's ``sample_rate``; see :class:`graphmm.modalities.ModalitySpec`).

        >>> Sample(text="hi", audio=torch.zeros(8), sample_rate=8000).without("audio")
        Sample(id=None, text='hi')
        """
        from graphmm.modalities import get_modality

        changes: dict[str, None] = {}
        for m in modalities:
            changes.update(dict.fromkeys((m, *get_modality(m).sample_fields)))
        return self.replace(**changes)

    def replace(self, **changes: Any) -> Sample:
        """Return a copy with some fields changed; the original is left untouched.

        Args:
            **changes: Field or modality names and their new values, e.g.
                ``audio=None`` to drop the audio modality, ``video=None`` to drop a
                registered ``video`` modality.

        Returns:
            Sample: A new sample (tensors are shared, not copied).
        """
        fields = {f.name for f in dataclasses.fields(self)}
        inputs = dict(self.inputs, **(changes.pop("inputs", None) or {}))
        for name in [k for k in changes if k not in fields]:
            value = changes.pop(name)
            if value is None:
                inputs.pop(name, None)
            else:
                inputs[name] = value
        return dataclasses.replace(self, **{"inputs": inputs, **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "inputs":
                if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
                    return False
            elif not _same(a, b):
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
        for name, value in self.inputs.items():
            parts.append(f"{name}={list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
        if self.target is not None:
            parts.append(f"target={self.target!r}")
        return f"Sample({', '.join(parts)})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _registered() -> list[str]:
    """Names of the registered modalities (the plug-ins load on first use)."""
    from graphmm.modalities import list_modalities

    return list_modalities()
