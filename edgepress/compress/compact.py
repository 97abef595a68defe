"""compact: removes what carries no information from a written model file, so an edge artifact is
its graph and weights, not its tools' bookkeeping. What the model computes is untouched: outputs
stay bit-identical and onnxruntime still fuses every QDQ group (tests/compress/test_compact.py).

- TFLite (every file litert-torch writes): its tensor names are MLIR location strings such as
  `_edgepress_factory_model.DigitsCNN/torch.nn.modules.container.Sequential_down/torch.nn.
  modules.conv.Conv2d_0;` - 3.2 KB of the 48 KB int8 digits CNN. Each becomes the module path it
  names (`down.0`), which is also what a user looks for in Netron. Input and output tensors keep
  their names. Read and written with LiteRT's own flatbuffer_utils.
- ONNX quantized by onnxruntime: the suffixes its quantizer appends to every name
  (`_DequantizeLinear_Output`, `_quantized_zero_point`, ...) are shortened, int32 bias zero
  points that are all zero are dropped (DequantizeLinear's default zero point is 0), and opset
  imports no node uses are removed. 3.3 KB of the 49 KB int8 digits CNN. What the nodes of
  `If` / `Loop` / `Scan` subgraphs read or use counts, at any depth: a branch may read an outer
  initializer by name alone.
"""

from __future__ import annotations

import re
from pathlib import Path

# onnxruntime.quantization's name suffixes, longest first, and what replaces them
_ORT_SUFFIXES = (("_DequantizeLinear_Output", "_dq"), ("_QuantizeLinear_Output", "_q"),
                 ("_DequantizeLinear", "_DQ"), ("_QuantizeLinear", "_Q"),
                 ("_quantized", "_i"), ("_zero_point", "_zp"), ("_scale", "_s"))


# Above this the names are noise beside the weights, and rewriting would have to handle what
# big models use instead of one flatbuffer/protobuf (2 GiB limits): external buffers and data.
MAX_BYTES = 1 << 30


def apply(path: Path) -> int:
    """Compacts the model file at `path` in place; returns the bytes saved."""
    before = path.stat().st_size
    if before > MAX_BYTES:
        return 0
    {".onnx": _onnx, ".tflite": _tflite}[path.suffix](path)
    return before - path.stat().st_size


# ---- TFLite ----------------------------------------------------------------------------------

def _tflite(path: Path) -> None:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        taken: set = set()
        for i, tensor in enumerate(graph.tensors):
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
            if i in keep or not name:
                taken.add(name)
                continue
            tensor.name = _unique(module_path(name) or f"t{i}", taken)
    flatbuffer_utils.write_model(model, str(path))


def module_path(location: str) -> str:
    """`down.0` from an MLIR location `Root/pkg.Sequential_down/pkg.Conv2d_0;` (fused ops list
    several, `;`-separated: the first is the op whose output the tensor is). Short names that
    are no location (`arith.constant`) stay; other locations give '' (the caller numbers them)."""
    first = next((part for part in location.split(";") if part), "")
    if "/" not in first:
        return location if len(location) <= 32 and "<" not in location else ""
    # each scope below the root is `module.path.Class_attribute`
    attrs = [re.sub(r"^[A-Za-z0-9]+_", "", scope.rsplit(".", 1)[-1])
             for scope in first.split("/")[1:]]
    return ".".join(attrs)


def _unique(name: str, taken: set) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}:{k}", k + 1
    taken.add(out)
    return out


# ---- ONNX ------------------------------------------------------------------------------------

def _onnx(path: Path) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        return  # its weights live in other files: left exactly as written
    _drop_zero_bias_points(graph)
    if not any(_subgraphs(n) for n in graph.node):
        _shorten_names(graph)  # subgraphs may name outer tensors: left alone where there are any
    used = {n.domain for n in _all_nodes(graph)} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def _drop_zero_bias_points(graph) -> None:
    """int32 (bias) zero points that are all zero: DequantizeLinear's default, 4 bytes a channel."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        x, zp = inits.get(node.input[0]), inits.get(node.input[2])
        if x is None or zp is None or x.data_type != onnx.TensorProto.INT32:
            continue
        if not numpy_helper.to_array(zp).any():
            del node.input[2]
    used = _read_names(graph)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _subgraphs(node) -> list:
    """The graphs an If / Loop / Scan (or any control-flow) node holds as attributes."""
    import onnx

    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _all_nodes(graph):
    """Every node of `graph` and of its subgraphs, at any depth."""
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)


def _read_names(graph) -> set:
    """Every name the model reads: node inputs at any depth (a branch may read an outer
    initializer without listing it among its If node's inputs) and every graph's outputs (an
    output may be an initializer itself)."""
    names = {v.name for v in graph.output}
    for node in graph.node:
        names.update(node.input)
        for sub in _subgraphs(node):
            names |= _read_names(sub)
    return names


def _shorten_names(graph) -> None:
    fixed = {v.name for v in list(graph.input) + list(graph.output)}
    names = {t.name for t in graph.initializer} | {v.name for v in graph.value_info}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    new = {n: (n if n in fixed or not n else _short(n)) for n in names}
    if len(set(new.values())) != len(new):
        return  # a shortened name would collide with another: keep them all as they are
    for node in graph.node:
        node.input[:] = [new[n] for n in node.input]
        node.output[:] = [new[n] for n in node.output]
        node.name = _short(node.name)
    for t in graph.initializer:
        t.name = new[t.name]
    for v in graph.value_info:
        v.name = new[v.name]


def _short(name: str) -> str:
    for long, short in _ORT_SUFFIXES:
        name = name.replace(long, short)
    return name
