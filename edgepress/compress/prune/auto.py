"""auto:macs=F, and the sensitivity scan behind it: how much each layer's channels matter,
measured, not guessed.

`scan` prunes each prunable layer alone (through the channels method, so coupled layers go
with it) at several ratios and measures the metric drop on eval data: accuracy where the data has
labels, otherwise top-1 agreement with the unpruned model. `choose` turns a scan into per-layer
ratios that reach a MACs target with the least summed drop (`--prune auto:macs=F`).
Used by `edgepress inspect SOURCE --prune-sensitivity --eval DATA` and by prune's auto method.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from edgepress.compress.prune import channels
from edgepress.compress.prune.measure import batches, execution_order, first_output, macs, \
    measure, skipped_layers
from edgepress.compress.prune.plan import PruneConfig
from edgepress.errors import UserError

RATIOS = (0.25, 0.5, 0.75)
EVAL_LIMIT = 256  # samples per measurement: enough to rank layers, small enough to repeat often


def scan(model, example: dict, data, cfg: PruneConfig, ratios=RATIOS,
         limit: int = EVAL_LIMIT) -> dict:
    """{"metric", "baseline", "samples", "macs", "ratios", "skipped",
        "layers": [{"name", "trials": [{ratio, drop (points), snr_db, macs_saved (fraction)}]}]}"""
    for r in ratios:
        if not 0.0 < r < 1.0:
            raise UserError(f"--prune-ratios: {r:g} must be between 0 and 1 (exclusive)")
    base_cfg = replace(cfg, method="channels", ratio=0.0)
    skipped = skipped_layers(model, base_cfg, example)  # the same rule as the stage
    base_cfg = replace(base_cfg, skip=tuple(skipped), skip_defaults=False)
    metric = _Metric(model, data, limit)
    base = measure(model, example)
    layers, seen = [], set()
    for name in execution_order(model, example):
        if name in skipped:
            continue
        trials = _trials(model, example, base_cfg, name, ratios, metric, base, seen)
        if trials:
            layers.append({"name": name, "trials": trials})
    return {"metric": metric.name, "baseline": metric.baseline, "samples": metric.samples,
            "macs": base["macs"], "ratios": list(ratios), "skipped": skipped, "layers": layers}


def _trials(model, example, cfg, name, ratios, metric, base, seen) -> list:
    """One layer at each ratio; [] when pruning it alone changes nothing new (it is coupled to a
    skipped layer, or to a layer already scanned: one entry per group of coupled layers) or
    changes an output's shape."""
    trials = []
    for r in ratios:
        pruned = prune_layers(model, example, cfg, {name: r})
        after = measure(pruned, example)
        if not trials:
            changed = tuple(sorted(n for n, w in after["widths"].items()
                                   if w != base["widths"][n]))
            if not changed or changed in seen or after["output_shapes"] != base["output_shapes"]:
                return []
            seen.add(changed)
        score, snr_db = metric.measure(pruned)
        trials.append({"ratio": r, "drop": round(metric.baseline - score, 3),
                       "snr_db": round(snr_db, 2),
                       "macs_saved": round(1 - after["macs"] / base["macs"], 4)})
    return trials


def prune_layers(model, example, cfg, ratios: dict):
    """A pruned copy of `model`: only the layers in `ratios` (and those coupled to them)."""
    trial = copy.deepcopy(model)
    plan = replace(cfg, method="channels", ratio=0.0, layer_ratios=tuple(ratios.items()))
    channels.apply(trial, plan, example, {n: "skipped" for n in cfg.skip}, None)
    return trial.eval()


def choose(model, example: dict, scan_result: dict, cfg: PruneConfig, target: float) -> dict:
    """Per-layer ratios {name: ratio} whose pruned model has <= `target` x the MACs: greedy, each
    step takes the layer ratio with the least drop per MAC saved. Per-layer savings do not simply
    add up (two coupled cuts share a layer), so the result is measured and the plan tightened."""
    goal = target
    for _ in range(6):
        ratios = _greedy(scan_result["layers"], 1 - goal)
        trial = prune_layers(model, example, cfg, ratios)
        achieved = macs(trial, example) / scan_result["macs"]
        if achieved <= target + 0.01:
            return ratios
        goal -= achieved - target
        if goal <= 0:
            break
    raise UserError(f"--prune auto:macs={target:g}: the scanned ratios (up to "
                    f"{max(scan_result['ratios']):g} per layer) reach only {achieved:.2f} x the "
                    f"MACs; ask for a larger target")


def _greedy(layers: list, saving: float) -> dict:
    state = {layer["name"]: -1 for layer in layers}  # index of the chosen trial, -1: unpruned

    def value(layer, i, field):
        return layer["trials"][i][field] if i >= 0 else 0.0

    saved = 0.0
    while saved < saving:
        best = None
        for layer in layers:
            i = state[layer["name"]]
            if i + 1 >= len(layer["trials"]):
                continue
            gain = value(layer, i + 1, "macs_saved") - value(layer, i, "macs_saved")
            cost = (max(value(layer, i + 1, "drop") - value(layer, i, "drop"), 0.0)
                    + 0.1 * (_noise(layer, i + 1) - _noise(layer, i)) + 1e-3)
            if gain > 0 and (best is None or cost / gain < best[0]):
                best = (cost / gain, layer, gain)
        if best is None:
            break
        state[best[1]["name"]] += 1
        saved += best[2]
    return {layer["name"]: layer["trials"][state[layer["name"]]]["ratio"]
            for layer in layers if state[layer["name"]] >= 0}


def _noise(layer, i) -> float:
    """Relative error power of the outputs (0: identical, 1: all noise) at trial i; it separates
    layers where the top-1 metric does not move (a saturated or coarse metric)."""
    return 10 ** (-layer["trials"][i]["snr_db"] / 10) if i >= 0 else 0.0


class _Metric:
    """Accuracy on labelled data, else top-1 agreement with the unpruned model, in percent; and
    the output SNR against the unpruned model, which moves even where top-1 does not."""

    def __init__(self, model, data, limit: int):
        self.data, self.limit = data, limit
        self.reference = [first_output(_run(model, batch)) for batch, _ in batches(data, limit)]
        self.labelled = all(labels is not None for _, labels in batches(data, limit))
        self.name = "accuracy %" if self.labelled else "top-1 agreement with the unpruned model %"
        self.samples = sum(int(r.argmax(-1).numel()) for r in self.reference)  # top-1 decisions
        self.baseline = self.measure(model)[0]

    def measure(self, model) -> tuple[float, float]:
        """(metric in percent, output SNR in dB, capped at 100) of `model` on the data."""
        hits, signal, noise = 0, 0.0, 0.0
        for (batch, labels), ref in zip(batches(self.data, self.limit), self.reference):
            out = first_output(_run(model, batch))
            top1 = out.argmax(-1)
            truth = labels.reshape(top1.shape) if self.labelled else ref.argmax(-1)
            hits += int((top1 == truth).sum())
            signal += float((ref.double() ** 2).sum())
            noise += float(((out - ref).double() ** 2).sum())
        snr = 100.0 if noise <= signal * 1e-10 else 10 * np.log10(signal / noise)
        return round(100.0 * hits / self.samples, 3), float(snr)


def _run(model, batch):
    with torch.no_grad():
        return model.eval()(**batch)


def apply(model, cfg, example, skipped, data) -> dict:
    """The method: scan, choose per-layer ratios for the MACs target, prune by them."""
    if data is None:
        raise UserError(f"--prune {cfg.spec()} measures each layer's sensitivity on data: pass "
                        f"--calib DATA (.npz of the model's inputs, optional labels)")
    base = replace(cfg, method="channels", skip=tuple(skipped), skip_defaults=False)
    result = scan(model, example, data, base)
    ratios = choose(model, example, result, base, target=cfg.ratio)
    notes = channels.apply(model, replace(base, ratio=0.0, layer_ratios=tuple(ratios.items())),
                      example, skipped, data) or {}
    return {**notes, "auto": {"macs_target": cfg.ratio, "chosen_ratios": ratios,
                              "metric": result["metric"], "baseline": result["baseline"],
                              "samples": result["samples"], "scan": result["layers"]}}

