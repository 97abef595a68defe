"""Which weight layers of a written quantized file hold integer weights, and which stayed float:
read from the file itself (ONNX or TFLite), so the manifest names what the engine will run, never
the op list that was asked for."""

from __future__ import annotations

from pathlib import Path

# ops that carry a weight, float or quantized (ONNX)
_ONNX_WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU", "RNN",
                    "Attention", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
                    "MatMulIntegerToFloat", "QLinearConv", "QLinearMatMul", "QGemm", "QAttention",
                    "DynamicQuantizeLSTM"}
# ops that carry a weight (TFLite)
_TFLITE_WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED",
                      "BATCH_MATMUL", "EMBEDDING_LOOKUP", "GATHER", "UNIDIRECTIONAL_SEQUENCE_LSTM"}


def record(path: Path) -> dict:
    """{"quantized_layers": [names], "float_layers": [names]} of the file at `path`."""
    quantized, floats = (_onnx if path.suffix == ".onnx" else _tflite)(path)
    return {"quantized_layers": quantized, "float_layers": floats}


def _onnx(path: Path) -> tuple[list, list]:
    import onnx

    graph = onnx.load(str(path)).graph
    t = onnx.TensorProto
    integer = (t.INT8, t.UINT8, t.INT16, t.UINT16, t.INT4, t.UINT4)
    kinds = {i.name: ("int" if i.data_type in integer else "float" if i.data_type in
                      (t.FLOAT, t.FLOAT16) else None) for i in graph.initializer}
    for n in graph.node:  # a DequantizeLinear of an int8 initializer is a quantized weight
        if n.op_type == "DequantizeLinear" and kinds.get(n.input[0]) == "int":
            kinds[n.output[0]] = "int"
    quantized, floats = [], []
    for n in graph.node:
        if n.op_type not in _ONNX_WEIGHT_OPS:
            continue
        weights = [kinds.get(i) for i in (n.input[:1] if n.op_type == "Gather" else n.input)]
        name = n.name or n.output[0]
        if "int" in weights:
            quantized.append(name)
        elif "float" in weights:
            floats.append(name)
    return quantized, floats


def _tflite(path: Path) -> tuple[list, list]:
    import numpy as np

    from edgepress.runtime import inspect
    from edgepress.runtime.session import Session

    it = Session(path, options={"xnnpack": False}).engine.it
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = inspect.tflite_ops(it, path)
    produced = {int(o) for op in ops for o in op["outputs"]}
    produced |= {d["index"] for d in it.get_input_details()}  # neither is a weight
    quantized, floats = [], []
    for op in ops:
        if op["op_name"] not in _TFLITE_WEIGHT_OPS:
            continue
        consts = [tensors[int(i)] for i in op["inputs"]
                  if int(i) >= 0 and int(i) not in produced and int(i) in tensors
                  and len(tensors[int(i)]["shape"]) >= 2]
        name = f"{op['op_name']}_{op['index']}"
        if any(np.dtype(c["dtype"]) in (np.int8, np.uint8, np.int16) for c in consts):
            quantized.append(name)
        elif consts:
            floats.append(name)
    return quantized, floats
