"""The CLIP plug-in: what :mod:`graphmm.clip` adds to the core, registered on import.

The core never imports this package; it finds this module through the
``graphmm.plugins`` entry point in ``pyproject.toml`` (:mod:`graphmm.plugins`) and
imports it on first use of a registry. It registers

* the ``open_clip`` node featurizer (``model.encoders.<patch|word>.type=open_clip``,
  :class:`graphmm.clip.ClipNodeEncoder`), through
  :func:`graphmm.nn.encoders.register_featurizer`;
* its config checks (:func:`check_config`), through
  :func:`graphmm.config.register_config_check`;
* the Hydra schemas of its graph builders (``graph/image``, ``graph/text``,
  ``graph/cross`` as ``clip_schema``: :mod:`graphmm.clip.schemas`).

Its relation, ``clip_knn``, is a core embedding-kNN relation
(:class:`graphmm.graphs.cross.EmbeddingKnnRelation`) over the ``clip_emb`` node data
that the CLIP graph builders add; its builders are the image and text modalities'
builders with CLIP features (:class:`graphmm.clip.ClipImageGraphBuilder`,
:class:`graphmm.clip.ClipTextGraphBuilder`), picked by ``_target_``.

Example:
    >>> from graphmm.nn.encoders import featurizer_types
    >>> featurizer_types()
    ['learned', 'open_clip']
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from torch import nn

from graphmm.clip import schemas
from graphmm.clip.spec import parse_open_clip
from graphmm.config import ConfigError, register_config_check
from graphmm.nn.encoders import register_featurizer

#: the graph key whose builder makes each node type an ``open_clip`` featurizer encodes
_GRAPH_KEY = {"patch": "image", "word": "text"}


def build_encoder(ntype: str, hidden: int, spec: dict[str, Any]) -> nn.Module:
    """A :class:`graphmm.clip.ClipNodeEncoder` for one featurizer spec (imports open_clip)."""
    from graphmm.clip.featurizers import ClipNodeEncoder, featurizer_kwargs

    return ClipNodeEncoder(ntype, hidden, **featurizer_kwargs(spec))


def check_config(cfg: DictConfig) -> None:
    """``model.encoders.<nt>.type=open_clip`` needs CLIP nodes of that type built by
    ``graph.<image|text>`` with the ``clip_schema``, frozen alike on both sides."""
    g = cfg.graph
    for ntype, spec in (cfg.model.get("encoders") or {}).items():
        if spec is None or spec.type != "open_clip":
            continue
        key = _GRAPH_KEY.get(ntype)
        if key is None:
            raise ConfigError(f"model.encoders.{ntype}: open_clip encodes only patch and word nodes")
        if g.get(key) is None or "name" not in g[key]:
            raise ConfigError(
                f"model.encoders.{ntype}.type=open_clip needs CLIP {ntype} nodes: use graph.{key} with the "
                f"clip_schema (see graphmm/conf/experiment/digits_clip.yaml)"
            )
        if bool(g[key].frozen) != bool(spec.frozen):
            raise ConfigError(f"model.encoders.{ntype}.frozen={spec.frozen} differs from graph.{key}.frozen={g[key].frozen}")


register_featurizer("open_clip", parse=parse_open_clip, build=build_encoder)
register_config_check(check_config)
schemas.register()
