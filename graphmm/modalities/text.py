r"""The ``text`` modality: each token of a text is a ``word`` node.

Node builder :class:`graphmm.graphs.TextGraphBuilder` (relations ``next``/``rev_next``
and ``cooccur``), encoder :class:`WordEncoder`, schema :class:`TextGraphConf`
(``graph.text``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

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
