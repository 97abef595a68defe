"""space_to_depth: a strided few-channel conv folded into a stride-1 one computes the same, and
tflite int8 measures the folded model as a candidate (crepe tiny: 0.42x fp32 where PT2E on the
original ran 1.06x)."""

import json

import pytest
import torch
from torch import nn

from edgepress import cli
from edgepress.compress.quantize import space_to_depth


@pytest.mark.parametrize("conv,shape", [
    (nn.Conv1d(2, 5, 6, stride=3, padding=2), (2, 2, 37)),
    (nn.Conv2d(1, 4, (8, 1), stride=(2, 1), padding=(3, 0)), (2, 1, 37, 5)),
    (nn.Conv2d(1, 16, (512, 1), stride=(4, 1)), (1, 1, 1532, 1)),  # crepe's stem
])
def test_folded_conv_computes_the_same(conv, shape):
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(shape)
    folded, notes = space_to_depth.rewrite(model)
    assert len(notes) == 1 and f"stride {conv.stride[0]} -> " in notes[0]
    inner = folded[0].conv
    assert inner.stride[0] == 1 and inner.in_channels == conv.in_channels * conv.stride[0]
    assert inner.weight.numel() == conv.weight.numel()  # nothing added, unlike zero padding
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert model[0] is conv  # the original is left as it was


@pytest.mark.parametrize("conv", [
    nn.Conv1d(1, 4, 8, stride=1),  # nothing to fold
    nn.Conv1d(1, 4, 7, stride=2),  # taps not a multiple of the stride
    nn.Conv1d(4, 4, 8, stride=2),  # already 4 channels
    nn.Conv2d(3, 8, 4, stride=2),  # strided in both dimensions
    nn.Conv1d(2, 4, 8, stride=2, groups=2),
])
def test_left_alone(conv):
    model = nn.Sequential(conv)
    assert not space_to_depth.applies(model)
    assert space_to_depth.rewrite(model) == (model, [])


STEM = '''
import torch
from torch import nn


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(1, 16, (64, 1), stride=(4, 1))
        self.head = nn.Linear(16 * 33, 8)

    def forward(self, x):  # (B, 192)
        return self.head(torch.relu(self.conv1(x[:, None, :, None])).flatten(1))


def make():
    return Stem().eval()
'''


def test_tflite_int8_measures_the_folded_candidate(tmp_path):
    (tmp_path / "stem.py").write_text(STEM)
    out = tmp_path / "out"
    assert cli.main(["compress", f"{tmp_path / 'stem.py'}:make", "--input-shape", "1,192",
                     "--format", "tflite", "--quantize", "int8", "--calib", "random",
                     "--out", str(out)]) in (0, 1)
    q = json.loads((out / "tflite-int8" / "manifest.json").read_text())["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    assert "snr_db" in rows["pt2e-folded-stem"] and "p50_ms" in rows["pt2e-folded-stem"]
    if q["path"] == "pt2e-folded-stem":
        assert q["rewritten"] == ["conv1: 1 input channel(s), stride 4 -> 4 channels, "
                                  "stride 1 (space-to-depth)"]


def test_onnx_int8_measures_the_folded_candidate(tmp_path):
    """The folded model is exported again and quantized by the same recipe: the same function,
    so its held-out SNR matches the unfolded candidate's with the same calibrator."""
    (tmp_path / "stem.py").write_text(STEM)
    out = tmp_path / "out"
    assert cli.main(["compress", f"{tmp_path / 'stem.py'}:make", "--input-shape", "1,192",
                     "--format", "onnx", "--quantize", "int8", "--calib", "random",
                     "--out", str(out)]) in (0, 1)
    text = (out / "onnx-int8" / "manifest.json").read_text()
    assert "_float_source" not in text  # onnx_bias's private key stays out of the manifest
    q = json.loads(text)["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    assert "p50_ms" in rows["onnx-static-folded-stem"]
    assert abs(rows["onnx-static-folded-stem"]["snr_db"]
               - rows["onnx-static-all-ops"]["snr_db"]) < 1.0
    if q["path"].startswith("onnx-static-folded-stem"):
        assert q["rewritten"] == ["conv1: 1 input channel(s), stride 4 -> 4 channels, "
                                  "stride 1 (space-to-depth)"]
