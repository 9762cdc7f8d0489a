"""Data-parallel training across processes started by ``torchrun`` (torch.distributed, ``env://``).

``torchrun --nproc_per_node N -m vsseg_ros.training.perframe --config ...`` starts N copies with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_distributed` joins them into
one process group (gloo on CPU, nccl on CUDA, one GPU per local rank). Without those variables (a plain
``python -m ...`` run) it returns a single-process context whose collectives are no-ops, so the trainer has one
code path. Only rank 0 (:attr:`DistContext.is_main`) writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) -> a device; ``"cuda"`` without CUDA is an error."""
    key = str(name).strip().lower()
    if key == "auto":
        key = "cuda" if torch.cuda.is_available() else "cpu"
    if key == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but torch sees no CUDA device; use 'cpu' or 'auto'")
    if key not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be cpu, cuda or auto, got {name!r}")
    return torch.device(key)


@dataclass
class DistContext:
    """This process's place in the group; every collective is a no-op when ``world_size`` is 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        # nccl reduces CUDA tensors only; gloo reduces CPU tensors
        t = torch.as_tensor(np.asarray(values, np.float64).copy())
        return t.to(self.device) if self.backend == "nccl" else t

    def all_reduce(self, values: Sequence[float] | np.ndarray, op: str = "sum") -> np.ndarray:
        """Element-wise ``sum``, ``max`` or ``min`` over the ranks (float64)."""
        arr = np.asarray(values, np.float64)
        if not self.enabled:
            return arr.copy()
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        t = self._tensor(arr)
        dist.all_reduce(t, op=ops[op])
        return t.cpu().numpy().reshape(arr.shape)

    def all_reduce_int(self, values: np.ndarray) -> np.ndarray:
        """Sum of integer counts (a confusion matrix) over the ranks, exact."""
        arr = np.asarray(values, np.int64)
        if not self.enabled:
            return arr.copy()
        import torch.distributed as dist

        t = torch.from_numpy(arr.copy())
        t = t.to(self.device) if self.backend == "nccl" else t
        dist.all_reduce(t)
        return t.cpu().numpy().reshape(arr.shape)

    def broadcast(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (clock readings that steer every rank the same way)."""
        if not self.enabled:
            return float(value)
        import torch.distributed as dist

        t = self._tensor(np.array([value]))
        dist.broadcast(t, src=0)
        return float(t.cpu()[0])

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def _from_rank0(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` on every rank with rank 0's values."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP does so at the start of each
        forward, but each rank's forward then updates them with its own batch: call this before evaluating."""
        self._from_rank0(list(model.buffers()))

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (a state only rank 0 computed, e.g. MAR's memory)."""
        self._from_rank0([*module.parameters(), *module.buffers()])

    def check_in_sync(self, model: nn.Module) -> None:
        """Raise if the ranks' parameters and buffers differ (a per-tensor checksum compared over the ranks)."""
        if not self.enabled:
            return
        sums = np.array(
            [float(t.detach().double().sum()) for t in model.state_dict().values() if t.is_floating_point()]
        )
        if not np.array_equal(self.all_reduce(sums, "max"), self.all_reduce(sums, "min")):
            raise RuntimeError("data-parallel ranks hold different model weights (they fell out of sync)")

    def close(self) -> None:
        """Leave the process group if :func:`init_distributed` created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the ``torchrun`` process group described by the environment, or return a single-process context.

    On CUDA each process uses ``cuda:LOCAL_RANK`` and the nccl backend; on CPU gloo."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext(device=dev)
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local} has no GPU: torch sees {torch.cuda.device_count()}; start at "
                "most one process per GPU (torchrun --nproc_per_node)"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method="env://", world_size=world, rank=rank, **kwargs)
        owns = True
    elif dist.get_world_size() != world:
        raise RuntimeError(f"a process group of {dist.get_world_size()} is already running but WORLD_SIZE={world}")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend, owns_group=owns)


__all__ = ["DistContext", "init_distributed", "resolve_device"]
