"""hybrid: dynamic-range weights for the FULLY_CONNECTED ops a PT2E int8 .tflite keeps float.

litert-torch's PT2E quantizer annotates no recurrent cell: silero-vad's LSTMCell lowers to two
FULLY_CONNECTED ops (input and hidden, 512x128 each) with float weights and float activations.
TFLite has hybrid kernels for FULLY_CONNECTED (int8 weights, float activations quantized at run
time), so AI Edge Quantizer's dynamic recipe is applied to those ops alone, on the converted file
(its other ops are already int8 and are left as they are). Kept only where the selection split's
SNR stays within the chooser's fidelity margin (choose.MARGIN_DB) of the file without it; the
manifest records both figures.
"""

from __future__ import annotations

from pathlib import Path



def float_weight_layers(path) -> list[str]:
    """Output names of the FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D ops of a .tflite whose
    weight tensor is float32."""
    return [name for name, code in _float_weight_ops(path)]


def _float_weight_ops(path) -> list[tuple]:
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    m = tfu.read_model(str(path))
    ops = {qtyping.BuiltinOperator.FULLY_CONNECTED, qtyping.BuiltinOperator.CONV_2D,
           qtyping.BuiltinOperator.DEPTHWISE_CONV_2D}
    g, codes = m.subgraphs[0], [c.builtinCode for c in m.operatorCodes]
    return [(tfu.get_tensor_name(g.tensors[op.outputs[0]]), codes[op.opcodeIndex])
            for op in g.operators
            if codes[op.opcodeIndex] in ops and len(op.inputs) > 1 and op.inputs[1] >= 0
            and g.tensors[op.inputs[1]].type == qtyping.TensorType.FLOAT32]


def apply(job, path: Path) -> dict:
    """Rewrites `path` with its float FULLY_CONNECTED weights dynamic-range int8 where that
    keeps the selection-split SNR; returns the record for the manifest."""
    from ai_edge_quantizer import qtyping

    fcs = [n for n, code in _float_weight_ops(path)
           if code == qtyping.BuiltinOperator.FULLY_CONNECTED]
    if not fcs:
        return {"applied": False, "why": "no FULLY_CONNECTED op with float weights"}
    if job.select is None:
        return {"applied": False, "layers": fcs, "why": "no held-out data to measure it on"}
    trial = path.with_name(f"hybrid-{path.name}")
    _write(path, trial, fcs)
    from edgepress.compress.quantize import choose

    snr = {name: choose.measure(job, p, job.select, choose.SELECT_CAP)["snr_db"]
           for name, p in (("without", path), ("with", trial))}
    kept = snr["with"] >= snr["without"] - choose.MARGIN_DB
    if kept:
        trial.replace(path)
    else:
        trial.unlink()
    return {"applied": kept, "layers": fcs, "kernel": "TFLite hybrid FULLY_CONNECTED (int8 "
            "weights, activations quantized at run time; AI Edge Quantizer dynamic_wi8_afp32)",
            "snr_db": {k: round(v, 3) for k, v in snr.items()}, "max_loss_db": choose.MARGIN_DB,
            "measured_on": "selection split, the converted .tflite against fp32"}


def _write(src: Path, dst: Path, names: list) -> None:
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    from edgepress.compress import export
    from edgepress.compress.quantize.aeq_static import scope_regex

    rm = recipe_manager.RecipeManager()
    for name in names:
        rm.add_dynamic_config(regex=scope_regex(name),
                              operation_name=qtyping.TFLOperationName.FULLY_CONNECTED, num_bits=8)
    with export.quiet():
        result = quantizer.Quantizer(str(src), rm.get_quantization_recipe()).quantize(
            enable_progress_report=False)
    dst.write_bytes(bytes(result.quantized_model))
