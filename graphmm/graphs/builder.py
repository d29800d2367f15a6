"""`MultimodalGraphBuilder`: samples to one batched DGL heterograph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dgl
import torch

from graphmm.data.sample import Sample
from graphmm.graphs._util import CanonicalEType, NodeBlock, segment_offsets
from graphmm.graphs.audio import AudioGraphBuilder
from graphmm.graphs.cross import NTYPE_ORDER, CrossModalBuilder
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphs.text import TextGraphBuilder

def _where(sample: Sample, index: int) -> str:
    return f"sample {sample.id!r} (index {index})" if sample.id is not None else f"sample at index {index}"


class MultimodalGraphBuilder:
    """Turns :class:`~graphmm.data.Sample` objects into one DGL heterograph.

    Words of the text become ``word`` nodes, image patches ``patch`` nodes and log-mel
    frames ``frame`` nodes; each modality's builder adds its own relations and
    ``cross`` adds relations between modalities (see their docstrings). Every
    directed relation comes with its reverse, so messages flow both ways.

    The graph schema (node types and canonical edge types) depends only on the
    builder's configuration, never on the samples: a sample without audio simply has
    zero ``frame`` nodes, so samples with different modalities batch together.

    :meth:`batch` builds a whole batch in one vectorised pass: one
    ``dgl.heterograph`` call with node and edge ids offset by tensor arithmetic,
    then ``set_batch_num_nodes``/``set_batch_num_edges``; ``dgl.unbatch`` recovers
    the per-sample graphs.

    Args:
        text: the text builder; ``True`` for the default, ``None``/``False`` to ignore text.
        image: the image builder, likewise.
        audio: the audio builder, likewise.
        cross: cross-modal relations; ``True`` for summary nodes only, ``None`` for none.

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> from graphmm.graphs import MultimodalGraphBuilder
        >>> builder = MultimodalGraphBuilder()
        >>> s = Sample(text="a seven", image=torch.rand(1, 8, 8),
        ...            audio=torch.randn(4000) * 0.1, sample_rate=8000)
        >>> g = builder(s)
        >>> g.num_nodes("word"), g.num_nodes("patch"), g.num_nodes("frame"), g.num_nodes("summary")
        (2, 4, 30, 3)
        >>> bg = builder.batch([s, Sample(text="no image here")])
        >>> bg.batch_num_nodes("patch").tolist()
        [4, 0]
    """

    def __init__(
        self,
        text: TextGraphBuilder | bool | None = True,
        image: ImageGraphBuilder | bool | None = True,
        audio: AudioGraphBuilder | bool | None = True,
        cross: CrossModalBuilder | bool | None = True,
    ) -> None:
        self.text = TextGraphBuilder() if text is True else (text or None)
        self.image = ImageGraphBuilder() if image is True else (image or None)
        self.audio = AudioGraphBuilder() if audio is True else (audio or None)
        self.cross = CrossModalBuilder(summary=True) if cross is True else (cross or None)
        on = self.node_types_of_modalities
        if not on:
            raise ValueError("every modality builder is off; enable at least one of text, image, audio")
        if not self.canonical_etypes:
            # a DGL heterograph needs at least one relation, even an empty one
            raise ValueError(
                "this graph recipe defines no relation at all; switch on at least one "
                "(e.g. image neighbors=4, text window>1, audio window>=1, or cross summary)"
            )
        if self.cross is not None:
            missing = sorted(self.cross.ntypes - set(on))
            if missing:
                raise ValueError(
                    f"cross-modal relations name node type(s) {missing}, but no enabled modality produces them "
                    f"(enabled: {on}); enable that modality's builder or drop the pair"
                )

    # ------------------------------------------------------------------ schema
    @property
    def node_types_of_modalities(self) -> list[str]:
        mods = [("word", self.text), ("patch", self.image), ("frame", self.audio)]
        return [nt for nt, b in mods if b is not None]

    @property
    def ntypes(self) -> list[str]:
        """Node types of every graph this builder makes."""
        nts = self.node_types_of_modalities
        return nts + (["summary"] if self.cross is not None and self.cross.summary else [])

    @property
    def canonical_etypes(self) -> list[CanonicalEType]:
        """Canonical edge types of every graph this builder makes (some may have 0 edges)."""
        rels: list[CanonicalEType] = []
        for b in (self.text, self.image, self.audio):
            if b is not None:
                rels += b.relations
        if self.cross is not None:
            rels += self.cross.relations(self.node_types_of_modalities)
        return rels

    @property
    def in_dims(self) -> dict[str, int]:
        """Input size per node type, for :class:`graphmm.nn.GraphClassifier`: the
        vocabulary size for ``word``, the feature width for ``patch`` and ``frame``,
        and the number of modalities for ``summary``."""
        dims: dict[str, int] = {}
        if self.text is not None:
            dims["word"] = self.text.vocab_size
        if self.image is not None:
            dims["patch"] = self.image.feature_dim()
        if self.audio is not None:
            dims["frame"] = self.audio.feature_dim()
        if "summary" in self.ntypes:
            dims["summary"] = len(NTYPE_ORDER)
        return dims

    # ------------------------------------------------------------------ fitting
    def fit(self, samples: Sequence[Sample]) -> MultimodalGraphBuilder:
        """Fit what depends on training data: the vocabulary, the image channels and
        the audio band statistics."""
        # validate every modality, as batch() does: unchecked text or images made fit
        # fail with AttributeError (text=7) or infer channels from a rank-2 image's height
        checked = [self.validate(s, i) for i, s in enumerate(samples)]
        if self.text is not None:
            self.text.fit([c["text"] for c in checked if "text" in c])
        if self.image is not None:
            self.image.fit([c["image"] for c in checked if "image" in c])
        if self.audio is not None:
            self.audio.fit([c["audio"] for c in checked if "audio" in c])
        return self

    def state_dict(self) -> dict[str, Any]:
        """Fitted state as plain Python types (safe for ``torch.load(weights_only=True)``)."""
        return {
            "text": self.text.state_dict() if self.text is not None else None,
            "image_channels": self.image.channels if self.image is not None else None,
            "image_size": list(self.image.image_size) if self.image is not None and self.image.image_size else None,
            "audio": self.audio.state_dict() if self.audio is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.text is not None and state.get("text") is not None:
            self.text.load_state_dict(state["text"])
        if self.image is not None and state.get("image_channels") is not None:
            self.image.channels = int(state["image_channels"])
        if self.image is not None and state.get("image_size"):
            self.image.image_size = tuple(int(x) for x in state["image_size"])
        if self.audio is not None and state.get("audio") is not None:
            self.audio.load_state_dict(state["audio"])

    # ------------------------------------------------------------------ building
    def validate(self, sample: object, index: int = 0) -> dict[str, Any]:
        """Check one sample; returns its usable modalities. Raises ``ValueError``
        naming the sample (id, or index in the batch) and the problem."""
        if not isinstance(sample, Sample):
            raise ValueError(f"sample at index {index}: expected graphmm.data.Sample, got {type(sample).__name__}")
        where = _where(sample, index)
        out: dict[str, Any] = {}
        if self.text is not None and sample.text is not None:
            if not isinstance(sample.text, str):
                raise ValueError(f"{where}: text must be a str, got {type(sample.text).__name__}")
            out["text"] = sample.text
        if self.image is not None and sample.image is not None:
            out["image"] = self.image.validate(sample.image, where)
        if self.audio is not None and sample.audio is not None:
            out["audio"] = self.audio.validate(sample.audio, sample.sample_rate, where)
        return out

    def __call__(self, sample: Sample) -> dgl.DGLGraph:
        """The graph of one sample (a batch of one)."""
        return self.batch([sample])

    def batch(self, samples: Sequence[Sample]) -> dgl.DGLGraph:
        """One batched heterograph for ``samples``, built in one vectorised pass.

        Empty text gives zero ``word`` nodes. Modalities whose builder is off are ignored.
        """
        checked = [self.validate(s, i) for i, s in enumerate(samples)]
        bsz = len(samples)
        blocks: dict[str, NodeBlock] = {}
        for key, nt, b in (("text", "word", self.text), ("image", "patch", self.image), ("audio", "frame", self.audio)):
            if b is None:
                continue
            have = [i for i, c in enumerate(checked) if key in c]
            try:
                block = b.build([checked[i][key] for i in have])
            except ValueError as err:
                names = ", ".join(_where(samples[i], i) for i in have[:8])
                raise ValueError(f"{err} (batch of {names}{', ...' if len(have) > 8 else ''})") from err
            counts = torch.zeros(bsz, dtype=torch.int64)
            counts[torch.tensor(have, dtype=torch.int64)] = block.counts
            block.counts = counts
            blocks[nt] = block

        edges = {}
        for block in blocks.values():
            edges.update(block.edges)
        if self.cross is not None:
            summary, cross_edges = self.cross.build(blocks, bsz)
            edges.update(cross_edges)
            if summary is not None:
                blocks["summary"] = summary

        empty = torch.zeros(0, dtype=torch.int64)
        rels = self.canonical_etypes
        num_nodes = {nt: int(blocks[nt].counts.sum()) for nt in self.ntypes}
        data_dict = {}
        for r in rels:
            src, dst = edges.get(r, (empty, empty))
            # sorted by (src, dst): each sample's edges are then contiguous, as
            # dgl.unbatch expects, and edge ids do not depend on how the batch was built
            order = torch.argsort(src * max(num_nodes[r[2]], 1) + dst)
            data_dict[r] = (src[order], dst[order])
        g = dgl.heterograph(data_dict, num_nodes_dict=num_nodes, idtype=torch.int64)
        for nt in self.ntypes:
            for k, v in blocks[nt].data.items():
                g.nodes[nt].data[k] = v
        seg = {nt: segment_offsets(blocks[nt].counts)[1] for nt in self.ntypes}
        g.set_batch_num_nodes({nt: blocks[nt].counts for nt in self.ntypes})
        g.set_batch_num_edges(
            {r: torch.bincount(seg[r[0]][data_dict[r][0]], minlength=bsz) for r in rels}
        )
        return g

    def collate(self, samples: Sequence[Sample]) -> tuple[dgl.DGLGraph, torch.Tensor]:
        """``(batched graph, labels (B,))`` for a ``torch.utils.data.DataLoader``."""
        missing = [i for i, s in enumerate(samples) if s.label is None]
        if missing:
            i = missing[0]
            raise ValueError(f"{_where(samples[i], i)}: has no label, which classification needs")
        return self.batch(samples), torch.tensor([int(s.label) for s in samples], dtype=torch.int64)

    def __repr__(self) -> str:
        parts = [repr(b) for b in (self.text, self.image, self.audio, self.cross) if b is not None]
        return "MultimodalGraphBuilder(\n  " + ",\n  ".join(parts) + "\n)"
