r"""The wide path: a linear model of a sample's own node inputs, fitted to its optimum.

A :class:`WidePath` turns each sample into one sparse feature row and scores it with a
linear map. Its :meth:`~WidePath.fit` solves the convex problem (L2 logistic
regression, scikit-learn's ``newton-cg``), with the regularisation chosen by
cross-validation on the training rows, before the graph model trains; the graph model
then learns what this linear model misses (:class:`graphmm.nn.GraphClassifier` adds the two logits). Because the linear
model would fit its own training rows almost perfectly, the graph model trains against
*out-of-fold* linear logits: each training row is scored by the linear model fitted on
the other folds, as in stacking.

**Terms.** Each node type contributes one block of the row, by kind (``kind[:field]``):

- ``words``: the counts of its ``token`` ids; ``ngrams``: also hashed bigrams of
  consecutive tokens (:func:`bigram_ids`). Both are weighted either as TF-IDF,
  :math:`(1 + \log c)\,\mathrm{idf}` scaled to unit L2 norm per sample, or as in
  NBSVM (Wang and Manning, 2012): the indicator :math:`1[c > 0]` times the column's
  naive-Bayes log-count ratio :math:`|r_f|` (:func:`nb_ratio`, from the training rows
  and their labels). :meth:`WidePath.fit` tries each weighting it is given and keeps
  the one cross-validation prefers;
- ``cells:<field>``: the field of each node at its grid cell (``rc``), averaged over
  the nodes in that cell: a weight per (cell, feature), so an image's patches give a
  linear model of its pixels, as logistic regression on the raw image;
- ``moments:<field>``: the per-sample mean and mean square of the field (audio: the
  mean and spread of every mel band).

Dense kinds are divided by each column's standard deviation over the training rows.
A modality names its default term when it registers (``wide=...`` of
:func:`graphmm.modalities.register_modality`); ``wide="auto"`` takes those defaults
for every node type the graph has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dgl
import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["WIDE_KINDS", "WIDE_PRESETS", "WIDE_WEIGHTINGS", "WideFit", "WidePath", "WideTerm", "bigram_ids",
           "check_weightings", "nb_ratio", "parse_wide"]

log = logging.getLogger(__name__)

#: Term kinds: the two id kinds (TF-IDF weighted) and the two dense kinds (scaled).
WIDE_KINDS = ("words", "ngrams", "cells", "moments")
_ID_KINDS = ("words", "ngrams")
#: How the id kinds' counts are weighted (module docstring); :meth:`WidePath.fit` tries each one asked for.
WIDE_WEIGHTINGS = ("tfidf", "nb")
#: The field each kind reads when ``kind`` names none.
_DEFAULT_FIELD = {"words": "token", "ngrams": "token", "cells": "pixels", "moments": "mel"}
#: The node type the string shorthands (``wide="ngrams"``) refer to: the text modality's.
_TEXT_NTYPE = "word"
#: ``wide=<name>`` shorthands for ``word`` nodes; ``auto`` asks each modality for its default.
WIDE_PRESETS = {name: {_TEXT_NTYPE: name} for name in _ID_KINDS}
#: A prime multiplier for the bigram hash; ``token * P + next`` stays far below 2**63.
_BIGRAM_PRIME = 1_000_003
#: Row hashes (out-of-fold lookup) are sums of per-entry hashes below this prime.
_HASH_MOD = 2_147_483_647
#: scikit-learn's solver for the fits. Not lbfgs: on ~10^5 columns L-BFGS-B's own
#: bookkeeping took 70% of the time (SST-1's fit: 44 s against 6 s), and warm-started at
#: a larger C it often stopped at once (gradient already below tol), keeping the smaller C's fit.
_SOLVER = "newton-cg"
#: Logit of a class that a fold's training rows lack (softmax weight ~e^-30).
_ABSENT = -30.0


@dataclass(frozen=True)
class WideTerm:
    """One block of the wide row: node type, kind (:data:`WIDE_KINDS`) and field."""

    ntype: str
    kind: str
    field: str

    @property
    def sparse_ids(self) -> bool:
        """Whether the block counts ids (TF-IDF weighted) rather than dense values."""
        return self.kind in _ID_KINDS

    def __str__(self) -> str:
        return f"{self.ntype}:{self.kind}" + ("" if self.sparse_ids else f"({self.field})")


def _term(ntype: str, spec: str) -> WideTerm:
    kind, _, field = str(spec).partition(":")
    if kind not in WIDE_KINDS:
        raise ValueError(f"model.wide: {ntype}: {spec!r} is not one of {list(WIDE_KINDS)} (optionally kind:field)")
    if kind in _ID_KINDS and field not in ("", "token"):
        raise ValueError(f"model.wide: {ntype}: {kind} reads the 'token' field, got {field!r}")
    return WideTerm(str(ntype), kind, field or _DEFAULT_FIELD[kind])


def parse_wide(wide: str | Mapping[str, str] | None, ntypes: Iterable[str] = ()) -> list[WideTerm]:
    """The wide terms, sorted by node type.

    ``None`` -> none; ``"words"``/``"ngrams"`` -> that term of ``word`` nodes;
    ``"auto"`` -> the default term each modality registered (``wide=`` of
    :func:`~graphmm.modalities.register_modality`) for the node types in ``ntypes``;
    a mapping ``{ntype: "kind[:field]"}`` is taken as it is.

    Raises:
        ValueError: An unknown shorthand or kind, naming the accepted values.

    Example:
        >>> [str(t) for t in parse_wide("auto", ["word", "patch", "summary"])]
        ['patch:cells(pixels)', 'word:ngrams']
        >>> [str(t) for t in parse_wide({"frame": "moments:mel"})]
        ['frame:moments(mel)']
    """
    if wide is None:
        return []
    if isinstance(wide, str):
        if wide == "auto":
            from graphmm.modalities import modality_of_ntype

            specs = {nt: modality_of_ntype(nt) for nt in ntypes}
            wide = {nt: s.extra["wide"] for nt, s in specs.items() if s is not None and s.extra.get("wide")}
        elif wide in WIDE_PRESETS:
            wide = WIDE_PRESETS[wide]
        else:
            raise ValueError(
                f"model.wide={wide!r} is not one of {['auto', *WIDE_PRESETS]} or null; for other node types "
                f"give a mapping such as {{word: ngrams, patch: cells, frame: 'moments:mel'}}."
            )
    if not isinstance(wide, Mapping):
        raise ValueError(f"model.wide must be null, a string or a mapping, got {type(wide).__name__}")
    return sorted((_term(k, v) for k, v in wide.items()), key=lambda t: t.ntype)


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


def check_weightings(weightings: Sequence[str]) -> list[str]:
    """The weightings, each once and in order, checked against :data:`WIDE_WEIGHTINGS`.

    Raises:
        ValueError: An empty list or an unknown weighting, naming the accepted ones.

    Example:
        >>> check_weightings(["nb", "tfidf", "nb"])
        ['nb', 'tfidf']
    """
    out = list(dict.fromkeys(str(w) for w in weightings))
    bad = [w for w in out if w not in WIDE_WEIGHTINGS]
    if bad or not out:
        raise ValueError(f"model.wide_weighting must be a non-empty list of {list(WIDE_WEIGHTINGS)}, got {list(weightings)}")
    return out


def nb_ratio(rows: Tensor, cols: Tensor, y: Tensor, width: int, alpha: float = 1.0) -> Tensor:
    r"""The naive-Bayes log-count ratio of each column: NBSVM's feature scale.

    With binarised entries :math:`\hat x_{bf} = 1[x_{bf} > 0]` and, for each class
    :math:`k` among the labels,
    :math:`p_{fk} = \alpha + \sum_{b: y_b = k} \hat x_{bf}` and
    :math:`q_{fk} = \alpha + \sum_{b: y_b \neq k} \hat x_{bf}`:

    .. math::

        r_{fk} = \log \frac{p_{fk} / \lVert p_{\cdot k} \rVert_1}{q_{fk} / \lVert q_{\cdot k} \rVert_1},
        \qquad \text{scale}_f = \max_k |r_{fk}|

    With two classes :math:`r_{f0} = -r_{f1}`, so the scale is NBSVM's :math:`|r_f|`
    (a linear weight absorbs the sign).

    Args:
        rows: ``(E,)`` row of each entry; one entry per (row, column).
        cols: ``(E,)`` column of each entry, in ``[0, width)``.
        y: ``(B,)`` integer label of each row.
        width: Number of columns ``F``.
        alpha: Additive smoothing. Default: ``1.0``.

    Returns:
        ``(F,)`` float64 scales.

    Example:
        >>> import torch
        >>> from graphmm.nn.wide import nb_ratio
        >>> # column 0 in both classes' rows alike, column 1 only in class 1's
        >>> r = nb_ratio(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), torch.tensor([0, 1]), 2)
        >>> bool(r[1] > r[0])
        True
    """
    classes, y = torch.unique(y.long(), return_inverse=True)
    k = len(classes)
    present = torch.zeros(width * k, dtype=torch.float64)
    present.index_add_(0, cols.long() * k + y[rows.long()], torch.ones(len(cols), dtype=torch.float64))
    present = present.view(width, k)
    p = alpha + present
    q = alpha + (present.sum(1, keepdim=True) - present)
    r = torch.log(p / p.sum(0)) - torch.log(q / q.sum(0))
    return r.abs().amax(1)


@dataclass
class Block:
    """One term's entries of a batch: ``(B, width)`` in coordinate form, coalesced
    (one entry per sample and column; ``rows`` sorted)."""

    rows: Tensor
    cols: Tensor
    vals: Tensor


@dataclass
class WideFit:
    """What :meth:`WidePath.fit` found: the chosen weighting and ``C``, how each
    candidate scored where it was chosen (``scores``: accuracy; ``selected_by``:
    ``"cross-validation"`` on the training rows or ``"validation"``), the chosen fit's
    validation accuracy (``None`` without validation rows), its training accuracy and
    out-of-fold accuracy, and the rows and columns of the problem."""

    c: float
    weighting: str
    scores: dict[tuple[str, float], float]
    selected_by: str
    val_acc: float | None
    train_acc: float
    oof_acc: float | None
    rows: int
    cols: int

    def summary(self) -> str:
        tried = ", ".join(f"{w} C={c:g}: {a:.4f}" for (w, c), a in self.scores.items())
        oof = f", out-of-fold {self.oof_acc:.4f}" if self.oof_acc is not None else ""
        val = f", val acc {self.val_acc:.4f}" if self.val_acc is not None else ""
        return (f"wide path: {self.rows} rows x {self.cols} columns; {self.selected_by} acc {tried}; "
                f"{self.weighting}, C={self.c:g} chosen; train acc {self.train_acc:.4f}{oof}{val}")


class WidePath(nn.Module):
    r"""A linear model of each sample's own node inputs, fitted to its L2 optimum.

    For sample :math:`b` with feature row :math:`x_b` (the blocks of its terms, see the
    module docstring):

    .. math::

        y_b = W^\top x_b + a,
        \qquad (W, a) = \arg\min_{W,a}\; C \sum_{b \in \text{train}}
        \mathrm{CE}(W^\top x_b + a,\, y_b) + \tfrac12 \lVert W \rVert^2

    with :math:`C` chosen by cross-validation (:meth:`fit`). Before :meth:`fit` the path has
    no columns and gives :math:`a = 0` ("no opinion"). In training mode, a block seen in
    :meth:`fit` with ``folds > 1`` contributes its out-of-fold score instead (the score
    of the model fitted without that sample's fold), so a model trained beside this path
    sees the linear model's errors as they are on unseen data. The parameters are not
    trained by gradient: :meth:`fit` sets them.

    Args:
        in_dims: Raw size per node type (vocabulary of id kinds, field width otherwise).
        num_classes: Number of logits.
        terms: What each node type contributes (see :func:`parse_wide`), e.g.
            ``{"word": "ngrams", "patch": "cells"}``.
        buckets: Hash buckets for bigrams. Default: ``262144``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn.wide import WidePath
        >>> def sample(tokens, label):
        ...     g = dgl.heterograph({("word", "next", "word"): ([], [])}, num_nodes_dict={"word": len(tokens)})
        ...     g.nodes["word"].data.update({"token": torch.tensor(tokens), "pos": torch.arange(len(tokens))})
        ...     return g, label
        >>> data = [sample([1, 2], 0), sample([3, 2], 1), sample([1, 1], 0), sample([3], 1)]
        >>> g, y = dgl.batch([d[0] for d in data]), torch.tensor([d[1] for d in data])
        >>> wide = WidePath({"word": 4}, 2, {"word": "words"})
        >>> bool((wide(g) == 0).all())  # no opinion before fit
        True
        >>> fit = wide.fit([(g, y)], [(g, y)], cs=[10.0], folds=0)
        >>> wide(g).argmax(1).tolist()
        [0, 1, 0, 1]

    Shapes:
        - Input: batched heterograph with :math:`B` graphs.
        - Output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        num_classes: int,
        terms: Mapping[str, str] | Sequence[WideTerm],
        *,
        buckets: int = 262144,
    ) -> None:
        super().__init__()
        parsed = parse_wide(terms) if isinstance(terms, Mapping) else list(terms)
        if not parsed:
            raise ValueError("WidePath needs at least one term, e.g. terms={'word': 'ngrams'}")
        unknown = sorted({t.ntype for t in parsed} - set(in_dims))
        if unknown:
            raise ValueError(f"model.wide names node types {unknown} the graph does not have: {sorted(in_dims)}")
        if buckets < 1:
            raise ValueError(f"model.wide_buckets must be >= 1, got {buckets}")
        self.terms = parsed
        self.num_classes, self.buckets = num_classes, buckets
        self.in_dims = {t.ntype: int(in_dims[t.ntype]) for t in parsed}
        # Every shape below is set by fit() (or by loading a fitted state): the grid of
        # a `cells` term and the out-of-fold table depend on the training data.
        # weights of the columns some training row used (`columns`, sorted); the rest are zero
        self.weight = nn.Parameter(torch.zeros(0, num_classes), requires_grad=False)
        self.register_buffer("columns", torch.zeros(0, dtype=torch.int64))
        self.bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)
        self.register_buffer("widths", torch.zeros(len(parsed), dtype=torch.int64))
        self.register_buffer("grid", torch.zeros(len(parsed), 2, dtype=torch.int64))  # cells: rows, cols
        self.register_buffer("column_scale", torch.zeros(0))  # idf (id kinds) or 1/std (dense kinds)
        self.register_buffer("oof_keys", torch.zeros(len(parsed), 0, dtype=torch.int64))  # sorted block hashes
        self.register_buffer("oof_logits", torch.zeros(len(parsed), 0, num_classes))
        self.register_buffer("nb", torch.zeros((), dtype=torch.bool))  # the id kinds' weighting: NBSVM, else TF-IDF

    def extra_repr(self) -> str:
        return (f"terms=[{', '.join(map(str, self.terms))}], columns={int(self.widths.sum())}, "
                f"weighted={self.weight.shape[0]}, weighting={self.weighting}, fitted={self.fitted}")

    @property
    def weighting(self) -> str:
        """How the id kinds' counts are weighted: ``"tfidf"`` or ``"nb"`` (:data:`WIDE_WEIGHTINGS`)."""
        return "nb" if bool(self.nb) else "tfidf"

    @property
    def fitted(self) -> bool:
        return self.column_scale.numel() > 0

    def coef(self) -> Tensor:
        """The weights of every column, ``(F, num_classes)`` (zero where no training row had a value)."""
        full = self.weight.new_zeros(int(self.widths.sum()), self.num_classes)
        full[self.columns] = self.weight.detach()
        return full

    def reset_parameters(self) -> None:
        """Back to the unfitted state: no columns, zero intercept."""
        for name in ("weight", "column_scale", "columns"):
            getattr(self, name).data = getattr(self, name).new_zeros(0, *getattr(self, name).shape[1:])
        self.bias.data.zero_()
        self.nb.fill_(False)
        self.widths.zero_()
        self.grid.zero_()
        self.oof_keys = self.oof_keys.new_zeros(len(self.terms), 0)
        self.oof_logits = self.oof_logits.new_zeros(len(self.terms), 0, self.num_classes)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        # a fitted state has data-dependent shapes: take them before the copy
        for name in ("weight", "columns", "column_scale", "oof_keys", "oof_logits"):
            key = prefix + name
            if key in state_dict:
                tensor = getattr(self, name)
                tensor.data = tensor.new_zeros(state_dict[key].shape)
        super()._load_from_state_dict(state_dict, prefix, *args)
        missing = args[2]
        if prefix + "nb" in missing:  # fitted before the weighting was a choice: TF-IDF
            missing.remove(prefix + "nb")
            self.nb.fill_(False)

    # ------------------------------------------------------------------ features
    def _width(self, i: int, term: WideTerm, x: Tensor | None = None) -> int:
        if term.kind == "words":
            return self.in_dims[term.ntype]
        if term.kind == "ngrams":
            return self.in_dims[term.ntype] + self.buckets
        d = x.shape[1] if x is not None else self.in_dims[term.ntype]
        if term.kind == "moments":
            return 2 * d
        return int(self.grid[i, 0] * self.grid[i, 1]) * d

    def _field(self, g: dgl.DGLGraph, ntype: str, field: str) -> Tensor:
        data = g.nodes[ntype].data
        if field not in data:
            raise KeyError(f"model.wide: {ntype!r} nodes have no field {field!r} (fields: {sorted(data.keys())})")
        return data[field]

    def raw_block(self, g: dgl.DGLGraph, i: int) -> Block:
        """Term ``i``'s entries for the batch, before the fitted scaling.

        Id kinds give counts, ``cells`` the per-cell mean of the field, ``moments`` the
        per-sample mean and mean square.
        """
        term, batch, dev = self.terms[i], g.batch_size, g.device
        if term.ntype not in g.ntypes:
            empty = torch.zeros(0, dtype=torch.int64, device=dev)
            return Block(empty, empty, torch.zeros(0, device=dev))
        counts = g.batch_num_nodes(term.ntype).to(dev)
        seg = torch.repeat_interleave(torch.arange(batch, device=dev), counts)
        if term.sparse_ids:
            token = self._field(g, term.ntype, "token").long()
            vocab = self.in_dims[term.ntype]
            if token.numel() and (int(token.min()) < 0 or int(token.max()) >= vocab):
                raise ValueError(
                    f"model.wide: {term.ntype}.token ids must be in [0, {vocab}), got [{int(token.min())}, "
                    f"{int(token.max())}]; build the graphs with the builder whose in_dims the model has."
                )
            cols, rows = token, seg
            if term.kind == "ngrams":
                bi, bi_seg = bigram_ids(token, self._field(g, term.ntype, "pos"), seg, self.buckets)
                cols, rows = torch.cat([token, bi + vocab]), torch.cat([seg, bi_seg])
            vals = torch.ones(len(cols), device=dev)
        else:
            x = self._field(g, term.ntype, term.field).float()
            x = x[:, None] if x.dim() == 1 else x.flatten(1)
            d = x.shape[1]
            if d != self.in_dims[term.ntype]:
                raise ValueError(
                    f"model.wide: {term.ntype}.{term.field} has width {d}, but in_dims[{term.ntype!r}] is "
                    f"{self.in_dims[term.ntype]}; a {term.kind} term reads the field whose width in_dims gives"
                )
            if term.kind == "moments":
                n = counts.clamp(min=1).float()[seg][:, None]
                rows = seg.repeat_interleave(2 * d)
                cols = torch.arange(2 * d, device=dev).repeat(len(x))
                vals = torch.cat([x / n, x * x / n], dim=1).reshape(-1)
            else:
                rc = self._field(g, term.ntype, "rc").long().reshape(-1, 2)
                rows_n, cols_n = int(self.grid[i, 0]), int(self.grid[i, 1])
                inside = (rc[:, 0] < rows_n) & (rc[:, 1] < cols_n)  # cells beyond the fitted grid: no column
                cell = rc[:, 0] * cols_n + rc[:, 1]
                key = seg * max(rows_n * cols_n, 1) + cell
                n = torch.bincount(key[inside], minlength=batch * max(rows_n * cols_n, 1)).clamp(min=1).float()
                x, seg, cell = x[inside] / n[key[inside]][:, None], seg[inside], cell[inside]
                rows = seg.repeat_interleave(d)
                cols = (cell[:, None] * d + torch.arange(d, device=dev)).reshape(-1)
                vals = x.reshape(-1)
        return _coalesce(rows, cols, vals.float(), batch, self._width(i, term))

    def _scaled(self, block: Block, i: int, offset: int, batch: int) -> Block:
        """The block after the fitted column scaling (and, for id kinds, TF-IDF)."""
        term = self.terms[i]
        scale = self.column_scale.to(block.vals.device)[offset + block.cols]
        if term.sparse_ids and bool(self.nb):
            return Block(block.rows, block.cols, scale.to(block.vals.dtype))  # 1[count > 0] * |r|
        if term.sparse_ids:
            vals = (1.0 + torch.log(block.vals)) * scale
            norm = torch.zeros(batch, device=vals.device).index_add_(0, block.rows, vals * vals).sqrt().clamp(min=1e-12)
            return Block(block.rows, block.cols, vals / norm[block.rows])
        return Block(block.rows, block.cols, block.vals * scale)

    def design(self, g: dgl.DGLGraph) -> tuple[Tensor, Tensor, Tensor]:
        """The scaled feature rows of the batch in coordinate form ``(rows, cols, vals)``
        over all terms (columns offset by term)."""
        parts, offset = [], 0
        for i in range(len(self.terms)):
            block = self._scaled(self.raw_block(g, i), i, offset, g.batch_size)
            parts.append(Block(block.rows, block.cols + offset, block.vals))
            offset += int(self.widths[i])
        return tuple(torch.cat([getattr(p, k) for p in parts]) for k in ("rows", "cols", "vals"))  # type: ignore[return-value]

    # ------------------------------------------------------------------ forward
    def forward(self, g: dgl.DGLGraph) -> Tensor:
        """Logits ``(B, num_classes)`` of the linear model (out-of-fold for the training
        rows it was fitted on, in training mode)."""
        batch, bias = g.batch_size, self.bias
        out = bias.expand(batch, -1).clone()
        if not self.fitted:
            return out
        device, offset = bias.device, 0
        use_oof = self.training and self.oof_keys.shape[1] > 0
        for i in range(len(self.terms)):
            raw = self.raw_block(g, i)
            block = self._scaled(raw, i, offset, batch)
            rows, cols, vals = block.rows.to(device), (block.cols + offset).to(device), block.vals.to(device)
            score = torch.zeros(batch, self.num_classes, device=device, dtype=bias.dtype)
            # a column no training row used has weight zero: it is not stored
            pos = torch.searchsorted(self.columns, cols).clamp(max=max(len(self.columns) - 1, 0))
            known = self.columns[pos] == cols if len(self.columns) else torch.zeros_like(cols, dtype=torch.bool)
            score.index_add_(0, rows[known], self.weight[pos[known]] * vals[known, None].to(bias.dtype))
            if use_oof:
                hit, logits = self._oof_lookup(i, _row_hashes(raw, batch).to(device))
                score = torch.where(hit[:, None], logits.to(score.dtype), score)
            out = out + score
            offset += int(self.widths[i])
        return out

    def _oof_lookup(self, i: int, keys: Tensor) -> tuple[Tensor, Tensor]:
        """``(hit (B,), logits (B, K))``: which blocks the out-of-fold table holds, and their scores."""
        table = self.oof_keys[i]
        valid = table >= 0  # -1 pads terms with fewer distinct blocks
        n = int(valid.sum())
        if n == 0:
            return torch.zeros(len(keys), dtype=torch.bool, device=keys.device), self.oof_logits.new_zeros(len(keys), self.num_classes)
        sorted_keys = table[-n:]  # pads sort first
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=n - 1)
        hit = sorted_keys[pos] == keys
        return hit, self.oof_logits[i, -n:][pos]

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: Iterable[tuple[dgl.DGLGraph, Tensor]],
        val: Iterable[tuple[dgl.DGLGraph, Tensor]],
        cs: Sequence[float] = (0.25, 1.0, 4.0, 16.0, 64.0),
        folds: int = 5,
        max_iter: int = 500,
        tol: float = 1e-4,
        weightings: Sequence[str] = ("tfidf",),
    ) -> WideFit:
        """Fit the scaling and the weights: L2 logistic regression on the training rows.

        Each candidate, a weighting of the id kinds from ``weightings`` and a ``C`` from
        ``cs``, is scored by ``folds``-fold cross-validation on the training rows: the
        accuracy of its out-of-fold predictions (ties: lower out-of-fold log loss, then
        the earlier weighting, then the smaller ``C``). Every training row counts, so the
        choice is steadier than on a small validation split, which the fit then only
        scores. The chosen candidate is refitted on all training rows, and its
        out-of-fold scores become the table the model trains against. An ``"nb"`` fold
        takes its ratios from its own training rows: no held-out label reaches its
        score. With ``folds < 2`` there is no table and the validation rows choose (none
        either: the middle ``C`` of the first weighting).

        Args:
            train: Batches ``(graph, labels (B,))`` of the training split.
            val: The same for the validation split (may be empty).
            cs: Inverse regularisation strengths to try.
            folds: Folds of the cross-validation and the out-of-fold table; a sample's
                fold is a hash of its content.
            max_iter: Iterations of the solver at most.
            tol: Its tolerance (scikit-learn's ``tol``).
            weightings: Weightings of the id kinds to try (:data:`WIDE_WEIGHTINGS`); a
                path without id terms tries the first only.

        Returns:
            A :class:`WideFit` summary.
        """
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression

        weightings = check_weightings(weightings)
        if not any(t.sparse_ids for t in self.terms):
            weightings = weightings[:1]  # the weighting only touches id kinds
        train_batches, val_batches = list(train), list(val)
        if not train_batches:
            raise ValueError("WidePath.fit: no training batches")
        self._fit_grid([g for g, _ in train_batches])
        (raw_tr, sizes_tr, y_tr), (raw_va, sizes_va, y_va) = self._rows(train_batches), self._rows(val_batches)
        if len(np.unique(y_tr)) < 2:
            raise ValueError("WidePath.fit: the training labels hold a single class; a linear model needs two")
        clf = LogisticRegression(solver=_SOLVER, max_iter=max_iter, tol=tol, warm_start=True)
        cs = sorted(float(c) for c in cs)
        hashes, fold = self._folds(raw_tr, sizes_tr, max(folds, 1))
        scores, tables = self._score_candidates(clf, (raw_tr, sizes_tr, y_tr), (raw_va, sizes_va, y_va), fold,
                                                folds, cs, weightings)
        if scores:
            chosen = max(scores, key=lambda key: (scores[key][0], -scores[key][1]))
        else:
            chosen = (weightings[0], cs[len(cs) // 2])
        weighting, c = chosen
        self.nb.fill_(weighting == "nb")
        self._fit_scaling(raw_tr, sizes_tr, y_tr)
        x_tr = self._matrix(raw_tr, sizes_tr)
        active = _active(x_tr)
        w, b = _solve(clone(clf), x_tr[:, active], y_tr, c, active, x_tr.shape[1], self.num_classes)
        with torch.no_grad():
            self.weight.data = torch.as_tensor(w[active], dtype=self.bias.dtype)
            self.columns = torch.as_tensor(active, dtype=torch.int64)
            self.bias.copy_(torch.as_tensor(b))
        if chosen in tables:
            self._store_oof(hashes, tables[chosen])
        val_acc = _scores(self._matrix(raw_va, sizes_va) @ w + b, y_va)[0] if len(y_va) else None
        return WideFit(c, weighting, {key: s[0] for key, s in scores.items()},
                       "cross-validation" if folds > 1 else "validation", val_acc,
                       _scores(x_tr @ w + b, y_tr)[0], scores[chosen][0] if chosen in tables else None,
                       x_tr.shape[0], x_tr.shape[1])

    def _score_candidates(self, clf: Any, train: tuple, val: tuple, fold: np.ndarray, folds: int,
                          cs: Sequence[float], weightings: Sequence[str]) -> tuple[dict, dict]:
        """``(scores, tables)``: each (weighting, C)'s ``(accuracy, log loss)`` over the
        out-of-fold predictions (``folds > 1``; ``tables`` holds their per-term scores) or
        else on the validation rows. ``train``, ``val``: ``(raw blocks, sizes, labels)``."""
        from sklearn.base import clone

        (raw_tr, sizes_tr, y_tr), (raw_va, sizes_va, y_va) = train, val
        scores: dict[tuple[str, float], tuple[float, float]] = {}
        tables: dict[tuple[str, float], np.ndarray] = {}
        for weighting in weightings:
            self.nb.fill_(weighting == "nb")
            if folds > 1:
                for c, (logits, per_term) in self._cross_validate(clf, raw_tr, sizes_tr, y_tr, fold, folds, cs).items():
                    scores[weighting, c], tables[weighting, c] = _scores(logits, y_tr), per_term
            elif len(y_va):
                self._fit_scaling(raw_tr, sizes_tr, y_tr)
                x_tr, x_va = self._matrix(raw_tr, sizes_tr), self._matrix(raw_va, sizes_va)
                model, active = clone(clf), _active(x_tr)
                for c in cs:  # C grows along the path, each fit starting from the last
                    w, b = _solve(model, x_tr[:, active], y_tr, c, active, x_tr.shape[1], self.num_classes)
                    scores[weighting, c] = _scores(x_va @ w + b, y_va)
        return scores, tables

    def _rows(self, batches: Sequence[tuple[dgl.DGLGraph, Tensor]]) -> tuple[list[list[Block]], list[int], np.ndarray]:
        """The raw blocks, batch sizes and labels of a split's batches."""
        y = torch.cat([y for _, y in batches]).numpy() if batches else np.zeros(0, dtype=np.int64)
        return [self._raw_blocks(g) for g, _ in batches], [g.batch_size for g, _ in batches], y

    def _fit_grid(self, graphs: Sequence[dgl.DGLGraph]) -> None:
        """The cell grid of each ``cells`` term: the largest (row, col) seen, plus one;
        an empty grid (no columns) where no training sample has the term's nodes, as in a
        run on one modality of a multimodal schema."""
        for i, term in enumerate(self.terms):
            if term.kind != "cells":
                continue
            rc = [self._field(g, term.ntype, "rc").long().reshape(-1, 2) for g in graphs if term.ntype in g.ntypes]
            rc = [r for r in rc if len(r)]
            if not rc:
                log.warning("model.wide: no training sample has %r nodes, so %s has no columns", term.ntype, term)
                self.grid[i] = 0
                continue
            self.grid[i] = torch.cat(rc).max(0).values + 1

    def _raw_blocks(self, g: dgl.DGLGraph) -> list[Block]:
        return [self.raw_block(g, i) for i in range(len(self.terms))]

    def _fit_scaling(self, raw: Sequence[list[Block]], sizes: Sequence[int], y: np.ndarray | None = None,
                     keep: np.ndarray | None = None) -> None:
        """The id columns' IDF (smoothed, as scikit-learn's) or, under ``nb``, their
        :func:`nb_ratio` from the labels ``y`` of the rows in ``keep`` (default: all);
        1/std of the dense columns."""
        n = float(sum(sizes))
        widths = [self._width(i, t) for i, t in enumerate(self.terms)]
        self.widths.copy_(torch.tensor(widths))
        scales = []
        for i, (term, width) in enumerate(zip(self.terms, widths)):
            cols = torch.cat([blocks[i].cols for blocks in raw])
            vals = torch.cat([blocks[i].vals for blocks in raw]).double()
            if term.sparse_ids and bool(self.nb):
                if y is None:
                    raise ValueError("WidePath: the nb weighting needs the training labels")
                rows = torch.cat([blocks[i].rows + start for blocks, start in zip(raw, np.cumsum([0, *sizes]))])
                mask = torch.ones(len(rows), dtype=torch.bool) if keep is None else torch.as_tensor(keep)[rows]
                labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
                scales.append(nb_ratio(rows[mask], cols[mask], labels, width).float())
            elif term.sparse_ids:
                df = torch.bincount(cols, minlength=width).double()
                scales.append((torch.log((1 + n) / (1 + df)) + 1).float())
            else:
                s1 = torch.zeros(width, dtype=torch.float64).index_add_(0, cols, vals)
                s2 = torch.zeros(width, dtype=torch.float64).index_add_(0, cols, vals * vals)
                std = (s2 / n - (s1 / n) ** 2).clamp(min=0).sqrt()
                # a constant column carries nothing the intercept does not
                scales.append(torch.where(std > 1e-8, 1 / std.clamp(min=1e-8), torch.zeros_like(std)).float())
        self.column_scale = torch.cat(scales)

    def _matrix(self, raw: Sequence[list[Block]], sizes: Sequence[int]) -> Any:
        """Scaled rows of all batches as one ``scipy.sparse.csr_matrix``."""
        from scipy import sparse

        width = int(self.widths.sum())
        rows, cols, vals, start = [], [], [], 0
        for blocks, size in zip(raw, sizes):
            offset = 0
            for i, block in enumerate(blocks):
                scaled = self._scaled(block, i, offset, size)
                rows.append(scaled.rows + start)
                cols.append(scaled.cols + offset)
                vals.append(scaled.vals)
                offset += int(self.widths[i])
            start += size
        if not rows:
            return sparse.csr_matrix((0, width))
        r, c, v = (torch.cat(t).numpy() for t in (rows, cols, vals))
        return sparse.csr_matrix((v.astype(np.float64), (r, c)), shape=(start, width))

    def _folds(self, raw: Sequence[list[Block]], sizes: Sequence[int], folds: int) -> tuple[list[Tensor], np.ndarray]:
        """Each term's block hashes ``(N,)`` and each row's fold: a hash of its content, so
        that equal samples share a fold."""
        hashes = [torch.cat([_row_hashes(blocks[i], size) for blocks, size in zip(raw, sizes)])
                  for i in range(len(self.terms))]
        return hashes, (_mix32(torch.stack(hashes).sum(0) % _HASH_MOD) % folds).numpy()

    def _cross_validate(self, clf: Any, raw: Sequence[list[Block]], sizes: Sequence[int], y: np.ndarray,
                        fold: np.ndarray, folds: int,
                        cs: Sequence[float]) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """For each ``C`` (ascending), the out-of-fold logits ``(N, K)`` under the current
        weighting and each term's share of them ``(terms, N, K)`` (term 0 holds the fold's
        intercept). Within a fold the fits warm-start along ``C``; each fold starts cold:
        started from a fit that saw its held-out rows, a solver stopped at its tolerance
        keeps part of what it knew about them."""
        from sklearn.base import clone

        n, k = len(y), self.num_classes
        out = {c: (np.zeros((n, k)), np.zeros((len(self.terms), n, k))) for c in cs}
        self._fit_scaling(raw, sizes, y)
        bounds = np.cumsum([0, *[int(w) for w in self.widths]])
        x_all = self._matrix(raw, sizes)
        for f in range(folds):
            held = fold == f
            if not held.any() or len(np.unique(y[~held])) < 2:
                continue
            x = x_all
            if bool(self.nb):  # the ratios of the fold's own training rows
                self._fit_scaling(raw, sizes, y, keep=~held)
                x = self._matrix(raw, sizes)
            rows = np.flatnonzero(~held)
            cols = _active(x[rows])
            x_fit, x_held, model = x[rows][:, cols], x[held], clone(clf)
            for c in cs:
                w, b = _solve(model, x_fit, y[rows], c, cols, x.shape[1], k)
                logits, per_term = out[c]
                logits[held] = x_held @ w + b
                for i in range(len(self.terms)):
                    per_term[i, held] = x_held[:, bounds[i]:bounds[i + 1]] @ w[bounds[i]:bounds[i + 1]]
                per_term[0, held] += b
        return out

    def _store_oof(self, hashes: Sequence[Tensor], per_term: np.ndarray) -> None:
        """The out-of-fold table: each term's distinct blocks (by hash) and their scores,
        term 0's relative to the fitted intercept (the forward pass adds it)."""
        per_term = per_term.copy()
        per_term[0] -= self.bias.detach().cpu().numpy()
        keys, logits = [], []
        for i, h in enumerate(hashes):
            present = h != 0  # a sample without this term's nodes has no block to look up
            uniq, first = np.unique(h[present].numpy(), return_index=True)
            keys.append(torch.as_tensor(uniq))
            logits.append(torch.as_tensor(per_term[i][present.numpy()][first], dtype=torch.float32))
        width = max(len(k) for k in keys)
        self.oof_keys = torch.stack([torch.cat([torch.full((width - len(k),), -1, dtype=torch.int64), k]) for k in keys])
        self.oof_logits = torch.stack([torch.cat([torch.zeros(width - len(v), self.num_classes), v]) for v in logits])


def _coalesce(rows: Tensor, cols: Tensor, vals: Tensor, batch: int, width: int) -> Block:
    """Sum entries with the same (row, col); rows sorted."""
    if len(rows) == 0:
        return Block(rows.long(), cols.long(), vals)
    key = rows.long() * max(width, 1) + cols.long()
    uniq, inverse = torch.unique(key, return_inverse=True)
    summed = torch.zeros(len(uniq), dtype=vals.dtype, device=vals.device).index_add_(0, inverse, vals)
    return Block(uniq // max(width, 1), uniq % max(width, 1), summed)


def _mix32(x: Tensor) -> Tensor:
    """A non-linear 32-bit integer hash, elementwise (products stay below 2**63)."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _row_hashes(block: Block, batch: int) -> Tensor:
    """``(B,)`` int64 content hash of each sample's block, in ``[1, 2**62)`` (0: a sample
    without entries); equal entries give equal hashes whatever their order."""
    dev = block.rows.device
    if len(block.rows) == 0:
        return torch.zeros(batch, dtype=torch.int64, device=dev)
    q = torch.round(block.vals.double() * 65536).long() % _HASH_MOD
    key = (block.cols.long() * 1_000_003 + q) % _HASH_MOD
    # each entry hashed on its own before the sum, so that no two sets of entries
    # with equal sums of columns and values collide (as a linear hash would)
    rows = block.rows.long()
    halves = [torch.zeros(batch, dtype=torch.int64, device=dev).index_add_(0, rows, _mix32(key ^ salt)) % _HASH_MOD
              for salt in (0, 0x5BD1E995)]
    total = halves[0] * (_HASH_MOD + 1) + halves[1] + 1
    present = torch.bincount(rows, minlength=batch) > 0
    return torch.where(present, total, torch.zeros_like(total))


def _active(x: Any) -> np.ndarray:
    """The columns of a sparse matrix with a non-zero entry: the only ones a fit can
    weight (the others stay at zero under L2), so the solver sees those alone; a text
    vocabulary and its bigram buckets are mostly empty."""
    return np.flatnonzero(np.asarray((x != 0).sum(0)).ravel())


def _solve(model: Any, x: Any, y: np.ndarray, c: float, active: np.ndarray, width: int,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``model`` at ``C = c`` on the columns ``active`` of the rows; ``(W (width, k), b (k,))``."""
    model.set_params(C=c).fit(x, y)
    w_a, b_a = _as_logit_map(model, k)
    w_full = np.zeros((width, k))
    w_full[active] = w_a
    return w_full, b_a


def _as_logit_map(clf: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W (F, k), b (k,))`` with ``softmax(x W + b)`` equal to the classifier's
    probabilities; classes it never saw get :data:`_ABSENT`."""
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one score for the second class; split it evenly
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    w = np.zeros((coef.shape[1], k))
    b = np.full(k, _ABSENT)
    w[:, clf.classes_] = coef.T
    b[clf.classes_] = intercept
    return w, b


def _scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(accuracy, mean log loss)`` of logits ``(N, K)`` against labels ``(N,)``."""
    return float((logits.argmax(1) == y).mean()), _log_loss(logits, y)


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    return float((np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]).mean())
