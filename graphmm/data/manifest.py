r"""``manifest``: a dataset of your own files, described by one CSV file.

Each row of the manifest is one sample. The columns (header names are
case-insensitive, any order):

============  =========  ===================================================================
column        required   meaning
============  =========  ===================================================================
``label``     yes        class, a name (``cat``) or an int (``3``)
``split``     no         ``train``, ``val`` or ``test``
``id``        no         identifier shown in messages (default ``<manifest name>:<line>``)
``image``     one of     path to a PNG/JPEG (anything Pillow reads)
``audio``     the three  path to a WAV (anything libsndfile reads)
``text``                 the text itself, inline (any length)
``text_file``            path to a UTF-8 text file holding the text (instead of ``text``)
============  =========  ===================================================================

A row needs at least one non-empty modality cell; an empty cell means that modality is
missing for that sample. A row may fill ``text`` or ``text_file``, not both. Relative
paths resolve against ``root`` when given, else against the manifest's folder. Other
columns are ignored (with a warning).

**Images.** Every image is resized at load time to ``image_size``: a given ``[H, W]``,
or by default (``None``) the size of the first train row's image whose size is within
``max_image_pixels``, so images of one dataset batch together and ``predict`` resizes
new images to the same size; one line logs how many were resized. An image that would
still exceed ``max_image_pixels`` (1024 x 1024 by default) after resizing is a bad row
naming the file, instead of an out-of-memory error inside the model. Mixed RGB and
greyscale files stop loading with an error naming ``data.image_channels`` and one file of
each kind; ``image_channels=1`` or ``3`` converts them instead.

**Labels.** If every label cell is an integer the labels are used as they are
(class ids, ``>= 0``). Otherwise every label is a name, and the names of the train split
in sorted order get ids ``0, 1, ...``. Either way the result keeps the mapping
(:attr:`ManifestSplits.classes`) and each sample's ``target`` holds its class name.

**Splits.** Without a ``split`` column, validation and test are carved out of all
rows; with one, each of ``val`` and ``test`` that has no row at all is carved out of
the ``train`` rows. Carving is stratified by label and seeded: per class,
``round(val_fraction * n)`` rows go to val and ``round(test_fraction * n)`` to test,
keeping at least one row of the class in train. Within each split samples keep the
manifest's order.

**Bad rows.** A missing, empty, corrupt or truncated file, a row that does not parse
(wrong number of cells, bad split name, no label, duplicate id), a val/test label
that no train row has, and a row with no modality are bad rows. With
``on_error="raise"`` the first one stops loading with a :class:`ValueError` naming the
manifest, the line, the id and the problem; with ``on_error="skip"`` each is logged
(:func:`logging.warning`, same details), dropped, and counted in
:attr:`ManifestSplits.skipped`, and one line gives the total.

**With Hydra** (``data=manifest``), :func:`graphmm.train.load_splits` takes
``data.on_error`` out of the config to screen samples after loading, so the loader
would never see it. ``graphmm/conf/data/manifest.yaml`` therefore passes the same value a second
time as ``on_file_error: ${.on_error}``: one setting, ``data.on_error``, governs both
the rows dropped while reading the files and the samples dropped by the graph
builder's checks.

Example:
    >>> import csv, os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "m.csv"), "w", newline="") as f:
    ...     w = csv.writer(f)
    ...     _ = w.writerow(["label", "text"])
    ...     w.writerows([["cat", f"a cat {i}"] for i in range(7)] + [["dog", f"a dog {i}"] for i in range(7)])
    >>> splits = load_manifest(os.path.join(d, "m.csv"))
    >>> {k: len(v) for k, v in splits.items()}, splits.classes
    ({'train': 10, 'val': 2, 'test': 2}, ['cat', 'dog'])
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphmm.data.io import MAX_IMAGE_PIXELS, image_file_size, read_audio, read_image, read_text
from graphmm.data.sample import Sample

__all__ = ["ManifestSplits", "load_manifest"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_MODALITY_COLUMNS: tuple[str, ...] = ("text", "text_file", "image", "audio")
_KNOWN_COLUMNS: frozenset[str] = frozenset({"split", "label", "id", *_MODALITY_COLUMNS})
_INT = re.compile(r"[+-]?\d+")
#: Largest CSV cell accepted: any text that fits in memory (see ``_parse``).
_FIELD_SIZE_LIMIT = 2**31 - 1


class ManifestSplits(dict):
    """``{"train", "val", "test"} -> list[Sample]``, with what reading the manifest found.

    A plain :class:`dict` of the three splits (so it goes wherever the output of
    :func:`~graphmm.data.load_digits` goes), plus these attributes:

    Attributes:
        classes (list[str]): Class name of each class id: the sorted train label
            names, or ``"0" ... "<max>"`` for integer labels.
        label_to_id (dict[str, int]): The inverse mapping, label cell -> class id.
        skipped (int): Rows dropped while reading (``on_error="skip"``).
        skipped_rows (list[tuple[int, str | None, str]]): ``(line, id, reason)`` for
            each dropped row.
        path (Path): The manifest file.
    """

    classes: list[str]
    label_to_id: dict[str, int]
    skipped: int
    skipped_rows: list[tuple[int, str | None, str]]
    path: Path


@dataclass
class _Row:
    """One parsed manifest row, before its files are read."""

    line: int
    id: str | None
    split: str | None  # None: no split column
    label: str
    text: str | None = None
    text_file: Path | None = None
    image: Path | None = None
    audio: Path | None = None
    sample: Sample | None = field(default=None, repr=False)
    resized: bool = False  # the image was resized to the common size


class _RowError(ValueError):
    """A problem with one row; ``_Reader`` raises or skips it."""


@dataclass
class _Reader:
    """Applies the bad-row policy and remembers the rows it dropped."""

    path: Path
    on_error: str
    skipped: list[tuple[int, str | None, str]] = field(default_factory=list)

    def where(self, line: int, rid: str | None) -> str:
        ident = f"id {rid!r}" if rid is not None else "no id"
        return f"manifest {str(self.path)!r}, line {line} ({ident})"

    def bad(self, line: int, rid: str | None, problem: str) -> None:
        """Raise for ``"raise"``; log and record for ``"skip"``."""
        msg = f"{self.where(line, rid)}: {problem}"
        if self.on_error == "raise":
            raise ValueError(f"{msg} (on_error='skip', or data.on_error=skip on the command line, drops such rows)")
        log.warning("skipping %s", msg)
        self.skipped.append((line, rid, problem))


def load_manifest(
    path: PathLike,
    root: PathLike | None = None,
    on_error: str = "raise",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    image_channels: int | None = None,
    image_size: int | Sequence[int] | None = None,
    sample_rate: int | None = None,
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    *,
    on_file_error: str | None = None,
) -> ManifestSplits:
    """Read a CSV manifest and the files it names into train/val/test samples.

    See the module docstring for the columns, the label mapping, the split carving
    and the bad-row policy.

    Args:
        path: The CSV manifest (UTF-8, with a header row).
        root: Folder that relative ``image``/``audio`` paths resolve against.
            Default: ``None`` (the manifest's folder).
        on_error: ``"raise"`` or ``"skip"``: what a bad row does. Default: ``"raise"``.
        val_fraction: Fraction of each class carved out as validation when the
            manifest has no val rows; of the train rows, or of all rows when there is
            no ``split`` column. Default: ``0.15``.
        test_fraction: The same for test. Default: ``0.15``.
        seed: Seed of the carving. Default: ``0``.
        image_channels: ``1`` or ``3`` to convert every image to; ``None`` keeps
            each file's channels. Default: ``None``.
        image_size: ``(H, W)`` (or one int for a square) to resize every image to;
            ``None``: the size of the first train row's image that is within
            ``max_image_pixels``. Default: ``None``.
        sample_rate: Rate to resample every clip to; ``None`` keeps each file's
            rate. Default: ``None``.
        max_image_pixels: Most pixels (``H * W``) an image may have after resizing;
            a larger one is a bad row naming the file. ``None``: no limit.
            Default: :data:`graphmm.data.io.MAX_IMAGE_PIXELS` (1024 x 1024).
        on_file_error: The bad-row policy under the name the Hydra config passes it
            (``graphmm/conf/data/manifest.yaml`` sets ``on_file_error: ${.on_error}``,
            because :func:`graphmm.train.load_splits` keeps ``data.on_error`` for
            itself); when given it replaces ``on_error``. Default: ``None``.

    Returns:
        ManifestSplits: ``{"train", "val", "test"}`` lists of :class:`Sample`, with
        ``label`` (class id), ``target`` (class name) and ``id`` set, plus
        ``classes``, ``label_to_id`` and ``skipped``.

    Shapes:
        - image: :math:`(C, H, W)` float32 in ``[0, 1]``
        - audio: :math:`(T,)` float32 mono, at ``sample_rate`` (or the file's rate)

    Raises:
        FileNotFoundError: The manifest does not exist.
        ValueError: The manifest is not a readable CSV, lacks a ``label`` column or
            every modality column, has no row, an argument is out of range, a split
            ends up empty, its images mix RGB and greyscale without
            ``image_channels``, or (``on_error="raise"``) a row is bad; the message
            names the manifest and, for a row, its line, id and problem.
    """
    policy = on_file_error if on_file_error is not None else on_error
    if policy not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {policy!r}")
    size = _check_args(val_fraction, test_fraction, image_channels, image_size, sample_rate, max_image_pixels)
    mpath = Path(path).expanduser()
    base = Path(root).expanduser() if root is not None else mpath.parent
    reader = _Reader(mpath, policy)

    rows, has_split = _parse(mpath, base, reader)
    n_rows = len(rows) + len(reader.skipped)
    int_labels = all(_INT.fullmatch(r.label) for r in rows)
    declared = {r.split for r in rows} if has_split else set()
    rows = _read_files(rows, mpath, reader, int_labels, image_channels, image_size, size, sample_rate, max_image_pixels)
    carve = [name for name in ("val", "test") if name not in declared]
    fractions = {"val": val_fraction if "val" in carve else 0.0, "test": test_fraction if "test" in carve else 0.0}
    out = _splits(rows, reader, int_labels, carve, fractions, seed)
    _finish(out, reader, n_rows, carve, fractions)
    return out


def _finish(
    out: ManifestSplits, reader: _Reader, n_rows: int, carve: list[str], fractions: dict[str, float]
) -> None:
    """Check that no split is empty (saying how a carved one can fill), record what
    was skipped in ``out`` and log the result."""
    mpath = reader.path
    if reader.skipped:
        log.warning(
            "manifest %s: skipped %d of %d rows while reading (reasons above)", mpath, len(reader.skipped), n_rows
        )
    for name in SPLITS:
        if not out[name]:
            hint = (
                f"; {name} was carved with {name}_fraction={fractions[name]}: use more rows per class, "
                f"a larger fraction or a split column"
                if name in carve
                else ""
            )
            raise ValueError(f"manifest {str(mpath)!r}: the {name} split is empty{hint}")
    out.path = mpath
    out.skipped, out.skipped_rows = len(reader.skipped), reader.skipped
    log.info(
        "manifest %s: %s, %d classes", mpath, {k: len(v) for k, v in out.items()}, len(out.classes)
    )


def _read_files(
    rows: list[_Row],
    mpath: Path,
    reader: _Reader,
    int_labels: bool,
    image_channels: int | None,
    image_size: int | Sequence[int] | None,
    size: tuple[int, int] | None,
    sample_rate: int | None,
    max_image_pixels: int | None,
) -> list[_Row]:
    """The rows with a usable label whose files read, each with its ``sample``; the
    others go to ``reader`` as bad rows."""
    rows = [r for r in rows if _check_label(r, int_labels, reader)]
    # unknown val/test labels, before any file is read (checked again in _splits, in
    # case the only train rows of a class are dropped for their files)
    declared_train = {r.label for r in rows if r.split in (None, "train")}
    known = []
    for r in rows:
        if r.label in declared_train:
            known.append(r)
        else:
            _unknown_label(r, reader)
    rows = known
    if size is None:
        size = _first_image_size(rows, max_image_pixels)
    for r in rows:
        try:
            r.sample = _read_sample(r, mpath, image_channels, size, sample_rate, max_image_pixels)
        except _RowError as err:
            reader.bad(r.line, r.id, str(err))
    rows = [r for r in rows if r.sample is not None]
    if image_channels is None:
        _check_channels(rows, mpath)
    n_resized = sum(r.resized for r in rows)
    if n_resized:
        log.info(
            "manifest %s: resized %d of %d images to %d x %d (data.image_size%s)", mpath, n_resized,
            sum(r.sample.image is not None for r in rows), *size,
            "" if image_size is not None else ": null, the first train image's size",
        )
    return rows


def _splits(
    rows: list[_Row], reader: _Reader, int_labels: bool, carve: list[str], fractions: dict[str, float], seed: int
) -> ManifestSplits:
    """Rows to train/val/test samples with class ids (val and test carved from train
    where ``carve`` says); ``classes`` and ``label_to_id`` from the train labels."""
    by_split: dict[str, list[_Row]] = {name: [] for name in SPLITS}
    for r in rows:
        by_split[r.split or "train"].append(r)
    if carve:
        by_split = _carve(by_split, fractions, seed)
    train_labels = {r.label for r in by_split["train"]}
    if int_labels:
        top = max((int(x) for x in train_labels), default=-1)
        classes = [str(i) for i in range(top + 1)]
    else:
        classes = sorted(train_labels)
    label_to_id = {name: i for i, name in enumerate(classes)}
    out = ManifestSplits()
    for name in SPLITS:
        kept = []
        for r in by_split[name]:
            if r.label not in train_labels:
                _unknown_label(r, reader, name)
                continue
            cid = int(r.label) if int_labels else label_to_id[r.label]
            kept.append(r.sample.replace(label=cid, target=classes[cid] if int_labels else r.label))
        out[name] = kept
    out.classes, out.label_to_id = classes, label_to_id
    return out


# ---------------------------------------------------------------------- steps
def _check_args(
    val_fraction: float,
    test_fraction: float,
    image_channels: int | None,
    image_size: int | Sequence[int] | None,
    sample_rate: int | None,
    max_image_pixels: int | None = None,
) -> tuple[int, int] | None:
    """Validate the settings; return ``image_size`` as ``(H, W)`` or ``None``."""
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {v}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 so that train keeps rows, got {val_fraction} + {test_fraction}"
        )
    if image_channels not in (None, 1, 3):
        raise ValueError(f"image_channels must be 1, 3 or None, got {image_channels!r}")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1):
        raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r}")
    if max_image_pixels is not None and (
        isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels < 1
    ):
        raise ValueError(f"max_image_pixels must be a positive int or None, got {max_image_pixels!r}")
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise ValueError(f"image_size must be a positive int or a pair [H, W] of them, got {image_size!r}")
    if max_image_pixels is not None and pair[0] * pair[1] > max_image_pixels:
        raise ValueError(
            f"image_size {list(pair)} has {pair[0] * pair[1]} pixels, over max_image_pixels={max_image_pixels}; "
            f"use a smaller data.image_size or raise data.max_image_pixels"
        )
    return pair  # type: ignore[return-value]


def _parse(mpath: Path, base: Path, reader: _Reader) -> tuple[list[_Row], bool]:
    """Read the CSV into rows; returns ``(rows, has_split_column)``."""
    if not mpath.exists():
        raise FileNotFoundError(f"manifest {str(mpath)!r} does not exist; check data.path")
    if not mpath.is_file():
        raise ValueError(f"manifest {str(mpath)!r} is not a file")
    rows: list[_Row] = []
    seen_ids: dict[str, int] = {}
    # csv refuses cells over 131,072 characters by default, which stopped a whole run on
    # one long inline text; lift the limit while reading (2**31 - 1 fits a C long on
    # every platform, where sys.maxsize overflows on Windows) and put it back after
    old_limit = csv.field_size_limit(_FIELD_SIZE_LIMIT)
    try:
        with open(mpath, newline="", encoding="utf-8-sig") as f:
            csv_reader = csv.reader(f)
            header = next(csv_reader, None)
            if header is None:
                raise ValueError(f"manifest {str(mpath)!r} is empty; it needs a header row and one row per sample")
            cols = [h.strip().lower() for h in header]
            _check_header(mpath, cols)
            index = {c: i for i, c in enumerate(cols)}
            for cells in csv_reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # blank line
                # the line the row starts on: quoted cells may span lines
                line = csv_reader.line_num - sum(c.count("\n") for c in cells)
                row = _parse_row(cells, cols, index, line, base, reader, seen_ids)
                if row is not None:
                    rows.append(row)
    except UnicodeDecodeError as err:
        raise ValueError(f"manifest {str(mpath)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise ValueError(f"manifest {str(mpath)!r} is not valid CSV at line {csv_reader.line_num}: {err}") from None
    finally:
        csv.field_size_limit(old_limit)
    if not rows and not reader.skipped:
        raise ValueError(f"manifest {str(mpath)!r} has a header but no rows")
    return rows, "split" in index


def _check_header(mpath: Path, cols: list[str]) -> None:
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ValueError(f"manifest {str(mpath)!r}: column(s) {dup} appear more than once in the header")
    if "label" not in cols:
        raise ValueError(f"manifest {str(mpath)!r} has no 'label' column (header: {cols})")
    if not any(m in cols for m in _MODALITY_COLUMNS):
        raise ValueError(
            f"manifest {str(mpath)!r} has none of the modality columns {list(_MODALITY_COLUMNS)} (header: {cols})"
        )
    other = [c for c in cols if c not in _KNOWN_COLUMNS]
    if other:
        log.warning(
            "manifest %s: ignoring column(s) %s (known: %s)", mpath, other, sorted(_KNOWN_COLUMNS)
        )


def _parse_row(
    cells: list[str],
    cols: list[str],
    index: dict[str, int],
    line: int,
    base: Path,
    reader: _Reader,
    seen_ids: dict[str, int],
) -> _Row | None:
    """One row of cells into a :class:`_Row`, or ``None`` after ``reader.bad``."""

    def cell(name: str) -> str:
        return cells[index[name]] if name in index and index[name] < len(cells) else ""

    rid = cell("id").strip() or None
    if len(cells) != len(cols):
        reader.bad(line, rid, f"unreadable row: {len(cells)} cells but the header has {len(cols)} columns")
        return None
    if rid is not None:
        if rid in seen_ids:
            reader.bad(line, rid, f"duplicate id, already used on line {seen_ids[rid]}")
            return None
        seen_ids[rid] = line
    split = None
    if "split" in index:
        split = cell("split").strip().lower()
        if split not in SPLITS:
            reader.bad(line, rid, f"split {cell('split')!r} is not one of {list(SPLITS)}")
            return None
    label = cell("label").strip()
    if not label:
        reader.bad(line, rid, "no label (the label cell is empty)")
        return None
    text = cell("text")
    row = _Row(line=line, id=rid, split=split, label=label, text=text if text.strip() else None)
    for m in ("image", "audio", "text_file"):
        value = cell(m).strip()
        if value:
            p = Path(value).expanduser()
            setattr(row, m, p if p.is_absolute() else base / p)
    if row.text is not None and row.text_file is not None:
        reader.bad(line, rid, "both text and text_file are filled; give the text inline or as a file, not both")
        return None
    if row.text is None and row.text_file is None and row.image is None and row.audio is None:
        reader.bad(line, rid, f"no modality: the {[m for m in _MODALITY_COLUMNS if m in index]} cells are all empty")
        return None
    return row


def _check_label(row: _Row, int_labels: bool, reader: _Reader) -> bool:
    """Integer labels must be ``>= 0``; reports and returns ``False`` otherwise."""
    if int_labels and int(row.label) < 0:
        reader.bad(row.line, row.id, f"label {row.label} is negative; class ids must be >= 0")
        return False
    if int_labels:
        row.label = str(int(row.label))  # "+3", "03" and "3" are one class
    return True


def _unknown_label(row: _Row, reader: _Reader, split: str | None = None) -> None:
    """Report a val/test row whose label no train row has."""
    where = split or row.split
    reader.bad(row.line, row.id, f"label {row.label!r} of this {where} row never occurs in the train split")


def _first_image_size(rows: list[_Row], max_image_pixels: int | None) -> tuple[int, int] | None:
    """The default common image size: that of the first train row (or row without a
    split cell) whose image header reads and is within ``max_image_pixels``; ``None``
    when there is none (then each image keeps its size and meets the budget alone)."""
    for r in rows:
        if r.image is None or r.split not in (None, "train"):
            continue
        hw = image_file_size(r.image)
        if hw is not None and (max_image_pixels is None or hw[0] * hw[1] <= max_image_pixels):
            return hw
    return None


def _check_channels(rows: list[_Row], mpath: Path) -> None:
    """Refuse a manifest whose images mix greyscale and RGB (``image_channels=None``).

    The graph builder needs one channel count; naming the key and a file of each kind
    says what to fix, where the builder alone could only report the two counts.
    """
    first: dict[int, _Row] = {}
    for r in rows:
        if r.sample.image is not None:
            first.setdefault(int(r.sample.image.shape[0]), r)
    if len(first) > 1:
        kinds = {1: "greyscale (1 channel)", 3: "RGB (3 channels)"}
        shown = "; ".join(
            f"{str(r.image)!r} (line {r.line}) is {kinds.get(c, f'{c} channels')}" for c, r in sorted(first.items())
        )
        raise ValueError(
            f"manifest {str(mpath)!r}: the images mix channel counts: {shown}; set data.image_channels=1 "
            f"(greyscale) or data.image_channels=3 (RGB) to convert every image"
        )


def _read_sample(
    row: _Row,
    mpath: Path,
    image_channels: int | None,
    image_size: tuple[int, int] | None,
    sample_rate: int | None,
    max_image_pixels: int | None = None,
) -> Sample:
    """Decode the row's files; any failure becomes a :class:`_RowError`."""
    image = audio = rate = None
    text = row.text
    try:
        if row.image is not None:
            hw = image_file_size(row.image)  # None: read_image below reports the problem
            target = image_size or hw
            if target is not None and max_image_pixels is not None and target[0] * target[1] > max_image_pixels:
                raise _RowError(
                    f"image file {str(row.image)!r} is {target[0]} x {target[1]} = {target[0] * target[1]} pixels, "
                    f"over data.max_image_pixels={max_image_pixels}; set data.image_size=[H, W] to resize "
                    f"every image, or raise data.max_image_pixels"
                )
            image = read_image(row.image, channels=image_channels, size=image_size)
            row.resized = hw is not None and image_size is not None and hw != tuple(image_size)
        if row.audio is not None:
            audio, rate = read_audio(row.audio, sample_rate=sample_rate)
        if row.text_file is not None:
            text = read_text(row.text_file)
            if not text.strip():
                text = None
                if image is None and audio is None:
                    raise _RowError(f"text file {str(row.text_file)!r} is empty and the row has no other modality")
    except _RowError:
        raise
    except FileNotFoundError as err:
        raise _RowError(str(err)) from None
    except (ValueError, OSError, RuntimeError) as err:
        raise _RowError(str(err) or type(err).__name__) from None
    return Sample(
        text=text,
        image=image,
        audio=audio,
        sample_rate=rate,
        id=row.id if row.id is not None else f"{mpath.name}:{row.line}",
    )


def _carve(by_split: dict[str, list[_Row]], fractions: dict[str, float], seed: int) -> dict[str, list[_Row]]:
    """Move a stratified, seeded share of each class of train rows to val and test.

    Per class of ``n`` train rows, ``round(f * n)`` (halves up) go to each split with
    fraction ``f``, test first giving way so that train keeps at least one row.
    Every split stays in manifest order.
    """
    rng = np.random.default_rng(seed)
    pool = by_split["train"]
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(pool):
        by_label.setdefault(r.label, []).append(i)
    dest = ["train"] * len(pool)
    for label in sorted(by_label):
        idx = np.asarray(by_label[label])
        n = len(idx)
        n_val = math.floor(fractions["val"] * n + 0.5)
        n_test = math.floor(fractions["test"] * n + 0.5)
        n_val = min(n_val, n - 1)
        n_test = min(n_test, n - 1 - n_val)
        order = idx[rng.permutation(n)]
        for i in order[:n_val]:
            dest[i] = "val"
        for i in order[n_val : n_val + n_test]:
            dest[i] = "test"
    out = {name: list(rows) for name, rows in by_split.items()}
    out["train"] = []
    for r, d in zip(pool, dest):
        out[d].append(r)
    for name in ("val", "test"):
        out[name].sort(key=lambda r: r.line)
    return out
