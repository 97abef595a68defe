"""bias_correction: the per-channel output shift quantization leaves is measured and removed,
and the correction is kept only where the held-out SNR says it helps."""

import numpy as np
import torch
from torch import nn

from edgepress.compress import calibrate
from edgepress.compress.quantize import bias_correction, tflite
from edgepress.runtime.artifact import TensorSpec


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3),
                                  nn.Flatten(), nn.Linear(4 * 12 * 12, 5))

    def forward(self, x):
        return self.body(x)


def _setup():
    torch.manual_seed(0)
    model = Net().eval()
    specs = [TensorSpec("x", (1, 3, 16, 16), "float32")]
    calib = calibrate.open_data("random", specs, 16)
    select = calibrate.open_data("random", specs, 8, seed=1)
    sample = {"x": torch.zeros(1, 3, 16, 16)}
    fq, _ = tflite.pt2e_model(model, sample, calib, "nchw")
    feed = lambda s: {k: torch.from_numpy(v) for k, v in s.items()}  # noqa: E731
    return model, fq, calib, select, feed


def test_correction_removes_the_first_layers_mean_shift():
    model, fq, calib, _, feed = _setup()
    layers = bias_correction.biased_layers(fq)
    assert set(layers) == {"body.0", "body.2", "body.4"}  # the conv/linear layers, by module name
    before = bias_correction.shifts(model, fq, layers, calib, feed)
    with torch.no_grad():
        layers["body.0"][0].sub_(before["body.0"])
    after = bias_correction.shifts(model, fq, layers, calib, feed)
    # the first layer's input is the same float input in both: its shift is then gone
    assert float(after["body.0"].abs().max()) < 0.1 * float(before["body.0"].abs().max()) + 1e-6


def test_kept_only_when_the_held_out_snr_rises():
    model, fq, calib, select, feed = _setup()
    original = {n: p.detach().clone() for n, p in fq.named_parameters()}
    float_model = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = bias_correction.apply(model, fq, calib, select, feed)
    assert record["layers"] == 3 and record["calib_samples"] == 16
    changed = any(not torch.equal(p, original[n]) for n, p in fq.named_parameters())
    gain = record["snr_db_with"] - record["snr_db_without"]
    assert record["applied"] == (gain > bias_correction.MIN_GAIN_DB) == changed
    # the float model (which torch.export's module shares tensors with) is left as it was
    assert all(torch.equal(p, float_model[n]) for n, p in model.named_parameters())


def test_not_measured_without_held_out_data():
    model, fq, calib, _, feed = _setup()
    assert bias_correction.apply(model, fq, calib, None, feed) == {
        "applied": False, "why": "no held-out data to measure on"}
