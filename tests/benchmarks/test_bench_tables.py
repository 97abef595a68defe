"""The suite's headline figures (benchmarks/figures.py) and tables (tables.py): pure arithmetic
and formatting over measured rows, so they are checked on made-up rows here; the suite itself
runs in CI as `benchmarks/run.py --quick`."""

import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import figures, tables  # noqa: E402

LINE = re.compile(r"^suite: models=\d+ real=\d+ artifacts=\d+ vs_ort_default_p50=\d+\.\d+ "
                  r"vs_ort_default_drop=[+-]\d+\.\d+ tflite_vs_aeq_p50=\d+\.\d+ "
                  r"real_vs_best_peer=[+-]\d+\.\d+ peak_efficiency_int8=\d+\.\d+%$")


def _row(model, tool, p50, value, fraction=0.1, fmt="onnx", precision="int8", error=None,
         recipe=None, **extra):
    row = {"model": model, "tool": tool, "recipe": recipe or
           ("int8" if precision == "int8" else "fp32"), "format": fmt, "precision": precision,
           "value": value, "snr_db": 30.0, "random_weights": False, "size_bytes": 100,
           "metric": "accuracy",
           "runs": {"1": {"p50_ms": p50, "fraction": fraction, "gmacs_per_s": 10.0}}, **extra}
    return {**row, "error": error} if error else row


def test_suite_figures_are_geometric_mean_ratio_and_mean_drop():
    rows = [_row("a", "edgepress", 1.0, 0.90, fraction=0.30),
            _row("a", "ort-default", 2.0, 0.91, fraction=0.50),  # a peer's: never the headline
            _row("b", "edgepress", 2.0, 0.50),
            _row("b", "ort-default", 1.0, 0.48),
            _row("b", "edgepress", 9.0, 0.99, fraction=0.99, precision="fp32"),  # not int8
            _row("b", "nncf", 1.0, None, error="does not run")]  # not an artifact
    s = figures.suite(rows)
    assert s["models"] == 2 and s["artifacts"] == 5 and s["pairs"] == 2 and s["real"] == 0
    assert math.isclose(s["vs_ort_default_p50"], math.sqrt(0.5 * 2.0))
    assert math.isclose(s["vs_ort_default_drop"], (-1.0 + 2.0) / 2)
    assert math.isclose(s["peak_efficiency_int8"], 30.0)
    assert s["efficiency"]["best_peer"]["tool"] == "ort-default"
    assert "tflite_vs_aeq_p50=nan" in figures.suite_line(s)  # no model had both: said so


def test_real_vs_best_peer_skips_broken_peers_and_takes_edgepress_best_recipe():
    real = {"task": "vad", "family": "v"}
    rows = [_row("v", "edgepress", 1.0, 0.70, **real),
            _row("v", "edgepress", 1.0, 0.98, recipe="dynamic-int8", **real),
            _row("v", "ort-default", 1.0, 0.99, broken=True, cosine=0.4, **real),
            _row("v", "nncf", 1.0, 0.94, **real),
            _row("v", "edgepress", 1.0, 0.80, fmt="tflite", **real),
            _row("v", "aeq-default", 2.0, 0.90, fmt="tflite", **real)]
    s = figures.suite(rows)
    assert s["real"] == 1
    assert math.isclose(s["real_vs_best_peer"], 100 * (0.98 - 0.94))
    assert math.isclose(s["tflite_vs_aeq_p50"], 0.5)
    assert LINE.match(figures.suite_line(s))


def test_real_vs_best_peer_ceiling_is_fp32_over_the_best_peer():
    real = {"task": "vad", "family": "v"}
    rows = [_row("v", "edgepress", 1.0, 0.95, **real),
            _row("v", "edgepress", 5.0, 0.97, precision="fp32", **real),
            _row("v", "edgepress", 5.0, 0.96, precision="fp32", fmt="tflite", **real),
            _row("v", "nncf", 1.0, 0.94, **real),
            _row("w", "edgepress", 1.0, 0.80, **real),  # no fp32 row: no headroom to count
            _row("w", "nncf", 1.0, 0.70, **real)]
    s = figures.suite(rows)
    assert math.isclose(s["real_per_model"]["v"]["headroom"], 100 * (0.97 - 0.94))
    assert s["real_per_model"]["w"]["headroom"] is None
    assert math.isclose(s["real_vs_best_peer_ceiling"], 100 * (0.97 - 0.94))
    assert math.isclose(s["real_vs_best_peer"], (100 * (0.95 - 0.94) + 100 * 0.10) / 2)


def test_measured_peak_efficiency_is_not_clamped():
    peak = _row("gemm", "edgepress", 1.0, None, peak=True)
    peak["runs"]["1"]["gmacs_per_s"] = 5.0
    row = _row("a", "edgepress", 1.0, 0.9)  # 10 GMAC/s against a measured 5: 200%
    peaks = figures.engine_peaks([peak, row])
    assert figures.vs_measured(row, "1", peaks) == 2.0
    assert figures.suite([peak, row])["models"] == 1  # the microbenchmark is no model


def test_cells_say_random_weights_broken_and_onnx_source():
    rnd = _row("r", "edgepress", 1.0, 1.0, random_weights=True)
    assert tables.value_text(rnd) == "random weights"
    bad = _row("v", "ort-default", 1.0, 0.25, broken=True, cosine=0.44)
    assert tables.value_text(bad) == "25.0% broken (cos 0.44)"
    onnx_only = [_row("m", "edgepress", 1.0, 0.9, task="filetype", coverage="ONNX source")]
    head = tables.head_to_head(onnx_only)
    assert "ONNX source" in head.splitlines()[2].split("|")[7]


def test_head_to_head_leads_with_real_models():
    rows = [_row("r", "edgepress", 1.0, 1.0, random_weights=True),
            _row("v", "edgepress", 1.0, 0.9, task="vad", family="v", coverage="")]
    body = tables.head_to_head(rows).splitlines()[2:]
    assert body[0].startswith("| v ") and body[1].startswith("| r ")


def test_table_puts_peers_after_edgepress_per_format():
    rows = [_row("a", "aeq-default", 1, 1, fmt="tflite"), _row("a", "ort-default", 1, 1),
            _row("a", "edgepress", 1, 1, fmt="tflite"), _row("a", "edgepress", 1, 1)]
    order = [(r["format"], r["tool"]) for r in tables.ordered(rows)]
    assert order == [("onnx", "edgepress"), ("onnx", "ort-default"),
                     ("tflite", "edgepress"), ("tflite", "aeq-default")]
