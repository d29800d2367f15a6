r"""The ``image`` modality: each patch of an image is a ``patch`` node.

Node builder :class:`graphmm.graphs.ImageGraphBuilder` (relations ``adjacent`` or the
directional ``adj_*``, and ``similar``), encoder :class:`PatchEncoder`, schema
:class:`ImageGraphConf` (``graph.image``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from graphmm.graphs.image import ImageGraphBuilder
from graphmm.modalities._encoding import grid_code, node_field
from graphmm.modalities.base import register_modality
from graphmm.nn.encoders import SinusoidalPositionalEncoding
from graphmm.utils import library_default

_B = "graphmm.graphs.ImageGraphBuilder"


@dataclass
class ImageGraphConf:
    """``graph.image``: the arguments of :class:`~graphmm.graphs.ImageGraphBuilder`, with
    its defaults (read from its signature, so they are written once)."""

    _target_: str = "graphmm.graphs.ImageGraphBuilder"
    patch_size: int = library_default(_B, "patch_size")
    stride: Optional[int] = library_default(_B, "stride")
    neighbors: int = library_default(_B, "neighbors")
    directional: bool = library_default(_B, "directional")
    knn: int = library_default(_B, "knn")
    knn_radius: Optional[int] = library_default(_B, "knn_radius")
    channels: Optional[int] = library_default(_B, "channels")


class PatchEncoder(nn.Module):
    r"""``patch`` nodes: :math:`h = W [\mathrm{pixels} \| \mathrm{grid}] + b + [PE(r) \| PE(c)]`,
    a projection of the patch's pixels and normalised centre plus the 2-D sinusoidal
    code of its integer grid row and column, so patches keep where they sit.

    Args:
        in_dim: Flattened patch size ``C*p*p``.
        hidden: Output width.

    Shapes:
        data: ``pixels`` ``(N, C*p*p)``, ``grid`` ``(N, 2)``, optional ``rc`` ``(N, 2)``
        -> ``(N, hidden)``.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.proj = nn.Linear(in_dim + 2, hidden)  # +2: the normalised (row, col)
        self.pos = SinusoidalPositionalEncoding(max(hidden // 2, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, data: Mapping[str, Tensor]) -> Tensor:
        x = torch.cat([node_field(data, "patch", "pixels"), node_field(data, "patch", "grid")], dim=-1)
        h = self.proj(x.to(self.proj.weight.dtype))
        rc = data.get("rc")
        if rc is not None and self.hidden >= 2:
            h = h + grid_code(self.pos, rc, self.hidden, h.dtype)
        return h


register_modality("image", ntype="patch", summary_id=1, encoder=PatchEncoder, schema=ImageGraphConf, default_on=True,
                  masked=("pixels", "regress"), wide="cells:pixels")(
    ImageGraphBuilder
)
