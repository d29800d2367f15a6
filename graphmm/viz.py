"""Plots: training curves, confusion matrices, graph drawings and attention maps.

Every function draws on its own :class:`matplotlib.figure.Figure` with the Agg
canvas, so it works without a display and never touches ``pyplot``'s global state.
Each writes a PNG of exactly ``figsize * dpi`` pixels and returns its path.

Example:
    >>> import tempfile, torch
    >>> from graphmm.viz import write_classification_artefacts
    >>> rows = [{"epoch": 0, "train/loss": 2.0, "val/loss": 1.9, "val/acc": 0.3, "val/f1": 0.2},
    ...         {"epoch": 1, "train/loss": 1.5, "val/loss": 1.6, "val/acc": 0.5, "val/f1": 0.4}]
    >>> paths = write_classification_artefacts(tempfile.mkdtemp(), rows, torch.tensor([0, 1, 1]),
    ...                                        torch.tensor([0, 1, 0]), ["no", "yes"])
    >>> sorted(paths)
    ['confusion.csv', 'confusion.png', 'curves.png']
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "draw_graph",
    "plot_audio_attention",
    "plot_confusion",
    "plot_history",
    "plot_patch_attention",
    "plot_relation_mass",
    "plot_sequence_history",
    "write_classification_artefacts",
]

PathLike = str | os.PathLike[str]


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: PathLike, dpi: int) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    # no bbox_inches="tight": the PNG keeps exactly figsize * dpi pixels
    fig.savefig(out, dpi=dpi, format="png")
    return out


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------- training
def _history_from_csv(path: PathLike) -> list[dict[str, float]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"history file {str(p)!r} does not exist; a training run writes it as history.csv")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"history file {str(p)!r} has no rows (did the run finish an epoch?)")
    out = []
    for i, r in enumerate(rows):
        try:
            out.append({k: float(v) for k, v in r.items() if v not in (None, "")})
        except ValueError as err:
            raise ValueError(f"history file {str(p)!r}, row {i + 1}: {err}") from None
    return out


def _plot_history_rows(
    rows: Sequence[Mapping[str, float]],
    out_png: PathLike,
    figsize: tuple[float, float],
    dpi: int,
    metric_keys: Sequence[str] = ("val/acc", "val/f1"),
) -> Path:
    if not rows:
        raise ValueError("history is empty: there is no epoch to plot")
    epochs = [float(r.get("epoch", i)) for i, r in enumerate(rows)]

    def series(key: str) -> list[float] | None:
        vals = [r.get(key) for r in rows]
        return None if all(v is None for v in vals) else [math.nan if v is None else float(v) for v in vals]

    fig = _figure(figsize, dpi)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key, style in (("train/loss", "-o"), ("val/loss", "-s")):
        vals = series(key)
        if vals is not None:
            ax_loss.plot(epochs, vals, style, ms=3, label=key)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for key, style in zip(metric_keys, ("-o", "-s", "-^", "-v", "-d")):
        vals = series(key)
        if vals is not None:
            ax_metric.plot(epochs, vals, style, ms=3, label=key)
    ax_metric.set(xlabel="epoch", ylabel="score", title="validation", ylim=(0.0, 1.0))
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out_png, dpi)


def plot_history(
    history_csv_path: PathLike,
    out_png: PathLike,
    *,
    figsize: tuple[float, float] = (8.0, 3.2),
    dpi: int = 100,
) -> Path:
    """Loss and validation-metric curves per epoch from a run's ``history.csv``.

    Left panel: ``train/loss`` and ``val/loss``; right panel: ``val/acc`` and
    ``val/f1``. Missing columns are left out.

    Args:
        history_csv_path: ``history.csv`` with columns ``epoch``, ``train/loss``,
            ``val/loss``, ``val/acc``, ``val/f1``.
        out_png: PNG to write (folders are created).
        figsize: Size in inches. Default: ``(8.0, 3.2)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The PNG's path; the image is ``figsize * dpi`` pixels.

    Raises:
        FileNotFoundError: ``history_csv_path`` does not exist.
        ValueError: It has no rows or a non-numeric value.
    """
    return _plot_history_rows(_history_from_csv(history_csv_path), out_png, figsize, dpi)


def plot_sequence_history(
    rows: Sequence[Mapping[str, float]],
    out_png: PathLike,
    *,
    figsize: tuple[float, float] = (8.0, 3.2),
    dpi: int = 100,
) -> Path:
    """Curves of a generation run: losses, and ``val/exact``, ``val/bleu``, ``val/wer``
    and ``val/cer`` per epoch (the rows of its ``history.csv``).

    Returns:
        The PNG's path; the image is ``figsize * dpi`` pixels.
    """
    return _plot_history_rows(rows, out_png, figsize, dpi, ("val/exact", "val/bleu", "val/wer", "val/cer"))


def _num_classes(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] | None) -> int:
    n = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if class_names is not None:
        if n > len(class_names):
            raise ValueError(f"labels go up to {n - 1} but only {len(class_names)} class names were given")
        n = len(class_names)
    return max(n, 1)


def confusion_matrix(y_true: torch.Tensor | Sequence[int], y_pred: torch.Tensor | Sequence[int],
                     num_classes: int) -> np.ndarray:
    """Counts ``M[i, j]`` of samples of true class ``i`` predicted as ``j``.

    Shapes:
        - Input: ``(N,)`` and ``(N,)`` class indices.
        - Output: ``(num_classes, num_classes)`` int64.
    """
    from sklearn.metrics import confusion_matrix as _cm

    yt, yp = _as_numpy(y_true).astype(np.int64).ravel(), _as_numpy(y_pred).astype(np.int64).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {yt.shape[0]} and {yp.shape[0]}")
    if (yt < 0).any() or (yp < 0).any():
        raise ValueError("class indices must be >= 0")
    return _cm(yt, yp, labels=list(range(num_classes))).astype(np.int64)


def plot_confusion(
    y_true: torch.Tensor | Sequence[int],
    y_pred: torch.Tensor | Sequence[int],
    class_names: Sequence[str] | None,
    out_png: PathLike,
    *,
    figsize: tuple[float, float] = (5.0, 4.5),
    dpi: int = 100,
) -> np.ndarray:
    """Draw the confusion matrix (counts, with row-normalised colour).

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        class_names: One name per class, or ``None`` for ``0..C-1``.
        out_png: PNG to write.
        figsize: Size in inches. Default: ``(5.0, 4.5)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The matrix ``M`` with ``M[i, j]`` = samples of class ``i`` predicted ``j``.

    Shapes:
        - Input: ``(N,)`` and ``(N,)``.
        - Output: ``(C, C)``.
    """
    yt, yp = _as_numpy(y_true).ravel(), _as_numpy(y_pred).ravel()
    n = _num_classes(yt, yp, class_names)
    cm = confusion_matrix(yt, yp, n)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    rate = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    im = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rate[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45 if max(map(len, names)) > 2 else 0, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion (accuracy {acc:.3f}, n={cm.sum()})")
    _save(fig, out_png, dpi)
    return cm


def write_classification_artefacts(
    out_dir: PathLike,
    history_rows: list[dict],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    class_names: list[str] | None,
) -> dict[str, Path]:
    """Write ``curves.png``, ``confusion.png`` and ``confusion.csv`` into ``out_dir``.

    Args:
        out_dir: Folder to write into (created if needed).
        history_rows: One dict per epoch with ``epoch``, ``train/loss``, ``val/loss``,
            ``val/acc``, ``val/f1`` (the rows of ``history.csv``). Empty: no curves.
        y_true: True classes of the evaluated split.
        y_pred: Predicted classes.
        class_names: One name per class, or ``None`` for ``0..C-1``.

    Returns:
        ``{file name: path}`` of what was written.

    Shapes:
        - y_true, y_pred: ``(N,)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if history_rows:
        written["curves.png"] = _plot_history_rows(history_rows, out / "curves.png", (8.0, 3.2), 100)
    cm = plot_confusion(y_true, y_pred, class_names, out / "confusion.png")
    written["confusion.png"] = out / "confusion.png"
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(cm))]
    with open(out / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm.tolist()):
            w.writerow([name, *row])
    written["confusion.csv"] = out / "confusion.csv"
    return written


# ---------------------------------------------------------------------- attention
def patch_pixel_map(
    values: torch.Tensor, rc: torch.Tensor, image_hw: tuple[int, int], patch_size: int, stride: int
) -> np.ndarray:
    """Spread per-patch values over the pixels each patch covers.

    Each pixel gets the mean value of the patches that cover it (patches overlap
    when ``stride < patch_size``); pixels that no patch reaches are NaN.

    Shapes:
        - values: ``(N,)``; rc: ``(N, 2)`` grid row and column.
        - Output: ``(H, W)``.
    """
    h, w = image_hw
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for v, (r, c) in zip(_as_numpy(values).tolist(), _as_numpy(rc).tolist()):
        r0, c0 = int(r) * stride, int(c) * stride
        total[r0 : r0 + patch_size, c0 : c0 + patch_size] += v
        count[r0 : r0 + patch_size, c0 : c0 + patch_size] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _show_image(ax, image: torch.Tensor, extent=None) -> None:
    img = _as_numpy(image)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest", extent=extent)
    else:
        ax.imshow(np.clip(img[:3].transpose(1, 2, 0), 0, 1), interpolation="nearest", extent=extent)


def plot_patch_attention(
    image: torch.Tensor,
    values: torch.Tensor,
    rc: torch.Tensor,
    patch_size: int,
    stride: int,
    out_png: PathLike,
    *,
    title: str = "attention per patch",
    figsize: tuple[float, float] = (7.0, 3.6),
    dpi: int = 100,
) -> Path:
    """The image beside the image overlaid with a per-patch heatmap.

    Args:
        image: The image the graph was built from, values in [0, 1].
        values: One value per patch (e.g. attention mass).
        rc: Grid row and column of each patch (node data ``rc``).
        patch_size: Patch side ``p`` in pixels.
        stride: Patch stride ``s`` in pixels.
        out_png: PNG to write.
        title: Title of the overlay panel.
        figsize: Size in inches. Default: ``(7.0, 3.6)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The PNG's path.

    Shapes:
        - image: ``(C, H, W)``; values: ``(N,)``; rc: ``(N, 2)``.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if len(values) != len(rc):
        raise ValueError(f"got {len(values)} values for {len(rc)} patches")
    heat = patch_pixel_map(values, rc, tuple(image.shape[-2:]), patch_size, stride)
    fig = _figure(figsize, dpi)
    ax_img, ax_heat = fig.subplots(1, 2)
    _show_image(ax_img, image)
    ax_img.set_title("input (as the model sees it)", fontsize=9)
    _show_image(ax_heat, image)
    im = ax_heat.imshow(heat, cmap="inferno", alpha=0.6, interpolation="nearest")
    fig.colorbar(im, ax=ax_heat, shrink=0.85)
    ax_heat.set_title(title, fontsize=9)
    for ax in (ax_img, ax_heat):
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, out_png, dpi)


def plot_audio_attention(
    logmel: torch.Tensor,
    times: torch.Tensor,
    values: torch.Tensor,
    out_png: PathLike,
    *,
    title: str = "attention per frame",
    figsize: tuple[float, float] = (7.0, 3.2),
    dpi: int = 100,
) -> Path:
    """A log-mel spectrogram with a per-frame curve (e.g. attention) laid over it.

    Args:
        logmel: Log-mel spectrogram, one column per frame.
        times: Centre of each frame in seconds.
        values: One value per frame.
        out_png: PNG to write.
        title: Figure title.
        figsize: Size in inches. Default: ``(7.0, 3.2)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The PNG's path.

    Shapes:
        - logmel: ``(n_mels, F)``; times, values: ``(F,)``.
    """
    mel, t, v = _as_numpy(logmel), _as_numpy(times).astype(float), _as_numpy(values).astype(float)
    if mel.ndim != 2 or mel.shape[1] != len(t) or len(t) != len(v):
        raise ValueError(
            f"need logmel (n_mels, F) and F times and values, got {mel.shape}, {len(t)} times, {len(v)} values"
        )
    half = (t[1] - t[0]) / 2 if len(t) > 1 else 0.01
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(t[0] - half, t[-1] + half, 0, mel.shape[0]))
    ax.set(xlabel="time (s)", ylabel="mel band")
    ax.set_title(title, fontsize=9)
    ax2 = ax.twinx()
    ax2.plot(t, v, color="cyan", lw=2, marker="o", ms=3, label="attention")
    ax2.set_ylabel("attention mass", color="cyan")
    ax2.set_ylim(0, max(float(np.nanmax(v)) if len(v) else 1.0, 1e-9) * 1.1)
    return _save(fig, out_png, dpi)


def plot_relation_mass(
    rows: Sequence[Mapping[str, Any]],
    out_png: PathLike,
    *,
    figsize: tuple[float, float] = (8.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Horizontal bars per relation: attention mass and mean message norm.

    Args:
        rows: One dict per relation with ``relation``, ``attention_mass`` and,
            optionally, ``message_norm`` (see :func:`graphmm.predict.relation_summary`).
        out_png: PNG to write.
        figsize: Size in inches. Default: ``(8.0, 4.0)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The PNG's path.
    """
    if not rows:
        raise ValueError("no relation to plot")
    rows = sorted(rows, key=lambda r: float(r["attention_mass"]))
    names = [str(r["relation"]) for r in rows]
    has_norm = all(r.get("message_norm") is not None for r in rows)
    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, 2 if has_norm else 1, sharey=True, squeeze=False)[0]
    axes[0].barh(names, [float(r["attention_mass"]) for r in rows], color="tab:orange")
    axes[0].set(xlabel="attention mass\n(sum over edges and layers, head mean)")
    axes[0].tick_params(axis="y", labelsize=7)
    if has_norm:
        axes[1].barh(names, [float(r["message_norm"]) for r in rows], color="tab:blue")
        axes[1].set(xlabel="message norm\n(mean L2 at receiving nodes)")
    fig.suptitle("what each relation carried", fontsize=10)
    return _save(fig, out_png, dpi)


# ---------------------------------------------------------------------- graphs
def _graph_positions(
    g, image_hw: tuple[int, int] | None, patch_geometry: tuple[int, int] | None
) -> tuple[dict[tuple[str, int], tuple[float, float]], dict[str, float], float]:
    """Node positions: patches over the image, words in a row, frames on a time axis,
    summary nodes to the right beside their modality's row."""
    pos: dict[tuple[str, int], tuple[float, float]] = {}
    aspect = image_hw[0] / image_hw[1] if image_hw else 1.0
    rows = {"patch": aspect / 2, "word": -0.3, "frame": -0.75}
    if "patch" in g.ntypes and g.num_nodes("patch"):
        rc = g.nodes["patch"].data["rc"].tolist()
        grid = g.nodes["patch"].data["grid"].tolist()
        for i, ((r, c), (gr, gc)) in enumerate(zip(rc, grid)):
            if image_hw and patch_geometry:
                p, s = patch_geometry
                x = (c * s + p / 2) / image_hw[1]
                y = aspect * (1 - (r * s + p / 2) / image_hw[0])
            else:
                x, y = gc, aspect * (1 - gr)
            pos[("patch", i)] = (x, y)
    if "word" in g.ntypes:
        n = g.num_nodes("word")
        for i in range(n):
            pos[("word", i)] = ((i + 0.5) / max(n, 1), rows["word"])
    if "frame" in g.ntypes and g.num_nodes("frame"):
        for i, tp in enumerate(g.nodes["frame"].data["tpos"].tolist()):
            pos[("frame", i)] = (float(tp), rows["frame"])
    # node types of other modalities (plug-ins): one band each below the audio frames;
    # grid nodes (``rc``) as small grids, one per frame ``t`` side by side, else a row
    from graphmm.modalities import load_modalities

    others = [nt for nt in g.ntypes if nt not in ("patch", "word", "frame", "summary")]
    for k, nt in enumerate(others):
        rows[nt] = rows["frame"] - 0.55 * (k + 1)
        n = g.num_nodes(nt)
        data = g.nodes[nt].data
        if not n:
            continue
        if "rc" in data:
            rc = data["rc"].long()
            t = data["t"].long() if "t" in data else torch.zeros(n, dtype=torch.long)
            frames, nr, nc = int(t.max()) + 1, int(rc[:, 0].max()) + 1, int(rc[:, 1].max()) + 1
            cell = min(0.4 / max(nr, 1), 1.0 / (frames * (nc + 1)))
            for i, (r, c, tt) in enumerate(zip(rc[:, 0].tolist(), rc[:, 1].tolist(), t.tolist())):
                pos[(nt, i)] = ((tt * (nc + 1) + c + 0.5) * cell, rows[nt] + 0.2 - r * cell)
        else:
            x = data["tpos"].tolist() if "tpos" in data else [(i + 0.5) / n for i in range(n)]
            for i in range(n):
                pos[(nt, i)] = (float(x[i]), rows[nt])
    if "summary" in g.ntypes and g.num_nodes("summary"):
        by_id = {spec.summary_id: spec.ntype for spec in load_modalities().values()}
        for i, m in enumerate(g.nodes["summary"].data["modality"].tolist()):
            # lifted above its row, so that the row's edges to it fan out
            nt = by_id[int(m)]
            pos[("summary", i)] = (1.3, rows[nt] + (0.0 if nt == "patch" else 0.2))
    return pos, rows, aspect


def draw_graph(
    g,
    out_png: PathLike,
    *,
    image: torch.Tensor | None = None,
    patch_geometry: tuple[int, int] | None = None,
    tokens: Sequence[str] | None = None,
    include_reverse: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] = (9.0, 7.0),
    dpi: int = 100,
) -> Path:
    """Draw one sample's heterograph with networkx.

    Patches sit at their grid positions over the image, words in a row below it,
    frames along a time axis below the words, and summary nodes to the right, each
    beside its modality. Edges are coloured by relation, with a legend; reverse
    relations (``rev_*``) mirror their forward relation and are hidden unless
    ``include_reverse``.

    Args:
        g: A heterograph of one sample (``g.batch_size == 1``).
        out_png: PNG to write.
        image: The ``(C, H, W)`` image the patches came from, drawn underneath.
        patch_geometry: ``(patch_size, stride)`` in pixels, to put each patch at
            its pixel centre; without it the normalised ``grid`` position is used.
        tokens: Labels of the word nodes, in order.
        include_reverse: Also draw ``rev_*`` relations. Default: ``False``.
        title: Figure title.
        figsize: Size in inches. Default: ``(9.0, 7.0)``.
        dpi: Pixels per inch. Default: ``100``.

    Returns:
        The PNG's path.
    """
    from graphmm.graphs import to_networkx

    if g.batch_size != 1:
        raise ValueError(f"draw_graph draws one sample; got a batch of {g.batch_size} (use dgl.unbatch)")
    image_hw = tuple(int(x) for x in image.shape[-2:]) if image is not None else None
    pos, rows, aspect = _graph_positions(g, image_hw, patch_geometry)
    nxg = to_networkx(g, node_attrs=False)
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    if image is not None:
        _show_image(ax, image, extent=(0, 1, 0, aspect))
    handles = _draw_edges(ax, g, nxg, pos, include_reverse)
    _draw_nodes(ax, nxg, pos, rows)
    _draw_labels(ax, g, pos, tokens)
    if "frame" in g.ntypes and g.num_nodes("frame"):
        _draw_time_axis(ax, g, rows["frame"] - 0.12)
    ax.set_xlim(-0.1, 1.75)
    ax.set_ylim(min(rows.values()) - 0.3, aspect + 0.08)
    ax.set_aspect("equal")
    ax.axis("off")
    counts = ", ".join(f"{nt}={g.num_nodes(nt)}" for nt in g.ntypes)
    ax.set_title(title or f"graph: {counts}", fontsize=10)
    ax.legend(handles=handles, loc="upper right", fontsize=7, title="relation (edges)", title_fontsize=8,
              framealpha=0.9)
    return _save(fig, out_png, dpi)


def _draw_edges(ax, g, nxg, pos: dict, include_reverse: bool) -> list[Line2D]:
    """Draw each relation's edges in its own colour; the legend handles, one per relation."""
    import networkx as nx

    rels = [c for c in g.canonical_etypes if include_reverse or not c[1].startswith("rev_")]
    cmap = matplotlib.colormaps["tab20" if len(rels) > 10 else "tab10"]
    handles = []
    for k, (s, r, d) in enumerate(rels):
        cet = f"{s}:{r}:{d}"
        edges = [(u, v) for u, v, a in nxg.edges(data=True) if a["canonical_etype"] == cet]
        color = cmap(k % cmap.N)
        # edges along one row of nodes would hide under the nodes: bend them
        rad = {"word": 0.35, "frame": 0.8, "summary": 0.35}.get(s, 0.05) if s == d else 0.05
        nx.draw_networkx_edges(
            nxg, pos, edgelist=edges, ax=ax, edge_color=[color], width=1.0, alpha=0.7, arrows=True,
            arrowsize=7, node_size=60, connectionstyle=f"arc3,rad={rad}",
        )
        handles.append(Line2D([], [], color=color, lw=2, label=f"{cet} ({len(edges)})"))
    return handles


def _draw_nodes(ax, nxg, pos: dict, rows: dict[str, float]) -> None:
    """Draw the nodes, one colour and marker per node type (plug-in types get spare colours)."""
    import networkx as nx

    styles = {"word": ("tab:green", "s"), "patch": ("white", "o"), "frame": ("tab:purple", "o"),
              "summary": ("gold", "D")}
    extra_colors = iter(["tab:cyan", "tab:olive", "tab:pink", "tab:brown"])
    styles.update({nt: (next(extra_colors, "tab:gray"), "o") for nt in rows if nt not in styles})
    for nt, (color, marker) in styles.items():
        nodes = [n for n in pos if n[0] == nt]
        if nodes:
            nx.draw_networkx_nodes(nxg, pos, nodelist=nodes, ax=ax, node_color=color, node_shape=marker,
                                   node_size={"summary": 120, "frame": 30}.get(nt, 60), edgecolors="black", linewidths=0.6)


def _draw_labels(ax, g, pos: dict, tokens: Sequence[str] | None) -> None:
    """Write the word tokens under their nodes and name each summary node's modality."""
    labels = {}
    if tokens is not None and "word" in g.ntypes:
        labels.update({("word", i): t for i, t in enumerate(tokens[: g.num_nodes("word")])})
    if "summary" in g.ntypes and g.num_nodes("summary"):
        from graphmm.modalities import load_modalities

        names = {spec.summary_id: name for name, spec in load_modalities().items()}
        labels.update({("summary", i): f"  {names[int(m)]} summary"
                       for i, m in enumerate(g.nodes["summary"].data["modality"].tolist())})
    for n, text in labels.items():
        x, y = pos[n]
        if n[0] == "word":
            ax.text(x, y - 0.06, text, ha="center", va="top", fontsize=8, rotation=30)
        else:
            ax.text(x + 0.03, y, text, ha="left", va="center", fontsize=8)


def _draw_time_axis(ax, g, y: float) -> None:
    """An arrow from 0 s to the clip's duration at height ``y``, under the audio frames."""
    times = g.nodes["frame"].data["time"]
    tpos = g.nodes["frame"].data["tpos"]
    # tpos = time / clip duration, so the clip's duration is the ratio of the two
    dur = float(times[-1] / tpos[-1]) if float(tpos[-1]) > 0 else float(times[-1])
    ax.annotate("", xy=(1.0, y), xytext=(0.0, y), arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.text(0.0, y - 0.03, "0 s", ha="center", va="top", fontsize=8)
    ax.text(1.0, y - 0.03, f"{dur:.2f} s", ha="center", va="top", fontsize=8)
    ax.text(0.5, y - 0.03, "audio frames (time)", ha="center", va="top", fontsize=8)
