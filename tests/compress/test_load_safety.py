"""Untrusted model files never execute code; --trust-pickle is explicit and loud."""

import os
import pickle

import onnx
import pytest
import torch
from tiny_models import TINY

import tiny_models
from edgepress.compress import load
from edgepress.errors import UserError

MARK = "/tmp/edgepress-trust-pickle-ran"


class _Runs:
    def __reduce__(self):
        return (open, (MARK, "w"))


def test_pickled_module_refused_then_allowed_with_trust(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(tiny_models.cnn(), path)  # a whole pickled module, not TorchScript
    with pytest.raises(UserError, match="could execute code"):
        load.open_source(str(path), input_shapes=["1,3,16,16"])
    loaded = load.open_source(str(path), input_shapes=["1,3,16,16"], trust_pickle=True)
    assert loaded.kind == "pickle" and "--trust-pickle" in loaded.notes[0]
    assert "warning: --trust-pickle" in capsys.readouterr().err
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(loaded.model(x=x), tiny_models.cnn()(x))


def test_code_in_weights_runs_only_with_trust(tmp_path):
    if os.path.exists(MARK):
        os.unlink(MARK)
    path = tmp_path / "w.pt"
    state = dict(tiny_models.cnn().state_dict())
    with open(path, "wb") as f:
        pickle.dump({**state, "payload": _Runs()}, f)
    with pytest.raises(UserError, match="could execute code"):
        load.open_source(f"{TINY}:cnn", str(path), ["1,3,16,16"])
    assert not os.path.exists(MARK)
    with pytest.raises(UserError):  # unpickled (the payload ran), then the keys do not fit
        load.open_source(f"{TINY}:cnn", str(path), ["1,3,16,16"], trust_pickle=True)
    assert os.path.exists(MARK)  # proof the flag is what stands between the file and the code
    os.unlink(MARK)


def _onnx_with_external_weight(tmp_path, location: str):
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin",
                                      "link.bin"])
def test_onnx_external_data_cannot_escape_the_folder(tmp_path, location):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 16)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(outside)
    path = _onnx_with_external_weight(folder, location)
    with pytest.raises(UserError, match="outside the model's folder"):
        load.open_source(str(path))


def test_onnx_external_data_inside_the_folder_loads(tmp_path):
    import numpy as np

    (tmp_path / "w.bin").write_bytes(np.array([1, 2, 3, 4], np.float32).tobytes())
    path = _onnx_with_external_weight(tmp_path, "w.bin")
    loaded = load.open_source(str(path))
    assert [s.name for s in loaded.inputs] == ["x"]
    with pytest.raises(UserError, match="is missing"):
        (tmp_path / "w.bin").unlink()
        load.open_source(str(path))
    assert onnx  # the module under test reads these with onnx; imported here for the helper
