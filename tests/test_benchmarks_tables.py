"""The suite's headline figures (benchmarks/tables.py): pure arithmetic over measured rows, so it
is checked on made-up rows here; the suite itself runs in CI as `benchmarks/run.py --quick`."""

import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import tables

LINE = re.compile(r"^suite: models=\d+ artifacts=\d+ vs_ort_default_p50=\d+\.\d+ "
                  r"vs_ort_default_drop=[+-]\d+\.\d+ peak_efficiency_int8=\d+\.\d+%$")


def _row(model, tool, p50, value, fraction=0.1, fmt="onnx", precision="int8", error=None):
    row = {"model": model, "tool": tool, "recipe": "int8" if precision == "int8" else "fp32",
           "format": fmt, "precision": precision, "value": value, "snr_db": 30.0,
           "random_weights": False,
           "runs": {"1": {"p50_ms": p50, "fraction": fraction}}}
    return {**row, "error": error} if error else row


def test_suite_figures_are_geometric_mean_ratio_and_mean_drop():
    rows = [_row("a", "edgepress", 1.0, 0.90, fraction=0.30),
            _row("a", "ort-default", 2.0, 0.91),
            _row("b", "edgepress", 2.0, 0.50),
            _row("b", "ort-default", 1.0, 0.48),
            _row("b", "edgepress", 9.0, 0.99, fraction=0.99, precision="fp32"),  # not int8
            _row("b", "nncf", 1.0, None, error="does not run")]  # not an artifact
    s = tables.suite(rows)
    assert s["models"] == 2 and s["artifacts"] == 5 and s["pairs"] == 2
    assert math.isclose(s["vs_ort_default_p50"], math.sqrt(0.5 * 2.0))
    assert math.isclose(s["vs_ort_default_drop"], (-1.0 + 2.0) / 2)
    assert math.isclose(s["peak_efficiency_int8"], 30.0)
    assert LINE.match(tables.suite_line(s))


def test_table_puts_peers_after_edgepress_per_format():
    rows = [_row("a", "aeq-default", 1, 1, fmt="tflite"), _row("a", "ort-default", 1, 1),
            _row("a", "edgepress", 1, 1, fmt="tflite"), _row("a", "edgepress", 1, 1)]
    order = [(r["format"], r["tool"]) for r in tables.ordered(rows)]
    assert order == [("onnx", "edgepress"), ("onnx", "ort-default"),
                     ("tflite", "edgepress"), ("tflite", "aeq-default")]
