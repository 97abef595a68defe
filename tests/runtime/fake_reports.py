"""Synthetic bench reports for compare/report/html tests: valid by the schema, no engine run.

(Not a conftest.py: pytest would swap it for tests/conftest.py, which other tests import.)
"""

import copy
import json

import numpy as np

from edgepress.runtime import report

_BASE = {
    "schema_version": report.SCHEMA_VERSION, "kind": "bench",
    "created_utc": "2026-01-01T00:00:00Z",
    "edgepress_version": "0.1.0", "command": "edgepress bench m.onnx",
    "device": {"arch": "x86_64", "cpu_model": "Test CPU", "cores": 4, "cores_available": 4,
               "isa": ["avx2"], "governor": "performance", "cur_freq_mhz": 3000.0,
               "max_freq_mhz": 3500.0, "board_model": None, "ram_bytes": 8 << 30,
               "os": "Linux 6.1", "os_release": "Debian", "python": "3.11.7"},
    "engine": {"name": "onnxruntime", "version": "1.20.0", "threads": 1,
               "options": {"graph_optimization": "all", "execution_mode": "sequential",
                           "cpu_arena": True}},
    "model": {"path": "m.onnx", "format": "onnx", "precision": "fp32", "sha256": "0" * 64,
              "size_bytes": 100_000, "bundle": None},
    "inputs": {"source": "golden",
               "tensors": [{"name": "x", "shape": [1, 3], "dtype": "float32"}]},
    "protocol": {"warmup_runs": 10, "warmup_s": 0.2, "min_runs": 50, "min_s": 1.0,
                 "duration_s": None, "memory": True},
    "memory": {"peak_rss_bytes": 80 << 20, "rss_before_load_bytes": 70 << 20,
               "load_added_rss_bytes": 5 << 20, "runs": 5, "method": "test"},
    "fidelity": {"snr_db": 60.0, "cosine": 0.9999},
}


def make(samples_ms, **sections) -> dict:
    """A report around `samples_ms`; keyword arguments update top-level sections."""
    rep = copy.deepcopy(_BASE)
    for key, value in sections.items():
        rep[key] = {**rep[key], **value} if isinstance(value, dict) and rep.get(key) else value
    samples = [float(s) for s in samples_ms]
    rep["results"] = {"init_ms": 12.0, "first_inference_ms": 3.0,
                      "latency_ms": report.stats(samples), "samples_ms": samples}
    return rep


def write(directory, name, samples_ms, **sections):
    """Writes make(...) to DIRECTORY/NAME.json and returns the path."""
    path = directory / f"{name}.json"
    path.write_text(json.dumps(make(samples_ms, **sections)))
    return path


def lognormal(n, median_ms, seed):
    """Latency-like samples: right-skewed around `median_ms`."""
    return median_ms * np.random.default_rng(seed).lognormal(0.0, 0.1, n)
