"""A model with one fragile layer, for the accuracy-aware quantization tests (a factory:
`tests/compress/fragile_model.py:fragile`, input (1, 8))."""

import torch
from torch import nn


class Fragile(nn.Module):
    """`fragile` emits one huge constant channel beside small informative ones: a per-tensor int8
    range sized for the huge value rounds the small ones to zero, and the head (which ignores the
    huge channel) loses its signal. Every other layer quantizes cleanly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(8, 16)
        self.fragile = nn.Linear(16, 16)
        self.head = nn.Linear(16, 6)
        with torch.no_grad():
            self.fragile.weight[0].zero_()
            self.fragile.bias[0] = 2000.0
            self.head.weight[:, 0] = 0.0

    def forward(self, x):  # (1, 8) -> (1, 6)
        return self.head(torch.relu(self.fragile(torch.relu(self.body(x)))))


def fragile():
    return Fragile().eval()
