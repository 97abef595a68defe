"""BatchNorm statistics re-estimated after channel pruning (NNCF calls it BatchNorm adaptation,
and runs it by default after pruning or quantizing).

Removing a channel removes its mean contribution to every layer that reads it, so the
BatchNorms downstream normalise inputs whose mean and variance are no longer those their running
statistics were fitted to. One pass over data in train mode, without gradients, re-estimates
them (a cumulative average over the batches, whatever momentum the model set); no weight
changes. Measured on crepe tiny pruned 50% (stem included), pitch agreement with crepe full on
held-out speech: 1% as pruned, 35-55% once recalibrated, before any training.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepress.compress.prune.measure import batches

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
SAMPLES = 2048  # at most this many samples of the data (NNCF's default is 2000)
BATCH = 64  # samples per forward pass: batch statistics of fewer are noisy


def batchnorms(model: nn.Module, data, limit: int = SAMPLES) -> dict | None:
    """Re-estimates every BatchNorm's running mean and variance on up to `limit` samples of
    `data` (a calibrate.Dataset); the figures for the manifest, or None without BatchNorms."""
    norms = [m for m in model.modules() if isinstance(m, NORMS) and m.track_running_stats]
    if not norms:
        return None
    was_training, momenta = model.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average of the batches seen
    model.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch, _ in batches(data, limit, BATCH):
                n = next(iter(batch.values())).shape[0]
                if n > 1:  # one sample has no batch variance (BatchNorm1d refuses it)
                    model(**batch)
                    seen += n
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return {"layers": len(norms), "samples": seen}
