"""``python -m graphmm inspect``: draw one sample's graph to a PNG (and GraphML).

Hydra composes ``graphmm/conf/inspect.yaml`` over :class:`InspectConfig`. The
sample comes from the dataset of a run's config (``ckpt_path=...``) or of the
default config, or from files (``input.image=... input.audio=... input.text=...``)::

    python -m graphmm inspect split=test index=3 out=graph.png graphml=graph.graphml
    python -m graphmm inspect ckpt_path=outputs/run/checkpoints/best.pt input.image=digit.png

The drawing and the GraphML are :func:`graphmm.graphs.draw_sample_graph` and
:func:`graphmm.graphs.write_graphml`.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from graphmm.cli import hydra_command
from graphmm.cli.predict import InputConfig, input_files
from graphmm.data import Sample
from graphmm.graphs import MultimodalGraphBuilder, draw_sample_graph, write_graphml
from graphmm.predict import UsageError, load_predictor

__all__ = ["InspectConfig", "load_sample", "main"]


@dataclass
class InspectConfig:
    """Keys of ``python -m graphmm inspect``.

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

    ckpt_path: Optional[str] = None  # noqa: UP007 - OmegaConf reads the annotation at run time
    split: str = "test"
    index: int = 0
    input: InputConfig = field(default_factory=InputConfig)  # type: ignore[valid-type]
    out: str = "graph.png"
    graphml: Optional[str] = None  # noqa: UP007
    include_reverse: bool = False


ConfigStore.instance().store(name="inspect_schema", node=InspectConfig)


def _default_config_sample(inp: Any) -> tuple[MultimodalGraphBuilder, dict[str, Any], Sample | None]:
    """The default config's builder and data config, and the sample its files make."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from hydra.utils import instantiate

    from graphmm.config import CONF_DIR, to_container
    from graphmm.data.io import read_audio, read_image

    gh = GlobalHydra.instance()
    if gh.is_initialized():  # inside the command: its Hydra composes the training config too
        cfg = gh.hydra.compose_config("config", overrides=[], run_mode=RunMode.RUN)
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config")
    builder = instantiate(cfg.graph)
    files = input_files(inp)
    other = sorted(set(files) - {"image", "audio"})
    if other:
        raise UsageError(f"input.{other[0]}=... needs ckpt_path= (a model whose graph reads it)")
    if not files and inp.text is None:
        return builder, to_container(cfg.data), None
    img = wave = rate = None
    if "image" in files:
        img = read_image(files["image"], channels=builder.image.channels if builder.image else None)
    if "audio" in files:
        wave, rate = read_audio(files["audio"], builder.audio.sample_rate if builder.audio else None)
    name = ", ".join(files.values()) or "text input"
    return builder, to_container(cfg.data), Sample(text=inp.text, image=img, audio=wave, sample_rate=rate, id=name)


def load_sample(args: Any) -> tuple[MultimodalGraphBuilder, Sample]:
    """The builder and the sample that ``args`` (an :class:`InspectConfig`) describe.

    With ``ckpt_path`` the run's config and fitted builder are used (inputs are
    resized and resampled as for prediction); otherwise the default config.

    Raises:
        UsageError: A bad split or index.
        FileNotFoundError, ValueError: A missing or unreadable file or checkpoint.
    """
    inp = args.input
    if args.ckpt_path is not None:
        predictor = load_predictor(args.ckpt_path)
        builder, data_cfg = predictor.builder, predictor.config["data"]
        if inp.text is not None or input_files(inp):
            return builder, predictor.sample_from_files(text=inp.text, **input_files(inp))
    else:
        builder, data_cfg, sample = _default_config_sample(inp)
        if sample is not None:
            return builder, sample
    from omegaconf import OmegaConf

    from graphmm.train import load_splits

    splits, _ = load_splits(OmegaConf.create(data_cfg))
    if args.split not in splits:
        raise UsageError(f"split={args.split!r}: choose one of {sorted(splits)}")
    samples = splits[args.split]
    if not -len(samples) <= args.index < len(samples):
        raise UsageError(f"index={args.index} is out of range: the {args.split} split has {len(samples)} samples")
    return builder, samples[args.index]


@hydra_command("inspect", prog="graphmm.inspect")
def main(args: Any) -> int:
    """``python -m graphmm inspect key=value ...``: draw, print a summary; the exit code."""
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


if __name__ == "__main__":
    sys.exit(main())
