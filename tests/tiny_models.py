"""Tiny models the tests load as factories (`tests/tiny_models.py:cnn`). Seeded, so every
factory call builds the same weights."""

from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "tiny_models.py"


def factory(name: str) -> str:
    """The SOURCE string for a tiny model's factory."""
    return f"{TINY}:{name}"


class TinyCNN(nn.Module):
    """Conv + BatchNorm (with non-trivial running stats) + residual + pooling + linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):  # (N, 3, 16, 16) -> (N, 5)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(y + self.bn2(self.conv2(y)))
        return self.fc(y.mean(dim=(2, 3)))


class TwoInputMLP(nn.Module):
    """Two named inputs of different widths; two outputs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 16)
        self.b = nn.Linear(4, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, features, context):  # (N, 6), (N, 4) -> (N, 3), (N, 16)
        h = torch.tanh(self.a(features) + self.b(context))
        return self.head(h), h


class TinyEncoder(nn.Module):
    """One transformer encoder block (self-attention + MLP, LayerNorm) over (N, 8, 16)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                                dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, tokens):
        return self.head(self.layer(tokens).mean(dim=1))


class PrunableCNN(nn.Module):
    """Wide enough to prune with channels rounded to 8: stem, a residual block with an inner
    expansion, an inverted-residual (depthwise) block, and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.inv = nn.Sequential(nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU6(),
                                 nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32),
                                 nn.ReLU6(), nn.Conv2d(32, 24, 1), nn.BatchNorm2d(24))
        self.fc = nn.Linear(24, 5)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, x):  # (N, 3, 16, 16) -> (N, 5)
        y = self.stem(x)
        y = torch.relu(y + self.res(y))
        return self.fc(self.inv(y).mean(dim=(2, 3)))


class TinyConvNet(nn.Module):
    """A plain conv stack with prunable middle layers (nothing coupled to the skipped stem)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):  # (N, 3, 16, 16) -> (N, 5)
        return self.fc(self.mid(torch.relu(self.stem(x))).mean(dim=(2, 3)))


def _seeded(cls):
    torch.manual_seed(0)
    return cls().eval()


def cnn():
    return _seeded(TinyCNN)


def mlp():
    return _seeded(TwoInputMLP)


def encoder():
    return _seeded(TinyEncoder)


def prunable_cnn():
    return _seeded(PrunableCNN)


def convnet():
    return _seeded(TinyConvNet)


def not_a_module():
    return 42


# name -> (factory, --input-shape values)
MODELS = {
    "cnn": (cnn, ["1,3,16,16"]),
    "mlp": (mlp, ["features=1,6", "context=1,4"]),
    "encoder": (encoder, ["1,8,16"]),
    "prunable_cnn": (prunable_cnn, ["1,3,16,16"]),
}
