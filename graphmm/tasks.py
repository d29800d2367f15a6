"""What a run learns: class labels (:class:`ClassificationTask`) or text (:class:`GenerationTask`).

A task knows what a sample must carry, how a batch is collated, the loss, the
evaluation metrics, the decoding options, what goes into a checkpoint besides the
weights, and the artefacts of a finished run. :func:`graphmm.train.train` picks one
from ``model.task`` (:func:`make_task`) and is otherwise the same loop for both.

``model.task`` is a ``_target_`` node naming the class (``graphmm/conf/model/*.yaml``:
``task: {_target_: graphmm.tasks.GenerationTask}``) or, on the command line, a
registered short name (``model.task=generation``). A task is registered by
:func:`register_task` on its class, and it reads its options from the model config
(:meth:`Task.from_config`), so ``model.beam_width=2`` keeps working.

Example:
    >>> @register_task("my_task")
    ... class MyTask(ClassificationTask):
    ...     name = "my_task"  # what checkpoints store
    >>> "my_task" in list_tasks() and make_task({"task": "my_task"}).name == "my_task"
    True
    >>> type(make_task({"task": {"_target_": "graphmm.tasks.ClassificationTask"}})).__name__
    'ClassificationTask'
"""

from __future__ import annotations

import csv
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dgl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from graphmm.data.sample import Sample
from graphmm.ddp import DistContext
from graphmm.data.targets import TargetVocab
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "ClassificationTask", "GenerationTask", "Task", "build_model", "get_task", "list_tasks", "make_task", "register_task",
    "sequence_metrics", "task_class", "LOWER_IS_BETTER",
]

#: Metrics where smaller is better (early stopping and ``best.pt`` use this).
LOWER_IS_BETTER: frozenset[str] = frozenset({"loss", "wer", "cer"})


class Task:
    """Interface of a task; see :class:`ClassificationTask` and :class:`GenerationTask`.

    A subclass sets ``name`` (what checkpoints store), ``metrics`` (what
    :meth:`evaluate` returns; ``trainer.monitor`` must be ``val/<one of them>``) and
    ``config_keys`` (the model config keys it reads in :meth:`from_config`, which
    therefore are not model constructor arguments).
    """

    name: str
    metrics: tuple[str, ...]
    config_keys: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any]) -> Task:
        """The task with its options from the ``model`` config (keys :attr:`config_keys`)."""
        return cls()

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Raise :class:`~graphmm.config.ConfigError` naming the key when the composed
        config cannot run this task (called by :func:`graphmm.config.validate_config`)."""

    def check(self, sample: Sample, index: int) -> None:
        """Raise ``ValueError`` naming the sample if it lacks what the task needs."""
        raise NotImplementedError

    def fit(self, splits: dict[str, list[Sample]], class_names: list[str] | None = None) -> None:
        """Learn what the data fix: the classes, or the target vocabulary."""
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """Arguments of the model constructor that come from the data."""
        raise NotImplementedError

    def prepare_splits(self, splits: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
        """The splits the run uses, after screening (default: as they are)."""
        return splits

    def wrap_model(self, model: torch.nn.Module, builder: MultimodalGraphBuilder,
                   samples: Sequence[Sample]) -> torch.nn.Module:
        """The module the loop trains around the built model (default: the model itself;
        pretraining adds its reconstruction heads). ``samples``: the training split."""
        return model

    def collate(self, builder: MultimodalGraphBuilder) -> Any:
        """A picklable ``samples -> (graph, y)`` for the DataLoader."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, g: dgl.DGLGraph, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, loader: DataLoader, samples: Sequence[Sample], device: torch.device,
                 progress: bool = False, desc: str = "eval", final: bool = False,
                 ctx: DistContext | None = None) -> tuple[dict[str, float], Any]:
        """Metrics over ``samples`` (which ``loader`` yields, in order) and the predictions.

        Under DDP (``ctx``) each process evaluates its share and the predictions of all
        processes are gathered, so every process returns the metrics of the whole split.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed entries stored in every checkpoint."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def write_artefacts(self, out: Path, history: list[dict[str, float]], samples: Sequence[Sample],
                        predictions: Any) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------- registry
_TASKS: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`Task` under ``name`` (``model.task=<name>``).

    Registering a name twice replaces the earlier class with a ``UserWarning``.
    """

    def decorator(cls: T) -> T:
        if name in _TASKS and _TASKS[name] is not cls:
            warnings.warn(f"task {name!r} is already registered ({_TASKS[name]!r}); replacing it with {cls!r}",
                          UserWarning, stacklevel=2)
        _TASKS[name] = cls
        return cls

    return decorator


def list_tasks() -> list[str]:
    """Sorted names of the registered tasks."""
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``; an unknown name lists the known ones."""
    from graphmm.config import ConfigError  # deferred: config imports this module lazily too

    if name not in _TASKS and name == "pretrain":
        import graphmm.pretrain  # noqa: F401 - registers the pretraining task

    if name not in _TASKS:
        raise ConfigError(f"model.task={name!r} is not one of {list_tasks()} (or a _target_ node naming a Task class)")
    return _TASKS[name]


def task_class(spec: Any) -> type[Task]:
    """The class ``model.task`` names: a ``{_target_: dotted.Class}`` node, a dotted
    class path, or a registered name (:func:`list_tasks`).

    Raises:
        ConfigError: an unknown name, a node with keys besides ``_target_`` (the options
            live in the model config: ``model.beam_width``, ...), or a class that is no Task.
    """
    from hydra.utils import get_class

    from graphmm.config import ConfigError

    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - {"_target_"})
        if extra or "_target_" not in spec:
            raise ConfigError(
                f"model.task must be {{_target_: <Task class>}} only, got keys {sorted(spec)}; set the task's "
                f"options in the model config instead (e.g. model.{extra[0] if extra else 'beam_width'}=...)"
            )
        spec = spec["_target_"]
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"model.task={spec!r} is neither a task name {list_tasks()} nor a _target_ node")
    cls = get_class(spec) if "." in spec else get_task(spec)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"model.task={spec!r} is not a graphmm.tasks.Task subclass")
    return cls


def make_task(model_cfg: Mapping[str, Any]) -> Task:
    """The task a model config asks for (``model.task``, default ``classification``),
    with its options from the same config (:meth:`Task.from_config`)."""
    return task_class(model_cfg.get("task", "classification")).from_config(model_cfg)


# ---------------------------------------------------------------------- classification
@register_task("classification")
class ClassificationTask(Task):
    """Class labels: cross-entropy, accuracy and macro F1, a confusion matrix."""

    name = "classification"
    metrics = ("loss", "acc", "f1")

    def __init__(self) -> None:
        self.num_classes = 0
        self.class_names: list[str] | None = None

    def check(self, sample: Sample, index: int) -> None:
        if sample.label is None:
            raise ValueError(f"{sample.where(index)}: has no label, which classification needs")

    def fit(self, splits: dict[str, list[Sample]], class_names: list[str] | None = None) -> None:
        labels = {name: [s.label for s in samples] for name, samples in splits.items()}
        for name, ls in labels.items():
            bad = [i for i, label in enumerate(ls) if not isinstance(label, int) or label < 0]
            if bad:
                s = splits[name][bad[0]]
                raise ValueError(f"{name} sample {s.id!r} (index {bad[0]}): label must be an int >= 0, got {s.label!r}")
        if not labels["train"]:
            raise ValueError("the train split is empty")
        n = max(labels["train"]) + 1
        for name in ("val", "test"):
            unseen = sorted({label for label in labels.get(name, []) if label >= n})
            if unseen:
                raise ValueError(f"{name} split has labels {unseen} that never occur in train (classes 0..{n - 1})")
        self.num_classes, self.class_names = n, class_names

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def collate(self, builder: MultimodalGraphBuilder) -> Any:
        return builder.collate

    def loss(self, model: torch.nn.Module, g: dgl.DGLGraph, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        inner = getattr(model, "module", model)  # through DDP's wrapper
        if getattr(inner, "modality_heads", None) is not None:
            # the per-modality heads' auxiliary loss (GraphClassifier(modality_heads=...))
            logits, per_type = model(g, modality_logits=True)
            return (F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                    + inner.modality_loss(g, per_type, y, label_smoothing))
        return F.cross_entropy(model(g), y, label_smoothing=label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: DataLoader, samples: Sequence[Sample], device: torch.device,
                 progress: bool = False, desc: str = "eval", final: bool = False,
                 ctx: DistContext | None = None) -> tuple[dict[str, float], torch.Tensor]:
        """Loss, accuracy and macro F1 over ``loader``; also the predictions ``(N,)``."""
        return evaluate_classifier(model, loader, device, self.num_classes, progress, desc, ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "num_classes": self.num_classes, "class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_classes = int(state["num_classes"])
        self.class_names = state.get("class_names")

    def write_artefacts(self, out: Path, history: list[dict[str, float]], samples: Sequence[Sample],
                        predictions: torch.Tensor) -> None:
        from graphmm.viz import write_classification_artefacts

        y_true = torch.tensor([s.label for s in samples])
        write_classification_artefacts(out, history, y_true, predictions, class_names=self.class_names)


def build_model(
    model_cfg: DictConfig, builder: MultimodalGraphBuilder, num_classes: int | None = None, **data_kwargs: Any
) -> torch.nn.Module:
    """Instantiate ``model_cfg`` with the sizes the builder and the data dictate.

    Args:
        model_cfg: The ``model`` config.
        builder: The fitted graph builder (node input sizes, relations).
        num_classes: Classes, for a classifier.
        **data_kwargs: Other sizes from the data, e.g. ``vocab_size`` and ``max_len``
            of a generator (see :meth:`graphmm.tasks.Task.model_kwargs`).
    """
    from hydra.utils import get_class, instantiate

    from graphmm.config import to_container

    kwargs = to_container(model_cfg)
    # the task and the keys it reads (targets, decoding) configure the run, not the module
    # model.init_from and model.pretrain configure how the run starts and pretrains
    for key in ("task", "init_from", "pretrain", *task_class(kwargs.get("task", "classification")).config_keys):
        kwargs.pop(key, None)
    heads = kwargs.pop("heads")
    conv_kwargs = dict(kwargs.pop("conv_kwargs") or {})
    if kwargs["conv"] == "gat":
        conv_kwargs.setdefault("heads", heads)
    if "heads" in inspect.signature(get_class(kwargs["_target_"])).parameters:
        kwargs["heads"] = heads  # a model with attention of its own (the sequence baseline)
    if num_classes is not None:
        data_kwargs["num_classes"] = num_classes
    return instantiate(
        kwargs,
        in_dims=builder.in_dims,
        canonical_etypes=builder.canonical_etypes,
        conv_kwargs=conv_kwargs,
        **data_kwargs,
    )


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    progress: bool = False,
    desc: str = "eval",
    ctx: DistContext | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """Loss, accuracy and macro F1 over ``loader``; also the predictions ``(N,)``.

    With ``progress`` a bar named ``desc`` shows the batches and the running accuracy.
    Under DDP (``ctx``) the loader's sampler gives this process's share; the logits of
    all processes are gathered and put back in dataset order before scoring.
    """
    model.eval()
    total, n, correct, logits_all, labels = 0.0, 0, 0, [], []
    bar = progress_bar(loader, enabled=progress, desc=desc, unit="batch")
    for g, y in bar:
        g, y = g.to(device), y.to(device)
        logits = model(g)
        total += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
        logits_all.append(logits.float().cpu())
        labels.append(y.cpu())
        if progress:
            correct += int((logits.argmax(-1) == y).sum())
            bar.set_postfix(acc=f"{correct / n:.4f}", refresh=False)
    local = (
        _indices(loader, n),
        torch.cat(logits_all) if logits_all else torch.zeros(0, num_classes),
        torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64),
        total,
    )
    parts = ctx.all_gather(local) if ctx is not None else [local]
    index = torch.cat([torch.as_tensor(p[0], dtype=torch.int64) for p in parts])
    order = torch.argsort(index)
    logits, y = torch.cat([p[1] for p in parts])[order], torch.cat([p[2] for p in parts])[order]
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty split")
    # torchmetrics is imported where it is used: its package import takes seconds
    # (torchvision, scipy), which a prediction never needs
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    acc = MulticlassAccuracy(num_classes=num_classes, average="micro")(logits, y)
    f1 = MulticlassF1Score(num_classes=num_classes, average="macro")(logits, y)
    metrics = {"loss": sum(p[3] for p in parts) / len(y), "acc": float(acc), "f1": float(f1)}
    return metrics, logits.argmax(-1)


def _indices(loader: DataLoader, n: int) -> list[int]:
    """Dataset indices that ``loader`` went through, in order."""
    sampler = loader.sampler
    return sampler.indices() if hasattr(sampler, "indices") else list(range(n))


# ---------------------------------------------------------------------- generation
class _Seq2SeqCollate:
    """``samples -> (graph, padded target ids (B, T))``; a class so workers can pickle it."""

    def __init__(self, builder: MultimodalGraphBuilder, vocab: TargetVocab) -> None:
        self.builder, self.vocab = builder, vocab

    def __call__(self, samples: Sequence[Sample]) -> tuple[dgl.DGLGraph, torch.Tensor]:
        wheres = [s.where(i) for i, s in enumerate(samples)]
        for s, w in zip(samples, wheres):
            if s.target is None:
                raise ValueError(f"{w}: has no target text, which generation needs")
        return self.builder.batch(samples), self.vocab.batch([s.target for s in samples], wheres)


def sequence_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    r"""Corpus-level text metrics (torchmetrics).

    * ``wer``: word error rate, :math:`(S + D + I) / N` over all reference words;
    * ``cer``: the same over characters;
    * ``bleu``: corpus BLEU-4 (no smoothing, brevity penalty), in ``[0, 1]``;
    * ``exact``: fraction of predictions equal to their reference.

    Args:
        predictions: Generated texts.
        references: One reference per prediction, in the same normal form.
    """
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need as many predictions as references (> 0), got {len(predictions)} and {len(references)}")
    preds, refs = list(predictions), list(references)
    from torchmetrics.text import BLEUScore, CharErrorRate, WordErrorRate

    return {
        "wer": float(WordErrorRate()(preds, refs)),
        "cer": float(CharErrorRate()(preds, refs)),
        "bleu": float(BLEUScore(n_gram=4)(preds, [[r] for r in refs])),
        "exact": sum(p == r for p, r in zip(preds, refs)) / len(refs),
    }


@register_task("generation")
class GenerationTask(Task):
    """Target text: teacher-forced cross-entropy, decoding, WER/CER/BLEU/exact match.

    Args:
        level: Target tokens, ``"word"`` or ``"char"``.
        min_freq: Rarer training tokens become ``<unk>``.
        beam_width: Beam width of the final (test) decoding; validation during
            training decodes greedily. Default: ``1``.
        length_penalty: :math:`\\alpha` of :meth:`GenerationHead.beam_search`.
        max_len: Decoding limit in tokens; ``None``: the longest training target
            plus 5 (``<eos>`` included).
    """

    name = "generation"
    metrics = ("loss", "wer", "cer", "bleu", "exact")
    config_keys = ("target_level", "target_min_freq", "beam_width", "length_penalty", "max_len")

    def __init__(self, level: str = "word", min_freq: int = 1, beam_width: int = 1, length_penalty: float = 0.0,
                 max_len: int | None = None) -> None:
        self.vocab = TargetVocab(level=level, min_freq=min_freq)
        self.beam_width, self.length_penalty, self.max_len = beam_width, length_penalty, max_len

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any]) -> GenerationTask:
        """From ``model.target_level``, ``target_min_freq``, ``beam_width``,
        ``length_penalty`` and ``max_len``."""
        m = model_cfg
        return cls(level=m["target_level"], min_freq=m["target_min_freq"], beam_width=m["beam_width"],
                   length_penalty=m["length_penalty"], max_len=m["max_len"])

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """``model.decoder_heads`` must divide ``model.hidden``, ``model.target_level``
        be known, the counts positive, and the dataset must give targets."""
        from hydra.utils import get_method

        from graphmm.config import ConfigError

        m = cfg.model
        if "decoder_heads" not in m:
            raise ConfigError(
                f"model.task=generation needs a text generator, but model._target_={m.get('_target_')} is a "
                f"classifier; use model=graph_seq2seq (or model=transformer_seq2seq, experiment=digits_seq)"
            )
        if m.hidden % m.decoder_heads:
            raise ConfigError(f"model.decoder_heads={m.decoder_heads} must divide model.hidden={m.hidden}")
        if m.target_level not in ("word", "char"):
            raise ConfigError(f"model.target_level={m.target_level!r} is not one of ['word', 'char']")
        for key in ("beam_width", "decoder_layers", "target_min_freq"):
            if m[key] < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {m[key]}")
        if m.max_len is not None and m.max_len < 1:
            raise ConfigError(f"model.max_len must be >= 1 or null, got {m.max_len}")
        target = cfg.data.get("_target_")
        try:
            loader = get_method(target) if target else None
        except Exception:  # an unknown loader fails with its own error when the data load
            loader = None
        if loader is not None and getattr(loader, "provides_targets", None) is False:
            raise ConfigError(
                f"model.task=generation needs target texts, but data._target_={target} gives samples without "
                f"targets; use a dataset with targets (e.g. experiment=digits_seq) or a classification model"
            )

    def check(self, sample: Sample, index: int) -> None:
        if sample.target is None:
            raise ValueError(f"{sample.where(index)}: has no target text, which generation needs")
        self.vocab.tokenize(sample.target, where=sample.where(index))  # empty target: a clear error

    def fit(self, splits: dict[str, list[Sample]], class_names: list[str] | None = None) -> None:
        if not splits["train"]:
            raise ValueError("the train split is empty")
        self.vocab.fit(s.target for s in splits["train"])  # type: ignore[misc]
        if self.max_len is None:
            longest = max(len(self.vocab.tokenize(s.target)) for s in splits["train"])  # type: ignore[arg-type]
            self.max_len = longest + 5
        log.info("targets: %s, decoding up to %d tokens", self.vocab, self.max_len)

    def model_kwargs(self) -> dict[str, Any]:
        v = self.vocab
        return {"vocab_size": len(v), "max_len": self.max_len, "pad_id": v.pad_id, "bos_id": v.bos_id,
                "eos_id": v.eos_id}

    def collate(self, builder: MultimodalGraphBuilder) -> Any:
        return _Seq2SeqCollate(builder, self.vocab)

    def loss(self, model: torch.nn.Module, g: dgl.DGLGraph, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        # through forward(), so that a DistributedDataParallel wrapper sees the call
        logits = model(g, y[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1),
                               ignore_index=self.vocab.pad_id, label_smoothing=label_smoothing)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Texts of generated ids ``(B, L)``."""
        return [self.vocab.decode(row) for row in ids.tolist()]

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: DataLoader, samples: Sequence[Sample], device: torch.device,
                 progress: bool = False, desc: str = "eval", final: bool = False,
                 ctx: DistContext | None = None) -> tuple[dict[str, float], list[str]]:
        """Teacher-forced loss and the metrics of decoded texts; also the texts.

        ``loader`` must yield ``samples`` in order (under DDP: this process's share).
        ``final=True`` decodes with the configured beam; otherwise greedily (cheaper,
        for validation during training).
        """
        model.eval()
        total, n_tok, preds = 0.0, 0, []
        beam = self.beam_width if final else 1
        index = _indices(loader, len(samples))
        bar = progress_bar(loader, enabled=progress, desc=desc, unit="batch")
        for g, y in bar:
            g, y = g.to(device), y.to(device)
            logits = model(g, y[:, :-1])
            gold = y[:, 1:]
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1),
                                           ignore_index=self.vocab.pad_id, reduction="sum"))
            n_tok += int((gold != self.vocab.pad_id).sum())
            preds += self.decode(model.generate(g, beam_width=beam, max_len=self.max_len,
                                                length_penalty=self.length_penalty).cpu())
            if progress:
                refs = [self.vocab.normalize(samples[i].target) for i in index[len(preds) - len(y): len(preds)]]
                bar.set_postfix(exact=f"{sum(p == r for p, r in zip(preds[-len(y):], refs)) / len(y):.3f}",
                                refresh=False)
        parts = ctx.all_gather((index[: len(preds)], preds, total, n_tok)) if ctx is not None else [
            (index[: len(preds)], preds, total, n_tok)]
        by_index = {i: p for part in parts for i, p in zip(part[0], part[1])}
        if not by_index:
            raise ValueError("cannot evaluate on an empty split")
        preds = [by_index[i] for i in sorted(by_index)]
        refs = [self.vocab.normalize(samples[i].target) for i in sorted(by_index)]  # type: ignore[arg-type]
        loss = sum(p[2] for p in parts) / max(sum(p[3] for p in parts), 1)
        return {"loss": loss, **sequence_metrics(preds, refs)}, preds

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "target_vocab": self.vocab.state_dict(), "max_len": self.max_len,
                "beam_width": self.beam_width, "length_penalty": self.length_penalty}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vocab = TargetVocab.from_state_dict(state["target_vocab"])
        self.max_len = int(state["max_len"])

    def write_artefacts(self, out: Path, history: list[dict[str, float]], samples: Sequence[Sample],
                        predictions: list[str]) -> None:
        """``curves.png`` and ``generations.csv`` (id, target, generated, exact) for
        every evaluated sample; the first examples also go to the log."""
        from graphmm.viz import plot_sequence_history

        out.mkdir(parents=True, exist_ok=True)
        if history:
            plot_sequence_history(history, out / "curves.png")
        with open(out / "generations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "target", "generated", "exact"])
            for s, p in zip(samples, predictions):
                ref = self.vocab.normalize(s.target)  # type: ignore[arg-type]
                w.writerow([s.id, ref, p, int(p == ref)])
        for s, p in list(zip(samples, predictions))[:5]:
            log.info("example %s: target=%r generated=%r", s.id, s.target, p)

