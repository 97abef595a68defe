"""auto:macs=F and auto:latency=F, and the sensitivity scan behind them: how much each layer's
channels matter, measured, not guessed.

`scan` prunes each prunable layer alone (through the channels method, so coupled layers go
with it) at several ratios and measures the metric drop on eval data: accuracy where the data has
labels, otherwise top-1 agreement with the unpruned model, each trial with its BatchNorm
statistics re-estimated first when the stage will re-estimate them. `choose` turns a scan into
per-layer ratios that reach a MACs target with the least summed drop (`--prune auto:macs=F`);
`choose_latency` does the same against a measured latency table (latency.py), then times the
chosen plan whole and moves its goal until the measured latency meets the target, as close
under it as the scanned ratios allow.
Used by `edgepress inspect SOURCE --prune-sensitivity --eval DATA` and by prune's auto method.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import torch

from edgepress import progress
from edgepress.compress.prune import channels, latency, recalibrate, trials
from edgepress.compress.prune.trials import prune_layers
from edgepress.compress.prune.measure import batches, execution_order, first_output, macs, \
    measure, skipped_layers
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


def choose(model, example: dict, scan_result: dict, cfg: PruneConfig, target: float) -> dict:
    """Per-layer ratios {name: ratio} whose pruned model has <= `target` x the MACs: greedy, each
    step takes the layer ratio with the least drop per MAC saved. Per-layer savings do not simply
    add up (two coupled cuts share a layer), so the result is measured and the plan tightened."""
    goal = target
    for _ in range(6):
        ratios = _greedy(scan_result["layers"], 1 - goal, _macs_saved)
        trial = prune_layers(model, example, cfg, ratios)
        achieved = macs(trial, example) / scan_result["macs"]
        if achieved <= target + 0.01:
            return ratios
        goal -= achieved - target
        if goal <= 0:
            break
    raise UserError(f"--prune auto:macs={target:g}: the scanned ratios (up to "
                    f"{max(scan_result['ratios']):g} per layer) reach only {achieved:.2f} x the "
                    f"MACs{_left_whole(scan_result)}; ask for a larger target")


def _macs_saved(chosen) -> float:
    return sum(t["macs_saved"] for t in chosen)


def _greedy(layers: list, saving: float, saved) -> dict:
    """Each step moves one layer to its next ratio: the one with the least drop per fraction
    saved, where `saved(trials)` is the fraction the chosen trials save together (MACs add up;
    a latency table predicts)."""
    state = {layer["name"]: -1 for layer in layers}  # index of the chosen trial, -1: unpruned

    def value(layer, i, field):
        return layer["trials"][i][field] if i >= 0 else 0.0

    def chosen(moved=None, to=None):
        at = {layer["name"]: to if layer is moved else state[layer["name"]] for layer in layers}
        return [layer["trials"][at[layer["name"]]] for layer in layers if at[layer["name"]] >= 0]

    def step(layer, i):
        """The layer's next trial that saves more, with what it saves: ratios a rounding of the
        kept channels maps to the same widths save nothing over each other and are passed over
        (else a layer whose 0.25 and 0.5 both keep 8 of 16 channels stops the greedy there)."""
        for j in range(i + 1, len(layer["trials"])):
            after = saved(chosen(layer, j))
            if after > now:
                return j, after
        return None

    now = saved(chosen())
    while now < saving:
        best = None
        for layer in layers:
            i = state[layer["name"]]
            nxt = step(layer, i)
            if nxt is None:
                continue
            j, after = nxt
            cost = (max(value(layer, j, "drop") - value(layer, i, "drop"), 0.0)
                    + 0.1 * (_noise(layer, j) - _noise(layer, i)) + 1e-3)
            if best is None or cost / (after - now) < best[0]:
                best = (cost / (after - now), layer, after, j)
        if best is None:
            break
        state[best[1]["name"]] = best[3]
        now = best[2]
    return {layer["name"]: layer["trials"][state[layer["name"]]]["ratio"]
            for layer in layers if state[layer["name"]] >= 0}


LATENCY_ROUNDS = 5  # plans measured whole at most
LATENCY_STEPS = 12  # goals tried at most (a goal whose plan was measured already costs nothing)
LOOSE_BAND = 0.05  # a plan measured this much below the target is close enough


def choose_latency(model, example: dict, scan_result: dict, cfg: PruneConfig, target: float,
                   table, check, pruned_copy=prune_layers) -> tuple[dict, list]:
    """(per-layer ratios, the rounds tried) whose pruned model runs in <= `target` x the unpruned
    latency as measured by `check(pruned) -> {"ratio", ...}`: greedy on the table's prediction
    to a goal, then measured whole. The goal moves by what the measurement missed it by until one
    plan meets the target and another does not; then it is interpolated between the two, since
    the table's prediction can be far flatter than the measurement (crepe tiny: predicted 0.73
    and 0.91 measured 0.28 and 0.75, and stepping by the miss swung between those two plans,
    keeping the 0.28 one for a 0.5 target). A plan already measured is not measured again. The
    plan kept (marked "chosen") is the slowest that meets the target; a plan within LOOSE_BAND
    below it ends the search."""
    goal, rounds, measured = target, [], {}
    meets = slow = None  # (goal, ratio): the loosest goal that met the target, the tightest not
    for _ in range(LATENCY_STEPS):
        ratios = _greedy(scan_result["layers"], 1 - goal, table.saved)
        key = tuple(sorted(ratios.items()))
        if key not in measured:
            if len(rounds) == LATENCY_ROUNDS:
                break
            got = check(pruned_copy(model, example, cfg, ratios))
            predicted = table.predict(_trials_of(scan_result["layers"], ratios)) / table.whole_ms
            rounds.append({"goal": round(goal, 4), "predicted": round(predicted, 4), **got})
            measured[key] = (ratios, rounds[-1])
        ratio = measured[key][1]["ratio"]
        if ratio <= target + 0.01:
            meets = (goal, ratio) if meets is None or goal > meets[0] else meets
            if ratio >= target - LOOSE_BAND:
                break
        else:
            slow = (goal, ratio) if slow is None or goal < slow[0] else slow
        goal = _next_goal(goal, ratio, target, meets, slow)
        if goal is None:
            break
    met = [m for m in measured.values() if m[1]["ratio"] <= target + 0.01]
    if met:
        ratios, chosen = max(met, key=lambda m: m[1]["ratio"])
        chosen["chosen"] = True
        return ratios, rounds
    raise UserError(f"--prune auto:latency={target:g}: the scanned ratios (up to "
                    f"{max(scan_result['ratios']):g} per layer) reach only "
                    f"{rounds[-1]['ratio']:.2f} x the measured latency{_left_whole(scan_result)}; "
                    f"ask for a larger target")


def _next_goal(goal, ratio, target, meets, slow):
    """The next goal: moved by the miss until a plan meeting the target and one too slow bracket
    it, then interpolated between them (kept off their ends so each step moves); None when there
    is nothing left to try."""
    if meets is None or slow is None:
        moved = goal + target - ratio
        if not 0 < moved < 1:  # halfway to the end instead: a table that predicts far less
            moved = (goal + (moved >= 1)) / 2  # than is measured needs goals near 1 (ResNet-18:
        return moved if abs(moved - goal) > 1e-3 else None  # 0.87 predicted, 0.21 measured)
    (g_lo, r_lo), (g_hi, r_hi) = meets, slow
    if g_hi - g_lo < 1e-3:  # no plan between the two (or a goal that is not monotone)
        return None
    inside = g_lo + (target - r_lo) * (g_hi - g_lo) / max(r_hi - r_lo, 1e-6)
    margin = 0.1 * (g_hi - g_lo)
    return min(max(inside, g_lo + margin), g_hi - margin)


def _left_whole(scan_result: dict) -> str:
    """The layers no plan may prune, for the error that says a target is out of reach: the
    default-skipped stem is often why (--prune-skip-defaults no prunes it)."""
    skipped = scan_result.get("skipped") or {}
    if not skipped:
        return ""
    return " with " + ", ".join(f"{n} ({why})" for n, why in skipped.items()) + " left whole"


def chosen_round(latency_figures: dict) -> dict:
    """The measured round of the plan auto:latency kept (the manifest's auto.latency)."""
    return next(r for r in latency_figures["rounds"] if r.get("chosen"))


def _trials_of(layers: list, ratios: dict) -> list:
    return [t for layer in layers for t in layer["trials"]
            if ratios.get(layer["name"]) == t["ratio"]]


def _noise(layer, i) -> float:
    """Relative error power of the outputs (0: identical, 1: all noise) at trial i; it separates
    layers where the top-1 metric does not move (a saturated or coarse metric)."""
    return 10 ** (-layer["trials"][i]["snr_db"] / 10) if i >= 0 else 0.0


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
        ratios, record = _latency_plan(model, example, result, base, cfg)
    else:
        ratios = choose(model, example, result, base, target=cfg.ratio)
    notes = channels.apply(model, replace(base, ratio=0.0, layer_ratios=tuple(ratios.items())),
                           example, skipped, data) or {}
    return {**notes, "auto": {f"{cfg.aim}_target": cfg.ratio, "chosen_ratios": ratios,
                              "metric": result["metric"], "baseline": result["baseline"],
                              "samples": result["samples"], "scan": result["layers"],
                              **record}}


def _latency_plan(model, example, result, base, cfg) -> tuple[dict, dict]:
    where = latency.Where(cfg.latency_format, cfg.latency_precision, cfg.latency_on,
                          cfg.latency_threads, cfg.latency_cache)
    with contextlib.closing(latency.timer_for(where)) as timer:  # the unpruned file reused
        table = latency.table(model, example, result, where, timer)
        ratios, rounds = choose_latency(
            model, example, result, base, cfg.ratio, table,
            lambda pruned: latency.measured_ratio(model, pruned, example, where, timer))
    return ratios, {"latency": {**where.__dict__, "table_file": table.record["file"],
                                "cells_measured_now": table.record["measured_now"],
                                "unpruned_ms_in_table": round(table.whole_ms, 4),
                                "table_scale": round(table.scale, 4),
                                "rounds": rounds, "table_ms": table.per_layer()}}

