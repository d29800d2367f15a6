"""Neural network modules for multimodal heterographs.

Relation convolutions (:class:`SumConv` and the registered ``gcn``/``gat``/``sage``
layers), per-type input encoders, heterogeneous message passing, per-type
readout with modality fusion, heads, the end-to-end :class:`GraphClassifier` and the
text generators :class:`GraphSeq2Seq` (graph) and :class:`SequenceSeq2Seq` (no-graph baseline), and
the no-graph classifiers :class:`SequenceClassifier` and :class:`LateFusionClassifier`.
"""

from .baselines import LateFusionClassifier, SequenceClassifier
from .conv import GATLayer, GCNLayer, SAGELayer, SumConv, get_activation
from .encoders import NodeEncoders, SinusoidalPositionalEncoding
from .generation import GenerationHead, GraphSeq2Seq, NodeMemory, SequenceSeq2Seq, pack_node_states
from .heads import ClassificationHead
from .hetero import HeteroGNN, RelationGraphConv
from .model import GraphClassifier
from .readout import TypeReadout
from .registry import build_conv, get_conv, list_convs, register_conv
from .wide import WidePath

__all__ = [
    "ClassificationHead",
    "GATLayer",
    "GenerationHead",
    "GraphSeq2Seq",
    "GCNLayer",
    "GraphClassifier",
    "LateFusionClassifier",
    "HeteroGNN",
    "NodeEncoders",
    "NodeMemory",
    "RelationGraphConv",
    "SAGELayer",
    "SequenceClassifier",
    "SequenceSeq2Seq",
    "SinusoidalPositionalEncoding",
    "SumConv",
    "TypeReadout",
    "WidePath",
    "build_conv",
    "get_activation",
    "get_conv",
    "list_convs",
    "pack_node_states",
    "register_conv",
]
