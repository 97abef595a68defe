"""The distillation methods: which extra losses ride along with the logit KD (feature pairs
through a learned projection when their widths differ)."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from edgepress.errors import UserError


def logits_only(student, teacher, cfg, x) -> list:
    return []


def with_features(student, teacher, cfg, x) -> list:
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
        # fp32 whatever autocast produced the captured outputs: the loss is computed outside it
        return F.mse_loss(self.proj(self.s_out.float()), self.t_out.detach().float())

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
