"""Config composition, schema validation and the semantic checks that run before work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import ValidationError

from graphmm.config import CONF_DIR, ConfigError, check_writable, validate_config
from graphmm.data import Sample
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.train import build_model, load_splits


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_default_config_composes_and_validates(make_cfg):
    cfg = make_cfg()
    validate_config(cfg)
    assert cfg.model.conv == "gat" and cfg.data._target_ == "graphmm.data.load_digits"
    assert cfg.trainer.optimizer._partial_ is True


@pytest.mark.parametrize("overrides, wide", [
    ([], "auto"),  # `make train`: the graph model on digits takes its data_model file
    (["experiment=digits_image_only"], "auto"),  # the ablations of the same pair too
    (["model.wide=null"], None),  # the command line still wins
    (["experiment=avdigits"], None),  # other data: no such file, the schema's default
    (["experiment=mr"], "ngrams"),  # the preset's own choice
])
def test_data_model_settings_follow_the_pair_of_choices(make_cfg, overrides, wide):
    """``data_model/<data>_<model>.yaml`` applies to that pair alone."""
    cfg = make_cfg(overrides, data_model=True)
    validate_config(cfg)
    assert cfg.model.wide == wide
    if wide == "auto":  # no file for digits_transformer: nothing added
        other = make_cfg([*overrides, "model=transformer"], data_model=True)
        assert "wide" not in other.model or other.model.wide is None


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_validates(make_cfg, experiment):
    validate_config(make_cfg([f"experiment={experiment}"]))


@pytest.mark.parametrize("option", ["hparams_search=conv_grid", "debug=fast"])
def test_other_groups_compose(make_cfg, option):
    validate_config(make_cfg([option]))


@pytest.mark.parametrize("conv", ["sum", "gcn", "gat", "sage"])
def test_every_conv_instantiates_with_the_default_graph(make_cfg, conv):
    cfg = make_cfg([f"model.conv={conv}"])
    builder: MultimodalGraphBuilder = instantiate(cfg.graph)
    sample = Sample(text="a seven", image=torch.rand(1, 8, 8), audio=torch.randn(2000) * 0.1, sample_rate=8000)
    builder.fit([sample])
    model = build_model(cfg.model, builder, num_classes=10)
    out = model(builder.batch([sample, sample.replace(audio=None)]))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    opt = instantiate(cfg.trainer.optimizer)(params=model.parameters())
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == cfg.trainer.optimizer.lr


def test_data_config_instantiates_the_dataset(make_cfg):
    splits, on_error = load_splits(make_cfg(["data.modalities=[image]"]).data)
    assert on_error == "raise"
    assert set(splits) == {"train", "val", "test"}
    assert all(s.modalities == ("image",) for s in splits["train"][:20])


@pytest.mark.parametrize(
    "override, key",
    [
        ("+model.nonsense=1", "nonsense"),
        ("+graph.image.bogus=2", "bogus"),
        ("+trainer.epochz=3", "epochz"),
    ],
)
def test_unknown_key_added_with_plus_fails_naming_it(make_cfg, override, key):
    with pytest.raises(ConfigError, match=f"unknown key.*{key}"):
        validate_config(make_cfg([override]))


def test_unknown_key_fails_at_composition(make_cfg):
    with pytest.raises(ConfigCompositionException, match="hiddn"):
        make_cfg(["model.hiddn=3"])


def test_unknown_key_in_a_yaml_file_fails(tmp_path):
    from hydra import compose, initialize_config_dir

    exp = tmp_path / "conf" / "experiment"
    exp.mkdir(parents=True)
    (exp / "typo.yaml").write_text("# @package _global_\nmodel:\n  hiddn: 3\n")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as err:
            compose("config", overrides=[f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=typo"])
    assert "hiddn" in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.hidden=wide", "hidden"),
        ("trainer.max_epochs=1.5", "max_epochs"),
        ("graph.image.patch_size=big", "patch_size"),
        ("data.text_informative=lots", "text_informative"),
    ],
)
def test_wrong_type_fails_naming_the_key(make_cfg, override, key):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        make_cfg([override])
    assert key in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.conv=gat", "model.hidden=30", "model.heads=4"], "model.heads=4 must divide model.hidden=30"),
        (["model.conv=transformer"], "model.conv='transformer'"),
        (["model.pool=median"], "model.pool"),
        (["model.fusion=sum"], "model.fusion"),
        (["graph.audio=null", "graph.cross.bipartite=[[word,frame]]"], "graph.cross.bipartite names node type 'frame'"),
        (["graph.text=null", "graph.image=null", "graph.audio=null"], "enable at least one"),
        (["trainer.monitor=val/auc"], "trainer.monitor"),
        (["trainer.device=tpu"], "trainer.device"),
        (["trainer.cache_memory_mb=-1"], "trainer.cache_memory_mb must be >= 0"),
        (["model.modality_heads=-0.5"], "model.modality_heads must be >= 0"),
        (["model=late_fusion", "model.modality_heads=0.5"], "needs the graph classifier"),
    ],
)
def test_impossible_combinations_fail_naming_the_key(make_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(make_cfg(overrides))


def test_gat_heads_only_matter_for_gat(make_cfg):
    validate_config(make_cfg(["model.conv=gcn", "model.hidden=30", "model.heads=4"]))


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="output_dir=.*not a writable folder"):
        check_writable(blocker / "run")


def test_a_missing_required_data_key_names_it_and_lists_the_corpora(make_cfg, tmp_path):
    root = tmp_path / "text"
    (root / "corpus").mkdir(parents=True)
    for name in ("demo", "other"):
        (root / f"{name}.txt").write_text("0\ttrain\tpos\n")
        (root / "corpus" / f"{name}.txt").write_text("good film\n")
    (root / "stray.txt").write_text("no corpus file beside it\n")
    with pytest.raises(ConfigError, match=r"data.name is required .*corpora found under data.root=.*\['demo', 'other'\]"):
        validate_config(make_cfg(["data=textcls", f"data.root={root}"]))
    with pytest.raises(ConfigError, match=r"data.name is required .*holds no corpus"):
        validate_config(make_cfg(["data=textcls", f"data.root={tmp_path / 'nowhere'}"]))
    with pytest.raises(ConfigError, match=r"data.path is required .*data.path=my_data/manifest.csv"):
        validate_config(make_cfg(["data=manifest"]))
    validate_config(make_cfg(["data=textcls", f"data.root={root}", "data.name=demo"]))
