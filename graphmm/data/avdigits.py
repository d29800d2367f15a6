r"""``avdigits``: spoken and handwritten digits paired by label (e.g. FSDD with MNIST).

Every clip of an audio folder (:func:`~graphmm.data.audio_folder.read_audio_records`,
FSDD layout or one folder per class) gets one handwritten image of the same digit
from an image array file (:func:`~graphmm.data.images.read_image_arrays`, e.g.
``mnist/train.npz``), and optionally a short sentence, into one two- (or three-)
modality :class:`~graphmm.data.Sample`.

**Split.** The split follows the audio: the clips are split by the rule of
:func:`~graphmm.data.audio_folder.load_audio_folder` (``split="dataset"``: FSDD's
takes 0-4 are test; ``"speakers"``; ``"random"``), validation is carved out of the
train clips, and each sample lands in its clip's split.

**Pairing.** Images are drawn without replacement, so no image is used twice and
none appears in two splits. Per label, the label's images are put in a seeded random
order and handed to the label's clips in split order (train, val, test), each split
in clip order; ``seed`` fixes the whole pairing. With ``image_test_path`` the test
clips draw from that file instead (MNIST's own test images, say) and train and val
from ``image_path``. A label with fewer images than clips is an error. Audio labels
must be the integer class ids of the images (FSDD's ``"0"`` ... ``"9"``).

**Text** (``text=True``): a sentence per sample from the templates of the embedded
``digits`` dataset (:mod:`graphmm.data.digits`): it names the digit for a
``text_informative`` share of the samples and is label-free filler otherwise. Needs
labels 0-9.

Sample ids are ``"<clip id>+<image file name>/<image index>"``, e.g.
``"7_george_31.wav+train.npz/4512"``.

Example:
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "wav"))
    >>> for digit in (0, 1):
    ...     for take in range(10):
    ...         sf.write(os.path.join(d, "wav", f"{digit}_ann_{take}.wav"), np.zeros(400, np.float32), 8000)
    >>> np.savez(os.path.join(d, "img.npz"), images=np.zeros((30, 8, 8), np.uint8), labels=np.arange(30) % 2)
    >>> splits = load_avdigits(os.path.join(d, "img.npz"), os.path.join(d, "wav"), val_fraction=0.2, text=True)
    >>> splits.sizes(), splits["test"][0].modalities
    ({'train': 8, 'val': 2, 'test': 10}, ('text', 'image', 'audio'))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from graphmm.data.audio_folder import audio_split, read_audio_records, records_to_splits
from graphmm.data.digits import DIGIT_WORDS, DigitsConfig, _make_text
from graphmm.data.images import _Arrays
from graphmm.data.io import DataSplits, FilePolicy
from graphmm.data.sample import Sample

__all__ = ["load_avdigits"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_SPLITS = ("train", "val", "test")
# independent random streams of one seed
_PAIR_STREAM, _PAIR_TEST_STREAM, _TEXT_STREAM = 2, 3, 4


def load_avdigits(
    image_path: PathLike,
    audio_root: PathLike,
    image_test_path: PathLike | None = None,
    sample_rate: int | None = 8000,
    split: str = "dataset",
    test_speakers: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    text: bool = False,
    text_informative: float = 0.3,
    on_file_error: str = "raise",
    test_fraction: float = 0.2,
) -> DataSplits:
    """Pair every audio clip with an image of the same label (and optionally a sentence).

    See the module docstring for the split and the pairing rule.

    Args:
        image_path: ``.npz`` of ``images`` and ``labels`` (MNIST: ``mnist/train.npz``).
        audio_root: Folder of WAV clips (FSDD: ``fsdd/recordings``).
        image_test_path: ``.npz`` the test clips take their images from; ``None``:
            ``image_path``. Default: ``None``.
        sample_rate: Rate every clip is resampled to; ``None`` keeps each file's.
            Default: ``8000``.
        split: Audio split rule, ``"dataset"``, ``"speakers"`` or ``"random"``.
            Default: ``"dataset"``.
        test_speakers: Test speakers of ``split="speakers"``. Default: ``None``.
        val_fraction: Share of the train clips held out as validation, stratified.
            Default: ``0.1``.
        seed: Seed of the validation hold-out, the pairing and the sentences.
            Default: ``0``.
        text: Add a sentence to every sample. Default: ``False``.
        text_informative: Share of sentences that name the digit. Default: ``0.3``.
        on_file_error: ``"raise"`` or ``"skip"``: what a bad audio file does.
            Default: ``"raise"``.
        test_fraction: Share of test clips of ``split="random"``. Default: ``0.2``.

    Returns:
        DataSplits: ``{"train", "val", "test"}`` lists of :class:`Sample` with ``image``,
        ``audio``, ``sample_rate``, ``label``, ``target`` (the label name), optionally
        ``text``, and ``id``; plus ``classes`` and ``skipped``.

    Shapes:
        - image: :math:`(C, H, W)` float32 in ``[0, 1]``
        - audio: :math:`(T,)` float32

    Raises:
        FileNotFoundError: A file or folder is missing.
        ValueError: A file is bad, audio labels are not integer class ids, a label has
            too few images or none, ``text=True`` with labels outside 0-9, or an
            argument is out of range; the message names the file or label.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 <= text_informative <= 1.0:
        raise ValueError(f"text_informative must be in [0, 1], got {text_informative}")
    policy = FilePolicy(on_file_error)
    records = read_audio_records(audio_root, sample_rate=sample_rate, on_file_error=on_file_error)
    test = audio_split(records, split, test_speakers, test_fraction, seed)
    audio = records_to_splits(records, test, val_fraction, seed, policy, records.root)
    _check_audio_labels(audio, records.root, text)
    train_images = _Arrays(image_path)
    test_images = _Arrays(image_test_path) if image_test_path is not None else train_images
    paired = _pair_images(audio, train_images, test_images, seed)
    if text:
        paired = _add_text(paired, text_informative, seed)
    out = DataSplits(paired, classes=audio.classes, skipped_items=audio.skipped_items, source=records.root)
    log.info("avdigits (%s + %s): %s", train_images.path.name, records.root, out.sizes())
    return out


def _check_audio_labels(audio: DataSplits, root: str, text: bool) -> None:
    """The audio labels must be the images' integer class ids (0-9 for ``text``)."""
    if not all(c.isdigit() for c in audio.classes):
        raise ValueError(
            f"audio folder {root!r}: avdigits pairs clips with images by label, so the audio labels must "
            f"be the images' integer class ids; got {audio.classes}"
        )
    if text and len(audio.classes) > len(DIGIT_WORDS):
        raise ValueError(f"text=True names digits 0-9, but the audio has labels up to {audio.classes[-1]}")


def _pair_images(
    audio: DataSplits, train_images: _Arrays, test_images: _Arrays, seed: int
) -> dict[str, list[Sample]]:
    """Each clip's sample with a distinct image of its label (the pairing rule of the
    module docstring); the test clips draw from ``test_images``."""
    # (pool, clips): which file each split's clips draw from, in drawing order
    if test_images is train_images:
        plan = [(train_images, _PAIR_STREAM, [(k, s) for k in _SPLITS for s in audio[k]])]
    else:
        plan = [
            (train_images, _PAIR_STREAM, [(k, s) for k in ("train", "val") for s in audio[k]]),
            (test_images, _PAIR_TEST_STREAM, [("test", s) for s in audio["test"]]),
        ]
    paired: dict[str, list[Sample]] = {k: [] for k in _SPLITS}
    for arrays, stream, clips in plan:
        chosen = _draw(arrays, np.array([s.label for _, s in clips], dtype=np.int64), [seed, stream])
        block = arrays.floats(chosen)
        for j, ((key, s), i) in enumerate(zip(clips, chosen.tolist())):
            paired[key].append(s.replace(image=block[j].clone(), id=f"{s.id}+{arrays.path.name}/{i}"))
    return paired


def _add_text(paired: dict[str, list[Sample]], text_informative: float, seed: int) -> dict[str, list[Sample]]:
    """Every sample with a sentence of the ``digits`` templates (seeded, in split order)."""
    every = [s for k in _SPLITS for s in paired[k]]
    labels = np.array([s.label for s in every], dtype=np.int64)
    rng = np.random.default_rng([seed, _TEXT_STREAM])
    sentences = _make_text(labels, DigitsConfig(text_informative=text_informative), rng)
    it = iter(sentences)
    return {k: [s.replace(text=next(it)) for s in paired[k]] for k in _SPLITS}


def _draw(arrays: _Arrays, labels: np.ndarray, seed: list[int]) -> np.ndarray:
    """For each clip label, the index of a distinct image of that label (seeded).

    Shapes:
        - labels: :math:`(M,)`; output: :math:`(M,)` indices into ``arrays``.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels).tolist():
        want = np.flatnonzero(labels == label)
        have = np.flatnonzero(arrays.labels == label)
        if len(have) < len(want):
            raise ValueError(
                f"image array file {str(arrays.path)!r} has {len(have)} images of label {label} but "
                f"{len(want)} clips need one each; use an image file with more images of that label"
            )
        out[want] = rng.permutation(have)[: len(want)]
    return out


#: Samples carry labels, no target text: a generation model cannot train on them.
load_avdigits.provides_targets = False  # type: ignore[attr-defined]
