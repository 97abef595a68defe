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
        return [row["model"], row["tool"], row["recipe"], row["format"], "not measured",
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


HEAD = (("onnx", "edgepress"), ("onnx", "ort-default"), ("onnx", "nncf"),
        ("tflite", "edgepress"), ("tflite", "aeq-default"))


def head_to_head(rows: list[dict]) -> str:
    """int8 only, one line per model: each tool's accuracy (or agreement) and p50 at 1 thread,
    edgepress's plain int8 recipe beside the peers' defaults on the same fp32 model."""
    cols = [f"{tool} {fmt}" for fmt, tool in HEAD]
    lines = ["| model | metric | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    for model in dict.fromkeys(r["model"] for r in rows):
        found = [_find(rows, model, tool, "int8", fmt) for fmt, tool in HEAD]
        metric = next((r["metric"] for r in found if r and not r.get("error")), "-")
        mark = " †" if any(r and r["random_weights"] for r in found) else ""
        lines.append(f"| {model} | {metric}{mark} | " + " | ".join(map(_brief, found)) + " |")
    return "\n".join(lines) + "\n"


def _brief(row) -> str:
    if row is None:
        return "-"
    if row.get("error"):
        return "does not run" if "does not run" in row["error"] else "failed"
    value = "-" if row["value"] is None else f"{100 * row['value']:.1f}%"
    return f"{value}, {row['runs']['1']['p50_ms']:.3f} ms"


def suite(rows: list[dict]) -> dict:
    """The issue's headline figures (1 thread for the p50 ratio)."""
    ok = [r for r in rows if not r.get("error")]
    ratios, drops, per_model = [], [], {}
    for model in dict.fromkeys(r["model"] for r in ok):
        ours = _find(ok, model, "edgepress", "int8", "onnx")
        peer = _find(ok, model, "ort-default", "int8", "onnx")
        if ours and peer:
            ratios.append(ours["runs"]["1"]["p50_ms"] / peer["runs"]["1"]["p50_ms"])
            drops.append(100 * (ours["value"] - peer["value"]))
            per_model[model] = {"p50_ratio": ratios[-1], "drop_points": drops[-1],
                                "snr_db": (ours["snr_db"], peer["snr_db"])}
    int8 = [run["fraction"] for r in ok if r["precision"] == "int8" for run in r["runs"].values()]
    return {"models": len({r["model"] for r in ok}), "artifacts": len(ok),
            "vs_ort_default_p50": math.exp(sum(map(math.log, ratios)) / len(ratios))
            if ratios else float("nan"),
            "vs_ort_default_drop": sum(drops) / len(drops) if drops else float("nan"),
            "peak_efficiency_int8": 100 * max(int8) if int8 else float("nan"),
            "pairs": len(ratios), "per_model": per_model}


def _find(rows, model, tool, recipe, fmt):
    return next((r for r in rows if (r["model"], r["tool"], r["recipe"], r["format"])
                 == (model, tool, recipe, fmt)), None)


def suite_line(s: dict) -> str:
    return (f"suite: models={s['models']} artifacts={s['artifacts']} "
            f"vs_ort_default_p50={s['vs_ort_default_p50']:.3f} "
            f"vs_ort_default_drop={s['vs_ort_default_drop']:+.2f} "
            f"peak_efficiency_int8={s['peak_efficiency_int8']:.1f}%")


def notes(ctx: dict, summary: dict) -> str:
    """The table's notes: what every figure means and where it came from."""
    lines = [f"Command: `{ctx['command']}` ({ctx['wall_s'] / 60:.1f} min wall).",
             _suite_note(summary),
             _host_note(ctx), _random_note(ctx), _metric_note(ctx["rows"]),
             _calib_note(ctx["rows"]),
             (f"Latency: p50 of `edgepress bench` ({ctx['protocol']}), 1T/2T = 1 and 2 "
              f"threads; onnxruntime for .onnx, LiteRT (XNNPACK) for .tflite."),
             _roofline_note(ctx["host"]), _peers_note(ctx["peer_calls"])]
    lines += [f"Not measured: {e}" for e in ctx["errors"]]
    return "\n".join(f"- {line}" for line in lines) + "\n"


def _metric_note(rows: list[dict]) -> str:
    counts = sorted({r["eval_samples"] for r in rows if r.get("random_weights")
                     and r.get("eval_samples")})
    n = "/".join(map(str, counts)) + " " if counts else ""
    return ("metric: accuracy on the digits test split (450 real images); elsewhere top-1 "
            f"agreement with the fp32 model of the same format on {n}held-out random inputs "
            "(seed 1, never the calibration samples). SNR dB: output SNR against that fp32 "
            "model on the same inputs (for pruned artifacts it includes what pruning changed).")


def _suite_note(summary: dict) -> str:
    per = "; ".join(f"{m} {v['p50_ratio']:.2f}x, {v['drop_points']:+.1f} pts (SNR "
                    f"{v['snr_db'][0]:.1f} vs {v['snr_db'][1]:.1f} dB)"
                    for m, v in summary["per_model"].items())
    return (f"Suite line (last line below): vs_ort_default_p50 is the geometric mean over models "
            f"of edgepress int8 ONNX p50 / ORT-defaults int8 p50 at 1 thread; "
            f"vs_ort_default_drop the mean of edgepress minus ORT-defaults accuracy (digits) or "
            f"agreement (†) in points; peak_efficiency_int8 the best int8 artifact's % of the "
            f"int8 peak at any thread count. Per model: {per}.")


def _calib_note(rows: list[dict]) -> str:
    listed = "; ".join(sorted({f"{r['model']}: {r['calib']}" for r in rows}))
    return f"Calibration: {listed}. edgepress and the peers get the same samples."


def _host_note(ctx: dict) -> str:
    fp = ctx["fingerprint"]
    # the suite itself keeps about one core busy: a load average well above that means others ran
    busy = max(ctx["load_start"], ctx["load_end"]) > 1.5
    load = ("other jobs ran meanwhile, so latencies carry their noise" if busy else
            "nothing else ran; the suite itself keeps about one core busy")
    return (f"Host: {fp['cpu_model']}, {fp['cores']} cores, ISA {', '.join(fp['isa'])}; load "
            f"average {ctx['load_start']:.1f} at the start, {ctx['load_end']:.1f} at the end "
            f"({load}). Full fingerprint: fingerprint.json.")


def _random_note(ctx: dict) -> str:
    models = sorted({r["model"] for r in ctx["rows"] if r["random_weights"]})
    return (f"**† Random weights** ({', '.join(models) or 'none in this run'}): seeded random "
            f"weights, calibrated on `random` noise (explicit: no real data exists) and evaluated "
            f"on random inputs. Their agreement and SNR figures are meaningless as accuracy "
            f"claims (near-uniform logits flip top-1 on tiny errors); their size, latency and "
            f"efficiency figures are meaningful. Only digits (trained on real data) has a real "
            f"accuracy.")


def _roofline_note(host: dict) -> str:
    return (f"Roofline: achieved GMAC/s = MACs (edgepress inspect, on the fp32 model with the "
            f"same layers) / p50; % peak = achieved / (threads x {host['clock_ghz']:g} GHz x "
            f"MACs/cycle per core), {host['fp32']} fp32 / {host['int8']} int8 MACs/cycle from "
            f"this CPU's ISA features (edgepress.devices.estimate.host_profile: two vector FMA "
            f"pipes; int8 raised to AMX's 1024 where the CPU reports amx_int8, since "
            f"onnxruntime and XNNPACK have AMX kernels): {host['formula_int8']}; "
            f"{host['formula_fp32']}. fp32 artifacts are held to the fp32 peak. The clock is the "
            f"one the kernel reports ({host['description']}); a VM hides the turbo clock, and a "
            f"higher real clock lowers every percentage, so read them as upper bounds. The 2 "
            f"cores are vCPUs: if they share a physical core, the 2-thread peak is half that.")


def _peers_note(calls: dict) -> str:
    listed = "; ".join(f"{name}: `{call}`" for name, call in calls.items())
    return f"Peers, each with its defaults on the same fp32 model file: {listed}."
