"""One sensitivity trial (a layer's group pruned at one ratio): on a pruned copy, or, where
the model allows, without copies: the channels the trial would remove are zeroed in place (and
put back after), on one dependency graph built once.

torch-pruning's graph is bound to the module instance it traced, so a pruned copy needs a new
graph, a new pruner and a deep copy per trial: on MobileNetV2 that was most of the scan's time.
A channel zeroed in every layer of its coupled group (its producers' rows and biases, the
BatchNorm's scale and shift, its consumers' input columns) contributes exactly nothing downstream,
which is what removing it does, for groups made of Conv (plain or depthwise), Linear and
BatchNorm layers; anything else (attention heads, grouped convs, norms over channels) keeps the
copies. The channels are chosen as channels.apply chooses them for a one-layer ratio (the group's
importance, lowest first, the kept count rounded down to --prune-round-to), and the scan checks
its first masked trial against a real pruned copy before trusting the rest (auto.scan).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import replace

import torch
from torch import nn

from edgepress.compress.prune import channels
from edgepress.compress.prune.measure import PRUNABLE, each_layer, measure

MASKABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
            nn.BatchNorm3d)


def prune_layers(model, example, cfg, ratios: dict):
    """A pruned copy of `model`: only the layers in `ratios` (and those coupled to them)."""
    trial = copy.deepcopy(model)
    plan = replace(cfg, method="channels", ratio=0.0, layer_ratios=tuple(ratios.items()))
    channels.apply(trial, plan, example, {n: "skipped" for n in cfg.skip}, None)
    return trial.eval()


@contextlib.contextmanager
def on_copy(model, example, cfg, base: dict, name: str, ratio: float):
    """(model to measure, {layer: [out, in]} changed, MACs, same output shapes) of a trial."""
    pruned = prune_layers(model, example, cfg, {name: ratio})
    after = measure(pruned, example)
    changed = {n: w for n, w in after["widths"].items() if w != base["widths"][n]}
    yield pruned, changed, after["macs"], after["output_shapes"] == base["output_shapes"]


def masked(model, example, cfg, skipped: dict, called: list):
    """A Masks for the model, or None where masks would not equal removal (see the top)."""
    if cfg.importance == "taylor" or not supported(model, skipped, called):
        return None  # taylor ranks on gradients the copies accumulate for themselves
    return Masks(model, example, cfg, skipped)


def supported(model: nn.Module, skipped, called: list) -> bool:
    """Every module with weights is maskable (convs plain or depthwise), and the last layer a
    forward pass calls (the output's) is skipped, so no trial can change an output's shape."""
    for m in model.modules():
        if next(m.parameters(recurse=False), None) is None:
            continue
        if not isinstance(m, MASKABLE) or isinstance(getattr(m, "num_heads", None), int) \
                or getattr(m, "groups", 1) not in (1, getattr(m, "in_channels", 1)):
            return False
    return bool(called) and called[-1] in skipped


class Masks:
    """`with masks.trial(base, name, ratio) as (model, changed, macs, True):` as on_copy, the
    model itself with that layer's group's channels zeroed."""

    def __init__(self, model, example, cfg, skipped):
        import torch_pruning as tp

        self.model, self.cfg = model, cfg
        self.graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        self.importance = channels._importance(cfg.importance)
        named = dict(model.named_modules())
        self.ignored = {named[n] for n in skipped}
        self.name_of = {m: n for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
        self.layer_macs = _layer_macs(model, example)
        self.total_macs = measure(model, example)["macs"]

    def trial_of(self, base: dict):
        """trial(name, ratio), as the scan calls it."""
        def trial(name, ratio):
            return self.trial(base, name, ratio)
        return trial

    @contextlib.contextmanager
    def trial(self, base: dict, name: str, ratio: float):
        module = dict(self.model.named_modules())[name]
        group = self._group(module, ratio)
        if group is None:  # nothing removed, as torch-pruning would remove nothing
            yield self.model, {}, base["macs"], True
            return
        saved = [(t, t.detach().clone()) for t in _touched(group)]
        try:
            with torch.no_grad():
                for dep, idxs in group:
                    _zero(dep.target.module, idxs, self.graph.is_out_channel_pruning_fn(dep.handler))
            after = self._after(group)
            yield self.model, after["widths"], after["macs"], True
        finally:
            with torch.no_grad():
                for t, value in saved:
                    t.copy_(value)

    def _group(self, module, ratio: float):
        out_fn = self.graph.get_pruner_of_module(module).prune_out_channels
        count = module.weight.shape[0]
        full = self.graph.get_pruning_group(module, out_fn, list(range(count)))
        for dep, _ in full:
            target = dep.target.module
            if self.graph.is_out_channel_pruning_fn(dep.handler) and (
                    target in self.ignored or _too_narrow(target, module, ratio, self.cfg)):
                return None  # torch-pruning leaves a group with an ignored layer whole
        kept = int(count * (1 - min(ratio, 0.9)))  # channels.py's max_pruning_ratio
        if self.cfg.round_to > 1:
            kept -= kept % self.cfg.round_to
        if kept >= count:
            return None
        imp = self.importance(full)
        idxs = torch.argsort(imp)[: count - kept].tolist()
        return self.graph.get_pruning_group(module, out_fn, idxs)

    def _after(self, group) -> dict:
        widths, macs = {}, self.total_macs
        for dep, idxs in group:
            m = dep.target.module
            if m not in self.name_of:
                continue
            out, inpg = widths.get(self.name_of[m], list(m.weight.shape[:2]))
            depthwise = isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.groups > 1
            if self.graph.is_out_channel_pruning_fn(dep.handler) or depthwise:
                out = m.weight.shape[0] - len(idxs)
            else:
                inpg = m.weight.shape[1] - len(idxs)
            widths[self.name_of[m]] = [out, inpg]
        for name, (out, inpg) in widths.items():
            w = dict(self.model.named_modules())[name].weight
            macs -= self.layer_macs[name] * (1 - out * inpg / (w.shape[0] * w.shape[1]))
        return {"widths": widths, "macs": round(macs)}


def _too_narrow(target, root, ratio, cfg) -> bool:
    # channels._too_narrow: a layer rounding would empty is ignored, and its group left whole
    if cfg.round_to <= 1 or not isinstance(target, PRUNABLE):
        return False
    return target.weight.shape[0] * (1 - (ratio if target is root else 0.0)) < cfg.round_to


def _touched(group):
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.Module):
            yield from (t for t in (getattr(m, "weight", None), getattr(m, "bias", None))
                        if isinstance(t, torch.Tensor))


def _zero(m, idxs, out: bool) -> None:
    if not isinstance(m, MASKABLE):
        return  # an op node (add, concat, reshape): nothing stored
    depthwise = isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.groups > 1
    if m.weight is None:
        return  # a BatchNorm without affine: its consumers' zeroed inputs suffice
    if out or depthwise or isinstance(m, nn.modules.batchnorm._BatchNorm):
        m.weight[idxs] = 0
        if m.bias is not None:
            m.bias[idxs] = 0
    else:
        m.weight[:, idxs] = 0


def _layer_macs(model, example) -> dict:
    """{layer: its MACs} from one forward pass: output elements x weights per output."""
    found = {}
    each_layer(model, example,
               lambda name, m, inputs, out: found.__setitem__(name, _macs_of(m, out)))
    return found


def _macs_of(m, out) -> int:
    w = m.weight
    per_output = w.shape[1] * (w[0, 0].numel() if w.dim() > 2 else 1)
    return int(out.numel() * per_output)
