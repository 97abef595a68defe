"""quantize on transformer-like models with integer inputs (issue 15): a tiny BERT saved as a
Hugging Face directory (int64 input_ids / attention_mask, an additive finfo.min mask), a
magika-like ONNX model with an int32 input and a (1, N) Gemm bias, and a graph with a GRU."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from tiny_models import factory

from edgepress import cli
from edgepress.compress import load
from edgepress.compress.quantize import Job, METHODS, QuantizeConfig, onnx as onnx_paths, paths
from edgepress.compress.quantize import graph_facts


def _bert_dir(tmp_path_factory, layers: int) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, architectures=["BertModel"])
    where = tmp_path_factory.mktemp("bert") / f"tiny-bert-{layers}"
    transformers.BertModel(config).eval().save_pretrained(where)
    return where


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return _bert_dir(tmp_path_factory, 1)


def test_onnx_int8_of_a_two_layer_bert_loads(tmp_path_factory, tmp_path):
    """onnxruntime's MatMul+Add fusion at load reused the shape-initializer names its own
    fusion in quant_pre_process had written, so a BERT of two or more layers (MiniLM's port)
    gave an int8 file onnxruntime could not load."""
    from edgepress.runtime.session import Session

    out = tmp_path / "out"
    assert _compress(_bert_dir(tmp_path_factory, 2), out, "--format", "onnx",
                     "--quantize", "int8") == 0
    Session(out / "onnx-int8" / "model.onnx")  # raises when onnxruntime rejects it


def _compress(source, out: Path, *extra) -> int:
    return cli.main(["compress", str(source), "--out", str(out), "--calib", "random", *extra])


def _quantize_figures(out: Path, bundle: str) -> dict:
    return json.loads((out / bundle / "manifest.json").read_text())["stages"]["quantize"]


@pytest.fixture(scope="module")
def bert_onnx(bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert-onnx") / "out"
    # by fidelity alone (not this host's timings), so the kept int8 path is deterministic
    assert _compress(bert_dir, out, "--format", "onnx", "--quantize", "int8,dynamic",
                     "--quant-target", "x86-vnni") == 0
    return out


def test_onnx_int8_transformer_keeps_mask_softmax_layernorm_float(bert_onnx):
    q = _quantize_figures(bert_onnx, "onnx-int8")
    assert "transformer" in q["method"]
    kept = q["float_kept"]
    assert kept["ops"]["Softmax"] >= 1 and kept["ops"]["LayerNormalization"] >= 1
    assert "mask" in kept["why"] and kept["weight_layers"] == []  # every weight layer int8
    assert q["graph"]["integer_ops"]["Gather (int8 table, weight-only)"] >= 1
    model = onnx.load(str(bert_onnx / "onnx-int8" / "model.onnx"))
    ids = {i.name for i in model.graph.input}
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert not quantized & ids, "an integer input was quantized"
    softmax_in = {n.input[0] for n in model.graph.node if n.op_type == "Softmax"}
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producers.get(t) != "DequantizeLinear" for t in softmax_in)


def test_onnx_dynamic_lists_what_the_graph_holds(bert_onnx):
    q = _quantize_figures(bert_onnx, "onnx-dynamic")
    graph = q["graph"]
    assert graph["integer_ops"].get("MatMulInteger", 0) >= 6  # QKV, attention out, FFN x2
    assert graph["integer_ops"]["Gather (int8 table, weight-only)"] >= 1  # the embedding table
    assert graph["float_weight_layers"] == []
    assert "op_types" not in q  # the requested list is not presented as what was quantized


def test_cnn_keeps_the_all_ops_static_path(cnn_bundles):
    loaded = load.open_source(factory("cnn"), None, ("1,3,16,16",))
    job = Job(loaded, "onnx", cnn_bundles / "onnx-fp32" / "model.onnx", Path("unused"))
    assert paths.first_applicable(METHODS[("onnx", "int8")], job) is onnx_paths.static_int8


@pytest.fixture(scope="module")
def bert_tflite(bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert-tflite") / "out"
    # failed before: "histogram_cpu" not implemented for 'Long'
    assert _compress(bert_dir, out, "--format", "tflite", "--quantize", "int8") == 0
    return out


def test_tflite_int8_never_observes_token_ids(bert_tflite):
    assert (bert_tflite / "tflite-int8" / "model.tflite").stat().st_size > 0
    q = _quantize_figures(bert_tflite, "tflite-int8")
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    assert set(rows) == {"aeq-mixed", "pt2e"}  # whole-model AEQ static: not for transformers
    assert all("snr_db" in r and "p50_ms" in r for r in rows.values()), rows
    assert "why" not in q  # the choice is measured, not a fixed sentence


def _fc_types(path: Path) -> dict:
    """FULLY_CONNECTED output tensor name -> (input type, weight type) of a .tflite."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    model = tfu.read_model(str(path))
    graph, codes = model.subgraphs[0], [c.builtinCode for c in model.operatorCodes]
    return {tfu.get_tensor_name(graph.tensors[op.outputs[0]]):
            (graph.tensors[op.inputs[0]].type, graph.tensors[op.inputs[1]].type)
            for op in graph.operators
            if codes[op.opcodeIndex] == qtyping.BuiltinOperator.FULLY_CONNECTED}


def test_mixed_recipe_makes_the_named_fcs_dynamic(bert_tflite, tmp_path):
    """AEQ matches a recipe's regex against the op's scope ("name;"): the regex `name$` the
    recipe used matched nothing, so every FC stayed static (MiniLM: 0.957 worst cosine)."""
    from ai_edge_quantizer import qtyping

    from edgepress.compress import calibrate
    from edgepress.compress.quantize import aeq_static
    from edgepress.runtime.session import Session

    fp32 = bert_tflite / "tflite-fp32" / "model.tflite"
    residual = aeq_static.residual_fcs(fp32)
    assert len(residual) == 2  # the attention-output and FFN-output dense of the one layer
    specs = Session(fp32).inputs
    job = Job(None, "tflite", fp32, tmp_path / "q.tflite", work=tmp_path,
              calib=calibrate.open_data("random", specs, 8, int_high={s.name: 16 for s in specs}))
    qsvs = aeq_static._calibrate(job, aeq_static._mixed_recipe([]), "minmax")
    aeq_static._write(fp32, job.out_path, aeq_static._mixed_recipe(residual[:1]), qsvs)
    types = _fc_types(job.out_path)
    int8, f32 = qtyping.TensorType.INT8, qtyping.TensorType.FLOAT32
    assert types[residual[0]] == (f32, int8)  # dynamic-range: float input, int8 weight
    assert types[residual[1]] == (int8, int8)  # static


def test_mixed_recipe_records_its_measured_choice(bert_tflite):
    q = _quantize_figures(bert_tflite, "tflite-int8")
    mixed = next(r for r in q["choice"]["candidates"] if r["path"] == "aeq-mixed")
    assert "error" not in mixed
    if q["path"] == "aeq-mixed":
        pick = q["dynamic_choice"]
        assert len(pick["ranking"]) == 2 and pick["steps"][0]["dynamic"] == 0
        assert set(q["dynamic_fcs"]) <= {r["fc"] for r in pick["ranking"]}
        assert q["float_ops"]["SOFTMAX"] >= 1 and "QUANTIZE" not in q["float_ops"]


def _save(nodes, inputs, outputs, inits, path: Path) -> Path:
    graph = h.make_graph(nodes, "m", inputs, outputs, [nh.from_array(v, k)
                                                       for k, v in inits.items()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_integer_input_with_row_bias_quantizes_static(tmp_path):
    """magika's shape: an int32 input cast to float, a dense layer whose bias is (1, N). Before:
    a ValueError inside onnxruntime's per-channel bias-scale adjustment."""
    rng = np.random.default_rng(0)
    src = _save([h.make_node("Cast", ["bytes"], ["f"], to=TensorProto.FLOAT),
                 h.make_node("Gemm", ["f", "W", "B"], ["y"])],
                [h.make_tensor_value_info("bytes", TensorProto.INT32, [1, 8])],
                [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                {"W": rng.standard_normal((8, 4)).astype(np.float32),
                 "B": rng.standard_normal((1, 4)).astype(np.float32)}, tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert _compress(src, out, "--format", "onnx", "--quantize", "int8") == 0
    q = _quantize_figures(out, "onnx-int8")
    assert any("flattened" in note for note in q["normalisation"])
    rows = {r["path"]: r for r in q["choice"]["candidates"]}  # no attention: all ops tried
    assert "error" not in rows["onnx-static-all-ops"] and "snr_db" in rows["onnx-static-all-ops"]


def test_record_names_gru_float_and_gemm_quantized(tmp_path):
    """onnxruntime's dynamic quantizer rewrites Gemm as MatMul (quantized) and has no GRU kernel
    (float): the record reads that from the written graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    src = _save([h.make_node("Gemm", ["x", "W", "B"], ["g"]),
                 h.make_node("Unsqueeze", ["g", "axes"], ["seq"]),
                 h.make_node("GRU", ["seq", "Wg", "Rg"], ["y"], hidden_size=4, name="gru")],
                [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 4])],
                {"W": f32(8, 6), "B": f32(6), "axes": np.array([0], np.int64),
                 "Wg": f32(1, 12, 6), "Rg": f32(1, 12, 4)}, tmp_path / "gru.onnx")
    quantize_dynamic(str(src), str(tmp_path / "q.onnx"), per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm", "GRU"], weight_type=QuantType.QInt8)
    record = graph_facts.record(tmp_path / "q.onnx")
    assert record["integer_ops"] == {"MatMulInteger": 1}
    assert record["float_weight_layers"] == ["gru"]


def test_softmax_head_or_layernorm_alone_is_not_attention(tmp_path):
    rng = np.random.default_rng(0)
    src = _save([h.make_node("Gemm", ["x", "W"], ["g"]),
                 h.make_node("LayerNormalization", ["g", "s"], ["n"], axis=-1),
                 h.make_node("Softmax", ["n"], ["y"])],
                [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                {"W": rng.standard_normal((8, 4)).astype(np.float32),
                 "s": np.ones(4, np.float32)}, tmp_path / "head.onnx")
    assert graph_facts.attention(src) == {}


def test_bias_shared_by_two_convs_quantizes_static(tmp_path):
    """basic-pitch's shape: two Convs share one bias initializer "b", and a Conv output is
    named "b2". onnxruntime's per-layer copy of the bias took the name "b2", replacing that
    activation, so the int8 model did not load."""
    rng = np.random.default_rng(0)
    src = _save([h.make_node("Conv", ["x", "W1", "b"], ["b2"], name="c1", pads=[1, 1, 1, 1]),
                 h.make_node("Relu", ["b2"], ["r"]),
                 h.make_node("Conv", ["r", "W2", "b"], ["y"], name="c2", pads=[1, 1, 1, 1])],
                [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                {"W1": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
                 "W2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
                 "b": rng.standard_normal(4).astype(np.float32)}, tmp_path / "shared.onnx")
    out = tmp_path / "out"
    assert _compress(src, out, "--format", "onnx", "--quantize", "int8") == 0
    q = _quantize_figures(out, "onnx-int8")
    assert any("shared by several layers" in note for note in q["normalisation"])
    assert all("error" not in r for r in q["choice"]["candidates"]), q["choice"]["candidates"]
