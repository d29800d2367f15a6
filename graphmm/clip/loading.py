"""Offline loading of open_clip models: architectures by name, weights from a local file.

Nothing here downloads. A model is named by an open_clip architecture (a built-in
name such as ``ViT-B-32``, or one registered with :func:`register_model_config`)
and gets its weights from ``checkpoint``, a local file (``.bin``, ``.pt``, ``.pth``
or ``.safetensors``, as open_clip saves or publishes them). ``pretrained`` may name
one of open_clip's pretrained tags (``"openai"``, ``"laion2b_s34b_b79k"``, ...):
graphmm then takes the tag's preprocessing (mean, std, interpolation, resize mode)
and activation (QuickGELU) from open_clip's table, but the weights still come from
``checkpoint``; a tag without a checkpoint is an error that says where to get the
file. Without both, the architecture is built with random weights (for tests).
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

__all__ = [
    "ClipBundle",
    "clear_memo",
    "load_clip",
    "load_tokenizer",
    "model_config",
    "preprocess_config",
    "register_model_config",
    "resolve_weights",
    "text_config",
    "vision_config",
]

log = logging.getLogger(__name__)

#: keys of a ``preprocess`` override and the open_clip argument each one sets
PREPROCESS_KEYS: dict[str, str] = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


def _open_clip():
    import open_clip  # deferred: importing it takes about a second

    return open_clip


def _to_2tuple(x: Any) -> tuple[int, int]:
    if isinstance(x, (list, tuple)):
        if len(x) != 2:
            raise ValueError(f"expected an int or a pair, got {x!r}")
        return int(x[0]), int(x[1])
    return int(x), int(x)


# ---------------------------------------------------------------------- configs
def model_config(name: str) -> dict[str, Any]:
    """The open_clip architecture config of ``name`` (no weights are read).

    Raises:
        ValueError: ``name`` is a download schema (``hf-hub:``), a ``local-dir:``
            folder, or no registered architecture; the message lists close names and
            says how to register one.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"CLIP model name must be a non-empty string, got {name!r}")
    if name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(
            f"CLIP model name {name!r} uses an open_clip schema, which graphmm does not load (hf-hub: "
            f"downloads). Give an architecture name (e.g. 'ViT-B-32') and the weights as checkpoint=<local file>; "
            f"for a custom architecture register its JSON with graphmm.clip.register_model_config"
        )
    oc = _open_clip()
    cfg = oc.get_model_config(name)
    if cfg is None:
        names = oc.list_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"unknown CLIP model name {name!r}.{hint} Use one of open_clip.list_models() ({len(names)} names, "
            f"e.g. 'ViT-B-32', 'ViT-B-16', 'ViT-L-14'), or register your architecture's JSON config with "
            f"graphmm.clip.register_model_config(name, config) / open_clip.add_model_config(path)"
        )
    return cfg


def vision_config(name: str) -> dict[str, Any]:
    """Sizes of the vision tower: ``image_size`` (H, W), ``patch_size``, ``grid`` (rows,
    cols), ``width``, ``layers`` and the joint ``embed_dim``.

    Raises:
        ValueError: the tower is not an open_clip ViT (timm or ResNet towers have no
            patch tokens of their own), or its patches are not square.
    """
    cfg = model_config(name)
    v = cfg.get("vision_cfg", {})
    if v.get("timm_model_name") or isinstance(v.get("layers", 12), (list, tuple)):
        kind = f"timm model {v['timm_model_name']!r}" if v.get("timm_model_name") else "a ResNet"
        raise ValueError(
            f"CLIP model {name!r} has {kind} as its image tower; patch features need open_clip's own vision "
            f"transformer (e.g. ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    image = _to_2tuple(v.get("image_size", 224))
    ph, pw = _to_2tuple(v.get("patch_size", 16))
    if ph != pw:
        raise ValueError(f"CLIP model {name!r} has non-square {ph} x {pw} patches, which patch nodes do not support")
    return {
        "image_size": image,
        "patch_size": ph,
        "grid": (image[0] // ph, image[1] // pw),
        "width": int(v.get("width", 768)),
        "layers": int(v.get("layers", 12)),
        "embed_dim": int(cfg["embed_dim"]),
    }


def text_config(name: str) -> dict[str, Any]:
    """Sizes of the text tower: ``context_length``, ``vocab_size``, ``width``, ``layers``, ``embed_dim``.

    Raises:
        ValueError: the text tower is a Hugging Face model or tokenizer (graphmm pools
            CLIP's own BPE tokens and never downloads a tokenizer).
    """
    cfg = model_config(name)
    t = cfg.get("text_cfg", {})
    if t.get("hf_model_name") or t.get("hf_tokenizer_name"):
        raise ValueError(
            f"CLIP model {name!r} uses the Hugging Face text model/tokenizer "
            f"{t.get('hf_model_name') or t.get('hf_tokenizer_name')!r}; word features need a CLIP BPE text "
            f"tower (e.g. ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    if t.get("embed_cls") or (t.get("no_causal_mask") and t.get("use_pad_mask")):
        raise ValueError(f"CLIP model {name!r} has a class token or a padding mask in its text tower; not supported")
    return {
        "context_length": int(t.get("context_length", 77)),
        "vocab_size": int(t.get("vocab_size", 49408)),
        "width": int(t.get("width", 512)),
        "layers": int(t.get("layers", 12)),
        "embed_dim": int(cfg["embed_dim"]),
    }


def register_model_config(name: str, config: dict[str, Any], folder: str | os.PathLike[str]) -> Path:
    """Register a custom open_clip architecture under ``name``.

    Writes ``config`` (the JSON open_clip keeps in ``model_configs/``: ``embed_dim``,
    ``vision_cfg``, ``text_cfg``) to ``folder/<name>.json`` and adds that file to
    open_clip's registry, so ``name`` works wherever a model name is taken.

    Returns:
        The JSON file written.
    """
    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError("an open_clip model config needs the keys 'embed_dim', 'vision_cfg' and 'text_cfg'")
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    _open_clip().add_model_config(path)
    return path


# ---------------------------------------------------------------------- weights
def resolve_weights(
    name: str, checkpoint: str | os.PathLike[str] | None = None, pretrained: str | None = None
) -> tuple[str | None, str | None, dict[str, Any]]:
    """Where the weights of ``name`` come from, without touching the network.

    Args:
        name: an open_clip architecture name.
        checkpoint: a local weights file, or ``None``.
        pretrained: ``None``; a local file (the same as ``checkpoint``); or an open_clip
            pretrained tag, used for its preprocessing and QuickGELU setting only.

    Returns:
        ``(checkpoint path or None, tag or None, the tag's open_clip entry or {})``.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: a tag without a checkpoint (it would need a download), an unknown
            tag, or two different files.
    """
    oc = _open_clip()
    model_config(name)  # a clear error for an unknown name first
    path = os.fspath(checkpoint) if checkpoint not in (None, "") else None
    tag: str | None = None
    tag_cfg: dict[str, Any] = {}
    if pretrained not in (None, ""):
        pretrained = str(pretrained)
        if os.path.isfile(pretrained):
            if path is not None and os.path.realpath(path) != os.path.realpath(pretrained):
                raise ValueError(
                    f"checkpoint={path!r} and pretrained={pretrained!r} name two different files; "
                    f"give the weights once, as checkpoint"
                )
            path = pretrained
        else:
            tag_cfg = dict(oc.get_pretrained_cfg(name, pretrained) or {})
            if not tag_cfg:
                tags = oc.list_pretrained_tags_by_model(name)
                raise ValueError(
                    f"pretrained={pretrained!r} is neither a file nor an open_clip tag of {name!r} "
                    f"(tags: {tags or 'none'}); pass the weights as checkpoint=/path/to/file"
                )
            tag = pretrained
            if path is None:
                where = []
                if tag_cfg.get("hf_hub"):
                    where.append(f"the Hugging Face repository {tag_cfg['hf_hub'].rstrip('/')!r} "
                                 f"(file open_clip_pytorch_model.bin or open_clip_model.safetensors)")
                if tag_cfg.get("url"):
                    where.append(f"{tag_cfg['url']}")
                src = " or ".join(where) or "its publisher"
                raise ValueError(
                    f"pretrained={pretrained!r} names weights that open_clip would download, and graphmm never "
                    f"downloads. Download the file once from {src}, then pass checkpoint=/path/to/that/file "
                    f"(keep pretrained={pretrained!r} to use the tag's preprocessing), or use pretrained=None for "
                    f"random weights"
                )
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(
            f"CLIP checkpoint {path!r} does not exist. Download the weights of {name!r} once (e.g. "
            f"open_clip_pytorch_model.bin from the model's Hugging Face page) and pass its local path as "
            f"checkpoint=/path/to/file; nothing is downloaded at run time"
        )
    return path, tag, tag_cfg


def preprocess_config(
    name: str, pretrained: str | None = None, preprocess: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The image preprocessing of ``name`` as open_clip sets it on the model, computed
    without building the model: open_clip's defaults, then the pretrained tag's
    entries (if ``pretrained`` is a tag), the tower's ``image_size``, then ``preprocess``.

    Returns:
        ``{"size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color"}``.
    """
    oc = _open_clip()
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), {})
    if pretrained and not os.path.isfile(str(pretrained)):
        cfg = merge_preprocess_dict(cfg, dict(oc.get_pretrained_cfg(name, pretrained) or {}))
    cfg["size"] = vision_config(name)["image_size"]
    cfg = merge_preprocess_dict(cfg, _check_preprocess(preprocess))
    return _plain(cfg)


def _check_preprocess(preprocess: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(preprocess or {})
    unknown = sorted(set(out) - set(PREPROCESS_KEYS))
    if unknown:
        raise ValueError(f"unknown preprocess key(s) {unknown}; known: {sorted(PREPROCESS_KEYS)}")
    return {k: v for k, v in out.items() if v is not None}


def _plain(x: Any) -> Any:
    """Tuples to lists, recursively, so configs compare and serialise the same way."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# ---------------------------------------------------------------------- models
@dataclass
class ClipBundle:
    """A loaded CLIP model with what featurizers need around it.

    Attributes:
        name: architecture name.
        model: the open_clip model, frozen (``requires_grad`` False, eval mode).
        transform: open_clip's inference transform (resize, centre crop, normalise).
        preprocess_cfg: the model's preprocessing config (plain lists).
        checkpoint: the weights file, or ``None`` for random weights.
        tag: the pretrained tag the preprocessing came from, or ``None``.
        weights_id: SHA-256 of the checkpoint file, or of the random weights.
    """

    name: str
    model: nn.Module
    transform: Any
    preprocess_cfg: dict[str, Any]
    checkpoint: str | None
    tag: str | None
    weights_id: str


_MEMO: dict[tuple[Any, ...], ClipBundle] = {}
_TOKENIZERS: dict[str, Any] = {}


def clear_memo() -> None:
    """Forget the models and tokenizers :func:`load_clip` and :func:`load_tokenizer` keep."""
    _MEMO.clear()
    _TOKENIZERS.clear()


def load_clip(
    name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: str | None = None,
    preprocess: dict[str, Any] | None = None,
    shared: bool = True,
) -> ClipBundle:
    """Build the open_clip model ``name`` on the CPU with weights from a local file.

    The model is frozen (``requires_grad`` False, eval mode) and, with ``shared``,
    memoised per (name, file, file size and time, tag, preprocessing), so the image
    and the text builders of one recipe share one copy. Patch dropout is forced to 0:
    every patch token must reach its node.

    Args:
        name: an open_clip architecture name (see :func:`model_config`).
        checkpoint: local weights file; ``None`` with ``pretrained=None`` gives random weights.
        pretrained: see :func:`resolve_weights`.
        preprocess: overrides of ``mean``, ``std``, ``interpolation``, ``resize_mode``.
        shared: reuse (and keep) the memoised copy.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: unknown name or tag, a tag that needs a download, or a file that
            does not hold weights of this architecture.
    """
    from graphmm.clip.cache import file_sha256, weights_fingerprint

    path, tag, tag_cfg = resolve_weights(name, checkpoint, pretrained)
    overrides = _check_preprocess(preprocess)
    for key in ("mean", "std", "interpolation", "resize_mode"):
        if key not in overrides and tag_cfg.get(key) is not None:
            overrides[key] = tag_cfg[key]
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    stamp = None
    if path is not None:
        st = os.stat(path)
        stamp = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    memo_key = (name, stamp, tag, quick_gelu, json.dumps(_plain(overrides), sort_keys=True))
    if shared and memo_key in _MEMO:
        return _MEMO[memo_key]

    oc = _open_clip()
    kwargs = {PREPROCESS_KEYS[k]: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()}
    try:
        model, _, transform = oc.create_model_and_transforms(
            name,
            pretrained=path,
            force_quick_gelu=quick_gelu,
            force_patch_dropout=0.0,
            pretrained_image=False,
            pretrained_text=False,
            device="cpu",
            **kwargs,
        )
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, AssertionError) as err:
        if path is None:
            raise
        raise ValueError(
            f"could not load CLIP weights {path!r} into architecture {name!r}: {type(err).__name__}: "
            f"{str(err)[:400]}. Check that the model name matches the checkpoint (e.g. ViT-B-32 for "
            f"a ViT-B-32 file; ViT-B-32-quickgelu or pretrained='openai' for OpenAI's weights)"
        ) from err
    model.requires_grad_(False)
    model.eval()
    pp = _plain(dict(getattr(model.visual, "preprocess_cfg", {}) or {}))
    expected = preprocess_config(name, tag, overrides)
    if pp and pp != expected:  # the cache keys assume this; fail loudly if open_clip changes
        raise RuntimeError(f"open_clip set preprocessing {pp} on {name!r}, graphmm computed {expected}")
    weights_id = file_sha256(path) if path is not None else "random:" + weights_fingerprint(model)
    bundle = ClipBundle(name, model, transform, expected, path, tag, weights_id)
    if shared:
        _MEMO[memo_key] = bundle
    return bundle


def copy_tower(module: nn.Module) -> nn.Module:
    """A trainable deep copy of a (frozen, shared) tower."""
    out = copy.deepcopy(module)
    out.requires_grad_(True)
    return out


def load_tokenizer(name: str) -> Any:
    """open_clip's BPE tokenizer for ``name`` (memoised; its vocabulary ships with open_clip)."""
    if name not in _TOKENIZERS:
        text_config(name)  # refuses Hugging Face tokenizers, which would download
        oc = _open_clip()
        tok = oc.get_tokenizer(name)
        if not isinstance(tok, oc.SimpleTokenizer):
            raise ValueError(f"CLIP model {name!r} has tokenizer {type(tok).__name__}; word features need CLIP's BPE")
        _TOKENIZERS[name] = tok
    return _TOKENIZERS[name]
