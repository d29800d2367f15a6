r"""The ``audio`` modality: each log-mel frame of a clip is a ``frame`` node.

Node builder :class:`graphmm.graphs.AudioGraphBuilder` (relations ``next``/``rev_next``
in time), encoder :class:`FrameEncoder`, schema :class:`AudioGraphConf`
(``graph.audio``). A sample's ``sample_rate`` travels with its audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from graphmm.graphs.audio import AudioGraphBuilder
from graphmm.modalities._encoding import node_field
from graphmm.modalities.base import register_modality
from graphmm.utils import library_default

_B = "graphmm.graphs.AudioGraphBuilder"


@dataclass
class AudioGraphConf:
    """``graph.audio``: the arguments of :class:`~graphmm.graphs.AudioGraphBuilder`, with
    its defaults (read from its signature, so they are written once)."""

    _target_: str = "graphmm.graphs.AudioGraphBuilder"
    sample_rate: int = library_default(_B, "sample_rate")
    n_mels: int = library_default(_B, "n_mels")
    n_fft: int = library_default(_B, "n_fft")
    win_length: Optional[int] = library_default(_B, "win_length")
    hop_length: int = library_default(_B, "hop_length")
    window: int = library_default(_B, "window")
    normalize: str = library_default(_B, "normalize")


class FrameEncoder(nn.Module):
    r"""``frame`` nodes: :math:`h = W [\mathrm{mel} \| \mathrm{tpos}] + b`, a projection of
    the frame's log-mel bands and its normalised time.

    Args:
        in_dim: ``n_mels``.
        hidden: Output width.

    Shapes:
        data: ``mel`` ``(N, n_mels)``, ``tpos`` ``(N,)`` -> ``(N, hidden)``.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim + 1, hidden)  # +1: the normalised time
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, data: Mapping[str, Tensor]) -> Tensor:
        tpos = node_field(data, "frame", "tpos").reshape(-1, 1)
        x = torch.cat([node_field(data, "frame", "mel"), tpos], dim=-1)
        return self.proj(x.to(self.proj.weight.dtype))


register_modality(
    "audio", ntype="frame", summary_id=2, encoder=FrameEncoder, schema=AudioGraphConf, sample_fields=("sample_rate",),
    default_on=True, masked=("mel", "regress"), wide="moments:mel",
)(AudioGraphBuilder)
