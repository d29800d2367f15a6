"""Per-node-type input encoders: raw node data -> a shared width ``d``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dgl
import torch
from torch import Tensor, nn

__all__ = ["NodeEncoders", "SinusoidalPositionalEncoding", "SUPPORTED_NTYPES"]

#: Node types with a known raw encoding (see the graph schema).
SUPPORTED_NTYPES: tuple[str, ...] = ("word", "patch", "frame", "summary")


class SinusoidalPositionalEncoding(nn.Module):
    r"""Fixed sinusoidal encoding of integer (or real) positions.

    From `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`__:

    .. math::

        PE(p)_{2k} = \sin(p\,\omega_k),\quad PE(p)_{2k+1} = \cos(p\,\omega_k),\quad
        \omega_k = 10000^{-2k/d}

    Works for any position without a length limit. For odd ``d`` the last
    cosine column is dropped.

    Args:
        dim: Output width :math:`d`.
        base: The constant :math:`10000`. Default: ``10000.0``.

    Example:
        >>> import torch
        >>> from graphmm.nn.encoders import SinusoidalPositionalEncoding
        >>> SinusoidalPositionalEncoding(6)(torch.arange(3)).shape
        torch.Size([3, 6])

    Shapes:
        - Input: ``(N,)`` positions.
        - Output: ``(N, dim)``.
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.base = base
        half = (dim + 1) // 2
        inv_freq = torch.exp(-math.log(base) * torch.arange(half, dtype=torch.float32) * 2 / dim)
        # Not a parameter and cheap to rebuild, so keep it out of checkpoints.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, pos: Tensor) -> Tensor:
        """Encode positions ``(N,)`` as ``(N, dim)``."""
        angles = pos.to(self.inv_freq.dtype).unsqueeze(-1) * self.inv_freq
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
        return pe[..., : self.dim]


def _field(g: dgl.DGLGraph, ntype: str, key: str) -> Tensor:
    data = g.nodes[ntype].data
    if key not in data:
        raise KeyError(
            f"node type {ntype!r} has no field {key!r} (fields: {sorted(data.keys())}); "
            f"build graphs with graphmm.graphs.MultimodalGraphBuilder or add the field."
        )
    return data[key]


class NodeEncoders(nn.Module):
    r"""Map each node type's raw data to vectors of one width :math:`d`.

    .. math::

        h_{word} &= E_{word}[\mathrm{token}] + PE(\mathrm{pos}) \\
        h_{patch} &= W_p\,[\mathrm{pixels} \,\|\, \mathrm{grid}] + b_p + [PE(r) \,\|\, PE(c)] \\
        h_{frame} &= W_f\,[\mathrm{mel} \,\|\, \mathrm{tpos}] + b_f \\
        h_{summary} &= E_{summary}[\mathrm{modality}]

    where :math:`PE` is the fixed sinusoidal position encoding and :math:`(r, c)` the
    patch's integer grid row and column (each coded in half of the width, as in
    2-D sinusoidal ViT position codes), so patches keep where they sit in the image. Node types not
    listed in ``in_dims`` (or absent from the graph) are skipped; a node type with
    zero nodes gives a ``(0, d)`` tensor.

    ``featurizers`` picks, per node type, where the features come from: ``learned``
    (the default, the rules above) or ``open_clip`` for ``patch`` and ``word`` nodes,
    which replaces that type's rule by :class:`graphmm.clip.ClipNodeEncoder`,
    :math:`h = W\,\mathrm{LN}(z) + b` on the node's CLIP state :math:`z` (a patch
    token; the mean of a word's BPE token states). With ``frozen: true`` :math:`z` is
    node data ``clip`` computed when the graph was built and no gradient reaches CLIP;
    with ``frozen: false`` the CLIP tower is a submodule that runs in :meth:`forward`
    and trains. See ``docs/clip.md``.

    Args:
        in_dims: Raw size per node type: vocabulary size for ``word``, flattened
            patch size ``C*p*p`` for ``patch``, ``n_mels`` for ``frame`` and the
            number of modalities (3) for ``summary``.
        hidden: Output width :math:`d`.
        featurizers: Per node type, ``{"type": "learned"}`` or ``{"type": "open_clip",
            "name": <open_clip model>, "checkpoint": <local file or None>,
            "pretrained": None, "frozen": True, "layer": -1}`` (see
            :func:`graphmm.clip.parse_featurizers`). Default ``None``: all learned.
            For an ``open_clip`` type the size in ``in_dims`` is not used.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import NodeEncoders
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0], [1]),
        ...     ("patch", "adjacent", "patch"): ([], []),
        ...     ("frame", "next", "frame"): ([], []),
        ... }, num_nodes_dict={"word": 2, "patch": 1, "frame": 0})
        >>> g.nodes["word"].data.update({"token": torch.tensor([3, 7]), "pos": torch.arange(2)})
        >>> g.nodes["patch"].data.update({"pixels": torch.rand(1, 12), "grid": torch.zeros(1, 2)})
        >>> g.nodes["frame"].data.update({"mel": torch.zeros(0, 8), "tpos": torch.zeros(0)})
        >>> enc = NodeEncoders({"word": 10, "patch": 12, "frame": 8}, hidden=16)
        >>> {k: tuple(v.shape) for k, v in enc(g).items()}
        {'word': (2, 16), 'patch': (1, 16), 'frame': (0, 16)}

    Shapes:
        - Input: a (batched) heterograph with the schema's node data.
        - Output: ``dict[ntype, (N_ntype, hidden)]``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        hidden: int,
        featurizers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(in_dims) - set(SUPPORTED_NTYPES))
        if unknown:
            raise ValueError(
                f"No encoder for node types {unknown}; supported: {list(SUPPORTED_NTYPES)}."
            )
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        for ntype, size in in_dims.items():
            if int(size) < 1:
                raise ValueError(f"in_dims[{ntype!r}] must be >= 1, got {size}")
        self.in_dims = {k: int(v) for k, v in in_dims.items()}
        self.hidden = hidden
        specs: dict[str, dict[str, Any]] = {}
        if featurizers:
            from graphmm.clip.spec import parse_featurizers  # no open_clip import unless asked

            specs = parse_featurizers(featurizers)
            unknown = sorted(set(specs) - set(SUPPORTED_NTYPES))
            if unknown:
                raise ValueError(f"featurizers name unknown node types {unknown}; supported: {list(SUPPORTED_NTYPES)}")
        # node types (of in_dims) whose features come from a CLIP tower
        clip_types = [nt for nt in self.in_dims if specs.get(nt, {}).get("type") == "open_clip"]
        self.featurizers = {nt: specs.get(nt, {"type": "learned"}) for nt in self.in_dims}
        self.word_embed = None
        self.word_pos = None
        self.patch_proj = None
        self.patch_pos = None
        self.frame_proj = None
        self.summary_embed = None
        if "word" in in_dims and "word" not in clip_types:
            self.word_embed = nn.Embedding(self.in_dims["word"], hidden)
            self.word_pos = SinusoidalPositionalEncoding(hidden)
        if "patch" in in_dims and "patch" not in clip_types:
            # +2: the normalised (row, col) of the patch in its grid.
            self.patch_proj = nn.Linear(self.in_dims["patch"] + 2, hidden)
            self.patch_pos = SinusoidalPositionalEncoding(hidden // 2)
        if "frame" in in_dims:
            # +1: the normalised time of the frame.
            self.frame_proj = nn.Linear(self.in_dims["frame"] + 1, hidden)
        if "summary" in in_dims:
            self.summary_embed = nn.Embedding(self.in_dims["summary"], hidden)
        self.clip = nn.ModuleDict()
        if clip_types:
            from graphmm.clip.featurizers import ClipNodeEncoder, featurizer_kwargs

            for nt in clip_types:
                self.clip[nt] = ClipNodeEncoder(nt, hidden, **featurizer_kwargs(specs[nt]))
        self.reset_parameters()

    @property
    def ntypes(self) -> list[str]:
        """Node types this module encodes, in ``in_dims`` order."""
        return list(self.in_dims)

    def reset_parameters(self) -> None:
        """Reinitialise embeddings (N(0, 1)) and projections (Glorot, zero bias)."""
        # Unit-scale embeddings keep tokens on the same scale as the position code.
        for emb in (self.word_embed, self.summary_embed):
            if emb is not None:
                nn.init.normal_(emb.weight)
        for lin in (self.patch_proj, self.frame_proj):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
        for enc in self.clip.values():  # only their adapters: CLIP's own weights stay
            enc.reset_parameters()

    @staticmethod
    def _check_index(idx: Tensor, size: int, ntype: str, key: str) -> Tensor:
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= size):
            raise ValueError(
                f"{ntype}.{key} ids must be in [0, {size}), got range "
                f"[{int(idx.min())}, {int(idx.max())}]; raise in_dims[{ntype!r}] to the "
                f"vocabulary size used to build the graphs."
            )
        return idx.long()

    def forward(self, g: dgl.DGLGraph) -> dict[str, Tensor]:
        """Encode every known node type of ``g``.

        Args:
            g: A (batched) heterograph.

        Returns:
            ``dict[ntype, (N_ntype, hidden)]`` for types in both ``in_dims`` and ``g``.
        """
        out: dict[str, Tensor] = {}
        present = set(g.ntypes)
        if self.word_embed is not None and "word" in present:
            token = self._check_index(_field(g, "word", "token"), self.in_dims["word"], "word", "token")
            out["word"] = self.word_embed(token) + self.word_pos(_field(g, "word", "pos"))
        if self.patch_proj is not None and "patch" in present:
            x = torch.cat([_field(g, "patch", "pixels"), _field(g, "patch", "grid")], dim=-1)
            h = self.patch_proj(x.to(self.patch_proj.weight.dtype))
            rc = g.nodes["patch"].data.get("rc")
            if rc is not None and self.hidden >= 2:
                half = self.hidden // 2
                pe = torch.cat([self.patch_pos(rc[:, 0]), self.patch_pos(rc[:, 1])], dim=-1).to(h.dtype)
                h = h + torch.nn.functional.pad(pe, (0, self.hidden - 2 * half))
            out["patch"] = h
        if self.frame_proj is not None and "frame" in present:
            tpos = _field(g, "frame", "tpos").reshape(-1, 1)
            x = torch.cat([_field(g, "frame", "mel"), tpos], dim=-1)
            out["frame"] = self.frame_proj(x.to(self.frame_proj.weight.dtype))
        for nt, enc in self.clip.items():
            if nt in present:
                out[nt] = enc(g)
        if self.summary_embed is not None and "summary" in present:
            mod = self._check_index(
                _field(g, "summary", "modality"), self.in_dims["summary"], "summary", "modality"
            )
            out["summary"] = self.summary_embed(mod)
        if self.clip:  # keep the usual type order whichever encoder made each entry
            out = {nt: out[nt] for nt in SUPPORTED_NTYPES if nt in out}
        return out
