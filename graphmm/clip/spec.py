"""The ``open_clip`` featurizer spec of :class:`graphmm.nn.NodeEncoders` (``featurizers=``),
checked without importing open_clip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FEATURIZER_TYPES", "OPEN_CLIP_NTYPES", "parse_featurizers", "parse_open_clip"]

#: featurizer types a node type can choose
FEATURIZER_TYPES: tuple[str, ...] = ("learned", "open_clip")
#: node types an ``open_clip`` featurizer can encode
OPEN_CLIP_NTYPES: tuple[str, ...] = ("patch", "word")
_DEFAULTS: dict[str, Any] = {"name": None, "checkpoint": None, "pretrained": None, "frozen": True, "layer": -1}


def parse_open_clip(ntype: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Check and fill in one ``type: open_clip`` featurizer spec (the ``parse`` the CLIP
    plug-in registers with :func:`graphmm.nn.encoders.register_featurizer`).

    Raises:
        ValueError: an unknown key, a node type other than ``patch``/``word``, or a
            missing ``name``.

    Example:
        >>> parse_open_clip("patch", {"type": "open_clip", "name": "ViT-B-32"})["frozen"]
        True
    """
    unknown = sorted(set(spec) - {"type"} - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"featurizers[{ntype!r}] has unknown key(s) {unknown}; known: {sorted({'type', *_DEFAULTS})}")
    full = {**_DEFAULTS, **spec, "type": "open_clip"}
    if ntype not in OPEN_CLIP_NTYPES:
        raise ValueError(f"featurizers[{ntype!r}]: open_clip encodes {list(OPEN_CLIP_NTYPES)} nodes only; use type=learned")
    if not full["name"]:
        raise ValueError(f"featurizers[{ntype!r}]: type=open_clip needs name=<open_clip model name>, e.g. ViT-B-32")
    full["frozen"] = bool(full["frozen"])
    full["layer"] = int(full["layer"])
    return full


def parse_featurizers(featurizers: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """:func:`graphmm.nn.encoders.parse_featurizers` (kept here for older imports)."""
    from graphmm.nn.encoders import parse_featurizers as parse

    return parse(featurizers)


def __getattr__(name: str) -> Any:
    if name == "FeaturizerConf":  # the schema moved to graphmm.config, which owns model.encoders
        from graphmm.config import FeaturizerConf

        return FeaturizerConf
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
