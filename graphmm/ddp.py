"""Data-parallel training across processes with PyTorch DistributedDataParallel.

``trainer.strategy=ddp`` under ``torchrun``::

    torchrun --nproc_per_node 2 -m graphmm.train trainer.strategy=ddp output_dir=outputs/ddp

Every process builds its own graphs and holds a replica of the model; gradients are
averaged across processes after each backward pass (gloo on CPU, nccl on GPUs).

* ``trainer.batch_size`` is the **global** batch: each of the :math:`W` processes takes
  a contiguous :math:`1/W` of every global batch of the same seeded order, so a run
  on :math:`W` processes sees the same batches as a single process. The last,
  partial global batch is cut to a multiple of :math:`W` (at most :math:`W - 1`
  samples per epoch are left out) so that every process makes the same number of
  steps.
* Evaluation splits the samples across processes and gathers every prediction, so
  the metrics are those of the whole split, the same on every process.
* Only rank 0 writes checkpoints, logs, plots and ``metrics.json``.

With dropout off, the weights after each step match a single-process run over the
same global batches up to float summation order (a test compares them). One
difference remains by design of DDP: a parameter that gets no gradient in a step
(say, of a relation that no sample of the batch has) is skipped by the optimizer in
one process, but receives a zero gradient under DDP, so AdamW's weight decay still
shrinks it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "shard_global_batches"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (1 and 0 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or (dist.is_available() and dist.is_initialized())

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (``[obj]`` when not distributed)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every process (so all of them stop together)."""
        bad = (~torch.isfinite(value.detach())).any().float().reshape(1)
        if self.enabled:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return not bool(bad.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment.

    Args:
        device: ``"cpu"`` (gloo backend) or ``"cuda"`` (nccl; each process uses GPU
            ``LOCAL_RANK``).

    Raises:
        RuntimeError: Not launched by ``torchrun`` (no ``RANK``/``WORLD_SIZE``), with the
            command to use.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "trainer.strategy=ddp needs one process per replica, started by torchrun: "
            "torchrun --nproc_per_node N -m graphmm.train trainer.strategy=ddp output_dir=<run dir> ..."
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local)


def shard_global_batches(order: list[int], batch_size: int, rank: int, world_size: int) -> Iterator[int]:
    """This rank's items of ``order`` cut into global batches of ``batch_size``.

    Each global batch is split into ``world_size`` contiguous equal chunks and the
    ``rank``-th is yielded; the last global batch is first cut to a multiple of
    ``world_size``. With ``world_size=1`` this yields ``order`` unchanged.

    Example:
        >>> list(shard_global_batches(list(range(10)), 4, rank=1, world_size=2))
        [2, 3, 6, 7, 9]
    """
    if world_size == 1:
        yield from order
        return
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} must be a multiple of the {world_size} processes")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        per = len(chunk) // world_size
        yield from chunk[rank * per : (rank + 1) * per]
