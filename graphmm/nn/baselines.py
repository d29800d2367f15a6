"""Classifiers without message passing, for comparison with :class:`GraphClassifier`.

Both read the same heterograph and the same node features as the graph model, so a
difference in accuracy measures what the typed edges add:

- :class:`SequenceClassifier` (``model=transformer``): the sample's nodes as one token
  sequence under full self-attention, the no-graph alternative;
- :class:`LateFusionClassifier` (``model=late_fusion``): one encoder per modality over
  its nodes as a set, concatenation, an MLP (MultiBench's late fusion). With a single
  modality it is a bag-of-embeddings model (for text, fastText-like).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dgl
import torch
from torch import Tensor, nn

from .encoders import NodeEncoders
from .generation import NodeMemory
from .heads import ClassificationHead
from .readout import TypeReadout

__all__ = ["LateFusionClassifier", "SequenceClassifier"]


def _modality_ntypes(in_dims: Mapping[str, int]) -> list[str]:
    # summary nodes only exist to connect modalities in a graph; without edges they carry nothing
    ntypes = sorted(t for t in in_dims if t != "summary")
    if not ntypes:
        raise ValueError(f"in_dims {sorted(in_dims)} has no modality node type (word, patch or frame).")
    return ntypes


class _NodeClassifier(nn.Module):
    """What both no-graph classifiers share: argument checks, the modality node types
    (``summary`` dropped) and the graph model's node encoders for them."""

    def __init__(
        self, in_dims: Mapping[str, int], num_classes: int, hidden: int,
        encoders: Mapping[str, Mapping[str, Any]] | None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.hidden, self.num_classes = hidden, num_classes
        self.ntypes = _modality_ntypes(self.in_dims)
        self.encoders = NodeEncoders({t: self.in_dims[t] for t in self.ntypes}, hidden, featurizers=encoders)


class SequenceClassifier(_NodeClassifier):
    r"""The no-graph baseline: a sample's nodes as one token sequence, a Transformer encoder.

    .. math::

        m_b = \mathrm{Mem}\big(\mathrm{Enc}(x)\big) \in \mathbb{R}^{(1+M_b) \times d},\qquad
        h_b = \mathrm{TransformerEncoder}(m_b),\qquad
        y_b = \mathrm{Head}\Big(\tfrac{1}{1+M_b} \textstyle\sum_{k \le M_b} h_{b,k}\Big)

    :math:`\mathrm{Enc}` are the graph model's node encoders (features plus grid or
    word/frame position codes) and :math:`\mathrm{Mem}` is :class:`NodeMemory` (type
    embeddings, order codes, a learned slot that every sample has, so a sample with
    no nodes still gives finite logits). Padding is masked out of attention and of the
    mean. A missing modality is simply absent from the sequence. ``canonical_etypes``
    and the graph options (``conv``, ``aggregate``...) are accepted and ignored, so a
    config can switch between this and :class:`GraphClassifier` with ``model=``.

    Args:
        in_dims: Raw size per node type (see :class:`NodeEncoders`).
        canonical_etypes: Ignored.
        num_classes: Number of logits.
        hidden: Width :math:`d`. Default: ``64``.
        num_layers: Encoder layers. Default: ``3``.
        heads: Attention heads (must divide ``hidden``). Default: ``4``.
        dropout: Dropout in the encoder and the head. Default: ``0.1``.
        head_hidden: Hidden width of the head, ``None`` for linear. Default: ``None``.
        encoders: Per node type, where features come from (as in :class:`GraphClassifier`).

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> from graphmm.graphs import MultimodalGraphBuilder
        >>> from graphmm.nn import SequenceClassifier
        >>> builder = MultimodalGraphBuilder()
        >>> g = builder.batch([Sample(text="a seven", image=torch.rand(1, 8, 8)), Sample(text="one")])
        >>> SequenceClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=16)(g).shape
        torch.Size([2, 10])

    Shapes:
        - Input: batched heterograph with :math:`B` graphs.
        - Output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        canonical_etypes: Sequence[Sequence[str]] = (),
        num_classes: int = 2,
        *,
        hidden: int = 64,
        num_layers: int = 3,
        heads: int = 4,
        dropout: float = 0.1,
        head_hidden: int | None = None,
        encoders: Mapping[str, Mapping[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        if hidden % heads:
            raise ValueError(f"heads={heads} must divide hidden={hidden}")
        super().__init__(in_dims, num_classes, hidden, encoders)
        self.memory = NodeMemory(self.ntypes, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        # nested tensors would make padded outputs differ between train and eval
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.head = ClassificationHead(hidden, num_classes, hidden=head_hidden, dropout=dropout)

    def forward(self, g: dgl.DGLGraph) -> Tensor:
        """Logits ``(B, num_classes)`` for a (batched) heterograph."""
        memory, pad = self.memory(g, self.encoders(g))
        h = self.encoder(memory, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1))


class LateFusionClassifier(_NodeClassifier):
    r"""Late fusion: one encoder per modality, concatenation, an MLP.

    For each modality :math:`t` (``word``, ``patch``, ``frame``) of graph :math:`b`,
    with node set :math:`V_{b,t}`:

    .. math::

        u_{b,t} = \frac{1}{|V_{b,t}|} \sum_{i \in V_{b,t}} \phi_t\big(\mathrm{Enc}_t(x_i)\big),
        \qquad
        y_b = \mathrm{MLP}\big([\,u_{b,1} \,\|\, \dots \,\|\, u_{b,T}\,]\big)

    where :math:`\phi_t` is a two-layer MLP applied to each node (a Deep Sets encoder;
    the node encoders add the grid or order codes, so position is not lost) and
    :math:`u_{b,t} = 0` when the modality is missing: the fusion MLP gets zeros, as in
    MultiBench, and no presence flag. Nodes never exchange information, within or
    across modalities, which is what sets it apart from the graph model.

    Args:
        in_dims: Raw size per node type (``summary`` is ignored).
        canonical_etypes: Ignored.
        num_classes: Number of logits.
        hidden: Width :math:`d` of each modality's encoding. Default: ``64``.
        dropout: Dropout in the encoders and the fusion MLP. Default: ``0.1``.
        pool: Per-modality pooling (``"mean"``, ``"max"``, ``"attention"``). Default: ``"mean"``.
        head_hidden: Hidden width of the fusion MLP. Default ``None``: ``hidden``.
        encoders: Per node type, where features come from (as in :class:`GraphClassifier`).

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> from graphmm.graphs import MultimodalGraphBuilder
        >>> from graphmm.nn import LateFusionClassifier
        >>> builder = MultimodalGraphBuilder()
        >>> g = builder.batch([Sample(text="a seven", image=torch.rand(1, 8, 8)), Sample(text="one")])
        >>> LateFusionClassifier(builder.in_dims, builder.canonical_etypes, 10, hidden=16)(g).shape
        torch.Size([2, 10])

    Shapes:
        - Input: batched heterograph with :math:`B` graphs.
        - Output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        canonical_etypes: Sequence[Sequence[str]] = (),
        num_classes: int = 2,
        *,
        hidden: int = 64,
        dropout: float = 0.1,
        pool: str = "mean",
        head_hidden: int | None = None,
        encoders: Mapping[str, Mapping[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        super().__init__(in_dims, num_classes, hidden, encoders)
        self.phi = nn.ModuleDict(
            {
                t: nn.Sequential(
                    nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
                )
                for t in self.ntypes
            }
        )
        # pooling only: the fusion is the plain concatenation below, zeros for a missing modality
        self.pool = TypeReadout(self.ntypes, hidden, pool=pool, fusion="concat")
        self.head = ClassificationHead(
            hidden * len(self.ntypes), num_classes, hidden=head_hidden or hidden, dropout=dropout
        )

    def forward(self, g: dgl.DGLGraph) -> Tensor:
        """Logits ``(B, num_classes)`` for a (batched) heterograph."""
        h = self.encoders(g)
        pooled, _ = self.pool.pool_types(g, {t: self.phi[t](x) for t, x in h.items()})
        return self.head(torch.cat([pooled[t] for t in self.ntypes], dim=1))
