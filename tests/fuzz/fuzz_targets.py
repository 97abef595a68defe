"""Fuzz targets: one per loader, each a seed file, mutations of it, and the edgepress call that
must either accept the result or refuse it with a UserError (one line) — never another exception.

Used by test_fuzz_loaders.py (in-process for the pure-Python loaders) and by fuzz_worker.py (in a
child process for the loaders that hand bytes to a native engine, so a crash is seen and
reported instead of killing the test runner). Mutations are Hypothesis strategies, so a failure
shrinks to a small reproducer.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from edgepress.errors import UserError

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
# A mutated dimension can declare a legal but huge input (1x3x16x12097941: 2.3 GB of floats):
# bench would allocate and run it for minutes. Such models are loaded and inspected, not run.
MAX_INPUT_ELEMENTS = 1 << 20
# Input shapes the fuzzed models are run with (the seeds are the tiny CNN: x = 1,3,16,16).
CNN_SHAPE = ["1,3,16,16"]


class Case:
    """One mutated input: what was done (for the failure message) and the bytes. Not a
    dataclass: Hypothesis would print every byte of a falsifying example."""

    def __init__(self, how: str, data: bytes):
        self.how, self.data = how, data

    def __repr__(self):  # what Hypothesis prints for a falsifying example
        return f"Case({self.how!r}, {len(self.data)} bytes)"


# ---- mutations ------------------------------------------------------------------------------

def _pos(draw, n: int) -> int:
    """A position biased to the ends of the file, where headers and footers live."""
    if n <= 1:
        return 0
    return draw(st.one_of(st.integers(0, min(n, 64) - 1), st.integers(0, n - 1),
                          st.integers(max(0, n - 64), n - 1)))


@st.composite
def raw_bytes(draw, seed: bytes) -> Case:
    """Byte-level damage: truncation, bit flips, overwrites, insertions, deletions, repeats."""
    data, ops = bytearray(seed), []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("truncate", "flip", "set", "insert", "delete", "repeat")))
        n, p = len(data), _pos(draw, len(data))
        if op == "truncate":
            del data[p:]
        elif op == "flip" and n:
            data[p] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            k = min(draw(st.integers(1, 8)), n - p)
            data[p:p + k] = bytes([draw(st.sampled_from(INTERESTING) | st.integers(0, 255))]) * k
        elif op == "insert":
            data[p:p] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[p:p + draw(st.integers(1, 64))]
        elif op == "repeat":
            data[p:p] = data[p:p + draw(st.integers(1, 64))]
        ops.append(f"{op}@{p}")
    return Case(" ".join(ops), bytes(data))


@st.composite
def zip_member(draw, seed: bytes) -> Case:
    """A member of a zip archive (.pt, .pt2, .npz) damaged, emptied, dropped or renamed, and
    the archive rewritten with valid CRCs so the damage reaches the reader behind the zip."""
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    index = draw(st.integers(0, len(members) - 1))
    info, content = members[index]
    action = draw(st.sampled_from(("mutate", "mutate", "empty", "drop", "rename")))
    how = f"{action} {info.filename}"
    if action == "mutate":
        inner = draw(raw_bytes(content))
        content, how = inner.data, f"{how}: {inner.how}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for i, (other, data) in enumerate(members):
            if i != index:
                z.writestr(other, data)
            elif action == "rename":
                z.writestr(other.filename + "x", data)
            elif action != "drop":
                z.writestr(other, b"" if action == "empty" else content)
    return Case(how, out.getvalue())


def _json_values():
    scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63) |
               st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                        st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def json_tree(draw, seed: bytes) -> Case:
    """A JSON document with values deleted or replaced by other types (well-formed JSON that is
    wrong, which is what a hand-edited or foreign file looks like)."""
    doc = json.loads(seed)
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
            ops.append(f"delete {'.'.join(map(str, path))}")
        else:
            parent[path[-1]] = draw(_json_values())
            ops.append(f"replace {'.'.join(map(str, path))}={parent[path[-1]]!r:.40}")
    return Case("; ".join(ops), json.dumps(doc).encode())


@st.composite
def npy_header(draw, seed: bytes) -> Case:
    """An .npz whose arrays' .npy headers declare another shape, dtype or order than their data
    holds (including object arrays, which would need unpickling)."""
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    index = draw(st.integers(0, len(members) - 1))
    info, content = members[index]
    shape = tuple(draw(st.lists(st.integers(0, 2**40) | st.integers(0, 40), max_size=5)))
    descr = draw(st.sampled_from(("<f4", "<f8", "<i8", "|u1", "|b1", "|O", "<U3", "|V8", "<c8",
                                  "<M8[s]", ">f4", "<f2")))
    fortran = draw(st.booleans())
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header) if draw(st.booleans()) else \
        np.lib.format.write_array_header_2_0(head, header)
    body = content[_npy_data_offset(content):]
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for i, (other, data) in enumerate(members):
            z.writestr(other, b"\x93NUMPY" + head.getvalue()[6:] + body if i == index else data)
    return Case(f"{info.filename}: header {header}, {len(body)} data bytes", out.getvalue())


def _npy_data_offset(content: bytes) -> int:
    f = io.BytesIO(content)
    version = np.lib.format.read_magic(f)
    (np.lib.format.read_array_header_1_0 if version == (1, 0)
     else np.lib.format.read_array_header_2_0)(f)
    return f.tell()


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if value != value
                                                         else repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _recipe_keys(section: str) -> list:
    from dataclasses import fields

    from edgepress import options

    cls = options.TABLES.get(section)
    return [options.recipe_key(f) for f in fields(cls)] if cls else []


@st.composite
def recipe_doc(draw, seed: bytes) -> Case:
    """A syntactically valid recipe with unknown sections/keys and values of every TOML type,
    including paths that climb out of the recipe's folder."""
    from edgepress import options

    scalar = (st.booleans() | st.integers(-2**70, 2**70) | st.integers(-3, 3) | st.floats() |
              st.sampled_from(("random", "../../etc/passwd", "/abs/x.npz", "m:f", "x.py:f", "",
                               "channels:0.5", "onnx")) | st.text(max_size=8))
    value = st.recursive(scalar, lambda v: st.lists(v, max_size=3) |
                         st.dictionaries(st.text("abc", min_size=1, max_size=3), v, max_size=2),
                         max_leaves=4)
    lines = []
    for section in draw(st.lists(st.sampled_from([*options.TABLES, "bogus"]), min_size=1,
                                 max_size=3, unique=True)):
        lines.append(f"[{section}]")
        keys = [*_recipe_keys(section), "bogus"]
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            lines.append(f"{key} = {_toml(draw(value))}")
    text = "\n".join(lines) + "\n"
    return Case(text.replace("\n", " | ")[:200], text.encode("utf-8", "surrogatepass"))


ONNX_OPS = ("Conv", "Relu", "Gemm", "MatMul", "Add", "Reshape", "Transpose", "Concat", "Gather",
            "Slice", "Resize", "Loop", "If", "NonZero", "Expand", "Tile", "NotAnOp", "")


@st.composite
def onnx_graph(draw, seed: bytes) -> Case:
    """A well-formed protobuf with a wrong graph: unknown ops, dangling edges, bad dims and
    dtypes, damaged weights, external data pointing outside the model's folder, odd opsets."""
    import onnx

    m = onnx.ModelProto()
    m.ParseFromString(seed)
    g, ops = m.graph, []
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(("op_type", "drop_node", "node_input", "attr", "dim",
                                   "elem_type", "init_dims", "init_data", "init_type", "drop_init",
                                   "external", "opset", "ir_version")))
        node = g.node[draw(st.integers(0, len(g.node) - 1))] if len(g.node) else None
        io_value = draw(st.sampled_from(list(g.input) + list(g.output)))
        init = g.initializer[draw(st.integers(0, len(g.initializer) - 1))] \
            if len(g.initializer) else None
        if op == "op_type" and node is not None:
            node.op_type = draw(st.sampled_from(ONNX_OPS))
        elif op == "drop_node" and node is not None:
            g.node.remove(node)
        elif op == "node_input" and node is not None and len(node.input):
            names = [i.name for i in g.initializer] + ["", "nope"]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif op == "attr" and node is not None and len(node.attribute):
            a = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
            a.i = draw(st.integers(-2**62, 2**62))
            del a.ints[:]
            a.ints.extend(draw(st.lists(st.integers(-2**31, 2**31), max_size=6)))
        elif op == "dim" and len(io_value.type.tensor_type.shape.dim):
            dims = io_value.type.tensor_type.shape.dim
            d = dims[draw(st.integers(0, len(dims) - 1))]
            if draw(st.booleans()):
                d.dim_value = draw(st.integers(-2, 2**40))
            else:
                d.dim_param = draw(st.text(max_size=4))
        elif op == "elem_type":
            io_value.type.tensor_type.elem_type = draw(st.integers(0, 30))
        elif op == "init_dims" and init is not None:
            del init.dims[:]
            init.dims.extend(draw(st.lists(st.integers(-1, 2**33), max_size=5)))
        elif op == "init_data" and init is not None:
            init.raw_data = init.raw_data[:draw(st.integers(0, len(init.raw_data)))]
        elif op == "init_type" and init is not None:
            init.data_type = draw(st.integers(0, 30))
        elif op == "drop_init" and init is not None:
            g.initializer.remove(init)
        elif op == "external" and init is not None:
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            entry = init.external_data.add()
            entry.key, entry.value = "location", draw(st.sampled_from(
                ("../../etc/passwd", "/etc/passwd", "weights.bin", "", "sub/../../x")))
            init.ClearField("raw_data")
        elif op == "opset":
            m.opset_import[0].version = draw(st.integers(0, 40))
        elif op == "ir_version":
            m.ir_version = draw(st.integers(0, 20))
        ops.append(op)
    return Case(" ".join(ops), m.SerializeToString())


@st.composite
def tflite_graph(draw, seed: bytes) -> Case:
    """A flatbuffer that parses but lies: tensor shapes, types and buffer indices, operator
    edges and opcodes out of range, weight buffers cut short."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(seed, 0)
    sg, ops = m.subgraphs[0], []
    sg.inputs, sg.outputs = list(sg.inputs), list(sg.outputs)  # numpy views are read-only
    for o in sg.operators:
        o.inputs, o.outputs = list(o.inputs), list(o.outputs)
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(("shape", "type", "buffer", "op_input", "op_output", "opcode",
                                   "builtin", "buffer_data", "sg_input", "sg_output")))
        t = sg.tensors[draw(st.integers(0, len(sg.tensors) - 1))]
        o = sg.operators[draw(st.integers(0, len(sg.operators) - 1))]
        nt = len(sg.tensors)
        if op == "shape":
            t.shape = draw(st.lists(st.integers(-2, 2**31 - 1) | st.integers(0, 64), max_size=5))
        elif op == "type":
            t.type = draw(st.integers(-1, 30))
        elif op == "buffer":
            t.buffer = draw(st.integers(0, len(m.buffers) + 3))
        elif op == "op_input" and o.inputs is not None and len(o.inputs):
            o.inputs[draw(st.integers(0, len(o.inputs) - 1))] = draw(st.integers(-2, nt + 3))
        elif op == "op_output" and o.outputs is not None and len(o.outputs):
            o.outputs[draw(st.integers(0, len(o.outputs) - 1))] = draw(st.integers(-2, nt + 3))
        elif op == "opcode":
            o.opcodeIndex = draw(st.integers(0, len(m.operatorCodes) + 3))
        elif op == "builtin":
            code = m.operatorCodes[draw(st.integers(0, len(m.operatorCodes) - 1))]
            code.builtinCode = draw(st.integers(0, 210))
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        elif op == "buffer_data":
            with_data = [b for b in m.buffers if b.data is not None and len(b.data)]
            if with_data:
                b = draw(st.sampled_from(with_data))
                b.data = b.data[:draw(st.integers(0, len(b.data) - 1))]
        elif op == "sg_input":
            sg.inputs[0] = draw(st.integers(-2, nt + 3))
        elif op == "sg_output":
            sg.outputs[0] = draw(st.integers(-2, nt + 3))
        ops.append(op)
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return Case(" ".join(ops), bytes(b.Output()))


# ---- targets --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    seed: str  # file name under the seed folder
    mutations: tuple  # strategy factories: seed bytes -> strategy of Case
    check: object  # (path of the mutated file, seed folder) -> None; raises UserError or worse
    native: bool  # hands bytes to a native engine: run in a child process


def _runtime_protocol():
    from edgepress.runtime import bench

    return bench.Protocol(warmup_runs=0, warmup_s=0, min_runs=1, min_s=0, memory=False)


def check_model_file(path: Path, seeds: Path) -> None:
    """What the device side does with a model file: inspect it and bench it (load, run)."""
    from edgepress.runtime import bench, inspect
    from edgepress.runtime.session import Session

    inspect.apply(path)
    declared = [math.prod(d if isinstance(d, int) and d > 0 else 1 for d in s.shape)
                for s in Session(path).inputs]
    if sum(declared) <= MAX_INPUT_ELEMENTS:
        bench.apply(path, protocol=_runtime_protocol())


def check_bundle(path: Path, seeds: Path) -> None:
    """`verify` and `bench` of a bundle whose manifest, golden file or model was damaged."""
    from edgepress.runtime import artifact, bench, verify

    verify.apply(artifact.open_bundle(path))
    bench.apply(path, protocol=_runtime_protocol())


def check_source(path: Path, seeds: Path) -> None:
    from edgepress.compress import load

    load.open_source(str(path), input_shapes=CNN_SHAPE if path.suffix != ".onnx" else ())


def check_hf(path: Path, seeds: Path) -> None:
    """A Hugging Face-style directory whose config.json or model.safetensors was damaged."""
    from edgepress.compress import load

    load.open_source(str(path))


def check_weights(path: Path, seeds: Path) -> None:
    from tiny_models import factory

    from edgepress.compress import load

    load.open_source(factory("cnn"), weights=str(path), input_shapes=CNN_SHAPE)


def check_report(path: Path, seeds: Path) -> None:
    """`report` and `compare` against a good base: exit 0, 2 or 3, and nothing else."""
    import contextlib

    from edgepress import cli

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        for argv in (["report", str(path)], ["compare", str(seeds / "report.json"), str(path),
                                             "--fail-if-slower", "5"]):
            code = cli.main(argv)
            assert code in (0, 2, 3), (argv, code, sink.getvalue())
            if code == 2:
                _one_line(sink.getvalue().strip().splitlines()[-1])


def check_recipe(path: Path, seeds: Path) -> None:
    from edgepress import options
    from edgepress.compress import calibrate, quantize, recipe, verify

    r = options.Recipe.build(recipe.load(path))
    verify.check(r.verify)  # the tables' own checks that need no model
    calibrate.preprocess(r.data)
    quantize.check(r)


def check_data(path: Path, seeds: Path) -> None:
    """Calibration/evaluation data: a full streamed pass, as calibration and --eval make."""
    from edgepress.compress import calibrate
    from edgepress.runtime.artifact import TensorSpec

    specs = [TensorSpec("x", (1, 3, 16, 16), "float32")]
    data = calibrate.open_data(str(path), specs)
    for _sample, _label in data.labelled():
        pass
    data.record()


def check_inputs(path: Path, seeds: Path) -> None:
    """`bench --inputs FILE.npz`."""
    from edgepress.runtime import bench

    bench.apply(seeds / "bundle", protocol=_runtime_protocol(), inputs_file=path)


def _one_line(message: str) -> None:
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    assert "Traceback" not in message


TARGETS = {
    "onnx-source": Target("model.onnx", (raw_bytes, onnx_graph), check_source, True),
    "onnx-runtime": Target("model.onnx", (raw_bytes, onnx_graph), check_model_file, True),
    "tflite-runtime": Target("model.tflite", (raw_bytes, tflite_graph), check_model_file, True),
    "torchscript": Target("model.pt", (raw_bytes, zip_member), check_source, True),
    "exported-program": Target("model.pt2", (raw_bytes, zip_member), check_source, True),
    "safetensors": Target("weights.safetensors", (raw_bytes,), check_weights, True),
    "state-dict": Target("weights.pt", (raw_bytes, zip_member), check_weights, True),
    "bundle-manifest": Target("bundle/manifest.json", (raw_bytes, json_tree), check_bundle, True),
    "bundle-golden": Target("bundle/golden.npz", (raw_bytes, zip_member, npy_header),
                            check_bundle, True),
    "hf-config": Target("hf/config.json", (raw_bytes, json_tree), check_hf, True),
    "hf-weights": Target("hf/model.safetensors", (raw_bytes,), check_hf, True),
    "report": Target("report.json", (raw_bytes, json_tree), check_report, False),
    "recipe": Target("recipe.toml", (raw_bytes, recipe_doc), check_recipe, False),
    "calib-npz": Target("calib.npz", (raw_bytes, zip_member, npy_header), check_data, False),
    "bench-inputs": Target("inputs.npz", (raw_bytes, zip_member, npy_header), check_inputs, True),
}


class Seed(bytes):
    """Seed bytes that print short (Hypothesis prints strategies' arguments)."""

    def __repr__(self):
        return f"<{len(self)} bytes>"


def strategy(target: Target, seeds: Path):
    seed = Seed((seeds / target.seed).read_bytes())
    return st.one_of(*[m(seed) for m in target.mutations])


def place(target: Target, seeds: Path, case: Case, work: Path) -> Path:
    """Writes the mutated file where the loader will read it; returns what to pass it."""
    folder = Path(target.seed).parent
    if folder != Path("."):  # a file inside a bundle or a model directory: damage a copy
        copy = work / folder
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(seeds / folder, copy)
        (copy / Path(target.seed).name).write_bytes(case.data)
        return copy
    path = work / f"case{Path(target.seed).suffix}"
    path.write_bytes(case.data)
    return path


def run_case(name: str, seeds: Path, work: Path, case: Case) -> None:
    """The property: the loader accepts the file or says, in one line, what is wrong with it."""
    target = TARGETS[name]
    path = place(target, seeds, case, work)
    (work / "current-case.txt").write_text(f"{name}: {case.how}\n")
    try:
        target.check(path, seeds)
    except UserError as e:
        _one_line(str(e))


def examples(default: int) -> int:
    """Cases per target: EDGEPRESS_FUZZ_EXAMPLES for a release run, else the CI default."""
    return int(os.environ.get("EDGEPRESS_FUZZ_EXAMPLES", default))
