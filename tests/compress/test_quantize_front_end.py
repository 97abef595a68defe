"""ONNX int8 with a log-spectrum front end kept float (onnx.static_int8_float_front_end).

The model is basic-pitch's shape in small: a strided filterbank convolution, its power summed
and taken to decibels, then a convolutional back end. The filterbank is built so its bands'
powers span ~60 dB (far more than int8 activations hold), which is what the log then expands.
`--quant-target x86` (7-bit weights): its u8s8 kernels do not saturate on any x86 host, so the
measured SNRs are the quantization's, and the choice is by fidelity alone.
"""

import json

import onnx

from edgepress import cli
from edgepress.compress.quantize import graph_facts

FRONT_END = '''
import math
import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.bank = nn.Conv1d(1, 16, 64, stride=16, bias=False)
        with torch.no_grad():  # band gains 1 .. 1e-3: a power range of 60 dB
            gains = torch.logspace(0, -3, 16).view(16, 1, 1)
            self.bank.weight.mul_(gains / self.bank.weight.abs().amax(dim=2, keepdim=True))
        self.back = nn.Sequential(nn.Conv1d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(16, 4, 3, padding=1))

    def forward(self, x):  # (N, 1, 1024) -> (N, 4, 15)
        power = nn.functional.avg_pool1d(self.bank(x) ** 2, 4).clamp_min(1e-8)  # -80 dB floor
        return self.back(10.0 * torch.log(power) / math.log(10.0))


def make():
    return Spectral().eval()
'''


def _compress(tmp_path, *extra):
    (tmp_path / "spectral.py").write_text(FRONT_END)
    out = tmp_path / "out"
    rc = cli.main(["compress", f"{tmp_path / 'spectral.py'}:make", "--input-shape", "1,1,1024",
                   "--format", "onnx", "--quantize", "int8", "--calib", "random",
                   "--quant-target", "x86", "--out", str(out), *extra])
    assert rc in (0, 1)  # 1: a verification threshold missed, the bundle still written
    return out


def test_front_end_is_the_nodes_up_to_the_log(tmp_path):
    out = _compress(tmp_path)
    front = graph_facts.log_front_end(out / "onnx-fp32" / "model.onnx")
    ops = [op for _, op in front]
    assert ops.count("Conv") == 1 and ops[-1] == "Log"  # the filterbank, not the back end
    model = onnx.load(str(out / "onnx-fp32" / "model.onnx"))
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 3


def test_candidate_keeps_the_front_end_float_and_says_so(tmp_path):
    out = _compress(tmp_path)
    q = json.loads((out / "onnx-int8" / "manifest.json").read_text())["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    front, plain = rows["onnx-static-float-front-end"], rows["onnx-static-all-ops"]
    # the filterbank's int8 output loses the quiet bands the log expands: float keeps them
    assert front["snr_db"] > plain["snr_db"] + 6.0, (front, plain)
    assert q["path"].startswith("onnx-static-float-front-end")
    kept = q["float_front_end"]
    assert len(kept["weight_layers"]) == 1 and kept["why"]
    assert q["float_layers"] == kept["weight_layers"]  # what the written file holds in float


def test_no_log_no_candidate(tmp_path):
    (tmp_path / "plain.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.ReLU()).eval()\n")
    out = tmp_path / "out"
    assert cli.main(["compress", f"{tmp_path / 'plain.py'}:make", "--input-shape", "1,1,64",
                     "--format", "onnx", "--quantize", "int8", "--calib", "random",
                     "--quant-target", "x86", "--out", str(out)]) in (0, 1)
    q = json.loads((out / "onnx-int8" / "manifest.json").read_text())["stages"]["quantize"]
    assert "onnx-static-float-front-end" not in {r["path"] for r in q["choice"]["candidates"]}
    assert graph_facts.log_front_end(out / "onnx-fp32" / "model.onnx") == ()
