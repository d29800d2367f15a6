"""Graph builders whose ``patch`` and ``word`` nodes are CLIP's own tokens.

:class:`ClipImageGraphBuilder` and :class:`ClipTextGraphBuilder` plug into
:class:`graphmm.graphs.MultimodalGraphBuilder` as ``image=`` and ``text=``. They keep
the relations of :class:`~graphmm.graphs.ImageGraphBuilder` and
:class:`~graphmm.graphs.TextGraphBuilder` and add CLIP node data:

=================  ===========================  ===============================================
node data          when                         content
=================  ===========================  ===============================================
``clip``           ``frozen=True``              ``(N, width)`` token states at ``layer``
``pixels``         ``frozen=False`` (patch)     ``(N, 3 p p)`` preprocessed patch pixels
``bpe``            ``frozen=False`` (word)      ``(N, context_length - 2)`` BPE ids, -1 padded
``clip_emb``       ``joint=True``               ``(N, embed_dim)`` joint-space embedding
=================  ===========================  ===============================================

Frozen features and joint embeddings are computed when the graph is built, batched over
the images or texts of the batch, and cached on disk (:class:`~graphmm.cache.FeatureCache`)
under a key made of the checkpoint's SHA-256 and everything else that changes them, so
later epochs and later runs read them back instead of running CLIP again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch

from graphmm.cache import FeatureCache, default_cache_dir, fingerprint
from graphmm.clip.cache import file_sha256
from graphmm.clip.featurizers import (
    ClipTextTower,
    ClipVisionTower,
    _layer_index,
    pool_pieces,
    words_to_sequences,
)
from graphmm.clip.loading import (
    ClipBundle,
    load_clip,
    load_tokenizer,
    preprocess_config,
    resolve_weights,
    text_config,
    vision_config,
)
from graphmm.graphtypes import NodeBlock
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphs.text import TextGraphBuilder

__all__ = ["ClipImageGraphBuilder", "ClipTextGraphBuilder"]

#: bump when the meaning of cached features changes
CACHE_VERSION = 1
#: budget of the in-memory layer of each builder's feature cache (what an epoch re-reads)
CACHE_MEMORY_MB = 256.0


class _ClipSource:
    """What both builders share: the model spec, lazy loading and the feature cache."""

    tower_kind: str

    def _init_source(
        self,
        name: str,
        checkpoint: str | None,
        pretrained: str | None,
        frozen: bool,
        layer: int,
        joint: bool,
        cache: bool,
        cache_dir: str | None,
        device: str,
        batch_size: int,
        layers: int,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        # errors for a missing file or a tag that needs a download come at construction
        path, tag, _ = resolve_weights(name, checkpoint, pretrained)
        self.checkpoint = path
        self.pretrained = tag
        self.frozen = bool(frozen)
        self.layer = int(layer)
        _layer_index(self.layer, layers, self.tower_kind)
        self.joint = bool(joint)
        self.cache = bool(cache)
        self.cache_dir = os.fspath(cache_dir) if cache_dir not in (None, "") else None
        self.device = str(device)
        self.batch_size = int(batch_size)
        self._bundle: ClipBundle | None = None
        self._tower: torch.nn.Module | None = None
        self._cache: FeatureCache | None = None

    # the loaded model and the cache are rebuilt after unpickling (DataLoader workers)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bundle"] = state["_tower"] = state["_cache"] = None
        return state

    def bundle(self) -> ClipBundle:
        """The loaded (frozen, shared) CLIP model; loaded on first use."""
        if self._bundle is None:
            self._bundle = load_clip(self.name, self.checkpoint, self.pretrained, getattr(self, "preprocess", None))
        return self._bundle

    def _weights_id(self) -> str:
        # the file hash needs no model; random weights are identified by their bytes
        return file_sha256(self.checkpoint) if self.checkpoint is not None else self.bundle().weights_id

    def _cache_key(self) -> dict[str, Any]:
        import open_clip

        return {
            "version": CACHE_VERSION,
            "open_clip": open_clip.__version__,
            "tower": self.tower_kind,
            "name": self.name,
            "weights": self._weights_id(),
            "tag": self.pretrained,
            "layer": self.layer,
        }

    def cache_key(self) -> dict[str, Any]:
        """Plain values the blocks of this builder depend on, for the per-sample block
        cache of :class:`~graphmm.graphs.MultimodalGraphBuilder`: every public setting,
        the fitted vocabulary and, when the blocks carry CLIP outputs, the weights'
        SHA-256 (so a new file at the same path is a new key)."""
        attrs: dict[str, Any] = {}
        for k, v in sorted(vars(self).items()):
            if not k.startswith("_"):
                attrs[k] = v.state_dict() if callable(getattr(v, "state_dict", None)) else v
        plain = json.loads(json.dumps(attrs, sort_keys=True, default=repr))
        plain["weights"] = self._weights_id() if (self.frozen or self.joint) else None
        return plain

    def feature_cache(self) -> FeatureCache | None:
        """The :class:`FeatureCache` of this builder's features, or ``None`` with ``cache=False``."""
        if not self.cache:
            return None
        if self._cache is None:
            root = self.cache_dir if self.cache_dir is not None else default_cache_dir("clip")
            # JSON-normalised, so that the namespace depends on the values only (a
            # tuple and a list of the same numbers give the same folder)
            key = json.loads(json.dumps(self._cache_key(), sort_keys=True, default=str))
            self._cache = FeatureCache(root, key, memory_mb=CACHE_MEMORY_MB)
        return self._cache

    def cache_info(self) -> dict[str, Any]:
        """Hits and misses of the feature cache so far (``{}`` without a cache)."""
        return self._cache.info() if self._cache is not None else {}

    def _fields(self) -> tuple[str, ...]:
        return (("tokens",) if self.frozen else ()) + (("emb",) if self.joint else ())

    def _cached_features(self, keys: Sequence[str], compute: Any) -> list[dict[str, torch.Tensor]]:
        """Features of every item: cached ones are read, the missing ones computed in
        one batched call ``compute(indices) -> list[dict]`` and stored."""
        fields = self._fields()
        cache = self.feature_cache()
        out: list[dict[str, torch.Tensor] | None] = [None] * len(keys)
        if cache is not None:
            for i, key in enumerate(keys):  # one lookup per image or text, not per node
                out[i] = cache.get(key, fields)
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            computed = compute(missing)
            for i, value in zip(missing, computed):
                out[i] = value
                if cache is not None:  # adds these fields to what the entry holds
                    cache.put(keys[i], value, merge=True)
        return [{f: v[f] for f in fields} for v in out]  # type: ignore[index]


class ClipImageGraphBuilder(_ClipSource, ImageGraphBuilder):
    """``patch`` nodes that are exactly the patch tokens of a CLIP vision transformer.

    Each image goes through open_clip's own inference preprocessing for the model
    (``open_clip.image_transform`` with the model's preprocess config: resize, centre
    crop, normalisation with the checkpoint's mean and std); a grayscale image is
    repeated to three channels first. The preprocessed :math:`H \\times W` image is
    then cut like CLIP's patch embedding does, into non-overlapping :math:`p \\times p`
    patches on an :math:`H/p \\times W/p` grid (``patch_size`` and ``stride`` are the
    tower's :math:`p`), so node ``(r, c)`` of a sample is CLIP token :math:`r W/p + c`.
    ``adjacent`` and ``similar`` use that grid (``similar`` compares preprocessed
    pixels); ``rc``, ``grid`` and ``span`` refer to the preprocessed image.

    Args:
        name: open_clip architecture name (a ViT: ``ViT-B-32``, ``ViT-B-16``, ...).
        checkpoint: local weights file; ``None`` (with ``pretrained=None``) gives
            random weights, for tests.
        pretrained: ``None``, a file, or an open_clip tag whose preprocessing to use
            (the weights still come from ``checkpoint``; see :func:`graphmm.clip.resolve_weights`).
        frozen: ``True``: node data ``clip`` holds frozen token states, computed here
            and cached; ``False``: node data ``pixels`` holds the preprocessed patches
            and the model's encoder runs (and trains) the tower.
        layer: transformer block whose output the features are (-1: the last).
        neighbors: ``adjacent`` relation, 4, 8 or 0 (off).
        knn: ``similar`` relation's neighbours, 0 for off.
        channels: expected input channels, 1 or 3; ``None`` accepts both.
        knn_radius: ``None`` for the exact ``similar`` kNN, or the grid window radius
            of the windowed one (see :class:`~graphmm.graphs.ImageGraphBuilder`).
        joint: add ``clip_emb``, the tokens in CLIP's joint space (needed by the
            cross-modal ``clip_knn`` relation).
        preprocess: overrides of ``mean``, ``std``, ``interpolation``, ``resize_mode``.
        cache: cache the features computed here; cache_dir: where
            (``None``: ``default_cache_dir("clip")`` of :mod:`graphmm.cache`).
        device: where CLIP runs when building graphs.
        batch_size: images per CLIP forward pass.
        patch_size, stride: ``0``/``None`` (the tower's) or the tower's patch size;
            present so that this builder takes the keys of the image graph config.
        directional: one ``adj_<d>`` relation per grid direction (see :class:`ImageGraphBuilder`).

    Example:
        >>> from graphmm.clip import ClipImageGraphBuilder
        >>> b = ClipImageGraphBuilder("ViT-B-32", checkpoint="open_clip_pytorch_model.bin")  # doctest: +SKIP
        >>> b.build([torch.rand(1, 8, 8)]).data["clip"].shape  # doctest: +SKIP
        torch.Size([49, 768])
    """

    tower_kind = "vision"

    def __init__(
        self,
        name: str = "ViT-B-32",
        checkpoint: str | None = None,
        pretrained: str | None = None,
        frozen: bool = True,
        layer: int = -1,
        neighbors: int = 4,
        knn: int = 0,
        channels: int | None = None,
        knn_radius: int | None = None,
        joint: bool = False,
        preprocess: dict[str, Any] | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        patch_size: int | None = 0,
        stride: int | None = None,
        directional: bool = False,
    ) -> None:
        dims = vision_config(name)
        p = dims["patch_size"]
        if patch_size not in (None, 0) and int(patch_size) != p:
            raise ValueError(
                f"patch_size={patch_size}, but patch nodes are the tokens of {name!r}, whose patches are {p} x {p}; "
                f"set patch_size to 0 (the model's) or {p}"
            )
        if stride not in (None, 0) and int(stride) != p:
            raise ValueError(f"stride={stride}, but CLIP's patches do not overlap; set stride to null or {p}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels={channels}: CLIP takes RGB (3) or grayscale (1, repeated to RGB) images")
        ImageGraphBuilder.__init__(
            self, patch_size=p, stride=p, neighbors=neighbors, knn=knn, channels=channels, knn_radius=knn_radius,
            directional=directional,
        )
        self.dims = dims
        self.preprocess = dict(preprocess) if preprocess else None
        self._init_source(name, checkpoint, pretrained, frozen, layer, joint, cache, cache_dir, device,
                          batch_size, dims["layers"])
        self.preprocess_cfg = preprocess_config(name, self.pretrained, self.preprocess)
        self._transform: Any = None

    # ------------------------------------------------------------------ sizes
    @property
    def grid(self) -> tuple[int, int]:
        """CLIP's patch grid (rows, cols) = image_size / patch_size."""
        return self.dims["grid"]

    def feature_dim(self) -> int:
        """Width of the node state the encoder reads: the vision tower's width."""
        return int(self.dims["width"])

    def _cache_key(self) -> dict[str, Any]:
        return {**super()._cache_key(), "preprocess": self.preprocess_cfg}

    # ------------------------------------------------------------------ input
    def validate(self, image: object, where: str) -> torch.Tensor:
        """Check one image (any size: it is resized). Raises ``ValueError`` naming ``where``."""
        image = self._check_image(image, where, min_size=1)
        if int(image.shape[0]) not in (1, 3):
            raise ValueError(
                f"{where}: CLIP takes RGB or grayscale images, got {int(image.shape[0])} channels "
                f"(drop an alpha channel with image[:3])"
            )
        return image

    def fit(self, images: Sequence[torch.Tensor]) -> ClipImageGraphBuilder:
        """Record the training images' common size (``image_size``) and, when they all
        share it, their channel count; grayscale and RGB may mix (both become RGB)."""
        sizes = {tuple(int(x) for x in im.shape[-2:]) for im in images}
        self.image_size = sizes.pop() if len(sizes) == 1 else None
        chans = {int(im.shape[0]) for im in images}
        if self.channels is None and len(chans) == 1:
            self.channels = chans.pop()
        return self

    def transform(self) -> Any:
        """open_clip's inference transform for this model's preprocess config."""
        if self._transform is None:
            import open_clip

            cfg = self.preprocess_cfg
            self._transform = open_clip.image_transform(
                tuple(cfg["size"]),
                is_train=False,
                mean=tuple(cfg["mean"]),
                std=tuple(cfg["std"]),
                resize_mode=cfg["resize_mode"],
                interpolation=cfg["interpolation"],
                fill_color=cfg["fill_color"],
            )
        return self._transform

    def preprocess_images(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Images in [0, 1] of any size and 1 or 3 channels -> ``(M, 3, H, W)`` as CLIP takes them.

        Images of equal shape are transformed together in one call.
        """
        h, w = self.dims["image_size"]
        out = torch.zeros(len(images), 3, h, w)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(tuple(im.shape), []).append(i)
        tf = self.transform()
        for (c, _, _), members in groups.items():  # one pass per distinct shape
            stack = torch.stack([images[i] for i in members]).to(torch.float32)
            if c == 1:
                stack = stack.expand(-1, 3, -1, -1)
            out[torch.tensor(members)] = tf(stack).to(torch.float32)
        return out

    # ------------------------------------------------------------------ features
    def tower(self) -> ClipVisionTower:
        """The frozen vision tower used to build graphs."""
        if self._tower is None:
            self._tower = ClipVisionTower(self.bundle().model.visual, layer=self.layer, frozen=True).to(self.device)
        return self._tower  # type: ignore[return-value]

    def _compute(self, pixels: torch.Tensor) -> Any:
        def compute(idx: list[int]) -> list[dict[str, torch.Tensor]]:
            tower = self.tower()
            rows: list[dict[str, torch.Tensor]] = []
            for s in range(0, len(idx), self.batch_size):  # chunks of images, each one forward pass
                chunk = pixels[torch.tensor(idx[s : s + self.batch_size])].to(self.device)
                res = tower(chunk, joint=self.joint)
                keep = {k: v.float().cpu() for k, v in res.items() if k == "emb" or self.frozen}
                rows += [{k: v[j] for k, v in keep.items()} for j in range(chunk.shape[0])]
            return rows

        return compute

    def build(self, images: Sequence[torch.Tensor]) -> NodeBlock:
        """Patch nodes, their relations and CLIP node data for a batch of validated images.

        Shapes:
            per node: ``rc`` ``(N, 2)``, ``grid``/``span`` ``(N, 2)``, and ``clip``
            ``(N, width)`` (frozen) or ``pixels`` ``(N, 3 p p)`` (fine-tuned),
            ``clip_emb`` ``(N, embed_dim)`` (joint); ``N = M (H/p)(W/p)``.
        """
        pixels = self.preprocess_images(images)
        block = ImageGraphBuilder.build(self, list(pixels))
        p = self.patch_size
        if len(images) == 0:
            block.data["pixels"] = torch.zeros(0, 3 * p * p)
        if self.frozen or self.joint:
            keys = [fingerprint(im) for im in images]
            feats = self._cached_features(keys, self._compute(pixels))
            width, emb_dim = self.dims["width"], self.dims["embed_dim"]
            if self.frozen:
                block.data["clip"] = torch.cat([f["tokens"] for f in feats]) if feats else torch.zeros(0, width)
            if self.joint:
                block.data["clip_emb"] = torch.cat([f["emb"] for f in feats]) if feats else torch.zeros(0, emb_dim)
        if self.frozen:
            del block.data["pixels"]  # the encoder reads `clip`; no need to carry 3 p^2 floats per node
        return block

    def __repr__(self) -> str:
        return (
            f"ClipImageGraphBuilder(name={self.name!r}, frozen={self.frozen}, layer={self.layer}, "
            f"grid={self.grid}, neighbors={self.neighbors}, knn={self.knn}, joint={self.joint})"
        )


class ClipTextGraphBuilder(_ClipSource, TextGraphBuilder):
    """``word`` nodes with CLIP text-transformer states.

    Words are :func:`graphmm.graphs.tokenize`'s tokens, as for
    :class:`~graphmm.graphs.TextGraphBuilder`. Each word is encoded on its own with
    open_clip's BPE tokenizer; CLIP splits some words into several pieces (``it's`` ->
    ``it``, ``'s``; ``123`` -> ``1``, ``2``, ``3``; rare words into sub-words). A text
    becomes the id sequence ``[SOT, pieces(w_1), ..., pieces(w_n), EOT]``, which
    runs through the (causal) text transformer once, and a word's state is the **mean**
    of its pieces' states at ``layer``:

    .. math::

        z_w = \\frac{1}{|P_w|} \\sum_{t \\in P_w} x^{(\\ell)}_t, \\qquad
        e_w = \\frac{1}{|P_w|} \\sum_{t \\in P_w} \\mathrm{LN}(x^{(L)}_t) W_{text}

    (:math:`e_w`, the joint-space embedding, with ``joint``). A text keeps the longest
    prefix of words whose pieces fit CLIP's context (``context_length - 2`` pieces);
    later words, and tokens that CLIP's cleaning reduces to nothing, get no node.

    Args:
        name, checkpoint, pretrained, frozen, layer, joint, cache, cache_dir, device,
            batch_size: as for :class:`ClipImageGraphBuilder` (``batch_size`` counts texts).
        window, next, min_freq, max_tokens, hash_buckets, word_vectors: as for
            :class:`~graphmm.graphs.TextGraphBuilder` (the ``token`` ids stay, for
            ``type: learned`` encoders and for inspection).
    """

    tower_kind = "text"

    def __init__(
        self,
        name: str = "ViT-B-32",
        checkpoint: str | None = None,
        pretrained: str | None = None,
        frozen: bool = True,
        layer: int = -1,
        window: int = 3,
        next: bool = True,  # the relation's name, as in TextGraphBuilder
        min_freq: int = 1,
        max_tokens: int | None = None,
        hash_buckets: int = 4096,
        word_vectors: int = 0,
        joint: bool = False,
        cache: bool = True,
        cache_dir: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        TextGraphBuilder.__init__(
            self, window=window, next=next, min_freq=min_freq, max_tokens=max_tokens, hash_buckets=hash_buckets,
            word_vectors=word_vectors,
        )
        self.dims = text_config(name)
        self._init_source(name, checkpoint, pretrained, frozen, layer, joint, cache, cache_dir, device,
                          batch_size, self.dims["layers"])
        self._pieces: dict[str, list[int]] = {}

    @property
    def context_length(self) -> int:
        return int(self.dims["context_length"])

    def feature_dim(self) -> int:
        """Width of the node state the encoder reads: the text tower's width."""
        return int(self.dims["width"])

    def pieces(self, word: str) -> list[int]:
        """CLIP BPE ids of one word (memoised)."""
        ids = self._pieces.get(word)
        if ids is None:
            ids = self._pieces[word] = list(load_tokenizer(self.name).encode(word))
        return ids

    def tokens(self, text: str) -> list[str]:
        """The words that get nodes: tokens with at least one BPE piece, up to CLIP's context."""
        budget = self.context_length - 2
        kept: list[str] = []
        for word in super().tokens(text):  # string processing, once per text
            n = len(self.pieces(word))
            if n == 0:
                continue
            if n > budget:
                break
            kept.append(word)
            budget -= n
        return kept

    def tower(self) -> ClipTextTower:
        """The frozen text tower used to build graphs."""
        if self._tower is None:
            self._tower = ClipTextTower(self.bundle().model, layer=self.layer, frozen=True).to(self.device)
        return self._tower  # type: ignore[return-value]

    def _compute(self, bpe: torch.Tensor, offsets: torch.Tensor, counts: torch.Tensor) -> Any:
        tok = load_tokenizer(self.name)

        def compute(idx: list[int]) -> list[dict[str, torch.Tensor]]:
            tower = self.tower()
            rows: list[dict[str, torch.Tensor]] = []
            for s in range(0, len(idx), self.batch_size):  # chunks of texts, each one forward pass
                texts = torch.tensor(idx[s : s + self.batch_size], dtype=torch.int64)
                cnt = counts[texts]
                # position of each word in its text, and its row in `bpe`
                pos = torch.arange(int(cnt.sum())) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
                words = torch.repeat_interleave(offsets[texts], cnt) + pos
                ids, row, col, word = words_to_sequences(
                    bpe[words], pos, cnt, self.context_length, tok.sot_token_id, tok.eot_token_id
                )
                res = tower(ids.to(self.device), joint=self.joint)
                pooled = {
                    k: pool_pieces(v.float(), row.to(v.device), col.to(v.device), word.to(v.device), len(words)).cpu()
                    for k, v in res.items()
                    if k == "emb" or self.frozen
                }
                parts = {k: torch.split(v, cnt.tolist()) for k, v in pooled.items()}
                rows += [{k: parts[k][j] for k in parts} for j in range(len(texts))]
            return rows

        return compute

    def build(self, texts: Sequence[str]) -> NodeBlock:
        """Word nodes, their relations and CLIP node data for a batch of texts.

        Shapes:
            per node: ``token``/``pos`` ``(N,)``, ``span`` ``(N, 2)``, and ``clip``
            ``(N, width)`` (frozen) or ``bpe`` ``(N, context_length - 2)`` (fine-tuned),
            ``clip_emb`` ``(N, embed_dim)`` (joint).
        """
        block = TextGraphBuilder.build(self, texts)
        words = [self.tokens(t) for t in texts]  # memoised pieces: no second BPE pass
        flat = [self.pieces(w) for ws in words for w in ws]
        width = self.context_length - 2
        bpe = torch.full((len(flat), width), -1, dtype=torch.int64)
        if flat:
            lens = torch.tensor([len(p) for p in flat], dtype=torch.int64)
            rows = torch.repeat_interleave(torch.arange(len(flat)), lens)
            cols = torch.arange(int(lens.sum())) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
            bpe[rows, cols] = torch.tensor([i for p in flat for i in p], dtype=torch.int64)
        counts = block.counts
        offsets = torch.cumsum(counts, 0) - counts
        if not self.frozen:
            block.data["bpe"] = bpe
        if self.frozen or self.joint:
            have = [i for i in range(len(texts)) if int(counts[i]) > 0]
            keys = [fingerprint(bpe[int(offsets[i]) : int(offsets[i] + counts[i])]) for i in have]
            compute = self._compute(bpe, offsets, counts)
            feats = self._cached_features(keys, lambda idx: compute([have[j] for j in idx]))
            outputs = (("tokens", "clip", self.dims["width"]), ("emb", "clip_emb", self.dims["embed_dim"]))
            for field, out, dim in outputs:
                if field in self._fields():
                    block.data[out] = torch.cat([f[field] for f in feats]) if feats else torch.zeros(0, dim)
        return block

    def __repr__(self) -> str:
        return (
            f"ClipTextGraphBuilder(name={self.name!r}, frozen={self.frozen}, layer={self.layer}, "
            f"window={self.window}, next={self.next}, joint={self.joint}, "
            f"vocab={len(self.vocab) if self.vocab is not None else 'hashed'})"
        )
