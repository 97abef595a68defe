"""The bundled example: a small CNN for scikit-learn's handwritten digits (8x8, 10 classes).

`digits_cnn` is the factory edgepress loads (`examples/digits/model.py:digits_cnn`); `train.py`
beside it fits it on real data in seconds and writes the weights and data sets.
"""

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv-bn-relu x3 with a residual add, global pooling, linear head. Input (N, 1, 8, 8)."""

    def __init__(self, width: int = 32, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.head = nn.Linear(2 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(image)  # (N, w, 8, 8)
        x = torch.relu(x + self.block(x))
        x = self.down(x)  # (N, 2w, 4, 4)
        return self.head(x.mean(dim=(2, 3)))  # (N, classes) logits


def digits_cnn() -> DigitsCNN:
    return DigitsCNN()
