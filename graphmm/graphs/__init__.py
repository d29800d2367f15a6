"""Graph builders: samples of any mix of text, image and audio to DGL heterographs.

Importable on its own (no Hydra needed)::

    from graphmm.graphs import MultimodalGraphBuilder, ImageGraphBuilder
"""

from graphmm.graphs.audio import AudioGraphBuilder
from graphmm.graphs.builder import MultimodalGraphBuilder
from graphmm.graphs.cross import MODALITY_NTYPES, NTYPE_ORDER, CrossModalBuilder
from graphmm.graphs.export import to_networkx
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphs.text import TextGraphBuilder, Vocab, tokenize

__all__ = [
    "AudioGraphBuilder",
    "CrossModalBuilder",
    "ImageGraphBuilder",
    "MODALITY_NTYPES",
    "MultimodalGraphBuilder",
    "NTYPE_ORDER",
    "TextGraphBuilder",
    "Vocab",
    "to_networkx",
    "tokenize",
]
