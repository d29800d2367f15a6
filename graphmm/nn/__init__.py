"""Neural network modules for multimodal heterographs.

Relation convolutions (:class:`SumConv` and the registered ``gcn``/``gat``/``sage``
layers), per-type input encoders, heterogeneous message passing, per-type
readout with modality fusion, heads, and the end-to-end :class:`GraphClassifier`.
"""

from .conv import GATLayer, GCNLayer, SAGELayer, SumConv, get_activation
from .encoders import NodeEncoders, SinusoidalPositionalEncoding
from .heads import ClassificationHead
from .hetero import HeteroGNN, RelationGraphConv
from .model import GraphClassifier
from .readout import TypeReadout
from .registry import build_conv, get_conv, list_convs, register_conv

__all__ = [
    "ClassificationHead",
    "GATLayer",
    "GCNLayer",
    "GraphClassifier",
    "HeteroGNN",
    "NodeEncoders",
    "RelationGraphConv",
    "SAGELayer",
    "SinusoidalPositionalEncoding",
    "SumConv",
    "TypeReadout",
    "build_conv",
    "get_activation",
    "get_conv",
    "list_convs",
    "register_conv",
]
