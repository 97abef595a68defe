"""An ONNX source whose dynamic dims cannot be fixed: silero-vad's If branches squeeze the time
axis when it is 1, and onnxruntime's load-time inference of the branch not taken then refuses
the model ("First input tensor must have rank 3"). Its export stopped there (issue 17); the
bundle keeps the source's dynamic dims and records why. Its layers, inside the If, are out of
the quantizer's reach: the quantized bundle is a recorded failure."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepress.compress import pipeline


def _squeezes_when_one(path):
    """y = sum(x) through an If that squeezes x's axis 1 when it has size 1, else sum(x @ w)."""
    one = numpy_helper.from_array(np.array(1, np.int64), "one")
    axis = numpy_helper.from_array(np.array([1], np.int64), "axis")
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("t", "e")]
    then = helper.make_graph([helper.make_node("Squeeze", ["x", "axis"], ["sq"]),
                              helper.make_node("ReduceSum", ["sq"], ["t"], keepdims=0)],
                             "then", [], [out[0]])
    weight = numpy_helper.from_array(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
    other = helper.make_graph([helper.make_node("Constant", [], ["w"], value=weight),
                               helper.make_node("MatMul", ["x", "w"], ["xw"]),
                               helper.make_node("ReduceSum", ["xw"], ["e"], keepdims=0)],
                              "else", [], [out[1]])  # its weight a Constant, as silero-vad's
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["dim"], axis=0),
             helper.make_node("Equal", ["dim", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], initializer=[one, axis])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_dims_onnxruntime_refuses_fixed_stay_dynamic(tmp_path):
    _squeezes_when_one(tmp_path / "m.onnx")
    run = pipeline.outcome(pipeline.Request(source=str(tmp_path / "m.onnx"), input_shapes=("1,8",),
                                            out=tmp_path / "out", formats=("onnx",),
                                            quantize=("dynamic",), summary=False))
    assert [(r.bundle.name, r.verdict.passed) for r in run.results] == [("onnx-fp32", True)]
    manifest = json.loads((tmp_path / "out" / "onnx-fp32" / "manifest.json").read_text())
    (note,) = manifest["stages"]["export"]["normalisation"]
    assert note.startswith("kept the source's dynamic dims: with them fixed to the declared "
                           "shapes onnxruntime cannot load it: ")
    assert manifest["inputs"][0]["shape"] == [1, 8]  # as declared: what the golden samples hold
    # Its one layer (the MatMul) is inside the If, which onnxruntime.quantization does not
    # enter: a "dynamic" bundle would have been the fp32 model under another name.
    (failure,) = run.failures
    assert (failure["bundle"], failure["stage"], failure["library"]) == \
        ("onnx-dynamic", "quantize", "onnxruntime")
    assert failure["error"].startswith("onnxruntime found no layer to quantize in the model's "
                                       "main graph")
