"""Typed Hydra schemas of the file-based datasets (``data=<name>``)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore


def register(cs: ConfigStore) -> None:
    """Store the schemas of this module in ``cs`` under the ``data`` group."""
