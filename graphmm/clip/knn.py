"""Cross-modal top-k by cosine similarity, batched over the samples of a graph batch.

Torch only (no open_clip import), so :mod:`graphmm.graphs.cross` can use it without
loading CLIP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_topk"]


def cross_topk(
    emb_a: torch.Tensor,
    counts_a: torch.Tensor,
    emb_b: torch.Tensor,
    counts_b: torch.Tensor,
    k: int,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""For every A node, the ``k`` B nodes of the same sample with the highest cosine similarity.

    .. math::

        \mathcal{N}_k(a) = \operatorname{top-k}_{b \in B(s_a)}
        \frac{\langle e_a, e_b \rangle}{\lVert e_a \rVert \, \lVert e_b \rVert}

    where :math:`B(s_a)` are the B nodes of the sample that holds node :math:`a`. A
    sample with fewer than ``k`` B nodes links each A node to all of them; a sample
    without A or B nodes gives no pair.

    The batch is laid out as padded per-sample blocks, ``(S, n_A, D)`` and
    ``(S, n_B, D)`` with ``n_A``, ``n_B`` the largest counts of the batch, so one
    batched matrix product scores every pair of every sample at once and never
    compares nodes of different samples (the block-diagonal of the full ``N_A x N_B``
    score matrix). Padding columns are masked with :math:`-\infty` before
    ``topk``; padding rows are dropped afterwards. Samples are processed in chunks of
    about ``chunk // n_A`` samples, so memory stays at ``O(chunk * n_B)`` scores
    plus the padded embeddings.

    Args:
        emb_a: ``(N_A, D)`` embeddings of the A nodes, in sample order.
        counts_a: ``(S,)`` A nodes per sample.
        emb_b: ``(N_B, D)`` embeddings of the B nodes, in sample order.
        counts_b: ``(S,)`` B nodes per sample.
        k: neighbours per A node (``k >= 1``).
        chunk: padded A rows scored per block.

    Returns:
        ``(src, dst)``: int64 batch-global ids into A and into B, ``min(k, n_B(s))``
        pairs per A node of sample ``s``, grouped by A node, most similar first.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> b = torch.tensor([[0.0, 2.0], [3.0, 0.1], [1.0, 1.0]])
        >>> src, dst = cross_topk(a, torch.tensor([2]), b, torch.tensor([3]), k=1)
        >>> src.tolist(), dst.tolist()
        ([0, 1], [1, 0])

    Shapes:
        - Input: ``(N_A, D)``, ``(S,)``, ``(N_B, D)``, ``(S,)``.
        - Output: two ``(E,)`` int64 tensors, ``E = sum_s n_A(s) * min(k, n_B(s))``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    counts_a = counts_a.to(torch.int64).cpu()
    counts_b = counts_b.to(torch.int64).cpu()
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"counts_a {tuple(counts_a.shape)} and counts_b {tuple(counts_b.shape)} must both be (S,)")
    if int(counts_a.sum()) != emb_a.shape[0] or int(counts_b.sum()) != emb_b.shape[0]:
        raise ValueError(
            f"counts do not match the embeddings: {int(counts_a.sum())} vs {emb_a.shape[0]} A rows, "
            f"{int(counts_b.sum())} vs {emb_b.shape[0]} B rows"
        )
    empty = torch.zeros(0, dtype=torch.int64)
    both = (counts_a > 0) & (counts_b > 0)
    if not bool(both.any()):
        return empty, empty.clone()
    if emb_a.shape[1] != emb_b.shape[1]:
        raise ValueError(f"embeddings must share their width, got {emb_a.shape[1]} and {emb_b.shape[1]}")

    device = emb_a.device
    samples = torch.nonzero(both).squeeze(1)  # only samples with nodes on both sides
    na, nb = counts_a[samples], counts_b[samples]
    off_a = (torch.cumsum(counts_a, 0) - counts_a)[samples]
    off_b = (torch.cumsum(counts_b, 0) - counts_b)[samples]
    max_a, max_b = int(na.max()), int(nb.max())
    kk = min(int(k), max_b)
    a = F.normalize(emb_a.float(), dim=-1)
    b = F.normalize(emb_b.float(), dim=-1)

    rows_a = torch.arange(max_a)
    rows_b = torch.arange(max_b)
    per_chunk = max(1, int(chunk) // max_a)
    src_parts, dst_parts = [], []
    for s0 in range(0, len(samples), per_chunk):  # chunks of samples, each one batched product
        sl = slice(s0, s0 + per_chunk)
        ca, cb, oa, ob = na[sl], nb[sl], off_a[sl], off_b[sl]
        valid_a = rows_a[None, :] < ca[:, None]  # (c, max_a)
        valid_b = rows_b[None, :] < cb[:, None]  # (c, max_b)
        ia = torch.where(valid_a, oa[:, None] + rows_a[None, :], torch.zeros_like(valid_a, dtype=torch.int64))
        ib = torch.where(valid_b, ob[:, None] + rows_b[None, :], torch.zeros_like(valid_b, dtype=torch.int64))
        qa = a[ia.to(device)]  # (c, max_a, D); padding rows repeat row 0 and are dropped below
        kb = b[ib.to(device)]  # (c, max_b, D)
        sim = torch.bmm(qa, kb.transpose(1, 2))  # (c, max_a, max_b)
        sim = sim.masked_fill(~valid_b.to(device)[:, None, :], float("-inf"))
        top = torch.topk(sim, kk, dim=-1, largest=True, sorted=True).indices.cpu()  # (c, max_a, kk)
        # the j-th neighbour exists when the sample has more than j B nodes
        keep = valid_a[:, :, None] & (torch.arange(kk)[None, None, :] < cb[:, None, None])
        src = ia[:, :, None].expand(-1, -1, kk)[keep]
        dst = (ob[:, None, None] + top)[keep]
        src_parts.append(src)
        dst_parts.append(dst)
    return torch.cat(src_parts), torch.cat(dst_parts)
