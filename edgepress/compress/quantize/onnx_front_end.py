"""ONNX static int8 with a log-spectrum front end kept float: the convolutions (CQT, mel,
STFT filterbanks) up to a Log stay float, the layers after it are quantized by onnx.py's
static_qdq. One candidate of the int8 key (paths.METHODS), measured beside the others."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgepress.compress.quantize import graph_facts, normalise
from edgepress.compress.quantize import onnx as onnx_paths
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized, work_dir


def static_int8_float_front_end(job: Job, cfg: QuantizeConfig) -> Quantized:
    """static_int8 with the log-spectrum front end (graph_facts.log_front_end: the Log and
    every node upstream of it) kept float, the layers after it int8. basic-pitch (a CQT front
    end, 26 of its 32 convolutions, taken to decibels): 28.1 dB SNR on its held-out windows
    where every op type int8 gave 7.4 dB, and the greedy float fallback of --min-snr reached only
    9.5 dB with 8 layers kept float (it adds one layer at a time; the error is the front end's
    as a whole)."""
    front = graph_facts.log_front_end(_normalised(job))
    weights = [name for name, op in front if op in onnx_paths.WEIGHT_OPS]
    kept = tuple(cfg.exclude) + tuple(name for name, _ in front)
    figures = {"method": "static int8 QDQ, per-channel weights, the log-spectrum front end float",
               "float_front_end": {"nodes": len(front), "weight_layers": weights,
                                   "why": "a Log takes it to decibels: int8 activations cannot "
                                          "hold the spectrum's range upstream"}}
    return onnx_paths.static_qdq(job, replace(cfg, exclude=kept), figures, tag="front")


static_int8_float_front_end.key = "onnx-static-float-front-end"
static_int8_float_front_end.applies = lambda job: (
    not graph_facts.attention(job.fp32_path)
    and bool(graph_facts.log_front_end(_normalised(job))))


def _normalised(job: Job) -> Path:
    """The normalised float file quantize_static reads (its node names are what it excludes)."""
    return normalise.normalise_onnx(job.fp32_path, work_dir(job))[0]
