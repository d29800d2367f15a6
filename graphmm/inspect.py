"""Draw one sample's graph: ``python -m graphmm.inspect [ckpt_path=...] split=test index=3``.

The sample comes from the dataset of a run's config (``ckpt_path=...``) or of the
default config, or from files (``input.image=... input.audio=... input.text=...``).
Its graph is drawn to a PNG: patches at their grid positions over the image, words
in a row, frames along a time axis, summary nodes to the side, edges coloured by
relation. ``graphml=path.graphml`` also writes the graph as GraphML.

Command line::

    python -m graphmm.inspect split=test index=3 out=graph.png graphml=graph.graphml
    python -m graphmm.inspect ckpt_path=outputs/run/checkpoints/best.pt input.image=digit.png

Example:
    >>> import torch
    >>> from graphmm.data import Sample
    >>> from graphmm.graphs import MultimodalGraphBuilder
    >>> from graphmm.inspect import graphml_ready
    >>> g = MultimodalGraphBuilder()(Sample(text="a seven", image=torch.rand(1, 8, 8)))
    >>> nxg = graphml_ready(g)
    >>> sorted(nxg.nodes)[:2], nxg.nodes["patch:0"]["ntype"]
    (['patch:0', 'patch:1'], 'patch')
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dgl
import networkx as nx

from graphmm.data import Sample
from graphmm.graphs import MultimodalGraphBuilder, to_networkx, tokenize
from graphmm.predict import InputArgs, UsageError, cli, load_predictor

__all__ = ["InspectArgs", "draw_sample_graph", "graphml_ready", "load_sample", "main", "write_graphml"]

PathLike = str | os.PathLike[str]


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


@dataclass
class InspectArgs:
    """Arguments of ``python -m graphmm.inspect``.

    Attributes:
        ckpt_path: A run's ``best.pt``: use its config and fitted builder. Default:
            ``None`` (the default config, builder not fitted).
        split: Dataset split to take the sample from. Default: ``"test"``.
        index: Index of the sample in ``split``. Default: ``0``.
        input: Build the sample from files instead of the dataset.
        out: PNG to write. Default: ``graph.png``.
        graphml: Also write GraphML here. Default: ``None``.
        include_reverse: Also draw ``rev_*`` relations. Default: ``False``.
    """

    ckpt_path: str | None = None
    split: str = "test"
    index: int = 0
    input: InputArgs = field(default_factory=InputArgs)
    out: str = "graph.png"
    graphml: str | None = None
    include_reverse: bool = False


USAGE = """usage: python -m graphmm.inspect [ckpt_path=RUN/checkpoints/best.pt] [split=test] [index=0]
                                [input.image=IMG] [input.audio=WAV] [input.text="..."]
                                [out=graph.png] [graphml=graph.graphml] [include_reverse=false]

Draw the graph of one sample (from the dataset, or from input files) to a PNG, and
optionally write it as GraphML."""


def load_sample(args: InspectArgs) -> tuple[MultimodalGraphBuilder, Sample]:
    """The builder and the sample that ``args`` describe.

    With ``ckpt_path`` the run's config and fitted builder are used (inputs are
    resized and resampled as for prediction); otherwise the default config.

    Raises:
        UsageError: A bad split or index.
        FileNotFoundError, ValueError: A missing or unreadable file or checkpoint.
    """
    from graphmm.data.io import read_audio, read_image

    inp = args.input
    from_files = any(v is not None for v in (inp.image, inp.audio, inp.text)) or bool(inp.files)
    if args.ckpt_path is not None:
        predictor = load_predictor(args.ckpt_path)
        builder, data_cfg = predictor.builder, predictor.config["data"]
        if from_files:
            return builder, predictor.sample_from_files(image=inp.image, audio=inp.audio, text=inp.text, **inp.files)
    else:
        from hydra import compose, initialize_config_dir
        from hydra.utils import instantiate

        from graphmm.config import CONF_DIR, to_container

        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config")
        builder = instantiate(cfg.graph)
        data_cfg = to_container(cfg.data)
        if inp.files:
            raise UsageError(f"input.{next(iter(inp.files))}=... needs ckpt_path= (a model whose graph reads it)")
        if from_files:
            img = wave = rate = None
            if inp.image is not None:
                img = read_image(inp.image, channels=builder.image.channels if builder.image else None)
            if inp.audio is not None:
                wave, rate = read_audio(inp.audio, builder.audio.sample_rate if builder.audio else None)
            name = ", ".join(str(p) for p in (inp.image, inp.audio) if p is not None) or "text input"
            return builder, Sample(text=inp.text, image=img, audio=wave, sample_rate=rate, id=name)
    from omegaconf import OmegaConf

    from graphmm.train import load_splits

    splits, _ = load_splits(OmegaConf.create(data_cfg))
    if args.split not in splits:
        raise UsageError(f"split={args.split!r}: choose one of {sorted(splits)}")
    samples = splits[args.split]
    if not -len(samples) <= args.index < len(samples):
        raise UsageError(f"index={args.index} is out of range: the {args.split} split has {len(samples)} samples")
    return builder, samples[args.index]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphmm.inspect key=value ...``; returns the exit code."""
    os.environ.setdefault("MPLBACKEND", "Agg")

    def body(args: InspectArgs) -> int:
        builder, sample = load_sample(args)
        png, g = draw_sample_graph(builder, sample, args.out, include_reverse=args.include_reverse)
        print(f"sample: {sample!r}")
        print("nodes: " + ", ".join(f"{nt}={g.num_nodes(nt)}" for nt in g.ntypes))
        per_rel = Counter({":".join(c): g.num_edges(c) for c in g.canonical_etypes})
        print("edges: " + ", ".join(f"{k}={v}" for k, v in sorted(per_rel.items())))
        print(f"wrote {png}")
        if args.graphml:
            print(f"wrote {write_graphml(g, args.graphml)}")
        return 0

    return cli(argv, InspectArgs, USAGE, body, prog="graphmm.inspect")


if __name__ == "__main__":
    sys.exit(main())
