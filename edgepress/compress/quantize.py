"""quantize: post-training quantization of an exported model, one path per (format, precision).

Which library does what, and why (DESIGN.md records the measurements behind these choices):
- ONNX int8: onnxruntime.quantization.quantize_static on the exported (normalised) model, QDQ
  format, per-channel s8 weights; activations u8 on x86 (ORT's u8s8 kernels are its fast path:
  s8s8 measured 1.25-2x slower with VNNI), s8 on Arm. --calib-method picks ORT's calibrator.
- ONNX dynamic: quantize_dynamic, MatMul/Gemm-type ops only (ORT's ConvInteger runs slower than
  float Conv on CPU, so convolutions stay float). ONNX fp16: onnxruntime.transformers.float16 with
  float32 I/O kept.
- TFLite int8: PT2E quantization in torch (litert-torch's PT2EQuantizer, per-channel weights,
  histogram-calibrated activations) converted by litert-torch into a fully-int8 model. Measured
  0.43x fp32 latency and ~20 dB SNR, where AI Edge Quantizer's static recipe on the converted file
  calibrated to 7.6 dB and ran 2x slower than fp32.
- TFLite dynamic / weight-int8 / fp16: AI Edge Quantizer recipes on the fp32 .tflite (dynamic
  measured 0.30x fp32 latency, cosine 0.997 on a sentence encoder); PT2E's dynamic mode has no
  weight-only or fp16 variant, AEQ covers all three with one code path.
"""

from __future__ import annotations

import contextlib
import io
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepress.compress import compact
from edgepress.errors import UserError, choices

PRECISIONS = ("int8", "dynamic", "weight-int8", "fp16")
CALIB_METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("host", "x86-vnni", "x86", "arm")
CALIB_CAP = 1024  # calibration samples used at most; ranges settle long before this


@dataclass(frozen=True)
class QuantizeConfig:
    precision: str
    calib_method: str = "minmax"
    target: str = "host"  # the CPU the bundle is for; "host" reads this machine's ISA
    exclude: tuple = ()  # layers kept in float: ONNX node names / torch module names
    only: tuple = ()  # quantize just these layers (per-layer sensitivity); () = all
    activations: str = "auto"  # ONNX int8 activation type: auto (by target), uint8, int8
    speed_check: bool = True  # time int8 against fp32 here and act when int8 is slower


@dataclass
class Job:
    """What every method may need; each uses only its part."""

    loaded: object  # compress.load.Loaded
    fmt: str
    fp32_path: Path  # the exported fp32 model file
    out_path: Path  # where the quantized model goes
    calib: object = None  # calibrate.Dataset, or None for methods that need no data
    sample: dict = field(default_factory=dict)  # name -> torch tensor (export's trace sample)
    layout: str = "nchw"  # TFLite I/O layout
    work: Path | None = None  # scratch dir kept across calls (normalised model, range cache)


@dataclass
class Quantized:
    path: Path
    figures: dict  # method, library, choices and why, notes -> manifest stages.quantize


def apply(job: Job, cfg: QuantizeConfig) -> Quantized:
    """Quantizes `job.fp32_path` (or the torch model) into `job.out_path` as `cfg` says."""
    if cfg.precision not in PRECISIONS:
        raise choices("--quantize", cfg.precision, PRECISIONS)
    if cfg.calib_method not in CALIB_METHODS:
        raise choices("--calib-method", cfg.calib_method, CALIB_METHODS)
    if cfg.target not in TARGETS:
        raise choices("--quant-target", cfg.target, TARGETS)
    method = METHODS.get((job.fmt, cfg.precision))
    if method is None:
        valid = [p for f, p in METHODS if f == job.fmt]
        raise UserError(f"--quantize {cfg.precision} is not available for {job.fmt}; valid for "
                        f"{job.fmt}: {', '.join(valid)}")
    if cfg.precision == "int8" and job.calib is None:
        raise UserError("--quantize int8 needs calibration data: --calib DATA (an .npz, an image "
                        "folder or module:function; `--calib random` only to smoke-test)")
    if job.fmt == "tflite" and cfg.precision == "int8" and job.loaded.model is None:
        raise UserError("tflite int8 quantizes the torch model; an ONNX source has none")
    result = method(job, cfg)
    if cfg.speed_check and cfg.precision in ("int8", "dynamic") and not cfg.only:
        result = _protect_speed(job, cfg, result)
    result.figures.setdefault("excluded_layers", list(cfg.exclude))
    result.figures["compacted_bytes"] = compact.apply(result.path)
    return result


def _protect_speed(job: Job, cfg: QuantizeConfig, result: Quantized) -> Quantized:
    """Times the result against fp32 here; for ONNX int8 on this host, tries the other
    activation type when the first is slower than fp32 and keeps the faster. What was measured
    and done goes into the figures; a result still slower than fp32 carries a warning."""
    feeds = {k: _np(v, job.layout if job.fmt == "tflite" else "nchw")
             for k, v in job.sample.items()}
    result.figures["speed"] = latency_ratio(job.fp32_path, result.path, feeds)
    if result.figures["speed"]["ratio"] > 1.0 and cfg.activations == "auto" \
            and (job.fmt, cfg.precision, cfg.target) == ("onnx", "int8", "host"):
        result = _other_activations(job, cfg, result, feeds)
    ratio = result.figures["speed"]["ratio"]
    if ratio > 1.0:
        result.figures["warning"] = (f"{cfg.precision} ran {ratio:.2f}x the fp32 latency on this "
                                     f"host (1 thread): it saves size, not time, here")
    return result


def _other_activations(job: Job, cfg: QuantizeConfig, first: Quantized, feeds) -> Quantized:
    """Re-quantizes with the other activation type (cached ranges: no re-calibration) and keeps
    whichever runs faster here; both ratios are recorded."""
    a = first.figures["types"]["activations"]
    b = "int8" if a == "uint8" else "uint8"
    kept = first.path.read_bytes()
    retry = METHODS[(job.fmt, cfg.precision)](job, _replace(cfg, activations=b))
    retry.figures["speed"] = latency_ratio(job.fp32_path, retry.path, feeds)
    tried = {a: first.figures["speed"]["ratio"], b: retry.figures["speed"]["ratio"]}
    best = retry if tried[b] < tried[a] else first
    if best is first:
        first.path.write_bytes(kept)  # both methods write job.out_path
    best.figures["speed"]["tried"] = tried
    return best


def _np(t, layout: str):
    from edgepress.compress import export

    return (export.to_nhwc(t) if layout == "nhwc" else t).numpy()


def _replace(cfg: QuantizeConfig, **changes) -> QuantizeConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


# ---- ONNX ------------------------------------------------------------------------------------

def normalise_onnx(src: Path, work: Path) -> tuple[Path, list]:
    """Opset >= 13 (per-channel QDQ) plus onnxruntime's quant_pre_process (symbolic shape
    inference, graph optimisation, ONNX shape inference); returns the file and what was done."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "normalised.onnx"
    if out.exists():
        return out, [line for line in (work / "normalised.txt").read_text().splitlines()]
    model, notes = onnx.load(str(src)), []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        model = onnx.version_converter.convert_version(model, 13)
        notes.append(f"opset {opset} -> 13 (per-channel QuantizeLinear needs 13)")
    try:
        quant_pre_process(model, str(out))
        notes.append("onnxruntime quant_pre_process: symbolic shape inference, graph "
                     "optimisation, ONNX shape inference")
    except Exception as e:  # symbolic inference rejects some exotic ops; the rest still helps
        quant_pre_process(model, str(out), skip_symbolic_shape=True)
        notes.append(f"onnxruntime quant_pre_process without symbolic shape inference "
                     f"({type(e).__name__})")
    (work / "normalised.txt").write_text("\n".join(notes))
    return out, notes


def _aligned(src: Path, work: Path) -> tuple[Path, list]:
    """The normalised model with its narrow convolutions' input channels padded (align.py)."""
    import onnx

    from edgepress.compress import align

    out, record = work / "aligned.onnx", work / "aligned.txt"
    if record.exists():  # the accuracy search and the scans quantize the same model many times
        notes = record.read_text().splitlines()
        return (out if notes else src), notes
    model = onnx.load(str(src))
    notes = align.pad_input_channels(model)
    if notes:
        onnx.save(model, str(out))
    record.write_text("\n".join(notes))
    return (out if notes else src), notes


def int8_types(target: str) -> dict:
    """Activation/weight types for ORT int8 on `target`, and the reason (for the manifest)."""
    isa = _host_isa() if target == "host" else target
    if isa == "x86-vnni":
        return {"activations": "uint8", "weights": "int8", "reduce_range": False, "isa": isa,
                "why": "x86 with VNNI: onnxruntime's u8 activation x s8 weight kernels use "
                       "VPDPBUSD directly; s8/s8 measured 1.25-2x slower on this project's "
                       "machines (ResNet-18, MobileNetV2)"}
    if isa == "x86":
        return {"activations": "uint8", "weights": "int8", "reduce_range": True, "isa": isa,
                "why": "x86 without VNNI: u8s8 is onnxruntime's fast path; 7-bit weights "
                       "(reduce_range) avoid saturating VPMADDUBSW's 16-bit sums"}
    return {"activations": "int8", "weights": "int8", "reduce_range": False, "isa": isa,
            "why": "Arm: onnxruntime's s8s8 kernels (SDOT/SMMLA) are its recommended path"}


def _host_isa() -> str:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return "arm"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "x86"
    return "x86-vnni" if any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8")) \
        else "x86"


class _Reader:
    """onnxruntime's CalibrationDataReader over a streamed Dataset, read in consecutive chunks.

    Chunks are how memory stays bounded: ORT's calibrators keep every intermediate tensor of
    every sample until collect_data() returns. Its own bound, CalibMaxIntermediateOutputs, is
    unusable: MinMaxCalibrater.collect_data (ORT 1.32) empties the collected outputs at the bound
    without folding them into the ranges, so all but the last partial chunk is silently lost.
    quantize_static's CalibStridedMinMax calls collect_data once per chunk, and both the MinMax
    and the histogram calibrators accumulate across calls."""

    def __init__(self, dataset):
        self.total = min(dataset.record()["samples"], CALIB_CAP)
        self.chunk = max(d for d in range(1, 33) if self.total % d == 0)  # ORT wants a divisor
        self._it = iter(dataset.samples())
        self._left = self.total

    def __len__(self):
        return self.total

    def set_range(self, start_index: int, end_index: int):
        self._left = end_index - start_index  # ORT walks the chunks in order

    def get_next(self):
        if self._left <= 0:
            return None
        self._left -= 1
        return next(self._it, None)


def _onnx_static(job: Job, cfg: QuantizeConfig) -> Quantized:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    work = work_dir(job)
    src, notes = normalise_onnx(job.fp32_path, work)
    types = int8_types(cfg.target)
    if types["isa"].startswith("x86"):
        src, aligned = _aligned(src, work)
        notes = notes + aligned
    if cfg.activations != "auto" and cfg.activations != types["activations"]:
        types = {**types, "activations": cfg.activations,
                 "why": f"{cfg.activations} activations: the {types['activations']} choice ran "
                        f"slower than fp32 on this host (see speed)"}
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.calib_method]
    cache = work / f"ranges-{cfg.calib_method}.json"
    reader = None if cache.exists() else _Reader(job.calib)
    from edgepress.compress import export

    # the histogram calibrators print progress with print(): silence fd 1 and sys.stdout both
    with export.quiet(), contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(src), str(job.out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=qtype[types["activations"]], weight_type=qtype[types["weights"]],
            reduce_range=types["reduce_range"], calibrate_method=method,
            nodes_to_exclude=list(cfg.exclude), nodes_to_quantize=list(cfg.only) or None,
            calibration_cache_path=str(cache),
            extra_options={"CalibStridedMinMax": reader.chunk} if reader else {})
    figures = {"method": "static int8 QDQ, per-channel weights", "library": "onnxruntime",
               "calib_method": cfg.calib_method, "calib_samples": _calib_count(job),
               "types": types, "normalisation": notes}
    return Quantized(job.out_path, figures)


def _calib_count(job: Job) -> int:
    return min(job.calib.record()["samples"], CALIB_CAP)


def _onnx_dynamic(job: Job, cfg: QuantizeConfig) -> Quantized:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, notes = normalise_onnx(job.fp32_path, work_dir(job))
    ops = ["MatMul", "Gemm", "Attention", "LSTM", "GRU"]
    quantize_dynamic(str(src), str(job.out_path), op_types_to_quantize=ops,
                     weight_type=QuantType.QInt8, nodes_to_exclude=list(cfg.exclude),
                     nodes_to_quantize=list(cfg.only) or None)
    return Quantized(job.out_path, {
        "method": "dynamic int8 (weights int8, activations quantized at run time)",
        "library": "onnxruntime", "op_types": ops, "normalisation": notes,
        "why": "convolutions stay float: onnxruntime's ConvInteger is slower than float Conv "
               "on CPU; use --quantize int8 for CNNs"})


def _onnx_fp16(job: Job, cfg: QuantizeConfig) -> Quantized:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(job.fp32_path)), keep_io_types=True)
    onnx.save(model, str(job.out_path))
    return Quantized(job.out_path, {
        "method": "fp16 weights and compute, float32 inputs/outputs",
        "library": "onnxruntime.transformers.float16",
        "note": "halves the file; onnxruntime's CPU provider runs most fp16 ops through casts, so "
                "expect no CPU speed-up (GPUs and NPUs gain)"})


# ---- TFLite ----------------------------------------------------------------------------------

def _tflite_int8(job: Job, cfg: QuantizeConfig) -> Quantized:
    import litert_torch
    from litert_torch.quantize import quant_config

    from edgepress.compress import export

    model, prefix = job.loaded.model, ""
    if job.layout == "nhwc":
        model, prefix = export.ChannelsLast(model), "inner."
    converted, quantizer = pt2e_model(model, job.sample, job.calib, job.layout,
                                      exclude=[prefix + name for name in cfg.exclude])
    kwargs = _layout_kwargs(job.sample, job.layout)
    try:
        with export.quiet():
            litert_torch.convert(converted, (), sample_kwargs=kwargs,
                                 quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
                                 ).export(str(job.out_path))
    except Exception as e:
        raise UserError(f"TFLite int8 conversion (litert-torch PT2E) failed: "
                        f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else e}") \
            from None
    return Quantized(job.out_path, {
        "method": "full-integer int8 (per-channel int8 weights, int8 activations and I/O)",
        "library": "litert-torch PT2EQuantizer + litert-torch conversion",
        "calib_method": "histogram (PT2E HistogramObserver; --calib-method applies to ONNX)",
        "why": "measured 0.43x fp32 latency, ~20 dB SNR; AI Edge Quantizer's static recipe "
               "calibrated to 7.6 dB and ran 2x slower"})


def pt2e_model(model, sample: dict, calib, layout: str, exclude=(), only=()):
    """PT2E fake-quantized torch model (runnable in torch) and its quantizer. Layers (conv/linear
    module names) in `exclude` stay float; with `only`, every other layer does."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    kwargs = _layout_kwargs(sample, layout)
    try:
        graph = torch.export.export(model.eval(), (), kwargs).module()
    except Exception as e:
        raise UserError(f"torch.export failed before PT2E quantization: "
                        f"{str(e).strip().splitlines()[0][:200]}") from None
    layers = _tag_layers(graph)
    unknown = sorted((set(exclude) | set(only)) - layers)
    if unknown:
        raise UserError(f"layer {unknown[0]!r} is not a quantizable layer of this model; its "
                        f"layers are: {', '.join(sorted(layers))}")
    # `only` keeps every other layer in float; non-layer ops (add, pooling) stay quantized
    quantizer = _layer_quantizer(set(exclude) | (layers - set(only) if only else set()))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i, s in enumerate(calib.samples()):
            if i >= CALIB_CAP:
                break
            prepared(**_layout_kwargs({k: torch.from_numpy(v) for k, v in s.items()}, layout))
    return convert_pt2e(prepared, fold_quantize=False), quantizer


_FOLLOWERS = ("batch_norm", "getitem", "relu", "hardtanh", "clamp")


def _tag_layers(graph) -> set:
    """Tags every conv/linear node, and the batch-norm/activation nodes fused with it, with the
    layer's module name (node.meta["edgepress_layer"]); returns the names. Why not
    PT2EQuantizer.set_module_name: litert-torch's filter parses nn_module_stack keys of the old
    dynamo form (`L__self___stem_0`) while torch.export 2.13 writes `L__self__stem.0`, so it never
    matches; and it requires every node of a conv-bn-relu pattern to sit in the named module."""
    owner, names = {}, set()
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        target, stack = str(node.target), node.meta.get("nn_module_stack") or {}
        if ("conv" in target or "linear" in target or "addmm" in target) and stack:
            owner[node] = list(stack.values())[-1][0]  # the innermost module: the layer
            names.add(owner[node])
        elif any(f in target for f in _FOLLOWERS) and node.args and node.args[0] in owner:
            owner[node] = owner[node.args[0]]
        if node in owner:
            node.meta["edgepress_layer"] = owner[node]
    return names


def _layer_quantizer(float_layers: set):
    """litert-torch's PT2EQuantizer (global per-channel int8 config) leaving `float_layers`
    unannotated, by their edgepress_layer tag (see _tag_layers)."""
    from litert_torch.quantize import pt2e_quantizer as pq

    class LayerQuantizer(pq.PT2EQuantizer):
        def _annotate_for_static_quantization_config(self, model):
            self._annotate_all_static_patterns(model, self.global_config, self._quantized)
            _annotate_missed_adds(model, self.global_config, self._quantized)
            return model

        @staticmethod
        def _quantized(node) -> bool:
            return node.meta.get("edgepress_layer") not in float_layers

    return LayerQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))


def _annotate_missed_adds(model, config, keep) -> None:
    """litert-torch's `add` annotator groups adds by source function and annotates only the first
    output node of each group, so chained residual adds (MobileNetV2's blocks) stay float, each
    wrapped in DEQUANTIZE/QUANTIZE in the .tflite. Annotate every tensor-tensor add it missed the
    way it annotates the first one."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, \
        get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.add.Tensor \
                or "quantization_annotation" in node.meta or not keep(node):
            continue
        inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if len(inputs) == 2:
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: get_input_act_qspec(config) for a in inputs},
                output_qspec=get_output_act_qspec(config), _annotated=True)


def _layout_kwargs(sample: dict, layout: str) -> dict:
    from edgepress.compress import export

    return {k: export.to_nhwc(v) for k, v in sample.items()} if layout == "nhwc" else sample


def _aeq(recipe_name: str, what: str):
    """An AI Edge Quantizer method applying one of its recipes to the fp32 .tflite."""
    def method(job: Job, cfg: QuantizeConfig) -> Quantized:
        from ai_edge_quantizer import quantizer, recipe

        from edgepress.compress import export

        if cfg.exclude:
            raise UserError(f"keeping layers in float is supported for int8 and ONNX dynamic, "
                            f"not for tflite {cfg.precision}")
        with export.quiet():
            q = quantizer.Quantizer(str(job.fp32_path), _RECIPES[recipe_name](recipe))
            result = q.quantize(enable_progress_report=False)
        job.out_path.write_bytes(bytes(result.quantized_model))
        return Quantized(job.out_path, {"method": what, "library": "ai-edge-quantizer",
                                        "recipe": recipe_name})
    method.__name__ = f"_aeq_{recipe_name}"
    return method


def _fp16_recipe(recipe):
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              num_bits=16,
                              algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return rm.get_quantization_recipe()


_RECIPES = {"dynamic_wi8_afp32": lambda r: r.dynamic_wi8_afp32(),
            "weight_only_wi8_afp32": lambda r: r.weight_only_wi8_afp32(),
            "float_casting_wf16": _fp16_recipe}


# ---- int8 slower than fp32? -------------------------------------------------------------------

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


def work_dir(job: Job) -> Path:
    work = job.work or job.out_path.parent / ".quantize-work"
    work.mkdir(parents=True, exist_ok=True)
    return work


METHODS = {
    ("onnx", "int8"): _onnx_static,
    ("onnx", "dynamic"): _onnx_dynamic,
    ("onnx", "fp16"): _onnx_fp16,
    ("tflite", "int8"): _tflite_int8,
    ("tflite", "dynamic"): _aeq("dynamic_wi8_afp32", "dynamic-range int8 (int8 weights, "
                                "activations quantized at run time)"),
    ("tflite", "weight-int8"): _aeq("weight_only_wi8_afp32", "weight-only int8 (int8 weights "
                                    "dequantized to float compute)"),
    ("tflite", "fp16"): _aeq("float_casting_wf16", "fp16 weights, float32 compute"),
}
