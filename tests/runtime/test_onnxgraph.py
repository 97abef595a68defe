"""onnxgraph reads what the onnx package reads (for the fields inspect uses), and nothing else:
a damaged file is a ValueError, never another exception."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepress.runtime import onnxgraph


def _both(path):
    data = path.read_bytes()
    return onnxgraph.read(data).graph, onnx.load_from_string(data).graph


def _dims(vi):
    return tuple(d.dim_value if d.HasField("dim_value") else -1
                 for d in vi.type.tensor_type.shape.dim)


def test_same_graph_as_the_onnx_package(cnn_bundles):
    ours, theirs = _both(cnn_bundles / "onnx-fp32" / "model.onnx")
    assert [(n.op_type, n.name, n.domain, list(n.input), list(n.output)) for n in ours.node] == \
        [(n.op_type, n.name, n.domain, list(n.input), list(n.output)) for n in theirs.node]
    assert [(a.name, a.type, a.i) for n in ours.node for a in n.attribute] == \
        [(a.name, a.type, a.i) for n in theirs.node for a in n.attribute]
    assert [(t.name, tuple(t.dims), t.data_type) for t in ours.initializer] == \
        [(t.name, tuple(t.dims), t.data_type) for t in theirs.initializer]
    declared = list(theirs.value_info) + list(theirs.input) + list(theirs.output)
    assert [(v.name, onnxgraph.dims(v), onnxgraph.elem_type(v))
            for v in ours.value_info + ours.input + ours.output] == \
        [(v.name, _dims(v), v.type.tensor_type.elem_type) for v in declared]


def test_negative_ints_dynamic_dims_and_constants(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(
            np.zeros((2, 3), np.float32))),
         helper.make_node("Flatten", ["x"], ["y"], axis=-1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    g = onnxgraph.read((tmp_path / "m.onnx").read_bytes()).graph
    assert g.node[0].attribute[0].t.dims == [2, 3]
    assert g.node[1].attribute[0].i == -1
    assert onnxgraph.dims(g.input[0]) == (-1, 3, 4) and onnxgraph.dims(g.output[0]) is None


def test_added_outputs_are_merged_into_the_graph(cnn_bundles):
    data = (cnn_bundles / "onnx-fp32" / "model.onnx").read_bytes()
    hidden = onnx.load_from_string(data).graph.node[0].output[0]
    merged = onnxgraph.with_outputs(data, [hidden])
    assert [o.name for o in onnx.load_from_string(merged).graph.output] == ["output_0", hidden]
    g = onnxgraph.read(merged).graph
    assert [o.name for o in g.output] == ["output_0", hidden] and len(g.node) > 1


def test_damaged_bytes_are_a_value_error(cnn_bundles):
    data = (cnn_bundles / "onnx-fp32" / "model.onnx").read_bytes()
    rng = np.random.default_rng(0)
    for cut in sorted(set(rng.integers(1, len(data), 200).tolist())):
        for damaged in (data[:cut], data[:cut] + bytes([rng.integers(0, 256)]) + data[cut + 1:]):
            try:
                onnxgraph.read(damaged)
            except ValueError:
                pass  # anything else fails the test
