"""Multi-process training: ``train --nproc N`` relaunches itself under torchrun; each process trains on its share
of every global batch (``sampling.EpochSampler``) with gradients averaged by ``DistributedDataParallel``, batch
norm synchronised across processes, and the loss normalised over the global batch, so that N processes with
batch B step exactly as one process with batch N×B. Only rank 0 evaluates, logs and writes checkpoints."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from ..errors import TrainingConfigError
from ..runtime import all_sum, world_size

# the differentiable all-reduce is public and works; its suggested successor is a private module
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """What torchrun told this process (one process when started without it)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group (NCCL on CUDA, gloo on the CPU); returns the world and this process's device."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    if not dist.is_initialized():  # the others wait while rank 0 validates and saves: a long timeout
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=6))
    return world, device


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value``, on every process."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch, on any device: the sums travel by
    a differentiable all-reduce (PyTorch's own ``SyncBatchNorm`` runs on GPUs only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        count = all_sum(torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device))
        mean = all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / count
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp(min=1), alpha=m)
            self.num_batches_tracked.add_(1)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return out * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else out


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with its 2-D batch norms synchronised across processes (in place where possible)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            synced.requires_grad_(any(p.requires_grad for p in child.parameters()))
            setattr(module, name, synced.to(device))
        else:
            sync_batchnorm(child, device)
    return module


def check_launch(nproc: int, cfg: Any) -> None:
    """What would stop every process of an ``nproc`` run, said once before any starts."""
    from ..detection import resolve_device

    if cfg.freeze_epochs:
        raise TrainingConfigError("--freeze-epochs cannot change what trains under --nproc: use --freeze-backbone")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise TrainingConfigError(
            f"--nproc {nproc} on CUDA needs a GPU each; this machine has {torch.cuda.device_count()}"
        )


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``hebbian-mirror argv`` in ``nproc`` processes on this machine under torch's elastic launcher (what
    ``torchrun --standalone`` runs); its exit status."""
    import sys
    import uuid

    # as torchrun does: the processes share the cores instead of each starting a thread per core
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "hebbian_mirror", *argv)
    except ChildFailedError as exc:
        print(f"training failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
