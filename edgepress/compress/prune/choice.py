"""auto:macs=F and auto:latency=F's choice: per-layer ratios from a sensitivity scan (auto.scan)
that reach the target at the least summed drop. `choose` aims at MACs, counted; `choose_latency`
aims at a measured latency table (latency.py), then times the chosen plan whole and moves its goal
until the measured latency meets the target, as close under it as the scanned ratios allow.
"""

from __future__ import annotations

import contextlib

from edgepress.compress.prune import latency, timing
from edgepress.compress.prune.measure import macs
from edgepress.compress.prune.plan import PruneConfig
from edgepress.compress.prune.trials import prune_layers
from edgepress.errors import UserError


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


def latency_plan(model, example, result, base, cfg) -> tuple[dict, dict]:
    where = latency.Where(cfg.latency_format, cfg.latency_precision, cfg.latency_on,
                          cfg.latency_threads, cfg.latency_cache)
    with contextlib.closing(timing.timer_for(where)) as timer:  # the unpruned file reused
        table = latency.table(model, example, result, where, timer)
        ratios, rounds = choose_latency(
            model, example, result, base, cfg.ratio, table,
            lambda pruned: latency.measured_ratio(model, pruned, example, where, timer))
    return ratios, {"latency": {**where.__dict__, "table_file": table.record["file"],
                                "cells_measured_now": table.record["measured_now"],
                                "unpruned_ms_in_table": round(table.whole_ms, 4),
                                "table_scale": round(table.scale, 4),
                                "rounds": rounds, "table_ms": table.per_layer()}}
