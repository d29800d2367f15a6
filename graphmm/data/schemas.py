"""Typed Hydra schemas of the file-based datasets (``data=<name>``).

Each dataclass below is stored as ``<name>_schema`` in the ``data`` group and sits at
the top of ``graphmm/conf/data/<name>.yaml``'s defaults list, so a misspelt key or a value of
the wrong type fails at composition, naming the key. ``_target_`` is the loader that
:func:`graphmm.train.load_splits` calls with the other keys.

``on_file_error`` repeats ``on_error`` (``${.on_error}``) for the loader, because
:func:`graphmm.train.load_splits` takes ``on_error`` out of the data config to screen
samples after loading: one setting, ``data.on_error``, rules both steps (see
:class:`graphmm.config.ManifestDataConf`).

The YAML files point the paths at ``${oc.env:GRAPHMM_DATA,../shared/data}/...``: the
folder named by the environment variable ``GRAPHMM_DATA`` or else ``../shared/data``
relative to the working directory (the repository root, where ``python -m
graphmm.train`` runs). The schemas themselves leave paths ``MISSING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from graphmm.data.io import MAX_IMAGE_PIXELS
from graphmm.data.moving_digits import MovingDigitsConfig


@dataclass
class TextClsDataConf:
    """A TextGCN-layout corpus, passed to :func:`graphmm.data.textcls.load_textcls`."""

    _target_: str = "graphmm.data.textcls.load_textcls"
    _convert_: str = "all"
    root: str = MISSING
    name: str = MISSING
    val_fraction: float = 0.1
    seed: int = 0
    clean: Any = "auto"  # true | false | auto
    label_map: Optional[Dict[str, str]] = None
    skip_tokens: int = 0
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"


@dataclass
class AudioFolderDataConf:
    """A folder of WAV clips, passed to :func:`graphmm.data.audio_folder.load_audio_folder`."""

    _target_: str = "graphmm.data.audio_folder.load_audio_folder"
    _convert_: str = "all"
    root: str = MISSING
    sample_rate: Optional[int] = 8000
    split: str = "dataset"
    test_speakers: Optional[List[str]] = None
    # speakers whose clips are the validation split (speaker-independent model choice)
    val_speakers: Optional[List[str]] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"


@dataclass
class ImageArraysDataConf:
    """``.npz`` image arrays, passed to :func:`graphmm.data.images.load_image_arrays`."""

    _target_: str = "graphmm.data.images.load_image_arrays"
    _convert_: str = "all"
    train_path: str = MISSING
    test_path: Optional[str] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    test_size: Optional[int] = None
    seed: int = 0
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"


@dataclass
class ImageFolderDataConf:
    """A folder of ``<label>/*.png`` images, passed to :func:`graphmm.data.images.load_image_folder`."""

    _target_: str = "graphmm.data.images.load_image_folder"
    _convert_: str = "all"
    root: str = MISSING
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    test_size: Optional[int] = None
    seed: int = 0
    channels: Optional[int] = None
    size: Optional[List[int]] = None
    max_image_pixels: Optional[int] = MAX_IMAGE_PIXELS
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"


@dataclass
class AvDigitsDataConf:
    """Spoken digits paired with handwritten ones, passed to :func:`graphmm.data.avdigits.load_avdigits`."""

    _target_: str = "graphmm.data.avdigits.load_avdigits"
    _convert_: str = "all"
    image_path: str = MISSING
    audio_root: str = MISSING
    image_test_path: Optional[str] = None
    sample_rate: Optional[int] = 8000
    split: str = "dataset"
    test_speakers: Optional[List[str]] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    text: bool = False
    text_informative: float = 0.3
    on_error: str = "raise"
    on_file_error: str = "${.on_error}"


@dataclass
class MovingDigitsDataConf(MovingDigitsConfig):
    """The embedded ``moving_digits`` videos: :class:`graphmm.data.moving_digits.MovingDigitsConfig`'s
    fields (and defaults), passed to :func:`graphmm.data.moving_digits.load_moving_digits`."""

    _target_: str = "graphmm.data.moving_digits.load_moving_digits"
    _convert_: str = "all"
    on_error: str = "raise"


#: ``<name>`` of each ``graphmm/conf/data/<name>.yaml`` and its schema.
SCHEMAS: dict[str, type] = {
    "textcls": TextClsDataConf,
    "audio_folder": AudioFolderDataConf,
    "image_arrays": ImageArraysDataConf,
    "image_folder": ImageFolderDataConf,
    "avdigits": AvDigitsDataConf,
    "moving_digits": MovingDigitsDataConf,
}


def register(cs: ConfigStore) -> None:
    """Store the schemas of this module in ``cs`` under the ``data`` group, as ``<name>_schema``."""
    for name, node in SCHEMAS.items():
        cs.store(group="data", name=f"{name}_schema", node=node)
