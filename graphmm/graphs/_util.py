"""Tensor helpers shared by the graph builders. Everything here is vectorised over
all nodes of a batch; loops run over small constants (window offsets, samples of
equal shape), never over nodes or edges."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

CanonicalEType = tuple[str, str, str]
EdgeDict = dict[CanonicalEType, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class NodeBlock:
    """Nodes of one type for a whole batch, plus the edges among them.

    Attributes:
        ntype: node type name.
        counts: ``(B,)`` int64, nodes of each sample.
        data: node data, each tensor with ``counts.sum()`` rows, in sample order.
        edges: relation -> ``(src, dst)`` int64 ids local to this block.
    """

    ntype: str
    counts: torch.Tensor
    data: dict[str, torch.Tensor] = field(default_factory=dict)
    edges: EdgeDict = field(default_factory=dict)


def segment_offsets(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index of each segment and the segment id of every element.

    Shapes:
        counts: ``(B,)`` -> offsets ``(B,)``, segment ids ``(counts.sum(),)``.
    """
    counts = counts.to(torch.int64)
    offsets = torch.cumsum(counts, 0) - counts
    seg = torch.repeat_interleave(torch.arange(len(counts), dtype=torch.int64), counts)
    return offsets, seg


def block_pairs(
    counts_a: torch.Tensor, counts_b: torch.Tensor, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs ``(a, b)`` of nodes that belong to the same sample.

    Sample ``s`` contributes ``counts_a[s] * counts_b[s]`` pairs (the complete
    bipartite block of the block-diagonal batch). With ``exclude_self`` (same node
    type on both sides) the pairs ``a == b`` are dropped.

    Returns:
        ``(a, b, sample)``: batch-global ids into A and into B, and the sample of each pair.
    """
    counts_a = counts_a.to(torch.int64)
    counts_b = counts_b.to(torch.int64)
    per = counts_a * counts_b
    off_a, _ = segment_offsets(counts_a)
    off_b, _ = segment_offsets(counts_b)
    off_p, sample = segment_offsets(per)
    k = torch.arange(int(per.sum()), dtype=torch.int64) - off_p[sample]
    nb = counts_b[sample].clamp(min=1)
    a_local, b_local = k // nb, k % nb
    a, b = off_a[sample] + a_local, off_b[sample] + b_local
    if exclude_self:
        keep = a_local != b_local
        a, b, sample = a[keep], b[keep], sample[keep]
    return a, b, sample


def knn_in_groups(x: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """k nearest neighbours (Euclidean, self excluded) of every point, within each group.

    Args:
        x: ``(G, N, D)`` points of ``G`` equal-sized groups.
        k: neighbours per point, clipped to ``N - 1``.
        chunk: query rows per distance block, which bounds memory at
            ``O(G * chunk * N)``.

    Returns:
        ``(G, N, k')`` int64 neighbour indices local to each group, nearest first,
        with ``k' = min(k, N - 1)``.
    """
    g, n, _ = x.shape
    kk = min(k, n - 1)
    if kk <= 0:
        return torch.empty(g, n, 0, dtype=torch.int64)
    out = []
    for start in range(0, n, chunk):
        q = x[:, start : start + chunk]
        d = torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist")
        rows = torch.arange(q.shape[1])
        d[:, rows, rows + start] = float("inf")
        out.append(torch.topk(d, kk, dim=-1, largest=False, sorted=True).indices)
    return torch.cat(out, dim=1)


def check_finite(name: str, value: torch.Tensor, where: str) -> None:
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{where}: {name} has {bad} NaN or inf value(s); clean or impute them first")
