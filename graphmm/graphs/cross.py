"""Relations across modalities: complete bipartite, summary nodes, positional alignment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from graphmm.clip.knn import cross_topk
from graphmm.graphs._util import block_pairs, segment_offsets
from graphmm.graphtypes import EdgeDict, NodeBlock

#: Node type of each modality, in the order that ``summary`` node ids use.
MODALITY_NTYPES: dict[str, str] = {"text": "word", "image": "patch", "audio": "frame"}
NTYPE_ORDER: tuple[str, ...] = ("word", "patch", "frame")


def _ntype(name: str) -> str:
    nt = MODALITY_NTYPES.get(name, name)
    if nt not in NTYPE_ORDER:
        raise ValueError(
            f"unknown node type or modality {name!r}; use one of {list(NTYPE_ORDER)} or {list(MODALITY_NTYPES)}"
        )
    return nt


def _pairs(pairs: Sequence[Sequence[str]], what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in pairs:
        if len(p) != 2:
            raise ValueError(f"{what}: each entry must be a pair of node types, got {list(p)}")
        a, b = _ntype(p[0]), _ntype(p[1])
        if a == b:
            raise ValueError(f"{what}: a cross-modal pair needs two different node types, got {a!r} twice")
        if (a, b) in out or (b, a) in out:
            raise ValueError(f"{what}: pair {a!r}-{b!r} is listed twice (reverse edges are added anyway)")
        out.append((a, b))
    return out


class CrossModalBuilder:
    r"""Edges between modalities of the same sample. Each kind is switched on by config.

    * ``bipartite``: for each pair ``(A, B)``, every A node links to every B node of the
      sample, ``(A, 'cross', B)`` with the reverse ``(B, 'rev_cross', A)``.
    * ``summary``: one ``summary`` node per modality present in the sample, linked to
      all that modality's nodes, ``(A, 'to_summary', 'summary')`` and the reverse
      ``('summary', 'rev_to_summary', A)``; the summary nodes of a sample form a
      complete graph ``('summary', 'summary_link', 'summary')`` (symmetric). Node data
      ``modality``: 0 word, 1 patch, 2 frame.
    * ``align``: positional alignment for each pair ``(A, B)``: nodes whose normalised
      extents overlap are linked, ``(A, 'aligned', B)`` and ``(B, 'rev_aligned', A)``.
      Extents (node data ``span``) are word :math:`i` of :math:`n`:
      :math:`[i/n, (i+1)/n)`; a patch: its columns over the image width; a frame: its
      window over the clip. So in a left-to-right strip of digits read aloud, the
      patches of the second digit meet the second word and the frames in the middle
      of the clip.
    * ``clip_knn``: each word links to the ``clip_knn`` patches of its sample that are
      most similar in CLIP's joint image-text space,
      ``('word', 'clip_knn', 'patch')`` with the reverse ``('patch', 'rev_clip_knn', 'word')``:

      .. math::

          \mathcal{N}(w) = \operatorname{top-k}_{p \in P(s_w)} \cos(e_w, e_p)

      where :math:`e_w` is the word's projected text-token embedding (the mean over
      its BPE pieces of :math:`\mathrm{LN}(x_t) W_{text}`) and :math:`e_p` the
      patch's projected token :math:`\mathrm{LN}(x_p) W_{proj}`, node data
      ``clip_emb`` that :class:`graphmm.clip.ClipTextGraphBuilder` and
      :class:`graphmm.clip.ClipImageGraphBuilder` add with ``joint=True``. Projecting
      each token with the head CLIP trained for its pooled token puts words and
      patches in the space where CLIP compares texts with images. A sample with
      fewer than ``k`` patches links each word to all of them. Computed for the whole
      batch at once by :func:`graphmm.clip.knn.cross_topk` (padded per-sample
      blocks, chunked, one ``topk`` per chunk). With ``frozen=False`` the embeddings
      come from the checkpoint's weights, so the edges stay fixed while CLIP trains.

    Pairs name node types (``word``, ``patch``, ``frame``) or modalities
    (``text``, ``image``, ``audio``).

    Cost: ``bipartite`` and ``align`` enumerate the ``n_A * n_B`` pairs of each sample
    (``align`` then keeps the overlapping ones); ``clip_knn`` scores them in chunks of
    ``clip_knn_chunk`` word rows.

    Args:
        bipartite: pairs of node types for ``cross``.
        summary: add summary nodes.
        align: pairs of node types for ``aligned``.
        clip_knn: patches per word of the ``clip_knn`` relation; 0 switches it off.
        clip_knn_chunk: word rows scored per block by ``clip_knn``.
    """

    def __init__(
        self,
        bipartite: Sequence[Sequence[str]] = (),
        summary: bool = False,
        align: Sequence[Sequence[str]] = (),
        clip_knn: int = 0,
        clip_knn_chunk: int = 4096,
    ) -> None:
        if clip_knn < 0:
            raise ValueError(f"clip_knn must be >= 0 (0 switches it off), got {clip_knn}")
        if clip_knn_chunk < 1:
            raise ValueError(f"clip_knn_chunk must be >= 1, got {clip_knn_chunk}")
        self.bipartite = _pairs(bipartite, "bipartite")
        self.summary = bool(summary)
        self.align = _pairs(align, "align")
        self.clip_knn = int(clip_knn)
        self.clip_knn_chunk = int(clip_knn_chunk)

    @property
    def ntypes(self) -> set[str]:
        """Node types the relations need."""
        return {t for p in self.bipartite + self.align for t in p} | ({"word", "patch"} if self.clip_knn else set())

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        rels: list[tuple[str, str, str]] = []
        for a, b in self.bipartite:
            rels += [(a, "cross", b), (b, "rev_cross", a)]
        for a, b in self.align:
            rels += [(a, "aligned", b), (b, "rev_aligned", a)]
        if self.clip_knn:
            rels += [("word", "clip_knn", "patch"), ("patch", "rev_clip_knn", "word")]
        if self.summary:
            for nt in NTYPE_ORDER:
                if nt in ntypes:
                    rels += [(nt, "to_summary", "summary"), ("summary", "rev_to_summary", nt)]
            rels.append(("summary", "summary_link", "summary"))
        return rels

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[NodeBlock | None, EdgeDict]:
        """Summary nodes (or ``None``) and the cross-modal edges, ids local to each type."""
        edges: EdgeDict = {}
        for a, b in self.bipartite:
            src, dst, _ = block_pairs(blocks[a].counts, blocks[b].counts)
            edges[(a, "cross", b)] = (src, dst)
            edges[(b, "rev_cross", a)] = (dst, src)
        for a, b in self.align:
            src, dst, _ = block_pairs(blocks[a].counts, blocks[b].counts)
            sa, sb = blocks[a].data["span"], blocks[b].data["span"]
            # half-open extents overlap when each starts before the other ends
            keep = (sa[src, 0] < sb[dst, 1]) & (sb[dst, 0] < sa[src, 1])
            src, dst = src[keep], dst[keep]
            edges[(a, "aligned", b)] = (src, dst)
            edges[(b, "rev_aligned", a)] = (dst, src)
        if self.clip_knn:
            for nt in ("word", "patch"):
                if "clip_emb" not in blocks[nt].data:
                    builder = "ClipTextGraphBuilder" if nt == "word" else "ClipImageGraphBuilder"
                    raise ValueError(
                        f"clip_knn needs CLIP joint embeddings (node data 'clip_emb') on {nt} nodes; build them with "
                        f"graphmm.clip.{builder}(..., joint=True)"
                    )
            src, dst = cross_topk(
                blocks["word"].data["clip_emb"], blocks["word"].counts,
                blocks["patch"].data["clip_emb"], blocks["patch"].counts,
                self.clip_knn, chunk=self.clip_knn_chunk,
            )
            edges[("word", "clip_knn", "patch")] = (src, dst)
            edges[("patch", "rev_clip_knn", "word")] = (dst, src)
        if not self.summary:
            return None, edges

        present = [nt for nt in NTYPE_ORDER if nt in blocks]
        if not present:
            return NodeBlock("summary", torch.zeros(batch_size, dtype=torch.int64), {"modality": torch.zeros(0, dtype=torch.int64)}), edges
        counts = torch.stack([blocks[nt].counts for nt in present], dim=1)  # (B, T)
        has = counts > 0
        sid = torch.cumsum(has.reshape(-1), 0).reshape(has.shape) - 1  # summary id of (sample, type)
        type_id = torch.tensor([NTYPE_ORDER.index(nt) for nt in present], dtype=torch.int64)
        modality = type_id.expand_as(has)[has]
        for j, nt in enumerate(present):
            _, seg = segment_offsets(blocks[nt].counts)
            src = torch.arange(len(seg), dtype=torch.int64)
            dst = sid[seg, j]
            edges[(nt, "to_summary", "summary")] = (src, dst)
            edges[("summary", "rev_to_summary", nt)] = (dst, src)
        n_summary = has.sum(1)
        s_src, s_dst, _ = block_pairs(n_summary, n_summary, exclude_self=True)
        edges[("summary", "summary_link", "summary")] = (s_src, s_dst)
        block = NodeBlock(ntype="summary", counts=n_summary, data={"modality": modality})
        return block, edges

    def __repr__(self) -> str:
        knn = f", clip_knn={self.clip_knn}" if self.clip_knn else ""
        return f"CrossModalBuilder(bipartite={self.bipartite}, summary={self.summary}, align={self.align}{knn})"
