"""TorchScript sources go through torch's private TS2EPConverter; where a torch release lacks it
or changed its interface, the ScriptModule itself is the model (a feature check, issue 17): the
ONNX bundle is still built and verified, and nothing blames the user's file."""

import pytest
import torch
import torch._export.converter as converter

import tiny_models
from edgepress.compress import load, pipeline


@pytest.fixture
def script_file(tmp_path):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(tiny_models.cnn(), torch.randn(1, 3, 16, 16)), path)
    return path


class _Changed:
    """A converter whose constructor no longer takes (module, args)."""

    def __init__(self, module, *, sample_args):
        pass

    def convert(self):
        raise AssertionError("not reached")


@pytest.mark.parametrize("patch", ["missing", "changed"])
def test_without_a_usable_converter_the_script_module_is_the_model(patch, script_file, tmp_path,
                                                                   monkeypatch):
    if patch == "missing":
        monkeypatch.delattr(converter, "TS2EPConverter")
    else:
        monkeypatch.setattr(converter, "TS2EPConverter", _Changed)
    loaded = load.open_source(str(script_file), None, ["1,3,16,16"])
    assert isinstance(loaded.model, torch.jit.ScriptModule)
    assert "kept as a ScriptModule" in loaded.notes[0]
    (result,) = pipeline.run(pipeline.Request(source=str(script_file), out=tmp_path / "out",
                                              formats=("onnx",), input_shapes=("1,3,16,16",),
                                              summary=False))
    assert result.verdict.passed, result.verdict.failures
    assert "TorchScript-based" in result.figures["export"]["exporter"]
