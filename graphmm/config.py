"""Typed schemas for the Hydra config, and the checks that run before any work.

The dataclasses below are registered in Hydra's ConfigStore and sit at the top of
each YAML file's defaults list, so composing a config with an unknown key or a value
of the wrong type fails at once, naming the key. :func:`validate_config` then checks
what types cannot: combinations that are impossible, and a writable output folder.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from graphmm.data.augment import augment_schema
from graphmm.data.io import MAX_IMAGE_PIXELS
from graphmm.pretrain import PretrainConf
from graphmm.data.digits import DigitsConfig
from graphmm.data.sequences import DigitSeqConfig
from graphmm.utils import library_default  # noqa: F401 - the schemas below use it; re-exported
from graphmm.modalities.audio import AudioGraphConf  # noqa: F401 - re-exported
from graphmm.modalities.image import ImageGraphConf  # noqa: F401 - re-exported
from graphmm.modalities.text import TEXT_MAX_TOKENS, TextGraphConf  # noqa: F401 - re-exported


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


_CONFIG_CHECKS: list[Callable[[DictConfig], None]] = []


def register_config_check(check: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """Add a check that :func:`validate_config` runs on every config (a plug-in's
    rules for its own keys); it raises :class:`ConfigError` naming the key."""
    if check not in _CONFIG_CHECKS:
        _CONFIG_CHECKS.append(check)
    return check


@dataclass
class FeaturizerConf:
    """One entry of ``model.encoders`` (per node type): where its input features come from.

    ``type: learned`` (the default) is the node type's own encoder (its modality
    plug-in's); another type is a featurizer a plug-in registers
    (:func:`graphmm.nn.encoders.register_featurizer`), e.g. ``open_clip`` from the CLIP
    package, which reads the other keys.
    """

    type: str = "learned"
    name: Optional[str] = None  # a pretrained architecture, e.g. ViT-B-32
    checkpoint: Optional[str] = None  # local weights file; null: random weights (tests)
    pretrained: Optional[str] = None  # null, or a tag whose preprocessing to use
    frozen: bool = True  # true: precomputed, cached features; false: the tower trains
    layer: int = -1  # block of the features (-1: last)


# ---------------------------------------------------------------- data
@dataclass
class DigitsDataConf(DigitsConfig):
    """The embedded ``digits`` dataset: :class:`graphmm.data.DigitsConfig`'s fields,
    passed to :func:`graphmm.data.load_digits`."""

    _target_: str = "graphmm.data.load_digits"
    _convert_: str = "all"
    on_error: str = "raise"


@dataclass
class DigitSeqDataConf(DigitSeqConfig):
    """The embedded digit-sequence dataset: :class:`graphmm.data.sequences.DigitSeqConfig`'s
    fields, passed to :func:`graphmm.data.sequences.load_digits_seq`."""

    _target_: str = "graphmm.data.sequences.load_digits_seq"
    _convert_: str = "all"
    on_error: str = "raise"


@dataclass
class AVDigitsSeqDataConf:
    """Digit sequences from MNIST and Free Spoken Digits, passed to
    :func:`graphmm.data.sequences.load_avdigits_seq`."""

    _target_: str = "graphmm.data.sequences.load_avdigits_seq"
    _convert_: str = "all"
    root: str = MISSING
    on_error: str = "raise"
    min_digits: int = 1
    max_digits: int = 4
    num_samples: List[int] = field(default_factory=lambda: [6000, 600, 1000])
    modalities: List[str] = field(default_factory=lambda: ["image", "audio"])
    sample_rate: int = 8000
    gap: List[float] = field(default_factory=lambda: [0.05, 0.2])
    val_fraction: float = 0.1
    seed: int = 0
    test_speakers: Optional[List[str]] = None
    val_speakers: Optional[List[str]] = None


@dataclass
class ManifestDataConf:
    """A CSV manifest of your own files, passed to :func:`graphmm.data.manifest.load_manifest`.

    ``on_file_error`` repeats ``on_error`` (``${.on_error}``) for the loader, because
    :func:`graphmm.train.load_splits` takes ``on_error`` out of the data config to
    screen samples after loading: one setting, ``data.on_error``, rules both steps.
    """

    _target_: str = "graphmm.data.manifest.load_manifest"
    _convert_: str = "all"
    path: str = MISSING
    root: Optional[str] = None
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    image_channels: Optional[int] = None
    image_size: Optional[List[int]] = None
    sample_rate: Optional[int] = None
    max_image_pixels: Optional[int] = MAX_IMAGE_PIXELS


# ---------------------------------------------------------------- graph
# Each modality's schema lives in its plug-in module (graphmm.modalities.<name>); the
# built-in ones are imported above for code that imported them from this module.


_CROSS = "graphmm.graphs.CrossModalBuilder"


@dataclass
class CrossModalConf:
    """``graph.cross``: the arguments of :class:`~graphmm.graphs.CrossModalBuilder`, with
    its defaults (read from its signature)."""

    _target_: str = _CROSS
    bipartite: List[List[str]] = field(default_factory=list)
    summary: bool = library_default(_CROSS, "summary")
    align: List[List[str]] = field(default_factory=list)


def _graph_conf() -> type:
    """The ``graph`` schema: ``_target_``, one optional field per registered modality
    (its plug-in's schema; a modality registered ``default_on``, as ``text``,
    ``image`` and ``audio`` are, defaults to its schema's defaults, any other to
    ``null``, i.e. off) and ``cross``."""
    from graphmm.modalities import load_modalities

    fields: list[tuple[str, Any, Any]] = [("_target_", str, field(default="graphmm.graphs.MultimodalGraphBuilder"))]
    for name, spec in load_modalities().items():
        if spec.schema is None:
            continue
        on = spec.default_on
        fields.append((name, Optional[spec.schema], field(default_factory=spec.schema) if on else field(default=None)))
    fields.append(("cross", Optional[CrossModalConf], field(default_factory=CrossModalConf)))
    # __module__ and __qualname__ name this module's GraphConf, so the class pickles by
    # reference into launcher worker processes (joblib) like a class written out here
    return dataclasses.make_dataclass(
        "GraphConf", fields, namespace={"__doc__": "A graph recipe: one builder per modality (null ignores it).",
                                        "__module__": __name__, "__qualname__": "GraphConf"}
    )


GraphConf = _graph_conf()


# ---------------------------------------------------------------- model
_CLASSIFIER = "graphmm.nn.GraphClassifier"
_GENERATOR = "graphmm.nn.GraphSeq2Seq"


@dataclass
class GNNConf:
    """What every graph model shares: node encoders and the heterogeneous GNN.

    Defaults: :class:`graphmm.nn.GraphClassifier`'s (``heads``: :class:`graphmm.nn.GATLayer`'s,
    passed as ``conv_kwargs.heads`` to a GAT and as ``heads`` to the sequence baselines).
    """

    hidden: int = library_default(_CLASSIFIER, "hidden")
    num_layers: int = library_default(_CLASSIFIER, "num_layers")
    conv: str = library_default(_CLASSIFIER, "conv")
    heads: int = library_default("graphmm.nn.GATLayer", "heads")
    conv_kwargs: Dict[str, Any] = field(default_factory=dict)
    aggregate: str = library_default(_CLASSIFIER, "aggregate")
    dropout: float = library_default(_CLASSIFIER, "dropout")
    activation: str = library_default(_CLASSIFIER, "activation")
    # all relations of a GNN layer in one fused pass (false: one module per relation)
    fused: bool = library_default(_CLASSIFIER, "fused")
    # per node type: where input features come from (learned, or an open_clip tower)
    encoders: Dict[str, FeaturizerConf] = field(default_factory=dict)
    # start from the encoder and GNN weights (and the fitted graph builder) of this
    # checkpoint, e.g. a `python -m graphmm pretrain` run's best.pt (graphmm.pretrain)
    init_from: Optional[str] = None
    # options of self-supervised pretraining (model.task=pretrain; graphmm.pretrain.PretrainConf)
    pretrain: PretrainConf = field(default_factory=PretrainConf)


@dataclass
class ModelConf(GNNConf):
    """:class:`graphmm.nn.GraphClassifier`; sizes of the data are filled in at run time."""

    _target_: str = _CLASSIFIER
    # what is learned: a {_target_: <graphmm.tasks.Task class>} node, or a registered name
    # (model.task=classification); the task reads its options from this config (graphmm.tasks)
    task: Any = field(default_factory=lambda: {"_target_": "graphmm.tasks.ClassificationTask"})
    pool: str = library_default(_CLASSIFIER, "pool")
    fusion: str = library_default(_CLASSIFIER, "fusion")
    head_hidden: Optional[int] = library_default(_CLASSIFIER, "head_hidden")
    readout_ntypes: Optional[List[str]] = library_default(_CLASSIFIER, "readout_ntypes")
    # the wide path (graphmm.nn.WidePath), fitted before the GNN trains: null, auto, words,
    # ngrams or {ntype: words | ngrams | cells[:field] | moments[:field]}
    wide: Any = library_default(_CLASSIFIER, "wide")
    wide_buckets: int = library_default(_CLASSIFIER, "wide_buckets")
    wide_c: List[float] = field(default_factory=lambda: list(library_default(_CLASSIFIER, "wide_c")))
    wide_folds: int = library_default(_CLASSIFIER, "wide_folds")
    wide_weighting: List[str] = field(default_factory=lambda: list(library_default(_CLASSIFIER, "wide_weighting")))
    # weight of auxiliary per-modality classification losses (0: none)
    modality_heads: float = library_default(_CLASSIFIER, "modality_heads")


@dataclass
class GenerationModelConf(GNNConf):
    """A text generator (:class:`graphmm.nn.GraphSeq2Seq`, or the no-graph
    :class:`graphmm.nn.SequenceSeq2Seq`), its target vocabulary and its decoding.

    ``target_level``/``target_min_freq`` configure :class:`graphmm.data.TargetVocab`;
    ``beam_width``, ``length_penalty`` and ``max_len`` (``null``: longest training
    target + 5) the final decoding (validation during training decodes greedily).
    Defaults: those of the classes that take them.
    """

    _target_: str = _GENERATOR
    task: Any = field(default_factory=lambda: {"_target_": "graphmm.tasks.GenerationTask"})
    memory_ntypes: Optional[List[str]] = library_default(_GENERATOR, "memory_ntypes")
    decoder_layers: int = library_default(_GENERATOR, "decoder_layers")
    decoder_heads: int = library_default(_GENERATOR, "decoder_heads")
    decoder_ff: Optional[int] = library_default(_GENERATOR, "decoder_ff")
    target_level: str = library_default("graphmm.data.targets.TargetVocab", "level")
    target_min_freq: int = library_default("graphmm.data.targets.TargetVocab", "min_freq")
    beam_width: int = library_default("graphmm.nn.GenerationHead.beam_search", "beam_width")
    length_penalty: float = library_default("graphmm.nn.GenerationHead.beam_search", "length_penalty")
    # not GraphSeq2Seq's max_len (its position capacity, sized from the data at run time)
    max_len: Optional[int] = None


# ---------------------------------------------------------------- trainer
@dataclass
class OptimizerConf:
    """``trainer.optimizer``: a partial optimizer, given the parameters at run time."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 3e-3
    weight_decay: float = 0.1


#: ``trainer.augment``: one block per modality with a registered augmentation, all off
AugmentConf = augment_schema()
# named as this module's attribute, so the class pickles by reference (launcher workers)
AugmentConf.__module__, AugmentConf.__qualname__ = __name__, "AugmentConf"


@dataclass
class TrainerConf:
    """``trainer``: the training run. These are the defaults ``python -m graphmm.train``
    uses (``graphmm/conf/trainer/default.yaml`` lists them as comments and sets none)."""

    max_epochs: int = 40
    batch_size: int = 64
    eval_batch_size: int = 256
    # early stopping on `monitor`, in epochs; by default none: the cosine schedule runs out
    patience: int = II("trainer.max_epochs")
    monitor: str = "val/acc"
    device: str = "cpu"
    strategy: str = "single"
    num_workers: int = 0
    cache_dir: Optional[str] = None
    # MiB of cached features kept in memory besides the disk (null: no bound)
    cache_memory_mb: Optional[float] = library_default("graphmm.graphs.MultimodalGraphBuilder.use_cache", "memory_mb")
    grad_clip: Optional[float] = 1.0
    modality_dropout: float = 0.3
    # training-time augmentation per modality (graphmm.data.augment); every setting 0: off
    augment: AugmentConf = field(default_factory=AugmentConf)  # type: ignore[valid-type]
    ema_decay: Optional[float] = None
    label_smoothing: float = 0.0
    checkpoint_every_n_steps: Optional[int] = None
    keep_checkpoints: int = 2
    resume: Optional[str] = None
    # continue even when the config differs from the checkpoint's in keys outside
    # graphmm.runstate.RESUME_SAFE_KEYS (the differences are logged as a warning)
    resume_force: bool = False
    limit_train_batches: Optional[int] = None
    # also test the samples with each modality and another one, as they are (test_with_<m>/*) and
    # with that modality removed (test_without_<m>/*)
    test_missing_modalities: bool = False
    progress: bool = True  # bars only where they show as bars: a terminal (graphmm.progress)
    logger: Optional[str] = None
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    # stepped once per epoch; null: a constant learning rate
    scheduler: Optional[Any] = field(
        default_factory=lambda: {
            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "_partial_": True,
            "T_max": II("trainer.max_epochs"),
        }
    )


@dataclass
class Config:
    data: Any = MISSING
    graph: GraphConf = MISSING
    model: Any = MISSING
    trainer: TrainerConf = MISSING
    name: str = "digits"
    seed: int = 0
    output_dir: Optional[str] = None


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="data", name="digits_schema", node=DigitsDataConf)
    cs.store(group="data", name="manifest_schema", node=ManifestDataConf)
    cs.store(group="data", name="digits_seq_schema", node=DigitSeqDataConf)
    cs.store(group="data", name="avdigits_seq_schema", node=AVDigitsSeqDataConf)
    cs.store(group="graph", name="graph_schema", node=GraphConf)
    from graphmm.modalities import load_modalities

    for name, spec in load_modalities().items():
        if spec.schema is not None and not spec.default_on:
            # a modality that is off by default (a plug-in) is switched on with its defaults
            # by `+graph/<name>=default`, then tuned with graph.<name>.<key>=...
            cs.store(group=f"graph/{name}", name="default", node=spec.schema, package=f"graph.{name}")
    cs.store(group="model", name="model_schema", node=ModelConf)
    cs.store(group="model", name="generation_schema", node=GenerationModelConf)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConf)
    from graphmm.data import schemas as data_schemas

    data_schemas.register(cs)
    from graphmm.plugins import load_plugins

    load_plugins()  # optional packages (CLIP) store their own schemas


register_configs()


def app_config_groups() -> str:
    """The config groups and their options for ``--help``, one ``group: a, b`` line per
    group as Hydra's ``$APP_CONFIG_GROUPS`` writes them, without the ``*_schema``
    entries: those are the typed schemas under the YAML files, not options to pick.

    ``graphmm/conf/config.yaml``'s ``hydra.help.template`` calls it as the
    ``${graphmm_config_groups:}`` resolver; empty outside a Hydra app.
    """
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return ""
    hydra = gh.hydra
    lines = []
    for group in sorted(hydra.list_all_config_groups()):
        if group == "hydra" or group.startswith("hydra/"):  # those are in --hydra-help
            continue
        options = sorted(o for o in hydra.config_loader.get_group_options(group) if not o.endswith("_schema"))
        if options:  # a group of schemas only (graph/image, from the CLIP package) is no choice at all
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


OmegaConf.register_new_resolver("graphmm_config_groups", app_config_groups, replace=True)

#: Root of the YAML configs shipped with the package.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")  # shipped inside the package (pyproject package-data)

_DEVICES = {"cpu", "cuda", "auto"}


def validate_config(cfg: DictConfig) -> None:
    """Checks that types alone cannot express. Raises :class:`ConfigError` naming the key.

    * no keys beyond the schema (also those added with ``+key=value``);
    * ``model.heads`` must divide ``model.hidden`` for ``model.conv=gat``;
    * ``model.conv``, ``model.pool``, ``model.fusion`` must be known names;
    * every node type a cross-modal relation names must come from an enabled modality;
    * at least one modality builder must be on;
    * ``trainer.monitor`` must be a metric of the task, ``trainer.device`` and
      ``trainer.logger`` known values;
    * a generation model (``model.task=generation``) needs a dataset with targets,
      ``model.decoder_heads`` dividing ``model.hidden`` and a known ``model.target_level``;
    * the output folder must be writable.
    """
    from graphmm.tasks import task_class

    _check_known_keys(cfg, "")
    _check_required_data_keys(cfg.data)
    task = task_class(cfg.model.get("task", "classification"))  # a name or a _target_ node (graphmm.tasks)
    task.check_config(cfg)
    _check_model(cfg.model)
    for check in _CONFIG_CHECKS:  # what plug-ins check (the CLIP package: its encoders and graph keys)
        check(cfg)
    _check_graph(cfg.graph)
    _check_trainer(cfg.trainer, sorted(f"val/{k}" for k in task.metrics), task.name)
    if cfg.data.get("on_error", "raise") not in ("raise", "skip"):
        raise ConfigError(f"data.on_error={cfg.data.on_error!r} is not one of ['raise', 'skip']")


def _check_model(m: DictConfig) -> None:
    from graphmm.nn import list_convs  # deferred: importing torch/dgl is slow
    from graphmm.nn.encoders import featurizer_types

    if m.conv not in list_convs():
        raise ConfigError(f"model.conv={m.conv!r} is not a registered convolution; known: {list_convs()}")
    if m.conv == "gat" and m.hidden % m.heads:
        raise ConfigError(
            f"model.heads={m.heads} must divide model.hidden={m.hidden} (GAT concatenates its heads)"
        )
    for key, known in (("pool", ("mean", "max", "attention")), ("fusion", ("concat", "attention"))):
        if key in m and m[key] not in known:
            raise ConfigError(f"model.{key}={m[key]!r} is not one of {list(known)}")
    for key in ("hidden", "num_layers"):
        if m[key] < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {m[key]}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.get("modality_heads", 0.0) < 0:
        raise ConfigError(f"model.modality_heads must be >= 0 (0: no per-modality heads), got {m.modality_heads}")
    if m.get("modality_heads", 0.0) > 0 and m.get("_target_") != _CLASSIFIER:
        raise ConfigError(f"model.modality_heads={m.modality_heads} needs the graph classifier ({_CLASSIFIER}); "
                          f"model._target_={m.get('_target_')!r} has no per-modality heads")
    for ntype, spec in (m.get("encoders") or {}).items():
        if spec is not None and spec.type not in featurizer_types():
            raise ConfigError(f"model.encoders.{ntype}.type={spec.type!r} is not one of {featurizer_types()}")
    if m.get("init_from"):
        from graphmm.pretrain import checkpoint_path

        try:
            checkpoint_path(m.init_from)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None


def _check_graph(g: DictConfig) -> None:
    from graphmm.modalities import load_modalities

    alias = {name: spec.ntype for name, spec in load_modalities().items()}
    enabled = {nt for name, nt in alias.items() if g.get(name) is not None}
    if not enabled:
        raise ConfigError(f"graph: every modality builder is null; enable at least one of graph.{'/'.join(alias)}")
    if g.cross is None:
        return
    for kind in ("bipartite", "align"):
        for name in (name for pair in g.cross[kind] for name in pair):
            if alias.get(name, name) not in enabled:
                raise ConfigError(
                    f"graph.cross.{kind} names node type {name!r}, which no enabled modality produces "
                    f"(enabled: {sorted(enabled)})"
                )


def _check_trainer(t: DictConfig, monitors: list[str], task_name: str) -> None:
    from graphmm.loggers import LOGGERS

    if t.monitor not in monitors:
        raise ConfigError(
            f"trainer.monitor={t.monitor!r} is not a metric of model.task={task_name}; use one of {monitors}"
        )
    if t.strategy not in ("single", "ddp"):
        raise ConfigError(
            f"trainer.strategy={t.strategy!r} is not one of ['single', 'ddp'] "
            f"(ddp: torchrun --nproc_per_node N -m graphmm.train trainer.strategy=ddp)"
        )
    if t.device not in _DEVICES:
        raise ConfigError(f"trainer.device={t.device!r} is not one of {sorted(_DEVICES)}")
    if t.logger is not None and t.logger not in LOGGERS:
        raise ConfigError(
            f"trainer.logger={t.logger!r} is not a known logger; use null (none) or one of {list(LOGGERS)}"
        )
    for key, lo, hi in (("modality_dropout", 0.0, 1.0), ("label_smoothing", 0.0, 1.0)):
        if not lo <= t[key] < hi:
            raise ConfigError(f"trainer.{key} must be in [0, 1), got {t[key]}")
    if t.cache_memory_mb is not None and t.cache_memory_mb < 0:
        raise ConfigError(f"trainer.cache_memory_mb must be >= 0 or null, got {t.cache_memory_mb}")
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay must be in (0, 1) or null, got {t.ema_decay}")
    if t.checkpoint_every_n_steps is not None and t.checkpoint_every_n_steps < 1:
        raise ConfigError(f"trainer.checkpoint_every_n_steps must be >= 1 or null, got {t.checkpoint_every_n_steps}")
    if t.keep_checkpoints < 1:
        raise ConfigError(f"trainer.keep_checkpoints must be >= 1, got {t.keep_checkpoints}")
    if t.resume not in (None, "auto", "last") and not Path(t.resume).is_file():
        raise ConfigError(f"trainer.resume={t.resume!r} is neither 'auto', 'last' nor an existing checkpoint file")
    for key in ("max_epochs", "batch_size", "eval_batch_size"):
        if t[key] < 1:
            raise ConfigError(f"trainer.{key} must be >= 1, got {t[key]}")
    if t.get("augment") is not None:
        from graphmm.data.augment import Augmentations

        try:
            Augmentations.from_config(OmegaConf.to_container(t.augment, resolve=True))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"trainer.{str(err).strip(chr(34) + chr(39))}") from None


def _check_required_data_keys(data: DictConfig) -> None:
    """A required ``data`` key left at ``???`` (``data=textcls`` without ``data.name``,
    ``data=manifest`` without ``data.path``): one line naming the key, with the corpora
    found under ``data.root`` when the loader reads named corpora, instead of the
    ``MissingMandatoryValue`` traceback that instantiating the loader gives."""
    missing = [k for k in data.keys() if OmegaConf.is_missing(data, k)]
    if not missing:
        return
    key = missing[0]
    target = str(data.get("_target_", ""))
    hint = ""
    if key == "name" and target.endswith("load_textcls") and not OmegaConf.is_missing(data, "root"):
        from graphmm.data.textcls import list_corpora

        found = list_corpora(data.root)
        hint = (
            f"; corpora found under data.root={data.root!r}: {found}" if found
            else f"; data.root={data.root!r} holds no corpus (<name>.txt with corpus/<name>.txt)"
        )
        if found:
            hint += f", e.g. data.name={found[0]}"
    elif key == "path" and target.endswith("load_manifest"):
        hint = ", e.g. data.path=my_data/manifest.csv (a CSV with a label column and image/audio/text columns)"
    raise ConfigError(
        f"data.{key} is required by this dataset (data._target_={target}) and has no value: add "
        f"data.{key}=...{hint}"
    )


def _check_known_keys(node: Any, path: str) -> None:
    """Keys that a typed node's schema lacks. Composition already refuses them, except
    keys added on purpose with Hydra's ``+key=value``, which are caught here."""
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        extra = sorted(k for k in node.keys() if k not in known and k != "hydra")
        if extra:
            where = path.rstrip(".") or "the root config"
            raise ConfigError(
                f"unknown key(s) {[path + k for k in extra]} in {where}; known keys: {sorted(known)}"
            )
    for k in node.keys():
        if k == "hydra":
            continue
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _check_known_keys(child, f"{path}{k}.")


def check_writable(path: str | os.PathLike[str], key: str = "output_dir") -> Path:
    """Create ``path`` if needed and prove it is writable; :class:`ConfigError` otherwise."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{key}={str(p)!r} is not a writable folder: {err.strerror or err}") from err
    return p


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain-dict copy of a config (for checkpoints and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
