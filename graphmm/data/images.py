r"""``image_arrays`` and ``image_folder``: labelled images from an array file or a folder.

**Array files** (:func:`read_image_arrays`, :func:`load_image_arrays`): an ``.npz``
with ``images`` and ``labels``, as ``mnist/train.npz``:

- ``images``: ``(N, H, W)`` (one channel), ``(N, H, W, C)`` or ``(N, C, H, W)`` with
  ``C`` 1 or 3 (channels-first when the second axis is 1 or 3, else channels-last);
  ``uint8`` (divided by 255), ``uint16`` (by 65535), ``bool``, or floats already in
  ``[0, 1]``;
- ``labels``: ``(N,)`` non-negative integers, the class ids.

With ``test_path`` that file is the test split; without, a test split is held out of
``train_path``: ``test_size`` images when given (``test_size=10000`` holds out MNIST's
usual 10,000 of the 60,000), else ``round(test_fraction * N)``, stratified by label
and seeded. Validation is then held out of what remains the same way. Every split
keeps file order; sample ids are ``"<file name>/<index>"`` (``"train.npz/123"``).

**Image folders** (:func:`load_image_folder`): ``<root>/<label>/*.png|jpg|jpeg``, read
with :func:`graphmm.data.io.read_image`. When ``root`` holds both a ``train/`` and a
``test/`` folder, each is one split laid out the same way (``train/<label>/*.png``;
a ``val/`` folder too when present, else validation is carved out of train).
Otherwise test and validation are carved out of all images as above. Class ids follow
:func:`~graphmm.data.io.class_index` (folders ``0`` ... ``9`` are ids 0-9). A corrupt
or truncated image, and a test image whose label never occurs in train, are bad
files: with ``on_file_error="raise"`` the first one raises a :class:`ValueError`
naming the file; with ``"skip"`` each is logged, left out and counted. Every image is
resized to ``size``, by default (``None``) the size of the first train image within
``max_image_pixels``; an image over that pixel budget after resizing is a bad file.
Greyscale and RGB files mixed without ``channels`` stop loading naming ``data.channels``
and a file of each kind (the rules of :func:`graphmm.data.manifest.load_manifest`).

Each sample owns a copy of its pixels: a view into the whole array would make a
:class:`~torch.utils.data.DataLoader` worker pickle all of it with every sample.

Example:
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
    >>> np.savez(path, images=np.zeros((40, 6, 6), np.uint8), labels=np.arange(40) % 4)
    >>> x, y = read_image_arrays(path)
    >>> tuple(x.shape), x.dtype, y.dtype
    ((40, 1, 6, 6), torch.float32, torch.int64)
    >>> splits = load_image_arrays(path, test_size=8, val_fraction=0.25)
    >>> splits.sizes(), splits.classes
    ({'train': 24, 'val': 8, 'test': 8}, ['0', '1', '2', '3'])
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from graphmm.data.io import (
    MAX_IMAGE_PIXELS,
    DataSplits,
    FilePolicy,
    class_index,
    holdout_split,
    image_file_size,
    read_image,
    stratified_holdout,
)
from graphmm.data.sample import Sample

__all__ = ["load_image_arrays", "load_image_folder", "read_image_arrays"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CHUNK = 4096  # images converted to float at a time


# ---------------------------------------------------------------------- array files
class _Arrays:
    """Validated arrays of one ``.npz``: images ``(N, C, H, W)`` in their stored dtype
    (a view when the file is channels-last), int64 labels ``(N,)`` and the divisor
    that brings the pixels to ``[0, 1]``."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path).expanduser()
        images, labels = _load_npz(self.path)
        self.images, self.scale = _check_images(self.path, images)
        self.labels = _check_labels(self.path, labels, len(self.images))

    def floats(self, index: np.ndarray | None = None) -> torch.Tensor:
        """float32 ``(n, C, H, W)`` in ``[0, 1]`` of the images at ``index`` (all if ``None``)."""
        arr = self.images if index is None else self.images[index]
        out = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)
        return out.div_(self.scale) if self.scale != 1.0 else out

    def samples(self, index: np.ndarray, classes: list[str]) -> list[Sample]:
        """One :class:`Sample` per index, each with its own copy of the pixels."""
        out = []
        for start in range(0, len(index), _CHUNK):
            part = index[start : start + _CHUNK]
            block = self.floats(part)
            for j, i in enumerate(part.tolist()):
                label = int(self.labels[i])
                out.append(
                    Sample(image=block[j].clone(), label=label, target=classes[label], id=f"{self.path.name}/{i}")
                )
        return out


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"image array file {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise ValueError(f"image array path {str(path)!r} is not a file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"image array file {str(path)!r} is not a readable .npz ({err}); save it with "
            f"numpy.savez(path, images=..., labels=...)"
        ) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"image array file {str(path)!r} holds one array, not an .npz with 'images' and 'labels'; save it "
            f"with numpy.savez(path, images=..., labels=...)"
        )
    with data:
        missing = [k for k in ("images", "labels") if k not in data.files]
        if missing:
            raise ValueError(
                f"image array file {str(path)!r} has no {missing} array(s); it holds {sorted(data.files)}. "
                f"Save it with numpy.savez(path, images=..., labels=...)"
            )
        out = []
        for key in ("images", "labels"):
            try:
                out.append(data[key])
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise ValueError(
                    f"image array file {str(path)!r}: array {key!r} is corrupt or truncated ({err})"
                ) from None
    return out[0], out[1]


def _check_images(path: Path, images: np.ndarray) -> tuple[np.ndarray, float]:
    where = f"image array file {str(path)!r}"
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[1] not in (1, 3):
            if images.shape[3] not in (1, 3):
                raise ValueError(
                    f"{where}: 'images' has shape {images.shape}; expected (N, H, W), (N, H, W, C) or "
                    f"(N, C, H, W) with C = 1 or 3"
                )
            images = images.transpose(0, 3, 1, 2)  # channels-last to channels-first, a view
    else:
        raise ValueError(f"{where}: 'images' has shape {images.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{where}: 'images' has shape {images.shape}, which holds no image or no pixel")
    if images.dtype == np.uint8:
        return images, 255.0
    if images.dtype == np.uint16:
        return images, 65535.0
    if images.dtype == np.bool_:
        return images, 1.0
    if np.issubdtype(images.dtype, np.floating):
        finite = np.isfinite(images)
        if not finite.all():
            raise ValueError(f"{where}: 'images' holds NaN or inf (first at image {np.argwhere(~finite)[0][0]})")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{where}: float 'images' must lie in [0, 1], found [{lo:g}, {hi:g}]; rescale them")
        return images, 1.0
    raise ValueError(f"{where}: 'images' has dtype {images.dtype}; use uint8, uint16, bool or floats in [0, 1]")


def _check_labels(path: Path, labels: np.ndarray, n: int) -> np.ndarray:
    where = f"image array file {str(path)!r}"
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{where}: 'labels' has shape {labels.shape}; expected (N,) class ids")
    if len(labels) != n:
        raise ValueError(f"{where}: {n} images but {len(labels)} labels; 'images' and 'labels' must have one entry each")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"{where}: 'labels' has dtype {labels.dtype}; class ids must be integers >= 0")
    labels = labels.astype(np.int64)
    if n and labels.min() < 0:
        raise ValueError(f"{where}: label {int(labels.min())} at index {int(labels.argmin())} is negative; class ids must be >= 0")
    return labels


def read_image_arrays(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an ``.npz`` of ``images`` and ``labels`` as tensors.

    See the module docstring for the shapes and dtypes accepted.

    Args:
        path: The ``.npz`` file.

    Returns:
        ``(images, labels)``: float32 images in ``[0, 1]`` and int64 labels.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable ``.npz``, lacks ``images`` or
            ``labels``, is corrupt, or the arrays have the wrong shape, dtype, range or
            different lengths; the message names the file.

    Shapes:
        - images: :math:`(N, C, H, W)`, :math:`C = 1` for an :math:`(N, H, W)` array
        - labels: :math:`(N,)`
    """
    arrays = _Arrays(path)
    return arrays.floats(), torch.from_numpy(arrays.labels)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def _n_test(n: int, test_fraction: float, test_size: int | None, where: str) -> int:
    if test_size is None:
        return int(np.floor(test_fraction * n + 0.5))
    if isinstance(test_size, bool) or not isinstance(test_size, int) or not 1 <= test_size < n:
        raise ValueError(f"{where}: test_size must be an int in [1, {n - 1}] for {n} images, got {test_size!r}")
    return test_size


def _require_nonempty(out: DataSplits, where: str) -> None:
    for key in out:
        if not out[key]:
            raise ValueError(f"{where}: the {key} split is empty (raise {key}_fraction or add images)")


def load_image_arrays(
    train_path: PathLike,
    test_path: PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_size: int | None = None,
    seed: int = 0,
    on_file_error: str = "raise",
) -> DataSplits:
    """Load ``.npz`` image arrays into train/val/test image samples.

    See the module docstring for the file format and the splits.

    Args:
        train_path: The ``.npz`` of the training images (MNIST: ``mnist/train.npz``).
        test_path: An ``.npz`` of test images; ``None`` holds test out of
            ``train_path``. Default: ``None``.
        val_fraction: Share of the (remaining) train images held out as validation,
            stratified, in ``[0, 1)``. Default: ``0.1``.
        test_fraction: Share held out as test when there is no ``test_path`` and no
            ``test_size``, in ``(0, 1)``. Default: ``0.1``.
        test_size: Number of images held out as test when there is no ``test_path``;
            overrides ``test_fraction``. Default: ``None``.
        seed: Seed of the hold-outs. Default: ``0``.
        on_file_error: ``"raise"`` or ``"skip"``: what a test image whose label never
            occurs in train does (an unreadable array file always raises).
            Default: ``"raise"``.

    Returns:
        DataSplits: ``{"train", "val", "test"}`` lists of :class:`Sample` with
        ``image``, ``label``, ``target`` (``str(label)``) and ``id``
        ``"<file name>/<index>"``; ``classes`` is ``["0", ..., "<max label>"]``.

    Shapes:
        - image: :math:`(C, H, W)` float32 in ``[0, 1]``

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: A file is bad (see :func:`read_image_arrays`), the two files have
            different channel counts, an argument is out of range or a split ends up
            empty; the message names the file.
    """
    _check_fractions(val_fraction, test_fraction)
    policy = FilePolicy(on_file_error)
    train = _Arrays(train_path)
    where = f"image array file {str(train.path)!r}"
    n = len(train.labels)
    if test_path is None:
        test_mask = stratified_holdout(train.labels, _n_test(n, test_fraction, test_size, where), [seed, 0])
        test, test_idx = train, np.flatnonzero(test_mask)
        pool = np.flatnonzero(~test_mask)
    else:
        test = _Arrays(test_path)
        if test.images.shape[1] != train.images.shape[1]:
            raise ValueError(
                f"image array file {str(test.path)!r} has {test.images.shape[1]}-channel images but {where} has "
                f"{train.images.shape[1]}-channel ones"
            )
        test_idx, pool = np.arange(len(test.labels)), np.arange(n)
    train_idx, val_idx = holdout_split(pool, train.labels[pool], val_fraction, [seed, 1])
    seen = np.unique(train.labels[train_idx])
    unseen = ~np.isin(test.labels[test_idx], seen)
    for i in test_idx[unseen][: 1 if policy.on_file_error == "raise" else None].tolist():
        policy.bad(
            f"image array file {str(test.path)!r}, index {i}",
            f"test label {int(test.labels[i])} never occurs in the train split (train labels: {seen.tolist()})",
        )
    test_idx = test_idx[~unseen]
    classes = [str(i) for i in range(int(seen.max()) + 1)]
    out = DataSplits(
        {"train": train.samples(train_idx, classes), "val": train.samples(val_idx, classes),
         "test": test.samples(test_idx, classes)},
        classes=classes,
        skipped_items=policy.skipped,
        source=str(train.path),
    )
    _require_nonempty(out, where)
    log.info("image arrays %s: %s, %d classes", train.path, out.sizes(), len(classes))
    return out


# ---------------------------------------------------------------------- image folders
def _folder_files(base: Path) -> list[tuple[Path, str]]:
    """``(path, label)`` of every image under ``base/<label>/``, in a fixed order."""
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        out += [(q, d.name) for q in sorted(d.iterdir()) if q.is_file() and q.suffix.lower() in _IMAGE_SUFFIXES]
    return out


def load_image_folder(
    root: PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_size: int | None = None,
    seed: int = 0,
    channels: int | None = None,
    size: int | Sequence[int] | None = None,
    on_file_error: str = "raise",
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
) -> DataSplits:
    """Load a folder of ``<label>/*.png|jpg`` images into train/val/test image samples.

    See the module docstring for the layouts and the splits.

    Args:
        root: The folder.
        val_fraction: Share of the train images held out as validation when there is
            no ``val/`` folder, stratified, in ``[0, 1)``. Default: ``0.1``.
        test_fraction: Share held out as test when there is no ``test/`` folder and no
            ``test_size``, in ``(0, 1)``. Default: ``0.1``.
        test_size: Number of images held out as test when there is no ``test/``
            folder; overrides ``test_fraction``. Default: ``None``.
        seed: Seed of the hold-outs. Default: ``0``.
        channels: ``1`` or ``3`` to convert every image to; ``None`` keeps each file's
            (see :func:`~graphmm.data.io.read_image`). Default: ``None``.
        size: ``(H, W)``, or one int for a square, to resize every image to; ``None``:
            the size of the first train image within ``max_image_pixels``.
            Default: ``None``.
        on_file_error: ``"raise"`` or ``"skip"``: what a bad file does. Default: ``"raise"``.
        max_image_pixels: Most pixels an image may have after resizing; a larger one
            is a bad file. ``None``: no limit. Default:
            :data:`graphmm.data.io.MAX_IMAGE_PIXELS` (1024 x 1024).

    Returns:
        DataSplits: ``{"train", "val", "test"}`` lists of :class:`Sample` with
        ``image``, ``label`` (class id), ``target`` (folder name) and ``id`` (the path
        relative to ``root``); plus ``classes`` and ``skipped``.

    Shapes:
        - image: :math:`(C, H, W)` float32 in ``[0, 1]``

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` holds no image, an argument is out of range, a split ends
            up empty, or (``on_file_error="raise"``) a file is bad; the message names
            the file.
    """
    _check_fractions(val_fraction, test_fraction)
    policy = FilePolicy(on_file_error)
    base = Path(root).expanduser()
    where = f"image folder {str(base)!r}"
    if not base.is_dir():
        raise FileNotFoundError(f"{where} does not exist; pass a folder of <label>/*.png folders")
    pair = _size_pair(size, max_image_pixels, where)
    files, presplit = _list_folder(base, where)
    if pair is None:  # the first train image within the budget sets the common size
        pair = _first_size(files.get("train", files.get("all", [])), max_image_pixels)
    images = _read_folder_images(files, base, where, channels, pair, max_image_pixels, policy)
    parts = _folder_parts(images, presplit, val_fraction, test_fraction, test_size, seed, where)
    out = _folder_samples(parts, base, policy)
    _require_nonempty(out, where)
    if policy.skipped:
        log.warning("%s: skipped %d files (reasons above)", where, len(policy.skipped))
    log.info("%s: %s, %d classes", where, out.sizes(), len(out.classes))
    return out


def _size_pair(size: int | Sequence[int] | None, max_image_pixels: int | None, where: str) -> tuple[int, int] | None:
    """``size`` as ``(H, W)`` (``None`` stays ``None``), checked against the pixel budget."""
    pair = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    if pair is not None and max_image_pixels is not None and pair[0] * pair[1] > max_image_pixels:
        raise ValueError(
            f"{where}: size {list(pair)} has {pair[0] * pair[1]} pixels, over max_image_pixels={max_image_pixels}; "
            f"use a smaller data.size or raise data.max_image_pixels"
        )
    return pair  # type: ignore[return-value]


def _list_folder(base: Path, where: str) -> tuple[dict[str, list[tuple[Path, str]]], bool]:
    """The image files of each group (``train``/``val``/``test`` of a pre-split folder,
    else ``all``) and whether the folder is pre-split."""
    presplit = (base / "train").is_dir() and (base / "test").is_dir()
    groups = ("train", "val", "test") if presplit else ("all",)
    files = {g: _folder_files(base / g) if g != "all" else _folder_files(base) for g in groups
             if g == "all" or (base / g).is_dir()}
    if not any(files.values()):
        raise ValueError(f"{where} holds no image: expected <label>/*.png|jpg" + (" under train/ and test/" if presplit else ""))
    return files, presplit


def _first_size(entries: list[tuple[Path, str]], max_image_pixels: int | None) -> tuple[int, int] | None:
    """``(H, W)`` of the first readable image header within ``max_image_pixels``, or ``None``."""
    sizes = (image_file_size(path) for path, _ in entries)
    return next((hw for hw in sizes if hw is not None and (max_image_pixels is None
                                                           or hw[0] * hw[1] <= max_image_pixels)), None)


def _folder_samples(
    parts: dict[str, list[tuple[torch.Tensor, str, str]]], base: Path, policy: FilePolicy
) -> DataSplits:
    """Samples with class ids from the train labels; a val/test image whose label train
    lacks goes to ``policy``."""
    classes, to_id = class_index(lab for _, lab, _ in parts["train"])
    out = DataSplits(classes=classes, source=str(base))
    for key in ("train", "val", "test"):
        kept = []
        for img, label, rel in parts[key]:
            if label not in to_id:
                policy.bad(
                    f"image file {str(base / rel)!r}",
                    f"{key} label {label!r} never occurs in the train split (train labels: {classes})",
                )
                continue
            kept.append(Sample(image=img, label=to_id[label], target=classes[to_id[label]], id=rel))
        out[key] = kept
    out.skipped_items, out.skipped = policy.skipped, len(policy.skipped)
    return out


def _read_folder_images(
    files: dict[str, list[tuple[Path, str]]],
    base: Path,
    where: str,
    channels: int | None,
    pair: tuple[int, int] | None,
    max_image_pixels: int | None,
    policy: FilePolicy,
) -> dict[str, list[tuple[torch.Tensor, str, str]]]:
    """Each group's ``(image, label, relative path)``, resized to ``pair``; a file over
    the pixel budget or unreadable goes to ``policy``; mixed channel counts stop."""
    images: dict[str, list[tuple[torch.Tensor, str, str]]] = {}
    first_of: dict[int, Path] = {}  # a file of each channel count, for the mixed-channels error
    n_resized = 0
    for g, entries in files.items():
        images[g] = []
        for path, label in entries:
            hw = image_file_size(path)
            target = pair or hw
            if target is not None and max_image_pixels is not None and target[0] * target[1] > max_image_pixels:
                policy.bad(
                    f"image file {str(path)!r}",
                    f"{target[0]} x {target[1]} = {target[0] * target[1]} pixels, over data.max_image_pixels="
                    f"{max_image_pixels}; set data.size=[H, W] to resize every image, or raise data.max_image_pixels",
                )
                continue
            try:
                img = read_image(path, channels=channels, size=pair)
            except (ValueError, OSError) as err:
                policy.bad(f"image file {str(path)!r}", str(err))
                continue
            n_resized += hw is not None and pair is not None and hw != tuple(pair)
            first_of.setdefault(int(img.shape[0]), path)
            images[g].append((img, label, path.relative_to(base).as_posix()))
    if len(first_of) > 1:
        kinds = {1: "greyscale (1 channel)", 3: "RGB (3 channels)"}
        shown = "; ".join(f"{str(q)!r} is {kinds.get(c, f'{c} channels')}" for c, q in sorted(first_of.items()))
        raise ValueError(
            f"{where}: the images mix channel counts: {shown}; set data.channels=1 (greyscale) or "
            f"data.channels=3 (RGB) to convert every image"
        )
    if n_resized:
        log.info("%s: resized %d images to %d x %d (data.size)", where, n_resized, *pair)

    return images


def _folder_parts(
    images: dict[str, list[tuple[torch.Tensor, str, str]]],
    presplit: bool,
    val_fraction: float,
    test_fraction: float,
    test_size: int | None,
    seed: int,
    where: str,
) -> dict[str, list[tuple[torch.Tensor, str, str]]]:
    """train/val/test entries: the folder's own split, else test carved (stratified,
    seeded), then val carved from train where the folder has none."""
    rng_seed = seed
    if presplit:
        parts = {g: images.get(g, []) for g in ("train", "val", "test")}
    else:
        parts = {"train": images["all"], "test": []}
        _, to_id = class_index(lab for _, lab, _ in parts["train"])
        labels = np.array([to_id[lab] for _, lab, _ in parts["train"]], dtype=np.int64)
        n_test = _n_test(len(labels), test_fraction, test_size, where)
        mask = stratified_holdout(labels, n_test, [rng_seed, 0])
        everything = parts["train"]
        parts = {"train": [e for e, m in zip(everything, mask) if not m], "val": [],
                 "test": [e for e, m in zip(everything, mask) if m]}
    if not parts["val"]:
        _, to_id = class_index(lab for _, lab, _ in parts["train"])
        labels = np.array([to_id[lab] for _, lab, _ in parts["train"]], dtype=np.int64)
        kept, held = holdout_split(np.arange(len(labels)), labels, val_fraction, [rng_seed, 1])
        pool = parts["train"]
        parts["train"], parts["val"] = [pool[i] for i in kept.tolist()], [pool[i] for i in held.tolist()]

    return parts


#: Samples carry labels, no target text: a generation model cannot train on them.
load_image_arrays.provides_targets = False  # type: ignore[attr-defined]
load_image_folder.provides_targets = False  # type: ignore[attr-defined]
