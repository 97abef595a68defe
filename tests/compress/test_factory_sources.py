"""Factory sources as users write them: optional forward arguments, and what the manifest says
about where the model came from."""

import importlib.util
import textwrap

import torch
from safetensors.torch import save_file

import tiny_models
from edgepress import cli
from edgepress.compress import load
from edgepress.runtime import artifact

OPTIONAL_ARGS = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """Like torchcrepe's forward(x, embed=False): an optional non-tensor argument."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x, embed=False, scale: float = 1.0, *rest, **extra):
            h = torch.relu(self.conv(x)).mean(dim=2)
            return h if embed else self.fc(h) * scale


    def make():
        torch.manual_seed(0)
        return Net().eval()
''')


def _factory(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(OPTIONAL_ARGS)
    return path


def _compress(tmp_path, source, *extra):
    out = tmp_path / "out"
    argv = ["compress", source, "--out", str(out), "--format", "onnx,tflite",
            "--input-shape", "1,1,32", *extra]
    assert cli.main(argv) == 0
    return [artifact.open_bundle(out / f"{fmt}-fp32") for fmt in ("onnx", "tflite")]


def test_optional_forward_arguments_stay_at_their_defaults(tmp_path):
    source = f"{_factory(tmp_path)}:make"
    for bundle in _compress(tmp_path, source):
        assert [s.name for s in bundle.inputs] == ["x"]
        assert bundle.manifest["source"]["defaults"] == {"embed": False, "scale": 1.0}
        _, outs = bundle.golden()
        assert outs["output_0"].shape[-1] == 3  # the default branch (embed=False) was exported


def test_factory_file_and_weights_are_hashed(tmp_path):
    path = _factory(tmp_path)
    spec = importlib.util.spec_from_file_location("net_for_weights", path)
    net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(net)
    torch.manual_seed(1)
    save_file(net.Net().state_dict(), str(tmp_path / "w.safetensors"))
    bundles = _compress(tmp_path, f"{path}:make", "--weights", str(tmp_path / "w.safetensors"))
    for bundle in bundles:
        source = bundle.manifest["source"]
        assert source["file"] == str(path.resolve())
        assert source["sha256"] == artifact.sha256_file(path)
        assert source["weights"]["sha256"] == artifact.sha256_file(tmp_path / "w.safetensors")


def test_module_form_factory_hashes_its_module_file():
    loaded = load.open_source("tiny_models:cnn", None, ["1,3,16,16"])
    assert loaded.provenance["sha256"] == artifact.sha256_file(tiny_models.TINY)
