"""The training loop behind distill.fit: optimizer, schedule, the KD loss, checkpoints that let
an interrupted run resume, and torchrun (DDP, data sharded by rank)."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgepress.compress import load
from edgepress.errors import UserError

CHECKPOINT = "last.pt"


def kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


class Trainer:
    """Optimizer, schedule, loss and checkpoints for one distillation run."""

    def __init__(self, student, teacher, cfg, pairs, world, steps, seed):
        self.student, self.teacher, self.cfg, self.pairs = student, teacher, cfg, pairs
        self.seed = seed
        self.model = _maybe_ddp(student, world)
        params = list(student.parameters()) + [p for pr in pairs for p in pr.parameters()]
        self.opt = (torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
                    if cfg.optimizer == "adamw" else
                    torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                                    nesterov=True))
        self.sched = _schedule(self.opt, cfg, steps)
        self.best_state = copy.deepcopy(student.state_dict())

    def epoch(self, x, y, epoch, rank, world, progress) -> float:
        self.student.train()
        order = _shard(torch.randperm(samples_in(x), generator=_gen(self.seed, epoch)), rank, world)
        per_rank = max(1, self.cfg.batch_size // world)  # same global batch as one process
        total, count = 0.0, 0
        bar = _bar(math.ceil(len(order) / per_rank), epoch, self.cfg.epochs, progress)
        for idx in order.split(per_rank):
            loss = self.step({k: v[idx] for k, v in x.items()}, None if y is None else y[idx])
            total, count = total + loss * len(idx), count + len(idx)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}")
                bar.update()
        if bar is not None:
            bar.close()
        return total / max(count, 1)

    def step(self, batch, labels) -> float:
        for pair in self.pairs:
            pair.clear()
        with torch.no_grad():
            t_logits = logits(self.teacher(**batch))
        s_logits = logits(self.model(**batch))
        loss = self.cfg.alpha * kd_loss(s_logits, t_logits, self.cfg.temperature)
        if labels is not None:
            loss = loss + (1 - self.cfg.alpha) * F.cross_entropy(s_logits, labels)
        elif self.cfg.alpha < 1:  # unlabeled: the teacher's argmax stands in for labels
            loss = loss + (1 - self.cfg.alpha) * F.cross_entropy(s_logits, t_logits.argmax(-1))
        for pair in self.pairs:
            loss = loss + self.cfg.feature_weight * pair.loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return float(loss.detach())

    def save(self, cfg, result, epoch, rank) -> None:
        if cfg.checkpoint_dir is None or rank != 0:
            return
        state = {"epoch": epoch, "student": self.student.state_dict(),
                 "best": self.best_state, "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict() if self.sched is not None else {},
                 "pairs": [p.state_dict() for p in self.pairs],
                 "history": result.history, "best_epoch": result.best_epoch,
                 "best_metric": result.best_metric}
        path = Path(cfg.checkpoint_dir) / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)  # a kill mid-save leaves the previous checkpoint intact

    def resume(self, cfg, result) -> int:
        path = Path(cfg.checkpoint_dir or "") / CHECKPOINT
        if cfg.checkpoint_dir is None or not path.is_file():
            return 0
        try:  # our own file, still read without executing anything
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.student.load_state_dict(state["student"])
        except Exception as e:
            raise UserError(f"checkpoint {str(path)!r} does not fit this run ({e.__class__.__name__}"
                            f"): delete it to start over") from None
        self.best_state = state["best"]
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"]:
            self.sched.load_state_dict(state["scheduler"])
        for pair, s in zip(self.pairs, state["pairs"]):
            pair.load_state_dict(s)
        result.history = list(state["history"])
        result.best_epoch, result.best_metric = state["best_epoch"], state["best_metric"]
        result.resumed_from = state["epoch"] + 1
        return state["epoch"] + 1

    def close(self) -> None:
        for pair in self.pairs:
            pair.remove()


def as_tensors(data):
    """A Dataset as (name -> tensor (N, ...), labels tensor or None). Training revisits every
    sample each epoch, so the set is held in memory (calibration data, by contrast, streams)."""
    samples, labels = [], []
    for sample, label in data.labelled():
        samples.append(sample)
        labels.append(label)
    x = {k: torch.from_numpy(np.concatenate([s[k] for s in samples])) for k in samples[0]}
    if any(label is None for label in labels):
        return x, None
    return x, torch.as_tensor(np.asarray(labels)).long().reshape(-1)


def samples_in(x: dict) -> int:
    return next(iter(x.values())).shape[0]


def chunks(x: dict, size: int):
    for i in range(0, samples_in(x), size):
        yield {k: v[i:i + size] for k, v in x.items()}


def logits(out) -> torch.Tensor:
    return load.outputs(out)[0]


def steps(cfg, x, world) -> int:
    per_rank = max(1, cfg.batch_size // world)
    return cfg.epochs * math.ceil(math.ceil(samples_in(x) / world) / per_rank)


def _schedule(opt, cfg, steps):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps + 1)
    return None


def _gen(seed: int, epoch: int) -> torch.Generator:
    # The same permutation on every rank (each then takes its own shard), and per epoch.
    return torch.Generator().manual_seed(seed * 1000 + epoch)


def _shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return order[rank::world]


def dist_info() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when torchrun started us, else (0, 1)."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _maybe_ddp(student, world):
    if world == 1:
        return student
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(student)


def _bar(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"distill epoch {epoch + 1}/{epochs}", leave=False,
                disable=None)  # disable=None: no bar when stderr is not a terminal
