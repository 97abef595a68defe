"""normalise: the exported ONNX model made ready for onnxruntime.quantization, once per job:
opset >= 13, onnxruntime's quant_pre_process (checked to still load), and two workarounds for
onnxruntime 1.32 (2-D Gemm biases; the MatMul+Add fusion's shape-initializer names)."""

from __future__ import annotations

from pathlib import Path

from edgepress.compress.quantize import graph_facts


def normalise_onnx(src: Path, work: Path) -> tuple[Path, list]:
    """Opset >= 13 (per-channel QDQ) plus onnxruntime's quant_pre_process (symbolic shape
    inference, graph optimisation, ONNX shape inference); returns the file and what was done."""
    import onnx

    out = work / "normalised.onnx"
    if out.exists():
        return out, [line for line in (work / "normalised.txt").read_text().splitlines()]
    model, notes = onnx.load(str(src)), []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        model = onnx.version_converter.convert_version(model, 13)
        notes.append(f"opset {opset} -> 13 (per-channel QuantizeLinear needs 13)")
    notes += _pre_process(model, out)
    notes += _flatten_biases(out)
    notes += _rename_fusion_shapes(out)
    (work / "normalised.txt").write_text("\n".join(notes))
    return out, notes


def _pre_process(model, out: Path, **skip) -> list:
    """quant_pre_process, then a check that onnxruntime still loads the result: its optimiser
    pass can write a graph that onnxruntime 1.32's own optimiser then rejects (a tiny BERT:
    "AddInitializedOrtValue Attempt to replace the existing tensor"); then without that pass."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(model, str(out), **skip)
        what = ("no " if skip.get("skip_symbolic_shape") else "") + "symbolic shape inference, "
    except Exception as e:  # symbolic inference rejects some exotic ops; the rest still helps
        if skip:
            raise
        return [f"symbolic shape inference failed ({type(e).__name__})"] + \
            _pre_process(model, out, skip_symbolic_shape=True)
    error = _load_error(out)
    if error and "skip_optimization" not in skip:
        return [f"its optimised graph does not load in onnxruntime ({error})"] + \
            _pre_process(model, out, **skip, skip_optimization=True)
    return [f"onnxruntime quant_pre_process: {what}"
            f"{'no ' if skip.get('skip_optimization') else ''}graph optimisation, ONNX shape "
            f"inference"]


def _load_error(path: Path) -> str | None:
    import onnxruntime as ort

    from edgepress.errors import first_line

    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failure is returned, not logged
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        return first_line(e, 160)
    return None


def _flatten_biases(path: Path) -> list:
    import onnx

    model = onnx.load(str(path))
    flattened = graph_facts.flatten_row_biases(model)
    if not flattened:
        return []
    onnx.save(model, str(path))
    return [f"{len(flattened)} Gemm bias(es) of shape (1, N) flattened to (N,): onnxruntime's "
            f"per-channel bias-scale check fails on 2-D biases"]


# onnxruntime 1.32's MatMulAddFusion (run by quant_pre_process, and again whenever a session
# loads the model) names the shape initializers of the Reshapes it adds "gemm_input_shape" /
# "gemm_output_shape" (+ "_token_N") without checking the initializers already there. Once
# quantize_static has turned those Gemms back into MatMul + Add, the quantized model's own load
# fuses them again, reuses the names and fails ("AddInitializedOrtValue Attempt to replace the
# existing tensor": MiniLM's BertModel port, any BERT of 2+ layers). Prefixed, they cannot clash.
_FUSION_SHAPES = ("gemm_input_shape", "gemm_output_shape")


def _rename_fusion_shapes(path: Path) -> list:
    import onnx

    model = onnx.load(str(path))
    renamed = {i.name: f"pre_{i.name}" for i in model.graph.initializer
               if i.name.startswith(_FUSION_SHAPES)}
    if not renamed:
        return []
    for init in model.graph.initializer:
        init.name = renamed.get(init.name, init.name)
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    onnx.save(model, str(path))
    return [f"{len(renamed)} shape initializer(s) of onnxruntime's MatMul+Add fusion renamed "
            f"(its next fusion at load reuses their names)"]
