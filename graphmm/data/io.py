"""Read images and audio clips from files into the tensors a :class:`~graphmm.data.Sample` holds.

Every failure (a missing file, a file that is not an image or a sound, a corrupt or
truncated file, an empty clip) raises :class:`ValueError` (or
:class:`FileNotFoundError` for a missing file) whose message names the file and the
problem, so a command line can print it as one line.

Example:
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from PIL import Image
    >>> from graphmm.data.io import read_audio, read_image
    >>> d = tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(os.path.join(d, "x.png"))
    >>> read_image(os.path.join(d, "x.png"), channels=1, size=(8, 8)).shape
    torch.Size([1, 8, 8])
    >>> sf.write(os.path.join(d, "x.wav"), np.zeros((1600, 2), np.float32), 16000)
    >>> wave, sr = read_audio(os.path.join(d, "x.wav"), sample_rate=8000)
    >>> tuple(wave.shape), sr
    ((800,), 8000)

It also holds what the file-based dataset loaders share: :class:`DataSplits` (the
``{"train", "val", "test"}`` dict they return, with the class names and the files
they skipped), :class:`FilePolicy` (the ``on_file_error`` rule), :func:`class_index`
(label names to class ids), :func:`stratified_holdout` (a seeded, stratified
hold-out of an exact size) and :func:`read_text_lines`.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DataSplits",
    "FilePolicy",
    "class_index",
    "holdout_split",
    "read_audio",
    "MAX_IMAGE_PIXELS",
    "image_file_size",
    "read_image",
    "read_text",
    "read_text_lines",
    "require_splits",
    "stratified_holdout",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise ValueError(f"{what} path {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise ValueError(f"{what} file {str(p)!r} is empty (0 bytes)")
    return p


# ---------------------------------------------------------------------- images
#: Pixel budget of one image after resizing (1024 x 1024). At the default graph (4 x 4
#: patches, stride 2) that is about 260,000 patch nodes. A 4000 x 4000 photo, 15 times
#: as many pixels, needed about 8.5 GB in a GAT forward pass and failed inside the
#: model with an allocator error naming no file; memory grows linearly with the
#: pixels. The loaders' ``max_image_pixels`` default is this.
MAX_IMAGE_PIXELS: int = 1024 * 1024


def image_file_size(path: PathLike) -> tuple[int, int] | None:
    """``(H, W)`` of an image file from its header, without decoding the pixels.

    Args:
        path: The image file.

    Returns:
        The size, or ``None`` when the file is missing or Pillow cannot read its
        header (:func:`read_image` then reports the precise problem).

    Example:
        >>> import numpy as np, os, tempfile
        >>> from PIL import Image
        >>> f = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> Image.fromarray(np.zeros((6, 10), np.uint8)).save(f)
        >>> image_file_size(f)
        (6, 10)
    """
    from PIL import Image

    try:
        with Image.open(path) as im:  # lazy: reads the header only
            width, height = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return int(height), int(width)


def _to_float_array(im) -> np.ndarray:
    """PIL image to an ``(H, W)`` or ``(H, W, C)`` float32 array in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "I":  # 32-bit ints; PNG stores 16-bit greyscale this way
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / top, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
    if mode not in ("L", "RGB"):
        # palette, RGBA, LA, CMYK, 1-bit ...: alpha is dropped, colour kept
        im = im.convert("L" if mode in ("1", "LA", "La") else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


def read_image(
    path: PathLike,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Read an image file (PNG, JPEG, BMP, ... anything Pillow opens) as a float tensor.

    Args:
        path: The image file.
        channels: ``1`` (greyscale, ITU-R 601 luma) or ``3`` (RGB) to convert to;
            ``None`` keeps greyscale images (with or without alpha) at 1 channel
            and gives 3 for any other mode. Alpha is dropped. Default: ``None``.
        size: ``(H, W)`` to resize to (bilinear, antialiased when shrinking), or
            ``None`` to keep the file's size. Default: ``None``.

    Returns:
        ``(C, H, W)`` float32 tensor with values in ``[0, 1]``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is empty, not an image, corrupt or truncated, or the
            arguments are invalid; the message names the file.

    Shapes:
        - Output: :math:`(C, H, W)`.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if size is not None:
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise ValueError(f"size must be a pair (H, W) of positive ints, got {size!r}")
        size = (int(size[0]), int(size[1]))
    p = _existing_file(path, "image")
    try:
        with Image.open(p) as im:
            im.load()  # decode now: truncated or corrupt data fails here, not later
            arr = _to_float_array(im)
    except UnidentifiedImageError:
        raise ValueError(
            f"image file {str(p)!r} is not an image Pillow can read (unknown format or corrupt header); "
            f"use PNG or JPEG"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"image file {str(p)!r} is corrupt or truncated: {err}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image file {str(p)!r} has no pixels ({arr.shape[0]} x {arr.shape[1]})")
    out = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (C, H, W)
    if channels == 1 and out.shape[0] == 3:
        # ITU-R 601-2 luma, the weights Pillow's convert("L") uses
        out = (out * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    elif channels == 3 and out.shape[0] == 1:
        out = out.expand(3, -1, -1)
    if size is not None and tuple(out.shape[-2:]) != size:
        out = torch.nn.functional.interpolate(
            out[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0]
    out = out.to(torch.float32).contiguous()
    return out.clamp_(0.0, 1.0)


# ---------------------------------------------------------------------- audio
def _check_riff(p: Path) -> None:
    """Refuse a WAV whose ``data`` chunk is shorter than its header says.

    libsndfile reads such a file silently up to where it ends, which would hand a
    model a clip cut short without a word; the chunk walk below costs a few reads.
    """
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # not a plain RIFF/WAVE file (RF64, W64, ...): libsndfile checks it
        endian = "<" if head[:4] == b"RIFF" else ">"
        size = p.stat().st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack(endian + "4sI", f.read(8))
            if cid == b"data":
                have = size - pos - 8
                # 0 and 0xFFFFFFFF mark streamed files whose length was never filled in
                if clen not in (0, 0xFFFFFFFF) and have < clen:
                    raise ValueError(
                        f"audio file {str(p)!r} is truncated: its header declares {clen} bytes of audio data "
                        f"but the file holds {have}; re-export or re-download it"
                    )
                return
            pos += 8 + clen + (clen & 1)  # chunks are padded to an even length


def read_audio(path: PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read a sound file (WAV, FLAC, OGG, ... anything libsndfile opens) as a mono waveform.

    Channels are averaged to one. With ``sample_rate`` the clip is resampled with
    :func:`torchaudio.functional.resample` (windowed sinc).

    Args:
        path: The sound file.
        sample_rate: Rate to resample to, or ``None`` to keep the file's rate.
            Default: ``None``.

    Returns:
        ``(waveform, rate)``: float32 ``(T,)`` with ``T >= 1``, and its sample rate.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is empty, not a sound file, corrupt, truncated, holds
            zero samples or non-finite values; the message names the file.

    Shapes:
        - Output: :math:`(T,)`.
    """
    import soundfile as sf
    import torchaudio

    if sample_rate is not None and (not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate < 1):
        raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r}")
    p = _existing_file(path, "audio")
    _check_riff(p)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)  # (T, channels)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as err:
        msg = str(err).replace(f"Error opening {str(p)!r}: ", "").strip() or type(err).__name__
        raise ValueError(
            f"audio file {str(p)!r} cannot be read ({msg}); use an uncorrupted WAV, FLAC or OGG file"
        ) from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"audio file {str(p)!r} holds zero samples (an empty or header-only clip)")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file {str(p)!r} has NaN or inf samples")
    wave = torch.from_numpy(data).mean(dim=1)
    rate = int(rate)
    if sample_rate is not None and sample_rate != rate:
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
        rate = sample_rate
        if wave.numel() == 0:
            raise ValueError(f"audio file {str(p)!r} is too short to resample to {sample_rate} Hz")
    return wave.contiguous(), rate


# ---------------------------------------------------------------------- text
def read_text(path: PathLike, what: str = "text") -> str:
    """Read a whole text file as UTF-8 (a byte-order mark is dropped).

    Unlike :func:`read_text_lines` there is no fallback encoding: a text file that a
    user names for one sample (a manifest's ``text_file`` cell, ``predict``'s
    ``input.text_file``) must be UTF-8, and guessing would hide a wrong file.

    Args:
        path: The text file.
        what: What the file is, for messages. Default: ``"text"``.

    Returns:
        The file's text, line ends included.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The path is not a file, or the file is not UTF-8; the message
            names the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise ValueError(f"{what} path {str(p)!r} is not a file")
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{what} file {str(p)!r} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None


def read_text_lines(path: PathLike, what: str = "text") -> list[str]:
    """Read a text file as a list of lines, the way an editor numbers them.

    Line ``i`` of the result is line ``i + 1`` of the file. Lines end at ``\\n``; a
    ``\\r`` before it (Windows line ends) is dropped, and a final ``\\n`` ends the last
    line rather than starting an empty one. Other characters that
    :meth:`str.splitlines` would also break at (form feed, ``\\x1c`` ...) stay inside
    their line, so the numbering matches ``wc -l`` and ``sed -n <i>p``. The file is
    decoded as UTF-8 (a byte-order mark is dropped); a file that is not valid UTF-8 is
    decoded as Windows-1252, or Latin-1 where Windows-1252 leaves a byte undefined, with
    a warning naming the file (``corpus/mr.txt`` of the MR corpus is Windows-1252).

    Args:
        path: The text file.
        what: What the file is, for messages (``"labels"``, ``"corpus"`` ...).
            Default: ``"text"``.

    Returns:
        The lines, without their line ends.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The path is not a file.

    Example:
        >>> import os, tempfile
        >>> f = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> _ = open(f, "wb").write(b"one\\r\\ntwo\\r\\n")
        >>> read_text_lines(f)
        ['one', 'two']
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise ValueError(f"{what} path {str(p)!r} is not a file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        try:
            text, enc = raw.decode("cp1252"), "Windows-1252"
        except UnicodeDecodeError:
            text, enc = raw.decode("latin-1"), "Latin-1"
        log.warning(
            "%s file %s is not UTF-8 (%s at byte %d); read it as %s", what, p, err.reason, err.start, enc
        )
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final line end terminates the last line
    return [line.removesuffix("\r") for line in lines]


# ---------------------------------------------------------------------- datasets on disk
class DataSplits(dict):
    """``{"train", "val", "test"} -> list[Sample]``, with what reading the files found.

    A plain :class:`dict` of the three splits, so it goes wherever the output of
    :func:`~graphmm.data.load_digits` goes (:func:`graphmm.train.train` reads
    :attr:`classes` and :attr:`skipped` when they are there), plus:

    Attributes:
        classes (list[str]): Class name of each class id.
        label_to_id (dict[str, int]): The inverse mapping, label -> class id.
        skipped (int): Files, lines or documents left out with ``on_file_error="skip"``.
        skipped_items (list[tuple[str, str]]): ``(where, reason)`` for each of them.
        source (str): The file or folder the data came from.
    """

    classes: list[str]
    label_to_id: dict[str, int]
    skipped: int
    skipped_items: list[tuple[str, str]]
    source: str

    def __init__(
        self,
        splits: dict | None = None,
        classes: Iterable[str] = (),
        skipped_items: Iterable[tuple[str, str]] = (),
        source: str = "",
    ) -> None:
        super().__init__(splits or {})
        self.classes = list(classes)
        self.label_to_id = {c: i for i, c in enumerate(self.classes)}
        self.skipped_items = list(skipped_items)
        self.skipped = len(self.skipped_items)
        self.source = str(source)

    def sizes(self) -> dict[str, int]:
        """Number of samples per split, e.g. ``{"train": 6397, "val": 711, "test": 3554}``."""
        return {k: len(v) for k, v in self.items()}


@dataclass
class FilePolicy:
    """What a bad file, line or document does: ``"raise"`` or ``"skip"``.

    Args:
        on_file_error: ``"raise"`` stops with a :class:`ValueError` whose message is
            ``"<where>: <problem>"`` and says how to skip instead; ``"skip"`` logs a
            warning with the same text and records ``(where, problem)`` in
            :attr:`skipped`.

    Raises:
        ValueError: ``on_file_error`` is neither ``"raise"`` nor ``"skip"``.
    """

    on_file_error: str = "raise"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_file_error not in ("raise", "skip"):
            raise ValueError(f"on_file_error must be 'raise' or 'skip', got {self.on_file_error!r}")

    def bad(self, where: str, problem: str) -> None:
        """Raise for ``"raise"``; log and record for ``"skip"``."""
        if self.on_file_error == "raise":
            raise ValueError(
                f"{where}: {problem} (on_file_error='skip', or data.on_error=skip on the command line, "
                f"leaves such items out)"
            )
        log.warning("skipping %s: %s", where, problem)
        self.skipped.append((where, problem))


_INT = re.compile(r"[+-]?\d+")


def class_index(labels: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """Class names and the mapping label -> class id, the rule every loader follows.

    When every label is a non-negative integer (``"7"``, ``"07"``) the integer is the
    class id and ``classes`` is ``["0", ..., "<max>"]``; otherwise the distinct labels
    in sorted order get ids ``0, 1, ...``.

    Args:
        labels: Label names, with repeats.

    Returns:
        ``(classes, label_to_id)``; ``label_to_id`` has an entry for every distinct
        label given (``"07"`` and ``"7"`` both map to 7).

    Example:
        >>> class_index(["HUM", "DESC", "HUM"])
        (['DESC', 'HUM'], {'DESC': 0, 'HUM': 1})
        >>> class_index(["2", "0"])
        (['0', '1', '2'], {'0': 0, '2': 2})
    """
    names = sorted(set(labels))
    if names and all(_INT.fullmatch(n) and int(n) >= 0 for n in names):
        top = max(int(n) for n in names)
        return [str(i) for i in range(top + 1)], {n: int(n) for n in names}
    return names, {n: i for i, n in enumerate(names)}


def stratified_holdout(labels: np.ndarray, size: int, seed: int | Iterable[int]) -> np.ndarray:
    """Choose ``size`` items, stratified by label and seeded, to hold out.

    Each class gets its share of ``size`` in proportion to its count (largest
    remainders round up, ties to the smaller class id), but never all of its items:
    one stays behind, so a class cannot vanish from the part that remains (the
    held-out total is then smaller than ``size``). Which items of a class go is a
    seeded random choice. Vectorised over all items.

    Args:
        labels: Integer class ids, any order.
        size: How many items to hold out, ``0 <= size <= len(labels)``.
        seed: Seed (or seed sequence) of :func:`numpy.random.default_rng`.

    Returns:
        Bool mask of the held-out items, same length as ``labels``.

    Raises:
        ValueError: ``size`` is out of range.

    Shapes:
        - labels: :math:`(N,)`; output: :math:`(N,)` bool.

    Example:
        >>> mask = stratified_holdout(np.array([0] * 8 + [1] * 2), 5, seed=0)
        >>> int(mask.sum()), int(mask[:8].sum())
        (5, 4)
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= size <= n:
        raise ValueError(f"cannot hold out {size} of {n} items")
    mask = np.zeros(n, dtype=bool)
    if size == 0 or n == 0:
        return mask
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = size * counts / n
    quota = np.floor(exact).astype(np.int64)
    rest = size - int(quota.sum())
    if rest > 0:  # largest remainders first; a stable sort breaks ties by class order
        quota[np.argsort(-(exact - quota), kind="stable")[:rest]] += 1
    quota = np.minimum(quota, counts - 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), inverse))  # by class, then at random
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts[inverse[order]]  # position inside its class
    mask[order] = rank < quota[inverse[order]]
    return mask


def holdout_split(
    pool: np.ndarray, labels: np.ndarray, fraction: float, seed: int | Iterable[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices ``pool`` into ``(kept, held_out)``, the step every loader uses
    to carve validation (or test) out of train.

    ``round(fraction * len(pool))`` items (halves up) are held out, stratified by
    ``labels`` and seeded (:func:`stratified_holdout`); both parts keep the order of
    ``pool``.

    Args:
        pool: Indices to split, int ``(N,)``.
        labels: Integer class id of each item of ``pool``, ``(N,)``.
        fraction: Share to hold out, in ``[0, 1)``.
        seed: Seed (or seed sequence) of the choice.

    Returns:
        ``(kept, held_out)``, two index arrays taken from ``pool``.

    Example:
        >>> kept, held = holdout_split(np.arange(10), np.array([0] * 5 + [1] * 5), 0.2, seed=0)
        >>> len(kept), len(held), sorted(int(i) // 5 for i in held)
        (8, 2, [0, 1])
    """
    mask = stratified_holdout(labels, int(np.floor(fraction * len(pool) + 0.5)), seed)
    return pool[~mask], pool[mask]


def require_splits(splits: Mapping[str, Sized], where: str) -> None:
    """Stop when a split is empty: ``"<where>: the val split is empty (raise val_fraction)"``.

    Raises:
        ValueError: The first empty split, named with ``where`` (a file or folder).
    """
    for key, items in splits.items():
        if not len(items):
            hint = " (raise val_fraction)" if key == "val" else ""
            raise ValueError(f"{where}: the {key} split is empty{hint}")
