r"""All relations of one heterogeneous layer in a few large kernels.

:class:`graphmm.nn.hetero.RelationGraphConv` runs one module per relation: a
relation view of the graph and a handful of small kernels each, 13 relations per
layer in the default schema. On the usual samples (hundreds of nodes) that
per-relation overhead, not arithmetic, is the cost of a layer. The fused path
computes the same function in one pass over all relations:

* Each relation keeps its own module and weights (state dicts, checkpoints and
  ``reset_parameters`` are those of the per-relation path); the weights are
  stacked at call time.
* Per **source** type :math:`s` one matrix product projects its nodes for every
  relation leaving :math:`s` at once, :math:`h_s [W_{r_1} \| W_{r_2} \| \dots]`:
  row :math:`i R_s + k` of the result is node :math:`i` as seen by the
  :math:`k`-th of the :math:`R_s` relations leaving :math:`s`. The attention
  scores of all relations leaving or entering a type are a second product.
* The softmax works per **group**, a (destination node, relation) pair, row
  :math:`j R^t + k` for node :math:`j` of type :math:`t` and its :math:`k`-th
  relation, so each relation keeps its own softmax over its in-edges.
* The weighted sum goes straight into the destination nodes, one sparse product
  for all edges of all relations, which is also the sum over relations; then each
  destination type gets the biases of all relations into it, whether its nodes
  have in-edges or not.

:class:`RelationIndex` indexes a graph's relations once per forward pass (not per
layer), :func:`fused_kernel` says whether a layer's modules can run fused
(``gat``, ``gcn`` and ``sum`` with ``sum``/``mean`` aggregation, no activation of
their own, no hooks); other layers run per relation. On CPU the GAT path uses
only torch operators (sparse CSR products); elsewhere DGL's kernels.
"""

from __future__ import annotations

import math
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dgl
import torch
from dgl.nn.functional import edge_softmax
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from graphmm.graphtypes import CanonicalEType

from .conv import GATLayer, GCNLayer, SumConv

__all__ = ["FUSED_MAX_EDGES", "FusedKernel", "RelationIndex", "RelationPlan", "fused_forward", "fused_kernel", "has_hooks"]

#: :func:`wider_plan`: the largest share of a plan's edges, and of its projected rows,
#: that a layer's missing relations may hold for it to run on that plan.
PAD_SHARE = 1 / 3

#: Cross-relation aggregations the fused path computes (``max``/``min`` run per relation).
FUSED_AGGREGATES: tuple[str, ...] = ("sum", "mean")

#: Graphs with more edges run per relation (:class:`graphmm.nn.HeteroGNN`): there the
#: per-relation overhead is a vanishing share of the work, and the fused path's index
#: (several integers per edge and head) would add to the peak memory.
FUSED_MAX_EDGES = 2**20


@dataclass
class RelationPlan:
    """Edges of an ordered list of relations as rows of one table-to-group graph.

    Attributes:
        rels: The relations, in the order their edges are stored.
        src_types: Source types, each with the positions (into ``rels``) of the
            relations leaving it, in slot order.
        dst_types: Destination types, each with the positions of the relations
            into it, in slot order.
        src_offset: First table row of each source type (its ``N_s * R_s`` rows).
        dst_offset: First group row of each destination type (``N_t * R^t`` rows).
        node_offset: First row of each destination type among all destination nodes
            (``num_dst`` rows, the types in the order of ``dst_types``).
        num_nodes: Nodes per type.
        num_rows, num_groups, num_dst: Table rows, groups and destination nodes.
        edge_offset: ``len(rels) + 1`` edge offsets: edge ``e`` of relation
            ``rels[r]`` is stored at ``edge_offset[r] + e``, so relation ``r``'s edges
            keep their ids (in :attr:`graph` and every per-edge tensor).
        src_rows, group_rows, node_rows: Per edge its table row, group and
            destination node row.
        src_ids, dst_ids: Per edge its source and destination node within their types.
        edge_counts: Edges per relation, ``(R,)``.
    """

    rels: tuple[CanonicalEType, ...]
    src_types: dict[str, list[int]]
    dst_types: dict[str, list[int]]
    src_offset: dict[str, int]
    dst_offset: dict[str, int]
    node_offset: dict[str, int]
    num_nodes: dict[str, int]
    num_rows: int
    num_groups: int
    num_dst: int
    edge_offset: list[int]
    src_rows: Tensor
    group_rows: Tensor
    node_rows: Tensor
    src_ids: Tensor
    dst_ids: Tensor
    edge_counts: Tensor
    _index: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    _degrees: tuple[Tensor, Tensor] | None = None
    _graph: dgl.DGLGraph | None = None
    _agg_graph: dgl.DGLGraph | None = None
    _rev_agg_graph: dgl.DGLGraph | None = None
    _layouts: dict[tuple[int, bool], AttentionLayout] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    def workspace(self) -> Workspace:
        """This thread's :class:`Workspace` for the layers run on this plan without autograd."""
        return self._cache.setdefault(("workspace", threading.get_ident()), Workspace())

    def relation_rows(self, scale: Sequence[int], shift: Sequence[int], ids: Tensor) -> Tensor:
        """``ids * scale[r] + shift[r]`` on the edges of each relation ``r``, ``(E,)``:
        per relation on its own slice, without per-edge copies of the constants."""
        off = self.edge_offset
        parts = [ids[off[r] : off[r + 1]] * scale[r] + shift[r] for r in range(len(self.rels))]
        return _cat(parts) if parts else ids.clone()

    def per_edge(self, values: Sequence[int]) -> Tensor:
        """One value per relation of :attr:`rels`, repeated for each of its edges."""
        t = torch.tensor(values, dtype=self.src_ids.dtype, device=self.src_ids.device)
        return t.repeat_interleave(self.edge_counts)

    @property
    def score_rows(self) -> RowGroups:
        """Per type of :attr:`ntypes`, the rows of stacked ``(2 R, ...)`` scores of the
        relations leaving it, then (shifted by ``R``) of those entering it."""
        if "score_rows" not in self._cache:
            n = len(self.rels)
            self._cache["score_rows"] = RowGroups([self._positions("score", t) for t in self.ntypes], 2 * n)
        return self._cache["score_rows"]

    def attention_layout(self, heads: int, split: bool) -> AttentionLayout:
        """The GAT aggregation of this plan for ``heads`` heads (cached); ``split``
        lets relations into much smaller types aggregate first (:class:`AttentionLayout`)."""
        key = (heads, split)
        if key not in self._layouts:
            self._layouts[key] = AttentionLayout.build(self, heads, split)
        return self._layouts[key]

    def _block(self, attr: str, src: Tensor, dst: Tensor, num_src: int, num_dst: int) -> dgl.DGLGraph:
        """A bipartite DGL block ``src -> dst``, made once and kept in ``attr``."""
        if getattr(self, attr) is None:
            setattr(self, attr, dgl.create_block((src, dst), num_src_nodes=num_src, num_dst_nodes=num_dst,
                                                 device=self.src_rows.device))
        return getattr(self, attr)

    @property
    def graph(self) -> dgl.DGLGraph:
        """Bipartite DGL block from the ``num_rows`` table rows to the ``num_groups``
        groups, one edge per edge of :attr:`rels` in storage order."""
        return self._block("_graph", self.src_rows, self.group_rows, self.num_rows, self.num_groups)

    @property
    def agg_graph(self) -> dgl.DGLGraph:
        """Bipartite DGL block from the table rows straight to the destination nodes
        (``num_dst``), the edges as in :attr:`graph`: summing over it sums over the
        relations as well."""
        return self._block("_agg_graph", self.src_rows, self.node_rows, self.num_rows, self.num_dst)

    @property
    def rev_agg_graph(self) -> dgl.DGLGraph:
        """:attr:`agg_graph` reversed (destination nodes to table rows, same edge ids)."""
        return self._block("_rev_agg_graph", self.node_rows, self.src_rows, self.num_dst, self.num_rows)

    def split_dst(self, x: Tensor) -> dict[str, Tensor]:
        """``(num_dst, ...)`` rows to ``dict[dst_type, (N_t, ...)]``."""
        # one split, not a slice per type: the backward of a slice is a zero-filled
        # tensor of the full size per slice, that of a split a single concatenation
        return dict(zip(self.dst_types, x.split([self.num_nodes[t] for t in self.dst_types])))

    def positions(self, side: str, ntype: str) -> Tensor:
        """The relation positions leaving (``side="src"``) or entering (``"dst"``)
        ``ntype`` as a long tensor, for ``index_select`` on stacked weights."""
        key = (side, ntype)
        if key not in self._index:
            pos = self._positions(side, ntype)
            self._index[key] = torch.tensor(pos, dtype=torch.long, device=self.src_rows.device)
        return self._index[key]

    @property
    def ntypes(self) -> list[str]:
        """Every source or destination type."""
        return list(dict.fromkeys([*self.src_types, *self.dst_types]))

    def _positions(self, side: str, ntype: str) -> list[int]:
        if side == "score":  # rows of [source scores (R) ; destination scores (R)]
            n = len(self.rels)
            return self.src_types.get(ntype, []) + [n + r for r in self.dst_types.get(ntype, [])]
        return (self.src_types if side == "src" else self.dst_types)[ntype]

    def take(self, side: str, ntype: str, x: Tensor) -> Tensor:
        """The rows of ``x`` (one per relation of ``rels``) of the relations leaving
        (``side="src"``) or entering (``"dst"``) ``ntype``, in slot order; for
        ``"score"``, rows of ``x`` ``(2 R, ...)`` of the leaving relations, then of
        the entering ones shifted by ``R``."""
        pos = self._positions(side, ntype)
        if pos[-1] - pos[0] == len(pos) - 1:  # consecutive: a view, no copy
            return x[pos[0] : pos[-1] + 1]
        return x.index_select(0, self.positions(side, ntype))

    def membership(self, dtype: torch.dtype) -> Tensor:
        """``(len(dst_types), len(rels))``: 1 where the relation ends in the type."""
        key = ("membership", str(dtype))
        if key not in self._index:
            m = torch.zeros(len(self.dst_types), len(self.rels), dtype=dtype, device=self.src_rows.device)
            for i, pos in enumerate(self.dst_types.values()):
                m[i, pos] = 1
            self._index[key] = m
        return self._index[key]

    def degrees(self) -> tuple[Tensor, Tensor]:
        """Per edge: out-degree of its source and in-degree of its destination within
        its own relation, ``(E,)`` each (table rows and groups are per relation)."""
        if self._degrees is None:
            out_deg = torch.bincount(self.src_rows, minlength=self.num_rows)[self.src_rows]
            in_deg = torch.bincount(self.group_rows, minlength=self.num_groups)[self.group_rows]
            self._degrees = (out_deg, in_deg)
        return self._degrees


class Workspace:
    """Buffers that the fused layers reuse when they run without autograd.

    On a graph of millions of nodes every new full-size tensor costs more than the
    arithmetic on it: the memory is mapped afresh and zeroed page by page, and given
    back when freed. The layers of one forward pass (and further passes on the same
    graph) ask for their temporaries by name and get the same memory each time; what
    they return to the caller is never a workspace buffer. With autograd nothing is
    reused (the backward pass keeps what it needs).

    Example:
        >>> import torch
        >>> ws = Workspace()
        >>> a = ws.get("e", (4, 2), torch.zeros(1))
        >>> b = ws.get("e", (3, 2), torch.zeros(1))
        >>> a.data_ptr() == b.data_ptr(), tuple(b.shape)
        (True, (3, 2))
    """

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: Sequence[int], like: Tensor) -> Tensor:
        """An uninitialised ``shape`` tensor of ``like``'s dtype and device, the same
        memory as the last buffer called ``name`` when that was large enough."""
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = like.new_empty(n)
        return buf[:n].view(*shape)


class RelationIndex:
    """The relations of one (batched) heterograph, indexed for the fused layers.

    Build it once per graph and hand it to every layer: the edges of each relation are
    read from the graph once, and each distinct list of relations (the last layer may
    run fewer, unless :func:`wider_plan` lets it share the others') gets one
    :class:`RelationPlan`, built on first use. :meth:`of` keeps the
    index with the graph, so further forward passes on the same graph (evaluation, the
    steps of a benchmark) reuse it, as DGL keeps a graph's sparse formats.

    Args:
        g: The heterograph.

    Example:
        >>> import dgl
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0, 1], [1, 2]),
        ...     ("patch", "rev_cross", "word"): ([0], [2]),
        ...     ("frame", "next", "frame"): ([], []),
        ... }, num_nodes_dict={"word": 3, "patch": 1, "frame": 0})
        >>> plan = RelationIndex(g).plan(tuple(g.canonical_etypes))
        >>> plan.num_rows, plan.num_groups, plan.graph.num_edges()
        (4, 6, 3)
        >>> [c[1] for c in plan.rels]
        ['next', 'rev_cross', 'next']
        >>> plan.group_rows.tolist()  # into word j by its k-th relation (rev_cross, next): 2 j + k
        [4, 3, 5]
        >>> RelationIndex.of(g) is RelationIndex.of(g)
        True
    """

    def __init__(self, g: dgl.DGLGraph, *, weak: bool = False) -> None:
        # the index kept with the graph (of) refers to it weakly, so that it does not
        # keep the graph alive
        self._graph: Callable[[], dgl.DGLGraph | None] = weakref.ref(g) if weak else (lambda: g)
        self._edges: dict[CanonicalEType, tuple[Tensor, Tensor]] = {}
        self._plans: dict[tuple[CanonicalEType, ...], RelationPlan] = {}
        self._padded: set[tuple[CanonicalEType, ...]] = set()  # lists run once on a wider plan

    @classmethod
    def of(cls, g: dgl.DGLGraph) -> RelationIndex:
        """The index of ``g``, made on first use and kept while ``g`` lives and its
        structure stays (``add_edges`` and the like give the graph a new structure)."""
        kept = _INDEXES.get(g)
        if kept is not None and kept[0] is g._graph:
            return kept[1]
        index = cls(g, weak=True)
        _INDEXES[g] = (g._graph, index)
        return index

    @property
    def graph(self) -> dgl.DGLGraph:
        """The indexed graph."""
        g = self._graph()
        if g is None:
            raise RuntimeError("the graph of this RelationIndex no longer exists")
        return g

    def edges(self, cet: CanonicalEType) -> tuple[Tensor, Tensor]:
        """``(src, dst)`` node ids of relation ``cet`` in edge-id order."""
        if cet not in self._edges:
            self._edges[cet] = self.graph.edges(etype=cet)  # in edge-id order
        return self._edges[cet]

    def cached_plan(self, rels: Sequence[CanonicalEType]) -> RelationPlan | None:
        """The :class:`RelationPlan` of ``rels`` if one was made already, else ``None``."""
        return self._plans.get(tuple(rels))

    def plan(self, rels: Sequence[CanonicalEType]) -> RelationPlan:
        """The (cached) :class:`RelationPlan` of ``rels``, in this order."""
        key = tuple(rels)
        if key not in self._plans:
            self._plans[key] = self._build(key)
        return self._plans[key]

    def _build(self, rels: tuple[CanonicalEType, ...]) -> RelationPlan:
        g = self.graph
        src_types: dict[str, list[int]] = {}
        dst_types: dict[str, list[int]] = {}
        for r, (s, _, t) in enumerate(rels):
            src_types.setdefault(s, []).append(r)
            dst_types.setdefault(t, []).append(r)
        num_nodes = {nt: g.num_nodes(nt) for nt in {*src_types, *dst_types}}
        src_offset, rows = {}, 0
        for s, pos in src_types.items():
            src_offset[s], rows = rows, rows + num_nodes[s] * len(pos)
        dst_offset, groups, node_offset, num_dst = {}, 0, {}, 0
        for t, pos in dst_types.items():
            dst_offset[t], groups = groups, groups + num_nodes[t] * len(pos)
            node_offset[t], num_dst = num_dst, num_dst + num_nodes[t]
        # relation r's table row of source node i is src_offset + i * R_s + slot (likewise
        # for groups): one multiply-add per edge on each relation's own edges
        parts: list[tuple[Tensor, ...]] = []
        for r, (s, _, t) in enumerate(rels):
            src, dst = self.edges(rels[r])
            parts.append((src, dst, src * len(src_types[s]) + (src_offset[s] + src_types[s].index(r)),
                          dst * len(dst_types[t]) + (dst_offset[t] + dst_types[t].index(r)), dst + node_offset[t]))
        counts = [p[0].shape[0] for p in parts]
        device = g.device
        if rels:
            src_ids, dst_ids, src_rows, group_rows, node_rows = (torch.cat(c) for c in zip(*parts))
        else:
            src_ids = dst_ids = src_rows = group_rows = node_rows = torch.zeros(0, dtype=torch.int64, device=device)
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        return RelationPlan(
            rels=rels, src_types=src_types, dst_types=dst_types, src_offset=src_offset, dst_offset=dst_offset,
            node_offset=node_offset, num_nodes=num_nodes, num_rows=rows, num_groups=groups, num_dst=num_dst,
            edge_offset=offsets, src_rows=src_rows, group_rows=group_rows, node_rows=node_rows,
            src_ids=src_ids, dst_ids=dst_ids, edge_counts=torch.tensor(counts, dtype=torch.int64, device=device),
        )


#: :meth:`RelationIndex.of`'s indexes: graph -> (its structure when indexed, index).
_INDEXES: weakref.WeakKeyDictionary[dgl.DGLGraph, tuple[Any, RelationIndex]] = weakref.WeakKeyDictionary()


#: ``kernel(mods, plan, inputs, aggregate, return_attention) -> (outputs, attention)``.
FusedKernel = Callable[
    [Sequence[nn.Module], RelationPlan, Mapping[str, Tensor], str, bool],
    tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]],
]


def has_hooks(mod: nn.Module) -> bool:
    """Whether ``mod`` has forward or backward hooks: they expect the module to be
    called on its relation graph (graphmm.predict records per-relation outputs), so
    a layer with such a module runs per relation."""
    return bool(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks)


def _same(values: Sequence[object]) -> bool:
    return all(v == values[0] for v in values[1:])


def _gat_fc(mod: GATLayer) -> tuple[nn.Linear, nn.Linear]:
    return (mod.fc_src, mod.fc_dst) if hasattr(mod, "fc_src") else (mod.fc, mod.fc)


def _gat_ok(mods: Sequence[nn.Module]) -> bool:
    if not all(type(m) is GATLayer for m in mods):
        return False
    key = [
        (m._heads, m._head_feats, m._concat, m.negative_slope, m.feat_drop.p, m.attn_drop.p, m.bias is None,
         _gat_fc(m)[0].in_features, _gat_fc(m)[1].in_features)
        for m in mods  # type: ignore[union-attr]
    ]
    return _same(key) and all(m.activation is None for m in mods)


def _gcn_ok(mods: Sequence[nn.Module]) -> bool:
    if not all(type(m) is GCNLayer for m in mods):
        return False
    convs = [m.conv for m in mods]
    key = [(c._norm, c.weight is None, c.bias is None, c._in_feats, c._out_feats) for c in convs]
    return _same(key) and all(c.weight is not None and c._activation is None for c in convs)


def _sum_ok(mods: Sequence[nn.Module]) -> bool:
    if not all(type(m) is SumConv for m in mods):
        return False
    key = [(m._linear, m.bias is None, m._in_feats, m._out_feats, m.activation) for m in mods]
    return _same(key)


def fused_kernel(mods: Sequence[nn.Module], aggregate: str) -> FusedKernel | None:
    """The fused computation for these relation modules, or ``None`` if they must run
    one by one: an unsupported conv or aggregation, modules of different options, a
    GAT or GCN with an activation of its own (applied per relation, before the sum),
    or a module with hooks."""
    if not mods or aggregate not in FUSED_AGGREGATES or any(has_hooks(m) for m in mods):
        return None
    for ok, kernel in ((_gat_ok, _gat), (_gcn_ok, _gcn), (_sum_ok, _sum)):
        if ok(mods):
            return kernel
    return None


def wider_plan(
    index: RelationIndex, rels: Sequence[CanonicalEType], wider: Sequence[CanonicalEType],
    mods: Mapping[CanonicalEType, nn.Module], h0: Tensor
) -> tuple[RelationPlan, list[nn.Module | None]] | None:
    """Run a GAT layer that lacks modules for some relations on the plan of ``wider``,
    a list that also holds them, made by an earlier layer: ``(plan, modules)``, with
    ``None`` for each missing relation (zero weights; its outputs are the caller's to
    drop), or ``None`` to index the layer's own relations instead.

    The last layer of a :class:`graphmm.nn.HeteroGNN` whose readout skips some node
    types has no modules for the relations into them. Indexing its relations anew
    costs a second plan, layout and transposes per batch, a fixed cost of many small
    operations; running the missing relations with zero weights costs work in
    proportion to their edges and projected rows. The wider plan is used, on the torch
    sparse path, where the missing relations hold at most :data:`PAD_SHARE` of its
    edges and of its projected rows: on the usual schemas, the relations into the
    ``summary`` nodes.

    That trade holds for a graph seen once (a training batch). A graph run again (the
    steps of a benchmark, evaluation on kept graphs) pays the zero-weight work on every
    pass but a plan of its own only once: so the layer's relations ``rels`` take the
    wider plan on their first pass only, and their own plan from the second on.
    """
    key = tuple(rels)
    plan = index.cached_plan(wider)
    if plan is None or key in index._plans or key in index._padded:
        return None
    present = [mods.get(cet) for cet in wider]
    real = [m for m in present if m is not None]
    if len(real) == len(present) or not real or not _gat_ok(real):
        return None
    layout = plan._layouts.get((real[0]._heads, _use_sparse(h0)))  # type: ignore[union-attr]
    if layout is None or layout.projected is None:
        return None
    off = plan.edge_offset
    missing = [r for r, m in enumerate(present) if m is None]
    edges = sum(off[r + 1] - off[r] for r in missing)
    projected = {r for pos in layout.pf_src.values() for r in pos}
    rows = sum(plan.num_nodes[wider[r][0]] for r in missing if r in projected)
    if edges > PAD_SHARE * off[-1] or rows > PAD_SHARE * layout.z_rows:
        return None
    index._padded.add(key)
    return plan, present


def fused_forward(
    mods: Sequence[nn.Module],
    plan: RelationPlan,
    inputs: Mapping[str, Tensor],
    aggregate: str = "sum",
    return_attention: bool = False,
) -> tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]]:
    """Run the modules ``mods`` (one per relation of ``plan.rels``) fused.

    Args:
        mods: Relation modules, in the order of ``plan.rels``.
        plan: The relations' :class:`RelationPlan`.
        inputs: Node features per type, ``(N_t, D)``.
        aggregate: ``"sum"`` or ``"mean"`` over the relations into a type.
        return_attention: Also return the ``(E_r, heads)`` attention per relation
            (GAT only; an empty dict otherwise).

    Returns:
        ``(outputs, attention)``: ``dict[dst_type, (N_t, D_out)]`` and the attention.

    Raises:
        ValueError: If the modules cannot run fused (see :func:`fused_kernel`).
    """
    kernel = fused_kernel(mods, aggregate)
    if kernel is None:
        raise ValueError(
            f"these relation modules cannot run fused ({sorted({type(m).__name__ for m in mods})}, "
            f"aggregate={aggregate!r}); run them one by one (HeteroGNN(fused=False))."
        )
    return kernel(mods, plan, inputs, aggregate, return_attention)


# ---------------------------------------------------------------- helpers
def _project(plan: RelationPlan, side: str, inputs: Mapping[str, Tensor], weight: Tensor) -> Tensor:
    r"""One product per node type for all its relations: per source (``side="src"``) or
    destination (``"dst"``) type :math:`t`, ``h_t @ weight[r].T`` for its relations
    ``r``, row :math:`i R_t + k` for node :math:`i` and the relation in slot :math:`k`.

    Args:
        weight: ``(R, C, D_in)`` per relation of ``plan.rels`` (as ``nn.Linear``).

    Returns:
        ``(num_rows, C)`` for ``"src"``, ``(num_groups, C)`` for ``"dst"``.
    """
    parts = []
    c = weight.shape[1]
    for t in plan.src_types if side == "src" else plan.dst_types:
        # (R_t C, D_in): relation k's rows at k C, so row i of the product is
        # [relation 0 | relation 1 | ...] of node i, i.e. rows i R_t + k after the view
        w = plan.take(side, t, weight).reshape(-1, weight.shape[2])
        parts.append(nn.functional.linear(inputs[t], w).view(-1, c))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _per_dst(plan: RelationPlan, out: Tensor, bias: Tensor | None, aggregate: str) -> dict[str, Tensor]:
    """Split the summed destination rows ``out (num_dst, C)`` by type and finish them
    (:func:`_finish`)."""
    return _finish(plan, plan.split_dst(out), bias, aggregate)


def _finish(plan: RelationPlan, outs: dict[str, Tensor], bias: Tensor | None, aggregate: str) -> dict[str, Tensor]:
    """Add the relations' biases to the sums over relations per destination type.

    Args:
        outs: ``dict[t, (N_t, C)]``, each row the sum over all relations into its node.
        bias: ``(R, C)`` per relation, or ``None``.

    Returns:
        ``dict[t, (N_t, C)]``, divided by the number of relations into ``t`` for
        ``aggregate="mean"``.
    """
    # every node of t gets the bias of every relation into t, with in-edges or without
    biases = None if bias is None else plan.membership(bias.dtype) @ bias  # (dst types, C)
    rst = {}
    for i, t in enumerate(plan.dst_types):
        z = outs[t] if biases is None else outs[t] + biases[i]
        k = len(plan.dst_types[t])
        rst[t] = z / k if aggregate == "mean" and k > 1 else z
    return rst


def _split_groups(plan: RelationPlan, groups: Tensor) -> tuple[Tensor, ...]:
    """``(num_groups, ...)`` rows to one ``(N_t * R^t, ...)`` block per destination type."""
    return groups.split([plan.num_nodes[t] * len(pos) for t, pos in plan.dst_types.items()])


def _split_attention(plan: RelationPlan, attn: Tensor) -> dict[CanonicalEType, Tensor]:
    off = plan.edge_offset
    return {cet: attn[off[r] : off[r + 1]] for r, cet in enumerate(plan.rels)}


# ---------------------------------------------------------------- GAT
def _gat(
    mods: Sequence[nn.Module],
    plan: RelationPlan,
    inputs: Mapping[str, Tensor],
    aggregate: str,
    return_attention: bool,
) -> tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]]:
    r""":class:`GATLayer` on every relation at once.

    Per node type :math:`t` two products: the projections :math:`W_r h` for the
    relations :math:`r` leaving :math:`t`, and all its attention scores, the source
    scores :math:`(W_r^{k\top} a^k_l)^\top h` of the relations leaving :math:`t` and
    the destination scores :math:`(W_r^{k\top} a^k_r)^\top h` of those entering it,
    as one ``(D_in, (R_t + R^t) K)`` product. Then for all edges at once the scores,
    their softmax per group (one relation's in-edges of one node) and the weighted
    sum into the destination nodes as one sparse product (:class:`AttentionLayout`).
    A relation into a type with far fewer nodes (``word -> summary``) sums its
    sources first and projects the sums, :math:`\sum_j \alpha_{ij} W h_j =
    W \sum_j \alpha_{ij} h_j`, which skips projecting every source node.

    A ``None`` module (:func:`wider_plan`) stands for a relation with zero weights,
    whose outputs the caller drops.
    """
    first: GATLayer = next(m for m in mods if m is not None)  # type: ignore[assignment]
    k, f, n_rel = first._heads, first._head_feats, len(mods)
    pad = [m is None for m in mods]
    keep = None  # (R,) 0 for a padded relation
    if any(pad):
        keep = torch.tensor([not p for p in pad], dtype=first.attn_l.dtype, device=first.attn_l.device)
    mods = [first if m is None else m for m in mods]  # a padded relation: first's shapes, zero weights below
    fcs = [_gat_fc(m) for m in mods]  # type: ignore[arg-type]
    w = torch.stack([fs.weight for fs, _ in fcs])  # (R, K F, D)
    if keep is not None:
        w = w * keep.view(-1, 1, 1)
    d = w.shape[-1]
    # (2 R, K, D): row k of relation r is W_r^{k T} a^k_l (then the a_r ones), so a
    # score is one product with h, without the (N, K, F) elementwise temporary. Within
    # one node type the destination projection is the source one: both scores come
    # from one product with its weight; the others' destination weights add B rows.
    a = torch.stack([torch.stack([m.attn_l, m.attn_r], 1) for m in mods])  # (R, K, 2, F)
    both = torch.matmul(a, w.view(n_rel, k, f, d))  # (R, K, 2, D)
    bip = [r for r, (fs, fd) in enumerate(fcs) if fd is not fs and not pad[r]]
    rows = [both[:, :, 0], both[:, :, 1]]
    if bip:
        w_dst = torch.stack([fcs[r][1].weight for r in bip]).view(len(bip), k, f, d)
        a_dst = torch.stack([mods[r].attn_r for r in bip]).unsqueeze(2)  # (B, K, 1, F)
        rows.append(torch.matmul(a_dst, w_dst)[:, :, 0])
    scores = torch.cat(rows)  # (2 R + B, K, D)
    if bip:  # the destination scores of relation r: row R + r, or 2 R + its place in bip
        pick = list(range(2 * n_rel))
        for b_, r in enumerate(bip):
            pick[n_rel + r] = 2 * n_rel + b_
        scores = scores.index_select(0, torch.tensor(pick, device=scores.device))
    h0 = next(iter(inputs.values()))
    layout = plan.attention_layout(k, split=_use_sparse(h0))
    drop = first.feat_drop if first.training and first.feat_drop.p > 0 else None
    w_rows = layout.weight_rows.take(w)  # one split: per type of pf_src, then of af_dst
    head_major = layout.projected is not None
    z, raw, el, er = _gat_inputs(plan, layout, inputs, dict(zip(layout.pf_src, w_rows)), scores, f, drop, head_major)
    bias = None if first.bias is None else torch.stack([m.bias for m in mods])  # (R, K F)
    if bias is not None and keep is not None:
        bias = bias * keep.view(-1, 1)
    if head_major:
        # without autograd and dropout _gat_inputs made the projections node-major
        node_major = not torch.is_grad_enabled() and drop is None
        out, attn = _gat_sparse(plan, layout, first, z, raw, el, er, w_rows[len(layout.pf_src):], bias, aggregate,
                                node_major)
        if return_attention and attn.shape[0]:  # from the layout's edge order to the plan's
            attn = attn.new_empty(attn.shape).index_copy(0, layout.order, attn)
    else:  # DGL's kernels, in the plan's edge order
        e = dgl.ops.u_add_v(plan.graph, el, er)
        attn = first.attn_drop(edge_softmax(plan.graph, nn.functional.leaky_relu(e, first.negative_slope)))  # (E, K)
        out = _finish(plan, plan.split_dst(_AttentionSum.apply(z, attn, plan).view(-1, k * f)), bias, aggregate)
    if not first._concat:
        out = {t: z_t.view(-1, k, f).mean(1) for t, z_t in out.items()}
    return out, (_split_attention(plan, attn) if return_attention else {})


def _gat_sparse(
    plan: RelationPlan,
    layout: AttentionLayout,
    first: GATLayer,
    z: Tensor,
    raw: Tensor | None,
    el: Tensor,
    er: Tensor,
    af_weights: Sequence[Tensor],
    bias: Tensor | None,
    aggregate: str,
    node_major: bool = False,
) -> tuple[dict[str, Tensor], Tensor]:
    r"""The edge and aggregation part of :func:`_gat` with torch operators, in the
    layout's edge order: scores :math:`e = \mathrm{LeakyReLU}(el_j + er_i)`, their
    softmax per group, then :math:`o = A z` for the relations that project first (one
    sparse product for all heads, ``z (K, rows, F)``) and the projected sums of those
    that sum first. Without autograd the per-edge temporaries are updated in place.
    ``node_major``: ``z`` is ``(rows, K, F)`` instead (:meth:`AttentionLayout.node_major`).

    Returns:
        The outputs per destination type ``(N_t, K F)`` and the attention ``(E, K)`` in
        the layout's edge order.
    """
    k, f = first._heads, first._head_feats
    # torch ops only: DGL's kernels run in an OpenMP thread pool of their own, and
    # two pools waiting for work beside each other slow both down
    ws = None if torch.is_grad_enabled() else plan.workspace()  # as in _gat_inputs
    # scores only where a group has several edges (all edges unless many are alone)
    shared = layout.shared is not None
    src_rows, group_rows = ((layout.shared_src_rows, layout.shared_group_rows) if shared
                            else (layout.src_rows, layout.group_rows))
    if ws is None:
        e = el.index_select(0, src_rows) + er.index_select(0, group_rows)
    else:  # the scores and their softmax in place, in reused buffers
        shape = (src_rows.shape[0], k)
        e = torch.index_select(el, 0, src_rows, out=ws.get("e", shape, el))
        e.add_(torch.index_select(er, 0, group_rows, out=ws.get("gathered", shape, el)))
    e = nn.functional.leaky_relu(e, first.negative_slope, inplace=ws is not None)
    attn = _group_softmax(e, group_rows, plan.num_groups, inplace=ws is not None, ws=ws)
    if shared:  # the edges alone in their group: attention 1
        shape = (layout.src_rows.shape[0], k)
        if ws is None:
            attn = attn.new_ones(shape).index_copy(0, layout.shared, attn)
        else:
            attn = ws.get("attn", shape, attn).fill_(1.0).index_copy_(0, layout.shared, attn)
    attn = first.attn_drop(attn)
    n_pf = layout.n_projected
    # a node-major z (rows, K, F): the same product with columns r K + k
    mat = layout.node_major() if node_major else layout.projected
    # one split, not two slices: the backward of a slice is a zero-filled tensor of
    # the full size, that of a split one concatenation
    attn_pf, attn_af = attn.split([n_pf, attn.shape[0] - n_pf])
    out = _HeadAttention.apply(z.view(-1, f), attn_pf, mat, ws).view(k, plan.num_dst, f)
    biases = None if bias is None else plan.membership(bias.dtype) @ bias  # (dst types, K F): every relation's
    outs = {}
    for i, (t, part) in enumerate(zip(plan.dst_types, out.split([plan.num_nodes[t] for t in plan.dst_types], 1))):
        part = part.permute(1, 0, 2)  # (N_t, K, F): node-major again
        if ws is None:
            x = part.reshape(-1, k * f)
            outs[t] = x if biases is None else x + biases[i]
        else:  # a new tensor (never a workspace buffer), the biases added in place
            x = torch.empty(part.shape[0], k * f, dtype=part.dtype, device=part.device)
            x.view(part.shape).copy_(part)
            outs[t] = x if biases is None else x.add_(biases[i])
    if layout.summed is not None:
        sums = _HeadAttention.apply(raw, attn_af, layout.summed, ws)  # (K groups, D)
        sums = sums.view(k, -1, sums.shape[1])
        sizes = [plan.num_nodes[t] * len(pos) for t, pos in layout.af_dst.items()]
        for (t, pos), x, w_t in zip(layout.af_dst.items(), sums.split(sizes, 1), af_weights):
            # project the sums: per head k, sum over the relations r of x[k, :, r] W_r^k
            y = torch.einsum("knrd,rkfd->nkf", x.view(k, -1, len(pos), x.shape[-1]), w_t.view(len(pos), k, f, -1))
            outs[t] = outs[t] + y.reshape(-1, k * f) if ws is None else outs[t].add_(y.reshape(-1, k * f))
    if aggregate == "mean":
        outs = {t: x / len(plan.dst_types[t]) if len(plan.dst_types[t]) > 1 else x for t, x in outs.items()}
    return outs, attn  # with `ws`, possibly a workspace buffer: _gat copies it out when asked for


def _group_softmax(e: Tensor, groups: Tensor, n_groups: int, inplace: bool = False,
                   ws: Workspace | None = None) -> Tensor:
    r"""Softmax of ``e (E, K)`` over the edges of each group (``groups (E,)``), per head:
    :math:`\exp(e - m_g) / \sum_{e' \in g} \exp(e' - m_g)` with the group maximum
    :math:`m_g` (a constant for the gradient, as it cancels). ``inplace`` (no autograd)
    turns ``e`` itself into the weights, its temporaries from ``ws`` if given."""
    k = e.shape[1]
    g_shape, e_shape = (n_groups, k), tuple(e.shape)
    with torch.no_grad():
        peak = e.new_empty(g_shape) if ws is None else ws.get("peak", g_shape, e)
        peak.fill_(float("-inf")).scatter_reduce_(0, groups.unsqueeze(1).expand(-1, k), e, "amax")
    if inplace:
        gathered = None if ws is None else ws.get("gathered", e_shape, e)
        ex = e.sub_(torch.index_select(peak, 0, groups, out=gathered) if gathered is not None
                    else peak.index_select(0, groups)).exp_()
        total = (e.new_empty(g_shape) if ws is None else ws.get("total", g_shape, e)).zero_()
        total.index_add_(0, groups, ex)
        return ex.div_(torch.index_select(total, 0, groups, out=gathered) if gathered is not None
                       else total.index_select(0, groups))
    ex = torch.exp(e - peak.index_select(0, groups))
    total = e.new_zeros(n_groups, k).index_add(0, groups, ex)
    return ex / total.index_select(0, groups)


def _gat_inputs(
    plan: RelationPlan,
    layout: AttentionLayout,
    inputs: Mapping[str, Tensor],
    pf_w: dict[str, Tensor],
    scores: Tensor,
    f: int,
    drop: nn.Dropout | None,
    head_major: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Projections ``z`` of the relations that project first, source rows ``raw (summed
    rows, D)`` of those that sum first (``None`` if none), source scores ``el (rows, K)``
    and destination scores ``er (groups, K)``, from the weights ``pf_w[t] (P_t, K F, D)``
    of the relations projecting first and the score weights ``scores (2 R, K, D)`` of
    :func:`_gat`. ``z`` is ``(K, projected rows, F)`` with ``head_major`` (torch's sparse
    products) and autograd, else ``(projected rows, K, F)`` (DGL's kernels, or torch's
    without autograd: see :meth:`AttentionLayout.node_major`).

    With ``drop`` (``feat_drop`` in training) the inputs are dropped as each relation
    module drops them: an independent mask per relation, and on a relation within one
    node type the same mask for its source and destination side (``h_dst = h_src``).
    """
    k, d = scores.shape[1], scores.shape[2]
    z_parts, raw_parts, el_parts, er_parts = {}, {}, {}, {}
    score_w = dict(zip(plan.ntypes, plan.score_rows.take(scores)))
    for t in plan.ntypes:
        h = inputs[t]
        src, dst = plan.src_types.get(t, []), plan.dst_types.get(t, [])
        pf, af = layout.pf_src.get(t, []), layout.af_src.get(t, [])
        if drop is None:
            if pf:
                z_parts[t] = h  # projected below, all types at once
            if af:
                raw_parts[t] = h if len(af) == 1 else h.unsqueeze(1).expand(h.shape[0], len(af), d).reshape(-1, d)
            # the scores of the R_t relations leaving t, then of the R^t entering it: two
            # products whose outputs are the (N_t R, K) rows as views (one product and a
            # split would copy both halves)
            s_src, s_dst = score_w[t].split([len(src), len(dst)])
            if src:
                el_parts[t] = nn.functional.linear(h, s_src.reshape(-1, d)).view(-1, k)
            if dst:
                er_parts[t] = nn.functional.linear(h, s_dst.reshape(-1, d)).view(-1, k)
            continue
        masked: dict[int, Tensor] = {}
        s_src, s_dst = score_w[t].split([len(src), len(dst)])
        if src:
            x = drop(h.unsqueeze(0).expand(len(src), *h.shape))  # (R_t, N_t, D)
            masked = {r: x[slot] for slot, r in enumerate(src)}
            if pf:
                y = torch.bmm(torch.stack([masked[r] for r in pf]), pf_w[t].transpose(1, 2))  # (P_t, N_t, K F)
                y = y.view(len(pf), -1, k, f)
                # rows i P_t + p: (K, N_t P_t, F) head-major, (N_t P_t, K, F) node-major
                z_parts[t] = (y.permute(2, 1, 0, 3).reshape(k, -1, f) if head_major
                              else y.transpose(0, 1).reshape(-1, k, f))
            if af:
                raw_parts[t] = torch.stack([masked[r] for r in af], 1).reshape(-1, d)  # (N_t A_t, D)
            y = torch.bmm(x, s_src.transpose(1, 2))  # (R_t, N_t, K)
            el_parts[t] = y.transpose(0, 1).reshape(-1, k)
        if dst:
            x = torch.stack([masked[r] if r in masked else drop(h) for r in dst])  # (R^t, N_t, D)
            y = torch.bmm(x, s_dst.transpose(1, 2))  # (R^t, N_t, K)
            er_parts[t] = y.transpose(0, 1).reshape(-1, k)
    h0 = next(iter(inputs.values()))
    # node-major projections into the workspace: no autograd, and no per-relation dropout
    # (whose masked projections are made head-major above)
    ws = plan.workspace() if head_major and not torch.is_grad_enabled() and drop is None else None
    z = _projections([z_parts.get(t) for t in layout.pf_src], [pf_w[t] for t in layout.pf_src], h0, k, f,
                     head_major, dropped=drop is not None, ws=ws)
    raw = _cat([raw_parts[t] for t in layout.af_src]) if raw_parts else None
    el = _cat([el_parts[t] for t in plan.src_types])
    er = _cat([er_parts[t] for t in plan.dst_types])
    return z, raw, el, er


def _projections(parts: list[Tensor | None], weights: list[Tensor], h0: Tensor, k: int, f: int, head_major: bool,
                 dropped: bool, ws: Workspace | None = None) -> Tensor:
    """The projections of :func:`_gat_inputs`, all source types' rows in one tensor.

    ``parts``: per type, its input ``h_t (N_t, D)``, or with ``dropped`` its projections
    already made (from inputs dropped per relation); ``weights[t] (P_t, K F, D)``; ``ws``
    (no autograd): the head-major rows go into its buffer ``"z"``.
    """
    if not parts:
        return h0.new_zeros(k, 0, f) if head_major else h0.new_zeros(0, k, f)
    if dropped:
        return torch.cat(parts, 1) if head_major else _cat(parts)  # type: ignore[arg-type]
    if head_major and ws is not None:
        # without autograd: one product per type, node-major rows (i P_t + p, K, F), written
        # into the workspace (the product over heads, below, would read h once per head)
        sizes = [h.shape[0] * w.shape[0] for h, w in zip(parts, weights)]  # type: ignore[union-attr]
        z = ws.get("z", (sum(sizes), k * f), h0)
        off = 0
        for h, w, n in zip(parts, weights, sizes):
            torch.mm(h, w.reshape(-1, w.shape[2]).t(), out=z[off : off + n].view(h.shape[0], w.shape[0] * w.shape[1]))  # type: ignore
            off += n
        return z.view(-1, k, f)
    if head_major:
        # per type and head k, (D, P_t F): column p F + c is W_p's row k F + c
        pairs = []
        for h, w in zip(parts, weights):
            p, d = w.shape[0], w.shape[2]
            pairs += [h, w.view(p, k, f, d).permute(1, 3, 0, 2).reshape(k, d, p * f)]
        return _ProjectHeads.apply(k, f, ws, *pairs)
    return _cat([nn.functional.linear(h, w.reshape(-1, w.shape[2])).view(-1, k, f)  # type: ignore[arg-type]
                 for h, w in zip(parts, weights)])


class RowGroups:
    """Take groups of rows of a tensor with one ``split``.

    Slicing a tensor several times costs one zero-filled gradient of its full size per
    slice in the backward pass; the backward pass of one split is one concatenation.

    Args:
        groups: Row positions per group; a group of consecutive rows is a view.
        n: Rows of the tensors to take from.

    Example:
        >>> import torch
        >>> [t.tolist() for t in RowGroups([[0, 1], [3], [1, 4]], 5).take(torch.arange(5))]
        [[0, 1], [3], [1, 4]]
    """

    def __init__(self, groups: Sequence[Sequence[int]], n: int) -> None:
        runs = [[(p, p + 1) for p in g] for g in groups]
        merged = []
        for g in runs:  # maximal runs of consecutive rows per group
            out: list[tuple[int, int]] = []
            for lo, hi in g:
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
            merged.append(out)
        cuts = sorted({0, n, *(c for g in merged for run in g for c in run)})
        self.sizes = [b - a for a, b in zip(cuts, cuts[1:])]
        index = {c: i for i, c in enumerate(cuts)}
        self.pieces = [[i for lo, hi in g for i in range(index[lo], index[hi])] for g in merged]

    def take(self, x: Tensor) -> list[Tensor]:
        """``x``'s rows of every group, in order."""
        parts = x.split(self.sizes)
        return [parts[p[0]] if len(p) == 1 else torch.cat([parts[i] for i in p]) for p in self.pieces]


def _cat(parts: list[Tensor]) -> Tensor:
    return torch.cat(parts) if len(parts) > 1 else parts[0]


#: Run the GAT aggregation as torch sparse products on CPU (``False``: DGL's kernels).
SPARSE_ON_CPU = True

#: The attention scores are computed for the edges of shared groups only (and the
#: singletons' attention set to 1) where these are at most this share of the edges.
SHARED_EDGES_MAX = 0.75


def _use_sparse(x: Tensor) -> bool:
    # torch's sparse CSR products (MKL's on CPU) run about twice as fast here as DGL's
    # broadcasting kernels, its sampled product three times as fast as DGL's per-edge
    # dot product; DGL's kernels remain for GPUs and other dtypes
    return SPARSE_ON_CPU and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


@dataclass
class HeadCSR:
    r"""One sparsity pattern for ``K`` heads, as one sparse matrix with head-major rows.

    Entry ``e`` (edge ``e`` of the pattern, whose edges are sorted by ``rows``) of head
    ``k`` sits at row :math:`k\,n + \mathrm{rows}_e` and column
    :math:`\mathrm{cols}_e + k\,s` (``n = n_rows``, ``s = col_stride``), with value
    ``attn[e, k]``: so the matrix times a head-major operand (rows :math:`k\,s + j`) is
    every head's weighted sum at once, and ``col_stride=0`` lets all heads read the same
    columns. Made with one broadcast per array: no ``E K``-sized sort or scatter. The
    transpose, for the backward pass, is laid out on first use.

    Example:
        >>> import torch
        >>> m = HeadCSR.build(torch.tensor([0, 0, 1]), torch.tensor([1, 0, 1]), 2, 4, heads=2, col_stride=2)
        >>> attn = torch.tensor([[1., 10.], [2., 20.], [3., 30.]])  # (E, K)
        >>> m.matrix(attn).to_dense()
        tensor([[ 2.,  1.,  0.,  0.],
                [ 0.,  3.,  0.,  0.],
                [ 0.,  0., 20., 10.],
                [ 0.,  0.,  0., 30.]])
        >>> torch.equal(m.matrix(attn, transpose=True).to_dense(), m.matrix(attn).to_dense().t())
        True
    """

    crow: Tensor
    col: Tensor
    rows: Tensor
    cols: Tensor
    n_rows: int
    n_cols: int
    heads: int
    col_stride: int
    _transposed: tuple[Tensor, Tensor, Tensor] | None = None

    @classmethod
    def build(cls, rows: Tensor, cols: Tensor, n_rows: int, n_cols: int, heads: int, col_stride: int) -> HeadCSR:
        """Edge ``e`` from column ``cols[e]`` to row ``rows[e]`` (``rows`` sorted); ``n_cols``
        counts all heads' columns."""
        e, kk = rows.shape[0], torch.arange(heads, device=rows.device)
        first = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0) - torch.bincount(rows, minlength=n_rows)
        crow = torch.cat([(first.unsqueeze(0) + e * kk.unsqueeze(1)).view(-1),
                          torch.tensor([e * heads], device=rows.device)])
        col = (cols.unsqueeze(0) + col_stride * kk.unsqueeze(1)).view(-1)
        return cls(crow, col, rows, cols, n_rows, n_cols, heads, col_stride)

    @property
    def nnz(self) -> int:
        return self.col.shape[0]

    def matrix(self, attn: Tensor, transpose: bool = False) -> Tensor:
        """The sparse ``(K n_rows, n_cols)`` matrix (or its transpose) with values from
        ``attn (E, K)``."""
        if not transpose:
            return _csr(self.crow, self.col, _head_major(attn).view(-1), (self.heads * self.n_rows, self.n_cols))
        crow, col, order = self._transpose()
        values = attn.index_select(0, order)  # (E, K), edges sorted by column
        if self.col_stride:  # head-major rows again: head k's entries follow each other
            values = _head_major(values)
        return _csr(crow, col, values.view(-1), (self.n_cols, self.heads * self.n_rows))

    def _transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        # entry (e, k) at row cols[e] + k s, column k n + rows[e]; with s = 0 a row holds
        # the K entries of each of its edges one after another
        if self._transposed is None:
            order = torch.argsort(self.cols)
            rows, cols, kk = self.rows[order], self.cols[order], torch.arange(self.heads, device=self.cols.device)
            e, n_src = order.shape[0], (self.col_stride or self.n_cols)
            counts = torch.bincount(cols, minlength=n_src)
            first = torch.cumsum(counts, 0) - counts
            if self.col_stride:
                crow = torch.cat([(first.unsqueeze(0) + e * kk.unsqueeze(1)).view(-1), first.new_tensor([e * self.heads])])
                col = (rows.unsqueeze(0) + self.n_rows * kk.unsqueeze(1)).view(-1)
            else:
                crow = torch.cat([first * self.heads, first.new_tensor([e * self.heads])])
                col = (rows.unsqueeze(1) + self.n_rows * kk.unsqueeze(0)).view(-1)
            self._transposed = (crow, col, order)
        return self._transposed


@dataclass
class AttentionLayout:
    """Where each relation's weighted sum of a GAT layer goes (torch's sparse products).

    Relations *project first* (``pf_src``): per source type ``s`` the rows ``z`` of its
    ``P_s`` such relations, row ``i P_s + k`` for node ``i`` and the ``k``-th relation,
    all types one after another, head-major (``(K, z_rows, F)``); :attr:`projected`
    sums them into the destination nodes, ``(K num_dst, F)``. A relation into a type
    with at most a quarter of its source type's nodes *sums first* (``af_src``,
    ``af_dst``): :attr:`summed` adds its raw source rows into one group per
    (destination node, relation) and head, ``(K groups, D)``, projected afterwards, so
    the many source nodes are never projected.

    All per-edge work runs in one order, :attr:`order`: the projected edges sorted by
    group, then the summed ones; :attr:`src_rows` and :attr:`group_rows` are the plan's
    rows in that order. ``projected`` is ``None`` without ``split`` (DGL's kernels on
    the plan's aggregation graph, in the plan's edge order).
    """

    pf_src: dict[str, list[int]]
    af_src: dict[str, list[int]]
    af_dst: dict[str, list[int]]
    projected: HeadCSR | None
    summed: HeadCSR | None
    order: Tensor | None = None
    src_rows: Tensor | None = None
    group_rows: Tensor | None = None
    z_rows: int = 0
    #: positions (in :attr:`order`) of the edges whose group has more than one edge, and
    #: their src/group rows; ``None`` when (nearly) all edges are such. A group of one
    #: edge has attention exactly 1 (the softmax of one score), so its score is never
    #: needed: directional grid adjacency, ``next`` with window 1, summary broadcasts.
    shared: Tensor | None = None
    shared_src_rows: Tensor | None = None
    shared_group_rows: Tensor | None = None
    weight_rows: RowGroups = field(init=False)
    _node_major: HeadCSR | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # rows of the stacked (R, ...) source weights: per type of pf_src, then of af_dst
        n = sum(len(p) for p in self.pf_src.values()) + sum(len(p) for p in self.af_src.values())
        self.weight_rows = RowGroups([*self.pf_src.values(), *self.af_dst.values()], n)

    def node_major(self) -> HeadCSR:
        """:attr:`projected` for node-major projections ``(rows, K, F)``: head ``k`` of row
        ``j`` is column ``j K + k`` (made on first use; forward passes without autograd)."""
        if self._node_major is None:
            p = self.projected
            self._node_major = HeadCSR.build(p.rows, p.cols * p.heads, p.n_rows, p.n_cols, p.heads, col_stride=1)
        return self._node_major

    @property
    def n_projected(self) -> int:
        """Edges of the relations that project first (the first ones of :attr:`order`)."""
        return 0 if self.projected is None else self.projected.rows.shape[0]

    @classmethod
    def build(cls, plan: RelationPlan, heads: int, split: bool) -> AttentionLayout:
        n = plan.num_nodes
        af = {r for r, (s, _, t) in enumerate(plan.rels) if split and s != t and 4 * n[t] <= n[s]}

        def by_type(types: dict[str, list[int]], keep: bool) -> dict[str, list[int]]:
            out = {t: [r for r in pos if (r in af) == keep] for t, pos in types.items()}
            return {t: pos for t, pos in out.items() if pos}

        pf_src, af_src, af_dst = by_type(plan.src_types, False), by_type(plan.src_types, True), by_type(
            plan.dst_types, True)
        if not split:
            return cls(pf_src, af_src, af_dst, None, None)
        order, n_pf = _work_order(plan, af)

        def rows_of(types: dict[str, list[int]], ids: Tensor, part: Tensor) -> tuple[Tensor, int]:
            # the edges' rows in the types' blocks (node i, k-th relation: i P + k), taken
            # at `part` (work-order positions); and the blocks' total
            scale, shift, total = [0] * len(plan.rels), [0] * len(plan.rels), 0
            for t, pos in types.items():
                for slot, r in enumerate(pos):
                    scale[r], shift[r] = len(pos), total + slot
                total += n[t] * len(pos)
            return plan.relation_rows(scale, shift, ids).index_select(0, part), total

        first, rest = order[:n_pf], order[n_pf:]
        z_rows, z_total = rows_of(pf_src, plan.src_ids, first)
        projected = HeadCSR.build(plan.node_rows.index_select(0, first), z_rows, plan.num_dst, heads * z_total, heads,
                                  col_stride=z_total)
        summed = None
        if af:
            raw, n_raw = rows_of(af_src, plan.src_ids, rest)
            groups, n_groups = rows_of(af_dst, plan.dst_ids, rest)
            summed = HeadCSR.build(groups, raw, n_groups, n_raw, heads, col_stride=0)
        src_rows, group_rows = plan.src_rows.index_select(0, order), plan.group_rows.index_select(0, order)
        shared = torch.bincount(plan.group_rows, minlength=plan.num_groups).index_select(0, group_rows) > 1
        n_shared = int(shared.sum())
        if n_shared > SHARED_EDGES_MAX * shared.shape[0]:  # too few singletons to pay for the scatter
            return cls(pf_src, af_src, af_dst, projected, summed, order, src_rows, group_rows, z_total)
        pos = shared.nonzero().squeeze(1)
        return cls(pf_src, af_src, af_dst, projected, summed, order, src_rows, group_rows, z_total, pos,
                   src_rows.index_select(0, pos), group_rows.index_select(0, pos))


def _work_order(plan: RelationPlan, summed: set[int]) -> tuple[Tensor, int]:
    """The edges (positions in the plan) of the relations not in ``summed`` sorted by
    group, then those of ``summed`` sorted by group (each group's edges in plan order);
    and how many come first."""
    g = plan.group_rows
    if not summed:
        return torch.argsort(g, stable=True), g.shape[0]
    flags = [torch.tensor([r in summed for r in pos], device=g.device).repeat(plan.num_nodes[t])
             for t, pos in plan.dst_types.items()]
    late = torch.cat(flags).index_select(0, g)  # (E,) per edge: does its relation sum first?
    n_late = int(late.sum())
    return torch.argsort(g + late * plan.num_groups, stable=True), g.shape[0] - n_late


_CSR_WARNED = False


def _head_major(x: Tensor, out: Tensor | None = None) -> Tensor:
    """``x (E, K)`` as a contiguous ``(K, E)`` tensor (into ``out`` if given). For a
    small ``K`` stacking its columns copies several times faster than
    ``x.t().contiguous()``, whose copy walks the narrow dimension innermost."""
    return torch.stack(x.unbind(1), out=out)


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    global _CSR_WARNED
    if not _CSR_WARNED:  # torch warns once per process that sparse CSR is in beta
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = torch.sparse_csr_tensor(crow, col, values, shape)
        _CSR_WARNED = True
        return out
    return torch.sparse_csr_tensor(crow, col, values, shape)


def _spmm(a: Tensor, x: Tensor) -> Tensor:
    """``a @ x`` for a sparse CSR ``a``, written straight into a new tensor: ``a @ x``
    fills its result with zeros and copies it once more (MKL's product), ``addmm``
    with ``beta=0`` into ``out`` does neither (``beta=0`` reads nothing of ``out``)."""
    out = x.new_empty(a.shape[0], x.shape[1])
    return torch.addmm(out, a, x, beta=0, out=out)


class _HeadAttention(torch.autograd.Function):
    r"""``A @ x`` for a :class:`HeadCSR` ``A`` whose values come from ``attn (E, K)``;
    the backward pass multiplies by :math:`A^\top` for ``x`` and takes the sampled
    product :math:`(\partial o\, x^\top) \odot [A \ne 0]` for ``attn``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, attn: Tensor, mat: HeadCSR,  # type: ignore[override]
                ws: Workspace | None = None) -> Tensor:
        ctx.mat = mat
        ctx.save_for_backward(x, attn)
        if mat.nnz == 0:
            return x.new_zeros(mat.heads * mat.n_rows, x.shape[1])
        if ws is None:
            return _spmm(mat.matrix(attn), x.contiguous())
        # without autograd: the values and the product in reused buffers (the caller
        # copies what it keeps out of the product)
        values = _head_major(attn, out=ws.get(f"values{mat.col_stride > 0}", (mat.heads, attn.shape[0]), attn))
        a = _csr(mat.crow, mat.col, values.view(-1), (mat.heads * mat.n_rows, mat.n_cols))
        out = ws.get(f"product{mat.col_stride > 0}", (a.shape[0], x.shape[1]), x)
        return torch.addmm(out, a, x.contiguous(), beta=0, out=out)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        x, attn = ctx.saved_tensors
        mat: HeadCSR = ctx.mat
        if mat.nnz == 0:
            return torch.zeros_like(x), torch.zeros_like(attn), None, None
        grad = grad.contiguous()
        grad_x = _spmm(mat.matrix(attn, transpose=True), grad) if ctx.needs_input_grad[0] else None
        grad_attn = None
        if ctx.needs_input_grad[1]:
            dots = torch.sparse.sampled_addmm(mat.matrix(attn), grad, x.contiguous().t(), beta=0.0).values()
            grad_attn = torch.stack(dots.view(mat.heads, -1).unbind(0), 1)  # (E, K), as _head_major's inverse
        return grad_x, grad_attn, None, None


class _ProjectHeads(torch.autograd.Function):
    r"""Projections of several node types into one head-major buffer: type ``t``'s
    ``h_t (N_t, D) @ w_t[k] (D, P_t F)`` is head ``k``'s block of ``N_t P_t`` rows of
    ``F``, the types one after another, ``(K, rows, F)`` in all. The products write into
    the buffer (no concatenation, one large allocation); the backward pass reads its
    gradient block by block, as views."""

    @staticmethod
    def forward(ctx: Any, heads: int, feats: int, workspace: Workspace | None,  # type: ignore[override]
                *pairs: Tensor) -> Tensor:
        hs, ws = pairs[0::2], pairs[1::2]
        sizes = [h.shape[0] * (w.shape[2] // feats) for h, w in zip(hs, ws)]
        shape = (heads, sum(sizes), feats)
        z = hs[0].new_empty(shape) if workspace is None else workspace.get("z", shape, hs[0])
        off = 0
        for h, w, n in zip(hs, ws, sizes):
            for k in range(heads):  # per head: a contiguous block of the buffer
                torch.mm(h, w[k], out=z[k, off : off + n].view(h.shape[0], w.shape[2]))
            off += n
        ctx.sizes, ctx.feats = sizes, feats
        ctx.save_for_backward(*pairs)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        pairs = ctx.saved_tensors
        grads: list[Tensor | None] = [None, None, None]
        off = 0
        for h, w, n in zip(pairs[0::2], pairs[1::2], ctx.sizes):
            g = grad[:, off : off + n].reshape(grad.shape[0], h.shape[0], w.shape[2])  # (K, N, P F)
            off += n
            grad_h = grad_w = None
            if ctx.needs_input_grad[len(grads)]:
                grad_h = g[0] @ w[0].t()
                for k in range(1, g.shape[0]):
                    grad_h.addmm_(g[k], w[k].t())
            if ctx.needs_input_grad[len(grads) + 1]:
                # per head h^T g_k: torch.matmul over the batch would copy g transposed
                grad_w = w.new_empty(w.shape)  # (K, D, P F)
                for k in range(g.shape[0]):
                    torch.mm(h.t(), g[k], out=grad_w[k])
            grads += [grad_h, grad_w]
        return tuple(grads)


#: Largest ``E * K * F`` for which :func:`_weighted_sum` spreads the attention over
#: the feature axis (a temporary of that many elements).
SPREAD_LIMIT = 2**24


class _AttentionSum(torch.autograd.Function):
    r""":math:`o_{i,k} = \sum_{e = (j \to i)} \alpha_{e,k}\, z_{j,k,:}` with DGL's kernels
    on the plan's aggregation graph, ``z (rows, K, F)`` and ``attn (E, K)`` to
    ``(num_dst, K, F)``; the backward pass runs on the reverse graph for ``z`` and as
    a per-head dot product for ``attn``."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, attn: Tensor, plan: RelationPlan) -> Tensor:  # type: ignore[override]
        ctx.plan = plan
        ctx.save_for_backward(z, attn)
        return _weighted_sum(plan.agg_graph, z, attn)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        z, attn = ctx.saved_tensors
        plan: RelationPlan = ctx.plan
        grad = grad.contiguous()
        grad_z = _weighted_sum(plan.rev_agg_graph, grad, attn) if ctx.needs_input_grad[0] else None
        grad_attn = dgl.ops.u_dot_v(plan.agg_graph, z, grad).squeeze(-1) if ctx.needs_input_grad[1] else None
        return grad_z, grad_attn, None


def _weighted_sum(graph: dgl.DGLGraph, x: Tensor, attn: Tensor) -> Tensor:
    """DGL's ``u_mul_e_sum`` of ``x (N_src, K, F)`` with per-head edge weights ``(E, K)``."""
    e, (k, f) = attn.shape[0], x.shape[1:]
    x = x.contiguous()
    if e * k * f <= SPREAD_LIMIT:
        # DGL's kernel without broadcasting is about twice as fast; copy_ into a new
        # tensor is several times faster than reshape of the expanded view
        w = attn.new_empty(e, k, f).copy_(attn.unsqueeze(-1).expand(e, k, f))
        return dgl.ops.u_mul_e_sum(graph, x.view(-1, k * f), w.view(e, k * f)).view(-1, k, f)
    return dgl.ops.u_mul_e_sum(graph, x, attn.unsqueeze(-1))


# ---------------------------------------------------------------- GCN
def _gcn(
    mods: Sequence[nn.Module],
    plan: RelationPlan,
    inputs: Mapping[str, Tensor],
    aggregate: str,
    return_attention: bool,
) -> tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]]:
    r""":class:`GCNLayer` on every relation at once: the sources are projected per
    type first (``h_s W_r`` for all its relations) and every edge carries its
    relation's normalisation :math:`1/\sqrt{d^{out}_j d^{in}_i}` (``"both"``)."""
    convs = [m.conv for m in mods]
    norm = convs[0]._norm
    weight = torch.stack([c.weight for c in convs]).transpose(1, 2)  # (R, D_out, D_in)
    table = _project(plan, "src", inputs, weight)  # (rows, D_out)
    graph = plan.agg_graph
    if norm == "none":
        out = dgl.ops.copy_u_sum(graph, table)
    else:
        out_deg, in_deg = plan.degrees()
        out_deg, in_deg = out_deg.to(table.dtype), in_deg.to(table.dtype)
        if norm == "both":
            w = (out_deg * in_deg).rsqrt()
        elif norm == "left":
            w = out_deg.reciprocal()
        else:  # right
            w = in_deg.reciprocal()
        out = dgl.ops.u_mul_e_sum(graph, table, w.unsqueeze(-1))
    bias = None if convs[0].bias is None else torch.stack([c.bias for c in convs])
    return _per_dst(plan, out, bias, aggregate), {}


# ---------------------------------------------------------------- sum
def _sum(
    mods: Sequence[nn.Module],
    plan: RelationPlan,
    inputs: Mapping[str, Tensor],
    aggregate: str,
    return_attention: bool,
) -> tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]]:
    r""":class:`SumConv` on every relation at once: the neighbour sums per group, then
    per destination type :math:`\sigma(W_r(h_i + \sum_j h_j) + b_r)` for all its
    relations together, summed over relations."""
    first: SumConv = mods[0]  # type: ignore[assignment]
    parts = []
    for s, pos in plan.src_types.items():
        h = inputs[s]
        parts.append(h.unsqueeze(1).expand(h.shape[0], len(pos), h.shape[1]).reshape(-1, h.shape[1]))
    table = torch.cat(parts) if len(parts) > 1 else parts[0]
    groups = dgl.ops.copy_u_sum(plan.graph, table)  # (groups, D)
    weight = torch.stack([m.weight for m in mods]) if first.weight is not None else None
    bias = torch.stack([m.bias for m in mods]) if first.bias is not None else None
    out = {}
    for (t, pos), x in zip(plan.dst_types.items(), _split_groups(plan, groups)):
        n, k = plan.num_nodes[t], len(pos)
        h = inputs[t]
        x = x.view(n, k, groups.shape[1]) + h.unsqueeze(1)  # (N_t, R^t, D)
        if weight is not None:
            x = torch.einsum("nrd,rdo->nro", x, plan.take("dst", t, weight))
            if bias is not None:
                x = x + plan.take("dst", t, bias)
        if first.activation is not None:
            x = first.activation(x)
        out[t] = x.mean(1) if aggregate == "mean" else x.sum(1)
    return out, {}
