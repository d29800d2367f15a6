"""Export to networkx and GraphML, and draw one sample's graph, for inspection
(never on the training path).

Example:
    >>> import torch
    >>> from graphmm.data import Sample
    >>> from graphmm.graphs import MultimodalGraphBuilder
    >>> from graphmm.graphs.export import graphml_ready
    >>> g = MultimodalGraphBuilder()(Sample(text="a seven", image=torch.rand(1, 8, 8)))
    >>> nxg = graphml_ready(g)
    >>> sorted(nxg.nodes)[:2], nxg.nodes["patch:0"]["ntype"]
    (['patch:0', 'patch:1'], 'patch')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dgl
import torch

if TYPE_CHECKING:  # the builder imports this module's package; networkx only where used
    import networkx as nx

    from graphmm.data import Sample
    from graphmm.graphs.builder import MultimodalGraphBuilder

__all__ = ["draw_sample_graph", "graphml_ready", "to_networkx", "write_graphml"]

PathLike = str | os.PathLike[str]


def to_networkx(g: dgl.DGLGraph, node_attrs: bool = True) -> nx.MultiDiGraph:
    """A ``networkx.MultiDiGraph`` view of a (possibly batched) heterograph.

    Nodes are keyed ``(ntype, id)`` and carry ``ntype``, ``id`` and, for a batched
    graph, ``graph`` (the sample index). Edges carry ``etype`` (the relation name) and
    ``canonical_etype`` (``"src:rel:dst"``, a string so that GraphML can store it).
    With ``node_attrs`` the scalar or 2-vector node data (``pos``, ``rc``, ``time``,
    ``token``, ...) is copied too.
    """
    import networkx as nx

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


def graphml_ready(g: dgl.DGLGraph) -> nx.MultiDiGraph:
    """:func:`graphmm.graphs.to_networkx` with GraphML-safe ids and attribute values.

    Node ids become ``"ntype:id"`` strings (GraphML ids are strings, and a tuple's
    ``str`` would not read back as a tuple); attribute values are ``int``,
    ``float``, ``bool`` or ``str``. Node attributes: ``ntype``, ``id``, ``graph``
    and the node data of one or two columns (``pos``, ``rc0``, ``rc1``, ``time``,
    ...); edge attributes: ``etype`` and ``canonical_etype`` (``"src:rel:dst"``).

    Args:
        g: A (batched) heterograph.

    Returns:
        A ``networkx.MultiDiGraph``.
    """
    src = to_networkx(g)

    def clean(v: Any) -> Any:
        if isinstance(v, bool | int | float | str):
            return v
        if hasattr(v, "item"):
            return v.item()
        return str(v)

    import networkx as nx

    out = nx.MultiDiGraph()
    out.add_nodes_from((f"{n[0]}:{n[1]}", {k: clean(v) for k, v in a.items()}) for n, a in src.nodes(data=True))
    out.add_edges_from(
        (f"{u[0]}:{u[1]}", f"{v[0]}:{v[1]}", {k: clean(x) for k, x in a.items()}) for u, v, a in src.edges(data=True)
    )
    return out


def write_graphml(g: dgl.DGLGraph, path: PathLike) -> Path:
    """Write ``g`` as GraphML (see :func:`graphml_ready`); ``networkx.read_graphml``
    reads it back with the same nodes, edges and attributes."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    import networkx as nx

    nx.write_graphml(graphml_ready(g), p)
    return p


def draw_sample_graph(
    builder: MultimodalGraphBuilder,
    sample: Sample,
    out_png: PathLike,
    include_reverse: bool = False,
    title: str | None = None,
) -> tuple[Path, dgl.DGLGraph]:
    """Build ``sample``'s graph with ``builder`` and draw it (:func:`graphmm.viz.draw_graph`).

    Args:
        builder: The graph builder (fitted or not).
        sample: The sample.
        out_png: PNG to write.
        include_reverse: Also draw ``rev_*`` relations. Default: ``False``.
        title: Figure title; default: the sample id and node counts.

    Returns:
        ``(PNG path, graph)``.
    """
    from graphmm.viz import draw_graph

    g = builder(sample)
    from graphmm.graphs.text import tokenize

    tokens = None
    if sample.text is not None and builder.text is not None:
        tokens = tokenize(sample.text)
    geometry = (builder.image.patch_size, builder.image.stride) if builder.image is not None else None
    image = sample.image if builder.image is not None and g.num_nodes("patch") else None
    if title is None:
        counts = ", ".join(f"{nt} {g.num_nodes(nt)}" for nt in g.ntypes)
        label = f", label {sample.label}" if sample.label is not None else ""
        title = f"{sample.id if sample.id is not None else 'sample'}{label}: {counts}"
    path = draw_graph(g, out_png, image=image, patch_geometry=geometry, tokens=tokens,
                      include_reverse=include_reverse, title=title)
    return path, g
