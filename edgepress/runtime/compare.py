"""compare: bench reports side by side, ratios to the first, and whether latency really changed.

A latency change is called only when it is significant two ways on the raw samples: a two-sided
Mann-Whitney U test (p < ALPHA) and a 95% confidence interval of the median ratio that excludes 1.
Successive samples are not independent (clock drift, thermal throttling, a neighbour waking up),
which makes U's p-value overconfident; the interval therefore comes from a moving-block bootstrap
(blocks of about sqrt(n) consecutive samples keep the drift inside a resample), so a run that
drifted gets a wide interval instead of a confident verdict. Nothing computed from two runs can
see run-to-run variation, which is why a regression gate also takes a size (`fail_if_slower`) and
why differing conditions are reported next to the numbers.
Reads only the structured reports (report.load), never scraped text.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepress.runtime import report

ALPHA = 0.01
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CAP = 5000  # samples per side used by the bootstrap (evenly thinned beyond that)
MIN_SAMPLES = 20  # below this the normal approximation of U is not trusted

# (label, path into the report, scale applied for display). Ratios are value / first report's.
METRICS = (
    ("init ms", ("results", "init_ms"), 1),
    ("init, fresh process ms", ("results", "init_fresh_process_ms"), 1),
    ("first inference ms", ("results", "first_inference_ms"), 1),
    ("p50 ms", ("results", "latency_ms", "p50"), 1),
    ("p90 ms", ("results", "latency_ms", "p90"), 1),
    ("p99 ms", ("results", "latency_ms", "p99"), 1),
    ("mean ms", ("results", "latency_ms", "mean"), 1),
    ("std ms", ("results", "latency_ms", "std"), 1),
    ("throughput /s", ("results", "latency_ms", "throughput_per_s"), 1),
    ("peak RSS MiB", ("memory", "peak_rss_bytes"), 2**-20),
    ("load RSS MiB", ("memory", "load_added_rss_bytes"), 2**-20),
    ("model size KiB", ("model", "size_bytes"), 2**-10),
    ("SNR dB", ("fidelity", "snr_db"), 1),
)

# Conditions that make two latency figures incomparable when they differ.
CONDITIONS = (
    ("device", "cpu_model"), ("device", "arch"), ("device", "cores"),
    ("device", "cores_available"), ("device", "board_model"), ("device", "isa"),
    ("device", "emulated"), ("device", "governor"),
    ("device", "max_freq_mhz"), ("device", "os"), ("device", "phone_model"), ("device", "soc"),
    ("cpu", "mask"), ("engine", "name"), ("engine", "version"),
    ("engine", "threads"), ("engine", "options"), ("inputs", "tensors"),
)
TEMPERATURE_GAP_C = 10.0  # hottest-zone readings further apart than this: not the same phone state


@dataclass(frozen=True)
class LatencyChange:
    label: str
    median_ratio: float  # median latency of this report / the first's
    ci95: tuple[float, float]  # bootstrap interval of that ratio
    p_value: float | None  # Mann-Whitney U, two-sided; None with too few samples
    verdict: str  # "slower", "faster" or "no significant change"


def apply(paths, fail_if_slower: float | None = None) -> dict:
    """Loads the reports and compares each with the first; JSON-ready."""
    reports = [report.load(p) for p in paths]
    labels = labels_for(paths)
    base = reports[0]["results"]["samples_ms"]
    changes = [latency_change(label, base, r["results"]["samples_ms"])
               for label, r in zip(labels[1:], reports[1:])]
    regressions = [c.label for c in changes if fail_if_slower is not None
                   and c.verdict == "slower" and c.median_ratio > 1 + fail_if_slower]
    return {"labels": labels, "paths": [str(p) for p in paths],
            "metrics": metric_rows(reports),
            "latency_changes": [asdict(c) for c in changes],
            "warnings": condition_warnings(labels, reports),
            "fail_if_slower": fail_if_slower, "regressions": regressions}


def labels_for(paths) -> list[str]:
    """File stems, or the paths as given where stems collide."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def metric_rows(reports) -> list[dict]:
    """One row per metric any report has: display values and ratios to the first report."""
    rows = [_metric_row(name, key, scale, reports) for name, key, scale in METRICS]
    return [r for r in rows if any(v is not None for v in r["values"])]


def _metric_row(name: str, key: tuple, scale: float, reports) -> dict:
    values = [_get(r, key) for r in reports]
    values = [v * scale if isinstance(v, (int, float)) else None for v in values]
    base = values[0]
    ratios = [v / base if v is not None and base else None for v in values]
    return {"metric": name, "values": values, "ratios": ratios}


def _get(rep: dict, key: tuple):
    for part in key:
        if not isinstance(rep, dict):
            return None
        rep = rep.get(part)
    return rep


def latency_change(label: str, a, b, seed: int = 0) -> LatencyChange:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ratio = float(np.median(b) / np.median(a))
    lo, hi = median_ratio_ci(a, b, np.random.default_rng(seed))
    p = mann_whitney_p(a, b) if min(a.size, b.size) >= MIN_SAMPLES else None
    significant = p is not None and p < ALPHA and not lo <= 1.0 <= hi
    verdict = ("slower" if ratio > 1 else "faster") if significant else "no significant change"
    return LatencyChange(label, ratio, (lo, hi), p, verdict)


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test: normal approximation with tie correction
    and continuity correction (scipy's method='asymptotic'), numpy only."""
    n1, n2 = a.size, b.size
    both = np.concatenate([a, b])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average rank for ties
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = max(abs(u1 - n1 * n2 / 2.0) - 0.5, 0.0) / sigma
    return math.erfc(z / math.sqrt(2.0))


def median_ratio_ci(a: np.ndarray, b: np.ndarray, rng, level: float = 0.95) -> tuple:
    """Percentile interval of median(b) / median(a), from moving-block bootstrap resamples."""
    ma = _bootstrap_medians(_cap(a, rng), rng)
    mb = _bootstrap_medians(_cap(b, rng), rng)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(mb / ma, [tail, 100 - tail])
    return float(lo), float(hi)


def _cap(x: np.ndarray, rng) -> np.ndarray:
    # Every k-th sample keeps the bootstrap fast on long runs and keeps the samples' time order,
    # which the blocks rely on; fewer samples can only widen the interval.
    return x if x.size <= BOOTSTRAP_CAP else x[:: -(-x.size // BOOTSTRAP_CAP)]


def _bootstrap_medians(x: np.ndarray, rng, batch: int = 100) -> np.ndarray:
    """Medians of resamples made of random runs of `block` consecutive samples."""
    n = x.size
    block = max(1, int(math.sqrt(n)))
    offsets = np.arange(block)
    out = []
    for start in range(0, BOOTSTRAP_RESAMPLES, batch):
        size = min(batch, BOOTSTRAP_RESAMPLES - start)
        starts = rng.integers(0, n - block + 1, size=(size, -(-n // block)))
        index = (starts[..., None] + offsets).reshape(size, -1)[:, :n]
        out.append(np.median(x[index], axis=1))
    return np.concatenate(out)


BUSY = 0.5  # load average per available core above which a machine counts as busy


def condition_warnings(labels, reports) -> list[str]:
    """One line per condition in which a report differs from the first, and per report
    measured on a busy machine."""
    out = [_busy(label, rep) for label, rep in zip(labels, reports) if _busy(label, rep)]
    out += [_throttled(label, rep) for label, rep in zip(labels, reports)
            if _throttled(label, rep)]
    for label, rep in zip(labels[1:], reports[1:]):
        gap = _temperature_gap(label, rep, labels[0], reports[0])
        out += [gap] if gap else []
        for section, key in CONDITIONS:
            mine, base = _get(rep, (section, key)), _get(reports[0], (section, key))
            if mine != base:
                out.append(f"{label}: {section}.{key} is {_short(mine)}, {labels[0]} has "
                           f"{_short(base)}: latency may differ for that reason alone")
    return list(dict.fromkeys(out))  # a report given twice warns once


def _busy(label: str, rep: dict) -> str | None:
    load, cores = _get(rep, ("device", "load_avg_1m")), _get(rep, ("device", "cores_available"))
    if load is None or not cores or load <= BUSY * cores:
        return None
    return (f"{label}: measured on a busy machine (load average {load:.1f} on {cores} cores): "
            f"expect noise")


def _throttled(label: str, rep: dict) -> str | None:
    sustained = _get(rep, ("results", "sustained")) or {}
    if not sustained.get("throttled"):
        return None
    return (f"{label}: throttled during its sustained run (last window's p50 "
            f"{sustained['last_over_first']:.2f}x the first's): its latency is a hot device's")


def _temperature_gap(label: str, rep: dict, base_label: str, base: dict) -> str | None:
    mine, theirs = (_get(r, ("sensors", "temp_c", "max")) for r in (rep, base))
    if mine is None or theirs is None or abs(mine - theirs) <= TEMPERATURE_GAP_C:
        return None
    return (f"{label}: hottest thermal zone reached {mine:.1f} C, {base_label} {theirs:.1f} C "
            f"(more than {TEMPERATURE_GAP_C:g} C apart): a hot phone runs slower clocks")


def _short(value) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):  # input tensors
        return ", ".join(f"{t.get('name')}{t.get('shape')}" for t in value)
    return repr(value)


def render(result: dict, fmt: str) -> str:
    if fmt not in FORMATS:
        from edgepress.errors import choices

        raise choices("--format", fmt, FORMATS)
    return FORMATS[fmt](result)


def _cells(result: dict) -> tuple[list, list]:
    """(header, rows) shared by the table and markdown renderings."""
    labels = result["labels"]
    header = ["metric", f"{labels[0]} (base)", *labels[1:]]
    rows = []
    for m in result["metrics"]:
        cells = [_num(m["values"][0])]
        cells += [_num(v) if r is None else f"{_num(v)} ({r:.3f}x)"
                  for v, r in zip(m["values"][1:], m["ratios"][1:])]
        rows.append([m["metric"], *cells])
    if result["latency_changes"]:
        rows.append(["latency change", "-", *(_change(c) for c in result["latency_changes"])])
    return header, rows


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"


def _change(c: dict) -> str:
    lo, hi = c["ci95"]
    p = ("p n/a (too few samples)" if c["p_value"] is None else
         "p<1e-15" if c["p_value"] < 1e-15 else f"p={c['p_value']:.2g}")
    return f"{c['verdict']}: median x{c['median_ratio']:.3f} [{lo:.3f}, {hi:.3f}] {p}"


def _footer(result: dict, prefix: str) -> list[str]:
    lines = [f"{prefix}warning: {w}" for w in result["warnings"]]
    if result["fail_if_slower"] is not None:
        limit = f"{result['fail_if_slower'] * 100:g}%"
        lines.append(f"{prefix}REGRESSION (significantly slower by more than {limit}): "
                     f"{', '.join(result['regressions'])}" if result["regressions"] else
                     f"{prefix}no significant regression beyond {limit}")
    return lines


def _table(result: dict) -> str:
    header, rows = _cells(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + _footer(result, ""))


def _markdown(result: dict) -> str:
    header, rows = _cells(result)
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = [f"| {' | '.join(esc[0])} |", "|" + "---|" * len(header)]
    lines += [f"| {' | '.join(r)} |" for r in esc[1:]]
    footer = _footer(result, "> ")
    return "\n".join(lines + ([""] + footer if footer else []))


def _json(result: dict) -> str:
    import json

    return json.dumps(result, indent=1)


FORMATS = {"table": _table, "markdown": _markdown, "json": _json}
