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
import sys
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from edgepress.compress import calibrate, load
from edgepress.compress.distill import features, trainer
from edgepress.compress.distill.trainer import CHECKPOINT, as_tensors, kd_loss
from edgepress.options import Distill
from edgepress.errors import UserError, one_of

__all__ = ["CHECKPOINT", "DistillConfig", "DistillResult", "METHODS", "apply", "as_tensors",
           "check", "describe", "evaluate", "fit", "kd_loss", "split_teacher"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")


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


def check(cfg: DistillConfig) -> DistillConfig:
    """The [distill] options that cannot mean anything, named; no method means logits."""
    cfg = replace(cfg, method=cfg.method or "logits")
    one_of("distill method", cfg.method, METHODS)
    one_of("distill optimizer", cfg.optimizer, OPTIMIZERS)
    one_of("distill schedule", cfg.schedule, SCHEDULES)
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
    rank, world = trainer.dist_info()
    x, y = as_tensors(train)
    vx, vy = as_tensors(val) if val is not None else (x, y)
    teacher = teacher.eval()
    pairs = METHODS[cfg.method](student, teacher, cfg, x)
    loop = trainer.Trainer(student, teacher, cfg, pairs, world,
                           steps=trainer.steps(cfg, x, world), seed=seed)
    result = DistillResult(student, metric_name="accuracy" if vy is not None else
                           "agreement with teacher", rank=rank)
    for epoch in range(loop.resume(cfg, result), cfg.epochs):
        loss = loop.epoch(x, y, epoch, rank, world, progress and rank == 0)
        _record(result, loop, epoch, loss, evaluate(student, teacher, vx, vy),
                progress and rank == 0)
        loop.save(cfg, result, epoch, rank)
        if cfg.patience and epoch - result.best_epoch >= cfg.patience:
            break  # early stopping: the validation metric stopped improving
    student.load_state_dict(loop.best_state)
    loop.close()
    return result


def _record(result, loop, epoch: int, loss: float, metric: float, show: bool) -> None:
    result.history.append({"epoch": epoch, "loss": loss, result.metric_name: metric})
    if show:
        print(f"distill epoch {epoch + 1}/{loop.cfg.epochs}: loss {loss:.4f}, "
              f"{result.metric_name} {metric:.4f}", file=sys.stderr)
    if result.best_metric is None or metric > result.best_metric:
        result.best_metric, result.best_epoch = metric, epoch
        loop.best_state = copy.deepcopy(result.model.state_dict())


def evaluate(model, teacher, x: dict, y) -> float:
    """Accuracy with labels, else top-1 agreement with the teacher (fraction in [0, 1])."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([trainer.logits(model(**b)).argmax(-1) for b in trainer.chunks(x, 256)])
        if y is None:
            y = torch.cat([trainer.logits(teacher(**b)).argmax(-1) for b in trainer.chunks(x, 256)])
    return float((pred.reshape(-1) == y.reshape(-1)).float().mean())


METHODS = {"logits": features.logits_only, "features": features.with_features}


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
