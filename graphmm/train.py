"""Training entry point: ``python -m graphmm.train [overrides]``.

:func:`train` is a plain function of a composed config, used by the command line,
by tests and by benchmarks alike; :func:`main` is the thin Hydra wrapper.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from tqdm.auto import tqdm

from graphmm.config import CONF_DIR, ConfigError, check_writable, to_container, validate_config
from graphmm.data import ModalityDropout, Sample, SampleDataset
from graphmm.graphs import MultimodalGraphBuilder
from graphmm.utils import load_checkpoint, resolve_device, save_checkpoint, seed_everything, write_json

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    """``cfg.output_dir`` if set, else Hydra's run directory, else ``./outputs/<name>``."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / str(cfg.name)


def build_model(model_cfg: DictConfig, builder: MultimodalGraphBuilder, num_classes: int) -> torch.nn.Module:
    """Instantiate ``model_cfg`` with the sizes the builder and the data dictate."""
    kwargs = to_container(model_cfg)
    heads = kwargs.pop("heads")
    conv_kwargs = dict(kwargs.pop("conv_kwargs") or {})
    if kwargs["conv"] == "gat":
        conv_kwargs.setdefault("heads", heads)
    return instantiate(
        kwargs,
        in_dims=builder.in_dims,
        canonical_etypes=builder.canonical_etypes,
        num_classes=num_classes,
        conv_kwargs=conv_kwargs,
    )


def make_loader(
    samples: Sequence[Sample],
    builder: MultimodalGraphBuilder,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    modality_dropout: float = 0.0,
) -> DataLoader:
    """A DataLoader whose workers build the batched graphs (``builder.collate``),
    optionally dropping modalities at random first (:class:`ModalityDropout`)."""
    gen = torch.Generator().manual_seed(seed)
    collate = builder.collate
    if modality_dropout > 0:
        collate = _DropThenCollate(ModalityDropout(modality_dropout), builder)
    return DataLoader(
        SampleDataset(list(samples)),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate,
        generator=gen,
        persistent_workers=num_workers > 0,
    )


class _DropThenCollate:
    # a class, not a closure, so DataLoader workers can pickle it
    def __init__(self, drop: ModalityDropout, builder: MultimodalGraphBuilder) -> None:
        self.drop, self.builder = drop, builder

    def __call__(self, samples: Sequence[Sample]) -> tuple[Any, torch.Tensor]:
        return self.builder.collate(self.drop(samples))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, num_classes: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Loss, accuracy and macro F1 over ``loader``; also the predictions ``(N,)``."""
    model.eval()
    acc = MulticlassAccuracy(num_classes=num_classes, average="micro").to(device)
    f1 = MulticlassF1Score(num_classes=num_classes, average="macro").to(device)
    total, n, preds = 0.0, 0, []
    for g, y in loader:
        g, y = g.to(device), y.to(device)
        logits = model(g)
        total += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
        acc.update(logits, y)
        f1.update(logits, y)
        preds.append(logits.argmax(-1).cpu())
    if n == 0:
        raise ValueError("cannot evaluate on an empty split")
    metrics = {"loss": total / n, "acc": float(acc.compute()), "f1": float(f1.compute())}
    return metrics, torch.cat(preds)


def _num_classes(splits: dict[str, list[Sample]]) -> int:
    labels = {name: [s.label for s in samples] for name, samples in splits.items()}
    for name, ls in labels.items():
        bad = [i for i, label in enumerate(ls) if not isinstance(label, int) or label < 0]
        if bad:
            s = splits[name][bad[0]]
            raise ValueError(f"{name} sample {s.id!r} (index {bad[0]}): label must be an int >= 0, got {s.label!r}")
    n = max(labels["train"]) + 1
    for name in ("val", "test"):
        unseen = sorted({label for label in labels[name] if label >= n})
        if unseen:
            raise ValueError(f"{name} split has labels {unseen} that never occur in train (classes 0..{n - 1})")
    return n


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor.endswith("loss") else value > best


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test one model; returns the metrics also written to ``metrics.json``.

    Steps: validate the config, seed, load the data, fit the graph builder on the
    training split (vocabulary), train with early stopping on ``trainer.monitor``
    keeping the best checkpoint, then evaluate that checkpoint on the test split.

    Files written to the run directory: ``metrics.json``, ``history.csv`` (one row per
    epoch), ``checkpoints/best.pt`` and ``checkpoints/last.pt``.
    """
    validate_config(cfg)
    out = check_writable(output_dir(cfg))
    device = resolve_device(cfg.trainer.device)
    tcfg = cfg.trainer
    seed_everything(cfg.seed)

    t0 = time.perf_counter()
    splits: dict[str, list[Sample]] = instantiate(cfg.data)
    missing = {"train", "val", "test"} - set(splits)
    if missing:
        raise ConfigError(f"data: the dataset returned no {sorted(missing)} split(s)")
    builder: MultimodalGraphBuilder = instantiate(cfg.graph)
    builder.fit(splits["train"])
    num_classes = _num_classes(splits)
    log.info("data: %s", {k: len(v) for k, v in splits.items()})
    log.info("graph: %s", builder)

    model = build_model(cfg.model, builder, num_classes).to(device)
    optimizer = instantiate(tcfg.optimizer)(params=model.parameters())
    scheduler = instantiate(tcfg.scheduler)(optimizer=optimizer) if tcfg.scheduler is not None else None
    # evaluation and checkpoints use an exponential moving average of the weights when
    # asked: it smooths the epoch-to-epoch noise that early stopping would pick up
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tcfg.ema_decay), use_buffers=True)
        if tcfg.ema_decay
        else None
    )
    eval_model = ema.module if ema is not None else model
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %d parameters", n_params)

    train_loader = make_loader(
        splits["train"], builder, tcfg.batch_size, True, tcfg.num_workers, cfg.seed, tcfg.modality_dropout
    )
    val_loader = make_loader(splits["val"], builder, tcfg.eval_batch_size, False, tcfg.num_workers)
    test_loader = make_loader(splits["test"], builder, tcfg.eval_batch_size, False, tcfg.num_workers)

    ckpt_dir = out / "checkpoints"
    monitor_key = tcfg.monitor.split("/", 1)[1]
    best: float | None = None
    best_epoch, bad_epochs, step = -1, 0, 0
    history: list[dict[str, float]] = []
    config_dict = to_container(cfg)

    def state(epoch: int) -> dict[str, Any]:
        return {
            "model": eval_model.state_dict(),
            "train_model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch,
            "step": step,
            "best": best,
            "config": config_dict,
            "builder": builder.state_dict(),
            "num_classes": num_classes,
        }

    epochs = tqdm(range(tcfg.max_epochs), desc="epochs", disable=not tcfg.progress, dynamic_ncols=True)
    for epoch in epochs:
        model.train()
        running, seen = 0.0, 0
        batches = tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not tcfg.progress)
        for i, (g, y) in enumerate(batches):
            if tcfg.limit_train_batches is not None and i >= tcfg.limit_train_batches:
                break
            g, y = g.to(device), y.to(device)
            loss = F.cross_entropy(model(g), y, label_smoothing=tcfg.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss {float(loss)} at epoch {epoch}, step {step}; "
                    f"the last good checkpoints are in {ckpt_dir}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running += float(loss) * len(y)
            seen += len(y)
            batches.set_postfix(loss=f"{running / seen:.4f}")
        if scheduler is not None:
            scheduler.step()
        val, _ = evaluate(eval_model, val_loader, device, num_classes)
        row = {"epoch": epoch, "train/loss": running / max(seen, 1), **{f"val/{k}": v for k, v in val.items()}}
        history.append(row)
        epochs.set_postfix(loss=f"{row['train/loss']:.4f}", val_acc=f"{val['acc']:.4f}")
        log.info("epoch %d: train/loss=%.4f val/loss=%.4f val/acc=%.4f", epoch, row["train/loss"], val["loss"], val["acc"])
        if _improved(tcfg.monitor, val[monitor_key], best):
            best, best_epoch, bad_epochs = val[monitor_key], epoch, 0
            save_checkpoint(ckpt_dir / "best.pt", state(epoch))
        else:
            bad_epochs += 1
        save_checkpoint(ckpt_dir / "last.pt", state(epoch))
        if bad_epochs >= tcfg.patience:
            log.info("early stop at epoch %d: no %s improvement for %d epochs", epoch, tcfg.monitor, tcfg.patience)
            break

    _write_history(out / "history.csv", history)
    best_state = load_checkpoint(ckpt_dir / "best.pt", map_location=device)
    eval_model.load_state_dict(best_state["model"])
    val, _ = evaluate(eval_model, val_loader, device, num_classes)
    test, _ = evaluate(eval_model, test_loader, device, num_classes)
    metrics: dict[str, float] = {
        **{f"val/{k}": v for k, v in val.items()},
        **{f"test/{k}": v for k, v in test.items()},
        "best_epoch": best_epoch,
        "epochs": len(history),
        "steps": step,
        "num_params": n_params,
        "time_s": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "metrics.json", metrics)
    log.info("test/acc=%.4f test/f1=%.4f (best epoch %d) -> %s", test["acc"], test["f1"], best_epoch, out)
    return metrics


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Hydra wrapper; returns the monitored validation metric, so that sweepers tune
    on validation and never on test."""
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = train(cfg)
    print(
        f"test/acc={metrics['test/acc']:.4f}  test/f1={metrics['test/f1']:.4f}  "
        f"val/acc={metrics['val/acc']:.4f}  epochs={metrics['epochs']}  time={metrics['time_s']}s"
    )
    return metrics[cfg.trainer.monitor]


if __name__ == "__main__":
    main()
