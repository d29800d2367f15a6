"""Graph builders: samples of any mix of registered modalities to DGL heterographs.

Importable on its own (no Hydra needed)::

    from graphmm.graphs import MultimodalGraphBuilder, ImageGraphBuilder
"""

from graphmm.graphs.audio import AudioGraphBuilder
from graphmm.graphs.builder import MultimodalGraphBuilder
from graphmm.graphs.cross import CrossModalBuilder, modality_ntypes, summary_ids
from graphmm.graphs.export import draw_sample_graph, graphml_ready, to_networkx, write_graphml
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphs.text import TextGraphBuilder, Vocab, tokenize

__all__ = [
    "AudioGraphBuilder",
    "CrossModalBuilder",
    "ImageGraphBuilder",
    "MultimodalGraphBuilder",
    "TextGraphBuilder",
    "Vocab",
    "draw_sample_graph",
    "graphml_ready",
    "modality_ntypes",
    "summary_ids",
    "to_networkx",
    "tokenize",
    "write_graphml",
]
