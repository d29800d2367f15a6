"""End-to-end graph classifier: encoders -> heterogeneous GNN -> readout -> head."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import NodeEncoders
from .heads import ClassificationHead
from .hetero import CanonicalEType, HeteroGNN, as_canonical_etypes
from .readout import TypeReadout
from .wide import WideFit, WidePath, check_weightings, parse_wide

__all__ = ["GraphClassifier"]


class GraphClassifier(nn.Module):
    r"""Classify multimodal heterographs (text, image and audio nodes in one graph).

    .. math::

        h^{0}_t &= \mathrm{Enc}_t(x_t) \\
        h^{L}   &= \mathrm{HeteroGNN}(G, h^{0}) \\
        z_b     &= \mathrm{Fuse}\big(\{\mathrm{Pool}_t(h^{L}_t, G_b)\}_t,\; m_b\big) \\
        y_b     &= \mathrm{Head}(z_b) + \mathrm{Wide}(G_b)

    where :math:`m_b` marks the node types present in graph :math:`b`; a sample
    that lacks a modality (or every modality) still gives finite logits. The wide
    term (off by default, ``wide=None``: zero) is :class:`WidePath`, a linear model of
    the sample's own node inputs (token and bigram TF-IDF, pixels by grid cell, mel
    statistics), fitted to its optimum before the GNN trains (:meth:`fit_wide`); the
    head then starts at zero, so the model starts as that linear model and the GNN
    learns what it misses. Only
    node types listed in ``in_dims`` and relations between them are used.
    All arguments are plain values, so Hydra can build the model with
    ``in_dims``, ``canonical_etypes`` and ``num_classes`` supplied at run time.
    The defaults below are the model ``python -m graphmm.train`` trains: the schema
    :class:`graphmm.config.ModelConf` reads them from this signature.

    Args:
        in_dims: Raw size per node type (see :class:`NodeEncoders`).
        canonical_etypes: Relations ``(src, rel, dst)`` of the graph schema.
        num_classes: Number of logits.
        hidden: Node state width :math:`d`. Default: ``64``.
        num_layers: Message-passing layers; 3 lets summary nodes link two modalities
            (``patch -> summary -> summary -> word``). Default: ``3``.
        conv: Registered relation conv (see :func:`list_convs`). Default: ``"gat"``.
        conv_kwargs: Options for every relation conv, e.g. ``{"heads": 4}``.
            Default: ``None``.
        aggregate: Cross-relation aggregation (``"sum"``, ``"mean"``, ``"max"``,
            ``"min"``). Default: ``"sum"``.
        dropout: Dropout in the GNN and the head. Default: ``0.1``.
        activation: GNN activation. Default: ``"relu"``.
        pool: Per-type pooling (``"mean"``, ``"max"``, ``"attention"``).
            Default: ``"mean"``.
        fusion: Type fusion (``"concat"``, masked, or ``"attention"``). Default: ``"concat"``.
        head_hidden: Hidden width of the head, ``None`` for linear. Default: ``None``.
        readout_ntypes: Node types pooled by the readout. Default ``None``: every type
            but ``summary`` (summary nodes pass messages between modalities and are not
            pooled themselves).
        encoders: Per node type, where input features come from (see the
            ``featurizers`` of :class:`NodeEncoders`, e.g. ``{"patch": {"type":
            "open_clip", "name": "ViT-B-32", "checkpoint": path}}``). Default: ``None``
            (all learned).
        wide: The wide path's terms (see :func:`~graphmm.nn.wide.parse_wide`): ``None``
            (off), ``"auto"`` (each modality's own: token and bigram TF-IDF of ``word``
            nodes, pixels by grid cell of ``patch`` nodes, mel means and spreads of
            ``frame`` nodes), ``"words"``/``"ngrams"`` (``word`` nodes only), or a
            mapping ``{ntype: kind}``. Default: ``None``.
        wide_buckets: Hash buckets for the wide path's bigrams. Default: ``262144``.
        wide_c: Inverse L2 strengths the wide path's fit tries; cross-validation on the
            training rows picks one (:meth:`WidePath.fit`). Default: ``(0.25, 1.0, 4.0, 16.0, 64.0)``.
        wide_folds: Folds of that cross-validation and of the out-of-fold linear logits
            the GNN trains against (``0`` or ``1``: none; validation picks ``C`` and the
            GNN trains against the fitted logits themselves). Default: ``5``.
        wide_weighting: Weightings of the id terms' counts the fit tries beside each
            ``C`` (``"tfidf"``, ``"nb"``: NBSVM's log-count ratios), picked with it. Default: ``("tfidf", "nb")``.
        fused: Run each GNN layer's relations as one fused computation where the conv
            allows it (see :class:`HeteroGNN`); the same function and parameters as one
            module per relation (``False``). Default: ``True``.
        modality_heads: Weight :math:`\lambda` of auxiliary per-modality losses: a linear
            head per pooled node type classifies each sample from that type's pooled
            states (after message passing, so they also carry what reached them from
            other modalities), and training adds :math:`\lambda` times the mean over the
            batch's types of their cross-entropy on the samples that have the type
            (:meth:`modality_loss`), so that no modality's features stay idle behind
            another's. The heads are not used for prediction. ``0``: none. Default: ``0.0``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import GraphClassifier
        >>> def sample(nw, np_, nf):
        ...     g = dgl.heterograph({
        ...         ("word", "next", "word"): (list(range(max(nw - 1, 0))), list(range(1, nw))),
        ...         ("patch", "adjacent", "patch"): ([], []),
        ...         ("frame", "next", "frame"): ([], []),
        ...         ("frame", "aligned", "word"): ([], []),
        ...     }, num_nodes_dict={"word": nw, "patch": np_, "frame": nf})
        ...     g.nodes["word"].data.update({"token": torch.randint(0, 20, (nw,)),
        ...                                  "pos": torch.arange(nw)})
        ...     g.nodes["patch"].data.update({"pixels": torch.rand(np_, 12),
        ...                                   "grid": torch.rand(np_, 2)})
        ...     g.nodes["frame"].data.update({"mel": torch.randn(nf, 8), "tpos": torch.rand(nf)})
        ...     return g
        >>> g = dgl.batch([sample(4, 0, 3), sample(0, 2, 0)])  # text+audio, image only
        >>> model = GraphClassifier({"word": 20, "patch": 12, "frame": 8},
        ...                         g.canonical_etypes, num_classes=3, hidden=16)
        >>> model(g).shape
        torch.Size([2, 3])
        >>> model.encode(g)["frame"].shape
        torch.Size([3, 16])

    Shapes:
        - Input: batched heterograph with :math:`B` graphs.
        - Output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        canonical_etypes: Sequence[Sequence[str]],
        num_classes: int,
        *,
        hidden: int = 64,
        num_layers: int = 3,
        conv: str = "gat",
        conv_kwargs: Mapping[str, Any] | None = None,
        aggregate: str = "sum",
        dropout: float = 0.1,
        activation: str = "relu",
        pool: str = "mean",
        fusion: str = "concat",
        head_hidden: int | None = None,
        readout_ntypes: Sequence[str] | None = None,
        encoders: Mapping[str, Mapping[str, Any]] | None = None,
        wide: str | Mapping[str, str] | None = None,
        wide_buckets: int = 262144,
        wide_c: Sequence[float] = (0.25, 1.0, 4.0, 16.0, 64.0),
        wide_folds: int = 5,
        wide_weighting: Sequence[str] = ("tfidf", "nb"),
        fused: bool = True,
        modality_heads: float = 0.0,
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("in_dims is empty; give the raw size of at least one node type.")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.in_dims = in_dims
        self.num_classes = num_classes
        self.hidden = hidden
        # Sorted so the concat layout does not depend on the order of in_dims.
        self.ntypes = sorted(in_dims)
        self.canonical_etypes: list[CanonicalEType] = [
            cet
            for cet in as_canonical_etypes(canonical_etypes)
            if cet[0] in in_dims and cet[2] in in_dims
        ]
        if readout_ntypes is None:
            # summary nodes carry messages between modalities; pooling them as well
            # would give the head a second, already mixed view of every modality
            readout_ntypes = [t for t in self.ntypes if t != "summary"] or self.ntypes
        pooled = sorted(str(t) for t in readout_ntypes)
        unknown = sorted(set(pooled) - set(self.ntypes))
        if unknown or not pooled:
            raise ValueError(f"readout_ntypes {unknown or pooled} must name node types of in_dims: {self.ntypes}")
        self.encoders = NodeEncoders(in_dims, hidden, featurizers=encoders)
        self.gnn = HeteroGNN(
            self.canonical_etypes,
            hidden,
            num_layers=num_layers,
            conv=conv,
            conv_kwargs=dict(conv_kwargs) if conv_kwargs is not None else None,
            aggregate=aggregate,
            dropout=dropout,
            activation=activation,
            output_ntypes=pooled,
            fused=fused,
        )
        self.readout = TypeReadout(pooled, hidden, pool=pool, fusion=fusion)
        self.head = ClassificationHead(
            self.readout.out_dim, num_classes, hidden=head_hidden, dropout=dropout
        )
        terms = parse_wide(wide, self.ntypes)
        if wide is not None and not terms:
            raise ValueError(f"model.wide={wide!r}: no node type of this graph ({self.ntypes}) has a wide term")
        if wide_folds < 0 or not wide_c or any(float(c) <= 0 for c in wide_c):
            raise ValueError(f"model.wide_folds must be >= 0 and model.wide_c a non-empty list of C > 0, got "
                             f"{wide_folds} and {list(wide_c)}")
        self.wide = WidePath(in_dims, num_classes, terms, buckets=wide_buckets) if terms else None
        self.wide_c, self.wide_folds = tuple(float(c) for c in wide_c), int(wide_folds)
        self.wide_weighting = tuple(check_weightings(wide_weighting))  # a config error before any data is read
        self.modality_weight = float(modality_heads)
        self.modality_heads = _modality_heads(pooled, hidden, num_classes, modality_heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise every submodule."""
        self.encoders.reset_parameters()
        self.gnn.reset_parameters()
        self.readout.reset_parameters()
        self.head.reset_parameters()
        for head in (self.modality_heads or {}).values():
            head.reset_parameters()
        if self.wide is not None:
            self.wide.reset_parameters()
            # the model starts as the (fitted) linear model; the graph learns the rest
            nn.init.zeros_(self.head.fc_out.weight)
            nn.init.zeros_(self.head.fc_out.bias)

    def fit_wide(self, train: Iterable[tuple[dgl.DGLGraph, Tensor]],
                 val: Iterable[tuple[dgl.DGLGraph, Tensor]]) -> WideFit | None:
        """Fit the wide path (``wide_c``, ``wide_folds``, ``wide_weighting``; see :meth:`WidePath.fit`) on
        batches ``(graph, labels)`` of the training and validation splits; ``None``
        without a wide path."""
        if self.wide is None:
            return None
        return self.wide.fit(train, val, cs=self.wide_c, folds=self.wide_folds, weightings=self.wide_weighting)

    def encode(self, g: dgl.DGLGraph) -> dict[str, Tensor]:
        """Node states after message passing, ``dict[ntype, (N_ntype, hidden)]``."""
        return self.gnn(g, self.encoders(g))

    def forward(self, g: dgl.DGLGraph, modality_logits: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Logits ``(B, num_classes)`` for a (batched) heterograph.

        With ``modality_logits`` (a model built with ``modality_heads > 0``; training
        calls it so, through any wrapper such as DDP) also each pooled node type's own
        logits ``dict[ntype, (B, num_classes)]``, for :meth:`modality_loss`.
        """
        states = self.encode(g)
        if not modality_logits:
            return self._logits(g, states)
        if self.modality_heads is None:
            raise ValueError("modality_logits=True needs a model built with modality_heads > 0")
        pooled, present = self.readout.pool_types(g, states)  # pooled once, for both heads
        logits = self._head_logits(g, self.readout.fuse(pooled, present))
        return logits, {t: head(pooled[t]) for t, head in self.modality_heads.items()}

    def modality_loss(self, g: dgl.DGLGraph, per_type: Mapping[str, Tensor], y: Tensor,
                      label_smoothing: float = 0.0) -> Tensor:
        r"""The auxiliary loss of ``modality_heads``:

        .. math::

            \lambda \frac{1}{|T_B|} \sum_{t \in T_B} \frac{\sum_b m_{b,t}\,\mathrm{CE}(W_t p_{b,t} + c_t,\, y_b)}{\sum_b m_{b,t}}

        over the pooled types :math:`T_B` that some sample of the batch has, with presence
        :math:`m_{b,t}` (sample :math:`b` has nodes of type :math:`t`) and pooled states
        :math:`p_{b,t}`; so the weight of each present type does not depend on which
        others the batch lacks. ``0`` for a batch without any pooled type.

        Args:
            g: The batch the logits came from (for the presence mask).
            per_type: ``dict[ntype, (B, num_classes)]`` of :meth:`forward`.
            y: Labels ``(B,)``.
            label_smoothing: As the main loss's.

        Returns:
            A scalar.
        """
        present = self.readout.presence(g).to(next(iter(per_type.values())).dtype)  # (B, T)
        ce = torch.stack([F.cross_entropy(per_type[t], y, reduction="none", label_smoothing=label_smoothing)
                          for t in self.readout.ntypes], 1)  # (B, T)
        count = present.sum(0)  # (T,)
        per_type_loss = (ce * present).sum(0) / count.clamp(min=1)
        return self.modality_weight * per_type_loss.sum() / (count > 0).sum().clamp(min=1)

    def _logits(self, g: dgl.DGLGraph, states: Mapping[str, Tensor]) -> Tensor:
        return self._head_logits(g, self.readout(g, states))

    def _head_logits(self, g: dgl.DGLGraph, z: Tensor) -> Tensor:
        """The head on the fused readout ``z (B, out_dim)``, plus the wide path's logits."""
        logits = self.head(z)
        return logits if self.wide is None else logits + self.wide(g)

    def explain(self, g: dgl.DGLGraph) -> tuple[Tensor, dict[CanonicalEType, list[Tensor]]]:
        r"""Logits and the attention of every relation in every layer (``conv="gat"``).

        Runs the same computation as :meth:`forward` (so in ``eval()`` mode the logits
        are equal) and also returns, for each relation :math:`(s, r, t)` and layer
        :math:`\ell`, the weights :math:`\alpha^{\ell,k}_{ij}` of edge :math:`j \to i`
        and head :math:`k`. Each relation has its own softmax, so for every
        destination node with at least one in-edge of that relation the weights of
        its in-edges sum to 1 per head. The last layer runs only the relations into
        pooled node types, so relations into ``summary`` have one entry fewer. It
        neither switches to ``eval()`` nor disables gradients: call it under
        ``torch.no_grad()`` on a model in ``eval()`` mode for a deterministic result.

        Args:
            g: A (batched) heterograph.

        Returns:
            ``(logits, attention)``: logits ``(B, num_classes)`` and
            ``dict[canonical_etype, list[(E_rel, heads)]]`` with one entry per layer
            that ran the relation; edge order is ``g.edges(etype=canonical_etype)``.

        Raises:
            ValueError: The model's conv computes no attention (e.g. ``"gcn"``);
                train with ``model.conv=gat``.

        Example:
            >>> import torch
            >>> from graphmm.data import Sample
            >>> from graphmm.graphs import MultimodalGraphBuilder
            >>> from graphmm.nn import GraphClassifier
            >>> builder = MultimodalGraphBuilder()
            >>> g = builder(Sample(text="a seven", image=torch.rand(1, 8, 8)))
            >>> model = GraphClassifier(builder.in_dims, builder.canonical_etypes, 10,
            ...                         hidden=16, conv_kwargs={"heads": 2}).eval()
            >>> logits, attn = model.explain(g)
            >>> logits.shape, attn[("patch", "to_summary", "summary")][0].shape
            (torch.Size([1, 10]), torch.Size([4, 2]))

        Shapes:
            - Input: batched heterograph with :math:`B` graphs.
            - Output: ``(B, num_classes)`` and ``(E_rel, heads)`` per relation and layer.
        """
        if not self.gnn.supports_attention:
            raise ValueError(
                f"explain() needs attention weights, but this model uses conv={self.gnn.conv!r}, "
                f"which computes none; train with model.conv=gat to explain predictions."
            )
        states, attention = self.gnn(g, self.encoders(g), return_attention=True)
        return self._logits(g, states), attention


def _modality_heads(ntypes: Sequence[str], hidden: int, num_classes: int, weight: float) -> nn.ModuleDict | None:
    """``GraphClassifier(modality_heads=weight)``'s linear head per pooled type, or ``None`` at 0."""
    if not weight >= 0:
        raise ValueError(f"model.modality_heads must be >= 0, got {weight}")
    return nn.ModuleDict({t: nn.Linear(hidden, num_classes) for t in ntypes}) if weight > 0 else None
