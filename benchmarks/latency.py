"""Latency of one prediction from the command line, and where its time goes.

``python -m benchmarks.latency [--ckpt RUN] [--repeats 3]`` times the real command,
``python -m graphmm predict ckpt_path=... input.image=... input.audio=... input.text=...``,
from process start to answer (best of ``--repeats`` runs, each a fresh process), and
splits one such run into its phases, timed inside a fresh process that runs the command
as ``python -m graphmm predict`` does (:func:`graphmm.cli.main`):

* ``interpreter``: Python's own start, up to the first line of the timing script;
* ``imports``: ``import graphmm`` and the command's module (torch, DGL, Hydra, the
  modalities), as ``graphmm.cli`` imports it;
* ``hydra``: composing the command's config, checking it, printing the answer: the
  command's time less the three phases below;
* ``load``: :func:`graphmm.predict.load_predictor` (checkpoint, builder, model);
* ``build``: reading the files and building the sample's graph;
* ``forward``: the model on that graph;
* ``exit``: from the answer to the end of the process (interpreter shutdown), seen from
  outside.

Without ``--ckpt`` it first trains a small ``digits`` model (``debug=fast``) into a
temporary folder. :func:`measure` is what ``benchmarks.perf`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Runs in a fresh interpreter: the predict command with the arguments after the first
#: (``main(argv)`` of :mod:`graphmm.cli.predict`, imported as :func:`graphmm.cli.main`
#: imports it), its steps timed by wrappers; prints one JSON line of seconds per phase
#: and the wall-clock time of the answer (``end``).
_PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
start = float(sys.argv[1])
sys.orig_argv = [sys.executable, "-m", "graphmm", "predict"]  # the command's process, as graphmm sees it
import graphmm.cli
cmd = graphmm.cli._import_command("graphmm.cli.predict")
t1 = time.perf_counter()
from graphmm.predict import Predictor

spent = {"load": 0.0, "files": 0.0, "graph": 0.0, "logits": 0.0}

def timed(step, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[step] += time.perf_counter() - t
    return wrapper

cmd.load_predictor = timed("load", cmd.load_predictor)
Predictor.sample_from_files = timed("files", Predictor.sample_from_files)
Predictor.graph = timed("graph", Predictor.graph)
Predictor.logits = timed("logits", Predictor.logits)  # builds the graph, then runs the model
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    code = cmd.main(sys.argv[2:])
t2 = time.perf_counter()
end = time.time()
assert code == 0, code
print(json.dumps({
    "interpreter": end - start - (t2 - t0), "imports": t1 - t0,
    "hydra": (t2 - t1) - spent["load"] - spent["files"] - spent["logits"],
    "load": spent["load"], "build": spent["files"] + spent["graph"], "forward": spent["logits"] - spent["graph"],
    "end": end,
}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _inputs(folder: Path) -> tuple[Path, Path, str]:
    """A digit-sized PNG, a short WAV and a text in ``folder``."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    image, audio = folder / "x.png", folder / "x.wav"
    Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(image)
    sf.write(audio, (0.2 * np.sin(np.linspace(0, 400, 4000))).astype(np.float32), 8000)
    return image, audio, "a handwritten seven"


def train_small(folder: Path) -> Path:
    """Train the ``debug=fast`` digits model into ``folder``; its ``best.pt``."""
    cmd = [sys.executable, "-m", "graphmm", "train", "debug=fast", "trainer.device=cpu", f"output_dir={folder}"]
    subprocess.run(cmd, check=True, capture_output=True, env=_env(), timeout=600)
    return folder / "checkpoints" / "best.pt"


def measure(ckpt: Path | None = None, repeats: int = 3) -> dict[str, Any]:
    """End-to-end seconds of ``python -m graphmm predict`` (best of ``repeats``) and one
    run's phases; trains a small model first when ``ckpt`` is ``None``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = ckpt or train_small(folder / "run")
        image, audio, text = _inputs(folder)
        cmd = [sys.executable, "-m", "graphmm", "predict", f"ckpt_path={ckpt}", f"input.image={image}",
               f"input.audio={audio}", f"input.text={text}", "output=json"]
        walls = []
        for _ in range(repeats):
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=folder)
            walls.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise RuntimeError(f"predict failed: {proc.stderr[-2000:]}")
        phases = []
        args = [f"ckpt_path={ckpt}", f"input.image={image}", f"input.audio={audio}", f"input.text={text}",
                "output=json"]
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", _PHASES, repr(time.time()), *args], capture_output=True,
                                 text=True, env=_env(), timeout=300, check=True, cwd=folder)
            done = time.time()
            got = json.loads(out.stdout.strip().splitlines()[-1])
            got["exit"] = done - got.pop("end")  # interpreter shutdown (and the pipe's close)
            phases.append(got)
        best = min(phases, key=lambda p: sum(p.values()))
    return {"wall_s": min(walls), "walls_s": walls, "phases_s": best}


def report(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`measure`'s result."""
    ph = result["phases_s"]
    total = sum(ph.values())
    rows = [f"| {k} | {v:.2f} | {100 * v / total:.0f}% |" for k, v in ph.items()]
    return "\n".join([
        f"`python -m graphmm predict` on one image + audio + text sample, process start to answer: "
        f"**{result['wall_s']:.2f} s** (best of {len(result['walls_s'])}: "
        f"{', '.join(f'{w:.2f}' for w in result['walls_s'])} s; target <= 2 s).",
        "",
        "| phase | seconds | share |",
        "|---|---|---|",
        *rows,
        f"| total of the phases | {total:.2f} | |",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=None, help="a run's best.pt (default: train a small one)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(report(measure(args.ckpt, args.repeats)))


if __name__ == "__main__":
    main()
