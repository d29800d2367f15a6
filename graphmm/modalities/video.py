r"""Video to ``vpatch`` nodes: the patches of every frame, linked in space and in time.

A clip is a float tensor :math:`(T, C, H, W)` in :math:`[0, 1]`. Each frame is cut into
the patch grid of :class:`~graphmm.graphs.ImageGraphBuilder` (the frames are unfolded
as :math:`T` images of one batch): :math:`n_H \times n_W` patches with
:math:`n_H = \lfloor (H - p) / s \rfloor + 1` (likewise :math:`n_W`), so a clip has
:math:`N = T\, n_H n_W` nodes, numbered frame by frame and row-major within a frame:
node :math:`(t, r, c)` has local id :math:`t\, n_H n_W + r\, n_W + c`.

Relations (canonical edge types):

* ``('vpatch', 'adjacent', 'vpatch')``: the 4 or 8 grid neighbours *within one frame*
  (symmetric), as the image's ``adjacent`` relation; ``neighbors=0`` switches it off.
* ``('vpatch', 'temporal', 'vpatch')``: the same grid cell in later frames,
  :math:`(t, r, c) \to (t + k, r, c)` for :math:`1 \le k \le w` (``temporal_window``),
  with the reverse ``('vpatch', 'rev_temporal', 'vpatch')``. The two directions are
  separate relations, so a layer tells the past from the future: that is what the
  direction of motion needs. ``temporal=False`` leaves both out (the ablation).

Per-frame summary nodes are not built: a modality returns one
:class:`~graphmm.graphtypes.NodeBlock` of one node type, and the per-modality summary
node of the cross-modal builder already pools the whole clip.

Node data (:math:`N` rows per clip): ``pixels`` :math:`(N, C p^2)` (channel-major, as
``torch.nn.functional.unfold``), ``rc`` :math:`(N, 2)` int64 grid row and column,
``grid`` :math:`(N, 2)` patch centre normalised to :math:`[0, 1]`, ``t`` :math:`(N,)`
int64 frame index, ``tpos`` :math:`(N,)` :math:`t / (T - 1)` (0 for a one-frame clip),
``span`` :math:`(N, 2)` the patch's horizontal extent as a fraction of the frame width.

:class:`VideoPatchEncoder` embeds a node as

.. math::

    h = W\,[\mathrm{pixels} \,\|\, \mathrm{grid} \,\|\, \mathrm{tpos}] + b
        + [PE(r) \,\|\, PE(c)],

with :math:`PE` the fixed sinusoidal code (:class:`~graphmm.nn.encoders.SinusoidalPositionalEncoding`),
the grid row and column each coded in half of the width, as image patches are. Time
enters only through ``tpos`` in the projection: a sinusoidal code of the frame index
added over the whole width as well made every clip's nodes look alike after a few
layers (a 3-layer GAT could not fit 64 training clips in 50 steps with it, and could
without it), so the frame order is left to the ``temporal`` relations and ``tpos``.

Example:
    >>> import torch
    >>> from graphmm.modalities.video import VideoGraphBuilder, VideoPatchEncoder
    >>> b = VideoGraphBuilder(patch_size=4, stride=4, neighbors=4)
    >>> clip = b.check(torch.rand(3, 1, 8, 8), None, "sample 0")   # 3 frames of 2 x 2 patches
    >>> block = b.fit([clip]).build([clip])
    >>> block.counts.tolist(), block.data["t"].tolist()
    ([12], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    >>> [len(s) for s, _ in block.edges.values()]  # 4 pairs per frame, both ways; 2 x 4 cells forward
    [24, 8, 8]
    >>> b
    VideoGraphBuilder(patch_size=4, stride=4, neighbors=4, temporal=True)
    >>> VideoPatchEncoder(b.in_dim, 16)(block.data).shape
    torch.Size([12, 16])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from graphmm.graphs._util import segment_offsets
from graphmm.graphs.image import ImageGraphBuilder
from graphmm.graphtypes import CanonicalEType, EdgeDict, NodeBlock
from graphmm.modalities._encoding import grid_code, node_field
from graphmm.modalities.base import register_modality
from graphmm.nn.encoders import SinusoidalPositionalEncoding

__all__ = ["VideoGraphBuilder", "VideoGraphConf", "VideoPatchEncoder"]

NTYPE = "vpatch"


@dataclass
class VideoGraphConf:
    """``graph.video``: the settings of :class:`VideoGraphBuilder`, with their defaults
    (the builder's own defaults are read from here).

    Attributes:
        patch_size: Side :math:`p` of a square patch. Default: ``4``.
        stride: Step :math:`s` between patches; ``None`` means ``patch_size``. Default: ``None``.
        neighbors: Spatial ``adjacent`` neighbours within a frame: 4, 8 or 0 (off). Default: ``4``.
        temporal: Build ``temporal`` / ``rev_temporal``. Default: ``True``.
        temporal_window: Frames ahead :math:`w` each cell links to. Default: ``1``.
        channels: Expected :math:`C`; ``None`` accepts any and :meth:`VideoGraphBuilder.fit`
            infers it. Default: ``None``.
    """

    _target_: str = "graphmm.modalities.video.VideoGraphBuilder"
    patch_size: int = 4
    stride: Optional[int] = None
    neighbors: int = 4
    temporal: bool = True
    temporal_window: int = 1
    channels: Optional[int] = None


class VideoPatchEncoder(nn.Module):
    r"""Node encoder of ``vpatch``: :math:`h = W [\mathrm{pixels} \| \mathrm{grid} \| \mathrm{tpos}] + b
    + [PE(r) \| PE(c)]` (see the module docstring).

    Args:
        in_dim: Width of ``pixels``, :math:`C p^2`.
        hidden: Output width :math:`d`.

    Shapes:
        - Input: node data with ``pixels`` :math:`(N, C p^2)`, ``grid`` :math:`(N, 2)`,
          ``tpos`` :math:`(N,)` and ``rc`` :math:`(N, 2)`.
        - Output: :math:`(N, d)`.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"in_dim and hidden must be >= 1, got in_dim={in_dim}, hidden={hidden}")
        self.in_dim = int(in_dim)
        self.hidden = int(hidden)
        # +3: the normalised (row, col) of the patch centre and the normalised time
        self.proj = nn.Linear(self.in_dim + 3, self.hidden)
        self.grid_pos = SinusoidalPositionalEncoding(self.hidden // 2) if self.hidden >= 2 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights and zero bias for the projection (the position codes are fixed)."""
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, data: Mapping[str, Tensor]) -> Tensor:
        """Encode the ``vpatch`` node data as :math:`(N, d)`."""
        pixels, grid, tpos, rc = (node_field(data, NTYPE, k) for k in ("pixels", "grid", "tpos", "rc"))
        h = self.proj(torch.cat([pixels, grid, tpos.reshape(-1, 1)], dim=-1).to(self.proj.weight.dtype))
        if self.grid_pos is not None:
            h = h + grid_code(self.grid_pos, rc, self.hidden, h.dtype)
        return h


_DEFAULTS = VideoGraphConf()


@register_modality("video", ntype=NTYPE, summary_id=3, encoder=VideoPatchEncoder, schema=VideoGraphConf,
                   masked=("pixels", "regress"), wide="cells:pixels")
class VideoGraphBuilder:
    """Builds ``vpatch`` nodes from :math:`(T, C, H, W)` clips (see the module docstring).

    Args:
        patch_size: Patch side :math:`p`.
        stride: Patch step :math:`s`; ``None`` means :math:`p`.
        neighbors: 4, 8 or 0: spatial grid neighbours within a frame.
        temporal: Build the ``temporal`` and ``rev_temporal`` relations.
        temporal_window: :math:`w \\ge 1`, frames ahead each cell links to.
        channels: Expected :math:`C`; ``None`` accepts any, inferred by :meth:`fit`.

    The defaults are :class:`VideoGraphConf`'s.
    """

    modality = "video"
    ntype = NTYPE

    def __init__(
        self,
        patch_size: int = _DEFAULTS.patch_size,
        stride: int | None = _DEFAULTS.stride,
        neighbors: int = _DEFAULTS.neighbors,
        temporal: bool = _DEFAULTS.temporal,
        temporal_window: int = _DEFAULTS.temporal_window,
        channels: int | None = _DEFAULTS.channels,
    ) -> None:
        if int(temporal_window) < 1:
            raise ValueError(f"temporal_window must be >= 1, got {temporal_window}")
        if channels is not None and int(channels) < 1:
            raise ValueError(f"channels must be >= 1 or None, got {channels}")
        # the frames are cut exactly as images are; it also checks patch_size, stride, neighbors
        self._frames = ImageGraphBuilder(patch_size=patch_size, stride=stride, neighbors=neighbors)
        self.patch_size = self._frames.patch_size
        self.stride = self._frames.stride
        self.neighbors = self._frames.neighbors
        self.temporal = bool(temporal)
        self.temporal_window = int(temporal_window)
        self.channels = None if channels is None else int(channels)
        self.frame_size: tuple[int, int] | None = None  # (H, W) of the training clips, if they all share it

    # ------------------------------------------------------------------ schema
    @property
    def relations(self) -> list[CanonicalEType]:
        """The relations this builder makes; they depend on the settings only."""
        rels: list[CanonicalEType] = []
        if self.neighbors:
            rels.append((NTYPE, "adjacent", NTYPE))
        if self.temporal:
            rels += [(NTYPE, "temporal", NTYPE), (NTYPE, "rev_temporal", NTYPE)]
        return rels

    @property
    def in_dim(self) -> int:
        """Width of ``pixels``: :math:`C p^2` (:math:`C = 1` until known)."""
        return (self.channels or 1) * self.patch_size**2

    # ------------------------------------------------------------------ checks
    def _check_shape(self, value: object, where: str) -> Tensor:
        """The checks that read no pixel values."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{where}: video must be a torch.Tensor (T, C, H, W), got {type(value).__name__}")
        if value.dim() != 4:
            hint = " (for greyscale T x H x W frames use video[:, None])" if value.dim() == 3 else ""
            raise ValueError(f"{where}: video must have rank 4 (T, C, H, W), got shape {tuple(value.shape)}{hint}")
        if not value.is_floating_point():
            raise ValueError(
                f"{where}: video must be a float tensor in [0, 1], got dtype {value.dtype} (divide uint8 frames by 255)"
            )
        t, c, h, w = value.shape
        if t < 1:
            raise ValueError(f"{where}: video has no frames, got shape {tuple(value.shape)}")
        if c < 1:
            raise ValueError(f"{where}: video has no channels, got shape {tuple(value.shape)}")
        if self.channels is not None and c != self.channels:
            raise ValueError(
                f"{where}: video has {c} channels, the builder expects {self.channels} (set graph.video.channels "
                f"or convert the frames)"
            )
        if h < self.patch_size or w < self.patch_size:
            raise ValueError(
                f"{where}: video frames of {h} x {w} are smaller than one {self.patch_size} x {self.patch_size} patch"
            )
        return value

    def check(self, value: object, sample: object, where: str) -> Tensor:
        """Validate one clip; returns it as float32. ``ValueError`` starting with ``where``
        for a wrong type, rank or dtype, no frames or channels, the wrong channel count,
        frames smaller than a patch, NaN or inf, or values outside :math:`[0, 1]`."""
        video = self._check_shape(value, where)
        if not torch.isfinite(video).all():
            raise ValueError(f"{where}: video has NaN or inf values")
        lo, hi = (float(v) for v in torch.aminmax(video))
        if lo < 0 or hi > 1:
            raise ValueError(f"{where}: video values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        return video.to(torch.float32)

    def check_many(self, values: Sequence[object], samples: Sequence[object], wheres: Sequence[str]) -> list[Tensor]:
        """:meth:`check` for a batch, with one value scan over all clips instead of one
        per clip; the results and the first error are those of :meth:`check` one by one."""
        for i, (v, w) in enumerate(zip(values, wheres)):
            try:
                self._check_shape(v, w)
            except ValueError:
                for j in range(i):  # an earlier clip's value error comes first
                    self.check(values[j], samples[j], wheres[j])
                raise
        if values:
            lo, hi = (float(v) for v in torch.aminmax(torch.cat([v.reshape(-1) for v in values])))  # type: ignore[union-attr]
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 1:
                return [self.check(v, s, w) for v, s, w in zip(values, samples, wheres)]
        return [v.to(torch.float32) for v in values]  # type: ignore[union-attr]

    # ------------------------------------------------------------------ state
    def fit(self, values: Sequence[Tensor]) -> VideoGraphBuilder:
        """Infer ``channels`` (when not set) and the common frame size of the training clips
        (``frame_size``; ``None`` when sizes differ), which :meth:`read` resizes to."""
        sizes = {tuple(int(x) for x in v.shape[-2:]) for v in values}
        self.frame_size = sizes.pop() if len(sizes) == 1 else None  # type: ignore[assignment]
        if self.channels is None and len(values):
            chans = {int(v.shape[1]) for v in values}
            if len(chans) != 1:
                raise ValueError(f"training videos have mixed channel counts {sorted(chans)}; set graph.video.channels")
            self.channels = chans.pop()
        self._frames.channels = self.channels
        return self

    def state_dict(self) -> dict[str, Any]:
        """The fitted state, as plain values."""
        return {"channels": self.channels, "frame_size": None if self.frame_size is None else list(self.frame_size)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        unknown = sorted(set(state) - {"channels", "frame_size"})
        if unknown:
            raise ValueError(f"video builder state has unknown keys {unknown}; expected channels and frame_size")
        self.channels = None if state.get("channels") is None else int(state["channels"])
        size = state.get("frame_size")
        self.frame_size = None if size is None else (int(size[0]), int(size[1]))
        self._frames.channels = self.channels

    # ------------------------------------------------------------------ build
    def build(self, values: Sequence[Tensor]) -> NodeBlock:
        """``vpatch`` nodes and their edges for a batch of validated clips, in one pass:
        every frame of every clip is one image of a single patch extraction, and the
        temporal edges are index arithmetic over all nodes at once.

        Shapes:
            pixels ``(N, C*p*p)``, rc ``(N, 2)``, grid ``(N, 2)``, t ``(N,)``,
            tpos ``(N,)``, span ``(N, 2)``, with ``N`` the total number of patches.
        """
        b = len(values)
        frames_per_clip = torch.tensor([int(v.shape[0]) for v in values], dtype=torch.int64)
        frames = [f for v in values for f in v.unbind(0)]  # views, in clip then time order
        block = self._frames.build(frames)
        cells = block.counts  # (F,) patches of each frame
        clip_of_frame = torch.repeat_interleave(torch.arange(b, dtype=torch.int64), frames_per_clip)
        counts = torch.zeros(b, dtype=torch.int64).index_add_(0, clip_of_frame, cells)

        # per node: its frame, its clip, its time step and its clip's length
        first_frame, _ = segment_offsets(frames_per_clip)
        _, frame = segment_offsets(cells)
        clip = clip_of_frame[frame]
        t = frame - first_frame[clip]
        length = frames_per_clip[clip]
        tpos = (t.to(torch.float32) / (length - 1).clamp(min=1).to(torch.float32))

        edges: EdgeDict = {}
        if self.neighbors:
            edges[(NTYPE, "adjacent", NTYPE)] = block.edges[("patch", "adjacent", "patch")]
        if self.temporal:
            idx = torch.arange(len(frame), dtype=torch.int64)
            per_frame = cells[frame]
            src_l, dst_l = [], []
            for k in range(1, self.temporal_window + 1):  # a constant number of time offsets, each vectorised
                ok = t + k < length
                src_l.append(idx[ok])
                # the frames of one clip share a grid, so t + k's cell is k frames of cells ahead
                dst_l.append(idx[ok] + k * per_frame[ok])
            src, dst = torch.cat(src_l), torch.cat(dst_l)
            edges[(NTYPE, "temporal", NTYPE)] = (src, dst)
            edges[(NTYPE, "rev_temporal", NTYPE)] = (dst, src)
        data = dict(block.data)
        data["t"] = t
        data["tpos"] = tpos
        return NodeBlock(ntype=NTYPE, counts=counts, data=data, edges=edges)

    # ------------------------------------------------------------------ files
    def read(self, path: str | Path) -> Tensor:
        """Load a clip for ``predict`` (``input.video=path``) as :math:`(T, C, H, W)` float32.

        Accepts a ``.npy`` array of frames, :math:`(T, H, W)` or :math:`(T, C, H, W)`,
        ``uint8`` (divided by 255) or float in :math:`[0, 1]`, or a folder of PNG frames
        read in the sorted order of their names. After :meth:`fit`, frames are converted
        to the training channel count (ITU-R 601 luma for RGB to grey) and resized
        (bilinear, antialiased) to the training frame size, as ``predict`` does for images.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: Anything else it cannot read, naming the file.
        """
        from graphmm.data.io import read_image

        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".png")
            if not files:
                raise ValueError(f"video folder {str(p)!r} has no .png frames; put one PNG per frame there")
            frames = [read_image(f, channels=self.channels, size=self.frame_size) for f in files]
            shapes = {tuple(f.shape) for f in frames}
            if len(shapes) > 1:
                raise ValueError(
                    f"video folder {str(p)!r}: frames differ in size or channels {sorted(shapes)}; "
                    f"every frame of a clip must have the same shape"
                )
            return torch.stack(frames)
        if not p.exists():
            raise FileNotFoundError(f"video {str(p)!r} does not exist; check the path")
        if p.suffix.lower() != ".npy":
            raise ValueError(f"video {str(p)!r}: expected a .npy array of frames or a folder of PNG frames")
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"video file {str(p)!r} is not a readable .npy array: {err}") from None
        if arr.ndim == 3:
            arr = arr[:, None]
        if arr.ndim != 4:
            raise ValueError(f"video file {str(p)!r}: array must be (T, H, W) or (T, C, H, W), got shape {arr.shape}")
        if arr.dtype == np.uint8:
            video = torch.from_numpy(arr.astype(np.float32) / 255.0)
        elif np.issubdtype(arr.dtype, np.floating):
            video = torch.from_numpy(arr.astype(np.float32))
        else:
            raise ValueError(f"video file {str(p)!r}: array dtype must be uint8 or float, got {arr.dtype}")
        return self._conform(video)

    def _conform(self, video: Tensor) -> Tensor:
        """``video`` with the fitted channel count and frame size (unchanged before :meth:`fit`)."""
        c = video.shape[1]
        if self.channels == 1 and c == 3:
            video = (video * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.channels == 3 and c == 1:
            video = video.expand(-1, 3, -1, -1)
        if self.frame_size is not None and tuple(video.shape[-2:]) != self.frame_size and video.shape[0]:
            video = nn.functional.interpolate(
                video, size=self.frame_size, mode="bilinear", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)
        return video.contiguous()

    def __repr__(self) -> str:
        window = f", temporal_window={self.temporal_window}" if self.temporal and self.temporal_window != 1 else ""
        return (
            f"VideoGraphBuilder(patch_size={self.patch_size}, stride={self.stride}, "
            f"neighbors={self.neighbors}, temporal={self.temporal}{window})"
        )
