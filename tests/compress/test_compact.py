"""compact: smaller files that compute exactly what the tools wrote.

The quantizers' raw output (quantize.METHODS, before quantize.apply compacts it) is compacted in a
copy; the copy must give bit-identical outputs, keep its inputs and outputs, keep every fusion
onnxruntime makes, and lose the bookkeeping names.
"""

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_models import factory

from edgepress.compress import calibrate, compact, load, quantize
from edgepress.compress.quantize import paths
from edgepress.runtime.session import Session


@pytest.fixture(scope="module")
def raw_int8(cnn_bundles, tmp_path_factory):
    """fmt -> (raw int8 file, its compacted copy)."""
    tmp = tmp_path_factory.mktemp("compact")
    loaded = load.open_source(factory("cnn"), None, ("1,3,16,16",))
    rng = np.random.default_rng(0)
    np.savez(tmp / "c.npz", x=rng.standard_normal((16, 1, 3, 16, 16)).astype(np.float32))
    calib = calibrate.open_data(str(tmp / "c.npz"), loaded.inputs)
    out = {}
    for fmt in ("onnx", "tflite"):
        job = quantize.Job(loaded, fmt, cnn_bundles / f"{fmt}-fp32" / f"model.{fmt}",
                           tmp / f"raw.{fmt}", calib, {"x": torch.from_numpy(calib.first(1)["x"][0])},
                           work=tmp / f"work-{fmt}")
        method = paths.first_applicable(quantize.METHODS[(fmt, "int8")], job)
        raw = method(job, quantize.QuantizeConfig("int8")).path
        small = tmp / f"compact.{fmt}"
        shutil.copyfile(raw, small)
        out[fmt] = (raw, small, compact.apply(small))
    return out


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_same_outputs_smaller_file(raw_int8, fmt):
    raw, small, saved = raw_int8[fmt]
    assert saved > 0 and small.stat().st_size == raw.stat().st_size - saved
    a, b = Session(raw), Session(small)
    assert a.inputs == b.inputs and a.outputs == b.outputs
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = {"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
        for name, out in a.run(x).items():
            assert np.array_equal(out, b.run(x)[name])


def test_onnx_keeps_every_fusion(raw_int8, tmp_path):
    raw, small, _ = raw_int8["onnx"]

    def fused_ops(path):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"opt-{path.name}")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)

    fused = fused_ops(small)
    assert fused == fused_ops(raw) and fused["QLinearConv"] == 2, fused


def test_onnx_names_and_zero_points(raw_int8):
    raw, small, _ = raw_int8["onnx"]
    before, after = onnx.load(str(raw)).graph, onnx.load(str(small)).graph
    names = {t.name for t in after.initializer} | {o for n in after.node for o in n.output}
    assert not [n for n in names if "_DequantizeLinear" in n or "_zero_point" in n]
    assert "conv1.weight_i" in names  # the weight's own name stays readable
    int32 = {t.name for t in after.initializer if t.data_type == onnx.TensorProto.INT32}
    assert int32 and all(len(n.input) == 2 for n in after.node
                         if n.op_type == "DequantizeLinear" and n.input[0] in int32)
    assert len(after.initializer) < len(before.initializer)


def test_tflite_names_are_module_paths(raw_int8):
    from ai_edge_litert.tools import flatbuffer_utils

    def names(path):
        return [t.name.decode() for t in flatbuffer_utils.read_model(str(path)).subgraphs[0].tensors]

    raw, small = raw_int8["tflite"][:2]
    assert any("torch.nn.modules" in n for n in names(raw))
    after = names(small)
    assert len(set(after)) == len(after)
    assert not [n for n in after if "/" in n or "torch.nn" in n or len(n) > 40], after
    assert {"conv1", "conv2", "fc"} <= {n.split(":")[0] for n in after}


def test_fp32_tflite_export_is_compacted(cnn_bundles):
    manifest = json.loads((cnn_bundles / "tflite-fp32" / "manifest.json").read_text())
    assert manifest["stages"]["export"]["compacted_bytes"] > 0


@pytest.mark.parametrize("location,path", [
    ("Root/torch.nn.modules.container.Sequential_down/torch.nn.modules.conv.Conv2d_0;", "down.0"),
    ("Root/a.ReLU_2;;Root/a.BatchNorm2d_1;;Root/a.Conv2d_0;", "2"),
    ("Root/pkg.Block_layer_1/pkg.Linear_fc;1", "layer_1.fc"),
    ("arith.constant1", "arith.constant1"),
    ("torch.export._trace.<locals>.Wrapper;1", ""),
])
def test_module_path(location, path):
    assert compact.module_path(location) == path


def test_onnx_with_external_data_is_left_alone(raw_int8, tmp_path):
    raw = raw_int8["onnx"][0]
    model = onnx.load(str(raw))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    before = (tmp_path / "ext.onnx").read_bytes()
    assert compact.apply(tmp_path / "ext.onnx") == 0
    assert (tmp_path / "ext.onnx").read_bytes() == before


def test_files_over_the_limit_are_left_alone(raw_int8, tmp_path, monkeypatch):
    small = tmp_path / "big.tflite"
    shutil.copyfile(raw_int8["tflite"][0], small)
    monkeypatch.setattr(compact, "MAX_BYTES", small.stat().st_size - 1)
    assert compact.apply(small) == 0
    assert small.read_bytes() == raw_int8["tflite"][0].read_bytes()


def _control_flow_model(path):
    """x -> If(cond): then Gelu(x + W) (a com.microsoft op), else a nested If(cond) whose
    branches compute x * V and Identity(U). W, V and U are outer initializers that only the
    branches read, by name, as ONNX allows; no top-level node lists them as inputs."""
    from onnx import TensorProto, helper, numpy_helper

    def branch(name, nodes):
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
            f"{name}_out", TensorProto.FLOAT, [3])])

    then = branch("then", [helper.make_node("Add", ["x", "W"], ["sum"]),
                           helper.make_node("Gelu", ["sum"], ["then_out"],
                                            domain="com.microsoft")])
    inner = helper.make_node("If", ["cond"], ["else_out"],
                             then_branch=branch("in_then", [helper.make_node("Mul", ["x", "V"],
                                                                             ["in_then_out"])]),
                             else_branch=branch("in_else", [helper.make_node(
                                 "Identity", ["U"], ["in_else_out"])]))
    graph = helper.make_graph(
        [helper.make_node("Not", ["flag"], ["cond"]),
         helper.make_node("If", ["cond"], ["y"], then_branch=then,
                          else_branch=branch("else", [inner]))],
        "control_flow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.full(3, v, np.float32), name)
         for name, v in (("W", 1.0), ("V", 2.0), ("U", 3.0), ("unused", 4.0))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))


def test_onnx_initializers_read_inside_subgraphs_are_kept(tmp_path):
    """Compaction runs on every quantized model: one whose If / Loop / Scan branches read outer
    initializers (or use an op domain only there) loads before and must load after it."""
    path = tmp_path / "cf.onnx"
    _control_flow_model(path)

    def outputs(p):
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        x = np.array([-1.0, 0.0, 1.0], np.float32)
        return [sess.run(None, {"x": x, "flag": np.array(f)})[0] for f in (False, True)]

    before = outputs(path)
    compact.apply(path)
    after = outputs(path)  # raised INVALID_GRAPH when only top-level nodes counted
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    model = onnx.load(str(path))
    assert {t.name for t in model.graph.initializer} == {"W", "V", "U"}  # "unused" is dropped
    assert "com.microsoft" in {o.domain for o in model.opset_import}
