"""Optional packages that extend graphmm: found, never imported by name.

A plug-in is a module that, when imported, registers its parts with the core's
registries: modalities (:func:`graphmm.modalities.register_modality`), relations
(:func:`graphmm.graphs.cross.register_relation`), node featurizers
(:func:`graphmm.nn.encoders.register_featurizer`), config checks
(:func:`graphmm.config.register_config_check`) and Hydra schemas. The core finds
plug-ins through the ``graphmm.plugins`` entry-point group of the installed
distributions (graphmm's own CLIP package is one: ``pyproject.toml``) and through the
``GRAPHMM_PLUGINS`` environment variable (comma-separated module names), and imports
each once, on first use of a registry.

A third-party package declares itself in its own ``pyproject.toml``::

    [project.entry-points."graphmm.plugins"]
    my_sensor = "my_package.graphmm_plugin"
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib.metadata import entry_points

log = logging.getLogger(__name__)

__all__ = ["load_plugins", "plugin_failures"]

_LOADED: list[str] | None = None
_FAILED: dict[str, str] = {}


def load_plugins() -> list[str]:
    """Import every plug-in once; returns the module names imported. A plug-in that
    fails to import is logged and skipped, so a broken extra never stops the core."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    _LOADED = []
    names = [ep.value for ep in entry_points(group="graphmm.plugins")]
    names += [n.strip() for n in os.environ.get("GRAPHMM_PLUGINS", "").split(",") if n.strip()]
    # graphmm's own plug-ins last: they import graphmm.config, whose graph schema then
    # sees the modalities that other plug-ins registered before
    names = sorted(dict.fromkeys(names), key=lambda n: n.startswith("graphmm."))
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:
            _FAILED[name] = f"{type(err).__name__}: {err}"
            log.warning("graphmm plug-in %r failed to load: %s", name, _FAILED[name])
            continue
        _LOADED.append(name)
    return _LOADED


def plugin_failures() -> dict[str, str]:
    """Plug-ins that failed to import, with their errors (for messages that name what
    is missing)."""
    load_plugins()
    return dict(_FAILED)
