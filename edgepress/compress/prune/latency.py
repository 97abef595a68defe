"""auto:latency=F's latency table: every prunable layer timed alone at each width the sensitivity
scan tried, in the format and precision of the bundle, with edgepress's runtime on the target
(this host, or over SSH a device edgepress was deployed to).

As NetAdapt (Yang et al. 2018) and HALP (Shen et al. 2022) do with per-layer lookup tables, the
model's latency under a plan is predicted from its layers: the unpruned model's measured latency
less what each layer saves at its (out, in) widths, a layer's input width set by the group that
prunes its producer. Layers timed alone miss what the engine does between them (activations,
memory traffic, the ops around each layer), which also shrinks with the widths, and each cell
carries its own per-call cost: on MobileNetV2 at load 8-17 the unscaled table predicted 0.85 x the
unpruned latency for a plan measured at 0.04. So each saving is scaled by the whole model's
measured time over the sum of its layers' cells at full width (every Conv/Linear, pruned or not),
all timed in one session (1.3-2.2 on MobileNetV2, ResNet-18 and crepe tiny here under load; 0.77
for MobileNetV2 at load ~2). The plan chosen from the prediction is then still measured
whole (choice.py); the timing itself is timing.py. Tables are cached on disk (one JSON
file per model architecture, format, precision, target and threads) and recorded in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from edgepress.compress.prune.measure import each_layer
from edgepress.compress.prune.timing import Where, timer_for  # Where: the target, as callers name it
from edgepress.errors import UserError

CHECK_ROUNDS, CHECK_BLOCK_S = 10, 0.25  # the whole-model check: unpruned and pruned interleaved


@dataclass(frozen=True)
class Layer:
    """One Conv/Linear as it runs in the model: what its latency depends on."""

    kind: str  # Conv1d, Conv2d, Conv3d, Linear
    shape: tuple  # its input's shape in the model (batch included)
    out: int  # weight.shape[0]
    inpg: int  # weight.shape[1]: input channels per group
    groups: int = 1
    depthwise: bool = False  # one input channel per group: pruning keeps groups == channels
    conv: tuple = ()  # (kernel_size, stride, padding, dilation)
    bias: bool = True

    def at(self, out: int, inpg: int) -> "Layer":
        groups = out if self.depthwise else self.groups
        channels = out if self.depthwise else inpg * self.groups
        axis = -1 if self.kind == "Linear" else 1
        shape = list(self.shape)
        shape[axis] = channels
        return replace(self, shape=tuple(shape), out=out, inpg=inpg, groups=groups)

    def signature(self) -> str:
        return json.dumps([self.kind, self.shape, self.out, self.inpg, self.groups,
                           list(map(str, self.conv)), self.bias])

    def module(self) -> nn.Module:
        if self.kind == "Linear":
            return nn.Linear(self.inpg, self.out, bias=self.bias)
        kernel, stride, padding, dilation = self.conv
        return getattr(nn, self.kind)(self.inpg * self.groups, self.out, kernel, stride, padding,
                                      dilation, self.groups, self.bias)


def layers(model: nn.Module, example: dict) -> dict:
    """{name: Layer} for every Conv/Linear a forward pass calls."""
    found = {}
    each_layer(model, example,
               lambda name, m, inputs, out: found.__setitem__(name, _layer(m, inputs[0].shape)))
    return found


def _layer(m, shape) -> Layer:
    shape, (out, inpg) = tuple(shape), m.weight.shape[:2]
    if isinstance(m, nn.Linear):
        return Layer("Linear", shape, out, inpg, bias=m.bias is not None)
    return Layer(type(m).__name__, shape, out, inpg, m.groups,
                 m.groups > 1 and m.groups == m.in_channels,
                 (m.kernel_size, m.stride, m.padding, m.dilation), m.bias is not None)


def cells(base: dict, scan_layers: list) -> dict:
    """{name: {Layer at each (out, in) combination a plan can give it}} from the scan's trials,
    for the layers whose widths a plan can change."""
    outs = {n: {lay.out} for n, lay in base.items()}
    ins = {n: {lay.inpg} for n, lay in base.items()}
    for entry in scan_layers:
        for trial in entry["trials"]:
            for name, (out, inpg) in trial["widths"].items():
                if name in base:
                    outs[name].add(out)
                    ins[name].add(inpg)
    return {n: {lay.at(o, i) for o in outs[n] for i in ins[n]} for n, lay in base.items()
            if len(outs[n]) * len(ins[n]) > 1}


def widths(base: dict, trials) -> dict:
    """{name: (out, in)} with the chosen trials applied: each narrows the dimensions its group
    owns, so a layer takes its output width from one trial and its input width from another."""
    out = {n: [lay.out, lay.inpg] for n, lay in base.items()}
    for trial in trials:
        for name, w in trial["widths"].items():
            if name in out:
                out[name] = [min(a, b) for a, b in zip(out[name], w)]
    return {n: tuple(w) for n, w in out.items()}


class Table:
    """Measured ms per layer cell and for the whole unpruned model; predicts a plan's latency."""

    def __init__(self, base: dict, cells_ms: dict, whole_ms: float, record: dict,
                 layers_ms: float | None = None):
        """layers_ms: the sum of every layer's full-width cell; None leaves savings unscaled."""
        self.base, self.cells_ms, self.whole_ms, self.record = base, cells_ms, whole_ms, record
        self.scale = whole_ms / layers_ms if layers_ms else 1.0

    def predict(self, trials) -> float:
        """Predicted ms of the model with the chosen trials applied."""
        saved = 0.0
        for name, (out, inpg) in widths(self.base, trials).items():
            lay = self.base[name]
            if (out, inpg) == (lay.out, lay.inpg):
                continue
            saved += self.cells_ms[lay.signature()] - self.cells_ms[lay.at(out, inpg).signature()]
        return self.whole_ms - self.scale * saved

    def saved(self, trials) -> float:
        """Fraction of the unpruned latency the chosen trials save, by the table."""
        return 1.0 - self.predict(trials) / self.whole_ms

    def per_layer(self) -> dict:
        """{name: {"OUTxIN": ms}}: the table as the manifest records it."""
        return {n: {f"{c.out}x{c.inpg}": round(self.cells_ms[c.signature()], 5)
                    for c in sorted(cs, key=lambda c: (-c.out, -c.inpg))}
                for n, cs in self.record["cells"].items()}


def table(model: nn.Module, example: dict, scan_result: dict, where: Where, timer=None) -> Table:
    """The latency table for the scan's trials: cached cells reused, the missing ones measured
    (all in one timing session, with the whole model, so they share the machine's state)."""
    base = layers(model, example)
    wanted = cells(base, scan_result["layers"])
    path = _cache_file(model, example, where)
    cached = _load(path)
    full = [*base.values()]  # every layer at full width, the unprunable too: the calibration
    todo = {c.signature(): c for c in [*full, *(c for cs in wanted.values() for c in cs)]
            if c.signature() not in cached["cells"]}
    timer = timer or timer_for(where)
    if todo or cached["whole_ms"] is None:
        # nn.Conv*d and nn.Linear name their argument `input`
        cell_models = {s: (c.module(), {"input": torch.randn(c.shape)}) for s, c in todo.items()}
        times = timer({**cell_models, "whole": (model, example)})
        cached["whole_ms"] = times.pop("whole")
        cached["cells"].update(times)
        _save(path, {**cached, "where": where.__dict__, "model": _arch(model, example)[:200]})
    record = {"cells": wanted, "file": str(path), "measured_now": len(todo)}
    layers_ms = sum(cached["cells"][lay.signature()] for lay in full)
    return Table(base, cached["cells"], cached["whole_ms"], record, layers_ms)


def measured_ratio(model: nn.Module, pruned: nn.Module, example: dict, where: Where,
                   timer=None) -> dict:
    """The pruned model's p50 over the unpruned one's, both whole, timed interleaved."""
    timer = timer or timer_for(where)
    times = timer({"unpruned": (model, example), "pruned": (pruned, example)},
                  rounds=CHECK_ROUNDS, block_s=CHECK_BLOCK_S)
    return {"unpruned_ms": round(times["unpruned"], 4), "pruned_ms": round(times["pruned"], 4),
            "ratio": round(times["pruned"] / times["unpruned"], 4)}


def _arch(model: nn.Module, example: dict) -> str:
    """What the latency depends on: the modules and their settings, the input shapes (not the
    weights: a table measured with random weights serves the trained model)."""
    return repr(model) + json.dumps({k: list(v.shape) for k, v in example.items()})


def _cache_file(model, example, where: Where) -> Path:
    here = f"{platform.node()}/{platform.machine()}" if where.on == "host" else where.on
    engine = _engine_version(where.fmt) if where.on == "host" else "the device's"
    key = json.dumps([_arch(model, example), where.fmt, where.precision, here, where.threads,
                      engine])
    folder = Path(where.cache) if where.cache else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgepress" / "latency"
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _engine_version(fmt: str) -> str:
    from importlib import metadata

    dist = "onnxruntime" if fmt == "onnx" else "ai-edge-litert"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _load(path: Path) -> dict:
    """A cached table, or an empty one where there is none (or it cannot be read: remeasured)."""
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached.get("cells"), dict):
            return cached
    except (OSError, ValueError, AttributeError):
        pass
    return {"cells": {}, "whole_ms": None}


def _save(path: Path, content: dict) -> None:
    """Written beside, then renamed: a table is whole or absent."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(content, indent=0))
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"--latency-cache: cannot write {str(path)!r} ({e.strerror or e})") \
            from None
