"""Where distillation trains: the device (--train-device), mixed precision (--amp) and, under
torchrun, the process group (NCCL with one GPU per rank, gloo on CPU).

The student goes back to the CPU when training ends, so what export sees does not depend on
where training ran."""

from __future__ import annotations

import contextlib
import os
import re

import torch

from edgepress.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
AMP = ("bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(name: str) -> torch.device:
    """--train-device as a torch.device; a CUDA request where torch sees none is refused."""
    if name not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise UserError(f"train device {name!r} is not one of: {', '.join(DEVICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise UserError(f"train device {name!r}: torch sees no CUDA device here (torch "
                        f"{torch.__version__}, {build}); use --train-device cpu")
    if name in ("auto", "cuda"):  # under torchrun, one GPU per rank
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # NCCL cannot put two ranks on one GPU
        raise UserError(f"train device {name!r}: under torchrun each rank takes its own GPU "
                        f"(cuda:LOCAL_RANK); use --train-device cuda")
    index, count = int(name.split(":")[1]), torch.cuda.device_count()
    if index >= count:
        raise UserError(f"train device {name!r}: this host has {count} CUDA device(s), "
                        f"cuda:0..cuda:{count - 1}")
    return torch.device(name)


def check_amp(amp: str | None, device: torch.device) -> None:
    if amp is None:
        return
    if amp not in AMP:
        raise UserError(f"amp {amp!r} is not one of: {', '.join(AMP)}")
    if amp == "fp16" and device.type != "cuda":
        raise UserError("amp 'fp16' needs a CUDA train device (CPU autocast is bf16 only): use "
                        "--amp bf16 or --train-device cuda")


def autocast(amp: str | None, device: torch.device):
    """The forward passes' precision: torch.autocast for --amp, else plain fp32."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[amp])


def scaler(amp: str | None, device: torch.device):
    """fp16 gradients underflow without loss scaling; bf16 keeps fp32's range and needs none."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def dist_info(device: torch.device) -> tuple[int, int]:
    """(rank, world size): from torch.distributed when torchrun started us, else (0, 1). NCCL
    takes only CUDA tensors, so the backend follows the train device, not the host."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def wrap(student, world: int, device: torch.device):
    """The student under DDP when several processes train it (one device per rank)."""
    if world == 1:
        return student
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(student, device_ids=ids)
