"""Types shared by the graph builders, the layers and the entry points.

Each is defined here once; :mod:`graphmm.graphs` and :mod:`graphmm.nn` import them
from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: A relation as DGL names it: ``(source node type, relation, destination node type)``,
#: e.g. ``("word", "next", "word")`` or ``("frame", "aligned", "word")``.
CanonicalEType = tuple[str, str, str]

#: Edges of several relations: relation -> ``(src, dst)`` int64 node ids, each ``(E,)``.
EdgeDict = dict[CanonicalEType, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class NodeBlock:
    """Nodes of one type for a whole batch, plus the edges among them: what a node
    builder's batch path returns.

    Attributes:
        ntype: node type name.
        counts: ``(B,)`` int64, nodes of each sample.
        data: node data, each tensor with ``counts.sum()`` rows, in sample order.
        edges: relation -> ``(src, dst)`` int64 ids local to this block.

    Example:
        >>> block = NodeBlock("word", torch.tensor([2, 1]), {"token": torch.tensor([5, 6, 7])})
        >>> int(block.counts.sum()) == len(block.data["token"])
        True
    """

    ntype: str
    counts: torch.Tensor
    data: dict[str, torch.Tensor] = field(default_factory=dict)
    edges: EdgeDict = field(default_factory=dict)


__all__ = ["CanonicalEType", "EdgeDict", "NodeBlock"]
