"""summarize: the pipeline's last stage. One row per bundle: accuracy (or agreement with the
fp32 artifact), size, parameters, MACs and p50 latency, printed and saved as summary.md and
summary.json beside the bundles."""

from __future__ import annotations

import json
from pathlib import Path

from edgepress.compress import guard
from edgepress.runtime import artifact, bench, inspect, verify
from edgepress.runtime.layout import to_nhwc
from edgepress.runtime.session import Session

# Short on purpose: this is a table at the end of `compress`, not `edgepress bench`.
PROTOCOL = bench.Protocol(warmup_runs=5, warmup_s=0.1, min_runs=30, min_s=0.3, memory=False)
COLUMNS = ("bundle", "metric", "value", "size KiB", "params", "MACs", "p50 ms")
# A quantized graph's own count is not the model's: align.py's zero input channels made a
# 1-channel audio stem read 40% more params and 2.4x the MACs, and QDQ scales count as params.
FIGURES_NOTE = "of each format's fp32 graph, the model every bundle of that format computes"


def apply(state, recipe):
    """The stage: summary.md / summary.json beside the bundles (unless the run asked for none).
    A bundle its engine cannot time is removed and recorded (compress/guard.py)."""
    if recipe.summary:
        rows = _rows(state)
        notes = _notes(state.stages)
        if state.failures:  # bundles an engine or converter could not build (compress/guard.py)
            notes["failed"] = state.failures
        write(state.work, rows, state.held_out, notes)
    return state


def _rows(state) -> list[dict]:
    rows = []
    guard.each(state, "summary", "timing for the summary", lambda b: rows.append(_row(
        b.path, _fp32_of(b.path, [x.path for x in state.bundles]), state.held_out)))
    return rows


def _notes(stages: dict) -> dict:
    notes = {}
    if "distill" in stages:
        d = stages["distill"]
        notes["distill"] = (f"teacher {d['teacher']}; best {d['metric']} {d['best_metric']:.4f} "
                            f"(torch, validation data) at epoch {d['best_epoch'] + 1} of "
                            f"{d['epochs_run']}")
        if "teacher_eval" in d:
            t = d["teacher_eval"]
            notes["teacher"] = f"{t['metric']} {100 * t['value']:.2f}% (torch, eval data)"
    if "prune" in stages:
        notes["prune"] = stages["prune"].get("spec")
    return notes


def write(out_dir: Path, rows: list[dict], eval_data=None, extra: dict | None = None) -> dict:
    """Writes out_dir/summary.{md,json} from the measured rows; returns the summary."""
    summary = {"rows": rows, "eval": eval_data.source if eval_data is not None else None,
               "latency": "p50 of edgepress bench, 1 thread, short protocol "
                          f"({PROTOCOL.min_runs} runs / {PROTOCOL.min_s} s)",
               "params/MACs": FIGURES_NOTE,
               **(extra or {})}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary))
    return summary


def _fp32_of(bundle: Path, bundles: list[Path]) -> Path | None:
    """The format's fp32 bundle (None when it failed: there is then no reference)."""
    fmt = bundle.name.split("-")[0]
    return next((b for b in bundles if b.name == f"{fmt}-fp32"), None)


def _row(path: Path, fp32: Path | None, eval_data) -> dict:
    b = artifact.open_bundle(path)
    figures_of = artifact.open_bundle(fp32 or path).model_path  # FIGURES_NOTE says why
    info = inspect.apply(figures_of)
    rep = bench.apply(path, threads=1, protocol=PROTOCOL)
    row = {"bundle": path.name, "size_bytes": b.manifest["model_size_bytes"],
           "params": info["params"], "macs": info["macs"],
           "p50_ms": rep["results"]["latency_ms"]["p50"]}
    row.update(_quality(b, artifact.open_bundle(fp32), eval_data) if fp32 else
               {"metric": "none (no fp32 bundle of this format to compare with)", "value": None,
                "samples": 0})
    for key in ("warnings", "library_warnings"):  # what the bundle's manifest records
        if b.manifest.get(key):
            row[key] = b.manifest[key]
    return row


def _quality(b, fp32, eval_data) -> dict:
    """Accuracy on labelled --eval data; else top-1 agreement with the fp32 artifact (on the
    eval data, or on the golden inputs when there is none)."""
    session, reference = Session(b.model_path), Session(fp32.model_path)
    if eval_data is not None:
        res = verify.evaluate(session, reference, _as_layout(eval_data.labelled(), b))
        if "accuracy" in res:
            return {"metric": "accuracy", "value": res["accuracy"]["quantized"],
                    "samples": res["samples"]}
        return {"metric": "agreement", "value": res.get("top1_agreement"),
                "samples": res["samples"]}
    ins, _ = b.golden()
    n = next(iter(ins.values())).shape[0]
    pairs = (({k: v[i] for k, v in ins.items()}, None) for i in range(n))
    res = verify.evaluate(session, reference, pairs)
    return {"metric": "agreement (golden)", "value": res.get("top1_agreement"), "samples": n}


def _as_layout(pairs, bundle):
    # An NHWC TFLite bundle takes channels-last inputs; eval data is in the model's NCHW.
    nhwc = {s.name for s in bundle.inputs if s.layout == "NHWC"}
    for sample, label in pairs:
        yield {k: to_nhwc(v) if k in nhwc else v for k, v in sample.items()}, label


def markdown(summary: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in summary["rows"]:
        value = "-" if r["value"] is None else f"{100 * r['value']:.2f}%"
        lines.append(f"| {r['bundle']} | {r['metric']} | {value} | {r['size_bytes'] / 1024:.1f} | "
                     f"{r['params']:,} | {r['macs']:,} | {r['p50_ms']:.3f} |")
    notes = [f"Latency: {summary['latency']}."]
    if summary.get("eval"):
        scored = any(r["metric"] == "accuracy" for r in summary["rows"])  # unlabelled: agreement
        notes.append(f"{'Accuracy' if scored else 'Agreement with fp32'} on {summary['eval']}.")
    for key, value in summary.items():
        if key not in ("rows", "latency", "eval", "failed"):
            notes.append(f"{key}: {value}")
    notes += [f"FAILED {f['bundle']} ({f['stage']}{', ' + f['library'] if f['library'] else ''})"
              f": {f['error']}; {f['what_to_do']}" for f in summary.get("failed", ())]
    notes += _warning_lines(summary["rows"])
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _warning_lines(rows: list[dict]) -> list[str]:
    """Each bundle's warnings: edgepress's own, and how many other libraries raised while it
    was built (summary.json and the manifest hold them; --verbose prints them)."""
    lines = [f"warning, {r['bundle']}: {w}" for r in rows for w in r.get("warnings", ())]
    counts = [f"{r['bundle']} {len(r['library_warnings'])}" for r in rows
              if r.get("library_warnings")]
    if counts:
        lines.append(f"Other libraries' warnings while building: {', '.join(counts)} (in each "
                     f"bundle's manifest, library_warnings)")
    return lines
