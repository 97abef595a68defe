"""The quantization paths: `METHODS` maps (format, precision) to the candidate paths in order of
preference (onnx.py, onnx_rewritten.py, onnx_front_end.py, tflite.py and aeq_static.py say which
library does what, and why); those that apply to the model are measured and one is kept
(choose.py). `PASSES` run after the method, in order, each named. `run` is one quantization: the
kept candidate, then the passes."""

from __future__ import annotations

from edgepress.compress import compact
from edgepress.compress.quantize import aeq_static, choose, layers, onnx, onnx_bias, \
    onnx_front_end, onnx_rewritten, speed, tflite
from edgepress.compress.quantize.job import CALIB_METHODS, PRECISIONS, TARGETS, Job, \
    QuantizeConfig, Quantized
from edgepress.errors import UserError, one_of

METHODS = {
    ("onnx", "int8"): [onnx.static_int8_transformer, onnx.static_int8,
                       onnx_rewritten.static_int8_equalized, onnx_rewritten.static_int8_folded_stem,
                       onnx_rewritten.static_int8_folded_equalized, onnx.static_int8_weight_ops,
                       onnx_front_end.static_int8_float_front_end],
    ("onnx", "dynamic"): [onnx.dynamic_int8],
    ("onnx", "fp16"): [onnx.fp16],
    ("tflite", "int8"): [aeq_static.mixed, tflite.int8, tflite.int8_folded_stem,
                         aeq_static.static_minmax, aeq_static.static_moving_average],
    ("tflite", "dynamic"): [tflite.aeq("dynamic_wi8_afp32", "dynamic-range int8 (int8 weights, "
                                       "activations quantized at run time)")],
    ("tflite", "weight-int8"): [tflite.aeq("weight_only_wi8_afp32", "weight-only int8 (int8 "
                                           "weights dequantized to float compute)")],
    ("tflite", "fp16"): [tflite.aeq("float_casting_wf16", "fp16 weights, float32 compute")],
}


def _excluded(job: Job, cfg: QuantizeConfig, result: Quantized, method) -> Quantized:
    result.figures.setdefault("excluded_layers", list(cfg.exclude))
    return result


def _layers(job: Job, cfg: QuantizeConfig, result: Quantized, method) -> Quantized:
    result.figures.update(layers.record(result.path))  # read from the file as written
    return result


def _compact(job: Job, cfg: QuantizeConfig, result: Quantized, method) -> Quantized:
    result.figures["compacted_bytes"] = compact.apply(result.path)
    return result


# After the method, in this order: each takes (job, cfg, result, method) and returns the result.
# bias_correction after the speed guard: it corrects the file the guard kept (ONNX int8 only).
PASSES = (("speed_guard", speed.guard), ("bias_correction", onnx_bias.pass_),
          ("record_exclusions", _excluded), ("compact", _compact), ("record_layers", _layers))


def run(job: Job, cfg: QuantizeConfig) -> Quantized:
    """Quantizes `job.fp32_path` (or the torch model) into `job.out_path` as `cfg` says: the
    candidate `cfg.path` names, else the first that applies when layers are named (sensitivity
    probes, --max-drop steps), else the one measured best (choose.py); then every pass."""
    methods = applicable(candidates(job, cfg), job)
    if cfg.path:
        methods = [m for m in methods if choose.key(m) == cfg.path]
        if not methods:
            raise UserError(f"quantization path {cfg.path!r} does not apply to this model")
    elif cfg.only or cfg.exclude:
        methods = methods[:1]
    method, result = choose.apply(job, cfg, methods)
    result.figures["path"] = choose.key(method)
    for _name, run_pass in PASSES:
        result = run_pass(job, cfg, result, method)
    return result


def applicable(methods: list, job: Job) -> list:
    """The candidates whose `applies(job)` (what the model is: e.g. a transformer) holds; a
    method without `applies` fits every model."""
    return [m for m in methods if getattr(m, "applies", lambda _job: True)(job)]


def first_applicable(methods: list, job: Job):
    """The first candidate that applies: the one kept when nothing can be measured."""
    return applicable(methods, job)[0]


def candidates(job: Job, cfg: QuantizeConfig) -> list:
    """The candidate paths for (job.fmt, cfg.precision), after checking what they need."""
    one_of("--quantize", cfg.precision, PRECISIONS)
    one_of("--calib-method", cfg.calib_method, CALIB_METHODS)
    one_of("--quant-target", cfg.target, TARGETS)
    paths = METHODS.get((job.fmt, cfg.precision))
    if paths is None:
        raise UserError(f"--quantize {cfg.precision} is not available for {job.fmt}; valid for "
                        f"{job.fmt}: {', '.join(valid(job.fmt))}")
    if cfg.precision == "int8" and job.calib is None:
        raise UserError("--quantize int8 needs calibration data: --calib DATA (an .npz, an image "
                        "folder or module:function; `--calib random` only to smoke-test)")
    if (job.fmt, cfg.precision) == ("onnx", "int8"):
        return onnx.variants(paths, cfg)
    if job.fmt == "tflite" and cfg.precision == "int8" and job.loaded.model is None:
        raise UserError("tflite int8 quantizes the torch model; an ONNX source has none")
    return paths


def valid(fmt: str) -> list[str]:
    return [p for f, p in METHODS if f == fmt]
