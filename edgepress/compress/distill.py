"""distill: train a student to match a teacher (Hinton-style logit KD, optional feature KD).

The loss mixes KL divergence on temperature-softened logits (scaled by T^2 so its gradients keep
their size as T changes) with the task loss (cross-entropy, when the data has labels); without
labels it is pure KD. Feature KD adds an MSE between named layer pairs, through a learned 1x1 /
linear projection when their widths differ. Early stopping on the validation metric keeps the
best weights; a checkpoint after every epoch lets an interrupted run resume. Under torchrun
(torch.distributed initialised by env vars) the student is wrapped in DDP, data is sharded by
rank, and only rank 0 writes.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepress.compress import calibrate, load
from edgepress.options import Distill
from edgepress.errors import UserError, choices

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
CHECKPOINT = "last.pt"


DistillConfig = Distill  # the [distill] options, declared once in options.py


@dataclass
class DistillResult:
    model: nn.Module  # the student with its best weights, in eval mode
    history: list = field(default_factory=list)  # per epoch: loss, metric
    best_epoch: int = -1
    best_metric: float | None = None
    metric_name: str = ""
    resumed_from: int | None = None
    rank: int = 0  # this process's rank under torchrun (only rank 0 writes outputs)

    def figures(self) -> dict:
        return {"epochs_run": len(self.history), "best_epoch": self.best_epoch,
                "metric": self.metric_name, "best_metric": self.best_metric,
                "resumed_from_epoch": self.resumed_from, "history": self.history}


def kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def check(cfg: DistillConfig) -> DistillConfig:
    """The [distill] options that cannot mean anything, named; no method means logits."""
    cfg = replace(cfg, method=cfg.method or "logits")
    if cfg.method not in METHODS:
        raise choices("distill method", cfg.method, METHODS)
    if cfg.optimizer not in OPTIMIZERS:
        raise choices("distill optimizer", cfg.optimizer, OPTIMIZERS)
    if cfg.schedule not in SCHEDULES:
        raise choices("distill schedule", cfg.schedule, SCHEDULES)
    for name, value, ok in (("epochs", cfg.epochs, cfg.epochs >= 1),
                            ("batch_size", cfg.batch_size, cfg.batch_size >= 1),
                            ("lr", cfg.lr, cfg.lr > 0), ("temperature", cfg.temperature,
                                                         cfg.temperature > 0),
                            ("alpha", cfg.alpha, 0 <= cfg.alpha <= 1),
                            ("patience", cfg.patience, cfg.patience >= 0)):
        if not ok:
            raise UserError(f"distill {name} {value!r} is out of range")
    if cfg.method == "features" and not cfg.features:
        raise UserError("distill method 'features' needs layer pairs: features = "
                        "[\"student.layer=teacher.layer\", ...]")
    return cfg


def fit(student: nn.Module, teacher: nn.Module, cfg: DistillConfig, train, val=None,
        progress: bool = True, seed: int = 0) -> DistillResult:
    """Distills `teacher` into `student` (modified in place and returned in the result).

    `train` / `val` are calibrate.Dataset-like objects (labelled() yields (sample, label)).
    """
    cfg = check(cfg)
    torch.manual_seed(seed)
    rank, world = _dist_info()
    x, y = as_tensors(train)
    vx, vy = as_tensors(val) if val is not None else (x, y)
    teacher = teacher.eval()
    pairs = METHODS[cfg.method](student, teacher, cfg, x)
    trainer = _Trainer(student, teacher, cfg, pairs, world, steps=_steps(cfg, x, world), seed=seed)
    result = DistillResult(student, metric_name="accuracy" if vy is not None else
                           "agreement with teacher", rank=rank)
    start = trainer.resume(cfg, result)
    for epoch in range(start, cfg.epochs):
        loss = trainer.epoch(x, y, epoch, rank, world, progress and rank == 0)
        metric = evaluate(student, teacher, vx, vy)
        result.history.append({"epoch": epoch, "loss": loss, result.metric_name: metric})
        if progress and rank == 0:
            print(f"distill epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, "
                  f"{result.metric_name} {metric:.4f}", file=sys.stderr)
        if result.best_metric is None or metric > result.best_metric:
            result.best_metric, result.best_epoch = metric, epoch
            trainer.best_state = copy.deepcopy(student.state_dict())
        trainer.save(cfg, result, epoch, rank)
        if cfg.patience and epoch - result.best_epoch >= cfg.patience:
            break  # early stopping: the validation metric stopped improving
    student.load_state_dict(trainer.best_state)
    trainer.close()
    return result


def evaluate(model, teacher, x: dict, y) -> float:
    """Accuracy with labels, else top-1 agreement with the teacher (fraction in [0, 1])."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([_logits(model(**b)).argmax(-1) for b in _chunks(x, 256)])
        if y is None:
            y = torch.cat([_logits(teacher(**b)).argmax(-1) for b in _chunks(x, 256)])
    return float((pred.reshape(-1) == y.reshape(-1)).float().mean())


class _Trainer:
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
        order = _shard(torch.randperm(_n(x), generator=_gen(self.seed, epoch)), rank, world)
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
            t_logits = _logits(self.teacher(**batch))
        s_logits = _logits(self.model(**batch))
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


# ---- methods: which extra losses ride along with the logit KD -----------------------------------

def _logits_only(student, teacher, cfg, x) -> list:
    return []


def _with_features(student, teacher, cfg, x) -> list:
    pairs = []
    for text in cfg.features:
        s_name, sep, t_name = text.partition("=")
        if not sep:
            raise UserError(f"distill feature pair {text!r}: expected student.layer=teacher.layer")
        pairs.append(_FeaturePair(_module(student, s_name.strip(), "student"),
                                  _module(teacher, t_name.strip(), "teacher")))
    with torch.no_grad():  # one forward pass to learn both widths, then build projections
        sample = {k: v[:1] for k, v in x.items()}
        student.eval()(**sample)
        teacher(**sample)
    for pair in pairs:
        pair.build()
    return pairs


class _FeaturePair(nn.Module):
    """Captures a student and a teacher layer's outputs; MSE between them after projecting the
    student's to the teacher's width (channels for 4-D maps, last dim otherwise)."""

    def __init__(self, s_mod: nn.Module, t_mod: nn.Module):
        super().__init__()
        self.s_out = self.t_out = None
        self.proj: nn.Module = nn.Identity()
        self._hooks = [s_mod.register_forward_hook(lambda m, i, o: setattr(self, "s_out", o)),
                       t_mod.register_forward_hook(lambda m, i, o: setattr(self, "t_out", o))]

    def build(self) -> None:
        s, t = self.s_out, self.t_out
        conv = s.dim() == 4
        sw, tw = (s.shape[1], t.shape[1]) if conv else (s.shape[-1], t.shape[-1])
        if sw != tw:
            self.proj = nn.Conv2d(sw, tw, 1, bias=False) if conv else nn.Linear(sw, tw, bias=False)

    def clear(self) -> None:
        self.s_out = self.t_out = None

    def loss(self) -> torch.Tensor:
        return F.mse_loss(self.proj(self.s_out), self.t_out.detach())

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _module(model: nn.Module, name: str, which: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        some = [n for n in modules if n][:8]
        raise UserError(f"distill feature layer {name!r} is not in the {which}; its layers "
                        f"include: {', '.join(some)}")
    return modules[name]


METHODS = {"logits": _logits_only, "features": _with_features}


# ---- data, schedule, distributed ------------------------------------------------------------------

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


def _n(x: dict) -> int:
    return next(iter(x.values())).shape[0]


def _chunks(x: dict, size: int):
    for i in range(0, _n(x), size):
        yield {k: v[i:i + size] for k, v in x.items()}


def _logits(out) -> torch.Tensor:
    return load.outputs(out)[0]


def _steps(cfg, x, world) -> int:
    per_rank = max(1, cfg.batch_size // world)
    return cfg.epochs * math.ceil(math.ceil(_n(x) / world) / per_rank)


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


def _dist_info() -> tuple[int, int]:
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


# ---- the stage: teacher taken before prune, student distilled after it --------------------------

def split_teacher(state, cfg: Distill):
    """Keeps the teacher before pruning touches the model: --teacher SOURCE, else a copy of the
    model as loaded. With --student, the model becomes that student."""
    if not cfg.method:
        for flag, value in (("--teacher", cfg.teacher), ("--student", cfg.student),
                            ("--train", state.recipe.data.train)):
            if value:
                raise UserError(f"{flag} applies to distillation: add --distill logits|features")
        return state
    check(cfg)
    loaded, shapes = state.loaded, state.recipe.model.input_shape
    if loaded.model is None:
        raise UserError(f"--distill needs a torch model; {loaded.source!r} is ONNX")
    state.teacher = (load.open_source(cfg.teacher, None, shapes).model if cfg.teacher
                     else copy.deepcopy(loaded.model))
    if cfg.student:
        loaded.model = load.open_source(cfg.student, None, shapes).model.train()
        state.stages["student"] = {"source": cfg.student}
    return state


def apply(state, cfg: Distill):
    """The stage: distills state.teacher into the (pruned) model, in place."""
    if not cfg.method:
        return state
    data, seed = state.recipe.data, state.recipe.verify.seed
    if not data.train:
        raise UserError("--distill needs training data: --train DATA (.npz of the model's "
                        "inputs with optional `labels`, image folder or module:function)")
    train = calibrate.open_option(data.train, state.loaded, data, seed=seed)
    val_source = data.val or data.eval
    val = calibrate.open_option(val_source, state.loaded, data) if val_source else None
    result = fit(state.loaded.model, state.teacher, cfg, train, val, seed=seed)
    state.loaded.model, state.rank = result.model.eval(), result.rank
    state.stages["distill"] = {**result.figures(), "teacher": cfg.teacher or "the source model",
                               "train": train.record(), "config": {**vars(check(cfg)),
                                                                   "seed": seed}}
    if data.eval:  # the teacher's own score on the held-out data, for the summary
        ex, ey = as_tensors(calibrate.open_option(data.eval, state.loaded, data))
        state.stages["distill"]["teacher_eval"] = {
            "metric": "accuracy" if ey is not None else "agreement",
            "value": evaluate(state.teacher, state.teacher, ex, ey)}
    return state


def describe(figures: dict) -> list[str]:
    """What the CLI prints about distillation."""
    d = figures
    line = (f"distilled from {d['teacher']}: best {d['metric']} {d['best_metric']:.4f} at epoch "
            f"{d['best_epoch'] + 1} of {d['epochs_run']}")
    if "teacher_eval" in d:
        t = d["teacher_eval"]
        line += f"; teacher {t['metric']} {100 * t['value']:.2f}% on eval data"
    return [line]
