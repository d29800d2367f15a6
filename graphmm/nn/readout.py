"""Graph-level readout: pool each node type per graph, then fuse the types."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import dgl
import torch
from torch import Tensor, nn

__all__ = ["FUSIONS", "POOLS", "TypeReadout"]

POOLS: tuple[str, ...] = ("mean", "max", "attention")
FUSIONS: tuple[str, ...] = ("concat", "attention")


class TypeReadout(nn.Module):
    r"""Pool every node type per graph, then fuse the types into one vector.

    **Pooling** of type :math:`t` in graph :math:`b` with node set :math:`V_{b,t}`:

    .. math::

        p_{b,t} = \frac{1}{|V_{b,t}|}\sum_{i \in V_{b,t}} h_i \;(\texttt{mean}),\quad
        \max_{i \in V_{b,t}} h_i \;(\texttt{max}),\quad
        \sum_{i \in V_{b,t}} \operatorname{softmax}_{V_{b,t}}(w_t^\top h_i + c_t)\, h_i
        \;(\texttt{attention})

    and :math:`p_{b,t} = 0` with presence :math:`m_{b,t} = 0` when
    :math:`V_{b,t} = \emptyset` (a missing modality).

    **Fusion** over the :math:`T` types:

    .. math::

        z_b &= [\,m_{b,1} p_{b,1} \,\|\, \dots \,\|\, m_{b,T} p_{b,T} \,\|\, m_b\,]
              \quad(\texttt{concat}) \\
        z_b &= \sum_t \alpha_{b,t}\, p_{b,t},\quad
              \alpha_{b,\cdot} = \operatorname{softmax}_{t:\,m_{b,t}=1}
              \frac{q^\top \tanh(W p_{b,t} + e_t)}{\sqrt{d}} \quad(\texttt{attention})

    Concatenation appends the presence mask so the next layer knows what is
    missing; attention only weighs present types. A graph with no nodes at all
    gives :math:`z_b = 0` (attention) or all zeros (concat), never NaN.

    Args:
        ntypes: Node types to read out; the concat layout follows this order.
        hidden: Width :math:`d` of the node states.
        pool: One of :data:`POOLS`. Default: ``"mean"``.
        fusion: One of :data:`FUSIONS`. Default: ``"concat"``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import TypeReadout
        >>> def sample(nw, np_, nf):
        ...     return dgl.heterograph({
        ...         ("word", "next", "word"): ([], []),
        ...         ("patch", "adjacent", "patch"): ([], []),
        ...         ("frame", "next", "frame"): ([], []),
        ...     }, num_nodes_dict={"word": nw, "patch": np_, "frame": nf})
        >>> g = dgl.batch([sample(3, 0, 2), sample(0, 4, 0)])
        >>> h = {nt: torch.randn(g.num_nodes(nt), 8) for nt in g.ntypes}
        >>> readout = TypeReadout(["word", "patch", "frame"], 8, pool="attention", fusion="concat")
        >>> readout(g, h).shape, readout.out_dim
        (torch.Size([2, 27]), 27)
        >>> readout.presence(g)
        tensor([[ True, False,  True],
                [False,  True, False]])

    Shapes:
        - Input: batched graph with :math:`B` graphs and ``dict[ntype, (N_ntype, d)]``.
        - Output: ``(B, T*d + T)`` for concat, ``(B, d)`` for attention.
    """

    def __init__(
        self,
        ntypes: Sequence[str],
        hidden: int,
        pool: str = "mean",
        fusion: str = "concat",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"Unknown pool {pool!r}; choose one of {list(POOLS)}.")
        if fusion not in FUSIONS:
            raise ValueError(f"Unknown fusion {fusion!r}; choose one of {list(FUSIONS)}.")
        ntypes = [str(t) for t in ntypes]
        if not ntypes or len(set(ntypes)) != len(ntypes):
            raise ValueError(f"ntypes must be a non-empty list without repeats, got {ntypes}")
        self.ntypes = ntypes
        self.hidden = hidden
        self.pool = pool
        self.fusion = fusion
        self.gates = None
        self.query = None
        self.key = None
        self.type_embed = None
        if pool == "attention":
            self.gates = nn.ModuleDict({t: nn.Linear(hidden, 1) for t in ntypes})
        if fusion == "attention":
            self.key = nn.Linear(hidden, hidden)
            self.type_embed = nn.Parameter(torch.empty(len(ntypes), hidden))
            self.query = nn.Parameter(torch.empty(hidden))
        self.reset_parameters()

    @property
    def out_dim(self) -> int:
        """Width of the fused vector."""
        t = len(self.ntypes)
        return t * self.hidden + t if self.fusion == "concat" else self.hidden

    def reset_parameters(self) -> None:
        """Reinitialise gates (zero: uniform attention at start) and fusion weights."""
        if self.gates is not None:
            for gate in self.gates.values():
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)
        if self.key is not None:
            nn.init.xavier_uniform_(self.key.weight)
            nn.init.zeros_(self.key.bias)
            nn.init.normal_(self.type_embed, std=0.02)
            nn.init.normal_(self.query, std=1.0 / math.sqrt(self.hidden))

    def presence(self, g: dgl.DGLGraph) -> Tensor:
        """Boolean ``(B, T)`` mask: graph ``b`` has at least one node of type ``t``."""
        cols = []
        for t in self.ntypes:
            if t in g.ntypes:
                cols.append(g.batch_num_nodes(t) > 0)
            else:
                cols.append(torch.zeros(g.batch_size, dtype=torch.bool, device=g.device))
        return torch.stack(cols, dim=1)

    def pool_types(
        self, g: dgl.DGLGraph, h: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Pool each node type per graph.

        Args:
            g: A (batched) heterograph.
            h: Node states per type.

        Returns:
            ``dict[ntype, (B, d)]`` (zeros where the type is missing) and the
            ``(B, T)`` presence mask.
        """
        present = self.presence(g)
        batch_size = g.batch_size
        ref = next(iter(h.values()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        pooled: dict[str, Tensor] = {}
        with g.local_scope():
            for i, t in enumerate(self.ntypes):
                if t not in h:
                    if t in g.ntypes and g.num_nodes(t) > 0:
                        raise KeyError(
                            f"graph has {g.num_nodes(t)} {t!r} nodes but no states for them; "
                            f"add {t!r} to the encoders' in_dims."
                        )
                    pooled[t] = torch.zeros(batch_size, self.hidden, dtype=dtype, device=g.device)
                    continue
                feat = h[t]
                g.nodes[t].data["_h"] = feat
                if self.pool == "mean":
                    # Sum then divide by a clamped count: DGL's own mean is NaN when
                    # a graph (or the whole batch) has no node of this type.
                    total = dgl.readout_nodes(g, "_h", op="sum", ntype=t)
                    count = g.batch_num_nodes(t).clamp(min=1).to(total.dtype).unsqueeze(-1)
                    p = total / count
                elif self.pool == "max":
                    p = dgl.readout_nodes(g, "_h", op="max", ntype=t)
                else:
                    g.nodes[t].data["_s"] = self.gates[t](feat)
                    g.nodes[t].data["_a"] = dgl.softmax_nodes(g, "_s", ntype=t)
                    p = dgl.sum_nodes(g, "_h", weight="_a", ntype=t)
                mask = present[:, i].unsqueeze(-1)
                pooled[t] = torch.where(mask, p, torch.zeros_like(p))
        return pooled, present

    def forward(self, g: dgl.DGLGraph, h: Mapping[str, Tensor]) -> Tensor:
        """Pool and fuse.

        Args:
            g: A (batched) heterograph with :math:`B` graphs.
            h: Node states per type, ``(N_ntype, hidden)``.

        Returns:
            ``(B, out_dim)``.
        """
        return self.fuse(*self.pool_types(g, h))

    def fuse(self, pooled: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """Fuse what :meth:`pool_types` gives: ``dict[ntype, (B, d)]`` and the ``(B, T)``
        presence mask, to ``(B, out_dim)``."""
        stacked = torch.stack([pooled[t] for t in self.ntypes], dim=1)  # (B, T, d)
        if self.fusion == "concat":
            mask = present.to(stacked.dtype)
            return torch.cat([stacked.flatten(1), mask], dim=1)
        keys = torch.tanh(self.key(stacked) + self.type_embed)
        scores = keys @ self.query / math.sqrt(self.hidden)  # (B, T)
        scores = scores.masked_fill(~present, float("-inf"))
        # A graph with no nodes at all: give finite scores, then zero every weight.
        empty = ~present.any(dim=1, keepdim=True)
        scores = scores.masked_fill(empty, 0.0)
        weights = torch.softmax(scores, dim=1) * present.to(scores.dtype)
        return (weights.unsqueeze(-1) * stacked).sum(dim=1)
