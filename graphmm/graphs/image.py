"""Image to ``patch`` nodes: p x p patches, grid adjacency and pixel-space kNN."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from graphmm.graphs._util import knn_in_grid, knn_in_groups, segment_offsets
from graphmm.graphtypes import EdgeDict, NodeBlock


#: Directions of the ``adj_<d>`` relations (``directional=True``): where the source
#: patch lies seen from the destination. The first 4 are used with ``neighbors=4``.
DIRECTIONS: tuple[str, ...] = ("r", "l", "d", "u", "dr", "ul", "dl", "ur")
_DIR_NAME = {(0, 1): "r", (0, -1): "l", (1, 0): "d", (-1, 0): "u",
             (1, 1): "dr", (-1, -1): "ul", (1, -1): "dl", (-1, 1): "ur"}


class ImageGraphBuilder:
    """Builds ``patch`` nodes from ``C x H x W`` images and their relations.

    An image gives a grid of :math:`n_H \\times n_W` patches with
    :math:`n_H = \\lfloor (H - p) / s \\rfloor + 1` (likewise :math:`n_W`), numbered
    row-major. Pixels a stride does not reach at the bottom/right edge are dropped.

    Relations (canonical edge types):

    * ``('patch', 'adjacent', 'patch')``: grid neighbours, 4 (up/down/left/right) or 8
      (with diagonals). Symmetric, so both directions are stored. A 3 x 3 grid has 12
      undirected 4-neighbour pairs and 20 undirected 8-neighbour pairs.
    * with ``directional=True``, the same edges split by where the source lies from
      the destination: ``('patch', 'adj_<d>', 'patch')`` for :math:`d` in
      :data:`DIRECTIONS` (``r`` right, ``l`` left, ``d`` below, ``u`` above; ``dr``,
      ``ul``, ``dl``, ``ur`` the diagonals). Each relation gets its own convolution
      module, so the model weighs a neighbour by its direction, as a 3x3 convolution
      kernel does, where one ``adjacent`` relation treats all neighbours alike.
    * ``('patch', 'similar', 'patch')``: ViG-style kNN in pixel space, an edge
      :math:`j \\to i` for each of the ``knn`` nearest patches :math:`j \\ne i` of the
      same image, with the reverse ``('patch', 'rev_similar', 'patch')``.

    Node data: ``pixels`` ``(N, C*p*p)`` (channel-major, as ``torch.nn.functional.unfold``),
    ``rc`` ``(N, 2)`` int64 grid row and column, ``grid`` ``(N, 2)`` patch centre
    normalised to [0, 1], ``span`` ``(N, 2)`` the patch's horizontal extent as a
    fraction of the image width (used by positional alignment).

    Args:
        patch_size: ``p``.
        stride: ``s``; ``None`` means ``p`` (non-overlapping).
        neighbors: 4, 8, or 0 to switch ``adjacent`` off.
        directional: one relation per direction instead of ``adjacent``.
        knn: neighbours of the ``similar`` relation; 0 switches it off.
        channels: expected ``C``; ``None`` accepts any, inferred by :meth:`fit`.
        knn_radius: ``None`` (default): exact kNN among all patches of the image,
            :math:`O(N^2)` time. An integer :math:`r`: search only the
            :math:`(2r+1)^2` window of grid cells around each patch, :math:`O(N r^2)`
            time, for very large images (equal to the exact search when the window
            covers the grid).
    """

    def __init__(
        self,
        patch_size: int = 4,
        stride: int | None = None,
        neighbors: int = 4,
        knn: int = 0,
        channels: int | None = None,
        knn_radius: int | None = None,
        directional: bool = False,
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        if stride is not None and stride < 1:
            raise ValueError(f"stride must be >= 1 or None, got {stride}")
        if neighbors not in (0, 4, 8):
            raise ValueError(f"neighbors must be 0, 4 or 8, got {neighbors}")
        if knn < 0:
            raise ValueError(f"knn must be >= 0, got {knn}")
        if knn_radius is not None and knn_radius < 0:
            raise ValueError(f"knn_radius must be >= 0 or None, got {knn_radius}")
        self.knn_radius = None if knn_radius is None else int(knn_radius)
        self.patch_size = int(patch_size)
        self.stride = int(stride) if stride is not None else int(patch_size)
        self.neighbors = int(neighbors)
        self.directional = bool(directional)
        self.knn = int(knn)
        self.channels = channels
        self.image_size: tuple[int, int] | None = None  # (H, W) of the training images, if they all share it

    @property
    def relations(self) -> list[tuple[str, str, str]]:
        rels = []
        if self.neighbors and self.directional:
            rels += [("patch", f"adj_{d}", "patch") for d in DIRECTIONS[: self.neighbors]]
        elif self.neighbors:
            rels.append(("patch", "adjacent", "patch"))
        if self.knn:
            rels += [("patch", "similar", "patch"), ("patch", "rev_similar", "patch")]
        return rels

    def feature_dim(self) -> int:
        """Width of ``pixels``: ``C * p * p`` (``C`` = 1 until known)."""
        return (self.channels or 1) * self.patch_size**2

    @property
    def in_dim(self) -> int:
        """Input width of ``patch`` nodes for the encoder: :meth:`feature_dim`."""
        return self.feature_dim()

    def check(self, value: object, sample: object, where: str) -> torch.Tensor:
        """One sample's image, checked (the modality protocol, :mod:`graphmm.modalities`)."""
        return self.validate(value, where)

    def check_many(self, values: Sequence[object], samples: Sequence[object], wheres: Sequence[str]) -> list[torch.Tensor]:
        """:meth:`check` for a batch (:meth:`validate_many`)."""
        return self.validate_many(values, wheres)

    def read(self, path: str) -> torch.Tensor:
        """An image file (PNG, JPEG, ...) as ``(C, H, W)`` float32 in [0, 1]."""
        from graphmm.data.io import read_image

        return read_image(path)

    def state_dict(self) -> dict[str, Any]:
        """Fitted state: the channel count and the common training image size."""
        return {"channels": self.channels, "image_size": list(self.image_size) if self.image_size else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("channels") is not None:
            self.channels = int(state["channels"])
        if state.get("image_size"):
            self.image_size = tuple(int(x) for x in state["image_size"])  # type: ignore[assignment]

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        p, s = self.patch_size, self.stride
        return (height - p) // s + 1, (width - p) // s + 1

    def validate(self, image: object, where: str) -> torch.Tensor:
        """Check one image; returns it as float32. Raises ``ValueError`` naming ``where``."""
        return self._check_image(image, where, min_size=None)

    def validate_many(self, images: Sequence[object], wheres: Sequence[str]) -> list[torch.Tensor]:
        """:meth:`validate` for a batch: one range check over all plain float32 images
        (the common case) instead of one per image; anything unusual, or any value out of
        range, goes through :meth:`validate` for its precise error."""
        if type(self).validate is not ImageGraphBuilder.validate:
            return [self.validate(im, w) for im, w in zip(images, wheres)]
        plain = [
            isinstance(im, torch.Tensor) and im.dim() == 3 and im.dtype == torch.float32 and im.shape[0] > 0
            and (self.channels is None or im.shape[0] == self.channels)
            and min(im.shape[1], im.shape[2]) >= self.patch_size
            for im in images
        ]
        ready = [im.reshape(-1) for im, ok in zip(images, plain) if ok]  # type: ignore[union-attr]
        if ready:
            lo, hi = (float(v) for v in torch.aminmax(torch.cat(ready)))
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 1:
                plain = [False] * len(images)
        return [im if ok else self.validate(im, w) for im, ok, w in zip(images, plain, wheres)]  # type: ignore[misc]

    def _check_image(self, image: object, where: str, min_size: int | None) -> torch.Tensor:
        """The checks of :meth:`validate`, with the smallest accepted side ``min_size``:
        ``None`` for one patch (:meth:`validate`); subclasses that resize images first
        pass 1."""
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"{where}: image must be a torch.Tensor (C x H x W), got {type(image).__name__}")
        if image.dim() != 3:
            hint = " (for a grayscale H x W image use image[None])" if image.dim() == 2 else ""
            raise ValueError(f"{where}: image must have rank 3 (C x H x W), got shape {tuple(image.shape)}{hint}")
        if not image.is_floating_point():
            raise ValueError(
                f"{where}: image must be a float tensor in [0, 1], got dtype {image.dtype} (divide uint8 images by 255)"
            )
        if not torch.isfinite(image).all():
            raise ValueError(f"{where}: image has NaN or inf values")
        c, h, w = image.shape
        if self.channels is not None and c != self.channels:
            raise ValueError(f"{where}: image has {c} channels, the builder expects {self.channels}")
        if c == 0:
            # F.unfold raises a RuntimeError on a channel-less image
            raise ValueError(f"{where}: image has no channels, got shape {tuple(image.shape)}")
        if h < (min_size or self.patch_size) or w < (min_size or self.patch_size):
            if min_size is not None:
                raise ValueError(f"{where}: image of {h} x {w} has no pixels")
            raise ValueError(
                f"{where}: image of {h} x {w} is smaller than one {self.patch_size} x {self.patch_size} patch"
            )
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(
                f"{where}: image values must lie in [0, 1], got [{float(image.min()):.3g}, {float(image.max()):.3g}]"
            )
        return image.to(torch.float32)

    def fit(self, images: Sequence[torch.Tensor]) -> ImageGraphBuilder:
        """Infer ``channels`` from training images when it was not given, and record
        their common size (``image_size``; ``None`` when sizes differ), so that new
        images can be resized to what the model saw."""
        sizes = {tuple(int(x) for x in im.shape[-2:]) for im in images}
        self.image_size = sizes.pop() if len(sizes) == 1 else None
        if self.channels is None and len(images):
            chans = {int(im.shape[0]) for im in images}
            if len(chans) != 1:
                raise ValueError(f"training images have mixed channel counts {sorted(chans)}; set channels")
            self.channels = chans.pop()
        return self

    def build(self, images: Sequence[torch.Tensor]) -> NodeBlock:
        """Patch nodes and edges for a batch of validated images.

        Images of equal shape are unfolded together in one call.

        Shapes:
            pixels ``(N, C*p*p)``, rc ``(N, 2)``, grid ``(N, 2)``, span ``(N, 2)`` with
            ``N`` the total number of patches.
        """
        p, s = self.patch_size, self.stride
        b = len(images)
        chans = {int(im.shape[0]) for im in images}
        if len(chans) > 1:
            raise ValueError(f"images of one batch must share a channel count, got {sorted(chans)}")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(tuple(im.shape), []).append(i)

        counts = torch.zeros(b, dtype=torch.int64)
        grid_hw = torch.zeros(b, 2, dtype=torch.int64)
        widths = torch.zeros(b, dtype=torch.float32)
        per_sample: list[torch.Tensor | None] = [None] * b
        knn_local: dict[int, torch.Tensor] = {}
        for (c, h, w), members in groups.items():
            stack = torch.stack([images[i] for i in members])
            cols = F.unfold(stack, kernel_size=p, stride=s).transpose(1, 2)  # (G, L, C*p*p)
            nh, nw = self.grid_shape(h, w)
            if self.knn:
                nbrs = (
                    knn_in_groups(cols, self.knn)
                    if self.knn_radius is None
                    else knn_in_grid(cols, (nh, nw), self.knn, self.knn_radius)
                )
            for j, i in enumerate(members):
                per_sample[i] = cols[j]
                if self.knn:
                    knn_local[i] = nbrs[j]
            idx = torch.tensor(members)
            counts[idx] = nh * nw
            grid_hw[idx] = torch.tensor([nh, nw])
            widths[idx] = float(w)

        total = int(counts.sum())
        dim = (next(iter(chans)) if chans else (self.channels or 1)) * p * p
        pixels = torch.cat(per_sample) if b else torch.zeros(0, dim)
        offsets, seg = segment_offsets(counts)
        local = torch.arange(total, dtype=torch.int64) - offsets[seg]
        nh, nw = grid_hw[seg, 0], grid_hw[seg, 1]
        r, c = local // nw.clamp(min=1), local % nw.clamp(min=1)
        grid = torch.stack([(r + 0.5) / nh, (c + 0.5) / nw], dim=1).to(torch.float32)
        left = (c * s).to(torch.float32) / widths[seg]
        span = torch.stack([left, left + p / widths[seg]], dim=1)

        edges: EdgeDict = {}
        idx = torch.arange(total, dtype=torch.int64)
        if self.neighbors:
            edges.update(self._adjacent_edges(idx, r, c, nh, nw))
        if self.knn:
            # each cell's neighbours in ascending id order (not nearest first): both
            # relations are then sorted by (src, dst) with no O(E log E) sort in build_tensors
            # (``rev_similar`` as it is, ``similar`` by one stable sort of its sources)
            nbr = [knn_local[i].sort(dim=-1).values + offsets[i] for i in range(b)]
            k = [n.shape[1] for n in nbr]
            dst = torch.repeat_interleave(idx, torch.tensor(k, dtype=torch.int64)[seg]) if total else idx
            src = torch.cat([n.reshape(-1) for n in nbr]) if b else idx
            edges[("patch", "similar", "patch")] = (src, dst)
            edges[("patch", "rev_similar", "patch")] = (dst, src)
        data = {"pixels": pixels, "rc": torch.stack([r, c], dim=1), "grid": grid, "span": span}
        return NodeBlock(ntype="patch", counts=counts, data=data, edges=edges)

    def _adjacent_edges(
        self, idx: torch.Tensor, r: torch.Tensor, c: torch.Tensor, nh: torch.Tensor, nw: torch.Tensor
    ) -> EdgeDict:
        """The grid relations of :meth:`build`: ``adjacent`` (both directions), or with
        ``directional`` one ``adj_<direction>`` relation per grid offset.

        Shapes:
            idx, r, c (each patch's id, row and column) and nh, nw (its image's grid)
            ``(N,)``; each relation ``(E,)`` source and destination ids.
        """
        edges: EdgeDict = {}
        steps = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if self.neighbors == 8 else [])
        if not self.directional:
            # every cell's neighbours at once, the offsets in ascending order of id
            # (dr nw + dc): the relation comes out sorted by (src, dst), so build_tensors
            # need not sort its E log E
            offsets = sorted({o for dr, dc in steps for o in ((dr, dc), (-dr, -dc))})
            dr = torch.tensor([o[0] for o in offsets])
            dc = torch.tensor([o[1] for o in offsets])
            rr, cc = r[:, None] + dr, c[:, None] + dc  # (N, offsets)
            ok = (rr >= 0) & (rr < nh[:, None]) & (cc >= 0) & (cc < nw[:, None])
            dst = (idx[:, None] + dr * nw[:, None] + dc)[ok]
            src = idx[:, None].expand(ok.shape)[ok]
            edges[("patch", "adjacent", "patch")] = (src, dst)
            return edges
        for dr, dc in steps:  # a constant number of grid offsets, each vectorised
            ok = (r + dr < nh) & (c + dc >= 0) & (c + dc < nw)
            src_k = idx[ok]
            dst_k = src_k + dr * nw[ok] + dc
            # offset (dr, dc) from destination to source: idx -> idx + offset is a source
            # lying at the offset's direction seen from idx, and the reverse edge the opposite
            name, opposite = _DIR_NAME[(dr, dc)], _DIR_NAME[(-dr, -dc)]
            edges[("patch", f"adj_{name}", "patch")] = (dst_k, src_k)
            edges[("patch", f"adj_{opposite}", "patch")] = (src_k, dst_k)
        return edges

    def __repr__(self) -> str:
        return (
            f"ImageGraphBuilder(patch_size={self.patch_size}, stride={self.stride}, "
            f"neighbors={self.neighbors}, knn={self.knn}"
            + (", directional=True" if self.directional else "")
            + (f", knn_radius={self.knn_radius})" if self.knn_radius is not None else ")")
        )
