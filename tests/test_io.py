"""Reading images and audio from files: conversions, and a clear error for every bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from graphmm.data.io import read_audio, read_image


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


# ---------------------------------------------------------------------- images
def test_grey_png_reads_exactly(tmp_path):
    arr = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    x = read_image(_png(tmp_path / "g.png", arr))
    assert x.shape == (1, 6, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(arr).float() / 255)


def test_rgb_png_read_as_one_channel_uses_luma(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = _png(tmp_path / "rgb.png", arr)
    assert read_image(path).shape == (3, 5, 7)
    grey = read_image(path, channels=1)
    want = (arr.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert grey.shape == (1, 5, 7)
    assert np.allclose(grey[0].numpy(), want, atol=1e-5)
    assert np.allclose(grey[0].numpy(), np.asarray(Image.open(path).convert("L")) / 255, atol=1 / 255 + 1e-6)


def test_grey_read_as_rgb_repeats_the_channel(tmp_path):
    arr = np.full((4, 4), 128, dtype=np.uint8)
    x = read_image(_png(tmp_path / "g.png", arr), channels=3)
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.full((3, 4, 4), 128 / 255))


def test_rgba_and_palette_images_drop_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    assert read_image(_png(tmp_path / "a.png", rgba)).shape == (3, 4, 4)
    pal = Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).convert("P")
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png", channels=1).shape == (1, 4, 4)


def test_16_bit_png_is_scaled_to_unit_range(tmp_path):
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    x = read_image(tmp_path / "d.png", channels=1)
    assert x.shape == (1, 2, 2) and float(x.max()) == pytest.approx(1.0) and float(x.min()) == 0.0


def test_jpeg_and_resize(tmp_path):
    arr = np.zeros((32, 48, 3), dtype=np.uint8)
    arr[:, 24:] = 255
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=95)
    x = read_image(tmp_path / "x.jpg", channels=1, size=(8, 12))
    assert x.shape == (1, 8, 12)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[0, :, :5].mean()) < 0.05 and float(x[0, :, 7:].mean()) > 0.95


def test_missing_image_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png.*does not exist"):
        read_image(tmp_path / "nope.png")


def test_random_bytes_png_is_refused(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match=r"broken\.png.*not an image"):
        read_image(path)


def test_truncated_png_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    _png(tmp_path / "full.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png.*(corrupt|truncated)"):
        read_image(tmp_path / "cut.png")


def test_empty_file_and_bad_arguments(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png.*empty"):
        read_image(tmp_path / "empty.png")
    ok = _png(tmp_path / "ok.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="channels"):
        read_image(ok, channels=2)
    with pytest.raises(ValueError, match="size"):
        read_image(ok, size=(0, 4))


# ---------------------------------------------------------------------- audio
def _wav(path, wave, rate=8000, subtype="PCM_16"):
    sf.write(path, wave, rate, subtype=subtype)
    return path


def test_wav_reads_mono_float(tmp_path):
    wave = (0.5 * np.sin(np.arange(800) * 0.2)).astype(np.float32)
    x, rate = read_audio(_wav(tmp_path / "a.wav", wave, subtype="FLOAT"))
    assert rate == 8000 and x.shape == (800,) and x.dtype == torch.float32
    assert torch.allclose(x, torch.from_numpy(wave))


def test_stereo_is_mixed_down_and_resampled(tmp_path):
    left = np.full(1600, 0.5, dtype=np.float32)
    path = _wav(tmp_path / "s.wav", np.stack([left, -left / 5], axis=1), rate=16000, subtype="FLOAT")
    x, rate = read_audio(path)
    assert x.shape == (1600,) and torch.allclose(x, torch.full((1600,), 0.2))
    y, rate = read_audio(path, sample_rate=8000)
    assert rate == 8000 and y.shape == (800,)
    assert float(y[200:600].mean()) == pytest.approx(0.2, abs=1e-3)


def test_truncated_wav_is_refused(tmp_path):
    data = _wav(tmp_path / "full.wav", np.zeros(4000, dtype=np.float32)).read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 1000])  # header + a quarter of the samples
    with pytest.raises(ValueError, match=r"cut\.wav.*truncated"):
        read_audio(tmp_path / "cut.wav")
    (tmp_path / "header.wav").write_bytes(data[:44])  # header only
    with pytest.raises(ValueError, match=r"header\.wav.*truncated"):
        read_audio(tmp_path / "header.wav")
    (tmp_path / "half_header.wav").write_bytes(data[:30])
    with pytest.raises(ValueError, match=r"half_header\.wav.*cannot be read"):
        read_audio(tmp_path / "half_header.wav")


def test_zero_length_wav_is_refused(tmp_path):
    path = _wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"zero\.wav.*zero samples"):
        read_audio(path)


def test_unsupported_and_missing_audio(tmp_path):
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(1).bytes(400))
    with pytest.raises(ValueError, match=r"noise\.wav.*cannot be read"):
        read_audio(tmp_path / "noise.wav")
    with pytest.raises(FileNotFoundError, match=r"gone\.wav"):
        read_audio(tmp_path / "gone.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        read_audio(_wav(tmp_path / "ok.wav", np.zeros(10, dtype=np.float32)), sample_rate=0)


def test_non_finite_audio_is_refused(tmp_path):
    wave = np.zeros(100, dtype=np.float32)
    wave[5] = np.nan
    with pytest.raises(ValueError, match=r"nan\.wav.*NaN"):
        read_audio(_wav(tmp_path / "nan.wav", wave, subtype="FLOAT"))
