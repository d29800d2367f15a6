"""Name -> factory registry for relation convolutions.

A short name such as ``"gat"`` is what configs and the command line use
(``model.conv=gat``). Every factory is called as
``factory(in_feats, out_feats, **kwargs)`` and returns a module with the
contract ``forward(graph, feat) -> Tensor (N_dst, out_feats)``.

Example:
    >>> from torch import nn
    >>> from graphmm.nn import register_conv, build_conv, list_convs
    >>> @register_conv("my_linear")
    ... class MyLinear(nn.Module):
    ...     def __init__(self, in_feats, out_feats):
    ...         super().__init__()
    ...         self.lin = nn.Linear(in_feats, out_feats)
    ...     def forward(self, graph, feat):
    ...         return self.lin(feat[1] if isinstance(feat, tuple) else feat)
    >>> "my_linear" in list_convs()
    True
    >>> build_conv("my_linear", 4, 2).lin.out_features
    2
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from .conv import GATLayer, GCNLayer, SAGELayer, SumConv

__all__ = ["build_conv", "get_conv", "list_convs", "register_conv"]

ConvFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ConvFactory)

_CONV_REGISTRY: dict[str, ConvFactory] = {}


def register_conv(name: str) -> Callable[[F], F]:
    """Decorator that registers a convolution factory under ``name``.

    Registering a name twice replaces the earlier factory and emits a
    ``UserWarning``.

    Args:
        name: Short name used in configs, e.g. ``"gat"``.

    Returns:
        A decorator that registers and returns the factory unchanged.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"conv name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _CONV_REGISTRY and _CONV_REGISTRY[name] is not factory:
            warnings.warn(
                f"conv {name!r} is already registered ({_CONV_REGISTRY[name]!r}); "
                f"replacing it with {factory!r}.",
                UserWarning,
                stacklevel=2,
            )
        _CONV_REGISTRY[name] = factory
        return factory

    return decorator


def list_convs() -> list[str]:
    """Sorted names of all registered convolutions."""
    return sorted(_CONV_REGISTRY)


def get_conv(name: str) -> ConvFactory:
    """Return the factory registered under ``name``.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the known names.
    """
    try:
        return _CONV_REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown conv {name!r}; known convs: {', '.join(list_convs())}. "
            f"Register new ones with @graphmm.nn.register_conv(name)."
        ) from None


def build_conv(
    name: str, in_feats: int | tuple[int, int], out_feats: int, **kwargs: Any
) -> nn.Module:
    """Instantiate the convolution ``name`` as ``factory(in_feats, out_feats, **kwargs)``."""
    return get_conv(name)(in_feats, out_feats, **kwargs)


register_conv("sum")(SumConv)
register_conv("gcn")(GCNLayer)
register_conv("gat")(GATLayer)
register_conv("sage")(SAGELayer)
