"""Per-node-type input encoders: raw node data -> a shared width ``d``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import dgl
import torch
from torch import Tensor, nn

__all__ = [
    "NodeEncoders",
    "SinusoidalPositionalEncoding",
    "featurizer_types",
    "parse_featurizers",
    "register_featurizer",
    "supported_ntypes",
]


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

    Each modality's node type is encoded by the encoder its plug-in registers
    (:mod:`graphmm.modalities`), for the built-in ones

    .. math::

        h_{word} &= E_{word}[\mathrm{token}] + PE(\mathrm{pos}) \\
        h_{patch} &= W_p\,[\mathrm{pixels} \,\|\, \mathrm{grid}] + b_p + [PE(r) \,\|\, PE(c)] \\
        h_{frame} &= W_f\,[\mathrm{mel} \,\|\, \mathrm{tpos}] + b_f \\
        h_{summary} &= E_{summary}[\mathrm{modality}]

    where :math:`PE` is the fixed sinusoidal position encoding and :math:`(r, c)` the
    patch's integer grid row and column (each coded in half of the width, as in
    2-D sinusoidal ViT position codes), so patches keep where they sit in the image. Node types not
    listed in ``in_dims`` (or absent from the graph) are skipped; a node type with
    zero nodes gives a ``(0, d)`` tensor. The encoders sit in :attr:`types`, keyed by
    node type; checkpoints of the earlier layout (``word_embed``, ``patch_proj``,
    ``frame_proj``) load into it.

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
            ``MultimodalGraphBuilder.in_dims["summary"]`` rows for ``summary``.
        hidden: Output width :math:`d`.
        featurizers: Per node type, ``{"type": "learned"}`` or ``{"type": "open_clip",
            "name": <open_clip model>, "checkpoint": <local file or None>,
            "pretrained": None, "frozen": True, "layer": -1}`` (see
            :func:`graphmm.clip.parse_featurizers`). Default ``None``: all learned.
            For an ``open_clip`` type the size in ``in_dims`` is not used. Featurizer
            types other than ``learned`` come from plug-ins (:func:`register_featurizer`).

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
        from graphmm.modalities import modality_of_ntype

        supported = supported_ntypes()
        unknown = sorted(set(in_dims) - set(supported))
        if unknown:
            raise ValueError(f"No encoder for node types {unknown}; supported: {supported}.")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        for ntype, size in in_dims.items():
            if int(size) < 1:
                raise ValueError(f"in_dims[{ntype!r}] must be >= 1, got {size}")
        self.in_dims = {k: int(v) for k, v in in_dims.items()}
        self.hidden = hidden
        specs = parse_featurizers(featurizers)
        unknown = sorted(set(specs) - set(supported))
        if unknown:
            raise ValueError(f"featurizers name unknown node types {unknown}; supported: {supported}")
        self.featurizers = {nt: specs.get(nt, {"type": "learned"}) for nt in self.in_dims}
        self.types = nn.ModuleDict()
        # node types whose features come from a registered featurizer (e.g. a CLIP tower)
        self.pretrained = nn.ModuleDict()
        for nt, size in self.in_dims.items():
            kind = self.featurizers[nt]["type"]
            if kind != "learned":
                self.pretrained[nt] = _FEATURIZERS[kind].build(nt, hidden, self.featurizers[nt])
            elif (spec := modality_of_ntype(nt)) is not None:
                self.types[nt] = spec.encoder(size, hidden)
        self.summary_embed = nn.Embedding(self.in_dims["summary"], hidden) if "summary" in in_dims else None
        self._register_load_state_dict_pre_hook(_legacy_encoder_keys)
        self.reset_parameters()

    @property
    def ntypes(self) -> list[str]:
        """Node types this module encodes, in ``in_dims`` order."""
        return list(self.in_dims)

    def reset_parameters(self) -> None:
        """Reinitialise every encoder (each type's own rule), the summary embedding
        (N(0, 1)) and the CLIP adapters (CLIP's own weights stay)."""
        for enc in [*self.types.values(), *self.pretrained.values()]:
            if hasattr(enc, "reset_parameters"):  # optional in the encoder protocol
                enc.reset_parameters()
        if self.summary_embed is not None:
            nn.init.normal_(self.summary_embed.weight)

    def forward(self, g: dgl.DGLGraph) -> dict[str, Tensor]:
        """Encode every known node type of ``g``.

        Args:
            g: A (batched) heterograph.

        Returns:
            ``dict[ntype, (N_ntype, hidden)]`` for types in both ``in_dims`` and ``g``.
        """
        out: dict[str, Tensor] = {}
        present = set(g.ntypes)
        for nt, enc in self.types.items():
            if nt in present:
                out[nt] = enc(g.nodes[nt].data)
        for nt, enc in self.pretrained.items():
            if nt in present:
                out[nt] = enc(g)
        if self.summary_embed is not None and "summary" in present:
            mod = _field(g, "summary", "modality")
            size = self.in_dims["summary"]
            if mod.numel() and (int(mod.min()) < 0 or int(mod.max()) >= size):
                raise ValueError(
                    f"summary.modality ids must be in [0, {size}), got range [{int(mod.min())}, {int(mod.max())}]; "
                    "raise in_dims['summary'] to the builder's (graphmm.graphs.MultimodalGraphBuilder.in_dims)."
                )
            out["summary"] = self.summary_embed(mod.long())
        # the graph schema's type order, whichever encoder made each entry
        return {nt: out[nt] for nt in self.in_dims if nt in out}


#: Where the encoders of the built-in node types kept their weights before they moved
#: into :attr:`NodeEncoders.types` (checkpoints of that layout still load).
_LEGACY_KEYS = {"word_embed.": "types.word.embed.", "patch_proj.": "types.patch.proj.", "frame_proj.": "types.frame.proj.",
                "clip.": "pretrained."}


def _legacy_encoder_keys(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for old, new in _LEGACY_KEYS.items():
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)


class Featurizer(NamedTuple):
    """A registered node featurizer: ``parse(ntype, spec) -> spec`` checks and fills in
    one ``featurizers`` entry, ``build(ntype, hidden, spec) -> nn.Module`` makes the
    module whose ``forward(g)`` returns that type's ``(N, hidden)`` features."""

    parse: Callable[[str, dict[str, Any]], dict[str, Any]]
    build: Callable[[str, int, dict[str, Any]], nn.Module]


_FEATURIZERS: dict[str, Featurizer] = {}


def register_featurizer(
    name: str,
    parse: Callable[[str, dict[str, Any]], dict[str, Any]],
    build: Callable[[str, int, dict[str, Any]], nn.Module],
) -> None:
    """Register a featurizer type for ``NodeEncoders(featurizers={ntype: {"type": name, ...}})``
    (``model.encoders.<ntype>.type=<name>``); the CLIP plug-in registers ``open_clip``."""
    _FEATURIZERS[name] = Featurizer(parse, build)


def featurizer_types() -> list[str]:
    """``learned`` and every registered featurizer type (plug-ins load on first use)."""
    from graphmm.plugins import load_plugins

    load_plugins()
    return ["learned", *sorted(_FEATURIZERS)]


def parse_featurizers(featurizers: Mapping[str, Mapping[str, Any] | None] | None) -> dict[str, dict[str, Any]]:
    """Check and fill in per-node-type featurizer specs: ``{"type": "learned"}`` (also what
    a missing or ``None`` entry means) or a registered type, whose ``parse`` fills its keys.

    Raises:
        ValueError: A spec that is not a mapping, or an unknown type.

    Example:
        >>> parse_featurizers({"word": None})
        {'word': {'type': 'learned'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for ntype, spec in (featurizers or {}).items():
        spec = {"type": "learned"} if spec is None else spec
        if not isinstance(spec, Mapping):
            raise ValueError(f"featurizers[{ntype!r}] must be a mapping like {{'type': 'learned'}}, got {spec!r}")
        kind = spec.get("type", "learned")
        if kind == "learned":
            out[str(ntype)] = {"type": "learned"}
            continue
        if kind not in featurizer_types():
            from graphmm.plugins import plugin_failures

            failed = plugin_failures()
            hint = f"; plug-ins that failed to load: {failed}" if failed else (
                "; open_clip comes from graphmm's CLIP plug-in, found through the package's entry points: "
                "reinstall graphmm (pip install -e .) if it was installed before they existed"
                if kind == "open_clip" else "")
            raise ValueError(f"featurizers[{ntype!r}].type={kind!r} is not one of {featurizer_types()}{hint}")
        out[str(ntype)] = _FEATURIZERS[kind].parse(str(ntype), dict(spec))
    return out


def supported_ntypes() -> list[str]:
    """Node types with an encoder: every registered modality's, then ``summary``."""
    from graphmm.modalities import load_modalities

    return [spec.ntype for spec in load_modalities().values() if spec.encoder is not None] + ["summary"]


def __getattr__(name: str) -> Any:
    # SUPPORTED_NTYPES follows the modality registry, which plug-ins extend
    if name == "SUPPORTED_NTYPES":
        return tuple(supported_ntypes())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
