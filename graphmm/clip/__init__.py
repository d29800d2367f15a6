"""Pretrained open_clip towers as node featurizers, and CLIP-space cross-modal edges.

* :class:`ClipImageGraphBuilder` / :class:`ClipTextGraphBuilder`: ``patch`` nodes that
  are CLIP's patch tokens and ``word`` nodes with CLIP text states, frozen features
  cached on disk (plug into :class:`graphmm.graphs.MultimodalGraphBuilder`).
* :class:`ClipNodeEncoder`: the model side, used by :class:`graphmm.nn.NodeEncoders`
  for featurizers of ``type: open_clip`` (frozen, or fine-tuned inside ``forward``).
* :func:`cross_topk`: the batched, chunked top-k behind the ``clip_knn`` relation of
  :class:`graphmm.graphs.CrossModalBuilder`.
* :func:`load_clip`, :func:`register_model_config`: offline loading; weights only ever
  come from a local file.

Names are imported on first use, so ``import graphmm.clip`` does not import open_clip.
The core never imports this package: :mod:`graphmm.clip.plugin` registers its parts
when the core loads plug-ins (:mod:`graphmm.plugins`). See ``docs/clip.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClipImageGraphBuilder": "graphmm.clip.builders",
    "ClipTextGraphBuilder": "graphmm.clip.builders",
    "ClipNodeEncoder": "graphmm.clip.featurizers",
    "ClipTextTower": "graphmm.clip.featurizers",
    "ClipVisionTower": "graphmm.clip.featurizers",
    "patches_to_images": "graphmm.clip.featurizers",
    "pool_pieces": "graphmm.clip.featurizers",
    "words_to_sequences": "graphmm.clip.featurizers",
    "ClipBundle": "graphmm.clip.loading",
    "clear_memo": "graphmm.clip.loading",
    "load_clip": "graphmm.clip.loading",
    "load_tokenizer": "graphmm.clip.loading",
    "model_config": "graphmm.clip.loading",
    "preprocess_config": "graphmm.clip.loading",
    "register_model_config": "graphmm.clip.loading",
    "resolve_weights": "graphmm.clip.loading",
    "text_config": "graphmm.clip.loading",
    "vision_config": "graphmm.clip.loading",
    "FeatureCache": "graphmm.cache",  # the one feature cache of graphmm, re-exported
    "file_sha256": "graphmm.clip.cache",
    "cross_topk": "graphmm.clip.knn",
    "FEATURIZER_TYPES": "graphmm.clip.spec",
    "FeaturizerConf": "graphmm.config",
    "parse_featurizers": "graphmm.clip.spec",
}

__all__ = [
    "ClipBundle",
    "ClipImageGraphBuilder",
    "ClipNodeEncoder",
    "ClipTextGraphBuilder",
    "ClipTextTower",
    "ClipVisionTower",
    "FEATURIZER_TYPES",
    "FeatureCache",
    "FeaturizerConf",
    "clear_memo",
    "cross_topk",
    "file_sha256",
    "load_clip",
    "load_tokenizer",
    "model_config",
    "parse_featurizers",
    "patches_to_images",
    "pool_pieces",
    "preprocess_config",
    "register_model_config",
    "resolve_weights",
    "text_config",
    "vision_config",
    "words_to_sequences",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphmm.clip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
