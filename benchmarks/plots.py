"""plots: the suite's two figures, one panel per model (their scales differ by 1000x).

- size_latency_accuracy.png: model file size against p50 (1 thread), each point labelled with its
  accuracy or agreement; colour = tool, marker = format.
- latency_distributions.png: every artifact's 1-thread latency samples (box 25-75%, whiskers
  1-99%), read back from the committed bench reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.tables import TOOLS, ordered

MARKERS = {"onnx": "o", "tflite": "s"}
SHORT = {"fp32": "fp32", "int8": "int8", "pruned50+int8": "pruned", "pruned50+kd+int8": "pruned+kd"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a CI runner
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n: int, width: float = 5.5, height: float = 4.0):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _label(row: dict) -> str:
    recipe = "" if row["tool"] != "edgepress" else f" {row['recipe']}"
    return f"{row['tool']}{recipe} {row['format']}"


def size_latency_accuracy(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    ok = [r for r in ordered(rows) if not r.get("error")]
    models = list(dict.fromkeys(r["model"] for r in ok))
    fig, axes = _panels(plt, len(models))
    for ax, model in zip(axes, models):
        for r in (r for r in ok if r["model"] == model):
            x, y = r["size_bytes"] / 1024, r["runs"]["1"]["p50_ms"]
            ax.scatter([x], [y], marker=MARKERS[r["format"]], s=50,
                       color=f"C{TOOLS.index(r['tool'])}", alpha=0.8)
            tag = "" if r["value"] is None else f"{100 * r['value']:.0f}% "
            ax.annotate(tag + SHORT.get(r["recipe"], "") if r["tool"] == "edgepress"
                        else tag + r["tool"], (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        kind = "agreement with fp32, random weights" if ok and _random(ok, model) \
            else "accuracy, real data"
        ax.set_title(f"{model} ({kind})", fontsize="medium")
        _log_axis(ax.xaxis)
        ax.set_xlabel("model file (KiB, log)")
        ax.set_ylabel("p50 latency, 1 thread (ms)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ls="", label=t)
               for i, t in enumerate(TOOLS)]
    handles += [plt.Line2D([], [], color="grey", marker=m, ls="", label=f)
                for f, m in MARKERS.items()]
    fig.tight_layout()
    spare = len(models) < len(axes)  # an empty panel: the legend goes there
    fig.legend(handles=handles, fontsize="small", title="labels: accuracy or top-1\nagreement, "
               "then recipe or peer", title_fontsize="small",
               **({"loc": "center", "bbox_to_anchor": axes[-1].get_position().bounds} if spare
                  else {"loc": "center left", "bbox_to_anchor": (1.0, 0.5)}))
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _random(rows, model) -> bool:
    return next(r["random_weights"] for r in rows if r["model"] == model)


def latency_distributions(rows: list[dict], results: Path, path: Path) -> None:
    plt = _pyplot()
    ok = [r for r in ordered(rows) if not r.get("error")]
    models = list(dict.fromkeys(r["model"] for r in ok))
    fig, axes = _panels(plt, len(models), width=6.5, height=0.32 * max(
        sum(r["model"] == m for r in ok) for m in models) + 1.5)
    for ax, model in zip(axes, models):
        mine = [r for r in ok if r["model"] == model]
        samples = [_samples(results / r["runs"]["1"]["report"]) for r in mine]
        parts = ax.boxplot(samples, vert=False, whis=(1, 99), showfliers=False,
                           tick_labels=[_label(r) for r in mine], patch_artist=True,
                           medianprops={"color": "black"})
        for box, r in zip(parts["boxes"], mine):
            box.set(facecolor=f"C{TOOLS.index(r['tool'])}", alpha=0.6)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(model, fontsize="medium")
        # log: a shared machine's stalls put the 99th percentile 10-100x above the median
        _log_axis(ax.xaxis)
        ax.set_xlabel("latency, 1 thread (ms, log); box 25-75%, whiskers 1-99%")
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _log_axis(axis) -> None:
    """Log scale with plain labels at 1-2-5 steps (matplotlib's default crowds 3x10^-2 labels
    together when a panel spans less than a decade)."""
    from matplotlib import ticker

    axis.axes.set_xscale("log")
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _samples(report: Path) -> np.ndarray:
    return np.asarray(json.loads(report.read_text())["results"]["samples_ms"])
