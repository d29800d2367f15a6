"""Relation-level graph convolutions with one shared contract.

Every module here is meant to sit on a single relation of the multimodal
heterograph and follows the same call convention::

    out = conv(graph, feat)          # feat: Tensor or (src, dst) pair
    out.shape == (graph.num_dst_nodes(), out_feats)

so that :class:`graphmm.nn.HeteroGNN` can swap them by name. All of them accept
nodes with zero in-degree and relations with zero edges, because a sample
without audio simply has no ``frame`` edges.
"""

from __future__ import annotations

from collections.abc import Callable

import dgl
import dgl.function as fn
import torch
from dgl.nn.functional import edge_softmax
from dgl.nn.pytorch import GraphConv, SAGEConv
from dgl.utils import expand_as_pair
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "FeatInput",
    "GATLayer",
    "GCNLayer",
    "SAGELayer",
    "SumConv",
    "get_activation",
]

#: Node features of a relation: one tensor (same node type on both ends) or a
#: ``(src, dst)`` pair (bipartite, e.g. ``word -> patch``).
FeatInput = Tensor | tuple[Tensor, Tensor]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "elu": nn.functional.elu,
    "leaky_relu": nn.functional.leaky_relu,
    "silu": nn.functional.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def get_activation(
    activation: str | Callable[[Tensor], Tensor] | None,
) -> Callable[[Tensor], Tensor] | None:
    """Resolve an activation given by name, callable or ``None``.

    Args:
        activation: One of :data:`ACTIVATIONS` (``"relu"``, ``"gelu"``, ...), a
            callable, or ``None``/``"none"`` for the identity.

    Returns:
        The callable, or ``None`` for the identity.

    Raises:
        ValueError: If the name is unknown; the message lists the known names.
    """
    if activation is None:
        return None
    if callable(activation):
        return activation
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be a name, a callable or None, got {type(activation).__name__}"
        )
    key = activation.lower()
    if key in ("none", "identity", "linear"):
        return None
    if key not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {activation!r}; choose one of "
            f"{sorted(ACTIVATIONS)} or None."
        )
    return ACTIVATIONS[key]


def _split_pair(graph: dgl.DGLGraph, feat: FeatInput) -> tuple[Tensor, Tensor]:
    """Return ``(src, dst)`` features and check them against ``graph``."""
    feat_src, feat_dst = expand_as_pair(feat, graph)
    n_src, n_dst = graph.num_src_nodes(), graph.num_dst_nodes()
    if feat_src.shape[0] != n_src or feat_dst.shape[0] != n_dst:
        hint = (
            " The relation is bipartite: pass a (src_feat, dst_feat) pair."
            if isinstance(feat, Tensor)
            else ""
        )
        raise ValueError(
            f"Feature rows do not match the graph: got src {tuple(feat_src.shape)} and "
            f"dst {tuple(feat_dst.shape)} for {n_src} source and {n_dst} "
            f"destination nodes.{hint}"
        )
    return feat_src, feat_dst


class SumConv(nn.Module):
    r"""Sum aggregation with a self term (GIN with :math:`\epsilon = 0`).

    From `How Powerful are Graph Neural Networks? <https://arxiv.org/abs/1810.00826>`__.
    Without the linear map (the default) the layer has no parameters and computes
    exactly

    .. math::

        h_i' = \sigma\Big(h_i + \sum_{j \in \mathcal{N}(i)} h_j\Big)

    where :math:`\mathcal{N}(i)` are the in-neighbours of :math:`i` (a multi-edge
    counts once per edge) and :math:`\sigma` is ``activation`` (ReLU by default).
    With ``linear=True`` an affine map is applied to the sum, before the
    activation:

    .. math::

        h_i' = \sigma\Big(W\big(h_i + \sum_{j \in \mathcal{N}(i)} h_j\big) + b\Big)

    On a bipartite relation :math:`h_i` is the destination feature and
    :math:`h_j` the source features.

    Args:
        in_feats: Input width (an int, or a ``(src, dst)`` pair of equal ints).
            Optional when ``linear=False``.
        out_feats: Output width. Without the linear map it must equal
            ``in_feats`` (or be ``None``).
        linear: Apply :math:`W \cdot + b` after the sum. Default: ``False``.
        bias: Learn :math:`b` when ``linear=True``. Default: ``True``.
        activation: :math:`\sigma`; a name (see :func:`get_activation`), a
            callable, or ``None`` for the identity. Default: ``"relu"``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import SumConv
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0, 1], [1, 2]),
        ...     ("word", "cross", "patch"): ([0, 2], [1, 1]),
        ...     ("frame", "aligned", "word"): ([], []),
        ... }, num_nodes_dict={"word": 3, "patch": 2, "frame": 0})
        >>> conv = SumConv()
        >>> conv(g["word", "next", "word"], torch.ones(3, 4)).shape
        torch.Size([3, 4])
        >>> conv(g["word", "cross", "patch"], (torch.ones(3, 4), torch.ones(2, 4)))[1]
        tensor([3., 3., 3., 3.])
        >>> SumConv(4, 8, linear=True)(g["frame", "aligned", "word"],
        ...                            (torch.ones(0, 4), torch.ones(3, 4))).shape
        torch.Size([3, 8])

    Shapes:
        - Input: ``(N_src, D_in)`` or a pair ``((N_src, D_in), (N_dst, D_in))``.
        - Output: ``(N_dst, D_out)``; ``D_out = D_in`` when ``linear=False``.
    """

    def __init__(
        self,
        in_feats: int | tuple[int, int] | None = None,
        out_feats: int | None = None,
        *,
        linear: bool = False,
        bias: bool = True,
        activation: str | Callable[[Tensor], Tensor] | None = "relu",
    ) -> None:
        super().__init__()
        in_src, in_dst = expand_as_pair(in_feats)
        if in_src != in_dst:
            raise ValueError(
                f"SumConv adds source and destination features, so their widths must "
                f"match; got in_feats={in_feats}. Project both node types to one width first."
            )
        if linear:
            if in_src is None or out_feats is None:
                raise ValueError("SumConv(linear=True) needs in_feats and out_feats.")
        elif in_src is not None and out_feats is not None and in_src != out_feats:
            raise ValueError(
                f"SumConv without a linear map keeps the width, but in_feats={in_src} "
                f"!= out_feats={out_feats}; pass linear=True to change the width."
            )
        self._in_feats = in_src
        self._out_feats = out_feats if out_feats is not None else in_src
        self._linear = bool(linear)
        self.activation = get_activation(activation)
        if linear:
            self.weight = nn.Parameter(torch.empty(in_src, out_feats))
            if bias:
                self.bias = nn.Parameter(torch.empty(out_feats))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weight and zero bias (no-op without the linear map)."""
        if self.weight is not None:
            nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"in_feats={self._in_feats}, out_feats={self._out_feats}, linear={self._linear}"

    def forward(self, graph: dgl.DGLGraph, feat: FeatInput) -> Tensor:
        """Aggregate in-neighbours, add the node itself, then map and activate.

        Args:
            graph: A single-relation graph (homogeneous or bipartite).
            feat: Node features, a tensor or a ``(src, dst)`` pair.

        Returns:
            Updated destination features ``(N_dst, D_out)``.
        """
        with graph.local_scope():
            feat_src, feat_dst = _split_pair(graph, feat)
            if feat_src.shape[1:] != feat_dst.shape[1:]:
                raise ValueError(
                    f"SumConv needs equal source/destination widths, got "
                    f"{tuple(feat_src.shape[1:])} and {tuple(feat_dst.shape[1:])}."
                )
            graph.srcdata["h"] = feat_src
            graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "neigh"))
            rst = feat_dst + graph.dstdata["neigh"]
            if self.weight is not None:
                rst = rst @ self.weight
                if self.bias is not None:
                    rst = rst + self.bias
            if self.activation is not None:
                rst = self.activation(rst)
            return rst


class GCNLayer(nn.Module):
    r"""Graph convolution of Kipf & Welling on one relation.

    From `Semi-Supervised Classification with Graph Convolutional Networks
    <https://arxiv.org/abs/1609.02907>`__, with symmetric normalisation:

    .. math::

        h_i' = \sigma\Big(b + \sum_{j \in \mathcal{N}(i)}
               \frac{1}{\sqrt{d^{out}_j}\sqrt{d^{in}_i}} W h_j\Big)

    Degrees are clamped to at least 1, so a node without in-edges receives
    :math:`\sigma(b)` and a relation with zero edges is valid. On a bipartite
    relation :math:`d^{out}` counts source and :math:`d^{in}` destination degrees;
    the destination feature only fixes the output rows (there is no self term).

    Args:
        in_feats: Input width (int, or ``(src, dst)`` pair; the source width is used).
        out_feats: Output width.
        norm: ``"both"``, ``"right"``, ``"left"`` or ``"none"``. Default: ``"both"``.
        bias: Learn :math:`b`. Default: ``True``.
        activation: :math:`\sigma`; name, callable or ``None``. Default: ``None``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import build_conv
        >>> g = dgl.heterograph({
        ...     ("word", "cross", "patch"): ([0, 2], [1, 1]),
        ...     ("frame", "aligned", "word"): ([], []),
        ... }, num_nodes_dict={"word": 3, "patch": 2, "frame": 0})
        >>> conv = build_conv("gcn", 4, 6)
        >>> conv(g["word", "cross", "patch"], (torch.randn(3, 4), torch.randn(2, 4))).shape
        torch.Size([2, 6])

    Shapes:
        - Input: ``(N_src, D_in)`` or a ``(src, dst)`` pair.
        - Output: ``(N_dst, out_feats)``.
    """

    def __init__(
        self,
        in_feats: int | tuple[int, int],
        out_feats: int,
        *,
        norm: str = "both",
        bias: bool = True,
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        in_src, _ = expand_as_pair(in_feats)
        self._in_feats = in_src
        self._out_feats = out_feats
        self.conv = GraphConv(
            in_src,
            out_feats,
            norm=norm,
            bias=bias,
            activation=get_activation(activation),
            allow_zero_in_degree=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise the wrapped convolution."""
        self.conv.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: FeatInput) -> Tensor:
        """Apply the normalised convolution.

        Args:
            graph: A single-relation graph.
            feat: Node features, a tensor or a ``(src, dst)`` pair.

        Returns:
            ``(N_dst, out_feats)``.
        """
        feat_src, feat_dst = _split_pair(graph, feat)
        return self.conv(graph, (feat_src, feat_dst))


class GATLayer(nn.Module):
    r"""Multi-head graph attention on one relation.

    From `Graph Attention Networks <https://arxiv.org/abs/1710.10903>`__. For each
    head :math:`k`:

    .. math::

        \alpha^{k}_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
            \Big(\mathrm{LeakyReLU}\big(a_l^{k\top} W^k h_j + a_r^{k\top} W^k h_i\big)\Big),
        \qquad
        z^k_i = \sum_{j \in \mathcal{N}(i)} \alpha^k_{ij} W^k h_j + b^k

    (adding the two halves :math:`a_l, a_r` equals the paper's score on the
    concatenation :math:`[W h_i \| W h_j]`). Heads are combined as

    .. math::

        h_i' = \sigma\big(\Vert_{k=1}^{K} z^k_i\big) \;\text{(concat)}
        \quad\text{or}\quad
        h_i' = \sigma\Big(\tfrac{1}{K}\textstyle\sum_k z^k_i\Big) \;\text{(mean)}.

    With ``concat=True`` each head has width ``out_feats // heads`` so the output
    keeps width ``out_feats``; ``heads`` must divide ``out_feats``. With
    ``concat=False`` each head has width ``out_feats``. A node without in-edges
    receives :math:`\sigma(b)`. Bipartite inputs given as an int ``in_feats`` share
    :math:`W` between source and destination; pass a ``(src, dst)`` pair of widths
    to learn separate projections.

    It computes DGL's ``GATConv`` (a test checks outputs, attention and gradients
    against it) with two savings: a relation within one node type projects its
    nodes once, and the scores come from :math:`h^\top (W^{k\top} a^k)`, one
    ``(N, D_in) @ (D_in, K)`` product instead of an ``(N, K, F)`` temporary. The
    edge scores, their softmax over in-edges and the weighted sum run in DGL's
    kernels (``u_add_v``, ``edge_softmax``, ``u_mul_e_sum``).

    Args:
        in_feats: Input width, or a ``(src, dst)`` pair of widths.
        out_feats: Output width.
        heads: Number of heads :math:`K`. Default: ``4``.
        concat: Concatenate (``True``) or average (``False``) heads. Default: ``True``.
        feat_drop: Dropout on input features. Default: ``0.0``.
        attn_drop: Dropout on attention weights. Default: ``0.0``.
        negative_slope: LeakyReLU slope. Default: ``0.2``.
        bias: Learn :math:`b`. Default: ``True``.
        activation: :math:`\sigma`; name, callable or ``None``. Default: ``None``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import build_conv
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0, 1], [1, 2]),
        ...     ("frame", "aligned", "word"): ([0], [2]),
        ...     ("patch", "adjacent", "patch"): ([], []),
        ... }, num_nodes_dict={"word": 3, "patch": 0, "frame": 1})
        >>> conv = build_conv("gat", 8, 8, heads=2)
        >>> out, attn = conv(g["word", "next", "word"], torch.randn(3, 8), get_attention=True)
        >>> out.shape, attn.shape
        (torch.Size([3, 8]), torch.Size([2, 2]))

    Shapes:
        - Input: ``(N_src, D_in)`` or a ``(src, dst)`` pair.
        - Output: ``(N_dst, out_feats)``; with ``get_attention=True`` also the
          attention ``(E, heads)``.
    """

    #: The layer can return its attention (used by HeteroGNN).
    supports_attention: bool = True

    def __init__(
        self,
        in_feats: int | tuple[int, int],
        out_feats: int,
        *,
        heads: int = 4,
        concat: bool = True,
        feat_drop: float = 0.0,
        attn_drop: float = 0.0,
        negative_slope: float = 0.2,
        bias: bool = True,
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"GAT heads must be >= 1, got {heads}.")
        if concat and out_feats % heads != 0:
            raise ValueError(
                f"GAT with concat=True splits out_feats={out_feats} across heads={heads}, "
                f"but {heads} does not divide {out_feats}. Choose heads that divide the "
                f"hidden width, or set concat=False to average heads of full width."
            )
        self._in_feats = in_feats
        self._out_feats = out_feats
        self._heads = heads
        self._concat = bool(concat)
        self._head_feats = out_feats // heads if concat else out_feats
        self.activation = get_activation(activation)
        width = heads * self._head_feats
        if isinstance(in_feats, (tuple, list)):
            self.fc_src = nn.Linear(int(in_feats[0]), width, bias=False)
            self.fc_dst = nn.Linear(int(in_feats[1]), width, bias=False)
        else:
            self.fc = nn.Linear(int(in_feats), width, bias=False)
        self.attn_l = nn.Parameter(torch.empty(heads, self._head_feats))
        self.attn_r = nn.Parameter(torch.empty(heads, self._head_feats))
        self.bias = nn.Parameter(torch.empty(width)) if bias else None
        self.feat_drop = nn.Dropout(feat_drop)
        self.attn_drop = nn.Dropout(attn_drop)
        self.negative_slope = negative_slope
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal projections and attention vectors (gain of ReLU), zero bias."""
        gain = nn.init.calculate_gain("relu")
        for fc in (getattr(self, name, None) for name in ("fc", "fc_src", "fc_dst")):
            if fc is not None:
                nn.init.xavier_normal_(fc.weight, gain=gain)
        # fan-in/fan-out of a (1, heads, head_feats) vector, as the attention vectors are usually shaped
        for a in (self.attn_l, self.attn_r):
            nn.init.xavier_normal_(a.view(1, *a.shape), gain=gain)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"heads={self._heads}, concat={self._concat}, negative_slope={self.negative_slope}"

    def _score_weights(self, fc: nn.Linear, attn: Tensor) -> Tensor:
        """``(D_in, heads)``: column ``k`` is :math:`W^{k\top} a^k`, so that the score
        :math:`a^{k\top} W^k h` is one product ``h @ M`` without the ``(N, heads, F)``
        elementwise temporary."""
        w = fc.weight.view(self._heads, self._head_feats, -1)  # (K, F, D_in)
        return (w * attn.unsqueeze(-1)).sum(1).t()

    def forward(
        self, graph: dgl.DGLGraph, feat: FeatInput, get_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend over in-neighbours and combine heads.

        Args:
            graph: A single-relation graph.
            feat: Node features, a tensor or a ``(src, dst)`` pair.
            get_attention: Also return the attention weights.

        Returns:
            ``(N_dst, out_feats)``, and the attention ``(E, heads)`` if requested.
        """
        feat_src, feat_dst = _split_pair(graph, feat)
        h_src = self.feat_drop(feat_src)
        if feat_src is feat_dst:  # one node type: project once
            h_dst = h_src
        elif graph.is_block and isinstance(feat, Tensor):  # a block's destinations lead its sources
            h_dst = h_src[: graph.num_dst_nodes()]
        else:
            h_dst = self.feat_drop(feat_dst)
        fc_src, fc_dst = (self.fc_src, self.fc_dst) if hasattr(self, "fc_src") else (self.fc, self.fc)
        z_src = fc_src(h_src).view(-1, self._heads, self._head_feats)  # (N_src, K, F)
        el = h_src @ self._score_weights(fc_src, self.attn_l)  # (N_src, K)
        er = h_dst @ self._score_weights(fc_dst, self.attn_r)  # (N_dst, K)
        # DGL's fused kernels: the score per edge, its softmax over each node's
        # in-edges, and the weighted sum of the source projections
        # in place where autograd allows it: on graphs of millions of nodes every fresh
        # full-size temporary costs more than the arithmetic on it
        e = nn.functional.leaky_relu(dgl.ops.u_add_v(graph, el, er), self.negative_slope,
                                     inplace=not torch.is_grad_enabled())  # (E, K)
        attn = self.attn_drop(edge_softmax(graph, e))
        out = dgl.ops.u_mul_e_sum(graph, z_src, attn.unsqueeze(-1))  # (N_dst, K, F)
        if self.bias is not None:
            # a new tensor whose backward keeps neither it nor anything it will change
            out = out.add_(self.bias.view(1, self._heads, self._head_feats))
        out = out.flatten(1) if self._concat else out.mean(dim=1)
        if self.activation is not None:
            out = self.activation(out)
        if get_attention:
            return out, attn
        return out


class SAGELayer(nn.Module):
    r"""GraphSAGE with mean aggregation on one relation.

    From `Inductive Representation Learning on Large Graphs
    <https://arxiv.org/abs/1706.02216>`__:

    .. math::

        h_i' = \sigma\Big(W_{self} h_i + W_{neigh}
               \tfrac{1}{\max(1, |\mathcal{N}(i)|)} \sum_{j \in \mathcal{N}(i)} h_j + b\Big)

    A node without in-edges keeps only the self term, so zero in-degree and
    zero-edge relations are valid.

    Args:
        in_feats: Input width, or a ``(src, dst)`` pair of widths.
        out_feats: Output width.
        feat_drop: Dropout on input features. Default: ``0.0``.
        bias: Learn :math:`b`. Default: ``True``.
        activation: :math:`\sigma`; name, callable or ``None``. Default: ``None``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import build_conv
        >>> g = dgl.heterograph({
        ...     ("patch", "rev_cross", "word"): ([0], [1]),
        ...     ("frame", "next", "frame"): ([], []),
        ... }, num_nodes_dict={"word": 2, "patch": 1, "frame": 0})
        >>> conv = build_conv("sage", (4, 4), 5)
        >>> conv(g["patch", "rev_cross", "word"], (torch.randn(1, 4), torch.randn(2, 4))).shape
        torch.Size([2, 5])

    Shapes:
        - Input: ``(N_src, D_in)`` or a ``(src, dst)`` pair.
        - Output: ``(N_dst, out_feats)``.
    """

    def __init__(
        self,
        in_feats: int | tuple[int, int],
        out_feats: int,
        *,
        feat_drop: float = 0.0,
        bias: bool = True,
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        in_pair = tuple(in_feats) if isinstance(in_feats, (tuple, list)) else in_feats
        self._in_feats = in_pair
        self._out_feats = out_feats
        self.conv = SAGEConv(
            in_pair,
            out_feats,
            "mean",
            feat_drop=feat_drop,
            bias=bias,
            activation=get_activation(activation),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise the wrapped layer."""
        self.conv.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: FeatInput) -> Tensor:
        """Combine each node with the mean of its in-neighbours.

        Args:
            graph: A single-relation graph.
            feat: Node features, a tensor or a ``(src, dst)`` pair.

        Returns:
            ``(N_dst, out_feats)``.
        """
        feat_src, feat_dst = _split_pair(graph, feat)
        return self.conv(graph, (feat_src, feat_dst))

