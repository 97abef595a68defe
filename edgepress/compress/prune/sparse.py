"""magnitude:R and nm:N:M: zeros in dense tensors (torch.nn.utils.prune masks, folded in)."""

from __future__ import annotations

import torch

from edgepress.compress.prune.measure import PRUNABLE


def magnitude(model, cfg, example, skipped, data) -> None:
    import torch.nn.utils.prune as tprune

    layers = _weighted(model, skipped)
    own = dict(cfg.layer_ratios)
    shared = [(m, "weight") for n, m in layers.items() if n not in own]
    if cfg.scope == "global" and shared:
        # One threshold across layers: layers with many small weights lose more of them.
        tprune.global_unstructured(shared, pruning_method=tprune.L1Unstructured, amount=cfg.ratio)
    else:
        for m, _ in shared:
            tprune.l1_unstructured(m, "weight", amount=cfg.ratio)
    for name, ratio in own.items():
        if name in layers and ratio > 0:
            tprune.l1_unstructured(layers[name], "weight", amount=ratio)
    _finish_masks(layers.values(), cfg.permanent)


def n_of_m(model, cfg, example, skipped, data) -> dict | None:
    import torch.nn.utils.prune as tprune

    weighted = _weighted(model, skipped)
    layers = {n: m for n, m in weighted.items()
              if m.weight.shape[1] % cfg.m == 0}  # input width must split into groups of m
    for m in layers.values():
        tprune.custom_from_mask(m, "weight", _nm_mask(m.weight.detach(), cfg.n, cfg.m))
    _finish_masks(layers.values(), cfg.permanent)
    left = {n: f"{m.weight.shape[1]} inputs per output (per group) is not a multiple of {cfg.m}"
            for n, m in weighted.items() if n not in layers}
    return {"left_dense": left} if left else None


def _nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keeps the n largest |w| of every m consecutive input channels, as sparse tensor cores and
    2:4 kernels expect. Linear (O, I) or conv (O, I, *k): groups run along I."""
    moved = w.abs().movedim(1, -1)  # (O, *k, I)
    groups = moved.reshape(-1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(n, dim=1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, 1)


def _weighted(model, skipped) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE) and n not in skipped}


def _finish_masks(modules, permanent: bool) -> None:
    # permanent: weight = weight_orig * mask becomes a plain tensor again, so export sees ordinary
    # weights. Not permanent: the masks stay (fine-tuning keeps zeros at zero); finalize() later.
    if permanent:
        finalize(modules)


def finalize(modules) -> None:
    """Folds torch.nn.utils.prune masks into the weights of `modules` (a model's .modules() too)."""
    import torch.nn.utils.prune as tprune

    for m in modules:
        if tprune.is_pruned(m) and hasattr(m, "weight_orig"):
            tprune.remove(m, "weight")
