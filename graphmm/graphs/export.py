"""Export to networkx, for inspection and drawing (never on the training path)."""

from __future__ import annotations

import dgl
import networkx as nx
import torch


def to_networkx(g: dgl.DGLGraph, node_attrs: bool = True) -> nx.MultiDiGraph:
    """A ``networkx.MultiDiGraph`` view of a (possibly batched) heterograph.

    Nodes are keyed ``(ntype, id)`` and carry ``ntype``, ``id`` and, for a batched
    graph, ``graph`` (the sample index). Edges carry ``etype`` (the relation name) and
    ``canonical_etype`` (``"src:rel:dst"``, a string so that GraphML can store it).
    With ``node_attrs`` the scalar or 2-vector node data (``pos``, ``rc``, ``time``,
    ``token``, ...) is copied too.
    """
    out = nx.MultiDiGraph()
    for nt in g.ntypes:
        n = g.num_nodes(nt)
        graph_of = torch.repeat_interleave(torch.arange(g.batch_size), g.batch_num_nodes(nt).cpu())
        data = g.nodes[nt].data
        scalars = {}
        if node_attrs:
            for k, v in data.items():
                if v.dim() == 1:
                    scalars[k] = v.tolist()
                elif v.dim() == 2 and v.shape[1] <= 2:
                    for j in range(v.shape[1]):
                        scalars[f"{k}{j}"] = v[:, j].tolist()
        gid = graph_of.tolist()
        out.add_nodes_from(
            ((nt, i), {"ntype": nt, "id": i, "graph": gid[i], **{k: vals[i] for k, vals in scalars.items()}})
            for i in range(n)
        )
    for src_t, rel, dst_t in g.canonical_etypes:
        s, d = g.edges(etype=(src_t, rel, dst_t))
        cet = f"{src_t}:{rel}:{dst_t}"
        out.add_edges_from(
            ((src_t, u), (dst_t, v), {"etype": rel, "canonical_etype": cet})
            for u, v in zip(s.tolist(), d.tolist())
        )
    return out
