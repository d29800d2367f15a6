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
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_audio", "read_image"]

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
