"""Each default is written once, and every other place that shows it agrees.

* The typed schemas (``graphmm/config.py``, ``graphmm/data/schemas.py``) hold the
  defaults of the ``trainer``, ``model`` and ``data`` YAML files; the model schemas read
  theirs from the library's signatures (:func:`graphmm.config.library_default`).
* A YAML preset sets only the keys in which it deliberately differs from what it
  extends (its schema, or the preset above it); those keys are listed in
  :data:`PRESET_OVERRIDES`, so changing a default in a YAML file alone fails here.
* The ``# key: value`` comment lines that list the defaults in ``graphmm/conf/`` must equal the
  composed values, so changing a default in the schema alone fails here too.
* Every library constructor that shares a parameter with a schema has the same default
  (:data:`LIBRARY`), and so does its docstring's ``Default:``, where it names one.

The graph schemas (``graph.text``, ``graph.image``, ... in the modality plug-ins,
``graph.cross`` in ``graphmm/config.py``) read their defaults from the builders'
signatures; ``graphmm/conf/graph/default.yaml`` sets only the default recipe's own choices
(:data:`GRAPH_RECIPE`).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import OmegaConf

import graphmm
from graphmm.config import (
    CONF_DIR,
    AudioGraphConf,
    CrossModalConf,
    GenerationModelConf,
    ImageGraphConf,
    ModelConf,
    OptimizerConf,
    TextGraphConf,
    TrainerConf,
)

#: The config groups whose presets are checked.
GROUPS = ("trainer", "model", "data", "graph")

#: Keys a preset sets, each differing on purpose from what the preset extends (its
#: ``*_schema``, or the preset it names first in its defaults list). Anything else a
#: preset sets is a repeated or a second default: remove it, or add it here with why.
PRESET_OVERRIDES: dict[tuple[str, str], set[str]] = {
    ("trainer", "default"): set(),
    ("model", "hetero_gnn"): set(),
    ("model", "graph_seq2seq"): set(),
    # the no-graph baselines: hetero_gnn's / graph_seq2seq's keys, another module
    ("model", "transformer"): {"_target_"},
    ("model", "transformer_seq2seq"): {"_target_"},
    ("model", "late_fusion"): {"_target_"},
    ("data", "digits"): set(),
    ("data", "digits_seq"): set(),
    ("data", "moving_digits"): set(),
    # paths: the schemas leave them MISSING, the presets point them at $GRAPHMM_DATA
    ("data", "avdigits_seq"): {"root"},
    # MNIST's file holds 60,000 images: 10,000 of them held out as test, as MNIST's own split
    ("data", "image_arrays"): {"train_path", "test_size"},
    ("data", "textcls"): {"root"},
    # and the loaders resample the audio to the rate the audio graph uses
    ("data", "audio_folder"): {"root", "sample_rate"},
    ("data", "avdigits"): {"image_path", "audio_root", "sample_rate"},
    ("data", "manifest"): {"sample_rate"},
    ("data", "image_folder"): set(),
    # the recipe of `make train` (leaf keys: GRAPH_RECIPE)
    ("graph", "default"): {"text", "image", "audio", "cross"},
}

#: The default graph recipe's choices, each differing from its builder's default.
GRAPH_RECIPE: set[str] = {
    "image.stride",     # overlapping patches: an 8x8 digit gives a 3x3 grid, not 2x2
    "image.neighbors",  # 8-neighbour grid
    "audio.window",     # each frame links to the next 2
    "cross.summary",    # summary nodes on
}

#: (schema, library callable, {library parameter: schema field} where the names differ).
#: Every parameter of the callable that has a default and a schema field of that name
#: (after renaming) must have the schema's default.
LIBRARY: list[tuple[type, str, dict[str, str]]] = [
    (ModelConf, "graphmm.nn.GraphClassifier", {}),
    (ModelConf, "graphmm.nn.HeteroGNN", {}),
    (ModelConf, "graphmm.nn.TypeReadout", {}),
    (ModelConf, "graphmm.nn.GATLayer", {}),
    (ModelConf, "graphmm.nn.SequenceClassifier", {}),
    (ModelConf, "graphmm.nn.LateFusionClassifier", {}),
    (ModelConf, "graphmm.nn.WidePath", {"buckets": "wide_buckets"}),
    (GenerationModelConf, "graphmm.nn.GraphSeq2Seq", {}),
    (GenerationModelConf, "graphmm.nn.SequenceSeq2Seq", {}),
    (GenerationModelConf, "graphmm.nn.GenerationHead",
     {"num_layers": "decoder_layers", "nhead": "decoder_heads", "dim_feedforward": "decoder_ff"}),
    (GenerationModelConf, "graphmm.nn.GenerationHead.beam_search", {}),
    (GenerationModelConf, "graphmm.data.targets.TargetVocab", {"level": "target_level", "min_freq": "target_min_freq"}),
    (OptimizerConf, "torch.optim.AdamW", {}),  # only _target_: lr, weight_decay are the project's own choice
    (TextGraphConf, "graphmm.graphs.TextGraphBuilder", {}),
    (ImageGraphConf, "graphmm.graphs.ImageGraphBuilder", {}),
    (AudioGraphConf, "graphmm.graphs.AudioGraphBuilder", {}),
    (CrossModalConf, "graphmm.graphs.CrossModalBuilder", {}),
]

#: (library callable, parameter): same name as a schema field, another meaning.
LIBRARY_EXEMPT: dict[tuple[str, str], str] = {
    # the position capacity, sized from the longest training target at run time;
    # model.max_len is the decoding limit (graphmm.tasks), not passed to the module
    ("graphmm.nn.GraphSeq2Seq", "max_len"): "run-time size",
    ("graphmm.nn.SequenceSeq2Seq", "max_len"): "run-time size",
    ("graphmm.nn.GenerationHead", "max_len"): "run-time size",
    ("graphmm.nn.GenerationHead.beam_search", "max_len"): "run-time size",
    # torch's AdamW defaults are not the project's
    ("torch.optim.AdamW", "lr"): "torch's default, the project picks its own",
    ("torch.optim.AdamW", "weight_decay"): "torch's default, the project picks its own",
    # the conv's own output activation; model.activation is HeteroGNN's, after aggregation
    ("graphmm.nn.GATLayer", "activation"): "another activation",
    # load_manifest(on_file_error=None) means "as on_error", which the schema writes out
    ("graphmm.data.manifest.load_manifest", "on_file_error"): "None is ${.on_error}",
}


# ---------------------------------------------------------------- helpers
def _presets() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]


def _body(group: str, option: str) -> dict[str, Any]:
    """A preset's own keys (no ``defaults``), values as written."""
    raw = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml"), resolve=False)
    assert isinstance(raw, dict)
    return {k: v for k, v in raw.items() if k != "defaults"}


def _parent(group: str, option: str) -> str:
    """The first entry of a preset's defaults list: a ``*_schema`` or another preset."""
    raw = OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml")
    first = raw.get("defaults", [None])[0]
    assert isinstance(first, str), f"graphmm/conf/{group}/{option}.yaml: its defaults list must start with its schema"
    return first


def _extends(group: str, option: str) -> dict[str, Any]:
    """The values a preset starts from: its schema's, merged with the presets above it."""
    parent = _parent(group, option)
    if parent.endswith("_schema"):
        node = ConfigStore.instance().load(config_path=f"{group}/{parent}.yaml").node
        return OmegaConf.to_container(OmegaConf.create(node), resolve=False)  # type: ignore[return-value]
    return _merge(_extends(group, parent), _body(group, parent))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: ``# key: value`` (one space after ``#``, a lowercase key, dots for nested keys): a
#: default listed as a comment. Prose and continuation lines never start that way.
_COMMENTED = re.compile(r"^# ([a-z_][a-zA-Z0-9_.]*):(?:\s|$)(.*)$")


def _commented_defaults(group: str, option: str) -> dict[str, Any]:
    out = {}
    for line in (Path(CONF_DIR) / group / f"{option}.yaml").read_text().splitlines():
        m = _COMMENTED.match(line)
        if m:
            # parsed by OmegaConf's own YAML loader, so 3.0e-3 is a float as in a value
            out[m.group(1)] = OmegaConf.to_container(OmegaConf.create(f"v: {m.group(2)}"), resolve=False)["v"]
    return out


def _composed(group: str, option: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # without what one model changes on one dataset (data_model/): the presets' own values
        cfg = compose(config_name="config", overrides=[f"{group}={option}", "~data_model"])
    return OmegaConf.to_container(cfg[group], resolve=False)  # type: ignore[return-value]


def _schema_defaults(schema: type) -> dict[str, Any]:
    """Field defaults, interpolations within the node resolved (``${.on_error}``)."""
    node = OmegaConf.structured(schema)
    raw = OmegaConf.to_container(node, resolve=False)
    out = {}
    for f in dataclasses.fields(schema):
        try:
            out[f.name] = OmegaConf.to_container(node, resolve=True)[f.name]
        except Exception:  # an absolute interpolation (${trainer.max_epochs}) stays as written
            out[f.name] = raw[f.name]
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal defaults; ``None`` and an empty container both mean "none", a tuple is a list."""
    norm = lambda v: None if v in ({}, [], ()) else list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(a) == norm(b)


def _signature_defaults(target: str) -> dict[str, Any]:
    return {
        n: p.default for n, p in inspect.signature(get_object(target)).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _docstring_defaults(obj: Any) -> dict[str, Any]:
    """``name: ... Default: ``value``.`` of each argument of a Google-style ``Args:``
    section whose default is a Python literal (``pad_id, bos_id, eos_id: ... Default:
    ``0, 1, 2``.`` gives one value per name)."""
    doc = inspect.getdoc(obj) or ""
    m = re.search(r"^Args:\n((?:    .*\n|\n)*)", doc + "\n", re.M)
    if not m:
        return {}
    entries = re.split(r"^    (?=[\w*][\w, *]*(?: \([^)]*\))?:)", m.group(1), flags=re.M)
    out: dict[str, Any] = {}
    for entry in entries:
        head = re.match(r"([\w, *]+?)(?: \([^)]*\))?:\s", entry)
        found = re.search(r"Default:\s*``(.+?)``", entry, re.S)
        if not head or not found:
            continue
        try:
            value = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            continue  # prose ("Default: ``DigitsConfig()``") is not checked
        names = [n.strip() for n in head.group(1).split(",")]
        values = list(value) if len(names) > 1 and isinstance(value, tuple) else [value]
        out.update(zip(names, values) if len(names) == len(values) else [])
    return out


# ---------------------------------------------------------------- YAML presets
def test_every_preset_is_listed():
    assert sorted(PRESET_OVERRIDES) == sorted(_presets()), "add new presets to PRESET_OVERRIDES"


@pytest.mark.parametrize("group,option", _presets(), ids=lambda x: x)
def test_a_preset_sets_only_its_listed_overrides(group, option):
    """A YAML that repeats a default (a second place to change it) or sets a value
    that PRESET_OVERRIDES does not list (a second, disagreeing default) fails."""
    base = _leaves(_extends(group, option))
    body = _leaves(_body(group, option))
    repeated = sorted(k for k, v in body.items() if k in base and base[k] == v)
    assert not repeated, (
        f"graphmm/conf/{group}/{option}.yaml repeats the default of {repeated}; keep it once, in the schema "
        f"(list it as a '# key: value' comment)"
    )
    top = {k.split(".")[0] for k in body}
    assert top == PRESET_OVERRIDES[(group, option)], (
        f"graphmm/conf/{group}/{option}.yaml sets {sorted(top)}, PRESET_OVERRIDES lists "
        f"{sorted(PRESET_OVERRIDES[(group, option)])}: change the default where it lives (the schema or the "
        f"library signature), or list a deliberate preset choice"
    )


@pytest.mark.parametrize("group,option", _presets(), ids=lambda x: x)
def test_commented_defaults_match_the_composed_config(group, option):
    commented = _commented_defaults(group, option)
    composed = _leaves(_composed(group, option))
    wrong = {k: (v, composed.get(k, "<no such key>")) for k, v in commented.items()
             if k not in composed or not _same(composed[k], v)}
    assert not wrong, f"graphmm/conf/{group}/{option}.yaml: commented default (written, actual): {wrong}"


def test_the_graph_recipe_sets_only_its_choices():
    body = {k for k, v in _leaves(_body("graph", "default")).items() if v != {}}
    assert body == GRAPH_RECIPE, f"graphmm/conf/graph/default.yaml sets {sorted(body)}; GRAPH_RECIPE lists {sorted(GRAPH_RECIPE)}"


def test_trainer_and_model_presets_list_every_key():
    """Users read graphmm/conf/ to learn the options: every schema key is set or listed."""
    for group, option, schema in (("trainer", "default", TrainerConf), ("model", "hetero_gnn", ModelConf),
                                  ("model", "graph_seq2seq", GenerationModelConf)):
        shown = {k.split(".")[0] for k in _commented_defaults(group, option)} | set(_body(group, option))
        hidden = {f.name for f in dataclasses.fields(schema)} - shown - {"_target_", "_partial_", "task"}
        if schema is GenerationModelConf:
            hidden -= {"activation", "conv_kwargs", "encoders"}  # as hetero_gnn's, listed there
        assert not hidden, f"graphmm/conf/{group}/{option}.yaml lists neither value nor comment for {sorted(hidden)}"


def test_the_comment_parser_reads_the_listed_defaults():
    """The comment check above is not vacuous: it reads the lines it should."""
    commented = _commented_defaults("trainer", "default")
    assert commented["patience"] == "${trainer.max_epochs}" and commented["optimizer.weight_decay"] == 0.1
    assert len(commented) >= 20


# ---------------------------------------------------------------- library vs schema
@pytest.mark.parametrize("schema,target,rename", LIBRARY, ids=lambda x: getattr(x, "__name__", x))
def test_library_defaults_equal_the_schema(schema, target, rename):
    fields = _schema_defaults(schema)
    shared = {p: rename.get(p, p) for p in _signature_defaults(target) if rename.get(p, p) in fields}
    shared = {p: f for p, f in shared.items() if (target, p) not in LIBRARY_EXEMPT}
    if target != "torch.optim.AdamW":
        assert shared, f"{target} shares no defaulted parameter with {schema.__name__}: wrong table entry"
    sig = _signature_defaults(target)
    wrong = {p: (sig[p], fields[f]) for p, f in shared.items() if not _same(sig[p], fields[f])}
    assert not wrong, f"{target} vs {schema.__name__} (library, schema): {wrong}"


def _data_schemas() -> list[tuple[str, type]]:
    repo = ConfigStore.instance().repo["data"]
    out = []
    for name, entry in sorted(repo.items()):
        node = entry.node
        cls = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(cls):
            out.append((name.removesuffix(".yaml"), cls))
    return out


@pytest.mark.parametrize("name,schema", _data_schemas(), ids=lambda x: x if isinstance(x, str) else "")
def test_data_loader_defaults_equal_the_schema(name, schema):
    """Each data schema's ``_target_`` loader has the schema's defaults."""
    fields = _schema_defaults(schema)
    target = fields["_target_"]
    sig = _signature_defaults(target)
    wrong = {p: (v, fields[p]) for p, v in sig.items()
             if p in fields and (target, p) not in LIBRARY_EXEMPT and not _same(v, fields[p])}
    assert not wrong, f"{target} vs {schema.__name__} (loader, schema): {wrong}"


@pytest.mark.parametrize("target", sorted({t for _, t, _ in LIBRARY if t.startswith("graphmm.")}))
def test_docstring_defaults_equal_the_signature(target):
    obj = get_object(target)
    documented = _docstring_defaults(obj)
    sig = _signature_defaults(target)
    wrong = {n: (v, sig.get(n, "<no default>")) for n, v in documented.items()
             if n in sig and not _same(sig[n], v)}
    assert not wrong, f"{target}: docstring default vs signature: {wrong}"


def test_the_library_classifier_is_the_cli_model(make_cfg):
    """``GraphClassifier(...)`` with no options is what ``python -m graphmm.train`` builds,
    plus the one option its data_model file sets on ``digits`` (``wide="auto"``)."""
    from graphmm.graphs import MultimodalGraphBuilder
    from graphmm.nn import GraphClassifier
    from graphmm.train import build_model

    builder = MultimodalGraphBuilder()
    cli = build_model(make_cfg(data_model=True).model, builder, num_classes=10)
    lib = GraphClassifier(builder.in_dims, builder.canonical_etypes, 10, wide="auto")
    assert repr(cli) == repr(lib)
    assert (cli.gnn.num_layers, cli.readout.fusion) == (3, "concat")
    other = build_model(make_cfg(["data=avdigits"], data_model=True).model, builder, num_classes=10)
    assert repr(other) == repr(GraphClassifier(builder.in_dims, builder.canonical_etypes, 10))


# ---------------------------------------------------------------- version
def test_version_is_written_once():
    pyproject = tomllib.loads((Path(CONF_DIR).parents[1] / "pyproject.toml").read_text())
    assert graphmm.__version__ == pyproject["project"]["version"] == importlib.metadata.version("graphmm")
    assert "__version__ = \"" not in (Path(graphmm.__file__)).read_text()
