"""A model input of shape () (silero-vad's `sr`: the sample rate as a scalar int64) goes
through export and verification: indexing one sample of its (samples,) array gives a numpy
scalar, which torch.from_numpy refused with a TypeError (issue 17, found on silero-vad)."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepress.compress import pipeline


def _scaled_by_a_scalar(path):
    """y = (x @ w) * float(sr) / 16000, with sr a scalar int64 input (w: a layer to quantize)."""
    nodes = [helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["srf", "rate"], ["k"]),
             helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Mul", ["xw", "k"], ["y"])]
    w = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                     helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[numpy_helper.from_array(np.array(16000.0, np.float32), "rate"),
                     numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_scalar_input_is_exported_and_verified(tmp_path):
    _scaled_by_a_scalar(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((4, 1, 8))
             .astype(np.float32), sr=np.full((4,), 16000, np.int64))
    fp32, dynamic = pipeline.run(pipeline.Request(source=str(tmp_path / "m.onnx"),
                                              out=tmp_path / "out", formats=("onnx",),
                                              quantize=("dynamic",), calib=str(tmp_path / "calib.npz"),
                                              summary=False))
    for result in (fp32, dynamic):
        assert result.verdict.passed, (result.bundle.name, result.verdict.failures)


def test_a_scalar_input_is_timed_for_the_summary(tmp_path):
    # np.ascontiguousarray turned the 0-d sample into shape (1,), which the engine refused
    _scaled_by_a_scalar(tmp_path / "m.onnx")
    run = pipeline.outcome(pipeline.Request(source=str(tmp_path / "m.onnx"), out=tmp_path / "out",
                                            formats=("onnx",)))
    assert run.failures == [] and [r.bundle.name for r in run.results] == ["onnx-fp32"]
    assert (tmp_path / "out" / "summary.json").is_file()


def test_a_scalar_input_keeps_its_shape_in_aeq_calibration(tmp_path):
    # AI Edge Quantizer's calibration feeds went through np.ascontiguousarray, which makes a 0-d
    # sample (1,); the model's signature declares () for it
    from edgepress.compress.calibrate import open_data
    from edgepress.compress.quantize import aeq_static
    from edgepress.compress.quantize.job import Job
    from edgepress.runtime.session import Session

    _scaled_by_a_scalar(tmp_path / "m.onnx")
    specs = Session(tmp_path / "m.onnx").inputs
    job = Job(loaded=None, fmt="tflite", fp32_path=tmp_path / "m.onnx", out_path=tmp_path / "q",
              calib=open_data("random", specs, limit=2))
    feeds = list(aeq_static._feeds(job))
    assert len(feeds) == 2
    for feed in feeds:
        assert feed["sr"].shape == () and feed["sr"].dtype == np.int64
        assert feed["x"].shape == (1, 8) and feed["x"].flags.c_contiguous
