"""tables: summary.md (edgepress's artifacts beside the peers', per model) and the suite line,
from the rows measure.py wrote. Pure formatting over JSON-ready dicts; nothing is measured here."""

from __future__ import annotations

import math

TOOLS = ("edgepress", "ort-default", "nncf", "aeq-default")
COLUMNS = ("model", "tool", "recipe", "format", "metric", "value", "SNR dB", "size KiB",
           "p50 ms 1T", "p50 ms 2T", "GMAC/s 1T", "% peak 1T", "% peak 2T")


def ordered(rows: list[dict]) -> list[dict]:
    """Per model, per format: edgepress fp32, its int8 recipes, then the peers of that format."""
    recipe_rank = {"fp32": 0, "int8": 1, "pruned50+int8": 2, "pruned50+kd+int8": 3}

    def key(r):
        return (r["model"], r["format"], TOOLS.index(r["tool"]), recipe_rank.get(r["recipe"], 9))
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), *key(r)[1:]))


def _cell(row: dict) -> list[str]:
    if row.get("error"):
        return [row["model"], row["tool"], row["recipe"], row["format"], "not built",
                row["error"].replace("|", "/"), *["-"] * 7]
    runs, mark = row["runs"], " †" if row["random_weights"] else ""
    value = "-" if row["value"] is None else f"{100 * row['value']:.1f}%{mark}"
    pct = [f"{100 * runs[t]['fraction']:.1f}" if t in runs else "-" for t in ("1", "2")]
    p50 = [f"{runs[t]['p50_ms']:.3f}" if t in runs else "-" for t in ("1", "2")]
    snr = f"{row['snr_db']:.1f}{mark}" if row["precision"] != "fp32" else "(ref)"
    gmacs = f"{runs['1']['gmacs_per_s']:.1f}" if "1" in runs else "-"
    return [row["model"], f"**{row['tool']}**" if row["tool"] == "edgepress" else row["tool"],
            row["recipe"], row["format"], row["metric"], value, snr,
            f"{row['size_bytes'] / 1024:,.1f}", *p50, gmacs, *pct]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r)) + " |" for r in ordered(rows)]
    return "\n".join(lines) + "\n"


def suite(rows: list[dict]) -> dict:
    """The issue's headline figures (1 thread for the p50 ratio)."""
    ok = [r for r in rows if not r.get("error")]
    ratios, drops = [], []
    for model in dict.fromkeys(r["model"] for r in ok):
        ours = _find(ok, model, "edgepress", "int8", "onnx")
        peer = _find(ok, model, "ort-default", "int8", "onnx")
        if ours and peer:
            ratios.append(ours["runs"]["1"]["p50_ms"] / peer["runs"]["1"]["p50_ms"])
            drops.append(100 * (ours["value"] - peer["value"]))
    int8 = [run["fraction"] for r in ok if r["precision"] == "int8" for run in r["runs"].values()]
    return {"models": len({r["model"] for r in ok}), "artifacts": len(ok),
            "vs_ort_default_p50": math.exp(sum(map(math.log, ratios)) / len(ratios))
            if ratios else float("nan"),
            "vs_ort_default_drop": sum(drops) / len(drops) if drops else float("nan"),
            "peak_efficiency_int8": 100 * max(int8) if int8 else float("nan"),
            "pairs": len(ratios)}


def _find(rows, model, tool, recipe, fmt):
    return next((r for r in rows if (r["model"], r["tool"], r["recipe"], r["format"])
                 == (model, tool, recipe, fmt)), None)


def suite_line(s: dict) -> str:
    return (f"suite: models={s['models']} artifacts={s['artifacts']} "
            f"vs_ort_default_p50={s['vs_ort_default_p50']:.3f} "
            f"vs_ort_default_drop={s['vs_ort_default_drop']:+.2f} "
            f"peak_efficiency_int8={s['peak_efficiency_int8']:.1f}%")


def notes(ctx: dict) -> str:
    """The table's notes: what every figure means and where it came from."""
    fp, host = ctx["fingerprint"], ctx["host"]
    random_models = sorted({r["model"] for r in ctx["rows"] if r["random_weights"]})
    calibs = sorted({f"{r['model']}: {r['calib']}" for r in ctx["rows"]})
    out = [
        f"Command: `{ctx['command']}` ({ctx['wall_s'] / 60:.1f} min wall).",
        f"Host: {fp['cpu_model']}, {fp['cores']} cores, ISA {', '.join(fp['isa'])}; load average "
        f"{ctx['load_start']:.1f} at the start, {ctx['load_end']:.1f} at the end (a shared "
        f"machine: other jobs ran meanwhile, so latencies carry their noise). Full fingerprint: "
        f"fingerprint.json.",
        f"**† Random weights** ({', '.join(random_models) or 'none in this run'}): seeded "
        f"random weights, calibrated "
        f"on `random` noise (explicit: no real data exists) and evaluated on random inputs. Their "
        f"agreement and SNR figures are meaningless as accuracy claims (near-uniform logits flip "
        f"top-1 on tiny errors); their size, latency and efficiency figures are meaningful. Only "
        f"digits (trained on real data) has a real accuracy.",
        "metric: accuracy on the digits test split (450 real images); elsewhere top-1 agreement "
        "with the fp32 model of the same format on held-out random inputs (seed 1, never the "
        "calibration samples). SNR dB: output SNR against that fp32 model on the same inputs.",
        f"Calibration: {'; '.join(calibs)}. edgepress and the peers get the same samples.",
        f"Latency: p50 of `edgepress bench` ({ctx['protocol']}), 1T/2T = 1 and 2 threads; "
        f"onnxruntime for .onnx, LiteRT (XNNPACK) for .tflite.",
        f"Roofline: achieved GMAC/s = MACs (edgepress inspect, on the fp32 model with the same "
        f"layers) / p50; % peak = achieved / (threads x {host['clock_ghz']:g} GHz x MACs/cycle), "
        f"MACs/cycle per core = {host['fp32']} fp32 / {host['int8']} int8 from this CPU's ISA "
        f"(edgepress.devices.estimate.host_profile: two vector FMA pipes; AVX-512 with VNNI here). "
        f"{host['formula_int8']}; fp32 artifacts against the fp32 peak. The clock is the one "
        f"the kernel reports ({host['description']}); a turbo clock above it would lower every "
        f"percentage, so treat them as upper bounds.",
        "Peers, all with their defaults on the same fp32 model file: " + "; ".join(
            f"{name}: `{call}`" for name, call in ctx["peer_calls"].items()) + ".",
    ]
    out += [f"Not built: {e}" for e in ctx["errors"]]
    return "\n".join(f"- {line}" for line in out) + "\n"
