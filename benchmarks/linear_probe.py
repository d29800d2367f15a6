"""Linear probes on the raw features of ``digits``: what a simple late-fusion model
scores, per modality and with all three concatenated.

Features: the 64 pixels; the log power spectrum (n_fft=256, hop=128, Hann window)
averaged over frames; a binary bag of words. Each block is standardised and a
``LogisticRegression`` is trained on the train split and scored on the test split,
the same split as ``make train``. Writes its table into ``benchmarks/RESULTS.md``.

    python -m benchmarks.linear_probe
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.modalities import write_section
from graphmm.data import Sample, load_digits


def _spectrum(samples: list[Sample]) -> np.ndarray:
    win = torch.hann_window(256)
    rows = []
    for s in samples:  # one clip at a time: clips differ in length
        spec = torch.stft(s.audio, 256, 128, window=win, return_complex=True).abs() ** 2
        rows.append(torch.log(spec + 1e-6).mean(dim=1).numpy())
    return np.stack(rows)


def _score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return float(clf.fit(xtr, ytr).score(xte, yte))


def run() -> str:
    d = load_digits()
    tr, te = d["train"], d["test"]
    ytr, yte = np.array([s.label for s in tr]), np.array([s.label for s in te])
    img = [np.stack([s.image.numpy().ravel() for s in ss]) for ss in (tr, te)]
    aud = [_spectrum(ss) for ss in (tr, te)]
    cv = CountVectorizer(binary=True).fit([s.text for s in tr])
    txt = [cv.transform([s.text for s in ss]).toarray() for ss in (tr, te)]
    blocks = {"image": img, "audio": aud, "text": txt}
    cases = {"image only": ["image"], "audio only": ["audio"], "text only": ["text"],
             "image + audio": ["image", "audio"], "text + image + audio": ["image", "audio", "text"]}
    rows = []
    for name, parts in cases.items():
        xtr = np.hstack([blocks[p][0] for p in parts])
        xte = np.hstack([blocks[p][1] for p in parts])
        rows.append(f"| {name} | {_score(xtr, ytr, xte, yte):.4f} |")
        print(rows[-1], flush=True)
    head = [
        "<!-- linear_probe:start -->",
        "## Linear probes on `digits`",
        "",
        "Written by `python -m benchmarks.linear_probe`: standardised raw features (64 pixels; "
        "log power spectrum averaged over frames; binary bag of words) and a logistic regression, "
        "trained on the train split and scored on the same 270-sample test split as `make train`.",
        "",
        "| features | test accuracy |",
        "|---|---|",
    ]
    return "\n".join(head + rows + ["<!-- linear_probe:end -->"]) + "\n"


if __name__ == "__main__":
    write_section("linear_probe", run())
