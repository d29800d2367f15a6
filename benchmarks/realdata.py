"""The accuracy table on real data: graph models against the usual alternatives, one run.

Every method sees the same splits (the loaders' own test split, validation carved
from train with data seed 0) and is run with three seeds; the table gives test
accuracy as mean ± std, and which graph convolution is best is chosen on validation.

Methods, per dataset:

- **graph model** (``model=hetero_gnn``) with ``model.conv`` = ``sum``, ``gcn``, ``gat``;
- **Transformer** (``model=transformer``): the same nodes as one token sequence;
- **late fusion** (``model=late_fusion``): one set encoder per modality, concat, MLP
  (on a single modality, a bag of embeddings);
- outside the framework: TF-IDF word 1-2-grams with ``LinearSVC`` and logistic
  regression (text), log-mel statistics with logistic regression and a small CNN on
  the log-mel spectrogram (audio), pixels with logistic regression and a small CNN
  (image), and for avdigits the two CNNs with their probabilities averaged.

The framework models are trained by Hydra multiruns of :mod:`graphmm.train`
(``experiment=<dataset>``, with the joblib launcher running ``--jobs`` jobs at once,
one torch thread each), one run directory per job and a ``summary.md`` per sweep,
under ``--workdir``. The two-modality dataset (avdigits) is also tested with each
modality removed (``trainer.test_missing_modalities=true``): the graph model then has
no nodes of that type, late fusion gets zeros. A rerun with the same ``--workdir``
resumes: finished jobs are read back, unfinished ones continue from their checkpoints,
and the baselines are cached per seed (a rerun with more seeds fits only the new ones).
``--table-only`` trains nothing and writes the table from what the work dir holds.

    python -m benchmarks.realdata                  # the full table (make bench-realdata)
    python -m benchmarks.realdata --quick          # smoke run, short training (< 10 min)
    python -m benchmarks.realdata --datasets mr fsdd --models gnn-gat late_fusion --seeds 0

The data folder is ``$GRAPHMM_DATA`` or ``../shared/data`` beside the repository.
The table goes into ``benchmarks/RESULTS.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from graphmm.callbacks import summarize_sweep
from graphmm.data import Sample, load_audio_folder, load_avdigits, load_image_arrays, load_textcls

from .modalities import write_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TEXT = ("mr", "sst2", "trec", "sst1", "webkb")
DATASETS = ("mr", "sst2", "trec", "sst1", "webkb", "fsdd", "fsdd_speakers", "mnist", "avdigits")
ALL = DATASETS
QUICK = ("mr", "trec", "fsdd", "mnist", "avdigits")
#: framework models: name -> overrides of graphmm.train (each dataset's experiment preset
#: keeps its own components, e.g. the wide path of the text presets)
MODELS: dict[str, list[str]] = {
    "gnn-sum": ["model=hetero_gnn", "model.conv=sum"],
    "gnn-gcn": ["model=hetero_gnn", "model.conv=gcn"],
    "gnn-gat": ["model=hetero_gnn", "model.conv=gat"],
    "transformer": ["model=transformer"],
    "late_fusion": ["model=late_fusion"],
}
#: the default set: conv=sum is left out (last on every dataset in earlier runs; --models gnn-sum adds it)
DEFAULT_MODELS = ("gnn-gcn", "gnn-gat", "transformer", "late_fusion")


@dataclass(frozen=True)
class Ablation:
    """The graph model (conv=gat) without one component its preset keeps: ``overrides``
    switch it off; it runs on the datasets whose composed config ``applies`` to."""

    label: str
    overrides: tuple[str, ...]
    applies: Callable[[Any], bool]


ABLATIONS: dict[str, Ablation] = {
    "gnn-gat-nowide": Ablation("graph, conv=gat, without the wide path", ("model.wide=null",),
                               lambda cfg: cfg.model.get("wide") is not None),
    "gnn-gat-nomoddrop": Ablation("graph, conv=gat, without modality dropout", ("trainer.modality_dropout=0",),
                                  lambda cfg: cfg.trainer.modality_dropout > 0 and _modalities(cfg) > 1),
}
LABELS = {
    "gnn-sum": "graph, conv=sum",
    "gnn-gcn": "graph, conv=gcn",
    "gnn-gat": "graph, conv=gat",
    "transformer": "Transformer over the nodes (no graph)",
    "late_fusion": "late fusion (set encoder per modality)",
    **{name: a.label for name, a in ABLATIONS.items()},
}
MULTIMODAL = ("avdigits",)
LONGEST_FIRST = ("mnist", "webkb", "avdigits", "sst1", "sst2", "mr", "trec", "fsdd", "fsdd_speakers")
# what graphmm/conf/experiment/<name>.yaml passes to the loader besides the name
TEXT_OPTIONS = {
    "webkb": {"label_map": {"cours": "course", "facult": "faculty", "projec": "project", "studen": "student"}},
    "trec": {"skip_tokens": 1},
}
#: the issue's targets for the best graph model (test accuracy, mean over seeds); SST-1
#: and WebKB: the run's best TF-IDF model
TARGETS = {"mr": 0.78, "sst2": 0.83, "trec": 0.91, "fsdd": 0.985, "fsdd_speakers": 0.85, "mnist": 0.993,
           "avdigits": 0.996}
SR, N_MELS, FRAMES = 8000, 40, 64  # 64 frames of hop 128 at 8 kHz: about 1 s

Result = dict[str, float]  # metric name -> value, one seed


# ---------------------------------------------------------------- features
_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=SR, n_fft=256, hop_length=128, n_mels=N_MELS)


def _logmel(samples: Sequence[Sample]) -> list[torch.Tensor]:
    """``(n_mels, frames)`` log-mel of each clip (clips differ in length)."""
    return [torch.log(_MEL(s.audio) + 1e-6) for s in samples]


def _mel_stats(mels: list[torch.Tensor]) -> np.ndarray:
    return torch.stack([torch.cat([m.mean(1), m.std(1)]) for m in mels]).numpy()


def _mel_fixed(mels: list[torch.Tensor], stats: tuple[float, float] | None = None) -> torch.Tensor:
    """``(N, 1, n_mels, FRAMES)``: each clip's log-mel, centre-cropped or padded with its
    minimum, standardised with ``stats`` (default: this set's own mean and std)."""
    out = torch.empty(len(mels), 1, N_MELS, FRAMES)
    for i, m in enumerate(mels):  # clips of different lengths; a few thousand at most
        if m.shape[1] >= FRAMES:
            start = (m.shape[1] - FRAMES) // 2
            out[i, 0] = m[:, start : start + FRAMES]
        else:
            out[i, 0] = m.min()
            out[i, 0, :, : m.shape[1]] = m
    mean, std = stats if stats is not None else (float(out.mean()), float(out.std()))
    return (out - mean) / std


# ---------------------------------------------------------------- models outside the framework
def _logreg_proba(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray) -> np.ndarray:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return clf.fit(xtr, ytr).predict_proba(xte)


class SmallCNN(torch.nn.Module):
    """Two 3x3 conv blocks (16 and 32 channels, BatchNorm, ReLU, 2x2 max-pool) and a linear head."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.AdaptiveAvgPool2d(4),
        )
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(32 * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def cnn_proba(
    xtr: torch.Tensor, ytr: np.ndarray, xval: torch.Tensor, yval: np.ndarray, xte: torch.Tensor,
    num_classes: int, epochs: int, seed: int,
) -> np.ndarray:
    """Train :class:`SmallCNN` with AdamW, keep the epoch of best validation accuracy;
    return its test class probabilities ``(N_test, num_classes)``."""
    torch.manual_seed(seed)
    model = SmallCNN(xtr.shape[1], num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    y = torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return torch.cat([F.softmax(model(x[i : i + 1024]), -1) for i in range(0, len(x), 1024)])

    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xtr), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), y[idx]).backward()
            opt.step()
        acc = float((predict(xval).argmax(-1).numpy() == yval).mean())
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return predict(xte).numpy()


def _acc(proba: np.ndarray, y: np.ndarray) -> float:
    return float((proba.argmax(1) == y).mean())


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.label for s in samples])


def _timed(fn: Callable[[], Result]) -> Result:
    t0 = time.perf_counter()
    out = fn()
    return {**out, "time_s": time.perf_counter() - t0}


def baselines(dataset: str, data: Path, seeds: Sequence[int], quick: bool,
              deterministic: bool = True) -> dict[str, dict[str, Result]]:
    """``method -> {seed: result}`` for the seeded methods and ``method -> {"once": result}``
    for the deterministic ones (left out when ``deterministic`` is false)."""
    out: dict[str, dict[str, Result]] = {}
    epochs = 2 if quick else 15
    if dataset in TEXT:
        s = load_textcls(data / "text", dataset, **TEXT_OPTIONS.get(dataset, {}))
        xtr, ytr = [x.text for x in s["train"] + s["val"]], _labels(s["train"] + s["val"])
        xte, yte = [x.text for x in s["test"]], _labels(s["test"])
        for label, make in (("TF-IDF 1-2-gram + LinearSVC", lambda: LinearSVC(C=0.5)),
                            ("TF-IDF 1-2-gram + LogReg", lambda: LogisticRegression(C=10.0, max_iter=3000))):
            def fit(make=make) -> Result:
                vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b|[^\w\s]")
                return {"test/acc": float(make().fit(vec.fit_transform(xtr), ytr).score(vec.transform(xte), yte))}
            if deterministic:
                out[label] = {"once": _timed(fit)}
        return out
    if dataset in ("fsdd", "fsdd_speakers"):
        kw = {"split": "speakers", "test_speakers": ["george"]} if dataset == "fsdd_speakers" else {}
        s = load_audio_folder(data / "fsdd" / "recordings", sample_rate=SR, **kw)
        y = {k: _labels(v) for k, v in s.items()}
        mels = {k: _logmel(v) for k, v in s.items()}
        if deterministic:
            out["log-mel mean+std + LogReg"] = {"once": _timed(lambda: {"test/acc": _acc(_logreg_proba(
                _mel_stats(mels["train"] + mels["val"]), np.concatenate([y["train"], y["val"]]),
                _mel_stats(mels["test"])), y["test"])})}
        train = _mel_fixed(mels["train"])
        stats = (float(train.mean()), float(train.std()))  # also for val/test: the trainer's statistics only
        fixed = {k: _mel_fixed(v, stats) for k, v in mels.items()}
        out["small CNN on log-mel"] = {
            str(seed): _timed(lambda seed=seed: {"test/acc": _acc(cnn_proba(
                fixed["train"], y["train"], fixed["val"], y["val"], fixed["test"], 10, epochs, seed), y["test"])})
            for seed in seeds
        }
        return out
    if dataset == "mnist":
        s = load_image_arrays(data / "mnist" / "train.npz", test_size=10000)
        x = {k: torch.stack([v.image for v in s[k]]) for k in s}
        y = {k: _labels(v) for k, v in s.items()}
        n = 5000 if quick else len(y["train"])
        if deterministic:
            out["pixels + LogReg"] = {"once": _timed(lambda: {"test/acc": _acc(_logreg_proba(
                x["train"][:n].flatten(1).numpy(), y["train"][:n], x["test"].flatten(1).numpy()), y["test"])})}
        out["small CNN"] = {
            str(seed): _timed(lambda seed=seed: {"test/acc": _acc(cnn_proba(
                x["train"][:n], y["train"][:n], x["val"], y["val"], x["test"], 10, 2 if quick else 5, seed),
                y["test"])})
            for seed in seeds
        }
        return out
    if dataset == "avdigits":
        s = load_avdigits(data / "mnist" / "train.npz", data / "fsdd" / "recordings", sample_rate=SR)
        y = {k: _labels(v) for k, v in s.items()}
        img = {k: torch.stack([v.image for v in s[k]]) for k in s}
        mels = {k: _logmel(v) for k, v in s.items()}
        train = _mel_fixed(mels["train"])
        stats = (float(train.mean()), float(train.std()))
        aud = {k: _mel_fixed(v, stats) for k, v in mels.items()}
        for name in ("image: small CNN", "audio: small CNN on log-mel", "late fusion of the two CNNs (mean of probabilities)"):
            out[name] = {}
        for seed in seeds:
            t0 = time.perf_counter()
            p_img = cnn_proba(img["train"], y["train"], img["val"], y["val"], img["test"], 10, epochs, seed)
            t_img = time.perf_counter() - t0
            p_aud = cnn_proba(aud["train"], y["train"], aud["val"], y["val"], aud["test"], 10, epochs, seed)
            t_aud = time.perf_counter() - t0 - t_img
            uniform = np.full_like(p_img, 0.1)  # a missing modality contributes no evidence
            out["image: small CNN"][str(seed)] = {"test/acc": _acc(p_img, y["test"]), "time_s": t_img}
            out["audio: small CNN on log-mel"][str(seed)] = {"test/acc": _acc(p_aud, y["test"]), "time_s": t_aud}
            out["late fusion of the two CNNs (mean of probabilities)"][str(seed)] = {
                "test/acc": _acc(p_img + p_aud, y["test"]),
                "test_without_image/acc": _acc(uniform + p_aud, y["test"]),
                "test_without_audio/acc": _acc(p_img + uniform, y["test"]),
                "time_s": t_img + t_aud,
            }
        return out
    raise ValueError(f"unknown dataset {dataset!r}; choose from {ALL}")


# ---------------------------------------------------------------- framework models, by Hydra multirun
def _compose(dataset: str) -> Any:
    """The composed config of ``experiment=<dataset>`` (what its runs start from)."""
    from hydra import compose, initialize_config_dir

    from graphmm.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={dataset}"])


def _modalities(cfg: Any) -> int:
    """How many modalities the config's graph recipe builds."""
    from graphmm.modalities import list_modalities

    return sum(cfg.graph.get(m) is not None for m in list_modalities())


def ablation_datasets(name: str, datasets: Sequence[str]) -> list[str]:
    """The datasets whose preset keeps the component ablation ``name`` switches off."""
    return [ds for ds in datasets if ABLATIONS[name].applies(_compose(ds))]


def sweep(name: str, datasets: Sequence[str], models: Sequence[str], seeds: Sequence[int], quick: bool,
          workdir: Path, jobs: int) -> Path:
    """Run ``python -m graphmm.train -m`` over datasets x models x seeds; returns the sweep dir.
    A sweep that exits non-zero (a job failed) does not stop the later ones: the table
    lists the jobs that did not finish (:func:`read_sweep`).

    The graph models (which differ only by ``model.conv``) run as one sweep, the others as
    one sweep over ``model=``, and each ablation (:data:`ABLATIONS`) as one sweep over the
    datasets it applies to. Each job's run directory is named by its dataset, model and
    seed, so a rerun with other choices never resumes another job's checkpoint.
    """
    sweep_dir = workdir / name

    def by_length(names: Sequence[str]) -> list[str]:
        # longest jobs first, so that the last ones to finish are short and no core waits long
        return sorted(names, key=lambda d: LONGEST_FIRST.index(d) if d in LONGEST_FIRST else len(LONGEST_FIRST))

    graph = [m for m in models if m.startswith("gnn-") and m not in ABLATIONS]
    other = [m for m in models if not m.startswith("gnn-")]
    groups = []  # (folder, datasets, overrides, run folder name)
    if graph:
        groups.append(("graph", datasets, ["model=hetero_gnn", "model.conv=" + ",".join(m.split("-", 1)[1] for m in graph)],
                       "${name}-gnn-${model.conv}-seed${seed}"))
    if other:
        groups.append(("nograph", datasets, ["model=" + ",".join(other)],
                       "${name}-${hydra.runtime.choices.model}-seed${seed}"))
    for ablation in (m for m in models if m in ABLATIONS):
        applies = ablation_datasets(ablation, datasets)
        if applies:
            groups.append((ablation, applies, ["model=hetero_gnn", "model.conv=gat", *ABLATIONS[ablation].overrides],
                           f"${{name}}-{ablation}-seed${{seed}}"))
    for group, group_datasets, choice, subdir in groups:
        cmd = [
            sys.executable, "-m", "graphmm.train", "-m",
            "experiment=" + ",".join(by_length(group_datasets)), *choice, "seed=" + ",".join(map(str, seeds)),
            "hydra/launcher=graphmm_joblib", f"hydra.launcher.n_jobs={jobs}",
            f"hydra.sweep.dir='{sweep_dir / group}'", f"hydra.sweep.subdir={subdir}",
            # no feature cache: on these small samples writing and reading an entry per sample
            # costs more than recomputing it (docs/scale.md)
            "trainer.progress=false", "trainer.resume=auto", "trainer.test_missing_modalities=true",
        ]
        if quick:
            cmd += ["trainer.max_epochs=2", "trainer.limit_train_batches=30"]
        print("$ " + " ".join(cmd[1:]), flush=True)
        # one thread per job: jobs x threads must not oversubscribe the cores
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if code:
            print(f"sweep {group} exited with status {code}; going on (its unfinished jobs are listed in the "
                  f"table, the errors in {sweep_dir / group / 'summary.md'})", flush=True)
    return sweep_dir


def _job_key(overrides: Sequence[str]) -> tuple[str, str, int]:
    """``(dataset, model, seed)`` of a job from its Hydra overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = {x.key_or_group: x.value() for x in OverridesParser.create().parse_overrides(list(overrides))}
    model = str(o.get("model", "hetero_gnn"))
    name = f"gnn-{o['model.conv']}" if model == "hetero_gnn" else model
    given = set(overrides)
    for ablation, spec in ABLATIONS.items():
        if set(spec.overrides) <= given:
            name = ablation
    return str(o["experiment"]), name, int(o["seed"])


def read_sweep(sweep_dir: Path, datasets: Sequence[str], models: Sequence[str], seeds: Sequence[int],
               unfinished: list[str] | None = None) -> dict[tuple[str, str], list[Result]]:
    """``(dataset, model) -> one result per finished seed`` for the jobs of this run (other
    runs' jobs left in the folder are ignored). A job without ``metrics.json`` is an error,
    or with ``unfinished`` given, appended to it as ``"<job dir> (<status>: <error>)"``."""
    out: dict[tuple[str, str], list[Result]] = defaultdict(list)
    seen: set[tuple[str, str, int]] = set()
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        for row in summarize_sweep(sub):
            job = sub / row["job"]
            key = _job_key(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
            if key[0] not in datasets or key[1] not in models or key[2] not in seeds:
                continue
            if row["status"] != "ok":
                if unfinished is None:
                    raise RuntimeError(f"sweep job {job} ({row['overrides']}) has no metrics.json")
                unfinished.append(f"{job} ({row['status']}{': ' + row['error'] if row.get('error') else ''})")
                continue
            if key in seen:
                raise RuntimeError(f"two sweep jobs for {key} under {sweep_dir}")
            seen.add(key)
            out[key[:2]].append({k: float(v) for k, v in row.items() if isinstance(v, (int, float))})
    return out


# ---------------------------------------------------------------- the table
def _ms(values: Sequence[float]) -> str:
    if not values:
        return ""
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * float(np.std(values, ddof=1)):.2f}"


def _mean(results: Sequence[Result], key: str) -> float:
    vals = [r[key] for r in results if key in r]
    return float(np.mean(vals)) if vals else math.nan


def _simple_best(ds: str, methods: dict[str, list[Result]]) -> tuple[str, float]:
    """The best model outside the framework on ``ds`` (its name and mean test accuracy)."""
    outside = {m: _mean(rs, "test/acc") for m, rs in methods.items() if m not in LABELS}
    if not outside:
        return "", math.nan
    best = max(outside, key=outside.get)
    return best, outside[best]


def _graph_choice(methods: dict[str, list[Result]]) -> str | None:
    """The graph model (by convolution) with the best mean validation accuracy."""
    graph = {m: rs for m, rs in methods.items() if m.startswith("gnn-") and m not in ABLATIONS}
    return max(graph, key=lambda m: _mean(graph[m], "val/acc")) if graph else None


def tables(results: dict[str, dict[str, list[Result]]], seeds: Sequence[int]) -> list[str]:
    """Markdown: the main table, the graph model against its targets, the ablations, and
    missing modalities."""
    lines = ["| dataset | method | test acc (%) | val acc (%) | runs | s per run |", "|---|---|---|---|---|---|"]
    for ds, methods in results.items():
        for method, rs in methods.items():
            accs = [r["test/acc"] for r in rs]
            val = [r["val/acc"] for r in rs if "val/acc" in r]
            lines.append(f"| {ds} | {LABELS.get(method, method)} | {_ms(accs)} | {_ms(val)} | {len(rs)} | "
                         f"{_mean(rs, 'time_s'):.0f} |")
    lines += ["", "**The graph model against its targets.** Convolution chosen on mean validation accuracy; "
              "target: the issue's number (SST-1, WebKB: the best model outside the framework in this run).", "",
              "| dataset | best conv (val) | graph test acc (%) | best model outside the framework | its test acc (%) "
              "| target (%) | |", "|---|---|---|---|---|---|---|"]
    for ds, methods in results.items():
        best = _graph_choice(methods)
        if best is None:
            continue
        acc = _mean(methods[best], "test/acc")
        simple, simple_acc = _simple_best(ds, methods)
        target = TARGETS.get(ds, simple_acc)
        verdict = "" if math.isnan(target) else ("met" if acc >= target - 1e-9 else "missed")
        lines.append(f"| {ds} | {best.split('-', 1)[1]} | {_ms([r['test/acc'] for r in methods[best]])} | {simple} | "
                     f"{100 * simple_acc:.2f} | {100 * target:.2f} | {verdict} |")
    lines += _ablation_table(results)
    for ds in MULTIMODAL:
        lines += _missing_table(ds, results.get(ds, {}))
    return lines


def _ablation_table(results: dict[str, dict[str, list[Result]]]) -> list[str]:
    """The graph model (conv=gat, its preset) against the same model without each kept
    component, and the wide path alone (its own fit, recorded by the same runs)."""
    rows = []
    for ds, methods in results.items():
        full = methods.get("gnn-gat")
        if not full:
            continue
        variants = [(a.label, methods[name]) for name, a in ABLATIONS.items() if methods.get(name)]
        # runs resumed by code older than the wide path's checkpointed scores lack them
        alone = [{"val/acc": r["wide/val_acc"], "test/acc": r["wide/test_acc"]} for r in full if "wide/val_acc" in r]
        if alone:
            variants.append(("the wide path alone (its fit in the runs above)", alone))
        if not variants:
            continue
        rows.append(f"| {ds} | graph, conv=gat (preset) | {_ms([r['val/acc'] for r in full])} | "
                    f"{_ms([r['test/acc'] for r in full])} | |")
        base_val = _mean(full, "val/acc")
        for label, rs in variants:
            delta = 100 * (base_val - _mean(rs, "val/acc"))
            rows.append(f"| {ds} | {label} | {_ms([r['val/acc'] for r in rs])} | {_ms([r['test/acc'] for r in rs])} "
                        f"| {delta:+.2f} |")
    if not rows:
        return []
    return ["", "**Ablations.** The graph model as its preset trains it (conv=gat), against the same model "
            "without one component; the last column is what the component adds to mean validation accuracy "
            "(points).", "", "| dataset | model | val acc (%) | test acc (%) | component adds (val) |",
            "|---|---|---|---|---|", *rows]


def _missing_table(ds: str, methods: dict[str, list[Result]]) -> list[str]:
    """Each modality removed at test time: accuracy and loss per method; the target is to
    lose no more than the late fusion of the two CNNs."""
    rows = [(m, rs) for m, rs in methods.items() if any("test_without_image/acc" in r for r in rs)]
    if not rows:
        return []
    lines = ["", f"**Missing modality on {ds}.** Test accuracy (%) with both modalities, then with each one "
             "removed at test time (the graph and Transformer models get no nodes of that type, late fusion "
             "gets zeros for it, the CNN fusion a uniform distribution); in brackets the loss in points. "
             "Target: a graph model loses no more than the late fusion of the two CNNs, for each modality.", "",
             "| method | both | without image | without audio |", "|---|---|---|---|"]
    for m, rs in rows:
        cells = []
        for mod in ("image", "audio"):
            key = f"test_without_{mod}/acc"
            # the same samples with the modality (every test sample here: all have both)
            full = _mean(rs, f"test_with_{mod}/acc" if f"test_with_{mod}/acc" in rs[0] else "test/acc")
            cells.append(f"{_ms([r[key] for r in rs])} ({100 * (_mean(rs, key) - full):+.2f})")
        lines.append(f"| {LABELS.get(m, m)} | {_ms([r['test/acc'] for r in rs])} | {cells[0]} | {cells[1]} |")
    return lines


def run(datasets: Sequence[str], models: Sequence[str], seeds: Sequence[int], quick: bool, data: Path,
        workdir: Path, jobs: int, table_only: bool = False) -> str:
    """Fit the baselines and run the framework sweeps in ``workdir`` (resuming what an
    earlier run left there), then return the Markdown section. ``table_only``: fit and
    train nothing, write the table from what ``workdir`` holds (every asked-for baseline
    and job must have finished)."""
    os.environ["GRAPHMM_DATA"] = str(data)  # the data configs' roots, also for the sweep's processes
    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[Result]]] = {ds: {} for ds in datasets}
    unfinished: list[str] = []  # framework jobs that failed or stopped: listed, not fatal
    cached = workdir / "baselines.json"
    done = json.loads(cached.read_text()) if cached.exists() else {}
    for ds in datasets:
        # dataset -> method -> {seed: result}, "once" for a deterministic method: a rerun with
        # more seeds fits only the seeds it lacks
        entry = done.setdefault(f"{ds}{' quick' if quick else ''}", {})
        missing = [s for s in seeds if not entry or any(str(s) not in r and "once" not in r for r in entry.values())]
        if missing and table_only:
            raise SystemExit(f"--table-only: {workdir} has no baselines of {ds} for seeds {missing}; run without it")
        if missing:
            print(f"baselines: {ds} (seeds {', '.join(map(str, missing))})", flush=True)
            fitted = baselines(ds, data, missing, quick, deterministic=not any("once" in r for r in entry.values()))
            for method, by_seed in fitted.items():
                entry.setdefault(method, {}).update(by_seed)
            cached.write_text(json.dumps(done, indent=1))
        for method, by_seed in entry.items():
            results[ds][method] = [by_seed["once"]] if "once" in by_seed else [by_seed[str(s)] for s in seeds]
    if models:
        sweep_dir = (workdir / "sweeps" if table_only
                     else sweep("sweeps", datasets, models, seeds, quick, workdir, jobs))
        if table_only and not sweep_dir.is_dir():
            raise SystemExit(f"--table-only: {sweep_dir} does not exist; run without it")
        framework = read_sweep(sweep_dir, datasets, models, seeds, None if table_only else unfinished)
        if table_only:
            wanted = [(ds, m) for m in models
                      for ds in (ablation_datasets(m, datasets) if m in ABLATIONS else datasets)]
            short = [f"{ds}/{m}" for ds, m in wanted if len(framework.get((ds, m), [])) < len(seeds)]
            if short:
                raise SystemExit(f"--table-only: unfinished or missing jobs in {sweep_dir}: {', '.join(short)}")
        for (ds, model), rs in framework.items():
            results.setdefault(ds, {})[model] = rs
    minutes = (time.perf_counter() - t0) / 60
    # the choices that differ from a plain run, so the line reproduces this table
    cmd = "python -m benchmarks.realdata" + (" --quick" if quick else "")
    if list(datasets) != list(QUICK if quick else DATASETS):
        cmd += " --datasets " + " ".join(datasets)
    if list(models) != [*DEFAULT_MODELS, *ABLATIONS]:
        cmd += " --models" + "".join(" " + m for m in models)
    if list(seeds) != ([0] if quick else [0, 1, 2]):
        cmd += " --seeds " + " ".join(map(str, seeds))
    took = (f"from the finished runs by `{cmd} --table-only` (its training time is not this command's)"
            if table_only else f"by `{cmd}` in {minutes:.0f} min")
    head = [
        "<!-- realdata:start -->",
        f"## Real data{' (--quick: 2 short epochs, a smoke run whose numbers mean nothing)' if quick else ''}",
        "",
        f"Written {took} on {platform.machine()} with {os.cpu_count()} cores "
        f"(framework jobs {jobs} at a time, one thread each); seeds {', '.join(map(str, seeds))}; "
        f"torch {torch.__version__}. Test accuracy in %, mean ± std (sample std) over seeds; deterministic "
        "methods ran once. Splits: each dataset's own test split (MNIST: 10,000 of train.npz held out; "
        "fsdd_speakers: speaker george held out), validation carved from train with data seed 0, the same "
        "for every method. Framework runs: `experiment=<dataset>` with the model's overrides, early stopping "
        f"on validation accuracy; run directories and sweep summaries under `{workdir}`.",
        "",
    ]
    failed = ["", f"**Jobs that did not finish** ({len(unfinished)}; the table's `runs` column counts the "
              "finished ones, and a rerun with the same `--workdir` retries them):", "",
              *(f"- `{u}`" for u in unfinished)] if unfinished else []
    return "\n".join(head + tables(results, seeds) + failed + ["<!-- realdata:end -->"]) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: five datasets, one seed, short training")
    p.add_argument("--datasets", nargs="+", choices=ALL, default=None, help=f"default: {' '.join(DATASETS)}")
    p.add_argument("--models", nargs="*", choices=[*MODELS, *ABLATIONS], default=[*DEFAULT_MODELS, *ABLATIONS],
                   help="framework models and ablations (none: the baselines only)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (--quick: 0)")
    p.add_argument("--jobs", type=int, default=2, help="framework jobs at once (default: 2)")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("GRAPHMM_DATA", DEFAULT_DATA)),
                   help="folder with text/, fsdd/ and mnist/ (default: $GRAPHMM_DATA or ../shared/data)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="run directories; a rerun with the same one resumes (default: multirun/realdata[-quick])")
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: the table from the finished baselines and runs in --workdir")
    args = p.parse_args(argv)
    data = args.data.resolve()
    if not data.is_dir():
        raise SystemExit(f"data folder {data} does not exist; pass --data or set GRAPHMM_DATA")
    datasets = args.datasets or (QUICK if args.quick else DATASETS)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    workdir = (args.workdir or ROOT / "multirun" / ("realdata-quick" if args.quick else "realdata")).resolve()
    section = run(datasets, args.models, seeds, args.quick, data, workdir, args.jobs, args.table_only)
    print(section)
    if not args.no_write:
        write_section("realdata", section)


if __name__ == "__main__":
    main()
