"""figures: the suite's headline figures from the measured rows (pure arithmetic over JSON-ready
dicts, so tests check it on made-up rows). Every headline is edgepress's own; the peers' figures
are computed beside it, named, never into it.

- vs_ort_default_p50 / vs_ort_default_drop: per model with both, edgepress int8 ONNX p50 over
  onnxruntime quantize_static's (geometric mean, every model) and its metric minus that peer's
  (mean in points, over the models with a real metric: digits and the pretrained ones).
- tflite_vs_aeq_p50: the same p50 ratio for edgepress int8 TFLite over AI Edge Quantizer's default
  static recipe.
- real_vs_best_peer: per real model, edgepress's best int8 task metric (over its int8 recipes)
  minus the best non-broken peer's, mean in points. Its ceiling (real_vs_best_peer_ceiling):
  edgepress's best fp32 metric minus that peer's, mean in points: what real_vs_best_peer would be
  were every int8 bundle to keep the fp32 metric exactly. Where the peers already keep it, no
  int8 can go past them except by chance.
- peak_efficiency_int8: edgepress's best int8 artifact's share of the formula's int8 peak; also
  against each engine's measured peak (the GEMM microbenchmark, models/gemm.py). Never clamped.
- size ratio: per model, edgepress int8 file size over its fp32 file (largest int8 recipe).
"""

from __future__ import annotations

import math

PEERS_OF = {"onnx": ("ort-default", "ort-dynamic", "nncf"),
            "tflite": ("aeq-default", "aeq-dynamic")}


def find(rows, model, tool, recipe, fmt):
    return next((r for r in rows if (r["model"], r["tool"], r["recipe"], r["format"])
                 == (model, tool, recipe, fmt)), None)


def measured(rows: list[dict]) -> list[dict]:
    """Rows that ran, without the microbenchmark's."""
    return [r for r in rows if not r.get("error") and not r.get("peak")]


def engine_peaks(rows: list[dict]) -> dict:
    """(format, precision, threads) -> GMAC/s of the GEMM microbenchmark."""
    return {(r["format"], r["precision"], t): run["gmacs_per_s"]
            for r in rows if r.get("peak") and not r.get("error") and r["tool"] == "edgepress"
            for t, run in r["runs"].items()}


def vs_measured(row: dict, threads: str, peaks: dict):
    peak = peaks.get((row["format"], row["precision"], threads))
    return row["runs"][threads]["gmacs_per_s"] / peak if peak else None


def _geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def _pairs(ok, peer, fmt):
    out = {}
    for model in dict.fromkeys(r["model"] for r in ok):
        ours, theirs = find(ok, model, "edgepress", "int8", fmt), find(ok, model, peer, "int8", fmt)
        if ours and theirs:
            out[model] = (ours, theirs)
    return out


def best(rows: list[dict], model: str, tools) -> dict | None:
    """The highest task metric among `tools`' int8 artifacts of `model` that are not broken."""
    cands = [r for r in rows if r["model"] == model and r["tool"] in tools
             and r["precision"] == "int8" and r.get("value") is not None
             and (r["tool"] == "edgepress" or not r.get("broken"))]
    return max(cands, key=lambda r: r["value"], default=None)


def real_vs_peers(ok: list[dict]) -> dict:
    peers = [p for ps in PEERS_OF.values() for p in ps]
    out = {}
    for model in dict.fromkeys(r["model"] for r in ok if r.get("task")):
        ours, theirs = best(ok, model, ("edgepress",)), best(ok, model, peers)
        if ours and theirs:
            fp32 = best_fp32(ok, model)
            out[model] = {"edgepress": ours, "peer": theirs,
                          "points": 100 * (ours["value"] - theirs["value"]),
                          "headroom": 100 * (fp32["value"] - theirs["value"]) if fp32 else None}
    return out


def best_fp32(ok: list[dict], model: str) -> dict | None:
    """edgepress's fp32 artifact of `model` with the highest task metric (over formats)."""
    cands = [r for r in ok if r["model"] == model and r["tool"] == "edgepress"
             and r["precision"] == "fp32" and r.get("value") is not None]
    return max(cands, key=lambda r: r["value"], default=None)


def ceiling(real: dict) -> float:
    """real_vs_best_peer's ceiling: the mean fp32 headroom over the models that have one."""
    return _mean([v["headroom"] for v in real.values() if v["headroom"] is not None])


def size_ratios(ok: list[dict]) -> dict:
    out = {}
    for r in ok:
        base = find(ok, r["model"], "edgepress", "fp32", r["format"])
        if r["tool"] == "edgepress" and r["precision"] == "int8" and base:
            ratio = r["size_bytes"] / base["size_bytes"]
            out[r["model"]] = max(out.get(r["model"], 0.0), ratio)
    return out


def _best_efficiency(ok, tools, peaks):
    """(formula fraction, measured fraction, row) of the best int8 artifact among `tools`."""
    best_row, best_f = None, -1.0
    for r in ok:
        if r["tool"] in tools and r["precision"] == "int8" and not r.get("broken"):
            for t, run in r["runs"].items():
                if run["fraction"] > best_f:
                    best_row, best_f = (r, t), run["fraction"]
    if best_row is None:
        return None
    row, t = best_row
    return {"formula": best_f, "measured": vs_measured(row, t, peaks), "model": row["model"],
            "tool": row["tool"], "recipe": row["recipe"], "format": row["format"],
            "threads": t}


def suite(rows: list[dict]) -> dict:
    ok, peaks = measured(rows), engine_peaks(rows)
    onnx, tflite = _pairs(ok, "ort-default", "onnx"), _pairs(ok, "aeq-default", "tflite")
    real = real_vs_peers(ok)
    peers = [p for ps in PEERS_OF.values() for p in ps]
    ours = _best_efficiency(ok, ("edgepress",), peaks)
    return {
        "models": len({r["model"] for r in ok}),
        "real": len({r["family"] for r in ok if r.get("family")}),
        "artifacts": len(ok),
        "vs_ort_default_p50": _geomean([a["runs"]["1"]["p50_ms"] / b["runs"]["1"]["p50_ms"]
                                        for a, b in onnx.values()]),
        "vs_ort_default_drop": _mean([100 * (a["value"] - b["value"]) for a, b in onnx.values()
                                      if _real_metric(a) and _real_metric(b)]),
        "tflite_vs_aeq_p50": _geomean([a["runs"]["1"]["p50_ms"] / b["runs"]["1"]["p50_ms"]
                                       for a, b in tflite.values()]),
        "real_vs_best_peer": _mean([v["points"] for v in real.values()]),
        "real_vs_best_peer_ceiling": ceiling(real),
        "peak_efficiency_int8": 100 * ours["formula"] if ours else float("nan"),
        "pairs": len(onnx), "tflite_pairs": len(tflite),
        "per_model": {m: {"p50_ratio": a["runs"]["1"]["p50_ms"] / b["runs"]["1"]["p50_ms"],
                          "drop_points": 100 * (a["value"] - b["value"])
                          if a["value"] is not None and b["value"] is not None else None,
                          "snr_db": (a["snr_db"], b["snr_db"])} for m, (a, b) in onnx.items()},
        "per_model_tflite": {m: a["runs"]["1"]["p50_ms"] / b["runs"]["1"]["p50_ms"]
                             for m, (a, b) in tflite.items()},
        "real_per_model": {m: {"points": v["points"], "headroom": v["headroom"],
                               "edgepress": _label(v["edgepress"]),
                               "peer": _label(v["peer"])} for m, v in real.items()},
        "efficiency": {"edgepress": ours, "best_peer": _best_efficiency(ok, peers, peaks)},
        "engine_peaks_gmacs": {f"{f} {p} {t}T": v for (f, p, t), v in sorted(peaks.items())},
        "size_ratio": size_ratios(ok),
    }


def _real_metric(r: dict) -> bool:
    """A metric that means something: random weights' agreement with fp32 on noise does not."""
    return r["value"] is not None and not r.get("random_weights")


def _label(r: dict) -> str:
    return f"{r['tool']} {r['recipe']} {r['format']} {100 * r['value']:.1f}%"


def suite_line(s: dict) -> str:
    return (f"suite: models={s['models']} real={s['real']} artifacts={s['artifacts']} "
            f"vs_ort_default_p50={s['vs_ort_default_p50']:.3f} "
            f"vs_ort_default_drop={s['vs_ort_default_drop']:+.2f} "
            f"tflite_vs_aeq_p50={s['tflite_vs_aeq_p50']:.3f} "
            f"real_vs_best_peer={s['real_vs_best_peer']:+.2f} "
            f"peak_efficiency_int8={s['peak_efficiency_int8']:.1f}%")
