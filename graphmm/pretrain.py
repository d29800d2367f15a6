r"""Self-supervised pretraining of the node encoders and the GNN on unlabeled samples.

``python -m graphmm pretrain [overrides]`` trains the model a config describes on its
own inputs, without labels, then ``python -m graphmm train model.init_from=<its
best.pt>`` starts from those weights (and from its fitted graph builder, so token ids
and feature statistics are the same). Two objectives, summed:

* **Masked node modelling.** In each node type with a registered content field
  (``word``: its token, ``patch``: its pixels, ``frame``: its log-mel bins), a share
  ``mask_rate`` of the nodes has that field hidden (a token becomes ``<unk>``,
  features become 0) and is reconstructed from the node's state after message
  passing, which only its neighbours can inform:

  .. math::

      \mathcal{L}_{\text{mask}} = \sum_t \frac{1}{|M_t|}\sum_{i \in M_t}
      \begin{cases} -\log \operatorname{softmax}(W_t h_i)_{x_i} & \text{tokens} \\
                    \lVert W_t h_i - x_i \rVert^2 / d_t & \text{features} \end{cases}

* **Cross-modal contrast** (``contrastive > 0``), for samples with two or more
  modalities: the mean node state of each modality of a sample, projected and
  normalised, :math:`z^a_b`, is matched to the other modality of the same sample
  among the batch (InfoNCE at temperature :math:`\tau`, both directions).

Only the samples' inputs are read. By default they are those of the training split;
``model.pretrain.eval_inputs=true`` adds the validation and test inputs (never their
labels), the transductive setting of TextGCN, whose results must be reported apart
from the inductive ones.

Example:
    >>> import torch
    >>> from graphmm.data import Sample
    >>> from graphmm.graphs import MultimodalGraphBuilder
    >>> from graphmm.nn import GraphClassifier
    >>> from graphmm.pretrain import MaskedNodePretrainer, masked_targets
    >>> samples = [Sample(text="a seven and a one", image=torch.rand(1, 8, 8)) for _ in range(4)]
    >>> builder = MultimodalGraphBuilder(audio=None).fit(samples)
    >>> model = GraphClassifier(builder.in_dims, builder.canonical_etypes, num_classes=2, hidden=16)
    >>> pre = MaskedNodePretrainer(model, masked_targets(builder, builder.batch(samples)), mask_rate=0.5)
    >>> loss = pre(builder.batch(samples), generator=torch.Generator().manual_seed(0))
    >>> loss.shape, sorted(pre.last)
    (torch.Size([]), ['contrast', 'mask/patch', 'mask/word'])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from graphmm.data import Sample
from graphmm.ddp import DistContext
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.tasks import Task, register_task

__all__ = [
    "MaskedNodePretrainer",
    "PretrainConf",
    "PretrainTask",
    "checkpoint_path",
    "load_pretrained",
    "masked_targets",
]

log = logging.getLogger(__name__)

#: Token id that hides a masked word (``<unk>``: the model cannot tell it from an unseen word).
MASK_TOKEN = 1


@dataclass
class PretrainConf:
    """``model.pretrain``: the options of ``python -m graphmm pretrain``.

    Attributes:
        mask_rate: Share of the nodes of each type whose content is hidden. Default: ``0.15``.
        contrastive: Weight of the cross-modal contrastive term (``0``: off). Default: ``0.1``.
        temperature: Its softmax temperature :math:`\\tau`. Default: ``0.1``.
        eval_inputs: Also pretrain on the validation and test inputs (transductive;
            report apart). Default: ``False``.
    """

    mask_rate: float = 0.15
    contrastive: float = 0.1
    temperature: float = 0.1
    eval_inputs: bool = False


def masked_targets(builder: MultimodalGraphBuilder, g: dgl.DGLGraph) -> dict[str, tuple[str, str, int]]:
    """Per node type, what masked node modelling hides and predicts: ``(data key,
    "class" | "regress", width)``, from the ``masked`` entry each modality registered
    (:func:`graphmm.modalities.register_modality`); ``g`` is a built batch that gives
    the feature widths (a token's width is the vocabulary size, the type's input width)."""
    out = {}
    for spec in builder.specs.values():
        masked = spec.extra.get("masked")
        if masked is None or spec.ntype not in g.ntypes:
            continue
        key, kind = masked
        if key not in g.nodes[spec.ntype].data:
            continue
        width = builder.in_dims[spec.ntype] if kind == "class" else int(g.nodes[spec.ntype].data[key][0:1].flatten(1).shape[1])
        out[spec.ntype] = (key, kind, width)
    return out


class MaskedNodePretrainer(nn.Module):
    r"""Masked node modelling and cross-modal contrast over a graph model's encoders and GNN.

    ``model`` is the model that training will start from (a :class:`graphmm.nn.GraphClassifier`
    or :class:`graphmm.nn.GraphSeq2Seq`: anything with ``encoders``, ``gnn`` and ``hidden``);
    only its encoders and GNN are used and trained, so ``model.state_dict()`` afterwards
    is what :func:`load_pretrained` reads. The reconstruction heads and projections are
    this module's own and are dropped after pretraining.

    Args:
        model: The graph model.
        targets: :func:`masked_targets`.
        mask_rate: Share of nodes masked per type. Default: ``0.15``.
        contrastive: Weight of the contrastive term. Default: ``0.1``.
        temperature: Contrastive temperature. Default: ``0.1``.

    Shapes:
        - Input: a batched heterograph of :math:`B` samples.
        - Output: the scalar loss; ``self.last`` holds each term as a float.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: Mapping[str, tuple[str, str, int]],
        mask_rate: float = 0.15,
        contrastive: float = 0.1,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        if not targets:
            raise ValueError("no node type has a content field to mask; pretraining needs text, images or audio")
        self.model = model
        self.targets = dict(targets)
        self.mask_rate, self.contrastive, self.temperature = mask_rate, contrastive, temperature
        hidden = int(model.hidden)
        self.heads = nn.ModuleDict({nt: nn.Linear(hidden, width) for nt, (_, _, width) in self.targets.items()})
        self.proj = nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in self.targets}) if contrastive > 0 else None
        self.last: dict[str, float] = {}

    def _masks(self, g: dgl.DGLGraph, generator: torch.Generator | None) -> dict[str, Tensor]:
        masks = {}
        for nt in self.targets:
            n = g.num_nodes(nt)
            if n:
                masks[nt] = torch.rand(n, generator=generator).to(g.device) < self.mask_rate
        return masks

    def forward(self, g: dgl.DGLGraph, generator: torch.Generator | None = None) -> Tensor:
        """The pretraining loss of a batch; masks are drawn from ``generator`` (default: torch's)."""
        masks = self._masks(g, generator)
        originals = {nt: g.nodes[nt].data[self.targets[nt][0]] for nt in masks}
        with g.local_scope():
            for nt, m in masks.items():
                key, kind, _ = self.targets[nt]
                x = originals[nt]
                hidden = torch.full_like(x, MASK_TOKEN) if kind == "class" else torch.zeros_like(x)
                g.nodes[nt].data[key] = torch.where(m.view(-1, *([1] * (x.dim() - 1))), hidden, x)
            states = self.model.gnn(g, self.model.encoders(g))
        terms: dict[str, Tensor] = {}
        for nt, m in masks.items():
            if not m.any() or nt not in states:
                continue
            key, kind, _ = self.targets[nt]
            pred = self.heads[nt](states[nt][m])
            target = originals[nt][m]
            if kind == "class":
                terms[f"mask/{nt}"] = F.cross_entropy(pred, target.long())
            else:
                terms[f"mask/{nt}"] = F.mse_loss(pred, target.flatten(1).to(pred.dtype))
        if self.proj is not None:
            terms["contrast"] = self.contrastive * self._contrast(g, states)
        total = sum(terms.values()) if terms else states[next(iter(states))].sum() * 0.0
        self.last = {k: float(v.detach()) for k, v in terms.items()}
        return total

    def _contrast(self, g: dgl.DGLGraph, states: Mapping[str, Tensor]) -> Tensor:
        """InfoNCE between the mean states of every pair of modalities, over the samples
        that have both (0 when no pair has two such samples)."""
        pooled, present = {}, {}
        for nt in self.targets:
            if nt not in states or self.proj is None:
                continue
            counts = g.batch_num_nodes(nt)
            seg = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
            sums = torch.zeros(len(counts), states[nt].shape[1], device=states[nt].device).index_add_(0, seg, states[nt])
            mean = sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype)
            pooled[nt] = F.normalize(self.proj[nt](mean), dim=1)
            present[nt] = counts > 0
        losses = []
        types = sorted(pooled)
        for i, a in enumerate(types):
            for b in types[i + 1:]:
                both = present[a] & present[b]
                if int(both.sum()) < 2:
                    continue
                logits = pooled[a][both] @ pooled[b][both].t() / self.temperature
                labels = torch.arange(logits.shape[0], device=logits.device)
                losses.append((F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2)
        if not losses:
            return next(iter(states.values())).sum() * 0.0
        return torch.stack(losses).mean()


class _UnlabeledCollate:
    """``samples -> (graph, zeros(B))``: pretraining reads no labels."""

    def __init__(self, builder: MultimodalGraphBuilder) -> None:
        self.builder = builder

    def __call__(self, samples: Sequence[Sample]) -> tuple[dgl.DGLGraph, Tensor]:
        return self.builder.batch(samples), torch.zeros(len(samples), dtype=torch.int64)


@register_task("pretrain")
class PretrainTask(Task):
    """Self-supervised pretraining as a task of the training loop (``model.task=pretrain``,
    which ``python -m graphmm pretrain`` sets): the loss is :class:`MaskedNodePretrainer`'s,
    the metric its validation value (``val/loss``), and no sample needs a label."""

    name = "pretrain"
    metrics = ("loss",)
    config_keys = ("pretrain",)

    def __init__(self, conf: PretrainConf | None = None) -> None:
        self.conf = conf or PretrainConf()
        self.num_classes = 1

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any]) -> PretrainTask:
        raw = model_cfg.get("pretrain") or {}
        return cls(PretrainConf(**{k: raw[k] for k in PretrainConf.__dataclass_fields__ if k in raw}))

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        from graphmm.config import ConfigError

        p = cls.from_config(cfg.model).conf
        if not 0.0 < p.mask_rate < 1.0:
            raise ConfigError(f"model.pretrain.mask_rate must be in (0, 1), got {p.mask_rate}")
        if p.contrastive < 0 or p.temperature <= 0:
            raise ConfigError("model.pretrain.contrastive must be >= 0 and model.pretrain.temperature > 0")
        if cfg.trainer.monitor != "val/loss":
            raise ConfigError(f"pretraining monitors val/loss, not trainer.monitor={cfg.trainer.monitor}")

    def check(self, sample: Sample, index: int) -> None:
        if not sample.modalities:
            raise ValueError(f"{sample.where(index)}: has no input to pretrain on")

    def prepare_splits(self, splits: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
        """With ``eval_inputs``, the validation and test inputs (labels removed) join the
        training inputs; validation still measures the loss on its own samples."""
        if not self.conf.eval_inputs:
            return splits
        extra = [s.replace(label=None, target=None) for k in ("val", "test") for s in splits[k]]
        log.warning("pretrain: eval_inputs=true adds %d validation and test inputs (no labels) to the %d training "
                    "inputs: a transductive setting, to be reported apart from inductive results",
                    len(extra), len(splits["train"]))
        return {**splits, "train": [*splits["train"], *extra]}

    def fit(self, splits: dict[str, list[Sample]], class_names: list[str] | None = None) -> None:
        labels = [s.label for s in splits["train"] if s.label is not None]
        self.num_classes = max(1, max(labels, default=0) + 1)

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def wrap_model(self, model: nn.Module, builder: MultimodalGraphBuilder, samples: Sequence[Sample]) -> nn.Module:
        probe = builder.batch(list(samples[:8]))
        c = self.conf
        return MaskedNodePretrainer(model, masked_targets(builder, probe), c.mask_rate, c.contrastive, c.temperature)

    def collate(self, builder: MultimodalGraphBuilder) -> Any:
        return _UnlabeledCollate(builder)

    def loss(self, model: nn.Module, g: dgl.DGLGraph, y: Tensor, label_smoothing: float) -> Tensor:
        return model(g)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, samples: Sequence[Sample], device: torch.device,
                 progress: bool = False, desc: str = "eval", final: bool = False,
                 ctx: DistContext | None = None) -> tuple[dict[str, float], Any]:
        """The mean loss over ``loader``, with the same masks at every evaluation."""
        was = model.training
        model.eval()
        generator = torch.Generator().manual_seed(0)
        total, n = 0.0, 0
        for g, _ in loader:
            g = g.to(device)
            total += float(model(g, generator=generator)) * g.batch_size
            n += g.batch_size
        model.train(was)
        return {"loss": total / max(n, 1)}, None

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "num_classes": self.num_classes,
                "pretrain": {k: getattr(self.conf, k) for k in PretrainConf.__dataclass_fields__}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_classes = int(state.get("num_classes", 1))

    def write_artefacts(self, out: Path, history: list[dict[str, float]], samples: Sequence[Sample],
                        predictions: Any) -> None:
        from graphmm.viz import plot_history

        if (out / "history.csv").is_file():
            plot_history(out / "history.csv", out / "curves.png")  # the losses; there is no accuracy


#: Parameter prefixes that pretraining learns and :func:`load_pretrained` copies.
PRETRAINED_PREFIXES: tuple[str, ...] = ("encoders.", "gnn.")


def checkpoint_path(path: str | Path) -> Path:
    """``model.init_from``'s file: the path itself, or a run folder's ``checkpoints/best.pt``.

    Raises:
        FileNotFoundError: Neither exists.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "best.pt"
    if not p.is_file():
        raise FileNotFoundError(f"model.init_from={str(path)!r}: no such checkpoint (give a run's checkpoints/best.pt)")
    return p


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Copy the encoder and GNN weights of a checkpoint into ``model``; the names copied.

    The checkpoint is a pretraining run's (``python -m graphmm pretrain``) or any
    training run's; it is read with ``weights_only=True``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: It holds no encoder or GNN weights, or their names or shapes do not
            fit ``model`` (another ``model.*`` or ``graph.*`` config); the message names them.
    """
    from graphmm.utils import load_checkpoint

    p = checkpoint_path(path)
    state = load_checkpoint(p, map_location="cpu")
    weights = state.get("model", {})
    if state.get("task") == "pretrain":  # the pretrainer wraps the model as `model.`
        weights = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    wanted = {k: v for k, v in weights.items() if k.startswith(PRETRAINED_PREFIXES)}
    if not wanted:
        raise ValueError(f"model.init_from={str(p)!r} holds no encoder or GNN weights")
    own = model.state_dict()
    missing = sorted(k for k in own if k.startswith(PRETRAINED_PREFIXES) and k not in wanted)
    unexpected = sorted(k for k in wanted if k not in own)
    wrong = sorted(k for k in wanted if k in own and own[k].shape != wanted[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{name} {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if keys]
        raise ValueError(f"model.init_from={str(p)!r}: its weights do not fit this model ({'; '.join(parts)}); "
                         f"pretrain with the same model.* and graph.* config")
    model.load_state_dict(wanted, strict=False)
    return sorted(wanted)


if __name__ == "__main__":
    import sys

    # `python -m graphmm.pretrain`: the command lives in graphmm.cli.pretrain
    from graphmm.cli.pretrain import main

    sys.exit(main())
