"""CLIP towers as node featurizers, and the node encoder that uses them.

* :class:`ClipVisionTower`: patch-token states of open_clip's vision transformer.
* :class:`ClipTextTower`: token states of open_clip's text transformer.
* :func:`patches_to_images` / :func:`words_to_sequences` / :func:`pool_pieces`:
  the vectorised bridges between node rows and the towers' batched inputs and outputs.
* :class:`ClipNodeEncoder`: one node type's input encoder, either on frozen features
  the graph carries or with a fine-tuned tower inside ``forward``.
"""

from __future__ import annotations

from typing import Any

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmm.clip.loading import copy_tower, load_clip, load_tokenizer, resolve_weights, text_config, vision_config

__all__ = [
    "ClipNodeEncoder",
    "ClipTextTower",
    "ClipVisionTower",
    "patches_to_images",
    "pool_pieces",
    "words_to_sequences",
]


def _layer_index(layer: int, layers: int, what: str) -> int:
    if not -layers <= layer < layers:
        raise ValueError(f"{what} layer={layer} is out of range for {layers} blocks; use -{layers} .. {layers - 1}")
    return layer % layers


class _Frozen(nn.Module):
    """Shared freezing behaviour: a frozen tower stays in eval mode, its parameters
    do not require gradients, and it runs under ``torch.no_grad``."""

    frozen: bool

    def _freeze(self, frozen: bool) -> None:
        self.frozen = bool(frozen)
        self.requires_grad_(not self.frozen)
        if self.frozen:
            super().train(False)

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(mode and not self.frozen)

    def _grad(self) -> Any:
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen)


class ClipVisionTower(_Frozen):
    r"""Patch-token states of an open_clip vision transformer.

    For an image preprocessed to :math:`H \times W`, the tower's convolution cuts
    non-overlapping :math:`p \times p` patches, a grid of :math:`H/p \times W/p`
    tokens numbered row-major (token :math:`r \cdot (W/p) + c` is grid row :math:`r`,
    column :math:`c`). The features of a token are

    .. math::

        z^{(\ell)}_{rc} = x^{(\ell)}_{1 + r W/p + c}, \qquad
        e_{rc} = \mathrm{LN}_{post}\big(x^{(L)}_{1 + r W/p + c}\big)\, W_{proj}

    where :math:`x^{(\ell)}` is the residual stream after block :math:`\ell` (index 0
    is the class token, dropped) and :math:`e` the token projected into CLIP's joint
    image-text space the way CLIP projects its pooled token (the usual dense-CLIP
    reading of patch tokens).

    Args:
        visual: ``model.visual`` of an open_clip CLIP model (a ``VisionTransformer``).
        layer: block whose output gives :math:`z` (negative counts from the end; -1 = last).
        frozen: see the module docstring of :mod:`graphmm.clip.featurizers`.

    Shapes:
        - Input: ``(M, 3, H, W)`` preprocessed images.
        - Output: ``{"tokens": (M, L, width), "emb": (M, L, embed_dim)}`` with
          ``L = (H/p) (W/p)`` (``emb`` only with ``joint=True``).
    """

    def __init__(self, visual: nn.Module, layer: int = -1, frozen: bool = True) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise ValueError(
                f"patch features need open_clip's VisionTransformer, got {type(visual).__name__}; use a ViT model"
            )
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("vision towers with attentional pooling (CoCa) are not supported; use a CLIP ViT")
        self.visual = visual
        self.layers = len(visual.transformer.resblocks)
        self.layer = _layer_index(int(layer), self.layers, "vision")
        self.patch_size = int(visual.patch_size[0])
        self.image_size = tuple(int(x) for x in visual.image_size)
        self.grid = (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)
        self.width = int(visual.transformer.width)
        self.embed_dim = int(visual.proj.shape[1]) if visual.proj is not None else None
        self._freeze(frozen)

    def forward(self, images: Tensor, joint: bool = False) -> dict[str, Tensor]:
        """Token states at :attr:`layer` (and joint embeddings with ``joint``) of ``images``."""
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(
                f"expected preprocessed images (M, 3, {self.image_size[0]}, {self.image_size[1]}), "
                f"got {tuple(images.shape)}"
            )
        last = self.layers - 1
        take = sorted({self.layer, last}) if joint else [self.layer]
        with self._grad():
            out = self.visual.forward_intermediates(
                images.to(self.visual.conv1.weight.dtype),
                indices=take,
                stop_early=not joint,
                intermediates_only=True,
                output_fmt="NLC",
            )["image_intermediates"]
            states = dict(zip(take, out))
            result = {"tokens": states[self.layer]}
            if joint:
                if self.embed_dim is None:
                    raise ValueError("this vision tower has no projection, so it has no joint embedding")
                result["emb"] = self.visual.ln_post(states[last]) @ self.visual.proj
        return result


class ClipTextTower(_Frozen):
    r"""Token states of an open_clip text transformer (CLIP's causal BPE transformer).

    .. math::

        z^{(\ell)}_t = x^{(\ell)}_t, \qquad e_t = \mathrm{LN}_{final}\big(x^{(L)}_t\big)\, W_{text}

    for every position :math:`t` of the ``(R, context_length)`` id sequence;
    :math:`e_t` is token :math:`t` projected into the joint space the way CLIP projects
    its end-of-text token.

    Args:
        model: an open_clip ``CLIP`` (text tower unpacked on the model) or
            ``CustomTextCLIP`` with a ``TextTransformer`` as ``model.text``.
        layer: block whose output gives :math:`z` (negative counts from the end).
        frozen: see :class:`ClipVisionTower`.

    Shapes:
        - Input: ``(R, context_length)`` int64 BPE ids.
        - Output: ``{"tokens": (R, context_length, width), "emb": (R, context_length, embed_dim)}``.
    """

    def __init__(self, model: nn.Module, layer: int = -1, frozen: bool = True) -> None:
        super().__init__()
        from open_clip.transformer import TextTransformer

        src = model.text if isinstance(getattr(model, "text", None), TextTransformer) else model
        for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(src, attr):
                raise ValueError(f"{type(model).__name__} has no CLIP text transformer ({attr!r} missing)")
        if getattr(src, "cls_emb", None) is not None:
            raise ValueError("text towers with a class token (CoCa) are not supported; use a CLIP model")
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = src.text_projection
        self.register_buffer("attn_mask", getattr(src, "attn_mask", None), persistent=False)
        self.context_length = int(self.positional_embedding.shape[0])
        self.vocab_size = int(self.token_embedding.num_embeddings)
        self.layers = len(self.transformer.resblocks)
        self.layer = _layer_index(int(layer), self.layers, "text")
        self.width = int(self.transformer.width)
        proj = self.text_projection
        if proj is None:
            self.embed_dim = None
        else:
            self.embed_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self._freeze(frozen)

    def forward(self, ids: Tensor, joint: bool = False) -> dict[str, Tensor]:
        """Token states at :attr:`layer` (and joint embeddings with ``joint``) of ``ids``."""
        if ids.dim() != 2 or ids.shape[1] > self.context_length:
            raise ValueError(f"expected ids (R, <= {self.context_length}), got {tuple(ids.shape)}")
        n = ids.shape[1]
        last = self.layers - 1
        take = sorted({self.layer, last}) if joint else [self.layer]
        with self._grad():
            dtype = self.transformer.get_cast_dtype()
            x = self.token_embedding(ids).to(dtype) + self.positional_embedding[:n].to(dtype)
            mask = self.attn_mask[:n, :n] if self.attn_mask is not None else None
            _, inter = self.transformer.forward_intermediates(x, attn_mask=mask, indices=take, stop_early=not joint)
            states = dict(zip(take, inter))
            result = {"tokens": states[self.layer]}
            if joint:
                if self.text_projection is None:
                    raise ValueError("this text tower has no projection, so it has no joint embedding")
                h = self.ln_final(states[last])
                proj = self.text_projection
                result["emb"] = proj(h) if isinstance(proj, nn.Linear) else h @ proj
        return result


# ---------------------------------------------------------------------- bridges
def patches_to_images(
    pixels: Tensor, rc: Tensor, counts: Tensor, grid: tuple[int, int], patch_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Reassemble per-node patches into the preprocessed images they were cut from.

    CLIP's patches do not overlap, so folding each image's :math:`n_r \times n_c`
    patches back (``torch.nn.functional.fold`` with kernel = stride = :math:`p`) gives
    exactly the preprocessed image; the tower's convolution then cuts the same
    patches again, so the gradient of a patch's token reaches its pixels and the
    tower's weights. A sample's patches go to slot :math:`r n_c + c` of its image by
    their ``rc``, so node order within a sample does not matter.

    Args:
        pixels: ``(N, 3 p p)`` node pixels, channel-major as ``F.unfold`` makes them.
        rc: ``(N, 2)`` grid row and column of each node.
        counts: ``(B,)`` patch nodes per sample: 0 or :math:`n_r n_c`.
        grid: :math:`(n_r, n_c)`.
        patch_size: :math:`p`.

    Returns:
        ``(images (M, 3, n_r p, n_c p), image (N,), token (N,))``: the images of the
        ``M`` samples that have patches, and for each node its image and token index.
    """
    nr, nc = grid
    per = nr * nc
    counts = counts.to(torch.int64).to(pixels.device)
    bad = (counts != 0) & (counts != per)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"sample {i} has {int(counts[i])} patch nodes, CLIP's {nr} x {nc} grid needs {per}; build the graph with "
            f"graphmm.clip.ClipImageGraphBuilder of the same model"
        )
    has = counts > 0
    image_of_sample = torch.cumsum(has.to(torch.int64), 0) - 1
    seg = torch.repeat_interleave(torch.arange(len(counts), device=pixels.device), counts)
    image = image_of_sample[seg]
    token = (rc[:, 0].to(torch.int64) * nc + rc[:, 1].to(torch.int64)).to(pixels.device)
    m = int(has.sum())
    cols = pixels.new_zeros(m, per, pixels.shape[1])
    cols = cols.index_put((image, token), pixels)
    images = F.fold(cols.transpose(1, 2), output_size=(nr * patch_size, nc * patch_size),
                    kernel_size=patch_size, stride=patch_size)
    return images, image, token


def words_to_sequences(
    bpe: Tensor, pos: Tensor, counts: Tensor, context_length: int, sot: int, eot: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Lay the BPE pieces of every sample's words out as CLIP id sequences.

    Sample :math:`s` with words :math:`w_1 \dots w_n` (in ``pos`` order) becomes
    ``[SOT, pieces(w_1), ..., pieces(w_n), EOT, 0, ...]`` of length ``context_length``,
    exactly what open_clip's tokenizer makes of the text when each word is encoded
    on its own. Only samples with at least one word get a row.

    Args:
        bpe: ``(N, P)`` BPE ids of each word, padded with -1.
        pos: ``(N,)`` word index within its sample.
        counts: ``(B,)`` words per sample (nodes in sample order).
        context_length: sequence length of the tower.
        sot, eot: start- and end-of-text ids.

    Returns:
        ``(ids (R, context_length), row (K,), col (K,), word (K,))``: the sequences and,
        for each of the ``K`` pieces, its row, its position and the node it belongs to.
    """
    device = bpe.device
    counts = counts.to(torch.int64).to(device)
    n = bpe.shape[0]
    seg = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    # words in (sample, position) order, whatever the node order
    order = torch.argsort(seg * (int(pos.max()) + 1 if n else 1) + pos.to(device), stable=True)
    valid = bpe[order] >= 0
    n_pieces = valid.sum(1)
    if n and bool((n_pieces == 0).any()):
        raise ValueError("a word node has no BPE piece; build graphs with graphmm.clip.ClipTextGraphBuilder")
    has = counts > 0
    row_of_sample = torch.cumsum(has.to(torch.int64), 0) - 1
    total = torch.zeros(len(counts), dtype=torch.int64, device=device).index_add_(0, seg, n_pieces)
    if bool((total[has] + 2 > context_length).any()):
        raise ValueError(
            f"a sample's words need {int(total.max()) + 2} CLIP tokens, more than the context of {context_length}"
        )
    cum = torch.cumsum(n_pieces, 0) - n_pieces  # pieces before each word, over the whole batch
    first_word = torch.cumsum(counts, 0) - counts
    start = cum - cum[first_word[seg]]  # pieces before each word within its sample
    w_sorted, j = torch.nonzero(valid, as_tuple=True)
    row = row_of_sample[seg[w_sorted]]
    col = 1 + start[w_sorted] + j
    r = int(has.sum())
    ids = torch.zeros(r, context_length, dtype=torch.int64, device=device)
    ids[row, col] = bpe[order][w_sorted, j].to(torch.int64)
    ids[:, 0] = sot
    ids[torch.arange(r, device=device), 1 + total[has]] = eot
    return ids, row, col, order[w_sorted]


def pool_pieces(states: Tensor, row: Tensor, col: Tensor, word: Tensor, num_words: int) -> Tensor:
    r"""Mean of each word's piece states: :math:`h_w = \frac{1}{|P_w|} \sum_{t \in P_w} z_t`.

    Shapes:
        ``states (R, T, D)``, ``row``/``col``/``word`` ``(K,)`` -> ``(num_words, D)``.
    """
    picked = states[row, col]
    out = states.new_zeros(num_words, states.shape[-1]).index_add(0, word, picked)
    n = torch.zeros(num_words, dtype=states.dtype, device=states.device).index_add(
        0, word, torch.ones_like(word, dtype=states.dtype)
    )
    return out / n.clamp(min=1).unsqueeze(1)


# ---------------------------------------------------------------------- node encoder
class ClipNodeEncoder(nn.Module):
    r"""Input encoder of ``patch`` or ``word`` nodes on CLIP states.

    .. math::

        h = W\,\mathrm{LN}(z) + b

    with :math:`z` the node's CLIP state (a patch token, or the mean of a word's BPE
    token states, at the configured layer). The LayerNorm puts residual-stream states
    of any layer on one scale.

    * ``frozen=True``: :math:`z` is node data ``clip`` that
      :class:`~graphmm.clip.ClipImageGraphBuilder` / :class:`~graphmm.clip.ClipTextGraphBuilder`
      computed (and cached) when building the graph. This module holds no CLIP weights;
      only :math:`\mathrm{LN}, W, b` train.
    * ``frozen=False``: the tower is a submodule and runs in ``forward`` on what the
      graph carries, patch ``pixels`` (preprocessed, reassembled per image by
      :func:`patches_to_images`) or word ``bpe`` ids (laid out per sample by
      :func:`words_to_sequences`, pooled by :func:`pool_pieces`); the whole tower trains.

    Args:
        ntype: ``"patch"`` or ``"word"``.
        hidden: output width :math:`d`.
        name, checkpoint, pretrained: the CLIP model (see :func:`graphmm.clip.load_clip`).
        frozen: whether CLIP's weights stay fixed.
        layer: transformer block whose output is :math:`z` (-1: last).

    Shapes:
        - Input: a (batched) heterograph.
        - Output: ``(N_ntype, hidden)``.
    """

    def __init__(
        self,
        ntype: str,
        hidden: int,
        name: str,
        checkpoint: str | None = None,
        pretrained: str | None = None,
        frozen: bool = True,
        layer: int = -1,
    ) -> None:
        super().__init__()
        if ntype not in ("patch", "word"):
            raise ValueError(f"open_clip featurizes 'patch' and 'word' nodes only, not {ntype!r}; use type=learned")
        self.ntype = ntype
        self.name = name
        self.frozen = bool(frozen)
        dims = vision_config(name) if ntype == "patch" else text_config(name)
        resolve_weights(name, checkpoint, pretrained)  # a missing file fails here, not at the first batch
        _layer_index(int(layer), dims["layers"], "vision" if ntype == "patch" else "text")
        self.layer = int(layer)
        self.width = dims["width"]
        self.tower: nn.Module | None = None
        self.sot = self.eot = None
        if not self.frozen:
            bundle = load_clip(name, checkpoint, pretrained)
            if ntype == "patch":
                self.tower = ClipVisionTower(copy_tower(bundle.model.visual), layer=layer, frozen=False)
            else:
                tok = load_tokenizer(name)
                self.sot, self.eot = int(tok.sot_token_id), int(tok.eot_token_id)
                self.tower = copy_tower(ClipTextTower(bundle.model, layer=layer, frozen=True))
                self.tower._freeze(False)
        self.norm = nn.LayerNorm(self.width)
        self.proj = nn.Linear(self.width, hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise the adapter (LayerNorm, Glorot projection, zero bias); CLIP's weights stay."""
        self.norm.reset_parameters()
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def _data(self, g: dgl.DGLGraph, key: str, fix: str) -> Tensor:
        data = g.nodes[self.ntype].data
        if key not in data:
            raise KeyError(
                f"{self.ntype} nodes have no {key!r} field (fields: {sorted(data.keys())}), which the open_clip "
                f"featurizer with frozen={self.frozen} needs; {fix}"
            )
        return data[key]

    def clip_states(self, g: dgl.DGLGraph) -> Tensor:
        """The CLIP state :math:`z` of every node, ``(N, width)``."""
        builder = "ClipImageGraphBuilder" if self.ntype == "patch" else "ClipTextGraphBuilder"
        if self.frozen:
            return self._data(g, "clip", f"build the graph with graphmm.clip.{builder}(frozen=True)")
        fix = f"build the graph with graphmm.clip.{builder}(frozen=False)"
        counts = g.batch_num_nodes(self.ntype)
        if self.ntype == "patch":
            tower = self.tower
            pixels = self._data(g, "pixels", fix)
            if g.num_nodes("patch") == 0:
                return pixels.new_zeros(0, self.width)
            rc = self._data(g, "rc", fix)
            images, image, token = patches_to_images(pixels, rc, counts, tower.grid, tower.patch_size)
            return tower(images)["tokens"][image, token]
        bpe = self._data(g, "bpe", fix)
        if g.num_nodes("word") == 0:
            return self.proj.weight.new_zeros(0, self.width)
        ids, row, col, word = words_to_sequences(
            bpe, self._data(g, "pos", fix), counts, self.tower.context_length, self.sot, self.eot
        )
        return pool_pieces(self.tower(ids)["tokens"], row, col, word, g.num_nodes("word"))

    def forward(self, g: dgl.DGLGraph) -> Tensor:
        """``(N_ntype, hidden)`` encodings of the graph's ``ntype`` nodes."""
        z = self.clip_states(g)
        if z.shape[-1] != self.width:
            raise ValueError(
                f"{self.ntype}.clip has width {z.shape[-1]}, CLIP model {self.name!r} has {self.width}; build the "
                f"graph with the same model name"
            )
        return self.proj(self.norm(z.to(self.proj.weight.dtype)))

    def extra_repr(self) -> str:
        return f"ntype={self.ntype!r}, name={self.name!r}, frozen={self.frozen}, layer={self.layer}"


def featurizer_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ClipNodeEncoder` keyword arguments of an ``open_clip`` featurizer spec."""
    return {k: spec[k] for k in ("name", "checkpoint", "pretrained", "frozen", "layer") if k in spec}
