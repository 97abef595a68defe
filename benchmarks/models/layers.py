"""Single MobileNetV2 layers (seeded random weights), to see which layer types int8 speeds up on
an engine: benchmarks/layers.py times each fp32 against int8."""

import torch
from torch import nn


class _Layer(nn.Module):
    """One convolution + ReLU6, as MobileNetV2 uses them."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups)

    def forward(self, x):
        return nn.functional.relu6(self.conv(x))


def _seeded(*args, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return _Layer(*args, **kwargs).eval()


def stem():  # 3 -> 32, stride 2, at 224x224
    return _seeded(3, 32, 3, stride=2)


def depthwise():  # 3x3 depthwise, 96 channels at 56x56
    return _seeded(96, 96, 3, groups=96)


def depthwise_s2():  # the same with stride 2 (litert-torch writes an explicit PAD before it)
    return _seeded(96, 96, 3, stride=2, groups=96)


def pointwise():  # 1x1, 96 -> 144 at 56x56
    return _seeded(96, 144, 1)
