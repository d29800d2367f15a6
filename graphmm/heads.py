"""Task heads: :class:`ClassificationHead` (labels) and :class:`GenerationHead` (text).

Both also live in :mod:`graphmm.nn`; this module gathers the heads in one place.
"""

from graphmm.nn.generation import GenerationHead, NodeMemory
from graphmm.nn.heads import ClassificationHead

__all__ = ["ClassificationHead", "GenerationHead", "NodeMemory"]
