"""Modality plug-ins: each module here registers one modality (its node builder, node
encoder and config schema); see :mod:`graphmm.modalities.base` for the interface."""

from graphmm.modalities.base import (
    ModalityBuilder,
    ModalitySpec,
    NodeEncoder,
    get_modality,
    list_modalities,
    load_modalities,
    modality_of_ntype,
    register_modality,
    unregister_modality,
)

__all__ = [
    "ModalityBuilder",
    "ModalitySpec",
    "NodeEncoder",
    "get_modality",
    "list_modalities",
    "load_modalities",
    "modality_of_ntype",
    "register_modality",
    "unregister_modality",
]
