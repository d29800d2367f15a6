"""`MultimodalGraphBuilder`: samples to one batched DGL heterograph."""

from __future__ import annotations

import copy

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dgl
import torch

from graphmm.cache import FeatureCache, fingerprint
from graphmm.data.sample import Sample
from graphmm.graphs._util import (
    concat_blocks,
    segment_offsets,
    split_block,
)
from graphmm.graphs.audio import AudioGraphBuilder
from graphmm.graphs.cross import CrossModalBuilder
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphs.text import TextGraphBuilder
from graphmm.graphtypes import CanonicalEType, NodeBlock
from graphmm.modalities.base import ModalitySpec, check_modality_names, load_modalities


def _plain(value: Any) -> Any:
    """A fingerprintable form of a builder attribute: plain values and tensors as they
    are, objects with a ``state_dict()`` through it, anything else by ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(getattr(value, "state_dict", None)):
        return _plain(value.state_dict())
    return repr(value)


def builder_cache_key(builder: object) -> Any:
    """What a modality builder's output depends on besides its input: its class and its
    public attributes (settings and fitted state such as the vocabulary or the audio
    band statistics).

    A builder may define ``cache_key()`` returning plain values to replace this (for
    instance when an attribute's ``repr`` is not stable across processes).
    """
    custom = getattr(builder, "cache_key", None)
    if callable(custom):
        return [type(builder).__module__, type(builder).__qualname__, custom()]
    attrs = {k: _plain(v) for k, v in sorted(vars(builder).items()) if not k.startswith("_")}
    return [type(builder).__module__, type(builder).__qualname__, attrs]


@dataclass
class GraphTensors:
    """A batch of graphs as plain tensors, before any graph library is involved.

    :meth:`MultimodalGraphBuilder.batch` turns it into one DGL heterograph; the same
    fields fill any other container (e.g. a PyG ``HeteroData``).

    Attributes:
        num_nodes: node type -> total nodes of the batch.
        batch_num_nodes: node type -> ``(B,)`` int64 nodes per sample.
        node_data: node type -> field -> tensor with ``num_nodes[ntype]`` rows.
        edges: canonical edge type -> ``(src, dst)`` int64 batch-global ids, sorted by
            ``(src, dst)`` (so each sample's edges are contiguous).
        batch_num_edges: canonical edge type -> ``(B,)`` int64 edges per sample.
    """

    num_nodes: dict[str, int]
    batch_num_nodes: dict[str, torch.Tensor]
    node_data: dict[str, dict[str, torch.Tensor]]
    edges: dict[CanonicalEType, tuple[torch.Tensor, torch.Tensor]]
    batch_num_edges: dict[CanonicalEType, torch.Tensor]


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
        **modalities: any other registered modality (:mod:`graphmm.modalities`) by name,
            e.g. ``video=VideoGraphBuilder()`` or ``video=True``; those are off unless given.

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
        **modalities: Any,
    ) -> None:
        check_modality_names(modalities, "MultimodalGraphBuilder")
        specs = load_modalities()
        # a modality not named is on when it registered default_on (text, image, audio)
        given = {"text": text, "image": image, "audio": audio, **modalities}
        self.builders: dict[str, Any] = {}
        for name, spec in specs.items():
            b = given.get(name, spec.default_on)
            if b is True:
                b = spec.builder()
            if b:
                self.builders[name] = b
        self.cross = CrossModalBuilder(summary=True) if cross is True else (cross or None)
        self._cache_root: str | None = None
        self._cache_parts: Any = ()
        self._cache_memory_mb: float | None = None
        self._caches: dict[str, FeatureCache] = {}
        #: training-time augmentation used by :meth:`batch` when none is passed (see :meth:`with_augment`)
        self._augment: Any = None
        on = self.node_types_of_modalities
        if not on:
            raise ValueError(f"every modality builder is off; enable at least one of {list(specs)}")
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

    def __getattr__(self, name: str) -> Any:
        # builder.text, builder.image, builder.video, ...: the modality's node builder or None
        if name.startswith("_") or name == "builders":
            raise AttributeError(name)
        if name in load_modalities():
            return self.builders.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name != "builders" and "builders" in self.__dict__ and name in load_modalities():
            # a new dict (copy on write): a shallow copy of the builder keeps its own recipe
            builders = {**self.builders, name: value}
            self.builders = {m: builders[m] for m in load_modalities() if builders.get(m) is not None}
            return
        super().__setattr__(name, value)

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        """The registered modalities this builder has switched on, by name."""
        specs = load_modalities()
        return {name: specs[name] for name in self.builders}

    # ------------------------------------------------------------------ schema
    @property
    def node_types_of_modalities(self) -> list[str]:
        """Node types of the modalities switched on, in registry order."""
        return [spec.ntype for spec in self.specs.values()]

    @property
    def ntypes(self) -> list[str]:
        """Node types of every graph this builder makes."""
        nts = self.node_types_of_modalities
        return nts + (self.cross.new_ntypes if self.cross is not None else [])

    @property
    def canonical_etypes(self) -> list[CanonicalEType]:
        """Canonical edge types of every graph this builder makes (some may have 0 edges)."""
        rels: list[CanonicalEType] = []
        for b in self.builders.values():
            rels += b.relations
        if self.cross is not None:
            rels += self.cross.relations(self.node_types_of_modalities)
        return rels

    @property
    def in_dims(self) -> dict[str, int]:
        """Input size per node type, for :class:`graphmm.nn.GraphClassifier`: each
        modality builder's ``in_dim`` (the vocabulary size for ``word``, the feature
        width for ``patch`` and ``frame``), and for ``summary`` one more than the
        largest ``summary_id`` of the modalities on by default or switched on (3 for the
        built-in text, image and audio, whichever of them a recipe uses)."""
        dims = {nt: int(b.in_dim) for nt, b in zip(self.node_types_of_modalities, self.builders.values())}
        if "summary" in self.ntypes:
            # every modality on by default gets a row whether this recipe uses it or not,
            # so the table keeps its size (and checkpoints fit) across recipes
            specs = load_modalities().values()
            dims["summary"] = 1 + max(s.summary_id for s in specs if s.default_on or s.name in self.builders)
        return dims

    # ------------------------------------------------------------------ fitting
    def fit(self, samples: Sequence[Sample]) -> MultimodalGraphBuilder:
        """Fit what depends on training data (each modality builder's ``fit``: the
        vocabulary, the image channels, the audio band statistics, ...)."""
        # validate every modality, as batch() does: unchecked text or images made fit
        # fail with AttributeError (text=7) or infer channels from a rank-2 image's height
        checked = self.validate_batch(samples)
        for name, b in self.builders.items():
            b.fit([c[name] for c in checked if name in c])
        self._open_caches()  # the fitted state is part of the cache key
        return self

    def init_encoders(self, model: torch.nn.Module) -> list[str]:
        """Start the model's node encoders from what :meth:`fit` learned, where a
        modality builder can (its optional ``init_encoder(encoder) -> bool``, true when
        it changed the encoder; e.g. the text builder's PPMI-SVD word vectors,
        ``graph.text.word_vectors``).

        Args:
            model: A model with :class:`~graphmm.nn.NodeEncoders` as ``model.encoders``
                (any other model is left as it is).

        Returns:
            The node types whose encoder a builder started.
        """
        encoders = getattr(getattr(model, "encoders", None), "types", None)
        done = []
        for nt, b in zip(self.node_types_of_modalities, self.builders.values()):
            init = getattr(b, "init_encoder", None)
            if callable(init) and encoders is not None and nt in encoders and init(encoders[nt]):
                done.append(nt)
        return done

    def state_dict(self) -> dict[str, Any]:
        """Fitted state as plain Python types and tensors (safe for ``torch.load(weights_only=True)``;
        the text builder's word vectors are a tensor).

        The built-in modalities keep the keys of earlier versions (``text``,
        ``image_channels``, ``image_size``, ``audio``), so older checkpoints load; every
        other modality's state is under ``modalities``.
        """
        state: dict[str, Any] = {"text": None, "image_channels": None, "image_size": None, "audio": None}
        others: dict[str, Any] = {}
        for name, b in self.builders.items():
            if name == "image":
                img = b.state_dict()
                state["image_channels"], state["image_size"] = img["channels"], img["image_size"]
            elif name in ("text", "audio"):
                state[name] = b.state_dict()
            else:
                others[name] = b.state_dict()
        if others:
            state["modalities"] = others
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, b in self.builders.items():
            if name == "image":
                b.load_state_dict({"channels": state.get("image_channels"), "image_size": state.get("image_size")})
            elif name in ("text", "audio"):
                if state.get(name) is not None:
                    b.load_state_dict(state[name])
            elif state.get("modalities", {}).get(name) is not None:
                b.load_state_dict(state["modalities"][name])
        self._open_caches()

    # ------------------------------------------------------------------ caching
    def use_cache(self, root: str | os.PathLike[str] | None, key_parts: Any = (),
                  memory_mb: float | None = 256.0) -> MultimodalGraphBuilder:
        """Reuse per-sample preprocessed features from an on-disk :class:`~graphmm.cache.FeatureCache`.

        Each modality caches, per sample, the block its builder makes (node data such
        as ``mel``, ``pixels`` or ``token``, and the edges inside the modality, kNN
        included) under a fingerprint of the validated input, in a folder named after
        the modality builder's class, settings and fitted state plus ``key_parts``.
        Every epoch after the first, and every later run or sweep job with the same
        graph settings and training data, then skips that preprocessing; any change of
        settings or of the fitted vocabulary or statistics uses a fresh folder. The
        graphs are the same as without the cache. :meth:`fit` and
        :meth:`load_state_dict` re-key the cache, so it may be switched on before or
        after fitting; a builder changed by hand afterwards needs another
        ``use_cache`` call. It relies on each modality builder giving a sample the same
        block whatever else is in the batch, as the built-in builders do.

        Args:
            root: cache folder (created on first write); ``None`` switches caching off.
            key_parts: anything else the features depend on (plain values).
            memory_mb: what the entries kept in memory (besides the disk) may take in
                all, in MiB, split evenly over the modalities; the least recently used
                go first. ``None``: no bound (every sample of a run stays in memory:
                an MNIST run's 60,000 images took 4 GB more than without the cache,
                measured as the process's peak, small tensors and the heap's holes
                between them included).

        Returns:
            ``self``.

        Example:
            >>> import tempfile, torch
            >>> from graphmm.data import Sample
            >>> b = MultimodalGraphBuilder().use_cache(tempfile.mkdtemp())
            >>> s = Sample(text="a seven", audio=torch.randn(4000) * 0.1, sample_rate=8000)
            >>> g1 = b.batch([s]); g2 = b.batch([s])      # the second batch reads the cache
            >>> b.cache_stats()["frame"]
            {'hits': 1, 'misses': 1, 'writes': 1}
        """
        if memory_mb is not None and memory_mb < 0:
            raise ValueError(f"memory_mb must be >= 0 or None, got {memory_mb}")
        self._cache_root = os.fspath(root) if root is not None else None
        self._cache_parts = key_parts
        self._cache_memory_mb = memory_mb
        self._open_caches()
        return self

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Per node type, the cache's ``hits``, ``misses`` and ``writes`` in this process."""
        return {nt: dict(c.stats) for nt, c in self._caches.items()}

    def _open_caches(self) -> None:
        self._caches = {}
        if self._cache_root is None:
            return
        total = getattr(self, "_cache_memory_mb", None)  # a builder pickled before the bound: none
        share = None if total is None else total / max(1, len(self.builders))
        for nt, b in zip(self.node_types_of_modalities, self.builders.values()):
            parts = ["MultimodalGraphBuilder", nt, builder_cache_key(b), self._cache_parts]
            self._caches[nt] = FeatureCache(self._cache_root, parts, memory_mb=share)

    def with_augment(self, augment: Any) -> MultimodalGraphBuilder:
        """A shallow copy whose :meth:`batch` and :meth:`collate` augment every batch.

        The copy shares the fitted modality builders (vocabulary, statistics), so the
        training loader augments while validation and test use this builder as it is.

        Args:
            augment: A :class:`graphmm.data.augment.Augmentations`, or ``None`` for none.
        """
        out = copy.copy(self)
        out._augment = augment
        return out

    def _build_modality(self, nt: str, builder: Any, inputs: list[Any], use_cache: bool = True) -> NodeBlock:
        """``builder.build(inputs)``, reading and filling the cache per input when on."""
        cache = self._caches.get(nt) if use_cache else None
        if cache is None or not inputs:
            return builder.build(inputs)
        keys = [fingerprint(x) for x in inputs]
        found: dict[str, NodeBlock | None] = {}
        for k in keys:
            if k not in found:
                found[k] = _block_from_state(cache.get(k), nt)
        todo = [k for k, v in found.items() if v is None]
        if todo:
            first = {k: keys.index(k) for k in todo}
            built = builder.build([inputs[first[k]] for k in todo])  # one vectorised pass over the misses
            for k, part in zip(todo, split_block(built)):
                found[k] = part
                cache.put(k, _block_state(part))
        return concat_blocks([found[k] for k in keys], nt)

    # ------------------------------------------------------------------ building
    def validate(self, sample: object, index: int = 0) -> dict[str, Any]:
        """Check one sample; returns its usable modalities. Raises ``ValueError``
        naming the sample (id, or index in the batch) and the problem."""
        return self._validate(sample, index)

    def validate_batch(self, samples: Sequence[object]) -> list[dict[str, Any]]:
        """:meth:`validate` for every sample, with the same results and the same first
        error.

        A modality builder that offers ``check_many(values, samples, wheres)`` checks
        all of the batch's inputs at once, e.g. one pass for non-finite values over all
        clips instead of one per clip. If it raises, every sample is checked one by
        one, so the error names the first bad sample in batch order, as
        :meth:`validate` would.
        """
        samples = list(samples)  # iterate the input once (it may be a progress-ticking view)
        pre: dict[str, dict[int, Any]] = {}
        try:
            for name, b in self.builders.items():
                many = getattr(b, "check_many", None)
                idx = [i for i, s in enumerate(samples) if isinstance(s, Sample) and getattr(s, name) is not None]
                if many is None or not idx:
                    continue
                picked = [samples[i] for i in idx]
                done = many([getattr(s, name) for s in picked], picked, [s.where(i) for s, i in zip(picked, idx)])
                pre[name] = dict(zip(idx, done))
        except ValueError:
            pre = {}  # one by one below: the first bad sample in order is reported
        return [self._validate(s, i, {m: pre[m][i] for m in pre if i in pre[m]}) for i, s in enumerate(samples)]

    def _validate(self, sample: object, index: int, done: dict[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`validate`, taking the modalities that ``check_many`` already checked."""
        if not isinstance(sample, Sample):
            raise ValueError(f"sample at index {index}: expected graphmm.data.Sample, got {type(sample).__name__}")
        where = sample.where(index)
        done = done or {}
        out: dict[str, Any] = {}
        for name, b in self.builders.items():
            value = getattr(sample, name)
            if value is not None:
                out[name] = done[name] if name in done else b.check(value, sample, where)
        return out

    def __call__(self, sample: Sample) -> dgl.DGLGraph:
        """The graph of one sample (a batch of one)."""
        return self.batch([sample])

    def build_tensors(
        self, samples: Sequence[Sample], augment: Any = None, generator: torch.Generator | None = None
    ) -> GraphTensors:
        """The batch graph of ``samples`` as plain tensors (see :class:`GraphTensors`):
        everything :meth:`batch` computes, without the DGL graph object.

        With ``augment`` (:class:`graphmm.data.augment.Augmentations`) each modality's
        checked inputs go through its ``raw`` hook before building (such inputs skip the
        feature cache, which holds unaugmented features) and its node block through its
        ``nodes`` hook after; all draws come from ``generator`` (default: one seeded by
        the samples' augmentation seeds, see :func:`graphmm.data.augment.batch_generator`).
        """
        checked = self.validate_batch(samples)
        bsz = len(samples)
        if augment is not None and generator is None:
            from graphmm.data.augment import batch_generator

            generator = batch_generator(samples)
        blocks: dict[str, NodeBlock] = {}
        for (key, b), nt in zip(self.builders.items(), self.node_types_of_modalities):
            have = [i for i, c in enumerate(checked) if key in c]
            values = [checked[i][key] for i in have]
            raw = augment is not None and augment.changes_raw(key)
            try:
                if raw:
                    values = augment.raw(key, values, generator)
                block = self._build_modality(nt, b, values, use_cache=not raw)
                if augment is not None:
                    block = augment.nodes(key, block, generator)
            except ValueError as err:
                names = ", ".join(samples[i].where(i) for i in have[:8])
                raise ValueError(f"{err} (batch of {names}{', ...' if len(have) > 8 else ''})") from err
            counts = torch.zeros(bsz, dtype=torch.int64)
            counts[torch.tensor(have, dtype=torch.int64)] = block.counts
            block.counts = counts
            blocks[nt] = block

        edges = {}
        for block in blocks.values():
            edges.update(block.edges)
        if self.cross is not None:
            made, cross_edges = self.cross.build(blocks, bsz)
            edges.update(cross_edges)
            blocks.update(made)

        empty = torch.zeros(0, dtype=torch.int64)
        rels = self.canonical_etypes
        num_nodes = {nt: int(blocks[nt].counts.sum()) for nt in self.ntypes}
        data_dict = {}
        for r in rels:
            src, dst = edges.get(r, (empty, empty))
            # sorted by (src, dst): each sample's edges are then contiguous, as
            # dgl.unbatch expects, and edge ids do not depend on how the batch was built
            key = src * max(num_nodes[r[2]], 1) + dst
            if key.numel() > 1 and not bool((key[1:] >= key[:-1]).all()):
                # most builders emit their edges in this order already: one pass to check
                # instead of an O(E log E) sort
                if bool((dst[1:] >= dst[:-1]).all()):
                    # sorted by destination (a reverse relation): a stable sort of the
                    # sources alone, as int32 where the ids fit (half the time of int64)
                    order = torch.sort(src.to(torch.int32) if num_nodes[r[0]] < 2**31 else src, stable=True).indices
                else:
                    order = torch.argsort(key)
                src, dst = src[order], dst[order]
            data_dict[r] = (src, dst)
        seg = {nt: segment_offsets(blocks[nt].counts)[1] for nt in self.ntypes}
        return GraphTensors(
            num_nodes=num_nodes,
            batch_num_nodes={nt: blocks[nt].counts for nt in self.ntypes},
            node_data={nt: dict(blocks[nt].data) for nt in self.ntypes},
            edges=data_dict,
            batch_num_edges={r: torch.bincount(seg[r[0]][data_dict[r][0]], minlength=bsz) for r in rels},
        )

    def batch(
        self, samples: Sequence[Sample], augment: Any = None, generator: torch.Generator | None = None
    ) -> dgl.DGLGraph:
        """One batched heterograph for ``samples``, built in one vectorised pass.

        Empty text gives zero ``word`` nodes. Modalities whose builder is off are ignored.
        ``augment`` and ``generator``: see :meth:`build_tensors`; ``augment`` defaults to
        the one of :meth:`with_augment` (none).
        """
        # getattr: a builder unpickled from before augmentation existed has no `_augment`
        t = self.build_tensors(samples, augment if augment is not None else getattr(self, "_augment", None), generator)
        g = dgl.heterograph(t.edges, num_nodes_dict=t.num_nodes, idtype=torch.int64)
        for nt, data in t.node_data.items():
            for k, v in data.items():
                g.nodes[nt].data[k] = v
        g.set_batch_num_nodes(t.batch_num_nodes)
        g.set_batch_num_edges(t.batch_num_edges)
        return g

    def collate(self, samples: Sequence[Sample]) -> tuple[dgl.DGLGraph, torch.Tensor]:
        """``(batched graph, labels (B,))`` for a ``torch.utils.data.DataLoader``."""
        missing = [i for i, s in enumerate(samples) if s.label is None]
        if missing:
            i = missing[0]
            raise ValueError(f"{samples[i].where(i)}: has no label, which classification needs")
        return self.batch(samples), torch.tensor([int(s.label) for s in samples], dtype=torch.int64)

    def __repr__(self) -> str:
        parts = [repr(b) for b in [*self.builders.values(), self.cross] if b is not None]
        return "MultimodalGraphBuilder(\n  " + ",\n  ".join(parts) + "\n)"


def _block_state(block: NodeBlock) -> dict[str, Any]:
    """One sample's block as tensors and plain values (``torch.load(weights_only=True)``-safe)."""
    return {
        "count": int(block.counts.sum()),
        "data": dict(block.data),
        "edges": [[list(rel), src, dst] for rel, (src, dst) in block.edges.items()],
    }


def _block_from_state(state: dict[str, Any] | None, ntype: str) -> NodeBlock | None:
    if state is None:
        return None
    edges = {(str(r[0]), str(r[1]), str(r[2])): (src, dst) for r, src, dst in state["edges"]}
    counts = torch.tensor([int(state["count"])], dtype=torch.int64)
    return NodeBlock(ntype=ntype, counts=counts, data=dict(state["data"]), edges=edges)
