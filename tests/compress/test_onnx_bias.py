"""onnx_bias: bias correction of onnxruntime's QDQ file finds the biased layers (Conv's int32 bias,
a MatMul's float bias Add), removes the output shift layer by layer, and is kept only where the
held-out SNR says it helps."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepress.compress import calibrate
from edgepress.compress.quantize import onnx_bias
from edgepress.compress.quantize.bias_correction import MIN_GAIN_DB
from edgepress.compress.quantize.job import Job, QuantizeConfig, Quantized
from edgepress.runtime.artifact import TensorSpec

SPECS = [TensorSpec("x", (1, 3, 8, 8), "float32")]


def _float_model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.normal(0, 1, (8, 3, 3, 3))), ("b1", rng.normal(0, 0.1, 8)),
        ("w2", rng.normal(0, 0.3, (4, 8, 3, 3))), ("b2", rng.normal(0, 0.1, 4)),
        ("w3", rng.normal(0, 0.2, (64, 5))), ("b3", rng.normal(0, 0.1, 5)))]
    inits.append(numpy_helper.from_array(np.array([1, 64], np.int64), "shape"))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Reshape", ["c2", "shape"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "w3"], ["mm"], name="dense"),
             helper.make_node("Add", ["mm", "b3"], ["y"], name="dense_bias")]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _setup(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    calib = calibrate.open_data("random", SPECS, 16)
    select = calibrate.open_data("random", SPECS, 8, seed=1)
    fp32, q = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    _float_model(fp32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib.samples())

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    op_types_to_quantize=["Conv", "MatMul"])
    job = Job(loaded=None, fmt="onnx", fp32_path=fp32, out_path=q, calib=calib, select=select,
              work=tmp_path / "work")
    return fp32, q, job


def test_finds_conv_biases_and_the_dense_bias_add(tmp_path):
    _, q, _ = _setup(tmp_path)
    layers = onnx_bias.biased_layers(onnx.load(str(q)))
    assert set(layers) == {"conv1", "conv2", "dense_bias"}
    assert layers["conv1"][3] is not None  # int32 bias behind its DequantizeLinear, with scale
    assert layers["dense_bias"][2:] == ("b3", None)  # the float initializer, axis -1
    assert layers["dense_bias"][1] == -1


def test_correction_removes_the_first_layers_shift(tmp_path):
    fp32, q, job = _setup(tmp_path)
    model = onnx.load(str(q))
    layers = onnx_bias.biased_layers(model)
    taps = {"conv1": layers["conv1"][:2]}
    f_mean = onnx_bias._means(onnx.load(str(fp32)), taps, job.calib)["conv1"]
    before = onnx_bias._means(model, taps, job.calib)["conv1"] - f_mean
    assert onnx_bias.correct_in_order(model, layers, onnx_bias._means(
        onnx.load(str(fp32)), onnx_bias._by_name(fp32, layers), job.calib), job.calib) == 3
    after = onnx_bias._means(model, taps, job.calib)["conv1"] - f_mean
    step = numpy_helper.to_array(next(t for t in model.graph.initializer
                                      if t.name == layers["conv1"][3]))
    # what is left is the int32 bias's rounding: at most half a step per channel
    assert np.all(np.abs(after) <= 0.5 * step + 1e-6)
    assert np.abs(before).max() > np.abs(after).max()


def test_kept_only_when_the_held_out_snr_rises(tmp_path):
    fp32, q, job = _setup(tmp_path)
    original = q.read_bytes()
    record = onnx_bias.apply(fp32, q, job)
    assert record["layers"] == 3 and record["calib_samples"] == 16
    gain = record["snr_db_with"] - record["snr_db_without"]
    assert record["applied"] == (gain > MIN_GAIN_DB) == (q.read_bytes() != original)


def test_the_pass_needs_held_out_data_and_skips_other_precisions(tmp_path):
    _, q, job = _setup(tmp_path)
    job.select = None
    result = onnx_bias.pass_(job, QuantizeConfig("int8"), Quantized(q, {}), None)
    assert result.figures["bias_correction"] == {"applied": False,
                                                 "why": "no held-out data to measure on"}
    dyn = onnx_bias.pass_(job, QuantizeConfig("dynamic"), Quantized(q, {}), None)
    assert "bias_correction" not in dyn.figures
