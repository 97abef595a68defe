"""The LSTM cell PT2E leaves float (issue 15 item 2): its FULLY_CONNECTED ops get hybrid
(dynamic-range) int8 weights in the TFLite int8 file, where the selection split allows."""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgepress import cli
from edgepress.compress.quantize import hybrid
from edgepress.runtime import artifact


class _Recurrent(nn.Module):
    """silero-vad's shape in small: a linear front end, an LSTMCell with its state as inputs and
    outputs, a linear head."""

    def __init__(self):
        super().__init__()
        self.front, self.cell, self.head = nn.Linear(16, 24), nn.LSTMCell(24, 32), nn.Linear(32, 3)

    def forward(self, x, h, c):
        h, c = self.cell(torch.relu(self.front(x)), (h, c))
        return self.head(h), h, c


def recurrent():
    torch.manual_seed(0)
    return _Recurrent().eval()


def test_lstm_fcs_left_float_by_pt2e_get_hybrid_weights(tmp_path):
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((24, 1, 16)), "h": 0.5 * rng.standard_normal((24, 1, 32)),
            "c": rng.standard_normal((24, 1, 32))}
    np.savez(tmp_path / "c.npz", **{k: v.astype(np.float32) for k, v in data.items()})
    out = tmp_path / "out"
    rc = cli.main(["compress", f"{Path(__file__)}:recurrent", "--input-shape", "1,16",
                   "--input-shape", "1,32", "--input-shape", "1,32", "--format", "tflite",
                   "--quantize", "int8", "--calib", str(tmp_path / "c.npz"), "--out", str(out),
                   "--quant-target", "arm"])
    assert rc in (0, 1)  # written (random weights may miss a verify threshold)
    m = json.loads((out / "tflite-int8" / artifact.MANIFEST).read_text())
    record = m["stages"]["quantize"]["hybrid_fc"]
    assert record["applied"] and record["layers"], record
    assert record["snr_db"]["with"] >= record["snr_db"]["without"] - record["max_loss_db"]
    left = hybrid.float_weight_layers(out / "tflite-int8" / "model.tflite")
    assert not set(record["layers"]) & set(left)
