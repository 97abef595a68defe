"""The KD and task losses, for the two kinds of output a classifier has: softmax (one class per
sample: KL on softened logits + cross-entropy) and sigmoid (independent labels, e.g. crepe's pitch
bins: binary cross-entropy against the teacher's probabilities).

A model may return logits or probabilities; losses always work on logits, recovered from
probabilities (log p for softmax, which softmax's shift invariance makes exact; logit(p) for
sigmoid), so the temperature softens both alike and autocast keeps the losses in fp32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgepress.errors import one_of

LOSSES = ("auto", "softmax", "sigmoid")
# Only probabilities of exactly 0 or 1 are clamped before their log: a wider clamp (torch.logit's
# eps) zeroes the gradient of every saturated output, and a student stuck at p = 1e-9 where the
# teacher says 0.9 would never learn (measured: multi-label F1 0.91 with eps=1e-6, 0.99 without).
_TINY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class Output:
    family: str  # softmax or sigmoid
    probabilities: bool  # the model returns probabilities, not logits

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if not self.probabilities:
            return out
        log_p = out.clamp_min(_TINY).log()
        if self.family == "softmax":
            return log_p
        return log_p - (1 - out).clamp_min(_TINY).log()  # logit(p), saturated ends kept


def detect(teacher_out: torch.Tensor, loss: str) -> Output:
    """What the teacher's outputs are: all in [0, 1] means probabilities; rows summing to 1 mean
    softmax. Logits cannot tell multi-label from single-label: `loss = sigmoid` says so."""
    one_of("distill loss", loss, LOSSES)
    out = teacher_out.float()
    probs = bool(out.numel()) and bool(((out >= 0) & (out <= 1)).all())
    sums_to_one = probs and bool(((out.sum(-1) - 1).abs() < 1e-3).all())
    if loss == "auto":
        loss = "sigmoid" if probs and not sums_to_one else "softmax"
    return Output(loss, probs if loss == "sigmoid" else sums_to_one)


def kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def sigmoid_kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """T^2 * BCE(sigmoid(student/T), sigmoid(teacher/T)), averaged over every label. The T^2
    keeps the gradient's size as T grows, as for softmax: d/ds = (sigmoid(s/T) - sigmoid(t/T))/T
    ~ (s - t) / (4 T^2)."""
    t = temperature
    target = torch.sigmoid(teacher_logits / t)
    return F.binary_cross_entropy_with_logits(student_logits / t, target) * (t * t)


def kd(kind: Output, student_out, teacher_out, temperature: float) -> torch.Tensor:
    fn = sigmoid_kd_loss if kind.family == "sigmoid" else kd_loss
    return fn(kind.logits(student_out), kind.logits(teacher_out), temperature)


def task(kind: Output, student_out, labels) -> torch.Tensor:
    """The hard-label loss: cross-entropy on class indices, BCE on multi-hot labels."""
    s = kind.logits(student_out)
    if kind.family == "sigmoid":
        return F.binary_cross_entropy_with_logits(s, labels.float().reshape(s.shape))
    return F.cross_entropy(s, labels)


def hard_labels(kind: Output, teacher_out) -> torch.Tensor:
    """Unlabelled data: the teacher's decisions stand in for labels."""
    if kind.family == "sigmoid":
        return (kind.logits(teacher_out) > 0).float()
    return teacher_out.argmax(-1)
