"""normalise: the exported ONNX model made ready for onnxruntime.quantization, once per job:
opset >= 13, onnxruntime's quant_pre_process (checked to still load), and three workarounds for
onnxruntime 1.32 (2-D Gemm biases; the MatMul+Add fusion's shape-initializer names; biases
shared by several layers)."""

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
    notes += _unshare_biases(out)
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


# onnxruntime 1.32's QDQ quantizer gives a bias initializer shared by two layers a copy per layer
# (QDQQuantizer._dup_initializer), named name + the next number after the initializers' names
# only: basic-pitch's bias "conv1d_25" became "conv1d_252", the name of a Conv *output*, so the
# dequantized bias replaced that activation and the model no longer loaded ("Duplicate definition
# of name" / a shape error). Each layer gets its own copy first, under a name no tensor has.
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


def _unshare_biases(path: Path) -> list:
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    taken = set(inits) | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    seen, copies = set(), 0
    for node in graph.node:
        slot = _BIAS_INPUT.get(node.op_type)
        if slot is None or len(node.input) <= slot or node.input[slot] not in inits:
            continue
        name = node.input[slot]
        if name in seen:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = _fresh(f"{name}_own", taken)
            graph.initializer.append(copy)
            node.input[slot] = copy.name
            copies += 1
        seen.add(name)
    if not copies:
        return []
    onnx.save(model, str(path))
    return [f"{copies} bias(es) shared by several layers copied per layer (onnxruntime's own "
            f"copy can take an existing tensor's name)"]


def _fresh(base: str, taken: set) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}{i}"
    taken.add(name)
    return name
