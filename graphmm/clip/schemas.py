"""Typed Hydra schemas of the CLIP featurizers and the CLIP graph builders.

* :class:`FeaturizerConf` (defined in :mod:`graphmm.config`, which owns
  ``model.encoders``): one entry per node type, read by :class:`graphmm.nn.NodeEncoders`.
* :class:`ClipImageGraphConf`, :class:`ClipTextGraphConf`, :class:`ClipCrossModalConf`:
  subclasses of the image, text and cross-modal graph schemas of
  :mod:`graphmm.config`, so a config can switch ``graph.image`` (etc.) to them through
  its defaults list, and unknown keys and wrong types still fail at composition::

      defaults:
        - /graph/image@graph.image: clip_schema
        - /graph/text@graph.text: clip_schema
        - /graph/cross@graph.cross: clip_schema

:func:`register` stores them in Hydra's ConfigStore under the groups ``graph/image``,
``graph/text`` and ``graph/cross``, each as ``clip_schema``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


def register(cs: ConfigStore | None = None) -> None:
    """Store the schemas of this module in ``cs`` (default: the global ConfigStore).

    Safe to call while this module is still being imported (``graphmm.config`` may
    import it from its own ``register_configs``): it then does nothing, and the call at
    the end of this module stores the schemas.
    """
    if "ClipCrossModalConf" not in globals():
        return
    cs = cs or ConfigStore.instance()
    cs.store(group="graph/image", name="clip_schema", node=ClipImageGraphConf)
    cs.store(group="graph/text", name="clip_schema", node=ClipTextGraphConf)
    cs.store(group="graph/cross", name="clip_schema", node=ClipCrossModalConf)


# imported after register() on purpose (see its docstring)
from graphmm.config import CrossModalConf, FeaturizerConf, ImageGraphConf, TextGraphConf

__all__ = ["ClipCrossModalConf", "ClipImageGraphConf", "ClipTextGraphConf", "FeaturizerConf", "register"]


@dataclass
class ClipImageGraphConf(ImageGraphConf):
    """:class:`graphmm.clip.ClipImageGraphBuilder`: patch nodes = CLIP's patch tokens."""

    _target_: str = "graphmm.clip.ClipImageGraphBuilder"
    patch_size: int = 0  # 0: the model's patch size (any other value must equal it)
    stride: Optional[int] = None  # null: = patch size (CLIP's patches do not overlap)
    name: str = "ViT-B-32"
    checkpoint: Optional[str] = None
    pretrained: Optional[str] = None
    frozen: bool = True
    layer: int = -1
    joint: bool = False  # add clip_emb (needed by graph.cross.clip_knn)
    preprocess: Optional[Dict[str, Any]] = None  # mean/std/interpolation/resize_mode overrides
    cache: bool = True
    cache_dir: Optional[str] = None  # null: $GRAPHMM_CACHE/clip or ~/.cache/graphmm/clip
    device: str = "cpu"
    batch_size: int = 64


@dataclass
class ClipTextGraphConf(TextGraphConf):
    """:class:`graphmm.clip.ClipTextGraphBuilder`: word nodes with CLIP text states."""

    _target_: str = "graphmm.clip.ClipTextGraphBuilder"
    name: str = "ViT-B-32"
    checkpoint: Optional[str] = None
    pretrained: Optional[str] = None
    frozen: bool = True
    layer: int = -1
    joint: bool = False
    cache: bool = True
    cache_dir: Optional[str] = None
    device: str = "cpu"
    batch_size: int = 64


@dataclass
class ClipCrossModalConf(CrossModalConf):
    """:class:`graphmm.graphs.CrossModalBuilder` with the ``clip_knn`` relation."""

    clip_knn: int = 0  # each word -> its k most similar patches in CLIP's joint space (0: off)
    clip_knn_chunk: int = 4096


register()
