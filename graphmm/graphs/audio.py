"""Audio to ``frame`` nodes: log-mel frames and their temporal relation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchaudio

from graphmm.graphs._util import segment_offsets, sequence_edges
from graphmm.graphtypes import EdgeDict, NodeBlock

#: The log-mel normalisations of :class:`AudioGraphBuilder` (``normalize=``).
NORMALIZATIONS = ("global", "clip", "clip_mean", "none")
#: Those whose band statistics :meth:`AudioGraphBuilder.fit` sets from the training frames.
_FITTED = ("global", "clip_mean")


#: Frames per mel pass of :meth:`AudioGraphBuilder.build` (all clips of a batch together).
MEL_CHUNK_FRAMES = 16384


class AudioGraphBuilder:
    """Builds ``frame`` nodes (log-mel frames) from 1-D waveforms.

    A waveform of :math:`T` samples (after resampling to ``sample_rate``) gives
    :math:`F = 1 + \\lfloor (T - n_{fft}) / hop \\rfloor` frames (no centre padding, so
    every frame lies inside the signal and a batch padded to its longest clip gives
    the same frames as each clip alone). Frame :math:`t` holds
    :math:`x_t = \\log(\\mathrm{mel}_t + 10^{-6})`, then standardised per mel band:

    * ``normalize="global"`` (default): :math:`(x_t - \\mu) / \\sigma` with the band
      means and deviations of the training frames, set by :meth:`fit` (identity before).
    * ``normalize="clip"``: mean and deviation of each clip's own frames (CMVN). This
      removes whatever is constant over a clip, such as a steady tone.
    * ``normalize="clip_mean"``: each clip's own band means removed (CMN: a fixed
      microphone or channel is a constant offset of the log-mel), then
      :math:`(x_t - \\bar x - \\mu) / \\sigma` with the statistics of the training frames
      so centred, set by :meth:`fit`. Unlike ``"clip"`` it keeps how much each band
      varies within the clip.
    * ``normalize="none"``: raw log-mel.

    Relations: ``('frame', 'next', 'frame')``, :math:`t \\to t + d` for
    :math:`1 \\le d \\le` ``window``, with the reverse ``('frame', 'rev_next', 'frame')``.

    Node data: ``mel`` ``(N, n_mels)``, ``time`` ``(N,)`` frame centre in seconds,
    ``tpos`` ``(N,)`` frame centre as a fraction of the clip, ``span`` ``(N, 2)`` frame
    extent as a fraction of the clip.

    Args:
        sample_rate: rate the builder works at; other rates are resampled.
        n_mels: mel bands.
        n_fft: FFT size, also the shortest clip accepted.
        win_length: window length (``None``: ``n_fft``).
        hop_length: hop between frames.
        window: temporal neighbours each frame links forward to; 0 switches it off.
        normalize: ``"global"``, ``"clip"``, ``"clip_mean"`` or ``"none"`` (see above).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        n_mels: int = 40,
        n_fft: int = 256,
        win_length: int | None = None,
        hop_length: int = 128,
        window: int = 1,
        normalize: str = "global",
    ) -> None:
        for name, v in (("sample_rate", sample_rate), ("n_mels", n_mels), ("n_fft", n_fft), ("hop_length", hop_length)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length) if win_length else self.n_fft
        if not 1 <= self.win_length <= self.n_fft:
            # torch.stft refuses it only later, with a RuntimeError on the first batch
            raise ValueError(f"win_length must be in [1, n_fft={self.n_fft}], got {win_length}")
        self.hop_length = int(hop_length)
        self.window = int(window)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {normalize!r}")
        self.normalize = normalize
        self.mean: torch.Tensor | None = None  # (n_mels,), set by fit()
        self.std: torch.Tensor | None = None
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            center=False,
            power=2.0,
        )

    @property
    def relations(self) -> list[tuple[str, str, str]]:
        return [("frame", "next", "frame"), ("frame", "rev_next", "frame")] if self.window else []

    def feature_dim(self) -> int:
        return self.n_mels

    @property
    def in_dim(self) -> int:
        """Input width of ``frame`` nodes for the encoder: ``n_mels``."""
        return self.n_mels

    def check(self, value: object, sample: object, where: str) -> torch.Tensor:
        """One sample's clip at its ``sample_rate``, checked and resampled (the modality
        protocol, :mod:`graphmm.modalities`)."""
        return self.validate(value, getattr(sample, "sample_rate", None), where)

    def check_many(self, values: Sequence[object], samples: Sequence[object], wheres: Sequence[str]) -> list[torch.Tensor]:
        """:meth:`check` for a batch (:meth:`validate_many`)."""
        return self.validate_many(values, [getattr(s, "sample_rate", None) for s in samples], wheres)

    def read(self, path: str) -> dict[str, object]:
        """A sound file as the sample fields it fills: ``audio`` (``(T,)``) and
        ``sample_rate``."""
        from graphmm.data.io import read_audio

        audio, rate = read_audio(path)
        return {"audio": audio, "sample_rate": rate}

    def validate(self, audio: object, sample_rate: object, where: str) -> torch.Tensor:
        """Check one clip and resample it; returns float32 ``(T,)``. Raises ``ValueError``."""
        if not isinstance(audio, torch.Tensor):
            raise ValueError(f"{where}: audio must be a 1-D torch.Tensor, got {type(audio).__name__}")
        if audio.dim() != 1:
            raise ValueError(
                f"{where}: audio must be a 1-D waveform, got shape {tuple(audio.shape)} (mix down or pick a channel)"
            )
        if not audio.is_floating_point():
            raise ValueError(f"{where}: audio must be a float waveform, got dtype {audio.dtype}")
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate < 1:
            raise ValueError(f"{where}: audio needs a positive integer sample_rate, got {sample_rate!r}")
        if not torch.isfinite(audio).all():
            raise ValueError(f"{where}: audio has NaN or inf values")
        peak = float(audio.abs().max()) if audio.numel() else 0.0
        limit = self.peak_limit()
        if peak > limit:
            raise ValueError(
                f"{where}: audio peak {peak:.3g} is too large (its power spectrum overflows float32); "
                "scale the waveform to [-1, 1]"
            )
        audio = audio.to(torch.float32)
        # resampling an empty clip raises a RuntimeError inside torchaudio; skip it so the
        # length check below reports the clip as shorter than one frame
        if sample_rate != self.sample_rate and audio.numel():
            audio = torchaudio.functional.resample(audio, sample_rate, self.sample_rate)
        if audio.numel() < self.n_fft:
            raise ValueError(
                f"{where}: audio of {audio.numel()} samples at {self.sample_rate} Hz is shorter than one "
                f"frame (n_fft={self.n_fft})"
            )
        return audio

    def peak_limit(self) -> float:
        """The largest waveform peak :meth:`validate` accepts.

        A finite but huge waveform (or a float64 one beyond float32's range) would give
        inf/NaN log-mel features: a frame's power is at most
        :math:`(\\mathrm{win\\_length} \\cdot \\mathrm{peak})^2` per bin and a mel band
        sums at most ``n_fft // 2 + 1`` bins, so peaks whose power overflows float32 are refused.
        """
        return math.sqrt(torch.finfo(torch.float32).max / (self.n_fft // 2 + 1)) / self.win_length / 4

    def validate_many(
        self, clips: Sequence[object], sample_rates: Sequence[object], wheres: Sequence[str]
    ) -> list[torch.Tensor]:
        """:meth:`validate` for many clips, with the same results and errors.

        Clips that need no conversion (1-D float32 at ``sample_rate``) are checked
        together: one pass over all of them for non-finite values and the peak,
        instead of two small passes per clip. Any other clip, and every clip when
        the joint check fails, goes through :meth:`validate`, so an error names the
        first bad clip.

        Shapes:
            ``clips[i]``: ``(T_i,)`` -> ``(T_i',)`` float32 at ``sample_rate``.
        """
        if not (len(clips) == len(sample_rates) == len(wheres)):
            raise ValueError("validate_many needs one sample rate and one name per clip")
        if type(self).validate is not AudioGraphBuilder.validate:  # a subclass checks in its own way
            return [self.validate(a, r, w) for a, r, w in zip(clips, sample_rates, wheres)]
        plain = [
            isinstance(a, torch.Tensor) and a.dim() == 1 and a.dtype == torch.float32
            and type(r) is int and r == self.sample_rate and a.numel() >= self.n_fft
            for a, r in zip(clips, sample_rates)
        ]
        ready = [a for a, ok in zip(clips, plain) if ok]
        if ready:
            # one pass: NaN propagates into the extremes, and an inf is one of them
            lo, hi = (float(v) for v in torch.aminmax(ready[0] if len(ready) == 1 else torch.cat(ready)))
            if not (math.isfinite(lo) and math.isfinite(hi)) or max(-lo, hi) > self.peak_limit():
                plain = [False] * len(clips)  # find and name the bad clip one by one
        return [
            a if ok else self.validate(a, r, w)  # type: ignore[misc]
            for a, r, w, ok in zip(clips, sample_rates, wheres, plain)
        ]

    def fit(self, clips: Sequence[torch.Tensor], batch_size: int = 256) -> AudioGraphBuilder:
        """Band statistics of the training frames, for ``normalize="global"`` (and
        ``"clip_mean"``, of the frames after each clip's means are removed).

        Args:
            clips: validated (resampled) training waveforms.
            batch_size: clips per mel pass, which bounds memory on large datasets.
        """
        if self.normalize not in _FITTED or not clips:
            return self
        self.mean = self.std = None
        total = torch.zeros(self.n_mels, dtype=torch.float64)
        sq = torch.zeros(self.n_mels, dtype=torch.float64)
        n = 0
        for i in range(0, len(clips), batch_size):
            mel = self.build(clips[i : i + batch_size]).data["mel"].double()
            total += mel.sum(0)
            sq += (mel**2).sum(0)
            n += len(mel)
        mean = total / n
        self.mean = mean.float()
        self.std = ((sq / n - mean**2).clamp(min=0).sqrt() + 1e-5).float()
        return self

    def state_dict(self) -> dict[str, list[float] | None]:
        return {
            "mean": self.mean.tolist() if self.mean is not None else None,
            "std": self.std.tolist() if self.std is not None else None,
        }

    def load_state_dict(self, state: dict[str, list[float] | None]) -> None:
        self.mean = torch.tensor(state["mean"]) if state.get("mean") is not None else None
        self.std = torch.tensor(state["std"]) if state.get("std") is not None else None

    def build(self, clips: Sequence[torch.Tensor]) -> NodeBlock:
        """Frame nodes and edges for a batch of validated clips, in one mel pass.

        Shapes:
            mel ``(N, n_mels)``, time/tpos ``(N,)``, span ``(N, 2)``, ``N`` total frames.
        """
        b = len(clips)
        lengths = torch.tensor([c.numel() for c in clips], dtype=torch.int64)
        counts = 1 + (lengths - self.n_fft).div(self.hop_length, rounding_mode="floor") if b else lengths
        if b:
            # one clip (a long recording): a view, not a padded copy of the whole waveform
            wave = clips[0][None] if b == 1 else torch.nn.utils.rnn.pad_sequence(list(clips), batch_first=True)
            logmel = self._log_mel(wave)  # (B, n_mels, F_max)
            valid = torch.arange(logmel.shape[-1])[None, :] < counts[:, None]  # (B, F_max)
            if self.normalize in ("clip", "clip_mean"):
                m = valid[:, None, :].to(logmel.dtype)
                n = m.sum(-1, keepdim=True)
                mean = (logmel * m).sum(-1, keepdim=True) / n
                logmel = logmel - mean
                if self.normalize == "clip":
                    var = (logmel**2 * m).sum(-1, keepdim=True) / n
                    logmel = logmel / (var.sqrt() + 1e-5)
            mel = logmel.transpose(1, 2)[valid]  # (N, n_mels), clip order then time order
            if self.normalize in _FITTED and self.mean is not None:
                mel = mel.sub_(self.mean).div_(self.std)  # in place: `mel` is a fresh copy
        else:
            mel = torch.zeros(0, self.n_mels)
        offsets, seg = segment_offsets(counts)
        t = torch.arange(int(counts.sum()), dtype=torch.int64) - offsets[seg]
        start = (t * self.hop_length).to(torch.float32)
        clip_len = lengths[seg].to(torch.float32)
        centre = start + self.n_fft / 2
        data = {
            "mel": mel.contiguous(),
            "time": centre / self.sample_rate,
            "tpos": centre / clip_len,
            "span": torch.stack([start / clip_len, (start + self.n_fft) / clip_len], dim=1),
        }
        edges: EdgeDict = {}
        if self.window:
            # already in the batch's (source, destination) order: no sort
            length = counts[seg]
            edges[("frame", "next", "frame")] = sequence_edges(t, length, list(range(1, self.window + 1)))
            edges[("frame", "rev_next", "frame")] = sequence_edges(t, length, list(range(-self.window, 0)))
        return NodeBlock(ntype="frame", counts=counts, data=data, edges=edges)

    def _log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """:math:`\\log(\\mathrm{mel} + 10^{-6})` of ``wave (B, T)``, ``(B, n_mels, F)``, in
        passes of at most :data:`MEL_CHUNK_FRAMES` frames.

        A frame depends on its own samples only (no centre padding: frame :math:`t` is
        samples :math:`[t\\,hop, t\\,hop + n_{fft})`), so the passes give the frames of
        one pass over the whole clip. A long clip's STFT is
        a complex ``(n_fft / 2 + 1, F)`` temporary per clip, 1 GB for :math:`10^6`
        frames, and its magnitude another half of that: per pass they stay small enough
        to be reused from the heap and to stay in cache, so the time grows as the clip.
        """
        b, t = wave.shape
        frames = 1 + (t - self.n_fft) // self.hop_length
        if b * frames <= MEL_CHUNK_FRAMES:
            return self._mel_power(wave).add_(1e-6).log_()
        out = wave.new_empty(b, self.n_mels, frames)
        step = max(1, MEL_CHUNK_FRAMES // b)
        for lo in range(0, frames, step):  # blocks of frames, not a loop over frames
            hi = min(lo + step, frames)
            piece = wave[:, lo * self.hop_length : (hi - 1) * self.hop_length + self.n_fft]
            out[:, :, lo:hi] = self._mel_power(piece).add_(1e-6).log_()
        return out

    def _mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        r"""The mel power spectrogram ``(B, n_mels, F)`` of ``wave (B, T)``: what
        ``torchaudio.transforms.MelSpectrogram(power=2)`` computes, with the power
        :math:`\mathrm{Re}^2 + \mathrm{Im}^2` taken from the real view of the STFT
        (torchaudio's ``abs().pow(2)`` of the complex STFT costs twice as much)."""
        spec = self._mel.spectrogram
        stft = torch.view_as_real(torch.stft(
            wave, spec.n_fft, spec.hop_length, spec.win_length, window=spec.window, center=False, return_complex=True
        ))  # (B, n_fft / 2 + 1, F, 2)
        return self._mel.mel_scale(stft[..., 0].square().add_(stft[..., 1].square()))

    def __repr__(self) -> str:
        return (
            f"AudioGraphBuilder(sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, window={self.window})"
        )
