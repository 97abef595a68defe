"""The speed guard, a pass after every int8/dynamic method: time the result against fp32 on this
host and act when it is slower (for ONNX int8, try the other activation type)."""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized

def guard(job: Job, cfg: QuantizeConfig, result: Quantized, method) -> Quantized:
    """The pass: int8 and dynamic results only, whole-model runs only (not sensitivity probes).
    Times the result against fp32 here; for ONNX int8 on this host, tries the other
    activation type when the first is slower than fp32 and keeps the faster. What was measured
    and done goes into the figures; a result still slower than fp32 carries a warning."""
    if not cfg.speed_check or cfg.precision not in ("int8", "dynamic") or cfg.only:
        return result
    feeds = {k: _np(v, job.layout if job.fmt == "tflite" else "nchw")
             for k, v in job.sample.items()}
    result.figures["speed"] = latency_ratio(job.fp32_path, result.path, feeds)
    if result.figures["speed"]["ratio"] > 1.0 and cfg.activations == "auto" \
            and (job.fmt, cfg.precision, cfg.target) == ("onnx", "int8", "host"):
        result = _other_activations(job, cfg, result, feeds, method)
    ratio = result.figures["speed"]["ratio"]
    if ratio > 1.0:
        result.figures["warning"] = (f"{cfg.precision} ran {ratio:.2f}x the fp32 latency on this "
                                     f"host (1 thread): it saves size, not time, here")
    return result


def _other_activations(job: Job, cfg: QuantizeConfig, first: Quantized, feeds,
                       method) -> Quantized:
    """Re-quantizes with the other activation type (cached ranges: no re-calibration) and keeps
    whichever runs faster here; both ratios are recorded."""
    a = first.figures["types"]["activations"]
    b = "int8" if a == "uint8" else "uint8"
    kept = first.path.read_bytes()
    retry = method(job, replace(cfg, activations=b))
    retry.figures = {**first.figures, **retry.figures}  # the path and its choice still hold
    retry.figures["speed"] = latency_ratio(job.fp32_path, retry.path, feeds)
    tried = {a: first.figures["speed"]["ratio"], b: retry.figures["speed"]["ratio"]}
    best = retry if tried[b] < tried[a] else first
    if best is first:
        first.path.write_bytes(kept)  # both methods write job.out_path
    best.figures["speed"]["tried"] = tried
    return best


def _np(t, layout: str):
    from edgepress.runtime.layout import to_nhwc

    return (to_nhwc(t) if layout == "nhwc" else t).numpy()


def latency_ratio(fp32_path: Path, quant_path: Path, feeds: dict, budget_s: float = 0.3) -> dict:
    """p50 latency of the quantized model over the fp32 one, 1 thread, on this host."""
    from edgepress.runtime.session import Session

    p50 = {}
    for key, path in (("fp32", fp32_path), ("quantized", quant_path)):
        session = Session(path, threads=1)
        session.run(feeds)  # first run allocates
        times, start = [], time.perf_counter()
        while len(times) < 10 or time.perf_counter() - start < budget_s:
            t0 = time.perf_counter()
            session.run(feeds)
            times.append(time.perf_counter() - t0)
            if len(times) >= 500:
                break
        p50[key] = float(np.median(times)) * 1e3
    return {"fp32_p50_ms": p50["fp32"], "quantized_p50_ms": p50["quantized"],
            "ratio": p50["quantized"] / p50["fp32"], "threads": 1, "host": platform.machine()}

