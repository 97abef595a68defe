"""AI Edge Quantizer's calibrated recipes on the fp32 .tflite: candidates for tflite int8 beside
PT2E (choose.py measures them and keeps one).

- whole-model static int8 (`static_wi8_ai8`) calibrated with global min/max, and with AEQ's own
  default, a moving average of the per-sample ranges. Which one holds range depends on the model
  (findings-15: the moving average shrank one model's input range to 16 dB SNR; on silero-vad's
  recurrent state min/max gave 0.725 decision agreement and the moving average 0.984), so both
  are measured.
- for transformers (no whole-model static: 0.63-0.66 worst cosine on MiniLM), the mixed recipe:
  FULLY_CONNECTED static int8 (min/max), the FCs whose output feeds an ADD of two activations
  (the residual branches, whose outliers int8 cannot hold) dynamic-range, embedding tables
  weight-only; layer norm, softmax, GELU and the attention matmuls stay float. MiniLM-L3: worst
  cosine 0.998 at 0.262 of fp32, where plain PT2E gave 0.959 at 0.771.

AEQ's static recipes make the model's inputs and outputs int8; edgepress's Session quantizes and
dequantizes at that boundary.
"""

from __future__ import annotations

import re

import numpy as np

from edgepress.compress.quantize.job import CALIB_CAP, Job, QuantizeConfig, Quantized
from edgepress.errors import UserError

SIGNATURE = "serving_default"  # litert-torch's one signature


def _transformer(job: Job) -> bool:
    """A torch model with an embedding table or attention modules (the mixed recipe's domain)."""
    import torch

    model = getattr(job.loaded, "model", None)
    return model is not None and any(
        isinstance(m, (torch.nn.Embedding, torch.nn.MultiheadAttention))
        or type(m).__name__.endswith("Attention") for m in model.modules())


def _static(update: str):
    def method(job: Job, cfg: QuantizeConfig) -> Quantized:
        from ai_edge_quantizer import recipe

        _no_exclusions(cfg)
        _quantize(job, recipe.static_wi8_ai8(), update)
        return Quantized(job.out_path, {
            "method": "full-integer int8 (per-channel int8 weights, int8 activations and I/O)",
            "library": "ai-edge-quantizer static_wi8_ai8", "calib_method": _UPDATES[update],
            "calib_samples": _count(job)})
    method.__name__ = method.key = f"aeq-static-{update}"
    method.applies = lambda job: not _transformer(job)
    return method


def mixed(job: Job, cfg: QuantizeConfig) -> Quantized:
    """The transformer recipe (module docstring); the manifest lists the dynamic FCs."""
    from ai_edge_quantizer import qtyping, recipe_manager

    _no_exclusions(cfg)
    op = qtyping.TFLOperationName
    residual = residual_fcs(job.fp32_path)
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=op.FULLY_CONNECTED, activation_num_bits=8,
                         weight_num_bits=8)
    for name in residual:  # a later entry wins over the static one for its op
        rm.add_dynamic_config(regex=re.escape(name) + "$", operation_name=op.FULLY_CONNECTED,
                              num_bits=8)
    rm.add_weight_only_config(regex=".*", operation_name=op.EMBEDDING_LOOKUP, num_bits=8)
    _quantize(job, rm.get_quantization_recipe(), "minmax")
    return Quantized(job.out_path, {
        "method": "mixed int8: fully-connected static int8, residual-branch FCs dynamic-range, "
                  "embedding tables weight-only",
        "library": "ai-edge-quantizer (per-op recipe)", "calib_method": _UPDATES["minmax"],
        "calib_samples": _count(job), "dynamic_fcs": residual,
        "float_kept": "layer norm, softmax, GELU, adds, attention batch matmuls (no static "
                      "recipe: findings-15 measured whole-model static at 0.63 worst cosine)"})


mixed.key = "aeq-mixed"
mixed.applies = _transformer
static_minmax, static_moving_average = _static("minmax"), _static("moving-average")

_UPDATES = {"minmax": "global min/max over the calibration samples (AEQ min_max_update)",
            "moving-average": "AEQ's default: moving average of per-sample min/max"}


def residual_fcs(path) -> list[str]:
    """Output tensor names of the FULLY_CONNECTED ops feeding an ADD whose other input is an
    activation too (a residual add), read from the .tflite."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    model = tfu.read_model(str(path))
    codes = [c.builtinCode for c in model.operatorCodes]
    graph = model.subgraphs[0]
    # an activation is a graph input or some op's output; anything else is a constant
    activations = set(graph.inputs) | {o for op in graph.operators for o in op.outputs}
    made_by_fc = {op.outputs[0] for op in graph.operators
                  if codes[op.opcodeIndex] == qtyping.BuiltinOperator.FULLY_CONNECTED}
    found = []
    for op in graph.operators:
        ins = [i for i in op.inputs if i >= 0]
        if codes[op.opcodeIndex] == qtyping.BuiltinOperator.ADD and len(ins) == 2 \
                and set(ins) <= activations:
            found += [tfu.get_tensor_name(graph.tensors[i]) for i in ins if i in made_by_fc]
    return sorted(set(found))


def _quantize(job: Job, recipe, update: str) -> None:
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    from edgepress.compress import export

    funcs = {"minmax": qsv_utils.min_max_update, "moving-average": qsv_utils.moving_average_update}
    with export.quiet():
        qt = quantizer.Quantizer(str(job.fp32_path), recipe)
        # Quantizer.calibrate() offers no choice of range update (ai-edge-quantizer 0.10: it
        # builds a Calibrator with the moving-average default); its Calibrator takes one, so
        # it is called directly with the quantizer's model buffer and recipe manager.
        cal = calibrator.Calibrator(qt._float_model_buffer, num_threads=1,
                                    qsv_update_func=funcs[update])
        cal.calibrate({SIGNATURE: list(_feeds(job))}, qt._recipe_manager)
        result = qt.quantize(cal.get_model_qsvs(), enable_progress_report=False)
    job.out_path.write_bytes(bytes(result.quantized_model))


def _feeds(job: Job):
    """Calibration samples as the .tflite takes them (layout; LiteRT's int32 for int64 ids)."""
    from edgepress.runtime.layout import to_nhwc
    from edgepress.runtime.session import Session

    want = {s.name: s.dtype for s in Session(job.fp32_path).inputs}
    for i, sample in enumerate(job.calib.samples()):
        if i >= CALIB_CAP:
            break
        if job.layout == "nhwc":
            sample = {k: to_nhwc(v) for k, v in sample.items()}
        yield {k: np.ascontiguousarray(v.astype(want.get(k, v.dtype))) for k, v in sample.items()}


def _count(job: Job) -> int:
    return min(job.calib.record()["samples"], CALIB_CAP)


def _no_exclusions(cfg: QuantizeConfig) -> None:
    if cfg.exclude or cfg.only:
        raise UserError("keeping layers in float (--max-drop) runs the PT2E tflite int8 path; "
                        "AI Edge Quantizer's candidates take no layer list")
