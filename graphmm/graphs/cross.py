"""Relations across modalities: complete bipartite, summary nodes, positional alignment,
embedding kNN.

Each kind is a relation builder registered by name (:func:`register_relation`), one
class each; :class:`CrossModalBuilder` composes those its config switches on, as a
graph recipe's list of relation builders. A builder has a short ``__repr__``, the node
types it needs (``ntypes``), the relations it adds for the node types present
(``relations(ntypes)``), the node types it creates (``new_ntypes``, e.g. ``summary``),
and ``build(blocks, batch_size) -> (new blocks, edges)``, vectorised over the batch.

Example:
    >>> from graphmm.graphs.cross import CrossModalBuilder, list_relations
    >>> list_relations()
    ['align', 'bipartite', 'clip_knn', 'summary']
    >>> CrossModalBuilder(bipartite=[["text", "image"]], summary=True).parts
    [BipartiteRelation(pairs=[('word', 'patch')]), SummaryRelation()]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from graphmm.graphs._util import block_pairs, cross_topk, segment_offsets
from graphmm.graphtypes import EdgeDict, NodeBlock
from graphmm.modalities.base import load_modalities

def modality_ntypes() -> dict[str, str]:
    """Node type of each registered modality, in ``summary_id`` order, e.g.
    ``{"text": "word", "image": "patch", "audio": "frame", ...}``."""
    return {name: spec.ntype for name, spec in load_modalities().items()}


def summary_ids() -> dict[str, int]:
    """Each modality node type's id in summary nodes' ``modality`` field."""
    return {spec.ntype: spec.summary_id for spec in load_modalities().values()}


def __getattr__(name: str) -> object:
    # MODALITY_NTYPES and NTYPE_ORDER follow the registry, which plug-ins extend
    if name == "MODALITY_NTYPES":
        return modality_ntypes()
    if name == "NTYPE_ORDER":
        return tuple(modality_ntypes().values())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ntype(name: str) -> str:
    kinds = modality_ntypes()
    nt = kinds.get(name, name)
    if nt not in kinds.values():
        raise ValueError(f"unknown node type or modality {name!r}; use one of {list(kinds.values())} or {list(kinds)}")
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


class RelationBuilder(Protocol):
    """What the core calls on a relation builder (see the module docstring)."""

    name: str

    @property
    def ntypes(self) -> set[str]: ...

    @property
    def new_ntypes(self) -> list[str]: ...

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]: ...

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]: ...


_RELATIONS: dict[str, type] = {}


def register_relation(name: str) -> Callable[[type], type]:
    """Class decorator: register a relation builder under ``name`` (sets ``cls.name``)."""

    def deco(cls: type) -> type:
        cls.name = name
        _RELATIONS[name] = cls
        return cls

    return deco


def get_relation(name: str) -> type:
    """The relation builder class registered as ``name``."""
    if name not in _RELATIONS:
        raise KeyError(f"unknown relation builder {name!r}; registered: {list_relations()}")
    return _RELATIONS[name]


def list_relations() -> list[str]:
    """Names of the registered relation builders, sorted."""
    return sorted(_RELATIONS)


class _Pairs:
    """Base of the relations between pairs of node types."""

    new_ntypes: list[str] = []

    def __init__(self, pairs: Sequence[Sequence[str]]) -> None:
        self.pairs = _pairs(pairs, self.name)  # type: ignore[attr-defined]

    @property
    def ntypes(self) -> set[str]:
        return {t for p in self.pairs for t in p}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pairs={self.pairs})"


@register_relation("bipartite")
class BipartiteRelation(_Pairs):
    """Every A node to every B node of the sample: ``(A, cross, B)`` and ``(B, rev_cross, A)``."""

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        return [r for a, b in self.pairs for r in ((a, "cross", b), (b, "rev_cross", a))]

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]:
        edges: EdgeDict = {}
        for a, b in self.pairs:
            src, dst, _ = block_pairs(blocks[a].counts, blocks[b].counts)
            edges[(a, "cross", b)] = (src, dst)
            edges[(b, "rev_cross", a)] = (dst, src)
        return {}, edges


@register_relation("align")
class AlignRelation(_Pairs):
    """Nodes whose normalised extents (node data ``span``) overlap: ``(A, aligned, B)``
    and ``(B, rev_aligned, A)``."""

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        return [r for a, b in self.pairs for r in ((a, "aligned", b), (b, "rev_aligned", a))]

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]:
        edges: EdgeDict = {}
        for a, b in self.pairs:
            src, dst, _ = block_pairs(blocks[a].counts, blocks[b].counts)
            sa, sb = blocks[a].data["span"], blocks[b].data["span"]
            # half-open extents overlap when each starts before the other ends
            keep = (sa[src, 0] < sb[dst, 1]) & (sb[dst, 0] < sa[src, 1])
            src, dst = src[keep], dst[keep]
            edges[(a, "aligned", b)] = (src, dst)
            edges[(b, "rev_aligned", a)] = (dst, src)
        return {}, edges


@register_relation("clip_knn")
class EmbeddingKnnRelation:
    """Each ``src`` node to the ``k`` ``dst`` nodes of its sample with the most similar
    embedding (node data ``field``, cosine): ``(src, clip_knn, dst)`` and the reverse.
    Its default reads CLIP's joint ``clip_emb`` of words and patches."""

    new_ntypes: list[str] = []

    def __init__(self, k: int, chunk: int = 4096, src: str = "word", dst: str = "patch", field: str = "clip_emb") -> None:
        if k < 1:
            raise ValueError(f"{self.name}: k must be >= 1, got {k}")  # type: ignore[attr-defined]
        if chunk < 1:
            raise ValueError(f"clip_knn_chunk must be >= 1, got {chunk}")
        self.k, self.chunk, self.src, self.dst, self.field = int(k), int(chunk), src, dst, field

    @property
    def ntypes(self) -> set[str]:
        return {self.src, self.dst}

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        return [(self.src, self.name, self.dst), (self.dst, f"rev_{self.name}", self.src)]  # type: ignore[attr-defined]

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]:
        for nt in (self.src, self.dst):
            if self.field not in blocks[nt].data:
                raise ValueError(
                    f"{self.name} needs embeddings (node data {self.field!r}) on {nt} nodes; for CLIP's build them "  # type: ignore[attr-defined]
                    f"with graphmm.clip.{'ClipTextGraphBuilder' if nt == 'word' else 'ClipImageGraphBuilder'}(..., joint=True)"
                )
        a, b = blocks[self.src], blocks[self.dst]
        src, dst = cross_topk(a.data[self.field], a.counts, b.data[self.field], b.counts, self.k, chunk=self.chunk)
        return {}, {(self.src, self.name, self.dst): (src, dst), (self.dst, f"rev_{self.name}", self.src): (dst, src)}  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, {self.src}->{self.dst}, field={self.field!r})"


@register_relation("summary")
class SummaryRelation:
    """One ``summary`` node per modality present in a sample, linked to all that
    modality's nodes, ``(A, to_summary, summary)`` and the reverse; the summaries of a
    sample form a complete graph ``(summary, summary_link, summary)``. Node data
    ``modality``: the modality's ``summary_id``."""

    new_ntypes = ["summary"]

    @property
    def ntypes(self) -> set[str]:
        return set()

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        rels = []
        for nt in modality_ntypes().values():
            if nt in ntypes:
                rels += [(nt, "to_summary", "summary"), ("summary", "rev_to_summary", nt)]
        return rels + [("summary", "summary_link", "summary")]

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]:
        ids = summary_ids()
        present = [nt for nt in ids if nt in blocks]
        if not present:
            empty = {"modality": torch.zeros(0, dtype=torch.int64)}
            return {"summary": NodeBlock("summary", torch.zeros(batch_size, dtype=torch.int64), empty)}, {}
        edges: EdgeDict = {}
        counts = torch.stack([blocks[nt].counts for nt in present], dim=1)  # (B, T)
        has = counts > 0
        sid = torch.cumsum(has.reshape(-1), 0).reshape(has.shape) - 1  # summary id of (sample, type)
        type_id = torch.tensor([ids[nt] for nt in present], dtype=torch.int64)
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
        return {"summary": NodeBlock(ntype="summary", counts=n_summary, data={"modality": modality})}, edges

    def __repr__(self) -> str:
        return "SummaryRelation()"


class CrossModalBuilder:
    r"""Edges between modalities of the same sample. Each kind is switched on by config.

    * ``bipartite``: for each pair ``(A, B)``, every A node links to every B node of the
      sample, ``(A, 'cross', B)`` with the reverse ``(B, 'rev_cross', A)``.
    * ``summary``: one ``summary`` node per modality present in the sample, linked to
      all that modality's nodes, ``(A, 'to_summary', 'summary')`` and the reverse
      ``('summary', 'rev_to_summary', A)``; the summary nodes of a sample form a
      complete graph ``('summary', 'summary_link', 'summary')`` (symmetric). Node data
      ``modality``: the modality's ``summary_id`` (0 word, 1 patch, 2 frame, ...; see
      :mod:`graphmm.modalities`).
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
        relations: further relation builders (a plug-in's, see :func:`register_relation`),
            added after the built-in ones and before the summary nodes.
    """

    def __init__(
        self,
        bipartite: Sequence[Sequence[str]] = (),
        summary: bool = False,
        align: Sequence[Sequence[str]] = (),
        clip_knn: int = 0,
        clip_knn_chunk: int = 4096,
        relations: Sequence[Any] = (),
    ) -> None:
        if clip_knn < 0:
            raise ValueError(f"clip_knn must be >= 0 (0 switches it off), got {clip_knn}")
        if clip_knn_chunk < 1:
            raise ValueError(f"clip_knn_chunk must be >= 1, got {clip_knn_chunk}")
        parts: list[Any] = []
        if bipartite:
            parts.append(BipartiteRelation(bipartite))
        if align:
            parts.append(AlignRelation(align))
        if clip_knn:
            parts.append(EmbeddingKnnRelation(clip_knn, clip_knn_chunk))
        parts += list(relations)  # relation builders of a plug-in, in the order given
        if summary:
            parts.append(SummaryRelation())
        self.parts = parts
        # the settings, as plain attributes (cache keys and older callers read them)
        self.bipartite = parts[0].pairs if bipartite else []
        self.align = next((p.pairs for p in parts if isinstance(p, AlignRelation)), [])
        self.summary = bool(summary)
        self.clip_knn = int(clip_knn)
        self.clip_knn_chunk = int(clip_knn_chunk)

    @property
    def ntypes(self) -> set[str]:
        """Node types the relations need."""
        return set().union(*(p.ntypes for p in self.parts))

    @property
    def new_ntypes(self) -> list[str]:
        """Node types the relations create (``summary``)."""
        return [nt for p in self.parts for nt in p.new_ntypes]

    def relations(self, ntypes: Sequence[str]) -> list[tuple[str, str, str]]:
        return [r for p in self.parts for r in p.relations(ntypes)]

    def build(self, blocks: Mapping[str, NodeBlock], batch_size: int) -> tuple[dict[str, NodeBlock], EdgeDict]:
        """The node blocks the relations create and the cross-modal edges, ids local to each type."""
        new: dict[str, NodeBlock] = {}
        edges: EdgeDict = {}
        for p in self.parts:
            made, e = p.build(blocks, batch_size)
            new.update(made)
            edges.update(e)
        return new, edges

    def __repr__(self) -> str:
        return f"CrossModalBuilder({', '.join(repr(p) for p in self.parts)})"
