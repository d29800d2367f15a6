"""Task heads on top of the fused graph vector."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .conv import get_activation

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    r"""Linear or two-layer MLP classifier.

    .. math::

        y = W_2\,\mathrm{Dropout}\big(\sigma(W_1 z + b_1)\big) + b_2
        \quad\text{or, with } \texttt{hidden=None},\quad
        y = W\,\mathrm{Dropout}(z) + b

    Args:
        in_dim: Width of the input vector :math:`z`.
        num_classes: Number of logits.
        hidden: Width of the hidden layer, or ``None`` for a linear head.
            Default: ``None``.
        dropout: Dropout probability. Default: ``0.0``.
        activation: :math:`\sigma` for the hidden layer. Default: ``"relu"``.

    Example:
        >>> import dgl, torch
        >>> from graphmm.nn import ClassificationHead, TypeReadout
        >>> g = dgl.heterograph({
        ...     ("word", "next", "word"): ([0], [1]),
        ...     ("patch", "adjacent", "patch"): ([], []),
        ...     ("frame", "next", "frame"): ([], []),
        ... }, num_nodes_dict={"word": 2, "patch": 1, "frame": 0})
        >>> h = {nt: torch.randn(g.num_nodes(nt), 8) for nt in g.ntypes}
        >>> readout = TypeReadout(["word", "patch", "frame"], 8, fusion="concat")
        >>> head = ClassificationHead(readout.out_dim, 5, hidden=16)
        >>> head(readout(g, h)).shape
        torch.Size([1, 5])

    Shapes:
        - Input: ``(B, in_dim)``.
        - Output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int | None = None,
        dropout: float = 0.0,
        activation: str | Callable[[Tensor], Tensor] | None = "relu",
    ) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"in_dim and num_classes must be >= 1, got {in_dim}, {num_classes}")
        if hidden is not None and hidden < 1:
            raise ValueError(f"hidden must be >= 1 or None, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.hidden = hidden
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.fc_hidden = nn.Linear(in_dim, hidden) if hidden is not None else None
        self.fc_out = nn.Linear(hidden if hidden is not None else in_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise the linear layers (PyTorch defaults)."""
        if self.fc_hidden is not None:
            self.fc_hidden.reset_parameters()
        self.fc_out.reset_parameters()

    def forward(self, z: Tensor) -> Tensor:
        """Map ``(B, in_dim)`` to logits ``(B, num_classes)``."""
        if self.fc_hidden is not None:
            z = self.fc_hidden(z)
            if self.activation is not None:
                z = self.activation(z)
        return self.fc_out(self.dropout(z))
