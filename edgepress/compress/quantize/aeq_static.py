"""AI Edge Quantizer's calibrated recipes on the fp32 .tflite: candidates for tflite int8 beside
PT2E (choose.py measures them and keeps one).

- whole-model static int8 (`static_wi8_ai8`) calibrated with global min/max, and with AEQ's own
  default, a moving average of the per-sample ranges. Which one holds range depends on the model
  (findings-15: the moving average shrank one model's input range to 16 dB SNR; on silero-vad's
  recurrent state min/max gave 0.725 decision agreement and the moving average 0.984), so both
  are measured.
- for transformers (no whole-model static: 0.63-0.66 worst cosine on MiniLM), the mixed recipe:
  FULLY_CONNECTED static int8 (min/max); of the FCs whose output feeds an ADD of two activations
  (the residual branches, whose outliers int8 cannot hold), those the selection split measures
  to need it run dynamic-range; embedding tables weight-only; layer norm, softmax, GELU and the
  attention matmuls stay float (`float_ops` in the manifest, read from the file). MiniLM-L3:
  worst cosine 0.998 at 0.262 of fp32 with its 3 FFN-output FCs dynamic, 0.957 with none.

AEQ's static recipes make the model's inputs and outputs int8; edgepress's Session quantizes and
dequantizes at that boundary.
"""

from __future__ import annotations

import re

import numpy as np

from edgepress.compress.quantize.job import CALIB_CAP, Job, QuantizeConfig, Quantized, work_dir
from edgepress.errors import UserError

SIGNATURE = "serving_default"  # litert-torch's one signature
MIXED_MARGIN_DB = 1.0  # mixed recipe: dynamic FCs added until SNR is this near all-dynamic


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
    """The transformer recipe (module docstring); the manifest lists the dynamic FCs, how they
    were chosen, and the ops the written file computes in float."""
    from edgepress.compress import export

    _no_exclusions(cfg)
    residual = residual_fcs(job.fp32_path)
    with export.quiet():
        qsvs = _calibrate(job, _mixed_recipe([]), "minmax")  # ranges of every FC, reused below
        pick = _dynamic_fcs(job, residual, qsvs)
        _write(job.fp32_path, job.out_path, _mixed_recipe(pick["dynamic_fcs"]), qsvs)
    return Quantized(job.out_path, {
        "method": "mixed int8: fully-connected static int8, the residual-branch FCs measured to "
                  "need it dynamic-range, embedding tables weight-only",
        "library": "ai-edge-quantizer (per-op recipe)", "calib_method": _UPDATES["minmax"],
        "calib_samples": _count(job), "dynamic_fcs": pick.pop("dynamic_fcs"),
        "dynamic_choice": pick, "float_ops": float_ops(job.out_path)})


def _mixed_recipe(dynamic: list):
    from ai_edge_quantizer import qtyping, recipe_manager

    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=op.FULLY_CONNECTED, activation_num_bits=8,
                         weight_num_bits=8)
    for name in dynamic:  # a later entry wins over the static one for its op
        rm.add_dynamic_config(regex=scope_regex(name), operation_name=op.FULLY_CONNECTED,
                              num_bits=8)
    rm.add_weight_only_config(regex=".*", operation_name=op.EMBEDDING_LOOKUP, num_bits=8)
    return rm.get_quantization_recipe()


def scope_regex(tensor: str) -> str:
    """The regex matching the op whose output is `tensor`: AEQ matches a recipe's regex against
    the op's scope, its output names joined by ";" with a trailing ";" (tfl_flatbuffer_utils.
    get_op_scope), so `name$` never matches (the mixed recipe's dynamic FCs stayed static)."""
    return "(^|;)" + re.escape(tensor) + ";"


def _dynamic_fcs(job: Job, residual: list, qsvs) -> dict:
    """Which residual-branch FCs run dynamic-range, measured on the selection split: all of them
    dynamic sets the reference SNR; those whose own switch to dynamic raises SNR most are added
    first, until SNR is within MIXED_MARGIN_DB of it. Without held-out data: all of them."""
    if job.select is None or not residual:
        return {"dynamic_fcs": residual, "by": "not measured (no held-out data): every "
                                               "residual-branch FC dynamic"}
    snr = lambda dynamic: _snr(job, dynamic, qsvs)  # noqa: E731
    reference = snr(residual)
    ranking = sorted(({"fc": n, "snr_db": snr([n])} for n in residual),
                     key=lambda r: -r["snr_db"])
    chosen, steps = [], [{"dynamic": 0, "snr_db": snr([])}]
    for row in ranking:
        if steps[-1]["snr_db"] >= reference - MIXED_MARGIN_DB:
            break
        chosen.append(row["fc"])
        steps.append({"dynamic": len(chosen), "snr_db": snr(chosen)})
    return {"dynamic_fcs": sorted(chosen), "all_dynamic_snr_db": reference, "margin_db":
            MIXED_MARGIN_DB, "ranking": ranking, "steps": steps,
            "by": f"selection-split SNR {steps[-1]['snr_db']:.2f} dB with {len(chosen)} of "
                  f"{len(residual)} residual-branch FCs dynamic, within {MIXED_MARGIN_DB:g} dB "
                  f"of all {len(residual)} dynamic ({reference:.2f} dB)"}


def _snr(job: Job, dynamic: list, qsvs) -> float:
    from edgepress.compress.quantize import choose

    probe = work_dir(job) / "mixed-probe.tflite"
    _write(job.fp32_path, probe, _mixed_recipe(dynamic), qsvs)
    return round(choose.measure(job, probe, job.select, choose.SELECT_CAP)["snr_db"], 3)


def float_ops(path) -> dict:
    """Op name -> count of the ops the written .tflite computes in float (a float32 output;
    QUANTIZE/DEQUANTIZE, the boundaries, left out): what the recipe left float, read from
    the file."""
    from collections import Counter

    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    names = {v: k for k, v in vars(qtyping.BuiltinOperator).items()
             if not k.startswith("_") and isinstance(v, int)}
    model = tfu.read_model(str(path))
    codes, graph = [c.builtinCode for c in model.operatorCodes], model.subgraphs[0]
    found = Counter(names.get(codes[op.opcodeIndex], "CUSTOM") for op in graph.operators
                    if op.outputs and graph.tensors[op.outputs[0]].type
                    == qtyping.TensorType.FLOAT32)
    return {k: n for k, n in sorted(found.items()) if k not in ("QUANTIZE", "DEQUANTIZE")}


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
    from edgepress.compress import export

    with export.quiet():
        _write(job.fp32_path, job.out_path, recipe, _calibrate(job, recipe, update))


def _calibrate(job: Job, recipe, update: str):
    """AEQ's calibrated ranges (QSVs) of the fp32 .tflite's tensors for `recipe`."""
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    funcs = {"minmax": qsv_utils.min_max_update, "moving-average": qsv_utils.moving_average_update}
    qt = quantizer.Quantizer(str(job.fp32_path), recipe)
    # Quantizer.calibrate() offers no choice of range update (ai-edge-quantizer 0.10: it
    # builds a Calibrator with the moving-average default); its Calibrator takes one, so
    # it is called directly with the quantizer's model buffer and recipe manager.
    cal = calibrator.Calibrator(qt._float_model_buffer, num_threads=1,
                                qsv_update_func=funcs[update])
    cal.calibrate({SIGNATURE: list(_feeds(job))}, qt._recipe_manager)
    return cal.get_model_qsvs()


def _write(fp32_path, out_path, recipe, qsvs) -> None:
    from ai_edge_quantizer import quantizer

    result = quantizer.Quantizer(str(fp32_path), recipe).quantize(qsvs,
                                                                  enable_progress_report=False)
    out_path.write_bytes(bytes(result.quantized_model))


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
        # np.asarray(order="C"), not ascontiguousarray: the latter makes a 0-d input (a scalar
        # state such as a sample rate) 1-d, which the signature's () shape then rejects.
        yield {k: np.asarray(v.astype(want.get(k, v.dtype)), order="C") for k, v in sample.items()}


def _count(job: Job) -> int:
    return min(job.calib.record()["samples"], CALIB_CAP)


def _no_exclusions(cfg: QuantizeConfig) -> None:
    if cfg.exclude or cfg.only:
        raise UserError("keeping layers in float (--max-drop) runs the PT2E tflite int8 path; "
                        "AI Edge Quantizer's candidates take no layer list")
