"""equalize: cross-layer equalization finds the layer pairs it may rescale (not across ReLU6),
computes the same function, and equalizes each channel's weight range across the pair."""

import torch
from torch import nn

from edgepress.compress.quantize import equalize


class Block(nn.Module):
    """crepe's layer order: conv, ReLU, BatchNorm, max-pool, zero pad, conv."""

    def __init__(self, act=nn.ReLU):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.act, self.bn = nn.Conv2d(1, 6, (5, 1)), act(), nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 3, (3, 1))
        with torch.no_grad():  # uneven channel ranges, non-trivial statistics
            self.conv1.weight.mul_(torch.tensor([0.1, 1, 10, 0.5, 3, 0.01]).view(-1, 1, 1, 1))
            self.bn.running_mean.uniform_(0, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.bn(self.act(self.conv1(x))), (2, 1))
        return self.conv2(nn.functional.pad(x, (0, 0, 1, 1)))


def _pairs(model):
    x = torch.randn(1, 1, 32, 1)
    return equalize.pairs(torch.export.export(model.eval(), (), {"x": x}).module())


def test_equalized_block_computes_the_same_with_equal_ranges():
    model = Block().eval()
    found = _pairs(model)
    assert found == [("conv1", "bn", "conv2")]
    eq, done = equalize.apply(model, found)
    assert done == 1
    x = torch.randn(4, 1, 32, 1)
    torch.testing.assert_close(eq(x), model(x), rtol=1e-4, atol=1e-5)
    r1 = eq.conv1.weight.abs().flatten(1).amax(1)
    r2 = eq.conv2.weight.abs().transpose(0, 1).flatten(1).amax(1)
    torch.testing.assert_close(r1, r2)
    assert torch.equal(model.conv1.weight, Block().conv1.weight)  # the original untouched


def test_relu6_between_layers_is_not_equalized():
    assert _pairs(Block(nn.ReLU6)) == []


BLOCK_FILE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn = nn.Conv2d(1, 6, (5, 1)), nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 3, (3, 1))
        with torch.no_grad():
            self.conv1.weight.mul_(torch.tensor([0.1, 1, 10, 0.5, 3, 0.01]).view(-1, 1, 1, 1))

    def forward(self, x):  # (B, 32)
        y = self.bn(torch.relu(self.conv1(x[:, None, :, None])))
        return self.conv2(y).flatten(1)


def make():
    return Block().eval()
'''


def test_onnx_int8_measures_the_equalized_model_in_its_recipes_family(tmp_path):
    """ONNX int8 builds the all-ops recipe on the equalized torch model too (exported again):
    the same graph with other weights, so it joins that recipe's family, whose best SNR on the
    selection split is kept; its row is in the manifest either way."""
    import json

    from edgepress import cli

    (tmp_path / "block.py").write_text(BLOCK_FILE)
    out = tmp_path / "out"
    assert cli.main(["compress", f"{tmp_path / 'block.py'}:make", "--input-shape", "1,32",
                     "--format", "onnx", "--quantize", "int8", "--calib", "random",
                     "--quant-target", "x86-vnni", "--out", str(out)]) in (0, 1)
    q = json.loads((out / "onnx-int8" / "manifest.json").read_text())["stages"]["quantize"]
    rows = {r["path"]: r for r in q["choice"]["candidates"]}
    eq, plain = rows["onnx-static-all-ops-equalized"], rows["onnx-static-all-ops"]
    assert eq["family"] == plain["family"] == "onnx-static-all-ops"
    assert "snr_db" in eq
    family = [r for r in rows.values() if r.get("family") == "onnx-static-all-ops"
              and r.get("eligible")]
    if q["path"].startswith("onnx-static-all-ops"):  # the family's best SNR is the one kept
        assert rows[q["path"]]["snr_db"] == max(r["snr_db"] for r in family)
    if "equalized" in q["path"]:
        assert q["rewritten"] == ["cross-layer equalization: 1 conv pair(s) (equalize.py)"]
