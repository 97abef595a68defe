"""distill: train a student to match a teacher (Hinton-style logit KD, optional feature KD).

The loss mixes the KD term on temperature-softened outputs (scaled by T^2 so its gradients keep
their size as T changes) with the task loss (on the labels, or on the teacher's decisions without
them), for softmax heads (KL + cross-entropy) or sigmoid / multi-label ones (binary cross-entropy
against the teacher's probabilities), chosen from what the teacher outputs (losses.py). Feature
KD adds an MSE between named layer pairs, through a learned 1x1 / linear projection when their
widths differ. Early stopping on the task metric (metrics.py) keeps the best weights; a
checkpoint after every epoch lets an interrupted run resume. Training runs on --train-device,
optionally under autocast (device.py); under torchrun (torch.distributed initialised by env vars)
the student is wrapped in DDP, one device per rank, data is sharded by rank, and only rank 0
writes.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from edgepress.compress import calibrate, load
from edgepress.compress.distill import cache, device, features, losses, metrics, trainer
from edgepress.compress.distill.losses import kd_loss, sigmoid_kd_loss
from edgepress.compress.distill.trainer import CHECKPOINT, as_tensors
from edgepress.options import Distill
from edgepress.errors import UserError, one_of

__all__ = ["CHECKPOINT", "DistillConfig", "DistillResult", "METHODS", "apply", "as_tensors",
           "check", "describe", "evaluate", "fit", "kd_loss", "sigmoid_kd_loss", "split_teacher"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")


DistillConfig = Distill  # the [distill] options, declared once in options.py


@dataclass
class DistillResult:
    model: nn.Module  # the student with its best weights, in eval mode
    history: list = field(default_factory=list)  # per epoch: loss, metric
    best_epoch: int = -1
    best_metric: float | None = None
    metric_name: str = ""  # as reports print it
    metric: str = "top1"  # the metric as resolved: top1, multilabel or module:function
    resumed_from: int | None = None
    rank: int = 0  # this process's rank under torchrun (only rank 0 writes outputs)
    # device, processes, amp, loss, samples_per_s (training steps only, all ranks together)
    trained_on: dict = field(default_factory=dict)

    def figures(self) -> dict:
        return {"epochs_run": len(self.history), "best_epoch": self.best_epoch,
                "metric": self.metric_name, "best_metric": self.best_metric,
                "trained_on": self.trained_on,
                "resumed_from_epoch": self.resumed_from, "history": self.history}


def check(cfg: DistillConfig) -> DistillConfig:
    """The [distill] options that cannot mean anything, named; no method means logits. A CUDA
    train device where there is none is refused here, before any work."""
    cfg = replace(cfg, method=cfg.method or "logits")
    one_of("distill method", cfg.method, METHODS)
    one_of("distill optimizer", cfg.optimizer, OPTIMIZERS)
    one_of("distill schedule", cfg.schedule, SCHEDULES)
    one_of("distill loss", cfg.loss, losses.LOSSES)
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
    device.check_amp(cfg.amp, device.resolve(cfg.train_device))
    return cfg


def fit(student: nn.Module, teacher: nn.Module, cfg: DistillConfig, train, val=None,
        progress: bool = True, seed: int = 0) -> DistillResult:
    """Distills `teacher` into `student` (modified in place, returned in the result, on the CPU
    whichever device trained it, so export does not depend on where training ran).

    `train` / `val` are calibrate.Dataset-like objects (labelled() yields (sample, label)).
    """
    cfg = check(cfg)
    torch.manual_seed(seed)
    where = device.resolve(cfg.train_device)
    rank, world = device.dist_info(where)
    x, y = as_tensors(train)
    teacher, student = teacher.eval().to(where), student.to(where)
    # The teacher is frozen and the data not augmented: its outputs are computed once (per
    # process: cache.py), and reused by every epoch (feature KD still runs it each step for its
    # layers' outputs).
    t_train = cache.teacher_outputs(teacher, x, where, cfg.amp, trainer.outputs)
    run = trainer.Run(where, losses.detect(t_train, cfg.loss), rank, world,
                      trainer.steps(cfg, x, world), seed)
    name, metric = metrics.resolve(cfg.metric, run.kind)
    vx, ref, labelled = _validation(val, x, y, t_train, teacher, run, cfg.amp)
    pairs = [pair.to(where) for pair in METHODS[cfg.method](student, teacher, cfg, x)]
    loop = trainer.Trainer(student, teacher, cfg, pairs, run)
    result = DistillResult(student, metric_name=_metric_name(name, labelled), metric=name,
                           rank=rank, trained_on={
                               "device": str(where), "processes": world, "amp": cfg.amp,
                               "loss": run.kind.family, "teacher_outputs": "per step" if pairs
                               else "cached"})
    show = progress and rank == 0
    trained, seconds = 0, 0.0
    for epoch in range(loop.resume(cfg, result), cfg.epochs):
        t0 = time.perf_counter()
        loss = loop.epoch(x, y, None if loop.pairs else t_train, epoch, show)
        seconds += time.perf_counter() - t0
        trained += trainer.samples_in(x)  # all ranks' shards: DDP keeps them in step
        result.trained_on["samples_per_s"] = round(trained / max(seconds, 1e-9), 1)
        score = metric(trainer.outputs(student, vx, where, cfg.amp).cpu(), ref)
        _record(result, loop, epoch, loss, score, show)
        loop.save(cfg, result, epoch)
        if cfg.patience and epoch - result.best_epoch >= cfg.patience:
            break  # early stopping: the validation metric stopped improving
    student.load_state_dict(loop.best_state)
    loop.close()
    teacher.cpu()
    student.cpu()
    return result


def _validation(val, x, y, t_train, teacher, run, amp):
    """(inputs, reference, labelled): what the metric scores the student on, against the labels,
    else the teacher's outputs (the cached ones when it validates on the training set)."""
    if val is None:
        return x, (y if y is not None else t_train.cpu()), y is not None
    vx, vy = as_tensors(val)
    if vy is not None:
        return vx, vy, True
    return vx, cache.teacher_outputs(teacher, vx, run.device, amp, trainer.outputs).cpu(), False


def _metric_name(name: str, labelled: bool) -> str:
    if name == "top1":
        return "accuracy" if labelled else "agreement with teacher"
    return name if labelled else f"{name} vs teacher"


def _record(result, loop, epoch: int, loss: float, metric: float, show: bool) -> None:
    result.history.append({"epoch": epoch, "loss": loss, result.metric_name: metric})
    if show:
        print(f"distill epoch {epoch + 1}/{loop.cfg.epochs}: loss {loss:.4f}, "
              f"{result.metric_name} {metric:.4f}", file=sys.stderr)
    if result.best_metric is None or metric > result.best_metric:
        result.best_metric, result.best_epoch = metric, epoch
        loop.best_state = copy.deepcopy(result.model.state_dict())


def evaluate(model, teacher, x: dict, y, metric: str = Distill.metric,
             loss: str = Distill.loss) -> float:
    """The task metric of `model` on `x` (on the CPU): against labels `y`, else against the
    teacher's outputs (top-1: accuracy / agreement, a fraction in [0, 1])."""
    cpu = torch.device("cpu")
    t_out = cache.teacher_outputs(teacher, x, cpu, None, trainer.outputs)
    _, fn = metrics.resolve(metric, losses.detect(t_out, loss))
    out = t_out if model is teacher else trainer.outputs(model, x, cpu)
    return fn(out, y if y is not None else t_out)


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
            "metric": _metric_name(result.metric, ey is not None),
            "value": evaluate(state.teacher, state.teacher, ex, ey, cfg.metric, cfg.loss)}
    return state


def describe(figures: dict) -> list[str]:
    """What the CLI prints about distillation."""
    d = figures
    line = (f"distilled from {d['teacher']}: best {d['metric']} {d['best_metric']:.4f} at epoch "
            f"{d['best_epoch'] + 1} of {d['epochs_run']}")
    on = d.get("trained_on", {})
    if "samples_per_s" in on:
        line += (f"; {on['samples_per_s']:g} samples/s on {on['device']}"
                 f"{' x ' + str(on['processes']) + ' processes' if on['processes'] > 1 else ''}")
    if "teacher_eval" in d:
        t = d["teacher_eval"]
        line += f"; teacher {t['metric']} {100 * t['value']:.2f}% on eval data"
    return [line]
