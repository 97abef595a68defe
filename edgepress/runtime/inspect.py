"""inspect: what a model file holds: inputs/outputs, parameters, MACs, size, op histogram.

Works on the device side: no torch, and no onnx package (ONNX files are read by onnxgraph, and
their tensors' shapes inferred by onnxruntime). MACs are counted per layer for the ops that dominate
inference (convolutions, matrix products); elementwise ops are not counted. The per-layer list
also feeds device estimates.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime import onnxgraph
from edgepress.runtime.artifact import format_of
from edgepress.runtime.session import Session


def apply(model_path) -> dict:
    """A summary of a .onnx or .tflite file (dict, JSON-ready)."""
    path = Path(model_path)
    session = Session(path)
    try:
        layers = METHODS[format_of(path)](path)
    except (ValueError, RuntimeError, IndexError, KeyError, TypeError, struct.error) as e:
        # The engine loaded the file, but its graph does not add up (a subgraph input index of
        # -1, an op whose tensors are missing): found by tests/fuzz on damaged .tflite files.
        # struct.error: flatbuffers' reader on an offset past the end of a damaged file.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{str(path)!r} cannot be inspected: {first}") from None
    return {
        "model": str(path),
        "format": session.format,
        "size_bytes": path.stat().st_size,
        "inputs": [s.describe() for s in session.inputs],
        "outputs": [s.describe() for s in session.outputs],
        "params": int(layers["params"]),
        "macs": int(sum(layer["macs"] for layer in layers["layers"])),
        "ops": dict(Counter(layers["ops"]).most_common()),
        "layers": layers["layers"],
    }


def _onnx(path: Path) -> dict:
    data = path.read_bytes()
    g = onnxgraph.read(data).graph  # ValueError on a damaged file: apply() makes it one line
    if g is None:
        raise ValueError("the file holds no graph")
    consts = {i.name: tuple(i.dims) for i in g.initializer}
    for n in g.node:
        t = n.attribute[0].t if n.op_type == "Constant" and n.attribute else None
        if t is not None and t.dims:
            consts[n.output[0]] = tuple(t.dims)
    declared = g.value_info + g.input + g.output
    shapes = {vi.name: onnxgraph.dims(vi) or () for vi in declared}
    sizes = {vi.name: onnxgraph.ITEMSIZES[onnxgraph.elem_type(vi)] for vi in declared
             if onnxgraph.elem_type(vi) in onnxgraph.ITEMSIZES}
    sizes.update({i.name: onnxgraph.ITEMSIZES[i.data_type] for i in g.initializer
                  if i.data_type in onnxgraph.ITEMSIZES})
    inferred_shapes, inferred_sizes = _inferred(data, g, consts)
    shapes.update(inferred_shapes)
    sizes.update(inferred_sizes)
    shapes.update(consts)
    layers = [{"name": n.name or n.output[0], "op": n.op_type,
               "macs": _onnx_macs(n, shapes, consts),
               **_traffic(n.input, n.output, shapes, sizes, set(consts))} for n in g.node]
    params = sum(int(np.prod(s)) for s in consts.values())
    return {"params": params, "ops": [n.op_type for n in g.node],
            "layers": [layer for layer in layers if layer["macs"]]}


# The ops whose MACs are counted (_onnx_macs): the shapes of their tensors are what is needed.
_MAC_OPS = {"Conv", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger",
            "QLinearMatMul", "FusedMatMul"}
_ORT_ITEMSIZES = {"float": 4, "double": 8, "float16": 2, "bfloat16": 2, "bool": 1, "int8": 1,
                  "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
                  "uint64": 8}


def _inferred(data: bytes, g, consts: dict) -> tuple[dict, dict]:
    """Shapes and item sizes of the MAC layers' tensors from onnxruntime's shape inference (the
    ONNX operator schemas, as onnx.shape_inference uses): they are exposed as graph outputs of
    a session that is created, never run. ONNX files declare few intermediate shapes, and the
    device install has no onnx package. Where onnxruntime cannot say, shapes stay as declared
    (unknown ones count 0 MACs, as _traffic says)."""
    known = set(consts) | {v.name for v in g.input} | {v.name for v in g.output}
    wanted = sorted({t for n in g.node if n.op_type in _MAC_OPS
                     for t in [*n.input, *n.output]} - known - {""})
    if not wanted or any(t.data_location == onnxgraph.EXTERNAL for t in g.initializer):
        return {}, {}  # (weights in other files: a session from bytes could not find them)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(onnxgraph.with_outputs(data, wanted), so,
                                    providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the file itself loaded (apply's Session); see above
        return {}, {}
    outs = [o for o in sess.get_outputs() if o.name in set(wanted) and o.shape is not None]
    shapes = {o.name: tuple(d if isinstance(d, int) else -1 for d in o.shape) for o in outs}
    sizes = {o.name: _ORT_ITEMSIZES[o.type[7:-1]] for o in outs
             if o.type.startswith("tensor(") and o.type[7:-1] in _ORT_ITEMSIZES}
    return shapes, sizes


def _traffic(inputs, outputs, shapes: dict, itemsizes: dict, weights: set) -> dict:
    """Bytes a layer reads as weights and moves as activations (inputs read + outputs written):
    the memory side of a roofline estimate. Unknown shapes count as 0 (an underestimate)."""
    def size(name):
        dims = shapes.get(name)
        if not dims or any(d < 0 for d in dims):
            return 0
        return int(np.prod(dims)) * itemsizes.get(name, 4)

    return {"weight_bytes": sum(size(i) for i in inputs if i in weights),
            "activation_bytes": sum(size(i) for i in inputs if i != "" and i not in weights)
            + sum(size(o) for o in outputs)}


def _onnx_macs(node, shapes: dict, consts: dict) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if not out or any(d < 0 for d in out):
        return 0
    n_out = int(np.prod(out))
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
        # weight (M, C/group, kh, kw): every output element costs C/group * kh * kw MACs
        return n_out * int(np.prod(w[1:])) if w else 0
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
        a = shapes.get(node.input[0])
        if not a:
            return 0
        k = a[0] if node.op_type == "Gemm" and _attr(node, "transA") else a[-1]
        return n_out * int(k) if k > 0 else 0
    return 0


def _attr(node, name):
    return next((a.i for a in node.attribute if a.name == name), 0)


def _tflite(path: Path) -> dict:
    # XNNPACK off: with it, the delegated ops show up as one opaque DELEGATE node.
    session = Session(path, options={"xnnpack": False})
    it = session.engine.it  # the interpreter: op and tensor details are only exposed there
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = tflite_ops(it, path)
    produced = {o for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in it.get_input_details()}
    consts = {i for op in ops for i in op["inputs"]
              if i >= 0 and i not in produced and i not in graph_inputs}
    params = sum(int(np.prod(tensors[i]["shape"])) for i in consts if i in tensors)
    shapes = {i: tuple(int(d) for d in t["shape"]) for i, t in tensors.items()}
    sizes = {i: np.dtype(t["dtype"]).itemsize for i, t in tensors.items()}
    layers = [{"name": f"{op['op_name']}_{op['index']}", "op": op["op_name"],
               "macs": _tflite_macs(op, tensors),
               **_traffic([i for i in op["inputs"] if i >= 0], op["outputs"], shapes, sizes,
                          consts)} for op in ops]
    return {"params": params, "ops": [op["op_name"] for op in ops],
            "layers": [layer for layer in layers if layer["macs"]]}


def tflite_ops(it, path: Path) -> list[dict]:
    """The primary subgraph's ops as dicts: index, op_name, inputs, outputs (tensor indices).

    LiteRT's Python API lists ops only through the private Interpreter._get_ops_details. It is
    used where it exists and answers in that form; otherwise the ops are read from the file
    with the flatbuffer schema LiteRT ships, so a release that drops or changes the private call
    is not reported as a damaged model file (nor is every TFLite bundle's summary lost)."""
    private = getattr(it, "_get_ops_details", None)
    if callable(private):
        try:
            ops = private()
        except Exception:  # noqa: BLE001 - a changed signature: the file reader decides
            ops = None
        if isinstance(ops, list) and all(isinstance(op, dict) and _OP_KEYS <= op.keys()
                                         for op in ops):
            return ops
    return _tflite_ops_from_file(path)


_OP_KEYS = {"index", "op_name", "inputs", "outputs"}


def _tflite_ops_from_file(path: Path) -> list[dict]:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise UserError("listing a TFLite model's ops needs ai-edge-litert's flatbuffer schema "
                        "(this interpreter has no Interpreter._get_ops_details): pip install "
                        "ai-edge-litert") from None
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        # schema 3a: small codes live in the deprecated int8 field, the larger of the two counts
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM" and code.CustomCode():
            name = code.CustomCode().decode(errors="replace")
        ops.append({"index": j, "op_name": name,
                    "inputs": op.InputsAsNumpy() if op.InputsLength() else np.zeros(0, np.int32),
                    "outputs": op.OutputsAsNumpy() if op.OutputsLength() else np.zeros(0, np.int32)})
    return ops


def _tflite_macs(op, tensors) -> int:
    name = op["op_name"]
    out = tensors.get(op["outputs"][0], {}).get("shape") if op["outputs"] else None
    if out is None or len(op["inputs"]) < 2:
        return 0
    n_out = int(np.prod(out))
    w = tensors.get(op["inputs"][1], {}).get("shape")
    if w is None or len(w) != _WEIGHT_RANK.get(name, len(w)):
        return 0  # a damaged file LiteRT still loads can break an op's contract (tests/fuzz)
    if name == "CONV_2D":  # weight (O, kh, kw, I)
        return n_out * int(np.prod(w[1:]))
    if name == "DEPTHWISE_CONV_2D":  # weight (1, kh, kw, O)
        return n_out * int(w[1] * w[2])
    if name == "FULLY_CONNECTED":  # weight (O, I)
        return n_out * int(w[-1])
    if name == "BATCH_MATMUL":
        a = tensors.get(op["inputs"][0], {}).get("shape")
        return n_out * int(a[-1]) if a is not None and len(a) else 0
    return 0


_WEIGHT_RANK = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 4, "FULLY_CONNECTED": 2}


METHODS = {"onnx": _onnx, "tflite": _tflite}
