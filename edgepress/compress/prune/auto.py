"""auto:macs=F and auto:latency=F, and the sensitivity scan behind them: how much each layer's
channels matter, measured, not guessed.

`scan` prunes each prunable layer alone (through the channels method, so coupled layers go
with it) at several ratios and measures the metric drop on eval data: accuracy where the data has
labels, otherwise top-1 agreement with the unpruned model, each trial with its BatchNorm
statistics re-estimated first when the stage will re-estimate them; choice.py turns a scan into
per-layer ratios for a MACs or a latency target, and `apply` prunes by them.
Used by `edgepress inspect SOURCE --prune-sensitivity --eval DATA` and by prune's auto method.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import torch

from edgepress import progress
from edgepress.compress.prune import channels, choice, recalibrate, trials
from edgepress.compress.prune.measure import batches, execution_order, first_output, measure, \
    skipped_layers
from edgepress.compress.prune.plan import PruneConfig
from edgepress.errors import UserError

RATIOS = (0.25, 0.5, 0.75)
EVAL_LIMIT = 256  # samples per measurement: enough to rank layers, small enough to repeat often


def scan(model, example: dict, data, cfg: PruneConfig, ratios=RATIOS,
         limit: int = EVAL_LIMIT) -> dict:
    """{"metric", "baseline", "samples", "macs", "ratios", "skipped",
        "layers": [{"name", "trials": [{ratio, drop (points), snr_db, macs_saved (fraction),
                                        widths: {layer: [out, in per group]} it changed}]}]}"""
    for r in ratios:
        if not 0.0 < r < 1.0:
            raise UserError(f"--prune-ratios: {r:g} must be between 0 and 1 (exclusive)")
    base_cfg = replace(cfg, method="channels", ratio=0.0)
    skipped = skipped_layers(model, base_cfg, example)  # the same rule as the stage
    base_cfg = replace(base_cfg, skip=tuple(skipped), skip_defaults=False)
    metric = _Metric(model, data, limit, recalibrate_bn=cfg.recalibrate_bn)
    base = measure(model, example)
    called = execution_order(model, example)
    order = [n for n in called if n not in skipped]
    run_trial = _trial_runner(model, example, base_cfg, skipped, called, base, metric, ratios)
    groups = channels.coupled(model, example, order)
    layers, seen, tried = [], set(), set()
    with progress.bar("sensitivity scan", len(set(groups[n] for n in order))) as bar:
        for name in order:
            if groups[name] in tried:  # coupled to a layer already tried: the same trials again
                continue
            tried.add(groups[name])
            bar.update(0, note=name)
            entry = _trials(run_trial, name, ratios, metric, base, seen)
            if entry:
                layers.append({"name": name, "trials": entry})
            bar.update(1)
    return {"metric": metric.name, "baseline": metric.baseline, "samples": metric.samples,
            "macs": base["macs"], "ratios": list(ratios), "skipped": skipped,
            "trials_on": getattr(run_trial, "kind", "copies"), "layers": layers}


def _trial_runner(model, example, cfg, skipped, called, base, metric, ratios):
    """Masks in place where they equal removal and the first trial agrees with a pruned copy
    (drop, SNR, widths, MACs); else a pruned copy per trial."""
    def copies(name, r):
        return trials.on_copy(model, example, cfg, base, name, r)

    masks = trials.masked(model, example, cfg, skipped, called)
    if masks is None:
        return copies
    run = masks.trial_of(base)
    for name in (n for n in called if n not in skipped):
        got = [_measured(t(name, ratios[0]), metric) for t in (run, copies)]
        if got[1][1]:  # the first layer whose trial removes something
            if not _agree(*got):
                return copies
            break
    run.kind = "masks"
    return run


def _measured(trial, metric) -> tuple:
    with trial as (pruned, changed, macs_after, _):
        score, snr_db = metric.measure(pruned)
    return score, changed, macs_after, snr_db


def _agree(a, b) -> bool:
    """Two runs of one trial agree: same widths, MACs within 0.1%, metric within half a point,
    SNR within 0.1 dB (float sums in another order), or both past 60 dB."""
    return (a[1] == b[1] and abs(a[2] - b[2]) <= 1e-3 * max(b[2], 1)
            and abs(a[0] - b[0]) <= 0.5 and (abs(a[3] - b[3]) <= 0.1 or min(a[3], b[3]) > 60))


def _trials(run_trial, name, ratios, metric, base, seen) -> list:
    """One layer at each ratio; [] when pruning it alone changes nothing new (it is coupled to a
    skipped layer, or to a layer already scanned: one entry per group of coupled layers) or
    changes an output's shape."""
    out = []
    for r in ratios:
        with run_trial(name, r) as (pruned, changed, macs_after, same_outputs):
            if not out:
                if not changed or tuple(sorted(changed)) in seen or not same_outputs:
                    return []
                seen.add(tuple(sorted(changed)))
            score, snr_db = metric.measure(pruned)
        out.append({"ratio": r, "drop": round(metric.baseline - score, 3),
                    "snr_db": round(snr_db, 2),
                    "macs_saved": round(1 - macs_after / base["macs"], 4), "widths": changed})
    return out


class _Metric:
    """Accuracy on labelled data, else top-1 agreement with the unpruned model, in percent; and
    the output SNR against the unpruned model, which moves even where top-1 does not.

    With `recalibrate_bn` (the stage re-estimates BatchNorm statistics after pruning,
    recalibrate.py), a trial is measured as the stage would leave it: its BatchNorm statistics
    re-estimated on the same samples first (and put back after, as masked trials run on the
    model itself). Measured as pruned, crepe tiny's trials all lost 50-98 points of top-1, so
    the scan ranked layers by noise; after re-estimation the drops separate them."""

    def __init__(self, model, data, limit: int, recalibrate_bn: bool = False):
        self.data, self.limit, self.recalibrate = data, limit, False
        self.reference = [first_output(_run(model, batch)) for batch, _ in batches(data, limit)]
        self.labelled = all(labels is not None for _, labels in batches(data, limit))
        self.name = "accuracy %" if self.labelled else "top-1 agreement with the unpruned model %"
        self.samples = sum(int(r.argmax(-1).numel()) for r in self.reference)  # top-1 decisions
        self.baseline = self.measure(model)[0]  # the unpruned model, with its own statistics
        self.recalibrate = recalibrate_bn

    def measure(self, model) -> tuple[float, float]:
        """(metric in percent, output SNR in dB, capped at 100) of `model` on the data."""
        with _statistics_kept(model):
            if self.recalibrate:
                recalibrate.batchnorms(model, self.data, self.limit)
            return self._measure(model)

    def _measure(self, model) -> tuple[float, float]:
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


@contextlib.contextmanager
def _statistics_kept(model):
    """Every BatchNorm's running statistics put back on exit."""
    kept = [(b, b.detach().clone()) for m in model.modules()
            if isinstance(m, recalibrate.NORMS) for b in m.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in kept:
                b.copy_(value)


def _run(model, batch):
    with torch.no_grad():
        return model.eval()(**batch)


def apply(model, cfg, example, skipped, data) -> dict:
    """The method: scan, choose per-layer ratios for the MACs or latency target, prune by them."""
    if data is None:
        raise UserError(f"--prune {cfg.spec()} measures each layer's sensitivity on data: pass "
                        f"--calib DATA (.npz of the model's inputs, optional labels)")
    base = replace(cfg, method="channels", skip=tuple(skipped), skip_defaults=False)
    result = scan(model, example, data, base)
    result["skipped"] = dict(skipped)  # with the stage's reasons (the scan saw them all as asked)
    record = {}
    if cfg.aim == "latency":
        ratios, record = choice.latency_plan(model, example, result, base, cfg)
    else:
        ratios = choice.choose(model, example, result, base, target=cfg.ratio)
    notes = channels.apply(model, replace(base, ratio=0.0, layer_ratios=tuple(ratios.items())),
                           example, skipped, data) or {}
    return {**notes, "auto": {f"{cfg.aim}_target": cfg.ratio, "chosen_ratios": ratios,
                              "metric": result["metric"], "baseline": result["baseline"],
                              "samples": result["samples"], "scan": result["layers"],
                              **record}}
