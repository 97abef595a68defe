"""The manifest's quantized_layers / float_layers are read from the written file: a weight
layer counts as quantized only when its weight is stored as integers (issue 17: a breadth cell
passes only when its manifest names the layers that were quantized)."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepress.compress.quantize import layers


def test_onnx_layers_are_told_apart_by_how_their_weights_are_stored(tmp_path):
    w8 = numpy_helper.from_array(np.ones((4, 4), np.int8), "w8")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    wf = numpy_helper.from_array(np.ones((4, 4), np.float32), "wf")
    table = numpy_helper.from_array(np.ones((10, 4), np.float32), "table")
    ids = numpy_helper.from_array(np.array([1, 2], np.int64), "ids")
    nodes = [helper.make_node("DequantizeLinear", ["w8", "scale"], ["w8_dq"], name="dq"),
             helper.make_node("MatMul", ["x", "w8_dq"], ["a"], name="quantized_mm"),
             helper.make_node("MatMul", ["a", "wf"], ["b"], name="float_mm"),
             helper.make_node("MatMul", ["b", "b"], ["c"], name="activations_only"),
             helper.make_node("Gather", ["table", "ids"], ["g"], name="float_lookup")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [2, 4])],
        initializer=[w8, scale, wf, table, ids])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert layers.record(path) == {"quantized_layers": ["quantized_mm"],
                                   "float_layers": ["float_mm", "float_lookup"]}
