"""The modality plug-in interface: a new modality is one registered module, and the core
(builder, encoders, dropout, missing-modality test) loops over what is registered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import Tensor, nn

from graphmm.data import ModalityDropout, Sample
from graphmm.graphs import MultimodalGraphBuilder, summary_ids
from graphmm.graphtypes import NodeBlock
from graphmm.modalities import get_modality, list_modalities, modality_of_ntype, register_modality
from graphmm.modalities.base import unregister_modality
from graphmm.nn import GraphClassifier, NodeEncoders
from graphmm.train import without_each_modality


class ReadingEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()

    def forward(self, data: Mapping[str, Tensor]) -> Tensor:
        return self.proj(data["value"])


class SensorBuilder:
    """A toy modality: a 1-D series of readings, one node each, a chain in time."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.fitted_mean: float | None = None

    @property
    def relations(self):
        return [("reading", "after", "reading")]

    @property
    def in_dim(self) -> int:
        return 1

    def check(self, value, sample, where: str) -> Tensor:
        if not isinstance(value, Tensor) or value.dim() != 1:
            raise ValueError(f"{where}: sensor readings must be a 1-D tensor")
        return value.float()

    def fit(self, values: Sequence[Tensor]) -> None:
        self.fitted_mean = float(torch.cat(list(values)).mean()) if values else None

    def build(self, values: Sequence[Tensor]) -> NodeBlock:
        counts = torch.tensor([len(v) for v in values], dtype=torch.int64)
        flat = torch.cat(list(values)) if values else torch.zeros(0)
        idx = torch.arange(len(flat))
        last = torch.cumsum(counts, 0) - 1
        keep = ~torch.isin(idx, last)
        src = idx[keep]
        return NodeBlock("reading", counts, {"value": (flat * self.scale)[:, None]},
                         {("reading", "after", "reading"): (src, src + 1)})

    def state_dict(self):
        return {"mean": self.fitted_mean}

    def load_state_dict(self, state) -> None:
        self.fitted_mean = state["mean"]


@pytest.fixture
def sensor():
    register_modality("sensor", ntype="reading", summary_id=77, encoder=ReadingEncoder)(SensorBuilder)
    yield
    unregister_modality("sensor")


def test_builtin_modalities_are_registered_with_stable_summary_ids():
    names = list_modalities()
    assert names[:3] == ["text", "image", "audio"]
    assert [get_modality(m).summary_id for m in names[:3]] == [0, 1, 2]
    assert modality_of_ntype("frame").name == "audio" and modality_of_ntype("summary") is None
    with pytest.raises(KeyError, match="unknown modality 'smell'.*registered"):
        get_modality("smell")


def test_a_registered_modality_goes_through_the_whole_core(sensor):
    samples = [Sample(sensor=torch.randn(5), text="a reading", label=1), Sample(sensor=torch.randn(3), label=0),
               Sample(text="no sensor", label=0)]
    assert samples[0].modalities == ("text", "sensor") and samples[0].sensor.shape == (5,)
    assert samples[2].sensor is None
    builder = MultimodalGraphBuilder(image=False, audio=False, sensor=SensorBuilder(scale=2.0))
    builder.fit(samples)
    g = builder.batch(samples)
    assert g.batch_num_nodes("reading").tolist() == [5, 3, 0]
    assert g.num_edges(("reading", "after", "reading")) == 4 + 2
    # summary nodes carry the plug-in's own id
    assert summary_ids()["reading"] == 77 and 77 in g.nodes["summary"].data["modality"].tolist()
    assert builder.in_dims["summary"] == 78
    assert builder.state_dict()["modalities"] == {"sensor": {"mean": builder.sensor.fitted_mean}}
    model = GraphClassifier(builder.in_dims, builder.canonical_etypes, num_classes=2, hidden=8, conv="sum")
    assert isinstance(model.encoders.types["reading"], ReadingEncoder)
    model(g).sum().backward()
    assert model.encoders.types["reading"].proj.weight.grad.abs().sum() > 0
    # dropped by modality dropout and by the missing-modality test like any other
    drops = [ModalityDropout(0.9)(samples[0], torch.Generator().manual_seed(i)).modalities for i in range(30)]
    assert ("sensor",) in drops and ("text",) in drops
    pairs = without_each_modality(samples, ["text", "sensor"])
    assert [s.modalities for s in pairs["sensor"][1]] == [("text",)]


def test_sample_and_builder_name_the_registered_modalities_on_a_typo():
    with pytest.raises(TypeError, match=r"unknown modality \['vidoe'\].*registered modalities"):
        Sample(vidoe=torch.zeros(2))
    with pytest.raises(TypeError, match=r"unknown modality \['vidoe'\]"):
        MultimodalGraphBuilder(vidoe=True)


def test_without_drops_companion_fields():
    s = Sample(text="hi", audio=torch.zeros(8), sample_rate=8000)
    assert s.without("audio") == Sample(text="hi")


def test_node_encoders_load_checkpoints_of_the_earlier_layout():
    dims = {"word": 10, "patch": 12, "frame": 8, "summary": 3}
    enc = NodeEncoders(dims, hidden=6)
    old = {}
    for k, v in enc.state_dict().items():
        k = k.replace("types.word.embed.", "word_embed.").replace("types.patch.proj.", "patch_proj.")
        old[k.replace("types.frame.proj.", "frame_proj.")] = v.clone() + 1
    assert "word_embed.weight" in old and not any(k.startswith("types.") for k in old)
    fresh = NodeEncoders(dims, hidden=6)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.types["patch"].proj.weight, enc.types["patch"].proj.weight + 1)
    assert torch.equal(fresh.types["word"].embed.weight, enc.types["word"].embed.weight + 1)


def test_graph_schema_has_one_field_per_registered_modality():
    from graphmm.config import GraphConf

    fields = GraphConf.__dataclass_fields__
    for name in list_modalities():
        if get_modality(name).schema is not None:
            assert name in fields
    assert fields["video"].default is None  # a plug-in is off unless a recipe names it


def test_no_core_module_imports_the_clip_package():
    """The CLIP package is a plug-in: it registers itself (graphmm.clip.plugin, found
    through the ``graphmm.plugins`` entry point); nothing outside it imports it."""
    import ast
    from pathlib import Path

    import graphmm

    root = Path(graphmm.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] == "clip":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith("graphmm.clip")]
    assert not offenders, offenders
    from graphmm.nn.encoders import featurizer_types

    assert "open_clip" in featurizer_types()  # and yet it is there, registered by the plug-in


def test_a_plugin_named_in_GRAPHMM_PLUGINS_registers_its_parts(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "my_plugin.py").write_text(
        "from torch import nn\n"
        "from graphmm.nn.encoders import register_featurizer\n"
        "register_featurizer('my_feats', parse=lambda nt, spec: {**spec}, build=lambda nt, h, spec: nn.Identity())\n"
    )
    env = dict(os.environ, GRAPHMM_PLUGINS="my_plugin, missing_plugin", PYTHONPATH=str(tmp_path))
    code = "from graphmm.nn.encoders import featurizer_types; print(featurizer_types())"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "my_feats" in res.stdout and "open_clip" in res.stdout
    assert "plug-in 'missing_plugin' failed to load" in res.stderr  # a broken plug-in is named, not fatal


def test_review_regressions_sample_builder_and_resume_diff():
    import copy
    import pickle

    from graphmm.runstate import config_diff

    # an absent modality is not stored; an old pickle without ``inputs`` still works
    assert Sample(text="x", video=None) == Sample(text="x") and Sample(text="x", video=None).inputs == {}
    old = Sample(text="x")
    del old.__dict__["inputs"]
    back = pickle.loads(pickle.dumps(old))
    assert back.modalities == ("text",) and back.video is None
    with pytest.raises(TypeError, match="fields of Sample itself"):
        Sample(inputs={"text": "x"})
    # a shallow copy of a builder keeps its own recipe
    b = MultimodalGraphBuilder()
    c = copy.copy(b)
    c.audio = None
    assert list(b.builders) == ["text", "image", "audio"] and list(c.builders) == ["text", "image"]
    # the summary table keeps the built-in size whatever the recipe uses (old checkpoints fit)
    assert MultimodalGraphBuilder(image=False, audio=False).in_dims["summary"] == 3
    # keys a later version added, left unset, and a task written by name are no change on resume
    before = {"model": {"task": "classification"}, "graph": {"text": {"window": 3}}}
    after = {"model": {"task": {"_target_": "graphmm.tasks.ClassificationTask"}},
             "graph": {"text": {"window": 3}, "video": None}}
    assert config_diff(before, after) == {}
    assert config_diff(before, {**after, "seed": 1}) == {"seed": ("<absent>", 1)}
    with pytest.raises(ValueError, match="reserved"):
        register_modality("where", ntype="w", summary_id=99)


def test_a_plugin_modality_is_switched_on_from_the_command_line(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(["+graph/video=default", "graph.video.patch_size=8", "graph.text=null", "graph.image=null",
                    "graph.audio=null"])
    builder = instantiate(cfg.graph)
    assert list(builder.builders) == ["video"] and builder.video.patch_size == 8
