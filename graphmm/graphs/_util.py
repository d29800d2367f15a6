"""Tensor helpers shared by the graph builders. Everything here is vectorised over
all nodes of a batch; loops run over small constants (window offsets, samples of
equal shape), never over nodes or edges."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from graphmm.graphtypes import CanonicalEType, EdgeDict, NodeBlock


def segment_offsets(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index of each segment and the segment id of every element.

    Shapes:
        counts: ``(B,)`` -> offsets ``(B,)``, segment ids ``(counts.sum(),)``.
    """
    counts = counts.to(torch.int64)
    offsets = torch.cumsum(counts, 0) - counts
    seg = torch.repeat_interleave(torch.arange(len(counts), dtype=torch.int64), counts)
    return offsets, seg


def sequence_edges(pos: torch.Tensor, length: torch.Tensor, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges ``i -> i + o`` between the elements of sequences, for each offset ``o`` of
    ``offsets`` where the target stays in the sequence (``0 <= pos_i + o < length_i``).

    Element ``i`` of the batch sits at position ``pos[i]`` of a sequence of ``length[i]``
    elements, the sequences one after another. The ``(N, len(offsets))`` grid of
    candidate edges is read row by row, so with ascending ``offsets`` the edges come
    out sorted by (source, destination): the order a batch graph keeps, which then
    needs no sort.

    Shapes:
        pos, length: ``(N,)`` -> src, dst: ``(E,)`` each.

    Example:
        >>> import torch
        >>> pos, length = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([3, 3, 3, 2, 2])
        >>> src, dst = sequence_edges(pos, length, [-1, 1])
        >>> src.tolist(), dst.tolist()
        ([0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3])
    """
    pos, length = pos.to(torch.int64), length.to(torch.int64)
    if len(offsets) == 1:  # one mask over the elements, no (N, O) grid
        o = offsets[0]
        src = (((pos + o) >= 0) & ((pos + o) < length)).nonzero().squeeze(1)
        return src, src + o
    off = torch.tensor(offsets, dtype=torch.int64)
    target = pos.unsqueeze(1) + off
    rows, cols = ((target >= 0) & (target < length.unsqueeze(1))).nonzero(as_tuple=True)  # row-major
    return rows, rows + off[cols]


def split_block(block: NodeBlock) -> list[NodeBlock]:
    """Split a batch block into one block per sample, node ids local to each sample.

    The inverse of :func:`concat_blocks`. Every edge must join two nodes of the same
    sample, as the edges within one modality do. The pieces own their memory (no
    views into the batch tensors), so saving one does not save the whole batch.

    Shapes:
        a block with ``counts`` ``(B,)`` -> ``B`` blocks with ``counts`` ``(1,)``.
    """
    counts = block.counts.to(torch.int64)
    b = len(counts)
    offsets, seg = segment_offsets(counts)
    sizes = counts.tolist()
    data = {k: torch.split(v, sizes) for k, v in block.data.items()}
    edges: dict[CanonicalEType, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}
    for rel, (src, dst) in block.edges.items():
        sample = seg[src]
        if not torch.equal(sample, seg[dst]):
            raise ValueError(f"relation {rel} has edges between different samples; split_block needs per-sample edges")
        order = torch.argsort(sample, stable=True)
        sample = sample[order]
        per = torch.bincount(sample, minlength=b).tolist()
        edges[rel] = (torch.split(src[order] - offsets[sample], per), torch.split(dst[order] - offsets[sample], per))
    return [
        NodeBlock(
            ntype=block.ntype,
            counts=counts[i : i + 1].clone(),
            data={k: v[i].clone() for k, v in data.items()},
            edges={rel: (s[i].clone(), d[i].clone()) for rel, (s, d) in edges.items()},
        )
        for i in range(b)
    ]


def concat_blocks(parts: list[NodeBlock], ntype: str) -> NodeBlock:
    """Concatenate per-sample (or per-batch) blocks into one batch block.

    Node data is concatenated in order; each part's edge ids are shifted by the nodes
    of the parts before it. A relation missing from some parts counts as empty there.

    Shapes:
        parts with ``counts`` ``(B_i,)`` -> one block with ``counts`` ``(sum B_i,)``.
    """
    if not parts:
        raise ValueError("concat_blocks needs at least one block")
    counts = torch.cat([p.counts.to(torch.int64).reshape(-1) for p in parts])
    sizes = torch.tensor([int(p.counts.sum()) for p in parts], dtype=torch.int64)
    offsets = torch.cumsum(sizes, 0) - sizes
    keys = list(parts[0].data)
    if any(list(p.data) != keys for p in parts):
        raise ValueError(f"blocks to concatenate carry different node data fields; expected {keys} in every block")
    data = {k: torch.cat([p.data[k] for p in parts]) for k in keys}
    rels: list[CanonicalEType] = []
    for p in parts:
        rels += [r for r in p.edges if r not in rels]
    empty = torch.zeros(0, dtype=torch.int64)
    edges: EdgeDict = {}
    for rel in rels:
        pairs = [p.edges.get(rel, (empty, empty)) for p in parts]
        shift = torch.repeat_interleave(offsets, torch.tensor([len(s) for s, _ in pairs], dtype=torch.int64))
        edges[rel] = (torch.cat([s for s, _ in pairs]) + shift, torch.cat([d for _, d in pairs]) + shift)
    return NodeBlock(ntype=ntype, counts=counts, data=data, edges=edges)


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


def _euclid(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of ``(..., M, D)`` and ``(..., K, D)`` rows, ``(..., M, K)``.

    Every pair is computed on its own (no ``|q|^2 + |c|^2 - 2 q.c`` expansion), so a
    pair's distance does not depend on the block it is computed in: chunked and
    unchunked searches see bitwise equal values.
    """
    return torch.cdist(q, c, compute_mode="donot_use_mm_for_euclid_dist")


def _lexsmallest(dist: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest ``(dist, index)`` pairs of each row, in lexicographic order.

    Sorting by index and then stably by distance orders equal distances by index.
    NaN distances (masked candidates) sort last.

    Shapes:
        dist, index: ``(..., M)`` -> ``(..., k)`` each.
    """
    index, perm = torch.sort(index, dim=-1)
    dist, perm = torch.sort(dist.gather(-1, perm), dim=-1, stable=True)
    return dist[..., :k], index.gather(-1, perm)[..., :k]


def knn_in_groups(
    x: torch.Tensor, k: int, chunk: int = 2048, candidate_chunk: int | None = None
) -> torch.Tensor:
    """Exact k nearest neighbours (Euclidean, self excluded) of every point, within each group.

    Point :math:`i` of a group gets the :math:`k' = \\min(k, N - 1)` points
    :math:`j \\ne i` of the same group with the smallest
    :math:`(\\lVert x_i - x_j \\rVert_2, j)`: nearest first, and among equal distances
    the lower index first, so the answer is unique and does not depend on ``chunk``.
    (A single ``topk`` over all candidates gives the same answer except where several
    candidates tie at the :math:`k'`-th distance; it then picks among them arbitrarily.)

    The search is blocked over both queries and candidates: each block of
    ``chunk x candidate_chunk`` distances is reduced to its own top :math:`k'` (a
    ``torch.topk``; in rows where the :math:`k'`-th distance is tied, the ties go to
    the lowest indices), then merged into a running top :math:`k'` per query.
    Extra memory is :math:`O(\\mathrm{chunk} \\cdot \\mathrm{candidate\\_chunk} + G N k')`,
    whatever the group size; time stays :math:`O(G N^2 D)`, as for any exact search
    (see :func:`knn_in_grid` for a linear-time search restricted to a window).

    Args:
        x: ``(G, N, D)`` points of ``G`` equal-sized groups, finite.
        k: neighbours per point, clipped to ``N - 1``.
        chunk: query rows per block.
        candidate_chunk: candidate columns per block; ``None`` means ``chunk``.
            Small groups are processed several at a time, up to
            ``chunk * candidate_chunk`` distances per block.

    Returns:
        ``(G, N, k')`` int64 neighbour indices local to each group, nearest first.

    Shapes:
        x: ``(G, N, D)`` -> ``(G, N, min(k, N - 1))`` (``(G, N, 0)`` when ``N <= 1``
        or ``k <= 0``).

    Example:
        >>> x = torch.tensor([[[0.0], [1.0], [3.0], [4.0]]])
        >>> knn_in_groups(x, 2).tolist()
        [[[1, 2], [0, 2], [3, 1], [2, 1]]]
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (G, N, D), got shape {tuple(x.shape)}; add a leading group axis with x[None]")
    if chunk < 1 or (candidate_chunk is not None and candidate_chunk < 1):
        raise ValueError(f"chunk and candidate_chunk must be >= 1, got {chunk} and {candidate_chunk}")
    g, n, _ = x.shape
    kk = max(0, min(k, n - 1))
    if kk == 0 or g == 0:
        return torch.empty(g, n, kk, dtype=torch.int64)
    cq, cc = min(chunk, n), min(candidate_chunk or chunk, n)
    groups = max(1, (chunk * (candidate_chunk or chunk)) // (cq * cc))  # groups per block
    out = torch.empty(g, n, kk, dtype=torch.int64)
    for g0 in range(0, g, groups):
        for q0 in range(0, n, cq):
            out[g0 : g0 + groups, q0 : q0 + cq] = knn_query_block(x[g0 : g0 + groups], q0, cq, kk, cc)
    return out


def knn_query_block(x: torch.Tensor, start: int, rows: int, k: int, candidate_chunk: int) -> torch.Tensor:
    """Exact neighbours of the queries ``start : start + rows`` of each group: one
    step of :func:`knn_in_groups` (same order and tie-breaking), scanning all
    candidates ``candidate_chunk`` at a time.

    Args:
        x: ``(G, N, D)`` points.
        start: first query row.
        rows: number of query rows (clipped at ``N``).
        k: neighbours, ``1 <= k <= N - 1``.
        candidate_chunk: candidate columns per distance block.

    Returns:
        ``(G, m, k)`` int64 indices, ``m = min(rows, N - start)``.
    """
    n = x.shape[1]
    q = x[:, start : start + rows]
    gb, m = q.shape[0], q.shape[1]
    nan = float("nan")
    # running top-k per query; NaN sentinels sort after every real candidate
    best_d = torch.full((gb, m, k), nan, dtype=x.dtype)
    best_i = torch.full((gb, m, k), -1, dtype=torch.int64)
    for c0 in range(0, n, candidate_chunk):
        d = _euclid(q, x[:, c0 : c0 + candidate_chunk])  # (gb, m, w)
        w = d.shape[-1]
        lo, hi = max(start, c0), min(start + m, c0 + w)
        if lo < hi:  # the block crosses the diagonal: mask each query itself
            diag = torch.arange(lo, hi)
            d[:, diag - start, diag - c0] = nan
        kc = min(k, w)
        if kc == w:
            sel_d, sel_j = d, torch.arange(w).expand_as(d)
        else:
            sel_d, sel_j = torch.topk(d, kc, dim=-1, largest=False, sorted=False)
            # topk picks arbitrarily among distances equal to its kc-th one; where more
            # than kc candidates lie at or below it, keep every closer one and the
            # lowest-indexed of the equal ones (linear, no sort)
            kth = sel_d.max(dim=-1, keepdim=True).values
            tied = (d <= kth).sum(dim=-1) > kc
            if bool(tied.any()):
                sub, sub_kth = d[tied], kth[tied]
                less, equal = sub < sub_kth, sub == sub_kth
                need = kc - less.sum(dim=-1, keepdim=True)
                keep = less | (equal & (torch.cumsum(equal, dim=-1) <= need))
                order = keep.nonzero()[:, 1].reshape(-1, kc)  # exactly kc per row, ascending
                sel_j[tied] = order
                sel_d[tied] = sub.gather(-1, order)
        best_d, best_i = _lexsmallest(
            torch.cat([best_d, sel_d], dim=-1), torch.cat([best_i, sel_j + c0], dim=-1), k
        )
    return best_i


def knn_in_grid(
    x: torch.Tensor, grid: tuple[int, int], k: int, radius: int, chunk: int = 4096
) -> torch.Tensor:
    """k nearest neighbours of every grid cell among the cells of a window around it.

    For grid-structured points (image patches numbered row-major on an
    :math:`n_H \\times n_W` grid), the candidates of cell :math:`(r, c)` are the
    cells of a :math:`w_H \\times w_W` window, :math:`w_H = \\min(2R + 1, n_H)`
    (likewise :math:`w_W`), centred on the cell and shifted inwards at the borders so
    that every cell has the same :math:`w_H w_W - 1` candidates:

    .. math::

        r_0 = \\min\\big(\\max(r - R, 0),\\; n_H - w_H\\big), \\qquad
        \\mathcal{C}(r, c) = \\{(r_0 + a, c_0 + b) : 0 \\le a < w_H,\\; 0 \\le b < w_W\\}
        \\setminus \\{(r, c)\\}.

    Among them it keeps the :math:`k' = \\min(k, w_H w_W - 1)` smallest
    :math:`(\\lVert x_i - x_j \\rVert_2, j)`, with the distances and tie-breaking of
    :func:`knn_in_groups`, so when the window covers the grid
    (:math:`2R + 1 \\ge \\max(n_H, n_W)`) the answer equals the exact search. Cost
    :math:`O(G N w_H w_W D)` time and :math:`O(\\mathrm{chunk} \\cdot w_H w_W D + G N k')`
    memory: linear in the number of cells. It is an approximation of the exact kNN
    (ViG-style neighbours that lie far away in the image are not found), meant for
    very large images.

    Args:
        x: ``(G, N, D)`` cell features of ``G`` grids of equal shape, ``N = n_H * n_W``.
        grid: ``(n_H, n_W)``.
        k: neighbours per cell.
        radius: window half-size :math:`R \\ge 0`.
        chunk: cells per block (times ``G``), which bounds the gathered candidates.

    Returns:
        ``(G, N, k')`` int64 neighbour indices local to each grid, nearest first.

    Shapes:
        x: ``(G, N, D)`` -> ``(G, N, k')``.

    Example:
        >>> x = torch.tensor([[[0.0], [1.0], [3.0], [4.0], [9.0]]])  # a 1 x 5 grid
        >>> knn_in_grid(x, (1, 5), k=1, radius=1).tolist()  # cell 4 sees cells 2 and 3 only
        [[[1], [0], [3], [2], [3]]]
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (G, N, D), got shape {tuple(x.shape)}; add a leading group axis with x[None]")
    nh, nw = int(grid[0]), int(grid[1])
    g, n, dim = x.shape
    if nh * nw != n:
        raise ValueError(f"grid {nh} x {nw} has {nh * nw} cells but x has N={n} rows; pass the patch grid shape")
    if radius < 0 or chunk < 1:
        raise ValueError(f"radius must be >= 0 and chunk >= 1, got radius={radius}, chunk={chunk}")
    wh, ww = min(2 * radius + 1, nh), min(2 * radius + 1, nw)
    kk = max(0, min(k, wh * ww - 1))
    if kk == 0 or g == 0 or n == 0:
        return torch.empty(g, n, kk, dtype=torch.int64)
    # window offsets, row-major, so candidates come in ascending index order
    da, db = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    da, db = da.reshape(-1), db.reshape(-1)
    cq = max(1, min(n, chunk // max(1, g)))
    out = torch.empty(g, n, kk, dtype=torch.int64)
    for q0 in range(0, n, cq):
        cell = torch.arange(q0, min(q0 + cq, n))
        r, c = cell // nw, cell % nw
        r0 = (r - radius).clamp(min=0).clamp(max=nh - wh)
        c0 = (c - radius).clamp(min=0).clamp(max=nw - ww)
        cand = (r0[:, None] + da) * nw + (c0[:, None] + db)  # (m, W)
        m, wlen = cand.shape
        q = x[:, cell].reshape(g * m, 1, dim)
        cx = x[:, cand.reshape(-1)].reshape(g * m, wlen, dim)
        d = _euclid(q, cx).reshape(g, m, wlen)
        d = d.masked_fill(cand == cell[:, None], float("nan"))
        order = torch.sort(d, dim=-1, stable=True).indices[..., :kk]
        out[:, cell] = cand.expand(g, m, wlen).gather(-1, order)
    return out


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
    counts_a, counts_b = _cross_counts(emb_a, counts_a, emb_b, counts_b, k, chunk)
    empty = torch.zeros(0, dtype=torch.int64)
    both = (counts_a > 0) & (counts_b > 0)
    if not bool(both.any()):
        return empty, empty.clone()
    if emb_a.shape[1] != emb_b.shape[1]:
        raise ValueError(f"embeddings must share their width, got {emb_a.shape[1]} and {emb_b.shape[1]}")

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
        src, dst = _cross_block(a, b, na[sl], nb[sl], off_a[sl], off_b[sl], rows_a, rows_b, kk)
        src_parts.append(src)
        dst_parts.append(dst)
    return torch.cat(src_parts), torch.cat(dst_parts)


def _cross_counts(
    emb_a: torch.Tensor, counts_a: torch.Tensor, emb_b: torch.Tensor, counts_b: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the arguments of :func:`cross_topk`; the counts as int64 CPU tensors."""
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
    return counts_a, counts_b


def _cross_block(
    a: torch.Tensor,
    b: torch.Tensor,
    ca: torch.Tensor,
    cb: torch.Tensor,
    oa: torch.Tensor,
    ob: torch.Tensor,
    rows_a: torch.Tensor,
    rows_b: torch.Tensor,
    kk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-``kk`` pairs of one chunk of ``c`` samples of :func:`cross_topk`.

    Args:
        a, b: unit-norm embeddings of all A and B nodes, ``(N_A, D)`` and ``(N_B, D)``.
        ca, cb: ``(c,)`` A and B nodes of each sample of the chunk.
        oa, ob: ``(c,)`` batch offset of each sample's first A and B node.
        rows_a, rows_b: ``arange(max_a)`` and ``arange(max_b)``, the padded block rows.
        kk: neighbours per A node, at most ``max_b``.

    Returns:
        ``(src, dst)``: batch-global A and B ids, grouped by A node, most similar first.
    """
    device = a.device
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
    return src, dst
