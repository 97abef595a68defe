"""Writes the small bad files of the corpus (tests/bad_inputs/files/), committed as they are;
rerun only to add one: `python tests/bad_inputs/make_files.py`. Each file is one kind of damage
a user's file can have; cases.toml says what the CLI must answer to it.

Files that would be dangerous to keep (a pickle that runs code) are made by the test itself."""

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
sys.path.insert(0, str(HERE.parent))


def onnx_files():
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    good = model.SerializeToString()
    (FILES / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (FILES / "not_a_model.onnx").write_text("this is a text file, not an ONNX protobuf\n")
    escape = onnx.ModelProto()
    escape.CopyFrom(model)
    init = escape.graph.initializer[0]
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    (FILES / "external_escape.onnx").write_bytes(escape.SerializeToString())
    bad_graph = onnx.ModelProto()
    bad_graph.CopyFrom(model)
    bad_graph.graph.node[0].op_type = "NoSuchOp"
    (FILES / "unknown_op.onnx").write_bytes(bad_graph.SerializeToString())
    (FILES / "dynamic.onnx").write_bytes(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])]),
        opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def torch_files():
    import torch
    from safetensors.torch import save_file

    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2)), buf)
    (FILES / "truncated.pt").write_bytes(buf.getvalue()[:300])
    (FILES / "garbage.pt2").write_bytes(b"PK\x03\x04 not really an archive" * 4)
    (FILES / "garbage.safetensors").write_bytes(b"\xff" * 8 + b"{not json}")
    save_file({"not_a_key": torch.zeros(1)}, str(FILES / "wrong_keys.safetensors"))
    torch.save({"not_a_key": torch.zeros(1)}, FILES / "wrong_keys.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, buf := io.BytesIO())
    (FILES / "truncated_weights.pt").write_bytes(buf.getvalue()[:150])


def tflite_files():
    import tempfile

    import tiny_models

    from edgepress.compress import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipeline.run(pipeline.Request(source=tiny_models.factory("cnn"), out=Path(tmp) / "b",
                                      formats=("tflite",), input_shapes=("1,3,16,16",),
                                      golden_samples=1, summary=False))
        good = (Path(tmp) / "b" / "tflite-fp32" / "model.tflite").read_bytes()
    (FILES / "truncated.tflite").write_bytes(good[: len(good) // 3])
    (FILES / "not_a_flatbuffer.tflite").write_text("a text file named .tflite\n")


def data_files():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    np.savez(FILES / "calib_no_x.npz", y=x)
    np.savez(FILES / "calib_wrong_shape.npz", x=x[:, :, :8, :8])
    bad = x.copy()
    bad[1, 0, 0, 0] = np.nan
    np.savez(FILES / "calib_nan.npz", x=bad)
    np.savez(FILES / "calib_object.npz", x=np.array([{"a": 1}, None], dtype=object))
    good = io.BytesIO()
    np.savez(good, x=x)
    (FILES / "calib_truncated.npz").write_bytes(good.getvalue()[:2000])
    np.savez(FILES / "inputs_wrong_shape.npz", x=x[:1, :, :8, :8])
    with zipfile.ZipFile(FILES / "calib_not_npy.npz", "w") as z:
        z.writestr("x.npy", b"plain bytes, no .npy header")


def json_files():
    (FILES / "not_json.json").write_text('{"schema_version": "1.0", "kind": "bench",\n')
    (FILES / "no_schema.json").write_text(json.dumps({"hello": "world"}) + "\n")
    (FILES / "report_v9.json").write_text(json.dumps({"schema_version": "9.0"}) + "\n")
    (FILES / "report_missing_field.json").write_text(
        json.dumps({"schema_version": "1.0", "kind": "bench"}) + "\n")
    (FILES / "manifest_missing_fields.json").write_text(
        json.dumps({"schema_version": "1.0", "format": "onnx"}) + "\n")
    (FILES / "manifest_v9.json").write_text(json.dumps(
        {"schema_version": "9.0", "format": "onnx", "precision": "fp32",
         "model_file": "model.onnx", "model_sha256": "0" * 64, "inputs": [], "outputs": [],
         "source": {}}) + "\n")
    (FILES / "manifest_escape.json").write_text(json.dumps(
        {"schema_version": "1.0", "format": "onnx", "precision": "fp32",
         "model_file": "../../model.onnx", "model_sha256": "0" * 64, "inputs": [],
         "outputs": [], "source": {}}) + "\n")
    # the same bundle passed as "FP32" and failed as "fp32": int8's thresholds were the fallback
    (FILES / "manifest_precision_case.json").write_text(json.dumps(
        {"schema_version": "1.0", "format": "onnx", "precision": "FP32",
         "model_file": "model.onnx", "model_sha256": "0" * 64, "inputs": [], "outputs": [],
         "source": {}}) + "\n")


def text_files():
    (FILES / "model.txt").write_text("not a model\n")
    (FILES / "not_a_model_dir").mkdir(exist_ok=True)
    (FILES / "not_a_model_dir" / "README").write_text("a folder without config.json\n")
    (FILES / "raises.py").write_text("def build():\n    raise RuntimeError('no GPU here')\n")
    (FILES / "recipe_not_toml.toml").write_text("[model\nsource = 1\n")
    (FILES / "recipe_unknown_section.toml").write_text("[modle]\nsource = \"m.py:f\"\n")
    (FILES / "recipe_unknown_key.toml").write_text("[model]\nsorce = \"m.py:f\"\n")
    (FILES / "recipe_wrong_type.toml").write_text("[verify]\ngolden_samples = \"eight\"\n")


if __name__ == "__main__":
    FILES.mkdir(exist_ok=True)
    for make in (onnx_files, torch_files, tflite_files, data_files, json_files, text_files):
        make()
    print(f"wrote {len(list(FILES.rglob('*')))} files under {FILES}")
