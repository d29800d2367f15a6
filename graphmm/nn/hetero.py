"""Heterogeneous message passing over all relations of the multimodal graph."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dgl
import torch
from dgl.nn.pytorch import HeteroGraphConv
from torch import Tensor, nn

from graphmm.graphtypes import CanonicalEType

from .conv import GATLayer, GCNLayer, SAGELayer, SumConv, get_activation
from . import fused as fused_mod
from .fused import FusedKernel, RelationIndex, fused_kernel, has_hooks
from .registry import build_conv, get_conv

__all__ = ["AGGREGATES", "CanonicalEType", "HeteroGNN", "RelationGraphConv", "RelationIndex", "as_canonical_etypes"]


#: Convs whose output is a new tensor that nothing else refers to (no hooks given), so
#: without autograd the sum over relations may accumulate into it in place.
FRESH_OUTPUT_CONVS: tuple[type, ...] = (GATLayer, GCNLayer, SAGELayer, SumConv)

#: Ways to combine the outputs of several relations that end in one node type.
AGGREGATES: tuple[str, ...] = ("sum", "mean", "max", "min")


def as_canonical_etypes(etypes: Sequence[Sequence[str]]) -> list[CanonicalEType]:
    """Normalise canonical edge types (e.g. lists from a YAML config) to tuples.

    Raises:
        ValueError: If an entry is not a ``(src, rel, dst)`` triple or repeats.
    """
    out: list[CanonicalEType] = []
    for et in etypes:
        if isinstance(et, str) or len(et) != 3:
            raise ValueError(
                f"canonical edge types must be (src, relation, dst) triples, got {et!r}; "
                f"pass g.canonical_etypes."
            )
        cet = (str(et[0]), str(et[1]), str(et[2]))
        if cet in out:
            raise ValueError(f"canonical edge type {cet} is listed twice.")
        out.append(cet)
    return out


class LayerOutputs(dict):
    """A layer's outputs per node type (a ``dict``); :attr:`owned` names the types whose
    tensor is new and referred to nowhere else, so that without autograd the update of
    :class:`HeteroGNN` may work in it in place."""

    def __init__(self, outputs: Mapping[str, Tensor], owned: Sequence[str] | Mapping[str, Tensor] = ()) -> None:
        super().__init__(outputs)
        self.owned = frozenset(owned)


#: In-place versions of the activations of :data:`graphmm.nn.conv.ACTIVATIONS`.
INPLACE_ACTIVATIONS: dict[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] = {
    torch.relu: torch.relu_,
    nn.functional.elu: lambda x: nn.functional.elu(x, inplace=True),
    nn.functional.leaky_relu: nn.functional.leaky_relu_,
    nn.functional.silu: lambda x: nn.functional.silu(x, inplace=True),
    torch.tanh: torch.tanh_,
    torch.sigmoid: torch.sigmoid_,
}

#: Rows per pass of the in-place LayerNorm of :meth:`HeteroGNN.forward` without autograd.
NORM_ROWS = 2**15


def _layer_norm_(norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(x)`` written into ``x``, in passes of :data:`NORM_ROWS` rows: each row is
    normalised on its own, so the passes give ``norm(x)``; for a large ``x`` their small
    temporaries replace one as large as ``x``."""
    if type(norm) is not nn.LayerNorm or x.shape[0] <= NORM_ROWS:
        return norm(x)
    for lo in range(0, x.shape[0], NORM_ROWS):  # blocks of rows, not a loop over rows
        block = x[lo : lo + NORM_ROWS]
        block.copy_(nn.functional.layer_norm(block, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
    return x


class RelationGraphConv(HeteroGraphConv):
    r""":class:`dgl.nn.HeteroGraphConv` keyed strictly by canonical edge type.

    For every destination type :math:`t`

    .. math::

        z_t = \operatorname{AGG}_{(s, r, t)}\; f_{(s, r, t)}\big(G_{(s,r,t)}, (h_s, h_t)\big)

    The same relation name occurs for several node-type pairs (``("word", "next",
    "word")`` and ``("frame", "next", "frame")``), so modules and per-relation
    options are looked up by the full ``(src, rel, dst)`` triple only, never by
    the bare name. Relations whose source or destination type has no input
    features are skipped; a relation with zero edges still runs so that a sample
    gives the same result alone and inside any batch.

    Given a :class:`~graphmm.nn.fused.RelationIndex` of the graph, the layer runs
    all relations as one fused computation (:mod:`graphmm.nn.fused`) where its
    modules allow it (``gat``, ``gcn``, ``sum`` with ``sum``/``mean`` aggregation);
    the result is the same as one module per relation.

    Args:
        mods: One module per canonical edge type.
        aggregate: One of :data:`AGGREGATES`. Default: ``"sum"``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import build_conv
        >>> from graphmm.nn.hetero import RelationGraphConv
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0], [1]),
        ...     ("frame", "next", "frame"): ([], []),
        ...     ("patch", "rev_cross", "word"): ([0], [0]),
        ... }, num_nodes_dict={"word": 2, "patch": 1, "frame": 0})
        >>> conv = RelationGraphConv({et: build_conv("sum", 4, 4) for et in g.canonical_etypes})
        >>> out = conv(g, {"word": torch.ones(2, 4), "patch": torch.ones(1, 4),
        ...                "frame": torch.ones(0, 4)})
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'frame': (0, 4), 'word': (2, 4)}

    Shapes:
        - Input: ``dict[ntype, (N_ntype, D_in)]``.
        - Output: ``dict[ntype, (N_ntype, D_out)]`` for types that are the
          destination of at least one relation with known endpoints.
    """

    def __init__(
        self,
        mods: Mapping[CanonicalEType, nn.Module],
        aggregate: str = "sum",
        skip: Sequence[Sequence[str]] = (),
    ) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"Unknown aggregate {aggregate!r}; choose one of {list(AGGREGATES)}.")
        mods = {tuple(k): v for k, v in mods.items()}
        for key in mods:
            if len(key) != 3:
                raise ValueError(f"modules must be keyed by (src, rel, dst), got key {key!r}")
        super().__init__(mods, aggregate=aggregate)
        # relations deliberately left without a module (their output would be unused)
        self.skip = frozenset(tuple(c) for c in skip)
        self.aggregate = aggregate

    def _fused_kernel(self, mods: list[nn.Module]) -> FusedKernel | None:
        # the modules' options do not change, so they are checked once per list of
        # modules; hooks come and go (graphmm.predict adds some), so they are not cached
        if any(has_hooks(m) for m in mods):
            return None
        key = (self.aggregate, *map(id, mods))
        cache = self.__dict__.setdefault("_fused_cache", {})
        if key not in cache:
            cache[key] = fused_kernel(mods, self.aggregate)
        return cache[key]

    def _combine(self, outs: list[Tensor], ntype: str, owned: bool = False) -> Tensor:
        if self.aggregate == "sum":
            # pairwise adds: the same sums as DGL's stack-then-sum, without the
            # (relations, N, D) copy, which dominates at a million nodes; into the first
            # output when it is a fresh tensor no one else sees (owned), else into a new one
            if len(outs) == 1:
                return outs[0]
            rst = outs[0].add_(outs[1]) if owned else outs[0] + outs[1]
            for out in outs[2:]:
                rst += out
            return rst
        return self.agg_fn(outs, ntype)

    def forward(  # type: ignore[override]
        self,
        g: dgl.DGLGraph,
        inputs: Mapping[str, Tensor],
        return_attention: bool = False,
        index: RelationIndex | None = None,
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[CanonicalEType, Tensor]]:
        """Run every relation module and aggregate per destination type.

        Args:
            g: A (batched) heterograph.
            inputs: Node features per type.
            return_attention: Also return ``(E, heads)`` attention per relation
                from modules that support it.
            index: ``RelationIndex(g)``, shared by the layers of one forward pass:
                run the relations fused where the modules allow it. ``None`` (the
                default): one module per relation.

        Returns:
            Aggregated outputs per destination type, and the attention dict if
            requested.
        """
        rels: list[CanonicalEType] = []
        for cet in g.canonical_etypes:
            stype, _, dtype = cet
            if stype not in inputs or dtype not in inputs or cet in self.skip:
                continue
            if cet not in self.mod_dict:
                raise KeyError(
                    f"the graph has relation {cet} but the model has no module for it; "
                    f"build the model with canonical_etypes=g.canonical_etypes."
                )
            rels.append(cet)
        if index is not None:
            mods = [self.mod_dict[cet] for cet in rels]
            kernel = self._fused_kernel(mods)
            if kernel is not None:
                wider = None
                if self.skip and rels:  # on an earlier layer's plan, if that costs less
                    wider = fused_mod.wider_plan(index, rels, [c for c in g.canonical_etypes if c[0] in inputs
                                                               and c[2] in inputs], self.mod_dict, inputs[rels[0][0]])
                if wider is None:
                    rst, attention = kernel(mods, index.plan(rels), inputs, self.aggregate, return_attention)
                else:
                    rst, attention = kernel(wider[1], wider[0], inputs, self.aggregate, return_attention)
                    ends = {t for _, _, t in rels}
                    rst = {t: x for t, x in rst.items() if t in ends}
                    attention = {cet: a for cet, a in attention.items() if cet in self.mod_dict}
                rst = LayerOutputs(rst, owned=rst if not torch.is_grad_enabled() else ())
                return (rst, attention) if return_attention else rst
        outputs: dict[str, list[Tensor]] = {}
        owned: dict[str, bool] = {}  # is the first output into a type a fresh tensor of its own?
        attention = {}
        for cet in rels:
            stype, _, dtype = cet
            mod = self.mod_dict[cet]
            feat = (inputs[stype], inputs[dtype])
            if return_attention and getattr(mod, "supports_attention", False):
                out, attn = mod(g[cet], feat, get_attention=True)
                attention[cet] = attn
            else:
                out = mod(g[cet], feat)
            if dtype not in outputs:  # without autograd, as its backward may keep it (a ReLU's output)
                owned[dtype] = not torch.is_grad_enabled() and type(mod) in FRESH_OUTPUT_CONVS and not has_hooks(mod)
            outputs.setdefault(dtype, []).append(out)
        rst = LayerOutputs({ntype: self._combine(outs, ntype, owned[ntype]) for ntype, outs in outputs.items()},
                           # a sum of several outputs is a new tensor too
                           owned=[t for t, outs in outputs.items() if owned[t] or (
                               len(outs) > 1 and self.aggregate == "sum" and not torch.is_grad_enabled())])
        if return_attention:
            return rst, attention
        return rst


class HeteroGNN(nn.Module):
    r"""Stack of heterogeneous message-passing layers with residual LayerNorm.

    Layer :math:`\ell` runs one module :math:`f^{\ell}_{(s,r,t)}` per relation
    (chosen by name from the conv registry), aggregates per destination type and
    updates with a residual connection:

    .. math::

        z^{\ell}_t &= \operatorname{AGG}_{(s,r,t)} f^{\ell}_{(s,r,t)}
                      \big(G_{(s,r,t)}, (h^{\ell}_s, h^{\ell}_t)\big) \\
        h^{\ell+1}_t &= \mathrm{LayerNorm}_t^{\ell}\big(h^{\ell}_t
                      + \mathrm{Dropout}(\sigma(z^{\ell}_t))\big)

    A node type that is the destination of no relation keeps
    :math:`h^{\ell+1}_t = h^{\ell}_t`. Relations with zero edges and node types
    with zero nodes are valid (a sample without audio); nodes without in-edges
    get the modules' bias terms, independently of the rest of the batch.

    Args:
        canonical_etypes: The relations ``(src, rel, dst)`` to learn modules for.
        hidden: Width :math:`d` of every node state.
        num_layers: Number of layers (``0`` gives the identity). Default: ``3``.
        conv: Registered conv name (``"sum"``, ``"gcn"``, ``"gat"``, ``"sage"``, ...).
            Default: ``"gat"``.
        conv_kwargs: Extra keyword arguments for every relation module, e.g.
            ``{"heads": 4}`` for ``"gat"``. Default: ``None``.
        aggregate: Cross-relation aggregation, one of :data:`AGGREGATES`.
            Default: ``"sum"``.
        dropout: Dropout on the update. Default: ``0.1``.
        activation: :math:`\sigma`, a name or ``None``. Default: ``"relu"``.
        output_ntypes: Node types whose final states are used downstream. The last
            layer only runs the relations into these types; the others keep their
            previous state. Default: ``None`` (all types).
        fused: Run each layer's relations as one fused computation
            (:mod:`graphmm.nn.fused`: one product per node type, one softmax and one
            aggregation over all edges) where the conv allows it (``gat``, ``gcn``,
            ``sum`` with ``sum``/``mean`` aggregation, no hooks on the modules) and the
            graph has at most :data:`graphmm.nn.fused.FUSED_MAX_EDGES` edges. It
            computes the same function with the same parameters; ``False`` runs one
            module per relation (the reference). Default: ``True``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import HeteroGNN
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0, 1], [1, 2]),
        ...     ("word", "cross", "patch"): ([0], [0]),
        ...     ("patch", "rev_cross", "word"): ([0], [0]),
        ...     ("frame", "next", "frame"): ([], []),
        ...     ("frame", "aligned", "word"): ([], []),
        ... }, num_nodes_dict={"word": 3, "patch": 1, "frame": 0})
        >>> gnn = HeteroGNN(g.canonical_etypes, hidden=8, conv="gat", conv_kwargs={"heads": 2})
        >>> h = {nt: torch.randn(g.num_nodes(nt), 8) for nt in g.ntypes}
        >>> out, attn = gnn(g, h, return_attention=True)
        >>> tuple(out["word"].shape), tuple(attn[("word", "next", "word")][0].shape)
        ((3, 8), (2, 2))

    Shapes:
        - Input: ``dict[ntype, (N_ntype, hidden)]``.
        - Output: ``dict[ntype, (N_ntype, hidden)]`` with the same keys; with
          ``return_attention=True`` also ``dict[canonical_etype, list[(E, heads)]]``
          (one entry per layer).
    """

    def __init__(
        self,
        canonical_etypes: Sequence[Sequence[str]],
        hidden: int,
        num_layers: int = 3,
        conv: str = "gat",
        conv_kwargs: Mapping[str, Any] | None = None,
        aggregate: str = "sum",
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] | None = "relu",
        output_ntypes: Sequence[str] | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        get_conv(conv)  # fail early, listing the known names
        if aggregate not in AGGREGATES:
            raise ValueError(f"Unknown aggregate {aggregate!r}; choose one of {list(AGGREGATES)}.")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.canonical_etypes = as_canonical_etypes(canonical_etypes)
        # Build one throw-away module so bad conv options (e.g. GAT heads that do not
        # divide hidden) fail here even when there are no relations or layers.
        build_conv(conv, hidden, hidden, **(dict(conv_kwargs) if conv_kwargs else {}))
        self.hidden = hidden
        self.num_layers = num_layers
        self.conv = conv
        self.conv_kwargs = dict(conv_kwargs) if conv_kwargs is not None else {}
        self.aggregate = aggregate
        self.fused = bool(fused)
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(dropout)
        dst_types = sorted({t for _, _, t in self.canonical_etypes})
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.output_ntypes = None if output_ntypes is None else sorted(output_ntypes)
        for i in range(num_layers):
            last = i == num_layers - 1
            rels = [
                c for c in self.canonical_etypes if not (last and output_ntypes is not None and c[2] not in output_ntypes)
            ]
            mods = {
                # Bipartite relations get a (src, dst) width pair so convs that can
                # learn separate source/destination projections do so.
                cet: build_conv(
                    conv, hidden if cet[0] == cet[2] else (hidden, hidden), hidden, **self.conv_kwargs
                )
                for cet in rels
            }
            skip = [c for c in self.canonical_etypes if c not in mods]
            self.layers.append(RelationGraphConv(mods, aggregate=aggregate, skip=skip))
            self.norms.append(nn.ModuleDict({t: nn.LayerNorm(hidden) for t in dst_types if any(c[2] == t for c in rels)}))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise every relation module and LayerNorm."""
        for layer in self.layers:
            for mod in layer.mods.values():
                if hasattr(mod, "reset_parameters"):
                    mod.reset_parameters()
        for norms in self.norms:
            for norm in norms.values():
                norm.reset_parameters()

    def _update(self, z: Tensor, h: Tensor, norm: nn.Module, owned: bool) -> Tensor:
        """:math:`\\mathrm{LayerNorm}(h + \\mathrm{Dropout}(\\sigma(z)))`. Without autograd,
        in a tensor of our own: in ``z`` when the layer says no one else sees it
        (``owned``), else in the activation's output; large ones are normalised in
        place too. On graphs of millions of nodes each new full-size tensor costs more
        than the arithmetic on it (the memory is mapped and zeroed page by page)."""
        if torch.is_grad_enabled() and (z.requires_grad or h.requires_grad):
            x = z if self.activation is None else self.activation(z)
            return norm(h + self.dropout(x))
        if self.activation is None:
            x = z if owned else z.clone()
        elif owned and self.activation in INPLACE_ACTIVATIONS:
            x = INPLACE_ACTIVATIONS[self.activation](z)
        else:
            x = self.activation(z)
            if x is z:  # an activation that returns its input
                x = z.clone()
        if self.dropout.training and self.dropout.p > 0:
            x = nn.functional.dropout(x, self.dropout.p, training=True, inplace=True)
        return _layer_norm_(norm, x.add_(h))

    @property
    def supports_attention(self) -> bool:
        """Whether ``return_attention=True`` is available for this conv."""
        return any(
            getattr(mod, "supports_attention", False)
            for layer in self.layers
            for mod in layer.mods.values()
        )

    def forward(
        self,
        g: dgl.DGLGraph,
        h: Mapping[str, Tensor],
        return_attention: bool = False,
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[CanonicalEType, list[Tensor]]]:
        """Run all layers.

        Args:
            g: A (batched) heterograph whose relations are among ``canonical_etypes``.
            h: Node states per type, each ``(N_ntype, hidden)``.
            return_attention: Also return per-relation attention (``conv="gat"``).

        Returns:
            Updated node states, and the attention dict if requested.
        """
        if return_attention and not self.supports_attention and self.num_layers > 0:
            raise ValueError(
                f"return_attention=True needs an attention conv such as 'gat'; "
                f"this model uses conv={self.conv!r}."
            )
        for ntype, feat in h.items():
            if feat.dim() != 2 or feat.shape[-1] != self.hidden:
                raise ValueError(
                    f"h[{ntype!r}] must be (N, {self.hidden}), got {tuple(feat.shape)}; "
                    f"encode node data to the hidden width first (NodeEncoders)."
                )
        h = dict(h)
        attention: dict[CanonicalEType, list[Tensor]] = {}
        # the graph's relations indexed once for all layers (fused path)
        use_fused = self.fused and self.num_layers > 0 and g.num_edges() <= fused_mod.FUSED_MAX_EDGES
        index = RelationIndex.of(g) if use_fused else None
        for layer, norms in zip(self.layers, self.norms):
            if return_attention:
                out, attn = layer(g, h, return_attention=True, index=index)
                for cet, a in attn.items():
                    attention.setdefault(cet, []).append(a)
            else:
                out = layer(g, h, index=index)
            new_h = dict(h)
            owned = getattr(out, "owned", frozenset())
            for ntype, z in out.items():
                new_h[ntype] = self._update(z, h[ntype], norms[ntype], ntype in owned)
            h = new_h
        if return_attention:
            return h, attention
        return h
