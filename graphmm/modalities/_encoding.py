"""Helpers the node encoders of several modalities share."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from graphmm.nn.encoders import SinusoidalPositionalEncoding


def node_field(data: Mapping[str, Tensor], ntype: str, key: str) -> Tensor:
    """``data[key]``, or a ``KeyError`` that lists the fields ``ntype`` nodes have."""
    if key not in data:
        raise KeyError(
            f"node type {ntype!r} has no field {key!r} (fields: {sorted(data.keys())}); "
            f"build graphs with graphmm.graphs.MultimodalGraphBuilder or add the field."
        )
    return data[key]


def grid_code(pe: SinusoidalPositionalEncoding, rc: Tensor, hidden: int, dtype: torch.dtype) -> Tensor:
    """2-D sinusoidal code of integer grid positions: :math:`[PE(r) \\| PE(c)]`, each in
    half of the width (zero-padded to ``hidden`` for odd widths), as 2-D ViT codes.

    Shapes:
        rc: ``(N, 2)`` -> ``(N, hidden)``.
    """
    half = hidden // 2
    code = torch.cat([pe(rc[:, 0]), pe(rc[:, 1])], dim=-1).to(dtype)
    return torch.nn.functional.pad(code, (0, hidden - 2 * half))
