"""Text generation: the graph model against a no-graph baseline, on embedded and real data.

For each sequence task it trains, in one run and on identical splits, the graph model
(``model=graph_seq2seq``: encoders, 3-layer heterogeneous GAT, Transformer decoder) and
the sequence baseline (``model=transformer_seq2seq``: the same node features, encoders
and decoder, with a Transformer encoder over the sample's nodes as one token sequence
instead of the graph), and writes the tables into ``benchmarks/RESULTS.md``:

- between the ``seq2seq`` markers, the embedded digit sequences (image + audio, audio
  only, image only; no files needed);
- between the ``speech`` markers, speech to text on real recordings by a speaker that
  training never heard (``experiment=avdigits_seq_speakers``; needs the Free Spoken
  Digit recordings under ``$GRAPHMM_DATA`` or ``../shared/data``).

    python -m benchmarks.seq2seq                      # seed 0, every task
    python -m benchmarks.seq2seq --seeds 0 1 --tasks digits_seq --quick
    python -m benchmarks.seq2seq --tasks avdigits_seq_speakers
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from hydra import compose, initialize_config_dir

from benchmarks.modalities import write_section
from graphmm.config import CONF_DIR
from graphmm.train import train

#: RESULTS.md section -> its tasks (experiment preset -> row label)
SECTIONS: dict[str, dict[str, str]] = {
    "seq2seq": {
        "digits_seq": "image + audio",
        "digits_seq_audio": "audio only (speech to text)",
        "digits_seq_image": "image only (reading)",
    },
    "speech": {
        "avdigits_seq_speakers": "audio only, speaker george never heard in training",
    },
}
TASKS: dict[str, str] = {task: label for tasks in SECTIONS.values() for task, label in tasks.items()}

_DESCRIPTIONS = {
    "seq2seq": (
        "Text generation on `digits_seq`",
        "Embedded digit sequences (1-4 scikit-learn digits as an image strip and their DTMF tones one after "
        "another; the target is the digit words), 3,000 train / 300 val / 500 test sequences whose single-digit "
        "images never occur in another split.",
    ),
    "speech": (
        "Speech to text on real recordings by an unseen speaker",
        "Sequences of 1-4 Free Spoken Digit recordings (8 kHz, 50-200 ms gaps; the target is the digit "
        "words), audio only: 6,000 train / 600 val / 1,000 test sequences; the test sequences are drawn from "
        "speaker george's recordings only, the validation sequences from jackson's, the training sequences "
        "from the other speakers' (`experiment=avdigits_seq_speakers`; per-clip log-mel normalisation). Target of issue 15: the graph model's WER <= 0.15 and below the "
        "baseline's.",
    ),
}
MODELS = {
    "graph (GAT)": [],
    "sequence baseline (Transformer)": ["model=transformer_seq2seq"],
}
KEYS = ("test/exact", "test/wer", "test/cer", "test/bleu")


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def run(tasks: list[str], seeds: list[int], quick: bool, write: bool = False) -> str:
    """Train every (task, model, seed) and return the RESULTS.md sections of the tasks;
    with ``write`` each section is also written after each of its tasks, listing the
    tasks done so far."""
    return "\n".join(
        _run_section(key, [t for t in tasks if t in section_tasks], seeds, quick, write)
        for key, section_tasks in SECTIONS.items() if any(t in section_tasks for t in tasks))


def _run_section(key: str, tasks: list[str], seeds: list[int], quick: bool, write: bool) -> str:
    extra = ["trainer.progress=false"] + (["trainer.max_epochs=4"] if quick else [])
    rows: list[str] = []
    done: list[str] = []
    section = ""
    for task in tasks:
        for model, overrides in MODELS.items():
            results: dict[str, list[float]] = {k: [] for k in (*KEYS, "time", "params")}
            for seed in seeds:
                with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
                    cfg = compose("config", overrides=[f"experiment={task}", *overrides, *extra, f"seed={seed}",
                                                       f"output_dir={tmp}"])
                    t0 = time.perf_counter()
                    metrics = train(cfg)
                results["time"].append(time.perf_counter() - t0)
                results["params"].append(metrics["num_params"])
                for k in KEYS:
                    results[k].append(metrics[k])
                print(f"{task:18s} {model:32s} seed={seed} " + " ".join(f"{k}={metrics[k]:.4f}" for k in KEYS)
                      + f" time={results['time'][-1]:.0f}s", flush=True)
            cmd = " ".join(["python -m graphmm.train", f"experiment={task}", *overrides, *extra[1:], "seed=S"])
            rows.append(
                f"| {TASKS[task]} | {model} | " + " | ".join(_fmt(results[k]) for k in KEYS)
                + f" | {int(results['params'][0]):,} | {statistics.mean(results['time']):.0f} | `{cmd}` |"
            )
        done.append(task)
        section = _section(key, rows, done, seeds, quick)
        if write:
            write_section(key, section)
    return section


def _section(key: str, rows: list[str], tasks: list[str], seeds: list[int], quick: bool) -> str:
    title, data = _DESCRIPTIONS[key]
    header = [
        f"<!-- {key}:start -->",
        f"## {title}",
        "",
        f"Written by `python -m benchmarks.seq2seq {'--quick ' if quick else ''}--seeds {' '.join(map(str, seeds))} "
        f"--tasks {' '.join(tasks)}` on {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}. "
        f"{data} Both models are trained in the same run on identical splits, "
        "with early stopping on validation WER; test decoding uses beam search (width 4). `exact` is exact "
        "sequence match, `wer`/`cer` word/character error rates, `bleu` corpus BLEU-4 (torchmetrics). "
        "With several seeds: mean ± sample std over model seeds (the data do not change). Time is the whole "
        "run (data, training, evaluation) in seconds.",
        "",
        "| task | model | exact | WER | CER | BLEU | parameters | time (s) | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows + [f"<!-- {key}:end -->"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="4 epochs per run")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    print(run(args.tasks, args.seeds, args.quick, write=not args.no_write))


if __name__ == "__main__":
    main()
