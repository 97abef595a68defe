"""align: a conv's input channels padded to onnxruntime's int8 alignment compute the same."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepress import cli
from edgepress.compress.quantize import align
from edgepress.runtime import fingerprint


def _conv_model(channels: int, side: int, group: int = 1) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, channels // group, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="stem", pads=[1, 1, 1, 1],
                          group=group),
         helper.make_node("Relu", ["y"], ["out"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, side, side])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, side, side])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_rgb_stem_is_padded_and_computes_the_same():
    model = _conv_model(3, 32)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    before = _run(model, x)
    notes = align.pad_input_channels(model)
    assert len(notes) == 1 and "3 -> 4" in notes[0]
    onnx.checker.check_model(model, full_check=True)
    assert numpy_helper.to_array(model.graph.initializer[0]).shape == (8, 4, 3, 3)
    assert [n.op_type for n in model.graph.node] == ["Pad", "Conv", "Relu"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,side,group", [(4, 32, 1), (3, 16, 1), (6, 32, 3)])
def test_left_alone(channels, side, group):
    """Already aligned, too small for the Pad to pay, or grouped: unchanged."""
    model = _conv_model(channels, side, group)
    before = model.SerializeToString()
    assert align.pad_input_channels(model) == []
    assert model.SerializeToString() == before


@pytest.mark.skipif(fingerprint.int8_family() == "arm", reason="the padding is for x86's kernels")
def test_onnx_int8_on_x86_records_the_padding(tmp_path):
    onnx.save(_conv_model(3, 32), str(tmp_path / "stem.onnx"))
    assert cli.main(["compress", str(tmp_path / "stem.onnx"), "--format", "onnx", "--quantize",
                     "int8", "--calib", "random", "--out", str(tmp_path / "out")]) in (0, 1)
    manifest = json.loads((tmp_path / "out" / "onnx-int8" / "manifest.json").read_text())
    assert any("stem: input channels 3 -> 4" in n
               for n in manifest["stages"]["quantize"]["normalisation"])
