"""Featurizer specs of :class:`graphmm.nn.NodeEncoders` (``featurizers=``), checked
without importing open_clip."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["FEATURIZER_TYPES", "OPEN_CLIP_NTYPES", "FeaturizerConf", "parse_featurizers"]

#: featurizer types a node type can choose
FEATURIZER_TYPES: tuple[str, ...] = ("learned", "open_clip")
#: node types an ``open_clip`` featurizer can encode
OPEN_CLIP_NTYPES: tuple[str, ...] = ("patch", "word")
_DEFAULTS: dict[str, Any] = {"name": None, "checkpoint": None, "pretrained": None, "frozen": True, "layer": -1}


@dataclass
class FeaturizerConf:
    """Typed schema of one featurizer spec (an entry of the Hydra key ``model.encoders``).

    ``type: learned`` (the default) is the plain learned encoder of
    :class:`graphmm.nn.NodeEncoders`; ``type: open_clip`` encodes ``patch`` or ``word``
    nodes with a CLIP tower (:class:`graphmm.clip.ClipNodeEncoder`). Kept free of
    Hydra and open_clip imports so :mod:`graphmm.config` can import it at the top.
    """

    type: str = "learned"  # learned | open_clip
    name: Optional[str] = None  # open_clip architecture, e.g. ViT-B-32
    checkpoint: Optional[str] = None  # local weights file; null: random weights (tests)
    pretrained: Optional[str] = None  # null, or an open_clip tag whose preprocessing to use
    frozen: bool = True  # true: precomputed, cached features; false: the tower trains
    layer: int = -1  # transformer block of the features (-1: last)


def parse_featurizers(featurizers: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Normalise per-node-type featurizer specs.

    Each entry is ``{"type": "learned"}`` (also the meaning of a missing entry) or
    ``{"type": "open_clip", "name": ..., "checkpoint": ..., "pretrained": ...,
    "frozen": True, "layer": -1}`` (defaults as shown; ``name`` is required).

    Returns:
        node type -> spec with every key filled in.

    Raises:
        ValueError: unknown type or key, ``open_clip`` on a node type other than
            ``patch``/``word``, or a missing ``name``.

    Example:
        >>> parse_featurizers({"patch": {"type": "open_clip", "name": "ViT-B-32"}})["patch"]["frozen"]
        True
    """
    out: dict[str, dict[str, Any]] = {}
    for ntype, spec in (featurizers or {}).items():
        if spec is None:
            spec = {"type": "learned"}
        if not isinstance(spec, Mapping):
            raise ValueError(f"featurizers[{ntype!r}] must be a mapping like {{'type': 'learned'}}, got {spec!r}")
        spec = dict(spec)
        kind = spec.get("type", "learned")
        if kind not in FEATURIZER_TYPES:
            raise ValueError(f"featurizers[{ntype!r}].type={kind!r} is not one of {list(FEATURIZER_TYPES)}")
        unknown = sorted(set(spec) - {"type"} - set(_DEFAULTS))
        if unknown:
            raise ValueError(
                f"featurizers[{ntype!r}] has unknown key(s) {unknown}; known: {sorted({'type', *_DEFAULTS})}"
            )
        full = {"type": kind, **_DEFAULTS, **{k: v for k, v in spec.items() if k != "type"}}
        if kind == "open_clip":
            if ntype not in OPEN_CLIP_NTYPES:
                raise ValueError(
                    f"featurizers[{ntype!r}]: open_clip encodes {list(OPEN_CLIP_NTYPES)} nodes only; use type=learned"
                )
            if not full["name"]:
                raise ValueError(
                    f"featurizers[{ntype!r}]: type=open_clip needs name=<open_clip model name>, e.g. ViT-B-32"
                )
            full["frozen"] = bool(full["frozen"])
            full["layer"] = int(full["layer"])
        out[str(ntype)] = full
    return out
