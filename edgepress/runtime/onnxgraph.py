"""onnxgraph: an ONNX file's graph, read without the onnx package.

The device install is numpy + onnxruntime, and onnxruntime exposes a model's inputs and
outputs but not its nodes or weights. An ONNX file is a protobuf message (onnx.proto); this
reads its wire format for the few fields `inspect` needs: nodes (op type, name, inputs,
outputs, integer and tensor attributes), initializers (name, dims, element type), and the
declared inputs, outputs and value_info with their types and shapes. Field numbers are
onnx.proto's and are part of its compatibility promise; weights are skipped, never copied.
Decoded messages are namespaces whose attribute names are onnx's own (node.op_type, t.dims).
"""

from __future__ import annotations

from types import SimpleNamespace

# message -> {field number: (attribute, kind, repeated)}; kind is "int", "str" or a message
_SCHEMA = {
    "model": {7: ("graph", "graph", False)},
    "graph": {1: ("node", "node", True), 5: ("initializer", "tensor", True),
              11: ("input", "value_info", True), 12: ("output", "value_info", True),
              13: ("value_info", "value_info", True)},
    "node": {1: ("input", "str", True), 2: ("output", "str", True), 3: ("name", "str", False),
             4: ("op_type", "str", False), 5: ("attribute", "attribute", True),
             7: ("domain", "str", False)},
    "attribute": {1: ("name", "str", False), 3: ("i", "int", False), 5: ("t", "tensor", False),
                  20: ("type", "int", False)},
    "tensor": {1: ("dims", "int", True), 2: ("data_type", "int", False),
               8: ("name", "str", False), 14: ("data_location", "int", False)},
    "value_info": {1: ("name", "str", False), 2: ("type", "type", False)},
    "type": {1: ("tensor_type", "tensor_type", False)},
    "tensor_type": {1: ("elem_type", "int", False), 2: ("shape", "shape", False)},
    "shape": {1: ("dim", "dim", True)},
    "dim": {1: ("dim_value", "int", False), 2: ("dim_param", "str", False)},
}
_DEFAULTS = {"int": 0, "str": ""}  # absent messages (and absent dim_value) are None

# TensorProto.DataType -> bytes per element (STRING and complex types are left out)
ITEMSIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL: the weights live in another file


def read(data: bytes) -> SimpleNamespace:
    """The ModelProto in `data` (its `graph` is None if it has none); ValueError if damaged."""
    return _decode(memoryview(data), "model")


def dims(value_info) -> tuple | None:
    """A declared tensor's dimensions, -1 for a dynamic one; None where no shape is declared."""
    tensor = value_info.type.tensor_type if value_info.type is not None else None
    if tensor is None or tensor.shape is None:
        return None
    return tuple(-1 if d.dim_value is None else d.dim_value for d in tensor.shape.dim)


def elem_type(value_info) -> int:
    tensor = value_info.type.tensor_type if value_info.type is not None else None
    return tensor.elem_type if tensor is not None else 0


def with_outputs(data: bytes, names) -> bytes:
    """The model with `names` added as graph outputs. Protobuf merges a message field that
    occurs twice (repeated fields concatenate), so a second `graph` holding only the new
    outputs is appended to the file's bytes: nothing is decoded or re-encoded."""
    outputs = b"".join(_field(12, _field(1, name.encode())) for name in names)
    return bytes(data) + _field(7, outputs)


def _field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _decode(buf: memoryview, kind: str) -> SimpleNamespace:
    spec = _SCHEMA[kind]
    out = {name: [] if rep else None if name == "dim_value" else _DEFAULTS.get(sub)
           for name, sub, rep in spec.values()}
    parts: dict = {}  # a singular message field met more than once: its encodings, merged
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value, pos = _value(buf, pos, wire)
        if number not in spec:
            continue  # a field inspect does not need (weights, docs, metadata...)
        name, sub, repeated = spec[number]
        if sub not in _DEFAULTS and not repeated and wire == 2:
            parts.setdefault(name, []).append(value)
            continue
        values = _values(value, wire, sub, f"{kind}.{name}")
        if repeated:
            out[name].extend(values)
        else:
            out[name] = values[-1]  # a repeated scalar: the last one wins, as in protobuf
    for name, encodings in parts.items():
        # protobuf merges the occurrences, which is what decoding their concatenation does
        # (one occurrence, the usual case, is decoded in place: a graph holds the weights)
        whole = encodings[0] if len(encodings) == 1 else memoryview(b"".join(encodings))
        out[name] = _decode(whole, _kind(spec, name))
    return SimpleNamespace(**out)


def _kind(spec: dict, name: str) -> str:
    return next(sub for attr, sub, _rep in spec.values() if attr == name)


def _values(value, wire: int, sub: str, where: str) -> list:
    if sub == "int":
        if wire == 0:
            return [_signed(value)]
        if wire == 2:  # packed repeated ints
            ints, pos = [], 0
            while pos < len(value):
                n, pos = _varint(value, pos)
                ints.append(_signed(n))
            return ints
    elif wire == 2:
        if sub == "str":
            return [bytes(value).decode("utf-8")]  # UnicodeDecodeError is a ValueError
        return [_decode(value, sub)]
    raise ValueError(f"malformed ONNX protobuf: field {where} has wire type {wire}")


def _value(buf: memoryview, pos: int, wire: int):
    if wire == 0:
        return _varint(buf, pos)
    if wire == 2:
        n, pos = _varint(buf, pos)
        if pos + n > len(buf):
            raise ValueError("truncated ONNX protobuf: a field runs past the end")
        return buf[pos:pos + n], pos + n
    if wire in (1, 5):
        end = pos + (8 if wire == 1 else 4)
        if end > len(buf):
            raise ValueError("truncated ONNX protobuf: a field runs past the end")
        return None, end
    raise ValueError(f"malformed ONNX protobuf: wire type {wire}")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated ONNX protobuf: a number runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n
