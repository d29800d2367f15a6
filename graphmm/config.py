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
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from graphmm.clip.spec import FeaturizerConf
from graphmm.data.io import MAX_IMAGE_PIXELS
from graphmm.data.digits import DigitsConfig
from graphmm.data.sequences import DigitSeqConfig


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


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


#: Default of ``graph.text.max_tokens``: words kept per document. Far above every
#: shipped corpus (WebKB, the longest, is cut to 400 by its experiment), it bounds the
#: word nodes one pasted book or log file can add to a batch; truncations are counted.
TEXT_MAX_TOKENS: int = 2048


# ---------------------------------------------------------------- graph
@dataclass
class TextGraphConf:
    _target_: str = "graphmm.graphs.TextGraphBuilder"
    window: int = 3
    next: bool = True
    min_freq: int = 1
    max_tokens: Optional[int] = TEXT_MAX_TOKENS
    hash_buckets: int = 4096


@dataclass
class ImageGraphConf:
    _target_: str = "graphmm.graphs.ImageGraphBuilder"
    patch_size: int = 4
    stride: Optional[int] = None
    neighbors: int = 4
    directional: bool = False
    knn: int = 0
    knn_radius: Optional[int] = None
    channels: Optional[int] = None


@dataclass
class AudioGraphConf:
    _target_: str = "graphmm.graphs.AudioGraphBuilder"
    sample_rate: int = 8000
    n_mels: int = 40
    n_fft: int = 256
    win_length: Optional[int] = None
    hop_length: int = 128
    window: int = 1
    normalize: str = "global"


@dataclass
class CrossModalConf:
    _target_: str = "graphmm.graphs.CrossModalBuilder"
    bipartite: List[List[str]] = field(default_factory=list)
    summary: bool = True
    align: List[List[str]] = field(default_factory=list)


@dataclass
class GraphConf:
    """A graph recipe: one builder per modality (``null`` ignores that modality)."""

    _target_: str = "graphmm.graphs.MultimodalGraphBuilder"
    text: Optional[TextGraphConf] = field(default_factory=TextGraphConf)
    image: Optional[ImageGraphConf] = field(default_factory=ImageGraphConf)
    audio: Optional[AudioGraphConf] = field(default_factory=AudioGraphConf)
    cross: Optional[CrossModalConf] = field(default_factory=CrossModalConf)


# ---------------------------------------------------------------- model
@dataclass
class GNNConf:
    """What every graph model shares: node encoders and the heterogeneous GNN."""

    hidden: int = 64
    num_layers: int = 3
    conv: str = "gat"
    heads: int = 4
    conv_kwargs: Dict[str, Any] = field(default_factory=dict)
    aggregate: str = "sum"
    dropout: float = 0.1
    activation: str = "relu"
    # per node type: where input features come from (learned, or an open_clip tower)
    encoders: Dict[str, FeaturizerConf] = field(default_factory=dict)


@dataclass
class ModelConf(GNNConf):
    """:class:`graphmm.nn.GraphClassifier`; sizes of the data are filled in at run time."""

    _target_: str = "graphmm.nn.GraphClassifier"
    task: str = "classification"
    pool: str = "mean"
    fusion: str = "attention"
    head_hidden: Optional[int] = None
    readout_ntypes: Optional[List[str]] = None


@dataclass
class GenerationModelConf(GNNConf):
    """A text generator (:class:`graphmm.nn.GraphSeq2Seq`, or the no-graph
    :class:`graphmm.nn.SequenceSeq2Seq`), its target vocabulary and its decoding.

    ``target_level``/``target_min_freq`` configure :class:`graphmm.data.TargetVocab`;
    ``beam_width``, ``length_penalty`` and ``max_len`` (``null``: longest training
    target + 5) the final decoding (validation during training decodes greedily).
    """

    _target_: str = "graphmm.nn.GraphSeq2Seq"
    task: str = "generation"
    memory_ntypes: Optional[List[str]] = None
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_ff: Optional[int] = None
    target_level: str = "word"
    target_min_freq: int = 1
    beam_width: int = 4
    length_penalty: float = 0.0
    max_len: Optional[int] = None


# ---------------------------------------------------------------- trainer
@dataclass
class OptimizerConf:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 3e-3
    weight_decay: float = 1e-2


@dataclass
class TrainerConf:
    max_epochs: int = 40
    batch_size: int = 64
    eval_batch_size: int = 256
    patience: int = 8
    monitor: str = "val/acc"
    device: str = "cpu"
    strategy: str = "single"
    num_workers: int = 0
    cache_dir: Optional[str] = None
    grad_clip: Optional[float] = 1.0
    modality_dropout: float = 0.0
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
    scheduler: Optional[Any] = None


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
    cs.store(group="model", name="model_schema", node=ModelConf)
    cs.store(group="model", name="generation_schema", node=GenerationModelConf)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConf)
    from graphmm.data import schemas as data_schemas

    data_schemas.register(cs)
    from graphmm.clip import schemas as clip_schemas

    clip_schemas.register(cs)


register_configs()


def app_config_groups() -> str:
    """The config groups and their options for ``--help``, one ``group: a, b`` line per
    group as Hydra's ``$APP_CONFIG_GROUPS`` writes them, without the ``*_schema``
    entries: those are the typed schemas under the YAML files, not options to pick.

    ``conf/config.yaml``'s ``hydra.help.template`` calls it as the
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
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

_MONITORS = {
    "classification": {"val/acc", "val/loss", "val/f1"},
    "generation": {"val/loss", "val/wer", "val/cer", "val/bleu", "val/exact"},
}
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
    from graphmm.loggers import LOGGERS
    from graphmm.nn import list_convs  # deferred: importing torch/dgl is slow

    _check_known_keys(cfg, "")
    _check_required_data_keys(cfg.data)
    m = cfg.model
    task = m.get("task", "classification")
    if task not in _MONITORS:
        raise ConfigError(f"model.task={task!r} is not one of {sorted(_MONITORS)}")
    if task == "generation":
        _check_generation(cfg)
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

    g = cfg.graph
    for ntype, spec in (m.get("encoders") or {}).items():
        if spec is None or spec.type == "learned":
            continue
        if spec.type != "open_clip":
            raise ConfigError(f"model.encoders.{ntype}.type={spec.type!r} is not one of ['learned', 'open_clip']")
        key = {"patch": "image", "word": "text"}.get(ntype)
        if key is None:
            raise ConfigError(f"model.encoders.{ntype}: open_clip encodes only patch and word nodes")
        if g[key] is None or "name" not in g[key]:
            raise ConfigError(
                f"model.encoders.{ntype}.type=open_clip needs CLIP {ntype} nodes: use graph.{key} with the "
                f"clip_schema (see conf/experiment/digits_clip.yaml)"
            )
        if bool(g[key].frozen) != bool(spec.frozen):
            raise ConfigError(f"model.encoders.{ntype}.frozen={spec.frozen} differs from graph.{key}.frozen={g[key].frozen}")
    enabled = {nt for nt, key in (("word", "text"), ("patch", "image"), ("frame", "audio")) if g[key] is not None}
    if not enabled:
        raise ConfigError("graph: every modality builder is null; enable at least one of graph.text/image/audio")
    alias = {"text": "word", "image": "patch", "audio": "frame"}
    if g.cross is not None:
        for kind in ("bipartite", "align"):
            for pair in g.cross[kind]:
                for name in pair:
                    nt = alias.get(name, name)
                    if nt not in enabled:
                        raise ConfigError(
                            f"graph.cross.{kind} names node type {name!r}, which no enabled modality produces "
                            f"(enabled: {sorted(enabled)})"
                        )

    t = cfg.trainer
    if t.monitor not in _MONITORS[task]:
        raise ConfigError(
            f"trainer.monitor={t.monitor!r} is not a metric of model.task={task}; use one of {sorted(_MONITORS[task])}"
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
    if not 0.0 <= t.modality_dropout < 1.0:
        raise ConfigError(f"trainer.modality_dropout must be in [0, 1), got {t.modality_dropout}")
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay must be in (0, 1) or null, got {t.ema_decay}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ConfigError(f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    if cfg.data.get("on_error", "raise") not in ("raise", "skip"):
        raise ConfigError(f"data.on_error={cfg.data.on_error!r} is not one of ['raise', 'skip']")
    if t.checkpoint_every_n_steps is not None and t.checkpoint_every_n_steps < 1:
        raise ConfigError(f"trainer.checkpoint_every_n_steps must be >= 1 or null, got {t.checkpoint_every_n_steps}")
    if t.keep_checkpoints < 1:
        raise ConfigError(f"trainer.keep_checkpoints must be >= 1, got {t.keep_checkpoints}")
    if t.resume not in (None, "auto", "last") and not Path(t.resume).is_file():
        raise ConfigError(f"trainer.resume={t.resume!r} is neither 'auto', 'last' nor an existing checkpoint file")
    for key in ("max_epochs", "batch_size", "eval_batch_size"):
        if t[key] < 1:
            raise ConfigError(f"trainer.{key} must be >= 1, got {t[key]}")


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


def _check_generation(cfg: DictConfig) -> None:
    from hydra.utils import get_method

    m = cfg.model
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
