"""The wide path: a linear model of a sample's own node inputs, beside the graph model."""

from __future__ import annotations

from collections.abc import Mapping

import dgl
import torch
from torch import Tensor, nn

__all__ = ["WIDE_PRESETS", "WidePath", "bigram_ids", "parse_wide"]

#: Term kinds over integer ids (the ``token`` field); any other value names a float field.
_ID_TERMS = ("words", "ngrams")
#: The node type the string shorthands (``wide="ngrams"``) refer to: the text modality's.
_TEXT_NTYPE = "word"
#: ``wide=<name>`` shorthands: one term kind for ``word`` nodes.
WIDE_PRESETS = {name: {_TEXT_NTYPE: name} for name in _ID_TERMS}
#: A prime multiplier for the bigram hash; ``token * P + next`` stays far below 2**63.
_BIGRAM_PRIME = 1_000_003
_NORMS = ("sum", "mean", "sqrt")


def parse_wide(wide: str | Mapping[str, str] | None) -> dict[str, str]:
    """The wide terms per node type: ``None`` -> ``{}``, ``"ngrams"`` -> ``{"word": "ngrams"}``.

    A mapping is taken as it is: ``{ntype: "words" | "ngrams" | <float field>}``.

    Raises:
        ValueError: An unknown shorthand, with the accepted values.
    """
    if wide is None:
        return {}
    if isinstance(wide, str):
        if wide not in WIDE_PRESETS:
            raise ValueError(
                f"model.wide={wide!r} is not one of {sorted(WIDE_PRESETS)} or null; for other node types "
                f"give a mapping such as {{word: ngrams, patch: pixels}}."
            )
        return dict(WIDE_PRESETS[wide])
    if not isinstance(wide, Mapping):
        raise ValueError(f"model.wide must be null, a string or a mapping, got {type(wide).__name__}")
    return {str(k): str(v) for k, v in wide.items()}


def bigram_ids(token: Tensor, pos: Tensor, seg: Tensor, buckets: int) -> tuple[Tensor, Tensor]:
    r"""Hashed ids of consecutive token pairs within each sample, vectorised.

    Node :math:`i` and :math:`i+1` form a bigram when they belong to the same sample
    and :math:`\mathrm{pos}_{i+1} = \mathrm{pos}_i + 1`; its id is
    :math:`(t_i P + t_{i+1}) \bmod \mathrm{buckets}` with the prime :math:`P = 1000003`.
    Nodes must be ordered by sample and, within a sample, by position (as
    :class:`graphmm.graphs.TextGraphBuilder` and ``dgl.batch`` leave them).

    Args:
        token: ``(N,)`` integer token ids.
        pos: ``(N,)`` positions within the sample.
        seg: ``(N,)`` sample index of each node.
        buckets: Number of hash buckets.

    Returns:
        ``(ids, seg)``: ``(M,)`` bigram ids in ``[0, buckets)`` and their samples.

    Example:
        >>> import torch
        >>> from graphmm.nn.wide import bigram_ids
        >>> ids, seg = bigram_ids(torch.tensor([3, 4, 5, 6]), torch.tensor([0, 1, 0, 1]),
        ...                       torch.tensor([0, 0, 1, 1]), buckets=10**9)
        >>> ids.tolist(), seg.tolist()  # (3, 4) and (5, 6), not (4, 5) across samples
        ([3000013, 5000021], [0, 1])
    """
    token, pos = token.long(), pos.long()
    linked = (seg[1:] == seg[:-1]) & (pos[1:] == pos[:-1] + 1)
    ids = (token[:-1][linked] * _BIGRAM_PRIME + token[1:][linked]) % buckets
    return ids, seg[:-1][linked]


class WidePath(nn.Module):
    r"""A linear model of each sample's own node inputs (fastText / NBSVM style).

    For sample :math:`b` with terms :math:`T_b` (its token ids, the hashed ids of its
    bigrams, counted with repetition) and float node fields :math:`x_{b,i}^{(t)}`:

    .. math::

        y_b = c_b \sum_{k \in T_b} W_{k} \;+\; \sum_t V_t\,
              \tfrac{1}{n_{b,t}} \textstyle\sum_{i} x^{(t)}_{b,i} \;+\; a,
        \qquad c_b = 1,\ \tfrac{1}{|T_b|}\ \text{or}\ \tfrac{1}{\sqrt{|T_b|}}

    for ``norm="sum"``, ``"mean"`` or ``"sqrt"``. With ``norm="sum"`` and unigrams only
    this is exactly a multinomial logistic regression on the bag-of-words counts; the
    other norms give it length-normalised counts (``"sqrt"`` is close to an
    l2-normalised TF). Bigram ids are hashed into ``buckets`` rows after the
    vocabulary. Every weight starts at zero, so beside a graph model the wide path
    starts as "no opinion" and learns what a linear model of the inputs can. A sample
    without such nodes gets :math:`a`. In training, ``dropout`` drops each term
    occurrence with that probability (the rest are scaled by :math:`1/(1-p)`).

    Args:
        in_dims: Raw size per node type: the vocabulary for id terms, the field width
            for float terms.
        num_classes: Number of logits.
        terms: Per node type, ``"words"`` (its ``token`` ids), ``"ngrams"`` (token ids
            and hashed bigrams; needs ``pos``) or the name of a float node field whose
            per-sample mean enters linearly (e.g. ``{"patch": "pixels"}``).
        buckets: Hash buckets for bigrams. Default: ``262144``.
        dropout: Probability of dropping a term occurrence in training. Default: ``0.0``.
        norm: Per-sample scaling of the id terms, ``"sum"``, ``"mean"`` or ``"sqrt"``.
            Default: ``"sqrt"``.
        bias: Learn the intercept :math:`a` (off beside a head that has its own).
            Default: ``True``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn.wide import WidePath
        >>> def sample(nw, np_):
        ...     g = dgl.heterograph({("word", "next", "word"): ([], []),
        ...                          ("patch", "adjacent", "patch"): ([], [])},
        ...                         num_nodes_dict={"word": nw, "patch": np_})
        ...     g.nodes["word"].data.update({"token": torch.randint(0, 20, (nw,)),
        ...                                  "pos": torch.arange(nw)})
        ...     g.nodes["patch"].data["pixels"] = torch.rand(np_, 12)
        ...     return g
        >>> g = dgl.batch([sample(4, 0), sample(0, 2)])  # text only, image only
        >>> wide = WidePath({"word": 20, "patch": 12}, 3, {"word": "ngrams", "patch": "pixels"})
        >>> wide(g).shape
        torch.Size([2, 3])
        >>> bool((wide(g) == 0).all())  # zero-initialised: no opinion before training
        True

    Shapes:
        - Input: batched heterograph with :math:`B` graphs.
        - Output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        num_classes: int,
        terms: Mapping[str, str],
        *,
        buckets: int = 262144,
        dropout: float = 0.0,
        norm: str = "sqrt",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WidePath needs at least one term, e.g. terms={'word': 'ngrams'}")
        unknown = sorted(set(terms) - set(in_dims))
        if unknown:
            raise ValueError(f"model.wide names node types {unknown} the graph does not have: {sorted(in_dims)}")
        if norm not in _NORMS:
            raise ValueError(f"model.wide_norm must be one of {list(_NORMS)}, got {norm!r}")
        if buckets < 1:
            raise ValueError(f"model.wide_buckets must be >= 1, got {buckets}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.wide_dropout must be in [0, 1), got {dropout}")
        self.terms = dict(terms)
        self.num_classes, self.buckets, self.norm, self.p = num_classes, buckets, norm, dropout
        self.ids = nn.ModuleDict()
        self.dense = nn.ModuleDict()
        for ntype, kind in sorted(self.terms.items()):
            if kind in _ID_TERMS:
                rows = int(in_dims[ntype]) + (buckets if kind == "ngrams" else 0)
                self.ids[ntype] = nn.Embedding(rows, num_classes)
            else:
                self.dense[ntype] = nn.Linear(int(in_dims[ntype]), num_classes, bias=False)
        self.in_dims = {t: int(in_dims[t]) for t in self.terms}
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero every weight: the linear model starts with no opinion."""
        for p in self.parameters():
            nn.init.zeros_(p)

    def extra_repr(self) -> str:
        return f"terms={self.terms}, buckets={self.buckets}, norm={self.norm!r}, dropout={self.p}"

    def term_ids(self, g: dgl.DGLGraph, ntype: str) -> tuple[Tensor, Tensor]:
        """``(ids, seg)``: the id terms of ``ntype`` nodes (rows of its table) and their samples."""
        data = g.nodes[ntype].data
        if "token" not in data:
            raise KeyError(f"model.wide: {ntype!r} nodes have no 'token' field (fields: {sorted(data.keys())})")
        token = data["token"].long()
        counts = g.batch_num_nodes(ntype)
        seg = torch.repeat_interleave(torch.arange(len(counts), device=token.device), counts.to(token.device))
        vocab = self.in_dims[ntype]
        if token.numel() and (int(token.min()) < 0 or int(token.max()) >= vocab):
            raise ValueError(
                f"model.wide: {ntype}.token ids must be in [0, {vocab}), got [{int(token.min())}, "
                f"{int(token.max())}]; build the graphs with the builder whose in_dims the model has."
            )
        if self.terms[ntype] == "words":
            return token, seg
        if "pos" not in data:
            raise KeyError(f"model.wide=ngrams: {ntype!r} nodes have no 'pos' field to find consecutive tokens")
        bi, bi_seg = bigram_ids(token, data["pos"], seg, self.buckets)
        return torch.cat([token, bi + vocab]), torch.cat([seg, bi_seg])

    def forward(self, g: dgl.DGLGraph) -> Tensor:
        """Logits ``(B, num_classes)`` of the linear model."""
        batch = g.batch_size
        ref = next(self.parameters())
        out = torch.zeros(batch, self.num_classes, dtype=ref.dtype, device=ref.device)
        for ntype, table in self.ids.items():
            ids, seg = self.term_ids(g, ntype)
            weight = torch.ones(len(ids), dtype=ref.dtype, device=ref.device)
            if self.training and self.p > 0:
                weight = weight * (torch.rand_like(weight) >= self.p) / (1 - self.p)
            if self.norm != "sum":
                n = torch.bincount(seg, minlength=batch).clamp(min=1).to(ref.dtype)
                weight = weight / (n if self.norm == "mean" else n.sqrt())[seg]
            # one gathered row per term occurrence, summed per sample: a sparse x dense product
            out = out.index_add(0, seg, table(ids) * weight[:, None])
        for ntype, linear in self.dense.items():
            field = self.terms[ntype]
            data = g.nodes[ntype].data
            if field not in data:
                raise KeyError(f"model.wide: {ntype!r} nodes have no field {field!r} (fields: {sorted(data.keys())})")
            x = data[field].to(ref.dtype).reshape(g.num_nodes(ntype), -1)
            if x.shape[1] != linear.in_features:
                raise ValueError(
                    f"model.wide: {ntype}.{field} has width {x.shape[1]}, in_dims[{ntype!r}] is "
                    f"{linear.in_features}; name the field whose width in_dims gives."
                )
            counts = g.batch_num_nodes(ntype).to(ref.device)
            seg = torch.repeat_interleave(torch.arange(batch, device=ref.device), counts)
            mean = torch.zeros(batch, x.shape[1], dtype=ref.dtype, device=ref.device).index_add(0, seg, x)
            out = out + linear(mean / counts.clamp(min=1).to(ref.dtype)[:, None])
        return out if self.bias is None else out + self.bias
