"""The demo's task metric, for distillation's early stopping (`--distill-metric
examples.crepe.pitch:within_50_cents`): the share of voiced frames whose decoded pitch lies
within 50 cents of the reference's (crepe full's outputs on the validation frames, which have
no labels). Decoding and the voicing rule are the benchmark suite's (benchmarks/tasks.py), so
early stopping and the demo's summary score the same thing."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import tasks  # noqa: E402


def within_50_cents(outputs, reference) -> float:
    """outputs, reference: (n, 360) pitch-bin probabilities (torch tensors or arrays); the
    benchmarks' pitch metric (tasks.pitch_agreement) on them."""
    out, ref = (np.asarray(t, dtype=np.float64).reshape(-1, 360) for t in (outputs, reference))
    return tasks.pitch_agreement(out, ref)
