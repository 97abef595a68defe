"""A keyword-spotting CNN in the DS-CNN style (Zhang et al., "Hello Edge", 2017): one regular
conv over the 49x10 MFCC map, four depthwise-separable blocks, average pooling, 12 classes.
Input (N, 1, 49, 10): 49 frames x 10 MFCC coefficients. Weights are random (seeded).
"""

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, kernel, stride=1, groups: int = 1) -> nn.Sequential:
    pad = tuple((k - 1) // 2 for k in kernel) if isinstance(kernel, tuple) else (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DSCNN(nn.Module):
    """DS-CNN-S: 64 channels; the first conv is 10x4 with stride 2 as in the paper."""

    def __init__(self, width: int = 64, classes: int = 12, blocks: int = 4):
        super().__init__()
        self.stem = _conv_bn_relu(1, width, (10, 4), stride=2)  # (N, w, 25, 5)
        self.blocks = nn.Sequential(*[
            nn.Sequential(_conv_bn_relu(width, width, 3, groups=width),  # depthwise
                          _conv_bn_relu(width, width, 1))  # pointwise
            for _ in range(blocks)])
        self.classifier = nn.Linear(width, classes)

    def forward(self, mfcc):  # (N, 1, 49, 10) -> (N, 12) logits
        x = self.blocks(self.stem(mfcc))
        return self.classifier(x.mean(dim=(2, 3)))


def kws_cnn() -> DSCNN:
    torch.manual_seed(0)
    return DSCNN().eval()
