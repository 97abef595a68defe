"""html: one self-contained HTML page from bench reports (the `report` extra: matplotlib).

Plots are PNGs embedded as data: URLs and the page has no external CSS or script, so the file
can be mailed, attached to CI runs or opened offline. Plots: latency distributions (box plot and
CDF from the raw samples), size and memory bars, latency against fidelity when the reports
carry fidelity, and the task metric against latency and size when a summary gives it. Where a
report's bundle is still there, its recipe and what each stage did are shown (provenance.py);
the conditions table is each report's device fingerprint and engine. A few lines of inline
script count the plots the browser decoded (`data-plots-decoded` on <body>), which the
rendering test reads back from headless Chromium.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from edgepress import atomic
from edgepress.errors import UserError
from edgepress.runtime import compare, provenance


def write(path, reports: list[dict], labels: list[str], title: str = "edgepress benchmark report",
          overwrite: bool = False, metrics: list | None = None) -> None:
    atomic.refuse_existing(Path(path), overwrite)  # before the plotting, not after
    page = render(reports, labels, title, metrics)
    atomic.write_bytes(Path(path), page.encode(), overwrite=overwrite)


def render(reports: list[dict], labels: list[str], title: str,
           metrics: list | None = None) -> str:
    """`metrics`: per report, its task metric {metric, value} or None (provenance.task_metrics)."""
    plt = _pyplot()
    metrics = metrics or [None] * len(reports)
    plots = [("latency-box", "Latency distribution (box: p25-p75, whiskers: p1-p99)",
              _latency_box), ("latency-cdf", "Latency CDF", _latency_cdf),
             ("size-memory", "Model size and memory", _size_memory)]
    if any(r.get("fidelity") for r in reports):
        plots.append(("latency-fidelity", "Latency vs fidelity", _latency_fidelity))
    if any(len(runs) > 1 for runs in _sweeps(reports).values()):
        plots.append(("latency-threads", "Latency vs threads (p50, bars: p10-p90)",
                      _latency_threads))
    if any(metrics):
        plots.append(("task-metric", f"{_metric_name(metrics)} against latency and size",
                      lambda plt, reps, labs: _task_metric(plt, reps, labs, metrics)))
    figures = [_figure(pid, caption, _png(plt, draw(plt, reports, labels)))
               for pid, caption, draw in plots]
    body = [f"<h1>{_e(title)}</h1>", _figures_table(reports, labels, metrics),
            _warnings(reports, labels), *figures, _provenance(reports, labels),
            _context_table(reports, labels)]
    return _PAGE.format(title=_e(title), body="\n".join(b for b in body if b))


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("an HTML report needs matplotlib: pip install 'edgepress[report]'") \
            from None
    matplotlib.use("Agg")  # no display on a CI runner or a device
    import matplotlib.pyplot as plt

    return plt


def _png(plt, fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _samples(rep: dict) -> np.ndarray:
    return np.asarray(rep["results"]["samples_ms"], dtype=np.float64)


def _wide(reports) -> bool:
    # A log axis when the plotted range spans over an order of magnitude (one report much
    # faster than another, or a long tail), else the other boxes shrink to a line.
    low = min(r["results"]["latency_ms"]["min"] for r in reports)
    high = max(r["results"]["latency_ms"]["p99"] for r in reports)
    return high > 10 * max(low, 1e-9)


def _latency_box(plt, reports, labels):
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(reports) + 1.5))
    parts = ax.boxplot([_samples(r) for r in reports], vert=False, whis=(1, 99), showfliers=False,
               tick_labels=labels, patch_artist=True, medianprops={"color": "black"})
    for i, box in enumerate(parts["boxes"]):
        box.set(facecolor=f"C{i % 10}", alpha=0.6)  # the same colour per report in every plot
    ax.set_xlabel("latency (ms)")
    ax.set_xscale("log" if _wide(reports) else "linear")
    ax.invert_yaxis()  # first report on top, as in the tables
    return fig


def _latency_cdf(plt, reports, labels):
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, rep in zip(labels, reports):
        x = np.sort(_samples(rep))
        ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
    ax.set_xscale("log" if _wide(reports) else "linear")
    # The slowest 1% would stretch the axis until the body of every curve is one vertical line.
    ax.set_xlim(0.9 * min(r["results"]["latency_ms"]["min"] for r in reports),
                1.1 * max(r["results"]["latency_ms"]["p99"] for r in reports))
    ax.set_xlabel("latency (ms); axis ends just past the largest p99")
    ax.set_ylabel("fraction of runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _size_memory(plt, reports, labels):
    bars = [("model size (MiB)", [r["model"]["size_bytes"] for r in reports]),
            ("peak RSS (MiB)", [(r.get("memory") or {}).get("peak_rss_bytes") for r in reports]),
            ("RSS added by load (MiB)",
             [(r.get("memory") or {}).get("load_added_rss_bytes") for r in reports])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.5 * len(reports) + 1.8), sharey=True)
    y = np.arange(len(reports))
    for ax, (name, values) in zip(axes, bars):
        mib = [v / 2**20 if v is not None else 0.0 for v in values]
        ax.barh(y, mib, color=[f"C{i % 10}" for i in range(len(reports))])
        ax.set_title(name, fontsize="medium")
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    return fig


def _latency_fidelity(plt, reports, labels):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, rep) in enumerate(zip(labels, reports)):
        if rep.get("fidelity"):
            x, y = rep["results"]["latency_ms"]["p50"], rep["fidelity"]["snr_db"]
            ax.scatter([x], [y], s=60, color=f"C{i % 10}", label=label)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("SNR vs fp32 reference (dB, worst output)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _metric_name(metrics) -> str:
    return next(m["metric"] for m in metrics if m) or "task metric"


def _task_metric(plt, reports, labels, metrics):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (label, rep, m) in enumerate(zip(labels, reports, metrics)):
        if m:
            for ax, x in zip(axes, (rep["results"]["latency_ms"]["p50"],
                                    rep["model"]["size_bytes"] / 2**10)):
                ax.scatter([x], [100 * m["value"]], s=60, color=f"C{i % 10}", label=label)
    axes[0].set_xlabel("p50 latency (ms)")
    axes[1].set_xlabel("model size (KiB)")
    axes[0].set_ylabel(f"{_metric_name(metrics)} (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize="small")
    return fig


def _sweeps(reports) -> dict:
    """(model sha256, engine) -> [(threads, report)]: the thread sweeps among the reports."""
    sweeps: dict = {}
    for rep in reports:
        key = (rep["model"]["sha256"], rep["engine"]["name"], rep["model"]["path"])
        sweeps.setdefault(key, []).append((rep["engine"]["threads"], rep))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in sweeps.items()
            if len({threads for threads, _ in v}) > 1}


def _latency_threads(plt, reports, labels):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (_sha, engine, path), runs in _sweeps(reports).items():
        threads = [t for t, _ in runs]
        p10, p50, p90 = (np.array([np.percentile(_samples(r), q) for _, r in runs])
                         for q in (10, 50, 90))
        ax.errorbar(threads, p50, yerr=[p50 - p10, p90 - p50], marker="o", capsize=4,
                    label=f"{Path(path).parent.name or Path(path).name} ({engine})")
    ax.set_xlabel("threads")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _figure(pid: str, caption: str, png_b64: str) -> str:
    return (f'<figure id="plot-{pid}"><img class="plot" alt="{_e(caption)}" '
            f'src="data:image/png;base64,{png_b64}"><figcaption>{_e(caption)}</figcaption>'
            f"</figure>")


def _figures_table(reports, labels, metrics) -> str:
    head = "".join(f"<th>{_e(x)}</th>" for x in ["metric", *labels])
    body = "".join(_metric_tr(row) for row in compare.metric_rows(reports))
    if any(metrics):
        body += f"<tr><td>{_e(_metric_name(metrics))}</td>" + "".join(
            f"<td>{100 * m['value']:.2f}%</td>" if m else "<td>-</td>" for m in metrics) + "</tr>"
    return f'<table id="figures"><tr>{head}</tr>{body}</table>'


def _metric_tr(row: dict) -> str:
    cells = [_cell(v, q, i) for i, (v, q) in enumerate(zip(row["values"], row["ratios"]))]
    return f"<tr><td>{_e(row['metric'])}</td>" + "".join(f"<td>{c}</td>" for c in cells) + \
        "</tr>"


def _cell(value, ratio, index) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return text if index == 0 or ratio is None else f"{text} <small>({ratio:.3f}x)</small>"


def _warnings(reports, labels) -> str:
    lines = compare.condition_warnings(labels, reports)
    items = "".join(f"<li>{_e(w)}</li>" for w in lines)
    return f'<ul class="warnings">{items}</ul>' if lines else ""


def _provenance(reports, labels) -> str:
    """Per bundle still on disk: the recipe's options away from their defaults, and each
    stage's figures from its manifest (collapsed: one <details> per bundle)."""
    parts = []
    for label, rep in zip(labels, reports):
        bundle = provenance.bundle_of(rep)
        if bundle is None:
            continue
        recipe = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_show(v))}</td></tr>"
                         for k, v in provenance.recipe_changes(bundle.manifest).items())
        stages = "".join(f"<tr><td>{_e(stage)}</td><td>{'<br>'.join(map(_e, lines))}</td></tr>"
                         for stage, lines in provenance.stage_lines(bundle.manifest).items())
        parts.append(f"<details><summary>{_e(label)}: {_e(bundle.path)}</summary>"
                     f"<h3>Recipe (options set)</h3><table class=\"recipe\">{recipe}</table>"
                     f"<h3>Stages</h3><table class=\"stages\">{stages}</table></details>")
    if not parts:
        return ""
    return '<h2>What made each bundle</h2><div id="provenance">' + "".join(parts) + "</div>"


def _context_table(reports, labels) -> str:
    keys = [("device", k) for k in ("cpu_model", "arch", "cores", "isa", "governor",
                                    "cur_freq_mhz", "board_model", "ram_bytes", "load_avg_1m",
                                    "os")]
    keys += [("engine", k) for k in ("name", "version", "threads", "options")]
    keys += [("model", "sha256"), ("model", "path"), ("inputs", "source"),
             ("created_utc", None), ("command", None)]
    head = "".join(f"<th>{_e(x)}</th>" for x in ["context", *labels])
    body = "".join(
        f"<tr><td>{_e(a + ('.' + b if b else ''))}</td>"
        + "".join(f"<td>{_e(_show(r.get(a) if b is None else (r.get(a) or {}).get(b)))}</td>"
                  for r in reports) + "</tr>" for a, b in keys)
    return (f'<h2>Conditions: device fingerprint and engine</h2><table id="context"><tr>{head}'
            f"</tr>{body}</table>")


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "-" if value is None else str(value)


def _e(text) -> str:
    return html.escape(str(text))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
td {{ font-variant-numeric: tabular-nums; max-width: 40em; overflow-wrap: anywhere; }}
figure {{ margin: 1.5em 0; }} img.plot {{ max-width: 100%; }}
.warnings {{ color: #8a4b00; }}
</style></head>
<body>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img.plot"));
  document.body.setAttribute("data-plots-decoded",
    imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length);
}});
</script>
</body></html>
"""
