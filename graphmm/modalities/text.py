r"""The ``text`` modality: each token of a text is a ``word`` node.

Node builder :class:`graphmm.graphs.TextGraphBuilder` (relations ``next``/``rev_next``
and ``cooccur``), encoder :class:`WordEncoder`, schema :class:`TextGraphConf`
(``graph.text``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from graphmm.graphs.text import TEXT_MAX_TOKENS, TextGraphBuilder  # noqa: F401 - re-exported
from graphmm.modalities._encoding import node_field
from graphmm.modalities.base import register_modality
from graphmm.nn.encoders import SinusoidalPositionalEncoding
from graphmm.utils import library_default

_B = "graphmm.graphs.TextGraphBuilder"


@dataclass
class TextGraphConf:
    """``graph.text``: the arguments of :class:`~graphmm.graphs.TextGraphBuilder`, with
    its defaults (read from its signature, so they are written once)."""

    _target_: str = "graphmm.graphs.TextGraphBuilder"
    window: int = library_default(_B, "window")
    next: bool = library_default(_B, "next")
    min_freq: int = library_default(_B, "min_freq")
    max_tokens: Optional[int] = library_default(_B, "max_tokens")
    hash_buckets: int = library_default(_B, "hash_buckets")
    word_vectors: int = library_default(_B, "word_vectors")


class WordEncoder(nn.Module):
    r"""``word`` nodes: :math:`h = E[\mathrm{token}] + PE(\mathrm{pos})`, a learned
    embedding of the token id plus the fixed sinusoidal code of its position.

    Args:
        in_dim: Vocabulary size (rows of :math:`E`).
        hidden: Output width.

    Shapes:
        data: ``token`` ``(N,)`` int64, ``pos`` ``(N,)`` -> ``(N, hidden)``.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.embed = nn.Embedding(in_dim, hidden)
        self.pos = SinusoidalPositionalEncoding(hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # unit-scale embeddings keep tokens on the scale of the position code
        nn.init.normal_(self.embed.weight)

    @torch.no_grad()
    def load_vectors(self, vectors: Tensor) -> None:
        r"""Start the embedding from word vectors ``(in_dim, d)`` of unit or zero rows
        (:func:`graphmm.graphs.text.ppmi_svd_vectors`): each word with a vector gets it,
        times :math:`\sqrt{d}`, in its first :math:`\min(d, \text{hidden})` columns (so its
        entries have the unit scale of the random start); the other columns and the words
        without a vector keep their random start."""
        if vectors.dim() != 2 or vectors.shape[0] != self.in_dim:
            raise ValueError(f"word vectors must be ({self.in_dim}, d) for this vocabulary, got {tuple(vectors.shape)}")
        d = min(vectors.shape[1], self.embed.embedding_dim)
        known = vectors.norm(dim=1) > 0
        weight = self.embed.weight
        weight[known, :d] = vectors[known, :d].to(weight) * math.sqrt(vectors.shape[1])

    def forward(self, data: Mapping[str, Tensor]) -> Tensor:
        token = node_field(data, "word", "token")
        if token.numel() and (int(token.min()) < 0 or int(token.max()) >= self.in_dim):
            raise ValueError(
                f"word.token ids must be in [0, {self.in_dim}), got range [{int(token.min())}, "
                f"{int(token.max())}]; raise in_dims['word'] to the vocabulary size used to build the graphs."
            )
        return self.embed(token.long()) + self.pos(node_field(data, "word", "pos"))


# masked: what self-supervised pretraining hides and predicts (graphmm.pretrain)
register_modality("text", ntype="word", summary_id=0, encoder=WordEncoder, schema=TextGraphConf, default_on=True,
                  masked=("token", "class"), wide="ngrams")(TextGraphBuilder)
