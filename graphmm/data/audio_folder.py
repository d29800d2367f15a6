r"""``audio_folder``: a folder of labelled WAV clips, such as the Free Spoken Digit Dataset.

Two layouts are read, also mixed in one folder:

.. code-block:: text

    <root>/{label}_{speaker}_{take}.wav      Free Spoken Digit Dataset (FSDD): 7_george_31.wav
    <root>/<label>/<anything>.wav            one folder per class

In the folder layout a file named ``{x}_{speaker}_{take}.wav`` also gives its speaker
and take (the folder gives the label; when ``{x}`` differs from the folder a warning
says so, which catches ``root=fsdd`` given for ``root=fsdd/recordings``); other names
give neither. ``.wav`` is matched
case-insensitively; other files are ignored. A top-level WAV whose name does not follow
the FSDD pattern has no label and is a bad file.

**Splits** (``split=``):

- ``"dataset"``: FSDD's own rule, takes 0-4 of every speaker and digit are test, takes
  5 and up are train (FSDD: 250 test, 2,250 train: 5 speakers x 10 digits x 5 takes).
  Every file needs a take number.
- ``"speakers"``: speaker-independent, the clips of ``test_speakers`` are test and the
  others train. Every file needs a speaker.
- ``"random"``: ``test_fraction`` of the clips, stratified by label and seeded, are
  test; for folders without speakers or takes.

Validation is then carved out of train: ``round(val_fraction * n_train)`` clips,
stratified by label and seeded (:func:`~graphmm.data.io.stratified_holdout`). With
``"speakers"`` validation therefore shares speakers with train; only test is
speaker-independent. Within each split, samples follow :func:`read_audio_records`'
order.

**Labels** are the label strings; class ids follow
:func:`~graphmm.data.io.class_index` (FSDD's ``"0"`` ... ``"9"`` are ids 0-9).

**Bad files.** A truncated, corrupt, empty or unreadable WAV, a top-level WAV without
a label in its name and a test clip whose label never occurs in train are bad: with
``on_file_error="raise"`` the first one raises a :class:`ValueError` naming the file;
with ``"skip"`` each is logged, left out and counted in
:attr:`~graphmm.data.io.DataSplits.skipped`.

Example:
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> for d in (3, 5):
    ...     for take in range(10):
    ...         sf.write(os.path.join(root, f"{d}_ann_{take}.wav"), np.zeros(400, np.float32), 8000)
    >>> recs = read_audio_records(root)
    >>> len(recs), recs[0].path.endswith("3_ann_0.wav"), recs[0].speaker, recs[0].take
    (20, True, 'ann', 0)
    >>> splits = load_audio_folder(root, sample_rate=16000, val_fraction=0.2)
    >>> splits.sizes(), splits.classes[3], splits["test"][0].audio.shape
    ({'train': 8, 'val': 2, 'test': 10}, '3', torch.Size([800]))
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from graphmm.data.io import (
    DataSplits,
    FilePolicy,
    class_index,
    holdout_split,
    read_audio,
    require_splits,
    stratified_holdout,
)
from graphmm.data.sample import Sample

__all__ = ["FSDD_TEST_TAKES", "AudioRecord", "AudioRecords", "load_audio_folder", "read_audio_records"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Takes that FSDD's own split puts in test: 0-4.
FSDD_TEST_TAKES: int = 5

# {label}_{speaker}_{take}.wav; the speaker may itself hold underscores
_FSDD_NAME = re.compile(r"(?P<label>[^_]+)_(?P<speaker>.+)_(?P<take>\d+)\.wav", re.IGNORECASE)


@dataclass(eq=False)
class AudioRecord:
    """One clip read from disk, with what its path says about it.

    Args:
        path: The file, as found under the folder given to :func:`read_audio_records`.
        label: The label: the file's folder, or the ``{label}`` of an FSDD name.
        speaker: The ``{speaker}`` of an FSDD-style name, else ``None``.
        take: The ``{take}`` of an FSDD-style name, else ``None``.
        audio: float32 mono waveform.
        sample_rate: Samples per second of :attr:`audio`.

    Shapes:
        - audio: :math:`(T,)`
    """

    path: str
    label: str
    speaker: str | None
    take: int | None
    audio: torch.Tensor = field(repr=False)
    sample_rate: int

    @property
    def name(self) -> str:
        """The file name without its folder, e.g. ``"7_george_31.wav"``."""
        return Path(self.path).name


class AudioRecords(list):
    """A ``list[AudioRecord]`` that also keeps what :func:`read_audio_records` skipped.

    Attributes:
        skipped_items (list[tuple[str, str]]): ``(where, reason)`` per file left out
            with ``on_file_error="skip"``.
        root (str): The folder that was read.
    """

    skipped_items: list[tuple[str, str]]
    root: str


def _natural(text: str) -> tuple:
    """Sort key that orders ``"2"`` before ``"10"``, and numbers before words."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part)


def _find(base: Path, policy: FilePolicy) -> list[tuple[Path, str, str | None, int | None]]:
    """``(path, label, speaker, take)`` of every WAV of both layouts."""
    found, clash = [], []
    for p in base.iterdir():
        if p.is_file() and p.suffix.lower() == ".wav":
            m = _FSDD_NAME.fullmatch(p.name)
            if m is None:
                policy.bad(
                    f"audio file {str(p)!r}",
                    "its name gives no label: name it {label}_{speaker}_{take}.wav or move it into a "
                    "<root>/<label>/ folder",
                )
                continue
            found.append((p, m["label"], m["speaker"], int(m["take"])))
        elif p.is_dir():
            for q in p.iterdir():
                if q.is_file() and q.suffix.lower() == ".wav":
                    m = _FSDD_NAME.fullmatch(q.name)
                    found.append((q, p.name, m["speaker"] if m else None, int(m["take"]) if m else None))
                    if m and m["label"] != p.name:
                        clash.append(q)
    if clash:
        # e.g. root=fsdd instead of fsdd/recordings: every clip would get the label "recordings"
        log.warning(
            "audio folder %s: %d file(s) in class folders name another label than their folder (e.g. %s); the "
            "folder is the label. If the subfolders are not classes, pass the folder holding the clips as root",
            base, len(clash), min(clash).relative_to(base),
        )
    return found


def read_audio_records(
    root: PathLike, sample_rate: int | None = None, on_file_error: str = "raise"
) -> AudioRecords:
    """Read every WAV of an FSDD-style or one-folder-per-class folder.

    See the module docstring for the two layouts.

    Args:
        root: The folder (FSDD: ``.../fsdd/recordings``).
        sample_rate: Rate to resample every clip to
            (:func:`torchaudio.functional.resample`); ``None`` keeps each file's rate.
            Default: ``None``.
        on_file_error: ``"raise"`` or ``"skip"``: what an unreadable file or a
            top-level file without a label in its name does. Default: ``"raise"``.

    Returns:
        AudioRecords: The records (a ``list``), sorted by label, speaker, take and path,
        numbers in numeric order (``"2"`` before ``"10"``), so the order never depends
        on the file system; plus ``skipped_items``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` holds no WAV file, or (``on_file_error="raise"``) a file is
            bad; the message names the file.

    Shapes:
        - audio of each record: :math:`(T,)` float32.
    """
    policy = FilePolicy(on_file_error)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(
            f"audio folder {str(base)!r} does not exist; pass the folder of WAV files (data.root, or set "
            f"GRAPHMM_DATA to the folder above fsdd/)"
        )
    found = _find(base, policy)
    if not found and not policy.skipped:
        raise ValueError(
            f"audio folder {str(base)!r} holds no .wav file, neither {{label}}_{{speaker}}_{{take}}.wav "
            f"nor <label>/*.wav"
        )
    found.sort(key=lambda f: (_natural(f[1]), _natural(f[2] or ""), -1 if f[3] is None else f[3], _natural(str(f[0]))))
    out = AudioRecords()
    for path, label, speaker, take in found:
        try:
            wave, rate = read_audio(path, sample_rate=sample_rate)
        except (ValueError, OSError, RuntimeError) as err:
            policy.bad(f"audio file {str(path)!r}", _reason(err, path))
            continue
        out.append(AudioRecord(str(path), label, speaker, take, wave, rate))
    out.skipped_items, out.root = policy.skipped, str(base)
    return out


def _reason(err: Exception, path: Path) -> str:
    """The message of a reader error without the file name it already starts with."""
    msg = str(err) or type(err).__name__
    for prefix in (f"audio file {str(path)!r} ", f"audio file {str(path)!r}: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def audio_split(
    records: Sequence[AudioRecord],
    split: str = "dataset",
    test_speakers: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Which records are test under a split rule (see the module docstring).

    Args:
        records: The clips, as :func:`read_audio_records` returns them.
        split: ``"dataset"``, ``"speakers"`` or ``"random"``. Default: ``"dataset"``.
        test_speakers: The test speakers of ``split="speakers"``. Default: ``None``.
        test_fraction: Share of test clips of ``split="random"``. Default: ``0.2``.
        seed: Seed of ``split="random"``. Default: ``0``.

    Returns:
        Bool mask, ``True`` for test clips.

    Raises:
        ValueError: An unknown rule, ``test_speakers`` missing, given with another rule
            or naming no speaker present, or a clip without the take or speaker the rule
            needs (named).

    Shapes:
        - Output: :math:`(N,)` bool, ``N = len(records)``.
    """
    if split not in ("dataset", "speakers", "random"):
        raise ValueError(f"split must be 'dataset', 'speakers' or 'random', got {split!r}")
    if test_speakers is not None and split != "speakers":
        raise ValueError(f"test_speakers={list(test_speakers)} needs split='speakers' (got split={split!r})")
    if split == "dataset":
        missing = [r for r in records if r.take is None]
        if missing:
            raise ValueError(
                f"split='dataset' puts takes 0-{FSDD_TEST_TAKES - 1} in test, but audio file {missing[0].path!r} "
                f"has no take in its name ({{label}}_{{speaker}}_{{take}}.wav); use split='random'"
            )
        return np.array([r.take < FSDD_TEST_TAKES for r in records], dtype=bool)
    if split == "speakers":
        if not test_speakers:
            raise ValueError("split='speakers' needs test_speakers, e.g. test_speakers=[george]")
        return speaker_mask(records, test_speakers, "test_speakers")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) for split='random', got {test_fraction}")
    _, to_id = class_index(r.label for r in records)
    labels = np.array([to_id[r.label] for r in records], dtype=np.int64)
    return stratified_holdout(labels, int(np.floor(test_fraction * len(records) + 0.5)), [seed, 1])


def speaker_mask(records: Sequence[AudioRecord], speakers: Sequence[str], what: str) -> np.ndarray:
    """``(N,)`` bool: the records of ``speakers``; ``ValueError`` naming ``what``
    (e.g. ``val_speakers``) when a speaker has no clip or a clip has no speaker."""
    missing = [r for r in records if r.speaker is None]
    if missing:
        raise ValueError(f"{what} needs a speaker per clip, but audio file {missing[0].path!r} has none in its "
                         f"name ({{label}}_{{speaker}}_{{take}}.wav)")
    known = sorted({r.speaker for r in records}, key=_natural)
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise ValueError(f"{what} {unknown} have no clip; the speakers are {known}")
    chosen = set(speakers)
    return np.array([r.speaker in chosen for r in records], dtype=bool)


def records_to_splits(
    records: AudioRecords,
    test: np.ndarray,
    val_fraction: float,
    seed: int,
    policy: FilePolicy,
    source: str,
    val: np.ndarray | None = None,
) -> DataSplits:
    """Audio samples of ``records`` in train/val/test, val carved from train (or the
    records ``val`` marks, e.g. those of :func:`speaker_mask`).

    Test clips whose label no train clip has go to ``policy``. Used by
    :func:`load_audio_folder` and :func:`~graphmm.data.avdigits.load_avdigits`.
    """
    root = Path(records.root)
    train_labels = {r.label for r, t in zip(records, test) if not t}
    if not train_labels:
        raise ValueError(f"audio folder {source!r}: the train split is empty")
    keep = np.ones(len(records), dtype=bool)
    for i in np.flatnonzero(test):
        if records[i].label not in train_labels:
            policy.bad(
                f"audio file {records[i].path!r}",
                f"test label {records[i].label!r} never occurs in the train split (train labels: "
                f"{sorted(train_labels, key=_natural)})",
            )
            keep[i] = False
    classes, to_id = class_index(train_labels)
    labels = np.array([to_id.get(r.label, -1) for r in records], dtype=np.int64)
    if val is not None:
        train_idx, val_idx = np.flatnonzero(~test & ~val), np.flatnonzero(val & ~test)
    else:
        train_idx, val_idx = holdout_split(np.flatnonzero(~test), labels[~test], val_fraction, seed)
    parts = {"train": train_idx, "val": val_idx, "test": np.flatnonzero(test & keep)}

    def sample(i: int) -> Sample:
        r = records[i]
        return Sample(
            audio=r.audio,
            sample_rate=r.sample_rate,
            label=int(labels[i]),
            target=classes[labels[i]],
            id=Path(r.path).relative_to(root).as_posix(),
        )

    out = DataSplits(
        {key: [sample(i) for i in idx.tolist()] for key, idx in parts.items()},
        classes=classes,
        skipped_items=[*records.skipped_items, *policy.skipped],
        source=source,
    )
    require_splits(out, f"audio folder {source!r}")
    return out


def load_audio_folder(
    root: PathLike,
    sample_rate: int | None = 8000,
    split: str = "dataset",
    test_speakers: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    on_file_error: str = "raise",
    test_fraction: float = 0.2,
    val_speakers: Sequence[str] | None = None,
) -> DataSplits:
    """Load a folder of labelled WAV clips into train/val/test audio samples.

    See the module docstring for the layouts, the split rules and bad files.

    Args:
        root: The folder (FSDD: ``.../fsdd/recordings``).
        sample_rate: Rate every clip is resampled to
            (:func:`torchaudio.functional.resample`); ``None`` keeps each file's rate.
            Default: ``8000``.
        split: ``"dataset"`` (takes 0-4 are test), ``"speakers"`` (``test_speakers``
            are test) or ``"random"``. Default: ``"dataset"``.
        test_speakers: Test speakers of ``split="speakers"``. Default: ``None``.
        val_fraction: Share of the train clips held out as validation, stratified by
            label, in ``[0, 1)``. Default: ``0.1``.
        seed: Seed of the validation hold-out (and of ``split="random"``). Default: ``0``.
        on_file_error: ``"raise"`` or ``"skip"``: what a bad file does. Default: ``"raise"``.
        test_fraction: Share of test clips of ``split="random"``. Default: ``0.2``.
        val_speakers: Speakers whose (non-test) clips are the validation split instead
            of a random ``val_fraction``, so that choices made on validation are made
            on voices training never heard, as the test of ``split="speakers"``.
            Default: ``None``.

    Returns:
        DataSplits: ``{"train", "val", "test"}`` lists of :class:`Sample` with
        ``audio``, ``sample_rate``, ``label`` (class id), ``target`` (label name) and
        ``id`` (the path relative to ``root``, e.g. ``"7_george_31.wav"``); plus
        ``classes`` and ``skipped``.

    Shapes:
        - audio: :math:`(T,)` float32, mono.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: An argument is out of range, a split rule cannot apply, a split
            ends up empty, or (``on_file_error="raise"``) a file is bad; the message
            names the file.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    policy = FilePolicy(on_file_error)
    records = read_audio_records(root, sample_rate=sample_rate, on_file_error=on_file_error)
    test = audio_split(records, split, test_speakers, test_fraction, seed)
    val = speaker_mask(records, val_speakers, "val_speakers") if val_speakers else None
    if val is not None and (val & test).any():
        raise ValueError(f"val_speakers {list(val_speakers)} are also test speakers; give other speakers")
    out = records_to_splits(records, test, val_fraction, seed, policy, records.root, val=val)
    if out.skipped:
        log.warning("audio folder %s: skipped %d files (reasons above)", records.root, out.skipped)
    log.info("audio folder %s (split=%s): %s, %d classes", records.root, split, out.sizes(), len(out.classes))
    return out


#: Samples carry labels, no target text: a generation model cannot train on them.
load_audio_folder.provides_targets = False  # type: ignore[attr-defined]
