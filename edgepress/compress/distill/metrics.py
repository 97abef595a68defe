"""The task metric that early stopping and reports use: `top1`, `multilabel` (micro-F1 of the
decisions at p = 0.5) or a user's `module:function(outputs, reference) -> float`, where
`outputs` is the student's first output and `reference` the labels, or the teacher's first output
when the data has none. Higher is better."""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from edgepress.compress.distill.losses import Output, detect
from edgepress.errors import UserError

BUILT_IN = ("top1", "multilabel")


def resolve(name: str, kind: Output) -> tuple[str, Callable]:
    """(the metric's name for reports, fn(outputs, reference) -> float)."""
    if name == "auto":
        name = "multilabel" if kind.family == "sigmoid" else "top1"
    if name == "top1":
        return name, lambda out, ref: top1(kind, out, ref)
    if name == "multilabel":
        return name, lambda out, ref: multilabel(kind, out, ref)
    if ":" not in name:
        raise UserError(f"distill metric {name!r} is not one of: auto, {', '.join(BUILT_IN)}, "
                        f"module:function")
    return name, _user(name)


def top1(kind: Output, out, ref) -> float:
    if ref.dtype.is_floating_point and ref.shape == out.shape:
        ref = ref.argmax(-1)  # the teacher's outputs
    return float((out.argmax(-1).reshape(-1) == ref.reshape(-1)).float().mean())


def multilabel(kind: Output, out, ref) -> float:
    pred = _on(out)
    truth = (ref.bool() if _multi_hot(ref) else _on(ref)).reshape(pred.shape)
    total = int(pred.sum() + truth.sum())
    return 1.0 if total == 0 else float(2 * (pred & truth).sum() / total)


def _on(out) -> torch.Tensor:
    """Each label's decision: p > 0.5, or logit > 0 for outputs that are not probabilities
    (read from the values: the loss may have been forced to either family)."""
    return out > (0.5 if detect(out, "sigmoid").probabilities else 0.0)


def _multi_hot(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _user(spec: str) -> Callable:
    target, _, attr = spec.rpartition(":")
    try:
        fn = getattr(importlib.import_module(target), attr, None)
    except Exception as e:  # noqa: BLE001 - user code: any failure is the user's to fix
        raise UserError(f"distill metric {spec!r}: cannot import {target!r} "
                        f"({type(e).__name__}: {e})") from None
    if not callable(fn):
        raise UserError(f"distill metric {spec!r}: {target} has no callable {attr!r}")
    return lambda out, ref: float(fn(out, ref))
