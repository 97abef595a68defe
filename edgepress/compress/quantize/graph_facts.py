"""Reading an ONNX graph for the quantize paths: is it a transformer (which static recipe fits),
what did onnxruntime actually quantize, and what stayed float (the manifest says so from the
written file, never from the op list that was asked for)."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

# ops whose output onnxruntime computes with integer weights (dynamic and QOperator forms)
_INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger",
                "DynamicQuantizeLSTM", "QLinearMatMul", "QLinearConv", "QGemm", "QAttention")
_WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Gather")
# float ops that matter for fidelity when their activations stay float
_COMPUTE_OPS = ("Softmax", "LayerNormalization", "Add", "Sub", "Mul", "Div", "Erf", "Gelu",
                "Tanh", "Sigmoid", "Pow", "Sqrt", "ReduceMean", "MatMul", "Gemm", "Conv",
                "LSTM", "GRU", "Gather")
MASK_MAGNITUDE = 1e30  # an additive attention mask's "minus infinity" (HF: finfo.min)


def _int_inputs(graph) -> set:
    import onnx

    return {i.name for i in graph.input if i.type.tensor_type.elem_type in
            (onnx.TensorProto.INT64, onnx.TensorProto.INT32)}


def attention(path: Path) -> dict:
    """`_attention` of the file, read once per file version (every candidate's `applies` asks)."""
    stat = Path(path).stat()
    return dict(_attention(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _attention(path: str, _mtime_ns: int, _size: int) -> tuple:
    """The graph's signs of attention: an embedding lookup (Gather on an integer graph input),
    or a Softmax beside a MatMul of two activations (scores = Q x K^T); then also its
    LayerNormalizations and any constant big enough to be an additive mask. Empty when neither:
    a CNN with a softmax head or a LayerNorm is not treated as a transformer."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    ints, ops = _int_inputs(graph), Counter(n.op_type for n in graph.node)
    tensors = [(t.name, t) for t in graph.initializer] + [
        (n.output[0], a.t) for n in graph.node if n.op_type == "Constant"
        for a in n.attribute if a.name == "value"]
    constant = {name for name, _t in tensors}
    lookups = sum(1 for n in graph.node if n.op_type == "Gather" and n.input[1] in ints)
    scores = sum(1 for n in graph.node if n.op_type == "MatMul"
                 and not constant & set(n.input))
    if not lookups and not (scores and ops["Softmax"]):
        return ()
    signs = {k: v for k, v in (("embedding_lookups", lookups), ("activation_matmuls", scores),
                               ("Softmax", ops["Softmax"]),
                               ("LayerNormalization", ops["LayerNormalization"])) if v}
    masks = [name for name, t in tensors if t.data_type == onnx.TensorProto.FLOAT
             and np.abs(numpy_helper.to_array(t)).max(initial=0) >= MASK_MAGNITUDE]
    return tuple({**signs, "mask_constants": masks}.items())


def log_front_end(path: Path) -> tuple:
    """(name, op type) of the nodes up to and including each Log whose inputs a weight op
    computes (a spectrogram, CQT or mel front end taken to decibels), in graph order; () when
    there is none. A log expands the low end of a spectrum's ~80 dB range that int8
    activations (~48 dB) cannot carry, so an error upstream of it survives into everything
    downstream."""
    stat = Path(path).stat()
    return _log_front_end(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _log_front_end(path: str, _mtime_ns: int, _size: int) -> tuple:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    front = set()
    for log in (n for n in graph.node if n.op_type == "Log"):
        upstream, todo = {log.name}, [log]
        while todo:
            for name in todo.pop().input:
                node = producer.get(name)
                if node is not None and node.name not in upstream:
                    upstream.add(node.name)
                    todo.append(node)
        if any(n.op_type in ("Conv", "MatMul", "Gemm") and n.name in upstream
               for n in graph.node):
            front |= upstream
    return tuple((n.name, n.op_type) for n in graph.node if n.name in front)


def record(path: Path) -> dict:
    """What the quantized file at `path` holds: integer ops by type, weight layers left float,
    and the float compute ops whose activations were not quantized (counts by op type)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {t.name: t.data_type for t in graph.initializer}
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    integer = Counter(n.op_type for n in graph.node if n.op_type in _INTEGER_OPS)
    float_weights, float_ops = [], Counter()
    for n in graph.node:
        if n.op_type in _WEIGHT_OPS and any(inits.get(i) in floats for i in n.input):
            float_weights.append(n.name or n.op_type)
        if n.op_type in _COMPUTE_OPS and not any(i in dq_out for i in n.input):
            float_ops[n.op_type] += 1
    qdq = Counter(n.op_type for n in graph.node
                  if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                  and any(i in dq_out for i in n.input))
    gathers = sum(1 for n in graph.node if n.op_type == "Gather" and inits.get(n.input[0]) in
                  (onnx.TensorProto.UINT8, onnx.TensorProto.INT8))
    if gathers:
        integer["Gather (int8 table, weight-only)"] = gathers
    return {"integer_ops": dict(integer), "dequantized_inputs": dict(qdq),
            "float_weight_layers": float_weights, "float_ops": dict(float_ops)}


def flatten_row_biases(model) -> list:
    """Gemm biases of shape (1, N) become (N,) (same broadcast). onnxruntime 1.32's
    QDQQuantizer._adjust_weight_scale_for_int32_bias indexes the bias per output channel with
    `bias_float_data[i]`, which for a 2-D bias is a row, so its scalar comparison raises
    "truth value of an array ... is ambiguous" under per-channel weights (magika's dense
    layers). Returns the renamed biases."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    done = []
    for n in model.graph.node:
        bias = inits.get(n.input[2]) if n.op_type == "Gemm" and len(n.input) > 2 else None
        if bias is not None and len(bias.dims) == 2 and bias.dims[0] == 1:
            flat = numpy_helper.from_array(numpy_helper.to_array(bias).reshape(-1), bias.name)
            bias.CopyFrom(flat)
            done.append(bias.name)
    return done
