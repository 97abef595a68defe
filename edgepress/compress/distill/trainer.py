"""The training loop behind distill.fit: optimizer, schedule, the loss on the train device
(mixed precision optional), checkpoints that let an interrupted run resume (on any device kind),
and torchrun (DDP, data sharded by rank)."""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgepress.compress import load
from edgepress.compress.distill import device as dev, losses
from edgepress.errors import UserError

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class Run:
    """What fit decides once for a run."""
    device: torch.device
    kind: losses.Output
    rank: int
    world: int
    steps: int
    seed: int


class Trainer:
    """Optimizer, schedule, loss and checkpoints for one distillation run."""

    def __init__(self, student, teacher, cfg, pairs, run):
        self.student, self.teacher, self.cfg, self.pairs = student, teacher, cfg, pairs
        self.run = run  # device, output kind, rank, world, steps, seed: decided once by fit
        self.model = dev.wrap(student, run.world, run.device)
        params = list(student.parameters()) + [p for pr in pairs for p in pr.parameters()]
        self.opt = (torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
                    if cfg.optimizer == "adamw" else
                    torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                                    nesterov=True))
        self.sched = _schedule(self.opt, cfg, run.steps)
        self.scaler = dev.scaler(cfg.amp, run.device)
        self.best_state = copy.deepcopy(student.state_dict())

    def epoch(self, x, y, t_out, epoch, progress) -> float:
        """One pass over this rank's shard. `t_out`: the teacher's cached outputs (None: the
        teacher runs every step, as feature KD needs its hooks to fire)."""
        run = self.run
        self.student.train()
        order = _shard(torch.randperm(samples_in(x), generator=_gen(run.seed, epoch)), run.rank,
                       run.world)
        per_rank = max(1, self.cfg.batch_size // run.world)  # same global batch as one process
        total, count = 0.0, 0
        bar = _bar(math.ceil(len(order) / per_rank), epoch, self.cfg.epochs, progress)
        for idx in order.split(per_rank):
            batch = {k: v[idx].to(run.device) for k, v in x.items()}
            loss = self.step(batch, None if y is None else y[idx].to(run.device),
                             None if t_out is None else t_out[idx])
            total, count = total + loss * len(idx), count + len(idx)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}")
                bar.update()
        if bar is not None:
            bar.close()
        return total / max(count, 1)

    def step(self, batch, labels, t_out) -> float:
        for pair in self.pairs:
            pair.clear()
        with dev.autocast(self.cfg.amp, self.run.device):
            if t_out is None:
                with torch.no_grad():
                    t_out = first(self.teacher(**batch))
            s_out = first(self.model(**batch))
        loss = self._loss(s_out, t_out, labels)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.sched is not None:
            self.sched.step()
        return float(loss.detach())

    def _loss(self, s_out, t_out, labels) -> torch.Tensor:
        """alpha * KD + (1 - alpha) * the task loss (the teacher's decisions without labels),
        plus the feature terms; in fp32 whatever autocast ran the forward passes in."""
        cfg, kind = self.cfg, self.run.kind
        loss = cfg.alpha * losses.kd(kind, s_out, t_out, cfg.temperature)
        if labels is None and cfg.alpha < 1:
            labels = losses.hard_labels(kind, t_out)
        if labels is not None:
            loss = loss + (1 - cfg.alpha) * losses.task(kind, s_out, labels)
        for pair in self.pairs:
            loss = loss + cfg.feature_weight * pair.loss().float()
        return loss

    def save(self, cfg, result, epoch) -> None:
        if cfg.checkpoint_dir is None or self.run.rank != 0:
            return
        state = {"epoch": epoch, "student": self.student.state_dict(),
                 "best": self.best_state, "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict() if self.sched is not None else {},
                 "scaler": self.scaler.state_dict(),
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
        try:  # our own file, still read without executing anything; tensors land on the CPU
            # whichever device wrote them, and load_state_dict copies them to where the student
            # and the optimizer's parameters now live: a resume may change device kind
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.student.load_state_dict(state["student"])
        except Exception as e:
            raise UserError(f"checkpoint {str(path)!r} does not fit this run ({e.__class__.__name__}"
                            f"): delete it to start over") from None
        self.best_state = state["best"]
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"]:
            self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # fp16's loss scale, as it had adapted (empty when off)
            self.scaler.load_state_dict(state["scaler"])
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
    labels = np.asarray(labels)
    if labels.size == len(samples):  # one class index per sample
        return x, torch.as_tensor(labels).long().reshape(-1)
    return x, torch.as_tensor(labels).float().reshape(len(samples), -1)  # multi-hot


def samples_in(x: dict) -> int:
    return next(iter(x.values())).shape[0]


def chunks(x: dict, size: int):
    for i in range(0, samples_in(x), size):
        yield {k: v[i:i + size] for k, v in x.items()}


def first(out) -> torch.Tensor:
    """The output the losses and the metric read: the model's first."""
    return load.outputs(out)[0]


def outputs(model, x: dict, device, amp=None) -> torch.Tensor:
    """`model`'s first output over all of `x`, in eval mode, in fp32 on `device`."""
    model.eval()
    with torch.no_grad(), dev.autocast(amp, device):
        return torch.cat([first(model(**{k: v.to(device) for k, v in b.items()})).float()
                          for b in chunks(x, 256)])


def steps(cfg, x, world: int) -> int:
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


def _bar(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"distill epoch {epoch + 1}/{epochs}", leave=False,
                disable=None)  # disable=None: no bar when stderr is not a terminal
