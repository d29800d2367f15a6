"""``python -m graphmm predict`` (also ``python -m graphmm.predict``): one input
through a trained model, as a table or as JSON.

Hydra composes ``graphmm/conf/predict.yaml`` over :class:`PredictConfig`::

    python -m graphmm predict ckpt_path=outputs/run/checkpoints/best.pt \\
        input.image=digit.png input.audio=tone.wav input.text="a handwritten seven" \\
        top_k=3 output=json explain=true explain_dir=explain/

``input`` has one key per registered modality (``input.video=clip.npy`` for a
plug-in's files too) and ``input.text_file`` for a text in a UTF-8 file. The work
is done by :mod:`graphmm.predict` (:func:`~graphmm.predict.load_predictor`,
:meth:`~graphmm.predict.Predictor.sample_from_files`, :func:`~graphmm.predict.explain`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.core.config_store import ConfigStore

from graphmm.cli import hydra_command
from graphmm.data.io import read_text
from graphmm.modalities import list_modalities
from graphmm.predict import UsageError, explain, load_predictor, top_k, write_explanation

__all__ = ["InputConfig", "PredictConfig", "format_text", "input_files", "main", "run"]


def _input_config() -> type:
    """``input``'s schema: one optional key per registered modality, then ``text_file``.

    Built from the registry when this module is imported (plug-ins are loaded by
    then), so a plug-in modality's ``input.<name>=FILE`` is a known key like
    ``input.image``.
    """
    names = [*list_modalities(), "text_file"]
    cls = dataclasses.make_dataclass("InputConfig", [(name, Optional[str], None) for name in names])  # noqa: UP007
    cls.__module__ = __name__
    cls.__doc__ = (
        "Inputs of one sample: a file per modality (``input.image=digit.png``), the text "
        "itself (``input.text=...``) or a UTF-8 file of it (``input.text_file=...``)."
    )
    return cls


InputConfig = _input_config()


@dataclass
class PredictConfig:
    """Keys of ``python -m graphmm predict``.

    Attributes:
        ckpt_path: ``best.pt`` of a training run (or the run folder). Required.
        input: The inputs (:data:`InputConfig`); at least one is required.
        top_k: How many classes to list. Default: ``5``.
        beam_width: Beam of a generation model. Default: ``None`` (the run's).
        output: ``"text"`` (a table) or ``"json"``. Default: ``"text"``.
        explain: Write attention plots (GAT models only). Default: ``False``.
        explain_dir: Where to write them. Default: ``explain/`` beside the checkpoint.
    """

    ckpt_path: Optional[str] = None  # noqa: UP007 - OmegaConf reads the annotation at run time
    input: InputConfig = field(default_factory=InputConfig)  # type: ignore[valid-type]
    top_k: int = 5
    beam_width: Optional[int] = None  # noqa: UP007
    output: str = "text"
    explain: bool = False
    explain_dir: Optional[str] = None  # noqa: UP007


ConfigStore.instance().store(name="predict_schema", node=PredictConfig)


def input_files(inp: Any) -> dict[str, str]:
    """The modality files of ``input`` (an :data:`InputConfig`, or its DictConfig):
    every set key but ``text`` and ``text_file``."""
    values = dataclasses.asdict(inp) if dataclasses.is_dataclass(inp) else dict(inp)
    return {k: str(v) for k, v in values.items() if v is not None and k not in ("text", "text_file")}


def _check_args(args: Any) -> None:
    if args.ckpt_path is None:
        raise UsageError("ckpt_path is required, e.g. ckpt_path=outputs/<run>/checkpoints/best.pt")
    if args.output not in ("text", "json"):
        raise UsageError(f"output={args.output!r}: use output=text or output=json")
    if args.top_k < 1:
        raise UsageError(f"top_k={args.top_k}: must be >= 1")
    if args.beam_width is not None and args.beam_width < 1:
        raise UsageError(f"beam_width={args.beam_width}: must be >= 1")
    inp = args.input
    if inp.text is not None and inp.text_file is not None:
        raise UsageError("give input.text or input.text_file, not both")
    if inp.text is None and inp.text_file is None and not input_files(inp):
        raise UsageError(
            "give at least one input: input.image=<png|jpg>, input.audio=<wav>, input.text=\"...\" "
            "or input.text_file=<txt>"
        )


def _check_explainable(predictor: Any) -> None:
    if predictor.task != "classification":
        raise UsageError("explain=true explains classifiers; this checkpoint holds a generation model")
    gnn = getattr(predictor.model, "gnn", None)
    if gnn is None:
        raise UsageError(
            f"explain=true needs a graph attention model, but this checkpoint holds a "
            f"{type(predictor.model).__name__}, which has no graph; train model=hetero_gnn model.conv=gat"
        )
    if not gnn.supports_attention:
        raise UsageError(
            f"explain=true needs a graph attention model, but this checkpoint uses conv={gnn.conv!r}; "
            f"train with model.conv=gat or drop explain=true"
        )


def _describe_inputs(inp: Any, text: str | None, sample: Any) -> dict[str, Any]:
    files = input_files(inp)
    described: dict[str, Any] = {
        "image": files.get("image"),
        "image_shape": list(sample.image.shape) if sample.image is not None else None,
        "audio": files.get("audio"),
        "audio_seconds": (sample.audio.numel() / sample.sample_rate) if sample.audio is not None else None,
        "sample_rate": sample.sample_rate,
        "text": inp.text,
        "text_file": inp.text_file,
        "text_chars": len(text) if text is not None else None,
    }
    for name, path in files.items():
        if name not in ("image", "audio"):
            described[name] = path
            value = sample.inputs.get(name)
            if isinstance(value, torch.Tensor):
                described[f"{name}_shape"] = list(value.shape)
    return described


def run(args: Any) -> dict[str, Any]:
    """Do what the command line asks (``args``: a :class:`PredictConfig`); the JSON-ready result.

    Raises:
        UsageError, FileNotFoundError, ValueError, RuntimeError: with one-line messages.
    """
    _check_args(args)
    inp = args.input
    text = read_text(inp.text_file) if inp.text_file is not None else inp.text
    predictor = load_predictor(args.ckpt_path)
    if args.explain:
        _check_explainable(predictor)
    sample = predictor.sample_from_files(text=text, **input_files(inp))
    result: dict[str, Any] = {
        "checkpoint": str(predictor.ckpt_path),
        "epoch": predictor.epoch,
        "inputs": _describe_inputs(inp, text, sample),
        "warnings": predictor.input_warnings(sample),
    }
    if predictor.task == "generation":
        result["generated"] = predictor.generate([sample], beam_width=args.beam_width)[0]
        result["beam_width"] = args.beam_width or predictor.beam_width
        return result
    probs = predictor.predict([sample])[0]
    result.update(
        top_k=top_k(probs[None], args.top_k, predictor.class_names)[0],
        probs=[float(p) for p in probs],
        class_names=predictor.class_names,
    )
    if args.explain:
        out_dir = Path(args.explain_dir) if args.explain_dir else predictor.ckpt_path.parent / "explain"
        expl = explain(predictor, sample)
        files = write_explanation(expl, sample, predictor, out_dir)
        result["explain"] = {
            "dir": str(out_dir),
            "files": {k: str(v) for k, v in files.items()},
            "patch_route": expl.patch_route,
            "frame_route": expl.frame_route,
            "relations": expl.relations,
        }
    return result


def format_text(result: dict[str, Any]) -> str:
    """The human-readable table printed by ``output=text``."""
    inp = result["inputs"]
    parts = []
    if inp["image"] is not None:
        parts.append(f"image {inp['image']} ({'x'.join(map(str, inp['image_shape']))})")
    if inp["audio"] is not None:
        parts.append(f"audio {inp['audio']} ({inp['audio_seconds']:.2f} s at {inp['sample_rate']} Hz)")
    if inp["text"] is not None:
        parts.append(f"text {inp['text']!r}")
    if inp.get("text_file") is not None:
        parts.append(f"text file {inp['text_file']} ({inp['text_chars']} characters)")
    for key in [k for k in inp if k.endswith("_shape") and k != "image_shape"]:
        name = key[: -len("_shape")]
        parts.append(f"{name} {inp.get(name)} ({'x'.join(map(str, inp[key]))})")
    lines = [f"checkpoint: {result['checkpoint']} (epoch {result['epoch']})", "inputs: " + "; ".join(parts)]
    lines += [f"warning: {w}" for w in result.get("warnings", [])] + [""]
    if "generated" in result:
        return "\n".join([*lines, f"generated (beam {result['beam_width']}): {result['generated']}"])
    width = max(len("class"), *(len(r["name"]) for r in result["top_k"]))
    lines.append(f"{'rank':>4}  {'class':<{width}}  {'prob':>7}")
    for r in result["top_k"]:
        lines.append(f"{r['rank']:>4}  {r['name']:<{width}}  {r['prob']:>7.4f}")
    if "explain" in result:
        e = result["explain"]
        lines += ["", f"attention plots in {e['dir']} (patch route: {e['patch_route']}, frame route: {e['frame_route']})"]
        lines += [f"  {name}" for name in e["files"]]
        top = e["relations"][:3]
        if top:
            lines.append("most attention mass: " + ", ".join(f"{r['relation']} ({r['share']:.0%})" for r in top))
    return "\n".join(lines)


@hydra_command("predict", prog="graphmm.predict")
def main(args: Any) -> int:
    """``python -m graphmm predict key=value ...``: print the result; the exit code."""
    result = run(args)
    print(json.dumps(result, indent=2) if args.output == "json" else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
