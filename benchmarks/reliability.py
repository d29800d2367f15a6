"""What a user meets when things go wrong: one row per failure case, with its outcome.

Every case runs the real command lines (``python -m graphmm.train``, ``graphmm.predict``)
in a fresh temporary folder, provokes one failure (a bad file, a bad config, a kill, a
changed config on resume, a failing sweep job, a huge input) and checks what the user
sees: the exit status, the one line that names the problem, and that no finished work is
lost. The table goes into ``benchmarks/RESULTS.md`` between the ``reliability`` markers;
a case whose outcome regresses makes the script exit with status 1.

    python -m benchmarks.reliability              # every case, about 5 minutes on 2 cores
    python -m benchmarks.reliability --only resume
    python -m benchmarks.reliability --list
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import platform
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.modalities import write_section

ROOT = Path(__file__).resolve().parent.parent
#: small and quick: every run below trains in seconds
QUICK = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1", "trainer.device=cpu"]


@dataclass
class Outcome:
    """What one case observed: ``ok`` is whether the behaviour is the expected one."""

    ok: bool
    seen: str


@dataclass
class Case:
    name: str
    area: str
    expected: str
    run: Callable[[Path], Outcome]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("GRAPHMM_DATA", None)
    return env


def _cli(module: str, args: Sequence[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _train(args: Sequence[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return _cli("graphmm.train", [*QUICK, *args], cwd, **kw)


_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\[[^\]]*\]\[[A-Z]+\] - ")


def _tail(res: subprocess.CompletedProcess, needle: str | None = None) -> str:
    """The line a user reads first: the last stderr line that names ``needle`` (else
    that says "error", else the last one), without the log prefix and temp folders."""

    def useful(ln: str) -> bool:
        return bool(ln.strip()) and not ln.startswith("Set the environment variable HYDRA_FULL_ERROR")

    lines = [ln for ln in (res.stderr + "\n" + res.stdout).splitlines() if useful(ln)]
    pick = [ln for ln in res.stderr.splitlines() if useful(ln)] or lines or [""]
    named = [ln for ln in pick if needle and needle in ln] or [ln for ln in pick if "rror" in ln]
    line = _LOG_PREFIX.sub("", (named or pick)[-1].strip())
    return re.sub(r"/tmp/graphmm-rel-[^/ ']+", "<tmp>", line)[:160]


def _expect_error(res: subprocess.CompletedProcess, *needles: str, forbid: Sequence[str] = ()) -> Outcome:
    text = res.stdout + res.stderr
    ok = res.returncode != 0 and all(n in text for n in needles) and not any(f in text for f in forbid)
    return Outcome(ok, f"exit {res.returncode}: {_tail(res, needles[0] if needles else None)}")


def _trained(tmp: Path, name: str = "run", extra: Sequence[str] = ()) -> Path:
    out = tmp / name
    res = _train([f"output_dir={out}", *extra], tmp)
    if res.returncode:
        raise RuntimeError(f"the reference run failed: {_tail(res)}")
    return out


def _ckpts(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*.pt"))


# ---------------------------------------------------------------- checkpoints
def malicious_checkpoint(tmp: Path) -> Outcome:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    evil = tmp / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": {}, "x": Payload()}))
    res = _cli("graphmm.predict", [f"ckpt_path={evil}", "input.text=seven"], tmp)
    out = _expect_error(res, "safely")
    return Outcome(out.ok and not (tmp / "pwned").exists(), out.seen + ("; payload ran!" if (tmp / "pwned").exists() else "; payload did not run"))


def _bad_checkpoint(tmp: Path, data: bytes, needle: str) -> Outcome:
    bad = tmp / "bad.pt"
    bad.write_bytes(data)
    res = _cli("graphmm.predict", [f"ckpt_path={bad}", "input.text=seven"], tmp)
    return _expect_error(res, needle, forbid=["weights_only=False"])


def empty_checkpoint(tmp: Path) -> Outcome:
    return _bad_checkpoint(tmp, b"", "empty")


def truncated_checkpoint(tmp: Path) -> Outcome:
    out = _trained(tmp)
    data = (out / "checkpoints" / "best.pt").read_bytes()
    return _bad_checkpoint(tmp, data[: len(data) // 3], "truncated")


def kill_during_run_then_resume(tmp: Path) -> Outcome:
    out = tmp / "killed"
    args = [*QUICK, "trainer.limit_train_batches=null", "trainer.batch_size=16", "trainer.max_epochs=2",
            "trainer.checkpoint_every_n_steps=5", f"output_dir={out}", "trainer.progress=false"]
    proc = subprocess.Popen([sys.executable, "-m", "graphmm.train", *args], cwd=tmp, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(_ckpts(out)) < 2:
        time.sleep(0.02)
    if proc.poll() is not None:
        return Outcome(False, "the run ended before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # what a kill during the write leaves: a torn newest file and an orphaned temporary
    newest = _ckpts(out)[-1]
    newest.write_bytes(newest.read_bytes()[:500])
    orphan = newest.parent / f".{newest.name}.abc123.tmp"
    orphan.write_bytes(b"half")
    res = _cli("graphmm.train", [*args, "trainer.resume=auto"], tmp)
    text = res.stdout + res.stderr
    ok = (res.returncode == 0 and (out / "metrics.json").exists() and "resumed from" in text
          and "unusable" in text and not orphan.exists())
    return Outcome(ok, f"exit {res.returncode}; resumed past the torn file: {'unusable' in text}; "
                       f"orphan removed: {not orphan.exists()}")


# ---------------------------------------------------------------- resume
def _resume_with(tmp: Path, change: Sequence[str]) -> tuple[Path, subprocess.CompletedProcess]:
    out = _trained(tmp, extra=["seed=3"])
    (out / "metrics.json").unlink()
    return out, _train([f"output_dir={out}", "seed=3", "trainer.resume=auto", *change], tmp)


def resume_changed_seed(tmp: Path) -> Outcome:
    _, res = _resume_with(tmp, ["seed=7"])
    return _expect_error(res, "seed", "resume_force")


def resume_changed_width(tmp: Path) -> Outcome:
    _, res = _resume_with(tmp, ["model.hidden=32"])
    out = _expect_error(res, "model.hidden", forbid=["size mismatch"])
    return out


def resume_forced(tmp: Path) -> Outcome:
    out, res = _resume_with(tmp, ["seed=7", "trainer.resume_force=true"])
    return Outcome(res.returncode == 0 and (out / "metrics.json").exists() and "seed" in res.stdout + res.stderr,
                   f"exit {res.returncode}: {_tail(res)}")


def resume_more_epochs(tmp: Path) -> Outcome:
    out, res = _resume_with(tmp, ["trainer.max_epochs=3"])
    if res.returncode:
        return Outcome(False, f"exit {res.returncode}: {_tail(res)}")
    hist = list(csv.DictReader(open(out / "history.csv")))
    lrs = [float(r["lr"]) for r in hist if r.get("lr")]
    monotone = all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:]))
    applied = "max_epochs" in res.stdout + res.stderr
    return Outcome(len(hist) == 3 and applied and (monotone or not lrs),
                   f"exit 0, {len(hist)} epochs, change logged: {applied}, lr never rises: {monotone}")


def resume_auto_in_new_dir(tmp: Path) -> Outcome:
    first = _train(["name=rel", "trainer.progress=false"], tmp)
    if first.returncode:
        return Outcome(False, f"first run failed: {_tail(first)}")
    res = _train(["name=rel", "trainer.resume=auto"], tmp)
    text = res.stdout + res.stderr
    ok = res.returncode == 0 and "WARNING" in text and "trainer.resume=last" in text
    return Outcome(ok, f"exit {res.returncode}; warns with the resume command: {ok}")


# ---------------------------------------------------------------- configs
def config_typo(tmp: Path) -> Outcome:
    return _expect_error(_train(["model.hiden=32"], tmp), "hiden")


def config_bad_combination(tmp: Path) -> Outcome:
    return _expect_error(_train(["model.hidden=30", "model.heads=4"], tmp), "model.heads")


def textcls_without_name(tmp: Path) -> Outcome:
    (tmp / "corpora" / "corpus").mkdir(parents=True)
    (tmp / "corpora" / "demo.txt").write_text("0\ttrain\tpos\n")
    (tmp / "corpora" / "corpus" / "demo.txt").write_text("good film\n")
    res = _train(["data=textcls", f"data.root={tmp / 'corpora'}"], tmp)
    out = _expect_error(res, "data.name", "demo", forbid=["Traceback"])
    return Outcome(out.ok and len(res.stderr.splitlines()) < 15, out.seen)


def manifest_without_path(tmp: Path) -> Outcome:
    res = _train(["data=manifest"], tmp)
    out = _expect_error(res, "data.path", forbid=["Traceback"])
    return Outcome(out.ok and len(res.stderr.splitlines()) < 15, out.seen)


def help_hides_schemas(tmp: Path) -> Outcome:
    res = _cli("graphmm.train", ["--help"], tmp)
    return Outcome(res.returncode == 0 and "_schema" not in res.stdout and "model:" in res.stdout,
                   f"exit {res.returncode}; '_schema' listed: {'_schema' in res.stdout}")


# ---------------------------------------------------------------- sweeps
def sweep_with_failing_job(tmp: Path) -> Outcome:
    # hydra.mode=MULTIRUN, not -m: _train puts QUICK's overrides first, and argparse takes no
    # flag after the overrides have begun
    res = _train(["hydra.mode=MULTIRUN", "model.heads=5,2", "hydra.sweep.dir=sweep", "trainer.progress=false"], tmp,
                 timeout=600)
    summary = tmp / "sweep" / "summary.csv"
    rows = list(csv.DictReader(open(summary))) if summary.exists() else []
    status = sorted(r.get("status", "") for r in rows)
    ok = res.returncode != 0 and status == ["failed", "ok"]
    return Outcome(ok, f"exit {res.returncode}; summary rows: {status or 'none'}")


# ---------------------------------------------------------------- inputs
def _manifest(tmp: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp / "data" / "manifest.csv"
    path.parent.mkdir(exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _pngs(tmp: Path, n: int, size: int = 16, mode: str = "L") -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(tmp / "data" / f"im{i}.png")
        names.append(f"im{i}.png")
    return names


def corrupt_file_in_manifest(tmp: Path) -> Outcome:
    (tmp / "data").mkdir()
    names = _pngs(tmp, 12)
    (tmp / "data" / "im3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    path = _manifest(tmp, [{"image": n, "label": str(i % 2)} for i, n in enumerate(names)])
    raised = _train(["data=manifest", f"data.path={path}"], tmp)
    skipped = _train(["data=manifest", f"data.path={path}", "data.on_error=skip", "output_dir=out"], tmp)
    metrics = json.loads((tmp / "out" / "metrics.json").read_text()) if (tmp / "out" / "metrics.json").exists() else {}
    ok = (raised.returncode != 0 and "im3.png" in raised.stderr and "line" in raised.stderr
          and skipped.returncode == 0 and metrics.get("data/skipped") == 1 and (tmp / "out" / "skipped.csv").exists())
    return Outcome(ok, f"raise: exit {raised.returncode}, names the file: {'im3.png' in raised.stderr}; "
                       f"skip: exit {skipped.returncode}, data/skipped={metrics.get('data/skipped')}")


def huge_image_in_manifest(tmp: Path) -> Outcome:
    from PIL import Image

    (tmp / "data").mkdir()
    names = _pngs(tmp, 12)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (3000, 3000), dtype=np.uint8), "L").save(
        tmp / "data" / "huge.png")
    rows = [{"image": n, "label": str(i % 2)} for i, n in enumerate(names)] + [{"image": "huge.png", "label": "0"}]
    path = _manifest(tmp, rows)
    res = _train(["data=manifest", f"data.path={path}", "output_dir=out"], tmp)
    text = res.stdout + res.stderr
    ok = res.returncode == 0 or ("huge.png" in text and "MemoryError" not in text)
    return Outcome(ok, f"exit {res.returncode}: {_tail(res)}")


def mixed_channels_in_manifest(tmp: Path) -> Outcome:
    (tmp / "data").mkdir()
    gray = _pngs(tmp, 10)
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8), "RGB").save(tmp / "data" / "rgb.png")
    rows = [{"image": n, "label": str(i % 2)} for i, n in enumerate(gray)] + [{"image": "rgb.png", "label": "1"}]
    path = _manifest(tmp, rows)
    return _expect_error(_train(["data=manifest", f"data.path={path}"], tmp), "data.image_channels", "rgb.png")


def long_text_in_manifest(tmp: Path) -> Outcome:
    (tmp / "data").mkdir()
    rows = [{"text": f"word{i % 2} " * 20, "label": str(i % 2)} for i in range(12)]
    rows[0]["text"] = "long " * 40_000  # 200,000 characters, over csv's default field limit
    path = _manifest(tmp, rows)
    res = _train(["data=manifest", f"data.path={path}", "data.on_error=skip", "output_dir=out"], tmp)
    metrics = json.loads((tmp / "out" / "metrics.json").read_text()) if (tmp / "out" / "metrics.json").exists() else {}
    ok = res.returncode == 0 and metrics.get("data/truncated", 0) >= 1
    return Outcome(ok, f"exit {res.returncode}; data/truncated={metrics.get('data/truncated')}")


def predict_text_file_and_silence(tmp: Path) -> Outcome:
    import soundfile as sf

    out = _trained(tmp)
    (tmp / "big.txt").write_text("a handwritten seven " * 20_000)
    sf.write(tmp / "silence.wav", np.zeros(4000, np.float32), 8000)
    ckpt = out / "checkpoints" / "best.pt"
    res = _cli("graphmm.predict", [f"ckpt_path={ckpt}", f"input.text_file={tmp / 'big.txt'}",
                                   f"input.audio={tmp / 'silence.wav'}", "output=json"], tmp)
    try:
        answer = json.loads(res.stdout[res.stdout.index("{"):])
    except ValueError:
        return Outcome(False, f"exit {res.returncode}: {_tail(res)}")
    warnings = json.dumps(answer.get("warnings", answer.get("predictions", [{}])[0].get("warnings", [])))
    ok = res.returncode == 0 and "audio" in warnings
    return Outcome(ok, f"exit {res.returncode}; warnings: {warnings[:100]}")


# ---------------------------------------------------------------- output
def outputs_follow_umask(tmp: Path) -> Outcome:
    old = os.umask(0o022)
    try:
        out = _trained(tmp)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out / "metrics.json", out / "timing.json",
                                                              out / "checkpoints" / "best.pt"]}
    return Outcome(all(m == 0o644 for m in modes.values()), ", ".join(f"{k} {v:o}" for k, v in modes.items()))


def redirected_log_is_clean(tmp: Path) -> Outcome:
    res = _train(["trainer.progress=true", "output_dir=out"], tmp)  # stderr is a pipe, not a terminal
    text = res.stdout + res.stderr
    dirty = "\x1b[A" in text or "\r" in text
    short = "max_epochs:" not in text  # the composed config is not dumped at INFO
    return Outcome(res.returncode == 0 and not dirty and short and "epoch 1" in text,
                   f"exit {res.returncode}; escape codes: {dirty}; config dumped: {not short}")


CASES = [
    Case("malicious checkpoint", "checkpoints", "refused, payload not run", malicious_checkpoint),
    Case("zero-byte checkpoint", "checkpoints", "one line: empty; no weights_only=False", empty_checkpoint),
    Case("truncated checkpoint", "checkpoints", "one line: truncated; no weights_only=False", truncated_checkpoint),
    Case("SIGKILL, torn newest checkpoint, orphan .tmp", "checkpoints",
         "resume falls back, finishes, orphan removed", kill_during_run_then_resume),
    Case("resume with a changed seed", "resume", "refused naming seed and resume_force", resume_changed_seed),
    Case("resume with a changed width", "resume", "refused naming model.hidden, no size-mismatch spam",
         resume_changed_width),
    Case("resume_force=true", "resume", "continues, logs the difference", resume_forced),
    Case("resume with more epochs", "resume", "allowed and logged; lr never climbs back", resume_more_epochs),
    Case("resume=auto in a new run folder", "resume", "warns with the command to resume the last run",
         resume_auto_in_new_dir),
    Case("config typo", "config", "error names the key", config_typo),
    Case("impossible combination", "config", "error names model.heads", config_bad_combination),
    Case("data=textcls without data.name", "config", "names data.name, lists corpora, no traceback",
         textcls_without_name),
    Case("data=manifest without data.path", "config", "names data.path, no traceback", manifest_without_path),
    Case("--help", "config", "no *_schema entries", help_hides_schemas),
    Case("sweep with one failing job", "sweeps", "summary with a failed row, exit non-zero", sweep_with_failing_job),
    Case("corrupt PNG in a manifest", "inputs", "raise names file and line; skip counts it, skipped.csv",
         corrupt_file_in_manifest),
    Case("3000x3000 image in a manifest", "inputs", "trains (resized) or names the file", huge_image_in_manifest),
    Case("RGB and grayscale mixed", "inputs", "names data.image_channels and the file", mixed_channels_in_manifest),
    Case("200,000-character text cell", "inputs", "trains, truncation counted", long_text_in_manifest),
    Case("predict: text file, silent audio", "inputs", "answers with a warning on the silent audio",
         predict_text_file_and_silence),
    Case("output file modes", "output", "0644 under umask 022", outputs_follow_umask),
    Case("log redirected to a file", "output", "no escape codes, no config dump", redirected_log_is_clean),
]


def run(cases: Sequence[Case]) -> tuple[str, int]:
    rows, failed = [], 0
    for case in cases:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="graphmm-rel-") as tmp:
            try:
                outcome = case.run(Path(tmp))
            except Exception as err:  # a case that crashes has regressed too
                outcome = Outcome(False, f"{type(err).__name__}: {str(err).splitlines()[0][:150]}")
        secs = time.perf_counter() - start
        failed += not outcome.ok
        verdict = "pass" if outcome.ok else "**FAIL**"
        print(f"{verdict:8s} {case.area:11s} {case.name} ({secs:.0f} s): {outcome.seen}", flush=True)
        seen = outcome.seen.replace("|", "\\|")
        rows.append(f"| {case.area} | {case.name} | {case.expected} | {seen} | {verdict} |")
    header = [
        "<!-- reliability:start -->",
        "## Reliability",
        "",
        f"Written by `python -m benchmarks.reliability` on {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"torch {torch.__version__}. Each case runs the real command lines in a fresh folder; "
        f"{len(cases) - failed} of {len(cases)} behave as expected.",
        "",
        "| area | case | expected | seen | verdict |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(header + rows + ["<!-- reliability:end -->"]) + "\n", failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="cases whose name or area contains one of these")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.list:
        for c in CASES:
            print(f"{c.area:11s} {c.name}: {c.expected}")
        return
    cases = [c for c in CASES if not args.only or any(o in c.name or o == c.area for o in args.only)]
    section, failed = run(cases)
    print(section)
    if not args.no_write and args.only is None:
        write_section("reliability", section)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
