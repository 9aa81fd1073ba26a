"""Run the training loop under ``torchrun``: DDP (gloo on CPU, NCCL on CUDA), deterministic sharding.

Every step's global batch is a pure function of (seed, step); rank ``r`` of ``w`` takes slots ``r, r+w, ...``,
so the union over ranks is exactly the single-process batch. Rank 0 alone writes checkpoints and outputs.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
from torch import nn

from lorkd_core.device import select_device
from lorkd_core.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, slots: int) -> list[int]:
        """This rank's slots of a global batch of ``slots`` samples."""
        if slots % self.world:
            raise ConfigError(f"batch_size {slots} must be a multiple of the number of processes ({self.world})")
        return list(range(self.rank, slots, self.world))

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` when distributed; unused parameters (absent regions' experts) are allowed."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a cancel must stop all ranks at one step)."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)


def launched_by_torchrun() -> bool:
    """True when torchrun (or torch.distributed.run) started this process with more than one rank."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Without those variables (or with WORLD_SIZE 1) this returns a single-process context.
    """
    if not launched_by_torchrun():
        return DistContext(device=select_device(device))
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = select_device(device)
    if dev.type == "cuda":
        per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", world)), torch.cuda.device_count()
        if per_node > gpus:  # NCCL cannot put two ranks on one GPU: fail clearly instead of hanging
            from lorkd_core.errors import ConfigError

            raise ConfigError(f"{per_node} processes per machine but only {gpus} CUDA device(s): NCCL needs one "
                              f"GPU per process; use at most {gpus} processes, or device 'cpu'")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=30))
    return DistContext(rank=rank, world=world, local_rank=local, device=dev)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
