"""Predict with a trained model, from Python; the command line
(``python -m graphmm predict ckpt_path=... input.image=...``, also
``python -m graphmm.predict``) is :mod:`graphmm.cli.predict`, a thin Hydra app over:

* :func:`load_predictor` rebuilds the model, the graph builder (vocabulary, image
  size and channels, audio statistics) and the config from a checkpoint;
* :meth:`Predictor.predict` gives class probabilities for :class:`~graphmm.data.Sample`
  objects (:meth:`Predictor.generate` the texts of a generation model),
  :meth:`Predictor.sample_from_files` reads inputs from files;
* :func:`explain` and :func:`write_explanation` turn a GAT model's attention into
  a patch heatmap, an attention curve over the spectrogram and a per-relation table.

From Python::

    from graphmm.predict import load_predictor

    predictor = load_predictor("outputs/run/checkpoints/best.pt")
    sample = predictor.sample_from_files(image="seven.png", text="a seven")
    probs = predictor.predict([sample])    # (1, num_classes)
    # a generation run (e.g. experiment=digits_seq): predictor.generate([sample]) -> ["three one four"]
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dgl
import torch

from graphmm.data import Sample
from graphmm.data.io import read_audio, read_image, read_text
from graphmm.data.targets import TargetVocab
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.graphtypes import CanonicalEType
from graphmm.modalities import list_modalities

__all__ = [
    "Explanation",
    "Predictor",
    "UsageError",
    "class_names_for",
    "explain",
    "load_predictor",
    "received_attention",
    "relation_summary",
    "top_k",
    "write_explanation",
]

PathLike = str | os.PathLike[str]

#: Peak amplitude below which a clip counts as silent (-80 dBFS): 16-bit audio's
#: quietest step is 3e-5, so only digital silence or near-silence falls under it.
SILENCE_PEAK: float = 1e-4


class UsageError(ValueError):
    """A command-line argument that cannot be used; the message says which and why."""


# ---------------------------------------------------------------------- loading
def class_names_for(config: dict[str, Any] | Any, num_classes: int) -> list[str]:
    """Readable class names for a run's data config: ``"7 (seven)"`` for ``digits``,
    else ``"0"``, ``"1"``, ...

    Args:
        config: The run's full config (``ckpt["config"]``).
        num_classes: Number of classes of the model.

    Returns:
        ``num_classes`` names.
    """
    target = str((config.get("data") or {}).get("_target_", "")) if hasattr(config, "get") else ""
    if target.endswith("load_digits"):
        from graphmm.data import DIGIT_WORDS

        return [f"{i} ({DIGIT_WORDS[i]})" if i < len(DIGIT_WORDS) else str(i) for i in range(num_classes)]
    return [str(i) for i in range(num_classes)]


@dataclass
class Predictor:
    """A trained model with everything needed to turn raw inputs into predictions.

    Build it with :func:`load_predictor`.

    Attributes:
        model: The classifier or text generator, in ``eval()`` mode.
        builder: The fitted graph builder of the run.
        config: The run's full config, as a plain dict.
        num_classes: Number of classes (0 for a generation model).
        class_names: One readable name per class (empty for a generation model).
        ckpt_path: Where the checkpoint came from.
        epoch: The epoch the checkpoint was saved at (``-1`` if unknown).
        device: Where the model runs.
        batch_size: Samples per forward pass in :meth:`predict`.
        task: ``"classification"`` or ``"generation"``.
        target_vocab: The target vocabulary of a generation model.
        beam_width: Default beam of :meth:`generate` (the run's ``model.beam_width``).
        length_penalty: Length penalty of the beam search.
        max_len: Decoding limit in tokens.
    """

    model: torch.nn.Module
    builder: MultimodalGraphBuilder
    config: dict[str, Any]
    num_classes: int
    class_names: list[str]
    ckpt_path: Path
    epoch: int = -1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 256
    task: str = "classification"
    target_vocab: TargetVocab | None = None
    beam_width: int = 1
    length_penalty: float = 0.0
    max_len: int | None = None

    def sample_from_files(
        self,
        image: PathLike | None = None,
        audio: PathLike | None = None,
        text: str | None = None,
        label: int | None = None,
        **files: PathLike,
    ) -> Sample:
        """A :class:`Sample` from files, converted to what the model was trained on.

        The image is converted to the builder's channel count and resized to the
        training image size (``builder.image.image_size``); the audio is mixed to
        mono and resampled to ``builder.audio.sample_rate``.

        Args:
            image: Image file (PNG, JPEG, ...), or ``None``.
            audio: Sound file (WAV, FLAC, ...), or ``None``.
            text: The text, or ``None``.
            label: Optional true class, kept on the sample.
            **files: A file for any other modality the model reads, by name (e.g.
                ``video="clip.npy"``), read by that modality's builder (``read``).

        Returns:
            The sample, with ``id`` naming the files.

        Raises:
            FileNotFoundError: A file does not exist.
            ValueError: A file cannot be read, no input was given, or the model was
                trained without that modality.
        """
        if image is None and audio is None and text is None and not files:
            raise UsageError("give at least one input: input.image=<png|jpg>, input.audio=<wav> or input.text=\"...\"")
        b = self.builder
        extra: dict[str, Any] = {}
        for name, path in files.items():
            builder = b.builders.get(name)
            if builder is None or not callable(getattr(builder, "read", None)):
                raise UsageError(
                    f"this model reads no {name} input (it reads {list(b.builders)}); drop input.{name}={path}"
                )
            read = builder.read(os.fspath(path))
            extra.update(read if isinstance(read, dict) else {name: read})
        img = wave = rate = None
        if image is not None:
            if b.image is None:
                raise UsageError(f"this model was trained without images (graph.image=null); drop input.image={image}")
            size = tuple(b.image.image_size) if b.image.image_size else None
            img = read_image(image, channels=b.image.channels, size=size)
        if audio is not None:
            if b.audio is None:
                raise UsageError(f"this model was trained without audio (graph.audio=null); drop input.audio={audio}")
            wave, rate = read_audio(audio, sample_rate=b.audio.sample_rate)
        if text is not None and b.text is None:
            raise UsageError("this model was trained without text (graph.text=null); drop input.text")
        name = ", ".join(str(p) for p in (image, audio, *files.values()) if p is not None) or "text input"
        return Sample(text=text, image=img, audio=wave, sample_rate=rate, label=label, id=name, **extra)

    def input_warnings(self, sample: Sample) -> list[str]:
        """What in ``sample`` carries no signal, so that a confident answer on it is suspect.

        Checks what the model reads: silent audio (peak below :data:`SILENCE_PEAK`), an
        empty or whitespace-only text, a text whose every word is outside the training
        vocabulary (all ``<unk>``), a text longer than ``graph.text.max_tokens`` (the
        rest is ignored), and a constant image.

        Args:
            sample: A sample as :meth:`sample_from_files` makes it.

        Returns:
            One sentence per problem, naming the modality; ``[]`` when there is none.
        """
        b, out = self.builder, []
        if sample.audio is not None and b.audio is not None:
            peak = float(sample.audio.abs().max()) if sample.audio.numel() else 0.0
            if peak < SILENCE_PEAK:
                out.append(f"audio is silent (peak amplitude {peak:.2g} < {SILENCE_PEAK:g}): it carries no signal")
        if sample.text is not None and b.text is not None:
            words = b.text.tokens(sample.text)
            if not words:
                out.append("text is empty (no word): it carries no signal")
            elif b.text.vocab is not None and all(w not in b.text.vocab for w in words):
                out.append(f"text: none of its {len(words)} words occurs in the training vocabulary (all <unk>)")
            if b.text.truncated(sample.text):
                out.append(f"text is longer than graph.text.max_tokens={b.text.max_tokens} words; the rest is ignored")
        if sample.image is not None and b.image is not None and sample.image.numel():
            lo, hi = (float(v) for v in torch.aminmax(sample.image))
            if hi - lo < 1e-6:
                out.append(f"image is constant (every pixel {lo:.3g}): it carries no signal")
        return out

    def graph(self, samples: Sequence[Sample]) -> dgl.DGLGraph:
        """The batched heterograph of ``samples``, on :attr:`device`."""
        return self.builder.batch(samples).to(self.device)

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample], beam_width: int | None = None) -> list[str]:
        """Generated texts of a generation model, one per sample.

        Args:
            samples: Samples with any mix of modalities (targets are ignored).
            beam_width: Beam width; ``None``: the run's ``model.beam_width``.

        Raises:
            ValueError: The model is a classifier.
        """
        if self.task != "generation" or self.target_vocab is None:
            raise ValueError("this checkpoint holds a classifier; use predict() for class probabilities")
        self.model.eval()
        beam = self.beam_width if beam_width is None else beam_width
        texts: list[str] = []
        for i in range(0, len(samples), self.batch_size):
            ids = self.model.generate(self.graph(samples[i : i + self.batch_size]), beam_width=beam,
                                      max_len=self.max_len, length_penalty=self.length_penalty)
            texts += [self.target_vocab.decode(row) for row in ids.cpu().tolist()]
        return texts

    @torch.no_grad()
    def logits(self, samples: Sequence[Sample]) -> torch.Tensor:
        """Logits ``(B, num_classes)``, computed in batches of :attr:`batch_size`."""
        if self.task != "classification":
            raise ValueError("this checkpoint holds a generation model; use generate() for its texts")
        if len(samples) == 0:
            return torch.zeros(0, self.num_classes)
        self.model.eval()
        out = [self.model(self.graph(samples[i : i + self.batch_size])).float().cpu()
               for i in range(0, len(samples), self.batch_size)]
        return torch.cat(out)

    def predict(self, samples: Sequence[Sample]) -> torch.Tensor:
        """Class probabilities.

        Args:
            samples: Samples with any mix of modalities (labels are ignored).

        Returns:
            Softmax probabilities; each row sums to 1.

        Shapes:
            - Output: ``(B, num_classes)``.
        """
        return self.logits(samples).softmax(-1)


def _resolve_ckpt(ckpt_path: PathLike) -> Path:
    p = Path(ckpt_path)
    if p.is_dir():  # a run directory, or its checkpoints folder
        for cand in (p / "checkpoints" / "best.pt", p / "best.pt"):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"no checkpoints/best.pt in folder {str(p)!r}; pass ckpt_path=<run dir>/checkpoints/best.pt")
    if not p.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(p)!r} does not exist; pass ckpt_path=<run dir>/checkpoints/best.pt "
            f"from a training run (python -m graphmm.train output_dir=<run dir>)"
        )
    return p


def load_predictor(ckpt_path: PathLike, device: str | torch.device = "cpu") -> Predictor:
    """Rebuild a trained model from a checkpoint written by :func:`graphmm.train.train`.

    The checkpoint's saved config gives the graph recipe and the model; its builder
    state restores the vocabulary, image channels and size and the audio band
    statistics, so new inputs become exactly the graphs the model was trained on.

    Args:
        ckpt_path: ``best.pt`` (or any ``step-*.pt``) of a run, or the run folder.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``. Default: ``"cpu"``.

    Returns:
        The :class:`Predictor`, its model in ``eval()`` mode.

    Raises:
        FileNotFoundError: No checkpoint at ``ckpt_path``.
        ValueError: The file is not a graphmm training checkpoint.
        RuntimeError: The file cannot be loaded safely (corrupt, or not a torch file).
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphmm.tasks import make_task
    from graphmm.tasks import build_model
    from graphmm.utils import load_checkpoint, resolve_device

    path = _resolve_ckpt(ckpt_path)
    dev = resolve_device(device) if isinstance(device, str) else device
    ckpt = load_checkpoint(path, map_location="cpu")
    generation = ckpt.get("task") == "generation"
    needed = ("model", "config", "builder", "target_vocab" if generation else "num_classes")
    missing = [k for k in needed if k not in ckpt]
    if missing:
        raise ValueError(
            f"checkpoint {str(path)!r} lacks {missing}; it is not a model checkpoint written by graphmm.train "
            f"(use <run dir>/checkpoints/best.pt)"
        )
    cfg = OmegaConf.create(ckpt["config"])
    builder: MultimodalGraphBuilder = instantiate(cfg.graph)
    builder.load_state_dict(ckpt["builder"])
    task = make_task(cfg.model)
    task.load_state_dict(ckpt)
    num_classes = 0 if generation else int(ckpt["num_classes"])
    model = build_model(cfg.model, builder, **task.model_kwargs())
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(
            f"checkpoint {str(path)!r}: the weights do not fit the model its config describes ({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    model.to(dev).eval()
    return Predictor(
        model=model,
        builder=builder,
        config=ckpt["config"],
        num_classes=num_classes,
        class_names=[] if generation else list(ckpt.get("class_names") or class_names_for(ckpt["config"], num_classes)),
        ckpt_path=path,
        epoch=int(ckpt.get("epoch", -1)),
        device=dev,
        batch_size=int(ckpt["config"].get("trainer", {}).get("eval_batch_size", 256)),
        task="generation" if generation else "classification",
        target_vocab=getattr(task, "vocab", None),
        beam_width=int(ckpt.get("beam_width", 1)),
        length_penalty=float(ckpt.get("length_penalty", 0.0)),
        max_len=ckpt.get("max_len"),
    )


def top_k(probs: torch.Tensor, k: int, class_names: Sequence[str] | None = None) -> list[list[dict[str, Any]]]:
    """The ``k`` most probable classes of each row.

    Args:
        probs: Class probabilities.
        k: How many (clipped to the number of classes).
        class_names: One name per class, or ``None``.

    Returns:
        Per row, ``[{"rank", "class", "name", "prob"}, ...]`` best first.

    Shapes:
        - probs: ``(B, C)``.
    """
    if k < 1:
        raise UsageError(f"top_k must be >= 1, got {k}")
    vals, idx = probs.topk(min(k, probs.shape[-1]), dim=-1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(probs.shape[-1])]
    return [
        [{"rank": r + 1, "class": int(c), "name": names[int(c)], "prob": float(v)}
         for r, (v, c) in enumerate(zip(vr.tolist(), ir.tolist()))]
        for vr, ir in zip(vals, idx)
    ]


# ---------------------------------------------------------------------- attention
def received_attention(
    g: dgl.DGLGraph, attention: dict[CanonicalEType, list[torch.Tensor]], ntype: str
) -> tuple[torch.Tensor, list[CanonicalEType], str]:
    r"""How much attention other modalities pay to each node of ``ntype``.

    Each relation's GAT softmax runs over a destination's in-edges, so the weights
    a node gives to its sources sum to 1 and a node's attention *into* itself is
    constant. The informative quantity is the attention that destinations of the
    other modalities pay to each ``ntype`` node as a source:

    .. math::

        m_j = \sum_{(s, r, t)} \sum_{\ell} \sum_{i:\,(j \to i) \in E_{(s,r,t)}}
              \frac{1}{K}\sum_{k=1}^{K} \alpha^{\ell,k}_{ij}

    over heads :math:`k` (averaged), layers :math:`\ell` (summed) and relations with
    source type ``ntype``, chosen as follows:

    * ``"direct"``: relations from ``ntype`` straight into another modality's nodes
      (``cross`` or ``aligned`` with ``word``/``patch``/``frame`` destinations), when
      the graph recipe has any;
    * ``"summary"``: otherwise the ``(ntype, to_summary, summary)`` relation, i.e.
      the modality's own summary node's attention over its nodes. That summary
      node is the only route from these nodes to the other modalities (through
      ``summary_link``); whether the route reaches them depends on the number of
      layers, so this map shows what the route reads, not what arrives.
    * ``"within"``: otherwise (e.g. a one-layer model, whose only layer skips the
      relations into unpooled summary nodes) the attention the modality's own
      nodes pay to each node (``adjacent``, ``similar``, ``next``);
    * ``"none"``: no such relation; all zeros.

    Args:
        g: The graph the attention was computed on.
        attention: Output of :meth:`graphmm.nn.GraphClassifier.explain`.
        ntype: ``"patch"``, ``"frame"`` or ``"word"``.

    Returns:
        ``(mass per node, relations used, route)``.

    Shapes:
        - Output: ``(N_ntype,)``.
    """
    n = g.num_nodes(ntype) if ntype in g.ntypes else 0
    modal = {"word", "patch", "frame"} - {ntype}
    direct = [c for c in attention if c[0] == ntype and c[2] in modal]
    summary = [c for c in attention if c[0] == ntype and c[2] == "summary"]
    within = [c for c in attention if c[0] == ntype and c[2] == ntype]
    rels, route = [], "none"
    for cand, name in ((direct, "direct"), (summary, "summary"), (within, "within")):
        if cand:
            rels, route = cand, name
            break
    mass = torch.zeros(n, dtype=torch.float64)
    for cet in rels:
        src, _ = g.edges(etype=cet)
        for a in attention[cet]:
            mass.index_add_(0, src.cpu().long(), a.detach().float().mean(-1).cpu().double())
    return mass.float(), rels, route


def relation_summary(
    g: dgl.DGLGraph,
    attention: dict[CanonicalEType, list[torch.Tensor]],
    message_norms: dict[CanonicalEType, list[float]] | None = None,
) -> list[dict[str, Any]]:
    r"""One row per relation: how much attention and how large a message it carried.

    Columns: ``relation`` (``"src:rel:dst"``), ``layers`` (layers that ran it),
    ``edges``, ``attending_nodes`` (destinations with at least one in-edge),
    ``attention_mass`` (:math:`\sum_\ell \sum_e` head-mean :math:`\alpha`), ``share``
    (of the total mass), ``mean_max_attention`` (mean over attending nodes and
    layers of their largest weight: ``1/in-degree`` for uniform attention, 1 for a
    node that attends to one source only) and ``message_norm`` (mean L2 norm of the
    relation's output at attending nodes, averaged over layers, when
    ``message_norms`` is given).

    Because every relation has its own softmax, ``attention_mass`` equals
    ``attending_nodes * layers``: it says which relations move attention to the most
    nodes, while ``message_norm`` says which relation's messages dominate the sum
    that combines relations, and ``mean_max_attention`` how peaked the attention is.

    Args:
        g: The graph the attention was computed on.
        attention: Output of :meth:`graphmm.nn.GraphClassifier.explain`.
        message_norms: Per relation, one mean message norm per layer.

    Returns:
        Rows sorted by ``attention_mass``, largest first.
    """
    rows = []
    for cet, per_layer in attention.items():
        _, dst = g.edges(etype=cet)
        n_dst = g.num_nodes(cet[2])
        attending = int((torch.bincount(dst.cpu().long(), minlength=n_dst) > 0).sum()) if len(dst) else 0
        mass, peaks = 0.0, []
        for a in per_layer:
            w = a.detach().float().mean(-1).cpu()
            mass += float(w.sum())
            if len(w):
                mx = torch.zeros(n_dst).scatter_reduce(0, dst.cpu().long(), w, reduce="amax", include_self=False)
                peaks.append(float(mx[torch.bincount(dst.cpu().long(), minlength=n_dst) > 0].mean()))
        norms = (message_norms or {}).get(cet)
        rows.append({
            "relation": ":".join(cet),
            "layers": len(per_layer),
            "edges": int(g.num_edges(cet)),
            "attending_nodes": attending,
            "attention_mass": mass,
            "mean_max_attention": sum(peaks) / len(peaks) if peaks else 0.0,
            "message_norm": (sum(norms) / len(norms)) if norms else None,
        })
    total = sum(r["attention_mass"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["attention_mass"] / total
    return sorted(rows, key=lambda r: (-r["attention_mass"], r["relation"]))


@dataclass
class Explanation:
    """Attention of one prediction (see :func:`explain`).

    Attributes:
        graph: The sample's graph.
        logits: ``(1, num_classes)``.
        attention: Per relation, one ``(E, heads)`` tensor per layer.
        patch_mass: ``(N_patch,)`` attention received per patch (:func:`received_attention`).
        patch_route: ``"direct"``, ``"summary"`` or ``"none"``.
        patch_relations: Relations summed into ``patch_mass``.
        frame_mass: ``(N_frame,)`` attention received per frame.
        frame_route: As ``patch_route``.
        frame_relations: Relations summed into ``frame_mass``.
        relations: Rows of :func:`relation_summary`.
    """

    graph: dgl.DGLGraph
    logits: torch.Tensor
    attention: dict[CanonicalEType, list[torch.Tensor]]
    patch_mass: torch.Tensor
    patch_route: str
    patch_relations: list[CanonicalEType]
    frame_mass: torch.Tensor
    frame_route: str
    frame_relations: list[CanonicalEType]
    relations: list[dict[str, Any]]


@torch.no_grad()
def explain(predictor: Predictor, sample: Sample) -> Explanation:
    """Run the model on one sample and collect its attention.

    Besides the attention weights it records, with forward hooks, the mean L2 norm
    of each relation's output at the nodes that receive it (per layer), for
    :func:`relation_summary`.

    Args:
        predictor: From :func:`load_predictor`; its model must use ``conv="gat"``.
        sample: One sample.

    Returns:
        The :class:`Explanation`.

    Raises:
        ValueError: The model computes no attention (train with ``model.conv=gat``).
    """
    model = predictor.model
    gnn = getattr(model, "gnn", None)
    if gnn is None or not gnn.supports_attention:
        conv = getattr(gnn, "conv", type(model).__name__)
        raise ValueError(
            f"explain=true needs a graph attention model, but this checkpoint uses conv={conv!r}; "
            f"train with model.conv=gat (or run without explain=true)"
        )
    model.eval()
    g = predictor.graph([sample])
    norms: dict[CanonicalEType, list[float]] = {}
    hooks = []

    def hook_for(cet: CanonicalEType) -> Callable:
        def hook(_mod, args, output):
            out = output[0] if isinstance(output, tuple) else output
            indeg = args[0].in_degrees()
            if (indeg > 0).any():
                norms.setdefault(cet, []).append(float(out[indeg > 0].norm(dim=-1).mean()))
        return hook

    for layer in gnn.layers:
        for cet, mod in layer.mod_dict.items():
            hooks.append(mod.register_forward_hook(hook_for(tuple(cet))))
    try:
        logits, attention = model.explain(g)
    finally:
        for h in hooks:
            h.remove()
    patch_mass, patch_rels, patch_route = received_attention(g, attention, "patch")
    frame_mass, frame_rels, frame_route = received_attention(g, attention, "frame")
    return Explanation(
        graph=g, logits=logits.cpu(), attention=attention,
        patch_mass=patch_mass, patch_route=patch_route, patch_relations=patch_rels,
        frame_mass=frame_mass, frame_route=frame_route, frame_relations=frame_rels,
        relations=relation_summary(g, attention, norms),
    )


def _route_title(kind: str, route: str, rels: Sequence[CanonicalEType]) -> str:
    names = ", ".join(":".join(c) for c in rels)
    if route == "direct":
        return f"attention other modalities pay to each {kind}\n({names}; head mean, layer sum)"
    if route == "within":
        return f"attention other {kind}{'es' if kind == 'patch' else 's'} pay to each {kind}\n({names}; head mean, layer sum)"
    if route == "none":
        return f"no relation carries attention from the {kind} nodes"
    return f"{kind} attention from the {'image' if kind == 'patch' else 'audio'} summary node\n({names}; head mean, layer sum)"


def write_explanation(expl: Explanation, sample: Sample, predictor: Predictor, out_dir: PathLike) -> dict[str, Path]:
    """Write the attention plots and table of an :class:`Explanation`.

    Files: ``image_attention.png`` (if the sample has patches), ``audio_attention.png``
    (if it has frames), ``relations.csv`` and ``relations.png``.

    Args:
        expl: From :func:`explain`.
        sample: The explained sample (its image and audio are drawn).
        predictor: The predictor that made ``expl``.
        out_dir: Folder to write into (created if needed).

    Returns:
        ``{file name: path}``.
    """
    import torchaudio

    from graphmm import viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    g, b = expl.graph, predictor.builder
    if sample.image is not None and b.image is not None and g.num_nodes("patch"):
        written["image_attention.png"] = viz.plot_patch_attention(
            sample.image, expl.patch_mass, g.nodes["patch"].data["rc"].cpu(), b.image.patch_size, b.image.stride,
            out / "image_attention.png", title=_route_title("patch", expl.patch_route, expl.patch_relations),
        )
    if sample.audio is not None and b.audio is not None and g.num_nodes("frame"):
        a = b.audio
        wave = a.validate(sample.audio, sample.sample_rate, str(sample.id))
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=a.sample_rate, n_fft=a.n_fft, win_length=a.win_length, hop_length=a.hop_length,
            n_mels=a.n_mels, center=False, power=2.0,
        )
        logmel = torch.log(mel(wave) + 1e-6)  # (n_mels, F): the frames the graph was built from
        written["audio_attention.png"] = viz.plot_audio_attention(
            logmel, g.nodes["frame"].data["time"].cpu(), expl.frame_mass, out / "audio_attention.png",
            title=_route_title("frame", expl.frame_route, expl.frame_relations),
        )
    cols = ["relation", "layers", "edges", "attending_nodes", "attention_mass", "share", "mean_max_attention",
            "message_norm"]
    with open(out / "relations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in expl.relations:
            w.writerow({k: ("" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])) for k in cols})
    written["relations.csv"] = out / "relations.csv"
    if expl.relations:
        written["relations.png"] = viz.plot_relation_mass(expl.relations, out / "relations.png")
    return written


if __name__ == "__main__":
    # `python -m graphmm.predict`: the command lives in graphmm.cli.predict
    from graphmm.cli.predict import main

    sys.exit(main())
