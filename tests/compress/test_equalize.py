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
