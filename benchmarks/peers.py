"""peers: what a user would run instead of edgepress, each called the way its documentation shows,
with its defaults, on the very fp32 model file and calibration samples edgepress used.

- ort-default: onnxruntime.quantization.quantize_static(model, out, reader), nothing else set
  (QDQ, per-tensor s8 weights, s8 activations, MinMax). ORT's docs suggest quant_pre_process first;
  a defaults user skips it, so it is skipped here.
- nncf: nncf.quantize(onnx_model, nncf.Dataset(samples)) on the ONNX model, defaults (preset
  PERFORMANCE, subset 300, fast bias correction). A benchmarks-only dependency
  (benchmarks/requirements.txt); absent, its rows say so.
- aeq-default: AI Edge Quantizer's static int8 recipe (recipe.static_wi8_ai8: int8 per-channel
  weights, int8 per-tensor activations, min/max) on the litert-torch fp32 .tflite, calibrate then
  quantize, as its README shows.
- ort-dynamic: onnxruntime.quantization.quantize_dynamic(model, out), defaults (the call ORT's
  docs recommend for RNNs and transformers); aeq-dynamic: AI Edge Quantizer's
  recipe.dynamic_wi8_afp32. These two run on the real models only.

For transformers (the real BERT), as their docs show: ORT's static and dynamic calls run after
onnxruntime.transformers.optimizer.optimize_model(model, "bert", num_heads, hidden_size) (fused
attention, LayerNorm and GELU), and NNCF gets model_type=nncf.ModelType.TRANSFORMER.

Seen here: NNCF 3.4's default ONNX PTQ gives a depthwise convolution's input per-channel scales and
zero points (the kws model: 64 of each); onnxruntime's QLinearConv takes only a per-tensor input
zero point, so that model does not run on onnxruntime and its row says so.

Each peer's model becomes a bundle beside edgepress's (the fp32 bundle's golden data and manifest,
the peer's model file and what was called), so `edgepress bench` measures it identically.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgepress.compress import calibrate
from edgepress.errors import UserError, first_line
from edgepress.runtime import artifact
from edgepress.runtime.session import Session


class Unavailable(Exception):
    """The peer cannot run here (not installed, or it failed): the reason goes into the table."""


def apply(name: str, fp32_bundle: Path, calib_source: str, calib_samples: int | None,
          out: Path, transformer: bool = False) -> dict:
    """Quantizes `fp32_bundle`'s model with peer `name` into the bundle `out`; returns its record
    (library, version, call). Raises Unavailable with the reason when the peer cannot run."""
    tool, fmt, package = PEERS[name]
    bundle = artifact.open_bundle(fp32_bundle)
    assert bundle.format == fmt, (name, bundle.format)
    data = calibrate.open_data(calib_source, bundle.inputs, calib_samples)  # seed 0 = edgepress's
    feeds = [_as_declared(bundle.model_path, s) for s in data.samples()]
    staged = out.with_name(out.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(bundle.path, staged, ignore=shutil.ignore_patterns("model.*", "manifest.*"))
    try:
        call = tool(bundle.model_path, feeds, staged / bundle.model_path.name, transformer)
    except Unavailable:
        shutil.rmtree(staged)
        raise
    except Exception as e:  # noqa: BLE001 - a peer crashing on a zoo model is a result
        shutil.rmtree(staged)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Unavailable(f"{package} failed: {type(e).__name__}: {first}") from None
    _smoke(staged / bundle.model_path.name, feeds[0], f"{package} {_version(package)}", staged)
    record = {"peer": name, "library": package, "version": _version(package), "call": call,
              "calibration": data.record()}
    _write_manifest(bundle, staged, record)
    shutil.rmtree(out, ignore_errors=True)
    staged.rename(out)
    return record


def _smoke(model: Path, sample: dict, who: str, staged: Path) -> None:
    """One inference through edgepress's Session: a peer's model its own runtime refuses is a
    result for the table (with the engine's reason), not a crash in the middle of the suite."""
    engine = {"onnx": "onnxruntime", "tflite": "LiteRT"}[artifact.format_of(model)]
    try:
        Session(model).run(sample)
    except UserError as e:
        shutil.rmtree(staged)
        raise Unavailable(f"{who}'s model does not run on {engine}: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    # Session's one line is cut at 200 characters; the engine's own message (EngineError's
    # cause) ends with the sentence that says what is wrong.
    full = first_line(getattr(e, "cause", None) or e, None)
    tail = full.split("Status Message:")[-1].strip().rstrip(".").split(". ")[-1]
    return tail or full


def _as_declared(model_path: Path, sample: dict) -> dict:
    """A sample cast to what the model file takes (LiteRT's int32 ids for torch's int64)."""
    if not hasattr(_as_declared, "cache"):
        _as_declared.cache = {}
    if model_path not in _as_declared.cache:
        _as_declared.cache[model_path] = {s.name: s.dtype for s in Session(model_path).inputs}
    want = _as_declared.cache[model_path]
    # np.ascontiguousarray makes a 0-d array (silero-vad's sr) 1-d: np.asarray keeps its shape
    return {k: np.asarray(v.astype(want.get(k, v.dtype)), order="C") for k, v in sample.items()}


def _write_manifest(fp32, where: Path, record: dict) -> None:
    manifest = json.loads((fp32.path / artifact.MANIFEST).read_text())
    model = where / fp32.model_path.name
    manifest.update(precision="int8", model_sha256=artifact.sha256_file(model),
                    model_size_bytes=model.stat().st_size)
    manifest["recipe"] = {"peer": record["peer"], "call": record["call"]}
    manifest["stages"]["quantize"] = record
    manifest["calibration"] = record["calibration"]
    artifact.write_manifest(where / artifact.MANIFEST, manifest)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


# ---- the peers: each takes (fp32 model file, calibration feeds, output file) -> the call made ----

# BERT's geometry for ORT's transformer optimizer (the real transformer: paraphrase-MiniLM-L3)
BERT_HEADS, BERT_HIDDEN = 12, 384


def _ort_optimized(src: Path, dst: Path) -> Path:
    """ORT's transformer optimizer, as its docs run it before quantizing a BERT."""
    from onnxruntime.transformers import optimizer

    with contextlib.redirect_stdout(io.StringIO()):
        optimized = optimizer.optimize_model(str(src), "bert", num_heads=BERT_HEADS,
                                             hidden_size=BERT_HIDDEN)
    path = dst.with_name("optimized.onnx")
    optimized.save_model_to_file(str(path))
    return path


def _ort_prefix(transformer: bool) -> str:
    return ('optimizer.optimize_model(model, "bert", num_heads=12, hidden_size=384) then '
            if transformer else "")


def _ort_dynamic(src: Path, feeds: list, dst: Path, transformer: bool = False) -> str:
    from onnxruntime.quantization import quantize_dynamic

    model = _ort_optimized(src, dst) if transformer else src
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(str(model), str(dst))
    _drop(model, src)
    return (_ort_prefix(transformer)
            + "onnxruntime.quantization.quantize_dynamic(model, out)  # all defaults")


def _drop(model: Path, src: Path) -> None:
    if model != src:  # the optimizer's intermediate file is no part of the bundle
        model.unlink()


def _ort_default(src: Path, feeds: list, dst: Path, transformer: bool = False) -> str:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    model = _ort_optimized(src, dst) if transformer else src
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(model), str(dst), Reader())
    _drop(model, src)
    return (_ort_prefix(transformer)
            + "onnxruntime.quantization.quantize_static(model, out, reader)  # all defaults")


def _nncf(src: Path, feeds: list, dst: Path, transformer: bool = False) -> str:
    try:
        import nncf
    except ImportError:
        raise Unavailable("nncf not installed (pip install -r benchmarks/requirements.txt)") \
            from None
    import onnx

    nncf.set_log_level(logging.ERROR)
    extra = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars print to stdout
        quantized = nncf.quantize(onnx.load(str(src)), nncf.Dataset(feeds), **extra)
    onnx.save(quantized, str(dst))
    return ("nncf.quantize(onnx_model, nncf.Dataset(samples)"
            + (", model_type=nncf.ModelType.TRANSFORMER)" if transformer else ")")
            + "  # otherwise defaults")


def _aeq_dynamic(src: Path, feeds: list, dst: Path, transformer: bool = False) -> str:
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(src), recipe.dynamic_wi8_afp32())
    with contextlib.redirect_stdout(io.StringIO()):
        result = q.quantize(enable_progress_report=False)
    dst.write_bytes(bytes(result.quantized_model))
    return ("ai_edge_quantizer.quantizer.Quantizer(fp32.tflite, recipe.dynamic_wi8_afp32())"
            ".quantize()")


def _aeq_default(src: Path, feeds: list, dst: Path, transformer: bool = False) -> str:
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(src), recipe.static_wi8_ai8())
    with contextlib.redirect_stdout(io.StringIO()):
        ranges = q.calibrate({"serving_default": feeds})
        result = q.quantize(ranges, enable_progress_report=False)
    dst.write_bytes(bytes(result.quantized_model))
    return ("ai_edge_quantizer.quantizer.Quantizer(fp32.tflite, recipe.static_wi8_ai8())"
            ".calibrate(...) then .quantize(...)")


# name -> (function, format it quantizes, package); the table's order
PEERS = {
    "ort-default": (_ort_default, "onnx", "onnxruntime"),
    "ort-dynamic": (_ort_dynamic, "onnx", "onnxruntime"),
    "nncf": (_nncf, "onnx", "nncf"),
    "aeq-default": (_aeq_default, "tflite", "ai-edge-quantizer"),
    "aeq-dynamic": (_aeq_dynamic, "tflite", "ai-edge-quantizer"),
}
FOR_RANDOM = ("ort-default", "nncf", "aeq-default")  # latency-only models: the static peers
