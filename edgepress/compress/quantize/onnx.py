"""ONNX quantization paths: onnxruntime.quantization on the exported, normalised model.

- int8: quantize_static, QDQ format, s8 weights; activations u8 on x86 (ORT's u8s8
  kernels are its fast path: s8s8 measured 1.25-2x slower with VNNI), s8 on Arm. Each recipe
  below is a family of candidates (`variants`): calibrator (--calib-method auto: MinMax and
  Percentile; Entropy only when named) x per-channel or per-tensor weights.
- int8 on a rewritten torch model (onnx_rewritten.py): the stem folded, equalized, or both.
- int8, weight ops only: quantize_static on Conv/MatMul/Gemm, embedding tables weight-only.
- int8 with a log-spectrum front end kept float (onnx_front_end.py).
- int8 for transformers (the graph has Softmax / LayerNorm / an embedding lookup on an integer
  input): quantize_static on MatMul/Gemm only, outputs float, embedding tables weight-only.
  choose.py measures the candidates that apply and keeps one.
- dynamic: quantize_dynamic, per-channel, MatMul (Gemm rewritten by ORT), LSTM, Attention and
  embedding Gathers (ORT's ConvInteger runs slower than float Conv on CPU, so convolutions stay
  float). The manifest's `graph` is read from the written file.
- fp16: onnxruntime.transformers.float16 with float32 I/O kept.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

from edgepress import progress
from edgepress.compress.quantize import graph_facts, normalise
from edgepress.runtime import fingerprint
from edgepress.compress.quantize.job import CALIB_CAP, Job, QuantizeConfig, Quantized, work_dir

def _aligned(src: Path, work: Path) -> tuple[Path, list]:
    """The normalised model with its narrow convolutions' input channels padded (align.py)."""
    import onnx

    from edgepress.compress.quantize import align

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
    isa = fingerprint.int8_family() if target == "host" else target
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


def float_source(job: Job, cfg: QuantizeConfig) -> Path:
    """The float file quantize_static took for `job` (normalised; on x86 with its narrow
    convolutions aligned): its node names are the QDQ file's (onnx_bias.py compares the two)."""
    work = work_dir(job)
    src, _ = normalise.normalise_onnx(job.fp32_path, work)
    if int8_types(cfg.target)["isa"].startswith("x86"):
        src, _ = _aligned(src, work)
    return src


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
        self.bar = progress.OFF  # the calibration's live line, on a terminal (see static_qdq)

    def __len__(self):
        return self.total

    def set_range(self, start_index: int, end_index: int):
        self._left = end_index - start_index  # ORT walks the chunks in order

    def get_next(self):
        if self._left <= 0:
            return None
        self._left -= 1
        self.bar.update()
        return next(self._it, None)


WEIGHT_OPS = ["Conv", "MatMul", "Gemm"]  # Gemm too: quant_pre_process fuses MatMul+Add into Gemm


def static_int8(job: Job, cfg: QuantizeConfig) -> Quantized:
    """Every op type onnxruntime quantizes statically (CNNs: measured fine)."""
    return static_qdq(job, cfg, {"method": "static int8 QDQ, per-channel weights"})


static_int8.key = "onnx-static-all-ops"
static_int8.applies = lambda job: not graph_facts.attention(job.fp32_path)


def static_int8_weight_ops(job: Job, cfg: QuantizeConfig) -> Quantized:
    """Only the weight-carrying ops (Conv, MatMul, Gemm) quantized, their outputs too; embedding
    tables weight-only. magika (findings-15): 90.1% accuracy where all op types gave 26.2%, the
    JAX export's LayerNorm being elementwise Mul/Add that int8 cannot carry."""
    return _with_tables(job, cfg, {"method": "static int8 QDQ on Conv/MatMul/Gemm only, "
                                             "per-channel weights, embedding tables weight-only"})


static_int8_weight_ops.key = "onnx-static-weight-ops"


def static_int8_transformer(job: Job, cfg: QuantizeConfig) -> Quantized:
    """The recipe measured on MiniLM-L3 (findings-15 item 1: worst-sentence cosine 0.994 at 0.252
    of fp32, where all op types gave 0.49): only MatMul/Gemm activations are quantized (Gemm too:
    quant_pre_process fuses MatMul+Add into Gemm), their outputs stay float (the FFN output
    feeding the residual stream has outliers int8 cannot hold), so the mask Add (its constant is
    finfo.min), Softmax and LayerNorm inputs are never quantized; then the embedding tables
    weight-only (onnxruntime's dynamic GatherQuant: table int8, rows dequantized after Gather)."""
    signs = graph_facts.attention(job.fp32_path)
    q = _with_tables(job, cfg, {"method": "static int8 QDQ on MatMul/Gemm (transformer recipe), "
                                          "outputs float, per-channel weights, embedding tables "
                                          "weight-only", "attention": signs},
                     extra={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
    q.figures["float_kept"] = _float_kept(q.figures["graph"], signs)
    return q


static_int8_transformer.key = "onnx-static-transformer"
static_int8_transformer.applies = lambda job: bool(graph_facts.attention(job.fp32_path))


# Entropy is left out of auto: with onnxruntime's defaults (128 histogram bins, 128 quantized
# bins) its threshold search has about one candidate, min/max's range; measured (findings):
# identical SNR to MinMax on crepe tiny, below Percentile on magika, at Percentile's cost.
CALIBRATORS_AUTO = ("minmax", "percentile")


def variants(recipes: list, cfg: QuantizeConfig) -> list:
    """Each recipe once per calibrator (--calib-method; auto: CALIBRATORS_AUTO) and per weight
    granularity (per-channel, per-tensor), in that order of preference: one family per recipe,
    whose members build the same graph with other scales (choose.py keeps a family's best)."""
    calibs = CALIBRATORS_AUTO if cfg.calib_method == "auto" else (cfg.calib_method,)
    return [_variant(r, c, pc) for r in recipes for c in calibs for pc in (True, False)]


def _variant(recipe, calib: str, per_channel: bool):
    def run(job: Job, cfg: QuantizeConfig) -> Quantized:
        return recipe(job, replace(cfg, calib_method=calib, per_channel=per_channel))

    run.key = recipe.key + ("" if calib == "minmax" else f"-{calib}") + \
        ("" if per_channel else "-per-tensor")  # the default variant keeps the recipe's key
    run.family, run.__doc__ = getattr(recipe, "family_key", recipe.key), recipe.__doc__
    if hasattr(recipe, "applies"):
        run.applies = recipe.applies
    return run


def _with_tables(job: Job, cfg: QuantizeConfig, figures: dict, extra=None) -> Quantized:
    """quantize_static on WEIGHT_OPS (one range cache for every such candidate: the ranges do
    not depend on which outputs are then quantized), then the embedding tables weight-only."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgepress.compress import export

    work = work_dir(job)
    inner = replace(job, out_path=work / f"static-{job.out_path.stem}.onnx", work=work)
    q = static_qdq(inner, cfg, figures, op_types=WEIGHT_OPS, tag="weights", extra=extra)
    with export.quiet():  # ORT warns the model "is already quantized": only Gather is left
        quantize_dynamic(str(q.path), str(job.out_path), op_types_to_quantize=["Gather"],
                         weight_type=QuantType.QUInt8, nodes_to_exclude=list(cfg.exclude),
                         nodes_to_quantize=list(cfg.only) or None)
    q.figures["graph"] = graph_facts.record(job.out_path)
    return Quantized(job.out_path, q.figures)


def _signs(signs: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in signs.items() if k != "mask_constants")


def _float_kept(graph: dict, signs: dict) -> dict:
    """Why the float ops of the written graph stayed float, from what was found in it."""
    why = {"activations": f"only MatMul/Gemm inputs are quantized: attention found "
                          f"({_signs(signs)})",
           "outputs": "MatMul/Gemm outputs stay float (OpTypesToExcludeOutputQuantization)"}
    if signs.get("mask_constants"):
        why["mask"] = (f"additive mask constant(s) {signs['mask_constants'][:3]} of magnitude >= "
                       f"{graph_facts.MASK_MAGNITUDE:g}: the Add and Softmax they feed stay float")
    return {"ops": graph["float_ops"], "weight_layers": graph["float_weight_layers"], "why": why}


def static_qdq(job: Job, cfg: QuantizeConfig, figures: dict, op_types=None, tag="all",
            extra=None) -> Quantized:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    work = work_dir(job)
    src, notes = normalise.normalise_onnx(job.fp32_path, work)
    types = int8_types(cfg.target)
    if types["isa"].startswith("x86"):
        src, aligned = _aligned(src, work)
        notes = notes + aligned
    if cfg.activations != "auto" and cfg.activations != types["activations"]:
        types = {**types, "activations": cfg.activations,
                 "why": f"{cfg.activations} activations: the {types['activations']} choice ran "
                        f"slower than fp32 on this host (see speed)"}
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    calib = CALIBRATORS_AUTO[0] if cfg.calib_method == "auto" else cfg.calib_method
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calib]
    cache = work / f"ranges-{tag}-{calib}.json"  # weights' granularity does not change them
    reader = None if cache.exists() else _Reader(job.calib)
    from edgepress.compress import export

    # the histogram calibrators print progress with print(): silence fd 1 and sys.stdout both
    with progress.bar("calibrating (onnxruntime)", len(reader or ())) as bar, \
            export.quiet(), contextlib.redirect_stdout(io.StringIO()):
        if reader:
            reader.bar = bar
        quantize_static(
            str(src), str(job.out_path), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
            activation_type=qtype[types["activations"]], weight_type=qtype[types["weights"]],
            reduce_range=types["reduce_range"], calibrate_method=method,
            op_types_to_quantize=op_types,
            nodes_to_exclude=list(cfg.exclude), nodes_to_quantize=list(cfg.only) or None,
            calibration_cache_path=str(cache),
            extra_options={**(extra or {}),
                           **({"CalibStridedMinMax": reader.chunk} if reader else {})})
    granularity = "per-channel" if cfg.per_channel else "per-tensor"
    figures = {**figures, "method": figures["method"].replace("per-channel", granularity),
               "library": "onnxruntime", "calib_method": calib, "per_channel": cfg.per_channel,
               "calib_samples": _calib_count(job), "types": types, "normalisation": notes,
               "_float_source": str(src)}  # for onnx_bias (popped there, never in a manifest)
    return Quantized(job.out_path, figures)


def _calib_count(job: Job) -> int:
    return min(job.calib.record()["samples"], CALIB_CAP)


def dynamic_int8(job: Job, cfg: QuantizeConfig) -> Quantized:
    """onnxruntime's dynamic quantizer with per-channel weights on the ops it has integer kernels
    for (registry.py IntegerOpsRegistry + GatherQuant): MatMul (it rewrites Gemm as MatMul
    itself), Attention, LSTM, and Gather on a float table (embeddings, weight-only: MiniLM's file
    0.64 -> 0.25 of fp32). GRU has no dynamic kernel and Conv is left out (ConvInteger is slower
    than float Conv and per-tensor only): both stay float, and the manifest says what the written
    graph holds."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, notes = normalise.normalise_onnx(job.fp32_path, work_dir(job))
    ops = ["MatMul", "Attention", "LSTM", "Gather"]
    # MatMulInteger runs u8 activations x s8 weights, the same kernels as static u8s8: on x86
    # without VNNI their 16-bit pair sums saturate (the tiny CNN's one Linear: 17.7 dB with
    # 8-bit weights, 46.0 dB with 7-bit on an AVX2-only EPYC), so weights get 7 bits there.
    types = int8_types(cfg.target)
    quantize_dynamic(str(src), str(job.out_path), op_types_to_quantize=ops, per_channel=True,
                     weight_type=QuantType.QInt8, reduce_range=types["reduce_range"],
                     nodes_to_exclude=list(cfg.exclude),
                     nodes_to_quantize=list(cfg.only) or None)
    return Quantized(job.out_path, {
        "method": "dynamic int8 (per-channel int8 weights, activations quantized at run time; "
                  "embedding tables weight-only)"
                  + ("; 7-bit weights (reduce_range)" if types["reduce_range"] else ""),
        "library": "onnxruntime", "op_types_requested": ops, "normalisation": notes,
        "isa": types["isa"], "reduce_range": types["reduce_range"],
        "graph": graph_facts.record(job.out_path),
        "why": "convolutions stay float: onnxruntime's ConvInteger is slower than float Conv "
               "on CPU and per-tensor only; use --quantize int8 for CNNs"})


def fp16(job: Job, cfg: QuantizeConfig) -> Quantized:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(job.fp32_path)), keep_io_types=True)
    onnx.save(model, str(job.out_path))
    return Quantized(job.out_path, {
        "method": "fp16 weights and compute, float32 inputs/outputs",
        "library": "onnxruntime.transformers.float16",
        "note": "halves the file; onnxruntime's CPU provider runs most fp16 ops through casts, so "
                "expect no CPU speed-up (GPUs and NPUs gain)"})
