"""The modality plug-in interface and its registry.

A modality is one module: its node builder (raw input -> a :class:`~graphmm.graphtypes.NodeBlock`
of nodes and the relations among them), the encoder of its node type (node data ->
vectors), and its config schema (the dataclass under ``graph.<name>``). The module
registers the three under the modality's name with :func:`register_modality`; the core
(the graph builder, the node encoders, the config, training, prediction and drawing)
only loops over what is registered and never names a modality.

The built-in modalities are the modules of this package (``text``, ``image``,
``audio``, ``video``); :func:`load_modalities` imports every module of the package and
every plug-in (:mod:`graphmm.plugins`), so adding a modality means adding one module
(plus, for Hydra, one YAML file).

Example:
    >>> from graphmm.modalities import get_modality, list_modalities
    >>> list_modalities()[:3]
    ['text', 'image', 'audio']
    >>> spec = get_modality("image")
    >>> spec.ntype, spec.summary_id
    ('patch', 1)
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from graphmm.graphtypes import CanonicalEType, NodeBlock

log = logging.getLogger(__name__)

__all__ = [
    "ModalityBuilder",
    "check_modality_names",
    "ModalitySpec",
    "NodeEncoder",
    "get_modality",
    "list_modalities",
    "load_modalities",
    "modality_of_ntype",
    "register_modality",
    "unregister_modality",
]


@runtime_checkable
class ModalityBuilder(Protocol):
    """What the core calls on a modality's node builder.

    ``check`` turns one sample's raw input into the validated form that ``fit`` and
    ``build`` take (raising ``ValueError`` that starts with ``where``); ``build`` makes
    the nodes of a whole batch in one vectorised pass. An optional
    ``check_many(values, samples, wheres)`` checks a batch at once, with the same
    results and the same first error as ``check`` one by one; an optional
    ``read(path)`` loads a file (``predict``'s ``input.<modality>=path``): it returns
    the input itself, or a mapping of the :class:`~graphmm.data.Sample` fields it fills
    (audio: ``{"audio": waveform, "sample_rate": rate}``).
    """

    modality: ClassVar[str]
    ntype: ClassVar[str]

    @property
    def relations(self) -> list[CanonicalEType]: ...

    @property
    def in_dim(self) -> int: ...

    def check(self, value: Any, sample: Any, where: str) -> Any: ...

    def fit(self, values: Sequence[Any]) -> Any: ...

    def build(self, values: Sequence[Any]) -> NodeBlock: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class NodeEncoder(Protocol):
    """What the core calls on a node type's encoder: ``Encoder(in_dim, hidden)``, then
    ``encoder(data)`` with the node data of that type (``g.nodes[ntype].data``),
    returning ``(N, hidden)``."""

    def __call__(self, data: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ModalitySpec:
    """One registered modality.

    Attributes:
        name: The :class:`~graphmm.data.Sample` field and the ``graph.<name>`` key.
        ntype: Its node type.
        builder: The node builder class (a :class:`ModalityBuilder`).
        encoder: The node encoder class of ``ntype`` (``Encoder(in_dim, hidden)``).
        schema: The dataclass under ``graph.<name>`` (``None``: no Hydra schema).
        summary_id: The modality's id in summary nodes' ``modality`` field; stable, so
            that adding a modality never changes the ids of the others.
        sample_fields: Other :class:`~graphmm.data.Sample` fields that travel with the
            input and are dropped with it (audio: ``sample_rate``).
        default_on: Whether a graph recipe that does not mention the modality uses it
            (the built-in ``text``, ``image`` and ``audio`` do; plug-ins default to off).
        extra: Anything else a consumer may look up by name (free-form).
    """

    name: str
    ntype: str
    builder: type
    encoder: type | None
    schema: type | None
    summary_id: int
    sample_fields: tuple[str, ...] = ()
    default_on: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


_REGISTRY: dict[str, ModalitySpec] = {}
_LOADED = False
_LOCK = threading.RLock()  # first use may come from several DataLoader threads at once
_ORDERED: dict[str, ModalitySpec] | None = None  # the registry in summary_id order, rebuilt on change

#: Names a modality cannot take: fields and methods of Sample and MultimodalGraphBuilder.
_RESERVED = frozenset({
    "text", "image", "audio", "sample_rate", "label", "target", "id", "inputs", "modalities", "where", "without",
    "replace", "cross", "builders", "specs", "ntypes", "canonical_etypes", "in_dims", "node_types_of_modalities",
    "fit", "batch", "collate", "validate", "validate_batch", "build_tensors", "state_dict", "load_state_dict",
    "use_cache", "cache_stats",
})


def register_modality(
    name: str,
    *,
    ntype: str,
    summary_id: int,
    encoder: type | None = None,
    schema: type | None = None,
    sample_fields: Sequence[str] = (),
    default_on: bool = False,
    **extra: Any,
) -> Callable[[type], type]:
    """Class decorator: register a node builder as modality ``name``.

    Sets the class attributes ``modality`` and ``ntype``. Registering a name again
    replaces it with a warning (re-imports in notebooks); a node type or a summary id
    that another modality already uses is an error.

    Example:
        >>> from graphmm.modalities import register_modality
        >>> @register_modality("my_sensor", ntype="reading", summary_id=90)
        ... class SensorBuilder:
        ...     relations = []
        >>> SensorBuilder.modality, SensorBuilder.ntype
        ('my_sensor', 'reading')
        >>> from graphmm.modalities.base import unregister_modality
        >>> unregister_modality("my_sensor")
    """

    builtin = {"text", "image", "audio"}
    if name in _RESERVED - builtin or not name.isidentifier():
        raise ValueError(f"modality name {name!r} is reserved or not an identifier (it would shadow an attribute)")

    def deco(cls: type) -> type:
        global _ORDERED
        for other in _REGISTRY.values():
            if other.name == name:
                continue
            if other.ntype == ntype:
                raise ValueError(f"modality {name!r}: node type {ntype!r} is already modality {other.name!r}'s")
            if other.summary_id == summary_id:
                raise ValueError(f"modality {name!r}: summary_id {summary_id} is already modality {other.name!r}'s")
        if name in _REGISTRY and _REGISTRY[name].builder is not cls:
            log.warning("modality %r registered again; the new definition replaces the old", name)
        cls.modality = name
        cls.ntype = ntype
        with _LOCK:
            _REGISTRY[name] = ModalitySpec(
                name, ntype, cls, encoder, schema, int(summary_id), tuple(sample_fields), bool(default_on), extra
            )
            _ORDERED = None
        return cls

    return deco


def load_modalities() -> dict[str, ModalitySpec]:
    """Import every modality module once (this package's, then the plug-ins'), and
    return the registry, ordered by ``summary_id``. Thread-safe; a failed first load
    (an import error) is retried by the next call instead of leaving a partial registry."""
    global _LOADED, _ORDERED
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                _LOADED = True  # set first: the modules below may call back in (re-entrant lock)
                try:
                    import graphmm.modalities as pkg

                    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                        if info.name != "base" and not info.name.startswith("_"):
                            importlib.import_module(f"{pkg.__name__}.{info.name}")
                    from graphmm.plugins import load_plugins

                    load_plugins()  # optional packages register their own modalities
                except BaseException:
                    _LOADED = False
                    raise
    ordered = _ORDERED
    if ordered is None:
        with _LOCK:
            ordered = _ORDERED = dict(sorted(_REGISTRY.items(), key=lambda kv: kv[1].summary_id))
    return dict(ordered)


def unregister_modality(name: str) -> None:
    """Remove modality ``name`` from the registry (tests, notebooks); no error if absent."""
    global _ORDERED
    with _LOCK:
        _REGISTRY.pop(name, None)
        _ORDERED = None


def check_modality_names(names: Iterable[str], who: str) -> None:
    """``TypeError`` naming every one of ``names`` that is not a registered modality
    (``who`` says what received them: ``Sample``, ``MultimodalGraphBuilder``)."""
    known = list(load_modalities())
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise TypeError(
            f"{who} got unknown modality {unknown}; registered modalities: {known} "
            "(graphmm.modalities.register_modality adds one)"
        )


def list_modalities() -> list[str]:
    """Names of the registered modalities, in ``summary_id`` order."""
    return list(load_modalities())


def get_modality(name: str) -> ModalitySpec:
    """The registered modality ``name``; ``KeyError`` listing the known ones."""
    specs = load_modalities()
    if name not in specs:
        raise KeyError(f"unknown modality {name!r}; registered: {list(specs)}")
    return specs[name]


def modality_of_ntype(ntype: str) -> ModalitySpec | None:
    """The modality whose nodes have type ``ntype``, or ``None`` (``summary``)."""
    for spec in load_modalities().values():
        if spec.ntype == ntype:
            return spec
    return None
