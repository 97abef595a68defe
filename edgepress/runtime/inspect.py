"""inspect: what a model file holds: inputs/outputs, parameters, MACs, size, op histogram.

Works on the device side (no torch). MACs are counted per layer for the ops that dominate
inference (convolutions, matrix products); elementwise ops are not counted. The per-layer list
also feeds device estimates.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgepress.errors import UserError
from edgepress.runtime.artifact import format_of
from edgepress.runtime.session import Session


def apply(model_path) -> dict:
    """A summary of a .onnx or .tflite file (dict, JSON-ready)."""
    path = Path(model_path)
    session = Session(path)
    try:
        layers = METHODS[format_of(path)](path)
    except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as e:
        # The engine loaded the file, but its graph does not add up (a subgraph input index of
        # -1, an op whose tensors are missing): found by tests/fuzz on damaged .tflite files.
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
    try:
        import onnx
    except ImportError:
        raise UserError("inspecting an ONNX file needs the onnx package: pip install onnx") \
            from None
    from google.protobuf.message import DecodeError

    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, DecodeError) as e:
        # onnxruntime can load a graph whose declared shapes contradict what onnx infers, or
        # bytes that python protobuf calls corrupt (found by tests/fuzz); none is a ValueError
        raise ValueError(str(e)) from None  # apply() turns it into one UserError line
    g = model.graph
    consts = {i.name: tuple(i.dims) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims:
            consts[n.output[0]] = tuple(n.attribute[0].t.dims)
    shapes = {vi.name: _dims(vi) for vi in list(g.value_info) + list(g.input) + list(g.output)}
    shapes.update(consts)
    sizes = _onnx_itemsizes(g)
    layers = [{"name": n.name or n.output[0], "op": n.op_type,
               "macs": _onnx_macs(n, shapes, consts),
               **_traffic(n.input, n.output, shapes, sizes, set(consts))} for n in g.node]
    params = sum(int(np.prod(s)) for s in consts.values())
    return {"params": params, "ops": [n.op_type for n in g.node],
            "layers": [layer for layer in layers if layer["macs"]]}


def _onnx_itemsizes(g) -> dict:
    """Bytes per element of every named tensor whose element type is known."""
    from onnx.helper import tensor_dtype_to_np_dtype

    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return {k: np.dtype(tensor_dtype_to_np_dtype(t)).itemsize for k, t in types.items() if t}


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


def _dims(vi) -> tuple:
    return tuple(d.dim_value if d.HasField("dim_value") else -1
                 for d in vi.type.tensor_type.shape.dim)


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
    ops = it._get_ops_details()  # noqa: SLF001 - LiteRT's Python API has no public op listing
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
