"""What each modality is worth on the embedded ``digits`` task.

Trains the default model (``make train``'s config) on all three modalities and on
each one alone, and once more without modality dropout and without the wide path, for several seeds, in one run, and writes the table into
``benchmarks/RESULTS.md`` between the ``modalities`` markers.

    python -m benchmarks.modalities                 # seeds 0 1 2
    python -m benchmarks.modalities --seeds 0 --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from graphmm.config import CONF_DIR
from graphmm.train import train

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CASES = {
    "text + image + audio": [],
    "image only": ["experiment=digits_image_only"],
    "audio only": ["experiment=digits_audio_only"],
    "text only": ["experiment=digits_text_only"],
    "text + image + audio, no modality dropout": ["trainer.modality_dropout=0"],
    "text + image + audio, without the wide path": ["model.wide=null"],
}


def run(seeds: list[int], quick: bool) -> str:
    extra = ["trainer.progress=false"] + (["trainer.max_epochs=8"] if quick else [])
    rows = []
    for name, overrides in CASES.items():
        accs, vals = [], []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose("config", overrides=[*overrides, *extra, f"seed={seed}", f"output_dir={tmp}"])
                metrics = train(cfg)
            accs.append(metrics["test/acc"])
            vals.append(metrics["val/acc"])
            print(f"{name:42s} seed={seed} test/acc={metrics['test/acc']:.4f} val/acc={metrics['val/acc']:.4f}",
                  flush=True)
        cmd = "python -m graphmm.train " + " ".join([*overrides, "seed=S"])
        spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else " (one seed)"
        per_seed = ", ".join(f"{a:.4f}" for a in accs)
        val = f"{statistics.mean(vals):.4f}" + (f" ± {statistics.stdev(vals):.4f}" if len(vals) > 1 else "")
        rows.append(f"| {name} | {statistics.mean(accs):.4f}{spread} | {per_seed} | {val} | `{cmd}` |")
    header = [
        "<!-- modalities:start -->",
        "## Modalities on `digits`",
        "",
        f"Written by `python -m benchmarks.modalities {'--quick ' if quick else ''}--seeds {' '.join(map(str, seeds))}` "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}. "
        "The default model and graph of `make train`; test accuracy on the fixed 270-sample "
        "test split, mean ± sample std over seeds (model initialisation, batch order and "
        "modality dropout; the data and its split do not change); validation accuracy "
        "(270 samples, at the epoch kept by early stopping on it) is what choices are made on.",
        "",
        "| modalities | test accuracy | per seed | validation accuracy | command |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(header + rows + ["<!-- modalities:end -->"]) + "\n"


def write_section(key: str, section: str) -> None:
    """Put ``section`` between the ``<!-- key:start/end -->`` markers of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"<!-- {key}:start -->.*?<!-- {key}:end -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="8 epochs per run")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    section = run(args.seeds, args.quick)
    print(section)
    if not args.no_write:
        write_section("modalities", section)


if __name__ == "__main__":
    main()
